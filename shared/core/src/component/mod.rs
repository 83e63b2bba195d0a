//! New components agents ask for (R18): whether a request is complete, how risky its
//! capabilities are, whether the system can take it now and the specification it gets
//! ([`decide`], by rules, before anything is spent); then the LLM's draft of its code and SAM
//! resource, checked like a code patch ([`draft_component`]).
//!
//! - [`draft`]: the draft type, its tool schema and prompt, and the checks of its files,
//!   runtime, handler and SAM resource.
//!
//! A drafted component is registered awaiting approval (risk at least HIGH) or declined with
//! its findings; nothing here deploys it.

pub mod draft;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{info, instrument, warn};

use crate::change::RiskLevel;
use crate::error::StableError;
use crate::ids::ComponentId;
use crate::improvement::LlmUsage;
use crate::ports::{CheckError, CodeChecker, CodeFinding, Llm, LlmError, PatchUnderReview};
use crate::records::ComponentStatus;
use crate::text::{Escaped, Excerpt};

pub use draft::{COMPONENT_TOOL_NAME, ComponentDraft, DraftFile, KNOWN_RUNTIMES};

/// What kind of component to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentType {
    /// A Lambda function called directly.
    LambdaFunction,
    /// A Step Functions task.
    StepFunctionTask,
    /// A consumer of events.
    EventConsumer,
    /// A scheduled job.
    ScheduledJob,
}

impl ComponentType {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LambdaFunction => "lambda_function",
            Self::StepFunctionTask => "step_function_task",
            Self::EventConsumer => "event_consumer",
            Self::ScheduledJob => "scheduled_job",
        }
    }

    /// Memory (MB) and timeout (s) to start from.
    fn settings(self) -> (u32, u32) {
        match self {
            Self::LambdaFunction => (512, 30),
            Self::StepFunctionTask => (512, 120),
            Self::EventConsumer => (256, 60),
            Self::ScheduledJob => (1024, 900),
        }
    }
}

/// What the component must do.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// The function name (letters, digits, '-', '_').
    pub name: String,
    /// What it does, in at least 20 characters.
    pub description: String,
    /// What it needs to be able to do, e.g. `read_dynamodb`, `call_http_api`, `send_email`.
    pub capabilities: Vec<String>,
}

/// A request for a new component.
#[derive(Debug, Clone)]
pub struct ComponentRequest {
    /// What to build.
    pub component_type: ComponentType,
    /// What it must do.
    pub requirements: Requirements,
    /// Anything that helps: runtime, callers, data, expected traffic.
    pub context: Option<Map<String, Value>>,
}

/// What the system is like when the request comes.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// `ENABLE_COMPONENT_GENERATION`.
    pub enabled: bool,
    /// The halt switch's reason, when it is on.
    pub halted: Option<String>,
    /// Cycles running now.
    pub running_cycles: usize,
    /// `MAX_CONCURRENT_IMPROVEMENTS`.
    pub capacity: usize,
}

/// What becomes of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentDecision {
    /// Not built: why, and what to do instead.
    Declined {
        /// Why.
        reason: String,
        /// The risk, when the capabilities were assessed.
        risk: Option<RiskLevel>,
        /// One finding per risky capability.
        findings: Vec<Value>,
        /// What to do instead.
        alternatives: Vec<&'static str>,
    },
    /// Registered with this specification.
    Accepted(ComponentPlan),
}

/// An accepted component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPlan {
    /// Its function name.
    pub name: ComponentId,
    /// The status it is registered with: awaiting approval from high risk on.
    pub status: ComponentStatus,
    /// The risk of its capabilities.
    pub risk: RiskLevel,
    /// What was asked for and the specification derived from it.
    pub detail: Value,
}

/// Capability words and the risk and AWS permissions they bring.
const CAPABILITY_RULES: &[(&str, RiskLevel, &str)] = &[
    ("iam", RiskLevel::Critical, "iam:*"),
    ("admin", RiskLevel::Critical, "*"),
    ("delete", RiskLevel::High, "delete actions"),
    ("payment", RiskLevel::High, "payment provider access"),
    ("pii", RiskLevel::High, "personal data access"),
    ("secret", RiskLevel::High, "secretsmanager:GetSecretValue"),
    ("write", RiskLevel::Medium, "write actions"),
    ("email", RiskLevel::Medium, "ses:SendEmail"),
    ("http", RiskLevel::Medium, "outbound network"),
    ("dynamodb", RiskLevel::Low, "dynamodb:GetItem/Query"),
    ("s3", RiskLevel::Low, "s3:GetObject"),
    ("read", RiskLevel::Low, "read actions"),
];

