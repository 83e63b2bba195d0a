//! validate (R8): config bounds, protected functions, tenant scope, a risk level with
//! findings, and the approval policy.
//!
//! Policy: SAFE/LOW deploy on their own (when `ENABLE_AUTONOMOUS_IMPROVEMENTS` is on),
//! MEDIUM needs `MEDIUM_RISK_APPROVALS`, HIGH one approval, CRITICAL two; a system-wide
//! change (made by a cycle without a tenant) always needs at least one. A code patch is
//! judged on what the [`CodeChecker`](crate::ports::CodeChecker) found, under
//! [`code_policy`](crate::code_policy): blocking findings refuse it outright, scope raises
//! its risk; one that passes is held for review until code delivery exists.

use tracing::{info, instrument};

use crate::change::{Change, CodeBase, LambdaConfigChange, LambdaSettings, RiskLevel};
use crate::code_policy::{CodePolicy, FindingSummary, PatchScope, approvals_for, overall_risk};
use crate::config::Config;
use crate::improvement::{Finding, ImprovementItem, Validation, ValidationDecision};
use crate::ports::{
    CheckError, CodeCheck, CodeChecker, CodeFinding, CodeSource, CodeSourceError, PatchUnderReview,
};

/// Lambda's memory bounds in MB.
pub const MEMORY_MB: (u32, u32) = (128, 10_240);
/// Lambda's timeout bound in seconds.
pub const MAX_TIMEOUT_SECONDS: u32 = 900;
/// The largest memory factor one cycle may apply (up ×4, down ÷2).
pub const MEMORY_STEP: (f64, f64) = (4.0, 0.5);
/// The largest timeout factor one cycle may apply.
pub const TIMEOUT_STEP: f64 = 10.0;

fn finding(rule: &str, risk: RiskLevel, message: String, location: Option<&str>) -> Finding {
    Finding {
        rule: rule.to_owned(),
        risk,
        message,
        location: location.map(str::to_owned),
        blocking: false,
    }
}

/// The rules whose findings refuse a change outright, whatever approvers say.
const REFUSING_RULES: [&str; 6] = [
    "config_bounds",
    "code_validation",
    "tenant_scope",
    "protected_function",
    "target_exists",
    "proposal_present",
];

/// Judges the item's proposal; never errors: problems are findings. `code` is what the
/// checker found when the proposal is a code patch (none: nobody checked it, and it is
/// refused).
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub fn validate(item: &ImprovementItem, config: &Config, code: Option<&CodeCheck>) -> Validation {
    let mut findings = Vec::new();
    let before = item.opportunity.current.clone();
    let Some(generated) = &item.generated else {
        findings.push(finding(
            "proposal_present",
            RiskLevel::Critical,
            "no proposal to validate".into(),
            None,
        ));
        return verdict(item, config, findings, before, None, None);
    };
    let proposal = &generated.proposal;
    let target = proposal.change.target();

    if target != &item.opportunity.component {
        findings.push(finding(
            "tenant_scope",
            RiskLevel::Critical,
            format!(
                "the change targets {target} but the opportunity is on {}; a change may touch only its own component",
                item.opportunity.component
            ),
            Some("change.function"),
        ));
    }
    if let Some(p) = config
        .protected_functions
        .iter()
        .find(|p| p.matches(target.as_str()))
    {
        findings.push(finding(
            "protected_function",
            RiskLevel::Critical,
            format!("{target} is protected (PROTECTED_FUNCTIONS pattern {p:?})"),
            Some("change.function"),
        ));
    }
    if !(0.0..=1.0).contains(&proposal.expected_gain) {
        findings.push(finding(
            "proposal_shape",
            RiskLevel::Medium,
            format!("expected_gain {} is outside 0-1", proposal.expected_gain),
            Some("expected_gain"),
        ));
    }

    let mut scope = None;
    let after = match &proposal.change {
        Change::CodePatch { files, .. } => {
            match code {
                Some(check) => {
                    findings.extend(check.findings.iter().map(code_finding));
                    scope = Some((check.scope, check.base.clone()));
                    // A shipped patch keeps the function's settings: without them there is
                    // nothing to publish the new code with.
                    if check.base.is_deliverable() && before.is_none() {
                        findings.push(finding(
                            "target_exists",
                            RiskLevel::Critical,
                            format!("{target} is not a deployed Lambda function with known settings"),
                            Some("change.component"),
                        ));
                    }
                }
                None => findings.push(finding(
                    "code_validation",
                    RiskLevel::Critical,
                    format!(
                        "the code patch ({} file(s)) was not checked by the code validation pipeline; refused",
                        files.len()
                    ),
                    files.first().map(|f| f.path.as_str()),
                )),
            }
            before.clone()
        }
        Change::LambdaConfig { config: change, .. } => match &before {
            None => {
                findings.push(finding(
                    "target_exists",
                    RiskLevel::Critical,
                    format!("{target} is not a deployed Lambda function with known settings"),
                    Some("change.function"),
                ));
                None
            }
            Some(current) => {
                config_findings(change, current, &mut findings);
                Some(change.apply(current))
            }
        },
    };

    let computed = risk_of(&findings, scope.as_ref().map(|(s, _)| s));
    if proposal.claimed_risk < computed {
        findings.push(finding(
            "claimed_risk",
            RiskLevel::Safe,
            format!(
                "the proposal claimed {} but validation found {}",
                proposal.claimed_risk.as_str(),
                computed.as_str()
            ),
            Some("claimed_risk"),
        ));
    }
    verdict(item, config, findings, before, after, scope)
}