/// A Lambda function name (1–64 letters, digits, '-' or '_') as a component id, or an error
/// naming `field`.
pub fn function_name(field: &str, value: &str) -> Result<ComponentId, String> {
    let valid = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(format!(
            "{field}: {} is not a Lambda function name (1–64 letters, digits, '-' or '_')",
            Excerpt(value)
        ));
    }
    ComponentId::parse(value).map_err(|e| format!("{field}: {e}"))
}

fn declined(reason: impl Into<String>, alternatives: &[&'static str]) -> ComponentDecision {
    ComponentDecision::Declined {
        reason: reason.into(),
        risk: None,
        findings: Vec::new(),
        alternatives: alternatives.to_vec(),
    }
}

/// Decides a request: declined when turned off, halted, incomplete, too busy or of critical
/// risk; otherwise a plan, awaiting approval from high risk on.
pub fn decide(request: &ComponentRequest, conditions: &Conditions) -> ComponentDecision {
    let req = &request.requirements;
    if !conditions.enabled {
        return declined(
            "component generation is turned off (ENABLE_COMPONENT_GENERATION=false)",
            &[
                "ask an operator to enable component generation",
                "build the component by hand and let trigger_improvement_cycle tune it",
            ],
        );
    }
    if let Some(reason) = &conditions.halted {
        return declined(
            format!("the halt switch is on ({reason}); nothing new is built"),
            &[
                "wait for resume",
                "ask an operator why the system is halted",
            ],
        );
    }
    let name = match function_name("requirements.name", req.name.trim()) {
        Ok(name) => name,
        Err(reason) => {
            return declined(
                reason,
                &[
                    "use a Lambda function name: letters, digits, '-' and '_', at most 64 characters",
                ],
            );
        }
    };
    if req.description.trim().chars().count() < 20 {
        return declined(
            "requirements.description: too short to build from (at least 20 characters)",
            &["describe inputs, outputs and who calls the component"],
        );
    }
    let capabilities: Vec<String> = req
        .capabilities
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if capabilities.is_empty() || capabilities.len() > 20 {
        return declined(
            "requirements.capabilities: list 1–20 capabilities",
            &["name what the component must access, e.g. read_dynamodb, call_http_api"],
        );
    }
    if conditions.running_cycles >= conditions.capacity {
        return declined(
            format!(
                "load too high: {} cycle(s) running, the limit is {}",
                conditions.running_cycles, conditions.capacity
            ),
            &["retry when running cycles finish (see get_system_status)"],
        );
    }

    let mut risk = RiskLevel::Safe;
    let mut findings = Vec::new();
    let mut permissions = Vec::new();
    for capability in &capabilities {
        for (word, level, permission) in CAPABILITY_RULES {
            if capability.contains(word) {
                risk = risk.max(*level);
                permissions.push(*permission);
                findings.push(json!({
                    "rule": "capability_risk",
                    "risk": level.as_str(),
                    "message": format!("capability {capability:?} needs {permission}"),
                }));
            }
        }
    }
    permissions.sort_unstable();
    permissions.dedup();
    if risk == RiskLevel::Critical {
        return ComponentDecision::Declined {
            reason: "risk CRITICAL: the capabilities ask for account-wide or identity permissions"
                .into(),
            risk: Some(risk),
            findings,
            alternatives: vec![
                "split the component so no part needs IAM or admin permissions",
                "have an operator build it by hand",
            ],
        };
    }
    let status = if risk >= RiskLevel::High {
        ComponentStatus::AwaitingApproval
    } else {
        ComponentStatus::Registered
    };
    let (memory_mb, timeout_seconds) = request.component_type.settings();
    let detail = json!({
        "description": req.description.trim(),
        "capabilities": capabilities,
        "context": request.context,
        "specification": {
            "runtimes": draft::KNOWN_RUNTIMES,
            "architecture": "arm64",
            "memory_mb": memory_mb,
            "timeout_seconds": timeout_seconds,
            "permissions": permissions,
        },
        "risk": risk.as_str(),
        "findings": findings,
    });
    ComponentDecision::Accepted(ComponentPlan {
        name,
        status,
        risk,
        detail,
    })
}

/// The ports component generation uses.
#[derive(Clone, Copy)]
pub struct DraftDeps<'a> {
    /// Writes the draft.
    pub llm: &'a dyn Llm,
    /// Checks its files as new code; unavailable: validation is left pending.
    pub checker: &'a dyn CodeChecker,
}

/// How a draft's code was checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Validation {
    /// Not checked: no draft came.
    NotRun,
    /// Checked; no finding blocks.
    Passed {
        /// Every finding.
        findings: Vec<CodeFinding>,
    },
    /// Checked; some findings block.
    Blocked {
        /// Every finding.
        findings: Vec<CodeFinding>,
    },
    /// The draft's own checks passed but this process has no code checker: the code must be
    /// validated before it is approved.
    Pending {
        /// Why it was not checked.
        reason: String,
        /// The draft checks' findings.
        findings: Vec<CodeFinding>,
    },
}

/// What became of an accepted request once the LLM was asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftOutcome {
    /// `awaiting_approval`, `declined` (the draft failed its checks) or `failed` (no draft).
    pub status: ComponentStatus,
    /// The request's, the draft's and the findings' risk; at least HIGH once drafted.
    pub risk: RiskLevel,
    /// Why it was declined or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to do instead, when declined or failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggested_alternatives: Vec<&'static str>,
    /// The draft, when one came (kept when declined, for the findings to point into).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<ComponentDraft>,
    /// How its code was checked.
    pub validation: Validation,
    /// What the LLM call cost.
    pub usage: LlmUsage,
    /// Which provider answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

impl DraftOutcome {
    fn failed(error: &LlmError, usage: LlmUsage, provider: Option<String>) -> Self {
        let alternatives: &[&'static str] = match error {
            LlmError::Unavailable(_) => &[
                "retry later: the LLM provider is unavailable",
                "build the component by hand",
            ],
            LlmError::BudgetExceeded(_) => &[
                "shorten the description and context",
                "ask an operator to raise LLM_BUDGET_USD",
            ],
            LlmError::InvalidAnswer(_) | LlmError::NoProposal(_) => &[
                "retry with more precise requirements (inputs, outputs, callers)",
                "build the component by hand",
            ],
        };
        Self {
            status: ComponentStatus::Failed,
            risk: RiskLevel::High,
            reason: Some(format!("{}: {error}", error.error_type())),
            suggested_alternatives: alternatives.to_vec(),
            draft: None,
            validation: Validation::NotRun,
            usage,
            provider,
        }
    }
}

/// Rules whose findings decline a draft though they only hold a patch for review: new code
/// written from scratch has no reason to turn TLS verification off.
pub const DRAFT_BLOCKING_RULES: [&str; 1] = ["tls_verification"];

/// Whether a finding declines a draft: it blocks a patch ([`rule_blocks`]), is CRITICAL, or
/// is of a [`DRAFT_BLOCKING_RULES`] rule. Other findings raise the risk for the approver.
///
/// [`rule_blocks`]: crate::code_policy::rule_blocks
pub fn declines_a_draft(finding: &crate::code_policy::FindingSummary) -> bool {
    finding.blocking
        || crate::code_policy::rule_blocks(&finding.rule)
        || finding.risk == RiskLevel::Critical
        || DRAFT_BLOCKING_RULES.contains(&finding.rule.as_str())
}

/// The most blocking findings a declined draft's reason names.
const REASON_FINDINGS: usize = 3;