/// A checker's finding as a validation finding located at `path:line:col`.
fn code_finding(f: &CodeFinding) -> Finding {
    Finding {
        rule: f.summary.rule.clone(),
        risk: f.summary.risk,
        message: f.message.clone(),
        location: Some(format!("{}:{}:{}", f.path, f.line, f.col)),
        blocking: f.summary.blocking,
    }
}

/// The overall risk: the highest finding, or for a code patch the code policy's (scope
/// raises it, a protected path makes it CRITICAL).
fn risk_of(findings: &[Finding], scope: Option<&PatchScope>) -> RiskLevel {
    match scope {
        Some(scope) => {
            let summaries: Vec<FindingSummary> = findings
                .iter()
                .map(|f| FindingSummary {
                    rule: f.rule.clone(),
                    risk: f.risk,
                    blocking: f.blocking,
                })
                .collect();
            overall_risk(&summaries, scope)
        }
        None => findings
            .iter()
            .map(|f| f.risk)
            .max()
            .unwrap_or(RiskLevel::Safe),
    }
}

/// What the checker finds in the item's proposal when it is a code patch (none for any other
/// change): the deployed files it touches are read, then checked. A patch that cannot be read
/// or checked is one refusing finding; only an unavailable code source is an error (worth a
/// retry).
pub async fn check_code_patch(
    code: &dyn CodeSource,
    checker: &dyn CodeChecker,
    item: &ImprovementItem,
) -> Result<Option<CodeCheck>, CodeSourceError> {
    let Some(Change::CodePatch {
        component,
        files,
        handler,
    }) = item.generated.as_ref().map(|g| &g.proposal.change)
    else {
        return Ok(None);
    };
    let first = files.first().map_or("", |f| f.path.as_str());
    let refusal = |rule: &str, message: String| CodeCheck {
        findings: vec![CodeFinding {
            summary: FindingSummary {
                rule: rule.to_owned(),
                risk: RiskLevel::Critical,
                blocking: true,
            },
            path: first.to_owned(),
            line: 1,
            col: 1,
            message,
        }],
        scope: PatchScope {
            files: files.len(),
            ..Default::default()
        },
        base: CodeBase::default(),
    };
    if files.is_empty() {
        return Ok(Some(refusal(
            "patch_applies",
            "the patch has no file".into(),
        )));
    }
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let deployed = match code.deployed_files(component, &paths).await {
        Ok(deployed) => deployed,
        Err(e @ CodeSourceError::Unavailable(_)) => return Err(e),
        Err(e @ CodeSourceError::Rejected(_)) => {
            return Ok(Some(refusal(
                "code_source",
                format!("the deployed code of {component} could not be read: {e}"),
            )));
        }
    };
    // The deployed configuration is the truth; the proposer's word only when it has none.
    let patch = PatchUnderReview {
        files,
        bases: &deployed.files,
        handler: deployed.handler.as_deref().or(handler.as_deref()),
        tenant: item.tenant_id.as_ref().map(|t| t.as_str()),
    };
    let mut check = match checker.check(&patch) {
        Ok(check) => check,
        Err(CheckError::Malformed(m)) => refusal("patch_applies", m),
        Err(CheckError::Unavailable(m)) => refusal("code_validation", m),
    };
    check.base = deployed.base;
    Ok(Some(check))
}