/// Asks the LLM for a draft of the accepted `plan` within `budget_usd`, checks it
/// ([`draft::check_draft`], then the code checker on every file as a new file) and says what
/// becomes of it: awaiting approval, declined with its findings, or failed with the reason.
#[instrument(skip_all, fields(component = %plan.name))]
pub async fn draft_component(
    deps: DraftDeps<'_>,
    request: &ComponentRequest,
    plan: &ComponentPlan,
    tenant: Option<&str>,
    budget_usd: f64,
) -> DraftOutcome {
    let tool_request = draft::build_request(request, plan, tenant, budget_usd);
    let answer = match deps.llm.call_tool(&tool_request).await {
        Ok(answer) => answer,
        Err(e) => {
            warn!(error = %Escaped(&e), "no component draft");
            return DraftOutcome::failed(&e, LlmUsage::default(), None);
        }
    };
    let provider = Some(answer.provider.clone());
    if answer.usage.cost_usd > budget_usd {
        let e = LlmError::BudgetExceeded(format!(
            "the answer cost ${:.4}, over the ${budget_usd:.2} budget",
            answer.usage.cost_usd
        ));
        return DraftOutcome::failed(&e, answer.usage, provider);
    }
    let draft = match draft::parse_draft(&answer.provider, answer.input) {
        Ok(draft) => draft,
        Err(LlmError::InvalidAnswer(m)) if answer.truncated => {
            let e =
                LlmError::InvalidAnswer(format!("{m} (the answer was cut off at its token limit)"));
            return DraftOutcome::failed(&e, answer.usage, provider);
        }
        Err(e) => return DraftOutcome::failed(&e, answer.usage, provider),
    };
    let mut findings = draft::check_draft(&draft, plan);
    let validation = check_code(deps.checker, &draft, tenant, &mut findings);
    for finding in &mut findings {
        finding.summary.blocking |= declines_a_draft(&finding.summary);
    }
    let blocking: Vec<&CodeFinding> = findings.iter().filter(|f| f.summary.blocking).collect();
    let risk = findings
        .iter()
        .map(|f| f.summary.risk)
        .fold(plan.risk.max(draft.claimed_risk), RiskLevel::max)
        .max(RiskLevel::High);
    let (status, reason, alternatives, validation) = if blocking.is_empty() {
        let validation = match validation {
            Some(reason) => Validation::Pending { reason, findings },
            None => Validation::Passed { findings },
        };
        (
            ComponentStatus::AwaitingApproval,
            None,
            Vec::new(),
            validation,
        )
    } else {
        let named: Vec<String> = blocking
            .iter()
            .take(REASON_FINDINGS)
            .map(|f| format!("{} at {}:{}: {}", f.summary.rule, f.path, f.line, f.message))
            .collect();
        let reason = format!(
            "the draft failed validation with {} blocking finding(s): {}",
            blocking.len(),
            named.join("; ")
        );
        (
            ComponentStatus::Declined,
            Some(reason),
            vec![
                "call generate_component again; the findings say what to avoid",
                "build the component by hand from the draft and its findings",
            ],
            Validation::Blocked { findings },
        )
    };
    info!(
        status = ?status,
        risk = risk.as_str(),
        cost_usd = answer.usage.cost_usd,
        "component drafted"
    );
    DraftOutcome {
        status,
        risk,
        reason,
        suggested_alternatives: alternatives,
        draft: Some(draft),
        validation,
        usage: answer.usage,
        provider,
    }
}