fn config_findings(change: &LambdaConfigChange, current: &LambdaSettings, out: &mut Vec<Finding>) {
    if change.is_empty() {
        out.push(finding(
            "config_bounds",
            RiskLevel::High,
            "the change sets nothing".into(),
            Some("change.config"),
        ));
    }
    if let Some(m) = change.memory_mb {
        let at = Some("change.config.memory_mb");
        if !(MEMORY_MB.0..=MEMORY_MB.1).contains(&m) {
            out.push(finding(
                "config_bounds",
                RiskLevel::Critical,
                format!(
                    "memory {m} MB is outside {}-{} MB",
                    MEMORY_MB.0, MEMORY_MB.1
                ),
                at,
            ));
        } else {
            let factor = f64::from(m) / f64::from(current.memory_mb.max(1));
            if factor > MEMORY_STEP.0 || factor < MEMORY_STEP.1 {
                out.push(finding(
                    "step_limit",
                    RiskLevel::High,
                    format!(
                        "memory {}→{m} MB is a ×{factor:.2} step; one cycle may change memory by ×{}–×{}",
                        current.memory_mb, MEMORY_STEP.1, MEMORY_STEP.0
                    ),
                    at,
                ));
            } else if m < current.memory_mb {
                out.push(finding(
                    "memory_decrease",
                    RiskLevel::Medium,
                    format!(
                        "memory {}→{m} MB: less memory also means less CPU; latency and out-of-memory risk rise",
                        current.memory_mb
                    ),
                    at,
                ));
            } else if m > current.memory_mb {
                out.push(finding(
                    "memory_increase",
                    RiskLevel::Low,
                    format!("memory {}→{m} MB raises cost per ms", current.memory_mb),
                    at,
                ));
            }
        }
    }
    if let Some(t) = change.timeout_seconds {
        let at = Some("change.config.timeout_seconds");
        if t == 0 || t > MAX_TIMEOUT_SECONDS {
            out.push(finding(
                "config_bounds",
                RiskLevel::Critical,
                format!("timeout {t} s is outside 1-{MAX_TIMEOUT_SECONDS} s"),
                at,
            ));
        } else if f64::from(t) > f64::from(current.timeout_seconds) * TIMEOUT_STEP {
            out.push(finding(
                "step_limit",
                RiskLevel::High,
                format!(
                    "timeout {}→{t} s is more than ×{TIMEOUT_STEP} in one cycle",
                    current.timeout_seconds
                ),
                at,
            ));
        } else if t < current.timeout_seconds {
            out.push(finding(
                "timeout_decrease",
                RiskLevel::Medium,
                format!(
                    "timeout {}→{t} s may cut off invocations that succeed today",
                    current.timeout_seconds
                ),
                at,
            ));
        } else if t > current.timeout_seconds {
            out.push(finding(
                "timeout_increase",
                RiskLevel::Low,
                format!("timeout {}→{t} s", current.timeout_seconds),
                at,
            ));
        }
    }
    if let Some(c) = change.reserved_concurrency {
        let at = Some("change.config.reserved_concurrency");
        if c == 0 {
            out.push(finding(
                "reserved_concurrency",
                RiskLevel::Critical,
                "reserved concurrency 0 stops the function".into(),
                at,
            ));
        } else {
            // Concurrency is function-wide in Lambda, not per version: it cannot be canaried.
            out.push(finding(
                "reserved_concurrency",
                RiskLevel::Medium,
                format!(
                    "reserved concurrency {}→{c} applies to every version at once and takes capacity from the account pool",
                    current
                        .reserved_concurrency
                        .map_or_else(|| "none".to_owned(), |v| v.to_string())
                ),
                at,
            ));
        }
    }
    for (key, value) in &change.environment {
        let at = Some("change.config.environment");
        if looks_like_secret(value) {
            out.push(finding(
                "secret_detection",
                RiskLevel::Critical,
                format!(
                    "environment {key} holds what looks like a credential; use Secrets Manager"
                ),
                at,
            ));
        } else {
            out.push(finding(
                "environment_change",
                RiskLevel::Medium,
                format!("environment {key} changes behaviour outside the code's review"),
                at,
            ));
        }
    }
}