/// Runs the code checker on the draft's files (and SAM resource) as new files, adding its
/// findings; the reason validation is pending when this process has no checker.
fn check_code(
    checker: &dyn CodeChecker,
    draft: &ComponentDraft,
    tenant: Option<&str>,
    findings: &mut Vec<CodeFinding>,
) -> Option<String> {
    if !checker.is_available() {
        return Some(
            "this process has no code checker: validate the code before approving it".into(),
        );
    }
    let files = draft::as_new_files(draft);
    let bases = std::collections::BTreeMap::new();
    let review = PatchUnderReview {
        files: &files,
        bases: &bases,
        handler: Some(&draft.handler),
        tenant,
    };
    match checker.check(&review) {
        Ok(check) => {
            findings.extend(check.findings);
            None
        }
        Err(CheckError::Unavailable(reason)) => Some(reason),
        Err(CheckError::Malformed(message)) => {
            findings.push(CodeFinding {
                summary: crate::code_policy::FindingSummary {
                    rule: "code_validation".into(),
                    risk: RiskLevel::High,
                    blocking: true,
                },
                path: String::new(),
                line: 1,
                col: 1,
                message: format!("the files could not be checked: {message}"),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, capabilities: &[&str]) -> ComponentRequest {
        ComponentRequest {
            component_type: ComponentType::EventConsumer,
            requirements: Requirements {
                name: name.into(),
                description: "Consumes order events and writes a summary row".into(),
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            },
            context: None,
        }
    }

    fn open() -> Conditions {
        Conditions {
            enabled: true,
            halted: None,
            running_cycles: 0,
            capacity: 3,
        }
    }

    #[test]
    fn the_riskiest_capability_sets_the_status() {
        let ComponentDecision::Accepted(plan) = decide(
            &request("orders-summary", &["read_dynamodb", "write_s3"]),
            &open(),
        ) else {
            panic!("declined");
        };
        assert_eq!(
            (plan.risk, plan.status),
            (RiskLevel::Medium, ComponentStatus::Registered)
        );
        assert_eq!(plan.detail["specification"]["memory_mb"], 256);
        let ComponentDecision::Accepted(plan) =
            decide(&request("refunds", &["delete_orders"]), &open())
        else {
            panic!("declined");
        };
        assert_eq!(plan.status, ComponentStatus::AwaitingApproval);
    }

    #[test]
    fn critical_busy_halted_or_bad_names_are_declined_with_a_reason() {
        let critical = decide(&request("grant", &["iam_admin"]), &open());
        assert!(matches!(
            critical,
            ComponentDecision::Declined {
                risk: Some(RiskLevel::Critical),
                ..
            }
        ));
        let busy = Conditions {
            running_cycles: 3,
            ..open()
        };
        let ComponentDecision::Declined { reason, .. } =
            decide(&request("orders-summary", &["read"]), &busy)
        else {
            panic!("accepted while busy");
        };
        assert!(reason.contains("load too high"), "{reason}");
        let halted = Conditions {
            halted: Some("incident 42".into()),
            ..open()
        };
        assert!(matches!(
            decide(&request("orders-summary", &["read"]), &halted),
            ComponentDecision::Declined { reason, .. } if reason.contains("incident 42")
        ));
        assert!(matches!(
            decide(&request("bad name!", &["read"]), &open()),
            ComponentDecision::Declined { reason, .. } if reason.starts_with("requirements.name:")
        ));
    }

    mod drafting {
        use super::super::draft::tests::{good_draft, plan, request};
        use super::super::*;
        use crate::code_policy::FindingSummary;
        use crate::ports::{CodeCheck, NoCodeChecker, ToolAnswer, ToolRequest};
        use async_trait::async_trait;
        use std::sync::Mutex;

        /// Answers every tool call with `input`, or fails with `error`; keeps the requests.
        struct FakeLlm {
            answer: Result<Value, String>,
            cost_usd: f64,
            asked: Mutex<Vec<ToolRequest>>,
        }

        #[async_trait]
        impl Llm for FakeLlm {
            async fn call_tool(
                &self,
                request: &ToolRequest,
            ) -> Result<crate::ports::ToolAnswer, LlmError> {
                self.asked.lock().expect("lock").push(request.clone());
                match &self.answer {
                    Ok(input) => Ok(ToolAnswer {
                        input: input.clone(),
                        usage: LlmUsage {
                            input_tokens: 1000,
                            output_tokens: 500,
                            cost_usd: self.cost_usd,
                        },
                        provider: "fake".into(),
                        truncated: false,
                    }),
                    Err(m) => Err(LlmError::Unavailable(m.clone())),
                }
            }
        }

        fn llm(answer: Result<Value, String>) -> FakeLlm {
            FakeLlm {
                answer,
                cost_usd: 0.02,
                asked: Mutex::new(Vec::new()),
            }
        }

        /// Flags `verify=False` in any file as blocking.
        struct TlsChecker;

        impl CodeChecker for TlsChecker {
            fn check(&self, patch: &PatchUnderReview<'_>) -> Result<CodeCheck, CheckError> {
                let findings = patch
                    .files
                    .iter()
                    .filter(|f| f.diff.contains("verify=False"))
                    .map(|f| CodeFinding {
                        summary: FindingSummary {
                            rule: "tls_verification".into(),
                            risk: RiskLevel::Critical,
                            blocking: true,
                        },
                        path: f.path.clone(),
                        line: 2,
                        col: 5,
                        message: "TLS verification turned off".into(),
                    })
                    .collect();
                Ok(CodeCheck {
                    findings,
                    ..Default::default()
                })
            }
        }

        async fn outcome(llm: &FakeLlm, checker: &dyn CodeChecker) -> DraftOutcome {
            let request = request("Consumes order events and writes a summary row");
            let plan = plan(&request);
            draft_component(
                DraftDeps { llm, checker },
                &request,
                &plan,
                Some("acme"),
                1.0,
            )
            .await
        }

        fn input(draft: &ComponentDraft) -> Value {
            serde_json::to_value(draft).expect("json")
        }

        #[tokio::test]
        async fn a_checked_draft_awaits_approval_at_high_risk_or_more() {
            let llm = llm(Ok(input(&good_draft())));
            let got = outcome(&llm, &TlsChecker).await;
            assert_eq!(got.status, ComponentStatus::AwaitingApproval);
            assert_eq!(got.risk, RiskLevel::High);
            assert_eq!(got.validation, Validation::Passed { findings: vec![] });
            assert_eq!(got.draft, Some(good_draft()));
            assert_eq!(
                (got.usage.cost_usd, got.provider.as_deref()),
                (0.02, Some("fake"))
            );
            let asked = llm.asked.lock().expect("lock");
            assert_eq!(asked[0].tool.name, COMPONENT_TOOL_NAME);
        }

        #[tokio::test]
        async fn blocking_findings_decline_the_draft_and_keep_them() {
            let mut bad = good_draft();
            bad.files[0].content = "import requests\n\ndef handler(event, context):\n    return requests.get(event[\"url\"], verify=False).text\n".into();
            let got = outcome(&llm(Ok(input(&bad))), &TlsChecker).await;
            assert_eq!(got.status, ComponentStatus::Declined);
            assert_eq!(got.risk, RiskLevel::Critical);
            let reason = got.reason.expect("reason");
            assert!(reason.contains("tls_verification at app.py:2"), "{reason}");
            assert!(!got.suggested_alternatives.is_empty());
            assert!(
                matches!(got.validation, Validation::Blocked { findings } if findings.len() == 1)
            );
        }

        #[test]
        fn tls_off_and_critical_findings_decline_a_draft_other_high_ones_do_not() {
            let finding = |rule: &str, risk| FindingSummary {
                rule: rule.into(),
                risk,
                blocking: false,
            };
            assert!(declines_a_draft(&finding(
                "tls_verification",
                RiskLevel::High
            )));
            assert!(declines_a_draft(&finding("secret", RiskLevel::High)));
            assert!(declines_a_draft(&finding("anything", RiskLevel::Critical)));
            assert!(!declines_a_draft(&finding("egress_host", RiskLevel::High)));
        }

        #[tokio::test]
        async fn without_a_checker_validation_is_pending_not_skipped() {
            let got = outcome(&llm(Ok(input(&good_draft()))), &NoCodeChecker).await;
            assert_eq!(got.status, ComponentStatus::AwaitingApproval);
            assert!(
                matches!(got.validation, Validation::Pending { .. }),
                "{:?}",
                got.validation
            );
        }

        #[tokio::test]
        async fn no_draft_is_a_failure_with_the_reason_and_alternatives() {
            let got = outcome(&llm(Err("throttled".into())), &TlsChecker).await;
            assert_eq!(got.status, ComponentStatus::Failed);
            assert_eq!(
                got.reason.as_deref(),
                Some("Retryable: LLM unavailable: throttled")
            );
            assert!(got.suggested_alternatives[0].starts_with("retry later"));
            let got = outcome(&llm(Ok(json!({"files": "app.py"}))), &TlsChecker).await;
            assert_eq!(got.status, ComponentStatus::Failed);
            let reason = got.reason.expect("reason");
            assert!(
                reason.contains("at `files`") && reason.contains("fake:"),
                "{reason}"
            );
            // The call was paid for: its usage stays with the failure.
            assert_eq!(got.usage.cost_usd, 0.02);
            let mut costly = llm(Ok(input(&good_draft())));
            costly.cost_usd = 1.5;
            let got = outcome(&costly, &TlsChecker).await;
            assert!(got.reason.expect("reason").starts_with("BudgetExceeded: "));
        }
    }
}