/// Common credential shapes: AWS access keys, GitHub, Slack, OpenAI and Anthropic tokens,
/// private keys.
pub fn looks_like_secret(text: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "AKIA",
        "ASIA",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "sk-ant-",
        "sk-proj-",
        "sk-",
    ];
    text.contains("-----BEGIN") && text.contains("PRIVATE KEY")
        || text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-')
            .any(|word| {
                PREFIXES.iter().any(|p| {
                    word.starts_with(p)
                        && word.len() >= p.len() + 16
                        && word[p.len()..]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
            })
}

fn verdict(
    item: &ImprovementItem,
    config: &Config,
    findings: Vec<Finding>,
    before: Option<LambdaSettings>,
    after: Option<LambdaSettings>,
    code: Option<(PatchScope, CodeBase)>,
) -> Validation {
    let risk = risk_of(&findings, code.as_ref().map(|(s, _)| s));
    let code_base = code.map(|(_, base)| base);
    let is_code = code_base.is_some();
    let refused = findings
        .iter()
        .any(|f| f.blocking || REFUSING_RULES.contains(&f.rule.as_str()))
        || after.is_none() && !is_code;
    let mut approvals_required = approvals_for(risk, &CodePolicy::from_config(config));
    // A change made by a cycle without a tenant may affect every tenant.
    if item.tenant_id.is_none() {
        approvals_required = approvals_required.max(1);
    }
    // No approval can ship a refused change.
    if refused {
        approvals_required = 0;
    }
    let decision = if refused {
        ValidationDecision::Rejected
    } else if approvals_required > 0 {
        ValidationDecision::NeedsApproval
    } else {
        ValidationDecision::AutoDeploy
    };
    info!(
        risk = risk.as_str(),
        ?decision,
        findings = findings.len(),
        "validated"
    );
    Validation {
        risk,
        findings,
        approvals_required,
        decision,
        before,
        after,
        held_for_review: !refused && code_base.as_ref().is_some_and(|b| !b.is_deliverable()),
        code_base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{FilePatch, Proposal};
    use crate::code_policy::{FindingSummary, PatchScope};
    use crate::cycle::CycleMode;
    use crate::ids::{ComponentId, CycleId, TenantId};
    use crate::improvement::{Generated, LlmUsage};
    use crate::opportunity::{Opportunity, OpportunityKind, Priority};
    use crate::ports::{CodeCheck, CodeFinding};

    fn item(change: Change, claimed: RiskLevel, tenant: Option<&str>) -> ImprovementItem {
        let component = ComponentId::parse("orders-api").unwrap();
        ImprovementItem {
            cycle_id: CycleId::parse("c1").unwrap(),
            tenant_id: tenant.map(|t| TenantId::parse(t).unwrap()),
            mode: CycleMode::Routine,
            dry_run: false,
            opportunity: Opportunity {
                id: "orders-api:timeouts".into(),
                rank: 1,
                component,
                tenant_id: None,
                kind: OpportunityKind::Timeouts,
                evidence: vec![],
                expected_gain: 0.9,
                affected_requests: 100.0,
                impact_score: 90.0,
                priority: Priority::High,
                current: Some(LambdaSettings {
                    memory_mb: 128,
                    timeout_seconds: 3,
                    reserved_concurrency: None,
                    environment: Default::default(),
                }),
                top_errors: vec![],
                stack_traces: vec![],
                agents: vec![],
            },
            generated: Some(Generated {
                improvement_id: "c1-1".parse().unwrap(),
                proposal: Proposal {
                    change,
                    rationale: "r".into(),
                    expected_gain: 0.5,
                    claimed_risk: claimed,
                },
                provider: "test".into(),
                usage: LlmUsage::default(),
                repair_rounds: 0,
            }),
            validation: None,
            approval: None,
            deploy: None,
            monitor: None,
        }
    }

    fn config_change(config: LambdaConfigChange) -> Change {
        Change::LambdaConfig {
            function: ComponentId::parse("orders-api").unwrap(),
            config,
        }
    }

    fn autonomous() -> Config {
        Config::from_lookup(|k| (k == "ENABLE_AUTONOMOUS_IMPROVEMENTS").then(|| "true".into()))
            .unwrap()
    }

    #[test]
    fn a_timeout_and_memory_increase_is_low_risk_and_deploys_itself() {
        let change = config_change(LambdaConfigChange {
            memory_mb: Some(512),
            timeout_seconds: Some(10),
            ..Default::default()
        });
        let v = validate(
            &item(change, RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.risk, RiskLevel::Low);
        assert_eq!(v.decision, ValidationDecision::AutoDeploy);
        assert_eq!(v.after.unwrap().timeout_seconds, 10);
    }

    #[test]
    fn without_the_autonomy_flag_every_change_waits_for_approval() {
        let change = config_change(LambdaConfigChange {
            timeout_seconds: Some(10),
            ..Default::default()
        });
        let v = validate(
            &item(change, RiskLevel::Low, Some("acme")),
            &Config::default(),
            None,
        );
        assert_eq!(v.decision, ValidationDecision::NeedsApproval);
        assert_eq!(v.approvals_required, 1);
    }

    #[test]
    fn system_wide_changes_always_need_approval() {
        let change = config_change(LambdaConfigChange {
            timeout_seconds: Some(10),
            ..Default::default()
        });
        let v = validate(&item(change, RiskLevel::Low, None), &autonomous(), None);
        assert_eq!(v.decision, ValidationDecision::NeedsApproval);
    }

    #[test]
    fn out_of_bounds_and_oversized_steps_are_refused_or_escalated() {
        let change = config_change(LambdaConfigChange {
            memory_mb: Some(20_000),
            ..Default::default()
        });
        let v = validate(
            &item(change, RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.decision, ValidationDecision::Rejected);
        assert_eq!(
            v.findings[0].location.as_deref(),
            Some("change.config.memory_mb")
        );

        let change = config_change(LambdaConfigChange {
            memory_mb: Some(1024),
            ..Default::default()
        });
        let v = validate(
            &item(change, RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.risk, RiskLevel::High);
        assert_eq!(v.approvals_required, 1);
        assert!(v.findings.iter().any(|f| f.rule == "claimed_risk"));
    }

    #[test]
    fn a_memory_cut_is_medium_risk() {
        let mut it = item(
            config_change(LambdaConfigChange {
                memory_mb: Some(128),
                ..Default::default()
            }),
            RiskLevel::Low,
            Some("acme"),
        );
        it.opportunity.current.as_mut().unwrap().memory_mb = 256;
        let v = validate(&it, &autonomous(), None);
        assert_eq!(v.risk, RiskLevel::Medium);
        assert_eq!(v.decision, ValidationDecision::NeedsApproval);
    }

    fn patch() -> Change {
        Change::CodePatch {
            component: ComponentId::parse("orders-api").unwrap(),
            files: vec![FilePatch {
                path: "src/handler.py".into(),
                language: Some("python".into()),
                diff: "--- a/src/handler.py\n+++ b/src/handler.py\n@@ -1 +1 @@\n-a\n+b\n".into(),
            }],
            handler: None,
        }
    }

    fn check(findings: &[(&str, RiskLevel, bool)], scope: PatchScope) -> CodeCheck {
        CodeCheck {
            base: Default::default(),
            findings: findings
                .iter()
                .map(|&(rule, risk, blocking)| CodeFinding {
                    summary: FindingSummary {
                        rule: rule.into(),
                        risk,
                        blocking,
                    },
                    path: "src/handler.py".into(),
                    line: 7,
                    col: 5,
                    message: format!("{rule} here"),
                })
                .collect(),
            scope,
        }
    }

    const ONE_FILE: PatchScope = PatchScope {
        files: 1,
        handler_changed: false,
        new_dependency: false,
    };

    #[test]
    fn an_unchecked_code_patch_is_refused_with_a_clear_finding() {
        let v = validate(
            &item(patch(), RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.decision, ValidationDecision::Rejected);
        assert!(!v.held_for_review);
        assert!(v.findings.iter().any(|f| f.rule == "code_validation"));
    }

    #[test]
    fn a_clean_patch_to_compiled_or_unknown_code_passes_and_is_held_for_review() {
        let it = item(patch(), RiskLevel::Low, Some("acme"));
        for runtime in [None, Some("provided.al2023"), Some("java21")] {
            let mut checked = check(&[], ONE_FILE);
            checked.base.runtime = runtime.map(str::to_owned);
            let v = validate(&it, &autonomous(), Some(&checked));
            assert_eq!(v.decision, ValidationDecision::AutoDeploy, "{runtime:?}");
            assert_eq!(v.risk, RiskLevel::Safe);
            assert!(v.held_for_review, "{runtime:?}");
        }
    }

    #[test]
    fn a_clean_patch_to_python_or_node_code_ships_with_the_settings_unchanged() {
        let it = item(patch(), RiskLevel::Low, Some("acme"));
        for runtime in ["python3.12", "nodejs22.x"] {
            let mut checked = check(&[], ONE_FILE);
            checked.base = CodeBase {
                code_sha256: Some("abc=".into()),
                runtime: Some(runtime.into()),
            };
            let v = validate(&it, &autonomous(), Some(&checked));
            assert_eq!(v.decision, ValidationDecision::AutoDeploy, "{runtime}");
            assert!(!v.held_for_review, "{runtime}");
            assert_eq!(v.after, v.before);
            assert_eq!(v.code_base, Some(checked.base.clone()));
        }
        // Without the function's settings there is nothing to publish the code with.
        let mut unknown = item(patch(), RiskLevel::Low, Some("acme"));
        unknown.opportunity.current = None;
        let mut checked = check(&[], ONE_FILE);
        checked.base.runtime = Some("python3.12".into());
        let v = validate(&unknown, &autonomous(), Some(&checked));
        assert_eq!(v.decision, ValidationDecision::Rejected);
        assert!(v.findings.iter().any(|f| f.rule == "target_exists"));
    }

    #[test]
    fn a_blocking_finding_refuses_the_patch_whatever_its_risk() {
        let it = item(patch(), RiskLevel::Critical, Some("acme"));
        let v = validate(
            &it,
            &autonomous(),
            Some(&check(
                &[("code_execution", RiskLevel::Low, true)],
                ONE_FILE,
            )),
        );
        assert_eq!(v.decision, ValidationDecision::Rejected);
        assert!(!v.held_for_review);
        let f = &v.findings[0];
        assert_eq!(f.location.as_deref(), Some("src/handler.py:7:5"));
        assert!(f.blocking);
        // The same rule reported as pre-existing (not blocking) does not refuse.
        let v = validate(
            &it,
            &autonomous(),
            Some(&check(
                &[("code_execution", RiskLevel::Low, false)],
                ONE_FILE,
            )),
        );
        assert_eq!(v.decision, ValidationDecision::AutoDeploy);
    }

    #[test]
    fn code_risk_follows_the_code_policy() {
        // A protected path is CRITICAL: two approvers.
        let it = item(patch(), RiskLevel::Low, Some("acme"));
        let v = validate(
            &it,
            &autonomous(),
            Some(&check(
                &[("protected_path", RiskLevel::High, false)],
                ONE_FILE,
            )),
        );
        assert_eq!((v.risk, v.approvals_required), (RiskLevel::Critical, 2));
        assert_eq!(v.decision, ValidationDecision::NeedsApproval);
        assert!(v.held_for_review);
        assert!(v.findings.iter().any(|f| f.rule == "claimed_risk"));
        // A handler change lifts a clean patch to LOW; many files to MEDIUM.
        let handler = PatchScope {
            handler_changed: true,
            ..ONE_FILE
        };
        let v = validate(&it, &autonomous(), Some(&check(&[], handler)));
        assert_eq!(v.risk, RiskLevel::Low);
        let many = PatchScope {
            files: 9,
            ..ONE_FILE
        };
        let v = validate(&it, &autonomous(), Some(&check(&[], many)));
        assert_eq!((v.risk, v.approvals_required), (RiskLevel::Medium, 1));
        // A system-wide patch always waits for a person.
        let system = item(patch(), RiskLevel::Low, None);
        let v = validate(&system, &autonomous(), Some(&check(&[], ONE_FILE)));
        assert_eq!(v.decision, ValidationDecision::NeedsApproval);
    }

    #[test]
    fn other_components_protected_functions_and_secrets() {
        let other = Change::LambdaConfig {
            function: ComponentId::parse("billing").unwrap(),
            config: LambdaConfigChange {
                timeout_seconds: Some(10),
                ..Default::default()
            },
        };
        let v = validate(
            &item(other, RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.decision, ValidationDecision::Rejected);
        assert!(v.findings.iter().any(|f| f.rule == "tenant_scope"));

        let protected = Config::from_lookup(|k| match k {
            "PROTECTED_FUNCTIONS" => Some("orders-*".into()),
            "ENABLE_AUTONOMOUS_IMPROVEMENTS" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        let change = config_change(LambdaConfigChange {
            timeout_seconds: Some(10),
            ..Default::default()
        });
        let v = validate(
            &item(change, RiskLevel::Low, Some("acme")),
            &protected,
            None,
        );
        assert_eq!(v.decision, ValidationDecision::Rejected);

        let secret = config_change(LambdaConfigChange {
            environment: [("KEY".to_owned(), "AKIAABCDEFGHIJKLMNOP".to_owned())].into(),
            ..Default::default()
        });
        let v = validate(
            &item(secret, RiskLevel::Low, Some("acme")),
            &autonomous(),
            None,
        );
        assert_eq!(v.risk, RiskLevel::Critical);
        assert_eq!(v.approvals_required, 2);
    }

    #[test]
    fn secret_shapes() {
        assert!(looks_like_secret("ghp_abcdefghijklmnopqrstuvwxyz0123"));
        assert!(looks_like_secret("-----BEGIN RSA PRIVATE KEY-----\nabc"));
        assert!(looks_like_secret("token=xoxb-1234567890-abcdefghij"));
        assert!(!looks_like_secret("production"));
        assert!(!looks_like_secret("sk-short"));
    }
}
