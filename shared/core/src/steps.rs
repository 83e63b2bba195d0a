//! The cycle's Lambda functions as the state machine calls them: one request type per
//! function (tagged by `action` where a function serves several states) and one entry point
//! each, shared by the Lambda binaries and the embedded runner.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::analyze::{AnalysisReport, analyze};
use crate::audit::{AuditEvent, AuditLog, Notifier};
use crate::canary::{CanaryDeps, CanaryError, deploy, monitor, promote, rollback};
use crate::clock::Clock;
use crate::config::Config;
use crate::cycle::{CycleRequest, CycleStatus};
use crate::emf::{MetricRecord, MetricSink, Unit};
use crate::error::{StableError, StoreError, TelemetryError};
use crate::generate::{Llm, LlmError, generate};
use crate::ids::CycleId;
use crate::improvement::{
    DeployStatus, Generated, ImprovementItem, MonitorReport, PromoteOutcome, PromoteStatus,
    Validation, Verdict,
};
use crate::ports::{Deployer, Telemetry};
use crate::records::{
    CircuitState, CycleProgress, ImprovementRecord, ImprovementStatus, ImprovementStore,
    UsageLedger,
};
use crate::text::Escaped;
use crate::validate::validate;

/// A step failed; `error_type` is what the state machine's Retry/Catch match.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The payload is not what this function takes; names the field.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Telemetry failed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The LLM failed or the budget was exceeded.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// A canary step failed.
    #[error(transparent)]
    Canary(#[from] CanaryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Automatic rollback is turned off.
    #[error("{0}")]
    RollbackDisabled(String),
    /// The halt switch is on: this item goes no further.
    #[error("{0}")]
    Halted(String),
}

impl StableError for StepError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::Telemetry(e) => e.error_type(),
            Self::Llm(e) => e.error_type(),
            Self::Canary(e) => e.error_type(),
            Self::Store(e) => e.error_type(),
            Self::RollbackDisabled(_) => "RollbackDisabled",
            Self::Halted(_) => "Halted",
        }
    }
}

/// Parses a step's payload, naming the failing field.
pub fn parse_payload<T: for<'de> Deserialize<'de>>(payload: &Value) -> Result<T, StepError> {
    serde_path_to_error::deserialize(payload).map_err(|e| {
        let path = e.path().to_string();
        StepError::InvalidInput(format!("{path}: {}", e.into_inner()))
    })
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, StepError> {
    serde_json::to_value(value).map_err(|e| StepError::InvalidInput(format!("result: {e}")))
}

/// The `validate` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ValidateRequest {
    /// Judge the item's proposal.
    Validate {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Record the task token of a change that waits for approval.
    RequestApproval {
        /// The token the state machine waits on.
        task_token: String,
        /// The Map item.
        item: Box<ImprovementItem>,
    },
}

/// The `deploy` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DeployRequest {
    /// Ship the validated settings as a canary.
    Deploy {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Shift all traffic to the canary.
    Promote {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
}

/// The `monitor` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MonitorRequest {
    /// Compare canary and stable.
    Monitor {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Summarise the finished cycle.
    Summarize {
        /// The whole execution state at the end.
        cycle: Value,
    },
}

/// The `rollback` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RollbackRequest {
    /// Restore the baseline.
    Rollback {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Undo what a failed deploy left, and audit the failure.
    UndoDeploy {
        /// The Map item.
        item: Box<ImprovementItem>,
        /// The deploy's failure as the state machine caught it (`Error`, `Cause`).
        #[serde(default)]
        failure: Option<Value>,
    },
}

/// One improvement's line in the cycle summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImprovementSummary {
    /// `<cycle>-<rank>`.
    pub improvement_id: String,
    /// The opportunity, `<component>:<kind>`.
    pub opportunity: String,
    /// The change, in words.
    pub change: Option<String>,
    /// The risk validation found.
    pub risk: Option<String>,
    /// auto_deploy, needs_approval or rejected.
    pub decision: Option<String>,
    /// promoted, rolled_back, rejected, … or `<step>_failed`.
    pub outcome: String,
    /// LLM cost in US dollars.
    pub cost_usd: f64,
}

/// The summary step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// The cycle.
    pub cycle_id: String,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Opportunities found.
    pub opportunities: usize,
    /// Per improvement.
    pub improvements: Vec<ImprovementSummary>,
    /// Promoted improvements.
    pub promoted: usize,
    /// Rolled-back improvements.
    pub rolled_back: usize,
    /// Improvements that ended inconclusive (stable kept, no gain claimed).
    #[serde(default)]
    pub inconclusive: usize,
    /// A step that failed the whole cycle (analysis), if any.
    pub failure: Option<Value>,
}

/// Builds the summary from the execution state the state machine passes at the end.
pub fn summarize(cycle: &Value, now: OffsetDateTime) -> Result<CycleSummary, StepError> {
    let cycle_id = cycle
        .get("cycle_id")
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::InvalidInput("cycle.cycle_id: missing".into()))?
        .to_owned();
    let opportunities = cycle
        .pointer("/analysis/opportunities")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut improvements = Vec::new();
    for raw in cycle
        .get("improvements")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let item: ImprovementItem = parse_payload(raw)?;
        let outcome = raw
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let generated: Option<&Generated> = item.generated.as_ref();
        let validation: Option<&Validation> = item.validation.as_ref();
        improvements.push(ImprovementSummary {
            improvement_id: item.improvement_id(),
            opportunity: item.opportunity.id.clone(),
            change: generated.map(|g| {
                g.proposal
                    .change
                    .describe(item.opportunity.current.as_ref())
            }),
            risk: validation.map(|v| v.risk.as_str().to_owned()),
            decision: validation.and_then(|v| {
                serde_json::to_value(v.decision)
                    .ok()
                    .and_then(|d| d.as_str().map(str::to_owned))
            }),
            outcome,
            cost_usd: generated.map_or(0.0, |g| g.usage.cost_usd),
        });
    }
    let count = |o: &str| improvements.iter().filter(|i| i.outcome == o).count();
    Ok(CycleSummary {
        promoted: count("promoted"),
        rolled_back: count("rolled_back"),
        inconclusive: count("inconclusive"),
        cycle_id,
        finished_at: now,
        opportunities,
        improvements,
        failure: cycle.get("failure").cloned(),
    })
}

/// The ports the cycle's functions use.
#[derive(Clone, Copy)]
pub struct StepDeps<'a> {
    /// Metrics and logs.
    pub telemetry: &'a dyn Telemetry,
    /// Lambda.
    pub deployer: &'a dyn Deployer,
    /// Proposals.
    pub llm: &'a dyn Llm,
    /// The halt switch.
    pub halt: &'a dyn crate::ports::HaltSwitch,
    /// Pending approvals.
    pub approvals: &'a dyn crate::approval::ApprovalStore,
    /// Audit events.
    pub audit: &'a dyn AuditLog,
    /// Notifications for other agents.
    pub notifier: &'a dyn Notifier,
    /// Each improvement's latest state.
    pub improvements: &'a dyn ImprovementStore,
    /// LLM spend per day.
    pub usage: &'a dyn UsageLedger,
    /// Cycle completion.
    pub cycles: &'a dyn CycleProgress,
    /// Where the R19 metrics go (EMF on Lambda).
    pub metrics: &'a dyn MetricSink,
    /// The time.
    pub clock: &'a dyn Clock,
}

impl StepDeps<'_> {
    /// Appends an audit event for `item` and stores its new status (failing the step if either
    /// cannot be written) and, when `notify` names a detail-type, notifies (a failed
    /// notification is only logged).
    async fn record(
        &self,
        item: &ImprovementItem,
        action: &str,
        before: Option<Value>,
        after: Option<Value>,
        detail: String,
        notify: Option<&str>,
    ) -> Result<(), StepError> {
        let status = ImprovementStatus::after_action(action);
        self.record_status(item, action, status, before, after, detail, notify)
            .await
    }

    /// [`Self::record`] with the status given rather than derived from the action.
    #[allow(clippy::too_many_arguments)]
    async fn record_status(
        &self,
        item: &ImprovementItem,
        action: &str,
        status: Option<ImprovementStatus>,
        before: Option<Value>,
        after: Option<Value>,
        detail: String,
        notify: Option<&str>,
    ) -> Result<(), StepError> {
        let event = AuditEvent {
            at: self.clock.now(),
            tenant_id: item.tenant_id.clone(),
            cycle_id: item.cycle_id.clone(),
            improvement_id: Some(item.improvement_id()),
            actor: format!("selfbuild:{}", action_function(action)),
            action: action.to_owned(),
            before,
            after,
            detail,
        };
        self.audit.append(&event).await?;
        if let Some(status) = status {
            let record = ImprovementRecord::of_item(item, status, event.at);
            self.improvements.put_improvement(&record).await?;
        }
        if let Some(detail_type) = notify {
            let body = serde_json::to_value(&event).unwrap_or(Value::Null);
            if let Err(e) = self.notifier.notify(detail_type, &body).await {
                tracing::warn!(error = %Escaped(&e), detail_type, "notification failed");
            }
        }
        Ok(())
    }

    /// Audits a look that found the halt switch on, with the function as the halt found it
    /// and, when frozen, as it stays.
    async fn halted_in_flight(
        &self,
        item: &ImprovementItem,
        report: &MonitorReport,
    ) -> Result<(), StepError> {
        let state = self.function_state_for_audit(item).await;
        let (status, after) = if report.verdict == Verdict::Frozen {
            (ImprovementStatus::Frozen, state.clone())
        } else {
            (ImprovementStatus::Halted, None)
        };
        let detail = report.reason.clone();
        self.record_status(
            item,
            "halted_in_flight",
            Some(status),
            state,
            after,
            detail,
            None,
        )
        .await
    }

    /// The item's function as deployed now, for an audit event's before/after; none when it
    /// cannot be read (the change the event records has happened either way).
    async fn function_state_for_audit(&self, item: &ImprovementItem) -> Option<Value> {
        match self
            .deployer
            .function_state(&item.opportunity.component)
            .await
        {
            Ok(state) => serde_json::to_value(state).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "function state not read for the audit");
                None
            }
        }
    }

    /// Audits a rollback (or an undo) that failed, with the function as the failure left it,
    /// and gives the step's error back: the state machine retries it or catches it to
    /// `RollbackFailed`, and the audit says so either way. A failed audit write is logged,
    /// never put in the rollback's error's place.
    async fn rollback_failed(
        &self,
        item: &ImprovementItem,
        what: &str,
        error: CanaryError,
    ) -> StepError {
        let left = self.function_state_for_audit(item).await;
        let detail = format!("{what} failed ({}): {error}", error.error_type());
        if let Err(e) = self
            .record(item, "rollback_failed", left, None, detail, None)
            .await
        {
            tracing::warn!(error = %Escaped(&e), "rollback failure not audited");
        }
        error.into()
    }

    /// Records one metric without dimensions (the operations alarms read them fleet-wide).
    fn metric(&self, name: &'static str, unit: Unit, value: f64) {
        self.metrics.record(MetricRecord {
            name,
            unit,
            value,
            dimensions: Vec::new(),
            timestamp: self.clock.now(),
        });
    }

    fn canary(&self) -> CanaryDeps<'_> {
        CanaryDeps {
            deployer: self.deployer,
            telemetry: self.telemetry,
            halt: self.halt,
            clock: self.clock,
        }
    }
}

/// The cycle's functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFunction {
    /// analyze
    Analyze,
    /// generate
    Generate,
    /// validate (and request_approval)
    Validate,
    /// deploy (and promote)
    Deploy,
    /// monitor (and summarize)
    Monitor,
    /// rollback
    Rollback,
}

impl StepFunction {
    /// Every step function, in state machine order.
    pub const ALL: [Self; 6] = [
        Self::Analyze,
        Self::Generate,
        Self::Validate,
        Self::Deploy,
        Self::Monitor,
        Self::Rollback,
    ];

    /// The function's name, as in `functions/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Analyze => "analyze",
            Self::Generate => "generate",
            Self::Validate => "validate",
            Self::Deploy => "deploy",
            Self::Monitor => "monitor",
            Self::Rollback => "rollback",
        }
    }

    /// The function with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Runs one of the cycle's functions on its payload.
pub async fn run_step(
    function: StepFunction,
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match function {
        StepFunction::Analyze => {
            let request: CycleRequest = parse_payload(payload)?;
            let report: AnalysisReport = analyze(deps.telemetry, deps.deployer, &request).await?;
            to_value(&report)
        }
        StepFunction::Generate => {
            let item: ImprovementItem = parse_payload(payload)?;
            // A halted cycle's later items stop before the LLM is asked or anything is spent.
            if let Some(halt) = deps.halt.halt_state().await? {
                let detail = format!(
                    "halt switch is on ({}: {}): not generated",
                    halt.actor, halt.reason
                );
                deps.record(&item, "generate_halted", None, None, detail.clone(), None)
                    .await?;
                return Err(StepError::Halted(detail));
            }
            let generated = generate(deps.llm, &item, config.llm_budget_usd).await;
            let providers = deps.llm.provider_health();
            let open = providers
                .iter()
                .filter(|p| p.state == CircuitState::Open)
                .count();
            deps.metric("CircuitBreakerOpen", Unit::Count, open as f64);
            let generated = match generated {
                Ok(generated) => generated,
                // A refused proposal leaves an audit event and a record, as one refused in
                // validate does.
                Err(e @ (LlmError::InvalidAnswer(_) | LlmError::NoProposal(_))) => {
                    let detail = format!("{}: {e}", e.error_type());
                    deps.record(&item, "proposal_refused", None, None, detail, None)
                        .await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            deps.metric("LlmCostUsd", Unit::None, generated.usage.cost_usd);
            // Spend is already incurred: a ledger failure must not lose the proposal.
            if let Err(e) = deps
                .usage
                .record_llm_usage(
                    deps.clock.now(),
                    generated.usage.cost_usd,
                    &providers,
                )
                .await
            {
                tracing::warn!(error = %Escaped(&e), "LLM usage not recorded");
            }
            to_value(&generated)
        }
        StepFunction::Validate => match parse_payload::<ValidateRequest>(payload)? {
            ValidateRequest::Validate { item } => {
                let validation = validate(&item, config);
                let detail = format!(
                    "risk {}, {:?}, {} finding(s)",
                    validation.risk.as_str(),
                    validation.decision,
                    validation.findings.len()
                );
                let before = serde_json::to_value(&validation.before).ok();
                let after = serde_json::to_value(&validation.after).ok();
                let mut validated = (*item).clone();
                validated.validation = Some(validation.clone());
                deps.record(&validated, "validated", before, after, detail, None)
                    .await?;
                to_value(&validation)
            }
            ValidateRequest::RequestApproval { task_token, item } => {
                let pending = crate::approval::request_approval(
                    deps.approvals,
                    &item,
                    &task_token,
                    deps.clock.now(),
                )
                .await?;
                let detail = format!(
                    "{} ({}) needs {} approval(s)",
                    pending.change, pending.risk, pending.approvals_required
                );
                deps.record(&item, "approval_requested", None, None, detail, Some("Approval Needed"))
                    .await?;
                to_value(&pending)
            }
        },
        StepFunction::Deploy => match parse_payload::<DeployRequest>(payload)? {
            DeployRequest::Deploy { item } => {
                let outcome = deploy(deps.canary(), config, &item).await?;
                if outcome.status == DeployStatus::Deployed {
                    deps.metric("ImprovementsDeployed", Unit::Count, 1.0);
                }
                let (action, notify) = match outcome.status {
                    DeployStatus::Deployed => ("deployed", Some("Improvement Deployed")),
                    DeployStatus::Deferred => ("deploy_deferred", None),
                    DeployStatus::Halted => ("deploy_halted", None),
                    DeployStatus::Skipped => ("deploy_skipped", None),
                };
                let deployment = outcome.deployment.as_ref();
                let before = deployment.and_then(|d| serde_json::to_value(&d.baseline).ok());
                let after = deployment.and_then(|d| serde_json::to_value(&d.settings).ok());
                // The record keeps the deployment, so a later rollback can restore its baseline.
                let mut deployed = (*item).clone();
                deployed.deploy = Some(outcome.clone());
                deps.record(&deployed, action, before, after, outcome.reason.clone(), notify)
                    .await?;
                to_value(&outcome)
            }
            DeployRequest::Promote { item } => {
                // A canary rolled back by hand (MCP) while it was watched must stay rolled back.
                if let Some(record) = deps.improvements.get_improvement(&item.improvement_id()).await?
                    && record.status == ImprovementStatus::RolledBack
                {
                    return to_value(&PromoteOutcome {
                        status: PromoteStatus::RolledBack,
                        reason: "rolled back by hand while the canary was watched".into(),
                    });
                }
                let outcome = promote(deps.canary(), &item).await?;
                // Refused while halted: the state machine looks again, and that look applies
                // HALT_IN_FLIGHT (or judges anew after a resume).
                if outcome.status == PromoteStatus::Promoted {
                    deps.record(&item, "promoted", None, None, "canary promoted to 100 %".into(), None)
                        .await?;
                }
                to_value(&outcome)
            }
        },
        StepFunction::Monitor => match parse_payload::<MonitorRequest>(payload)? {
            MonitorRequest::Monitor { item } => {
                let report = monitor(deps.canary(), config, &item).await?;
                if matches!(report.verdict, Verdict::Halted | Verdict::Frozen) {
                    deps.halted_in_flight(&item, &report).await?;
                }
                to_value(&report)
            }
            MonitorRequest::Summarize { cycle } => {
                let summary = summarize(&cycle, deps.clock.now())?;
                record_summary_metrics(&deps, &cycle, &summary);
                let status = if summary.failure.is_some() {
                    CycleStatus::Failed
                } else {
                    CycleStatus::Succeeded
                };
                let id = CycleId::parse(&summary.cycle_id)
                    .map_err(|e| StepError::InvalidInput(format!("cycle.cycle_id: {e}")))?;
                deps.cycles
                    .finish_cycle(&id, status, summary.finished_at)
                    .await?;
                to_value(&summary)
            }
        },
        StepFunction::Rollback => match parse_payload::<RollbackRequest>(payload)? {
            RollbackRequest::Rollback { .. } if !config.improvement_rollback => {
                Err(StepError::RollbackDisabled(
                    "ENABLE_IMPROVEMENT_ROLLBACK is off: the canary stays in place for a human to decide".into(),
                ))
            }
            RollbackRequest::Rollback { item } => {
                let restored = match rollback(deps.deployer, &item).await {
                    Ok(restored) => restored,
                    Err(e) => return Err(deps.rollback_failed(&item, "the rollback", e).await),
                };
                let detail = match item.monitor.as_ref() {
                    Some(m) if m.verdict == Verdict::Halted => {
                        format!("{}; baseline restored: {restored}", m.reason)
                    }
                    Some(m) => format!(
                        "monitor verdict {:?} ({}); baseline restored: {restored}",
                        m.verdict, m.reason
                    ),
                    None => format!("baseline restored: {restored}"),
                };
                // Too little evidence is not a failure of the change: recorded apart.
                let inconclusive = item
                    .monitor
                    .as_ref()
                    .is_some_and(|m| m.verdict == Verdict::Inconclusive && m.window_over);
                let (action, notify) = if inconclusive {
                    ("inconclusive", None)
                } else {
                    ("rolled_back", Some("Improvement Rolled Back"))
                };
                let after = deps.function_state_for_audit(&item).await;
                deps.record(&item, action, None, after, detail, notify).await?;
                Ok(serde_json::json!({"restored": restored, "outcome": action}))
            }
            RollbackRequest::UndoDeploy { item, failure } => {
                let failure = failure_text(failure.as_ref());
                let left = deps.function_state_for_audit(&item).await;
                if !config.improvement_rollback {
                    let detail = format!(
                        "deploy failed ({failure}); ENABLE_IMPROVEMENT_ROLLBACK is off: what it \
                         left stays for a human"
                    );
                    deps.record(&item, "deploy_failed", left.clone(), left, detail, None)
                        .await?;
                    return Ok(serde_json::json!({"restored": false, "outcome": "deploy_failed"}));
                }
                let restored = match rollback(deps.deployer, &item).await {
                    Ok(restored) => restored,
                    Err(e) => {
                        return Err(deps.rollback_failed(&item, "undoing the failed deploy", e).await);
                    }
                };
                let (after, detail) = if restored {
                    (
                        deps.function_state_for_audit(&item).await,
                        format!("deploy failed ({failure}); what it left was undone"),
                    )
                } else {
                    (left.clone(), format!("deploy failed ({failure}); it left nothing to undo"))
                };
                deps.record(&item, "deploy_failed", left, after, detail, None)
                    .await?;
                Ok(serde_json::json!({"restored": restored, "outcome": "deploy_failed"}))
            }
        },
    }
}

/// The cycle's outcome as the operations alarms read it: improvements attempted, failed,
/// promoted and rolled back, and the cycle's duration from its request.
fn record_summary_metrics(deps: &StepDeps<'_>, cycle: &Value, summary: &CycleSummary) {
    let count = |pred: &dyn Fn(&str) -> bool| {
        summary
            .improvements
            .iter()
            .filter(|i| pred(&i.outcome))
            .count() as f64
    };
    deps.metric(
        "ImprovementsAttempted",
        Unit::Count,
        summary.improvements.len() as f64,
    );
    deps.metric(
        "ImprovementsFailed",
        Unit::Count,
        count(&|o| o.ends_with("_failed")),
    );
    deps.metric("ImprovementsPromoted", Unit::Count, summary.promoted as f64);
    deps.metric(
        "ImprovementsRolledBack",
        Unit::Count,
        summary.rolled_back as f64,
    );
    let requested = cycle
        .get("requested_at")
        .and_then(Value::as_str)
        .and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
    if let Some(requested) = requested {
        let ms = (summary.finished_at - requested)
            .whole_milliseconds()
            .max(0) as f64;
        deps.metric("CycleDuration", Unit::Milliseconds, ms);
    }
}

/// The longest failure cause an audit event repeats.
const FAILURE_CHARS: usize = 2000;

/// A failure the state machine caught (`{"Error", "Cause"}`) in words: the error name and
/// the message (a Lambda function's `errorMessage` when the cause is its error report).
fn failure_text(failure: Option<&Value>) -> String {
    let Some(failure) = failure else {
        return "no failure recorded".to_owned();
    };
    let error = failure
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let cause = failure.get("Cause").and_then(Value::as_str).unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| cause.to_owned());
    let mut text = format!("{error}: {message}");
    if let Some((cut, _)) = text.char_indices().nth(FAILURE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The function that performs an audited action.
fn action_function(action: &str) -> &'static str {
    match action {
        "proposal_refused" | "generate_halted" => "generate",
        "halted_in_flight" => "monitor",
        "validated" | "approval_requested" => "validate",
        "rolled_back" | "inconclusive" | "rollback_failed" | "deploy_failed" => "rollback",
        _ => "deploy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Opportunity, OpportunityKind, Priority};
    use crate::change::{Change, LambdaConfigChange, LambdaSettings, Proposal, RiskLevel};
    use crate::clock::FixedClock;
    use crate::cycle::CycleMode;
    use crate::deployment::{CanaryDeployment, FunctionState};
    use crate::ids::{ComponentId, TenantId};
    use crate::improvement::LlmUsage;
    use crate::ports::{DeployError, HaltState, HaltSwitch};
    use crate::records::{CircuitState, ProviderHealth};
    use crate::testing::{FixedLlm, MemoryRecords, NoTelemetry, StaticDeployer};
    use serde_json::json;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

    fn proposal() -> Proposal {
        Proposal {
            change: Change::LambdaConfig {
                function: ComponentId::parse("orders-api").unwrap(),
                config: LambdaConfigChange {
                    timeout_seconds: Some(10),
                    ..Default::default()
                },
            },
            rationale: "timeouts at 3 s".into(),
            expected_gain: 0.5,
            claimed_risk: RiskLevel::Low,
        }
    }

    fn item() -> ImprovementItem {
        ImprovementItem {
            cycle_id: CycleId::parse("c1").unwrap(),
            tenant_id: Some(TenantId::parse("acme").unwrap()),
            mode: CycleMode::Routine,
            dry_run: false,
            opportunity: Opportunity {
                id: "orders-api:timeouts".into(),
                rank: 1,
                component: ComponentId::parse("orders-api").unwrap(),
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
            },
            generated: Some(Generated {
                improvement_id: "c1-1".into(),
                proposal: proposal(),
                provider: "test".into(),
                usage: LlmUsage::default(),
            }),
            validation: None,
            approval: None,
            deploy: None,
            monitor: None,
        }
    }

    struct World {
        records: MemoryRecords,
        llm: Box<dyn Llm>,
        deployer: Box<dyn Deployer>,
        clock: FixedClock,
        config: Config,
    }

    impl World {
        fn new() -> Self {
            Self {
                records: MemoryRecords::default(),
                llm: Box::new(FixedLlm {
                    proposal: proposal(),
                    usage: LlmUsage {
                        input_tokens: 1000,
                        output_tokens: 200,
                        cost_usd: 0.25,
                    },
                    health: vec![ProviderHealth {
                        provider: "bedrock:test".into(),
                        state: CircuitState::HalfOpen,
                    }],
                }),
                deployer: Box::new(StaticDeployer(None)),
                clock: FixedClock(NOW),
                config: Config::default(),
            }
        }

        async fn run(&self, function: StepFunction, payload: Value) -> Result<Value, StepError> {
            let deps = StepDeps {
                telemetry: &NoTelemetry,
                deployer: self.deployer.as_ref(),
                llm: self.llm.as_ref(),
                halt: &self.records,
                approvals: &self.records,
                audit: &self.records,
                notifier: &self.records,
                improvements: &self.records,
                usage: &self.records,
                cycles: &self.records,
                metrics: &self.records,
                clock: &self.clock,
            };
            run_step(function, deps, &self.config, &payload).await
        }

        async fn halt(&self) {
            let halt = HaltState {
                reason: "incident 42".into(),
                actor: "oncall".into(),
                since: NOW,
            };
            self.records.set_halt(&halt).await.unwrap();
        }

        fn actions(&self) -> Vec<String> {
            let events = self.records.events.lock().unwrap();
            events.iter().map(|e| e.action.clone()).collect()
        }

        fn status(&self) -> Option<ImprovementStatus> {
            let records = self.records.improvements.lock().unwrap();
            records.get("c1-1").map(|r| r.status)
        }
    }

    /// A function whose live alias sends 10 % to version 2; records promote and rollback.
    #[derive(Default)]
    struct SplitDeployer {
        calls: Calls,
        /// Rollbacks and undos fail (Lambda throttles, with what was left).
        failing: bool,
    }

    impl SplitDeployer {
        fn outcome(&self) -> Result<(), DeployError> {
            if self.failing {
                return Err(DeployError::Unavailable(
                    "UpdateFunctionConfiguration on orders-api: throttled; left: $LATEST still \
                     carries the canary's settings"
                        .into(),
                ));
            }
            Ok(())
        }
    }

    type Calls = std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>;

    #[async_trait::async_trait]
    impl Deployer for SplitDeployer {
        async fn function_state(
            &self,
            function: &ComponentId,
        ) -> Result<FunctionState, DeployError> {
            let rolled_back = self.calls.lock().unwrap().contains(&"rollback");
            Ok(FunctionState {
                canary: (!rolled_back).then(|| ("2".to_owned(), 0.1)),
                ..baseline(function)
            })
        }
        async fn deploy_canary(
            &self,
            _: &str,
            _: &ComponentId,
            _: &LambdaSettings,
            _: f64,
        ) -> Result<CanaryDeployment, DeployError> {
            Err(DeployError::Rejected("not in this test".into()))
        }
        async fn promote(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
            self.calls.lock().unwrap().push("promote");
            Ok(())
        }
        async fn rollback(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
            self.calls.lock().unwrap().push("rollback");
            self.outcome()
        }
        async fn undo_deploy(
            &self,
            _: &str,
            function: &ComponentId,
        ) -> Result<Option<FunctionState>, DeployError> {
            self.calls.lock().unwrap().push("undo_deploy");
            self.outcome().map(|()| Some(baseline(function)))
        }
    }

    fn baseline(function: &ComponentId) -> FunctionState {
        FunctionState {
            function: function.clone(),
            settings: item().opportunity.current.unwrap(),
            alias: "live".into(),
            stable_version: "1".into(),
            canary: None,
        }
    }

    /// `item()` with its canary deployed ten minutes ago.
    fn deployed() -> ImprovementItem {
        let function = ComponentId::parse("orders-api").unwrap();
        let mut item = item();
        item.deploy = Some(crate::improvement::DeployOutcome {
            status: DeployStatus::Deployed,
            deployment: Some(CanaryDeployment {
                improvement_id: "c1-1".into(),
                baseline: baseline(&function),
                settings: LambdaSettings {
                    memory_mb: 512,
                    timeout_seconds: 10,
                    reserved_concurrency: None,
                    environment: Default::default(),
                },
                canary_version: "2".into(),
                weight: 0.1,
                deployed_at: NOW - time::Duration::minutes(10),
            }),
            wait_until: None,
            reason: String::new(),
            monitor_interval_seconds: 300,
        });
        item
    }

    fn split_world() -> (World, Calls) {
        let deployer = SplitDeployer::default();
        let calls = deployer.calls.clone();
        let world = World {
            deployer: Box::new(deployer),
            ..World::new()
        };
        (world, calls)
    }

    #[tokio::test]
    async fn a_failed_deploy_is_undone_and_audited_with_its_failure() {
        // GIVEN a deploy the state machine caught, as its Catch hands it on
        let (world, calls) = split_world();
        let cause = json!({
            "errorType": "Retryable",
            "errorMessage": "deployer unavailable: UpdateAlias on orders-api: 500; left: version 2 published"
        });
        let failure = json!({"Error": "Retryable", "Cause": cause.to_string()});
        // WHEN the undo runs
        let out = world
            .run(
                StepFunction::Rollback,
                json!({"action": "undo_deploy", "item": item(), "failure": failure}),
            )
            .await
            .unwrap();
        // THEN what the deploy left is undone, and the audit says why the deploy failed
        assert_eq!(out, json!({"restored": true, "outcome": "deploy_failed"}));
        assert_eq!(*calls.lock().unwrap(), ["undo_deploy"]);
        let events = world.records.events.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(
            (event.action.as_str(), event.actor.as_str()),
            ("deploy_failed", "selfbuild:rollback")
        );
        assert!(
            event.detail.starts_with(
                "deploy failed (Retryable: deployer unavailable: UpdateAlias on orders-api: 500; \
                 left: version 2 published); what it left was undone"
            ),
            "{}",
            event.detail
        );
        assert_eq!(world.status(), Some(ImprovementStatus::DeployFailed));
    }

    #[tokio::test]
    async fn a_failed_rollback_is_audited_and_stays_retryable() {
        // GIVEN Lambda failing the rollback
        let deployer = SplitDeployer {
            failing: true,
            ..SplitDeployer::default()
        };
        let world = World {
            deployer: Box::new(deployer),
            ..World::new()
        };
        // WHEN the rollback runs THEN it fails Retryable for the state machine to retry
        let err = world
            .run(
                StepFunction::Rollback,
                json!({"action": "rollback", "item": deployed()}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Retryable");
        // AND the audit says it failed and what it left, with the function as it is
        let events = world.records.events.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "rollback_failed");
        assert!(
            events[0]
                .detail
                .starts_with("the rollback failed (Retryable): deployer unavailable")
                && events[0].detail.contains("$LATEST still carries"),
            "{}",
            events[0].detail
        );
        assert!(events[0].before.is_some());
        assert_eq!(world.status(), Some(ImprovementStatus::RollbackFailed));
    }

    #[test]
    fn a_caught_failure_reads_as_its_error_and_message() {
        let lambda = json!({"Error": "Retryable", "Cause": "{\"errorType\":\"Retryable\",\"errorMessage\":\"m\"}"});
        assert_eq!(failure_text(Some(&lambda)), "Retryable: m");
        let local = json!({"Error": "DeployRejected", "Cause": "deployer rejected the request: x"});
        assert_eq!(
            failure_text(Some(&local)),
            "DeployRejected: deployer rejected the request: x"
        );
        let long = json!({"Error": "E", "Cause": "é".repeat(3000)});
        assert_eq!(failure_text(Some(&long)).chars().count(), FAILURE_CHARS + 1);
        assert_eq!(failure_text(None), "no failure recorded");
    }

    #[tokio::test]
    async fn while_halted_generate_stops_before_the_llm_and_says_why() {
        let world = World::new();
        world.halt().await;
        let mut ungenerated = item();
        ungenerated.generated = None;
        let err = world
            .run(
                StepFunction::Generate,
                serde_json::to_value(&ungenerated).unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Halted");
        let events = world.records.events.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "generate_halted");
        assert!(
            events[0].detail.contains("oncall: incident 42"),
            "{}",
            events[0].detail
        );
        assert_eq!(world.status(), Some(ImprovementStatus::Halted));
        // No LLM call: nothing spent, no provider metric.
        assert!(world.records.usage.lock().unwrap().is_empty());
        assert!(world.records.metrics.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn while_halted_a_look_rolls_back_without_reading_telemetry() {
        // NoTelemetry fails every read: the halted look must not need one.
        let (world, _) = split_world();
        world.halt().await;
        let report = world
            .run(
                StepFunction::Monitor,
                json!({"action": "monitor", "item": deployed()}),
            )
            .await
            .unwrap();
        assert_eq!(report["verdict"], "halted");
        assert!(
            report["reason"]
                .as_str()
                .unwrap()
                .contains("oncall: incident 42")
        );
        assert_eq!(world.actions(), ["halted_in_flight"]);
        let event = world.records.events.lock().unwrap()[0].clone();
        assert!(
            event.detail.contains("HALT_IN_FLIGHT=rollback"),
            "{}",
            event.detail
        );
        assert_eq!(event.before.unwrap()["canary"], json!(["2", 0.1]));
        assert_eq!(event.after, None);
        assert_eq!(world.status(), Some(ImprovementStatus::Halted));

        // The rollback that follows says why and what the function runs now.
        let mut item = deployed();
        item.monitor = Some(parse_payload(&report).unwrap());
        world
            .run(
                StepFunction::Rollback,
                json!({"action": "rollback", "item": item}),
            )
            .await
            .unwrap();
        let events = world.records.events.lock().unwrap().clone();
        let rolled_back = &events[1];
        assert_eq!(rolled_back.action, "rolled_back");
        assert!(
            rolled_back.detail.contains("oncall: incident 42"),
            "{}",
            rolled_back.detail
        );
        let function = ComponentId::parse("orders-api").unwrap();
        assert_eq!(
            rolled_back.after,
            Some(serde_json::to_value(baseline(&function)).unwrap())
        );
    }

    #[tokio::test]
    async fn with_freeze_a_halted_look_leaves_the_split_and_records_it() {
        let (mut world, calls) = split_world();
        world.config.halt_in_flight = crate::config::HaltInFlight::Freeze;
        world.halt().await;
        let report = world
            .run(
                StepFunction::Monitor,
                json!({"action": "monitor", "item": deployed()}),
            )
            .await
            .unwrap();
        assert_eq!(report["verdict"], "frozen");
        let event = world.records.events.lock().unwrap()[0].clone();
        assert_eq!(event.action, "halted_in_flight");
        assert!(
            event.detail.contains("HALT_IN_FLIGHT=freeze"),
            "{}",
            event.detail
        );
        assert_eq!(event.after.unwrap()["canary"], json!(["2", 0.1]));
        assert_eq!(world.status(), Some(ImprovementStatus::Frozen));
        assert!(calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn promote_refuses_while_halted_and_shifts_traffic_otherwise() {
        let (world, calls) = split_world();
        world.halt().await;
        let refused = world
            .run(
                StepFunction::Deploy,
                json!({"action": "promote", "item": deployed()}),
            )
            .await
            .unwrap();
        assert_eq!(refused["status"], "halted");
        assert!(
            refused["reason"]
                .as_str()
                .unwrap()
                .contains("oncall: incident 42")
        );
        assert!(calls.lock().unwrap().is_empty());
        assert!(world.actions().is_empty());

        world.records.clear_halt().await.unwrap();
        let promoted = world
            .run(
                StepFunction::Deploy,
                json!({"action": "promote", "item": deployed()}),
            )
            .await
            .unwrap();
        assert_eq!(promoted["status"], "promoted");
        assert_eq!(*calls.lock().unwrap(), ["promote"]);
        assert_eq!(world.actions(), ["promoted"]);
    }

    #[tokio::test]
    async fn validate_stores_the_improvement_record_with_its_validation() {
        // GIVEN a generated item WHEN validated
        let world = World::new();
        let validation = world
            .run(
                StepFunction::Validate,
                json!({"action": "validate", "item": item()}),
            )
            .await
            .unwrap();
        // THEN the audit event and the record agree, and the record holds the validation
        assert_eq!(world.records.events.lock().unwrap()[0].action, "validated");
        let record = world
            .records
            .improvements
            .lock()
            .unwrap()
            .get("c1-1")
            .cloned()
            .expect("an improvement record");
        assert_eq!(record.status, ImprovementStatus::Validated);
        assert_eq!(record.cycle_id.as_str(), "c1");
        assert_eq!(
            record.tenant_id.as_ref().map(TenantId::as_str),
            Some("acme")
        );
        assert_eq!(record.component, "orders-api");
        assert_eq!(record.updated_at, NOW);
        assert!(record.change.is_some_and(|c| c.contains("timeout")));
        let stored = record
            .item
            .validation
            .expect("the validation in the record");
        assert_eq!(record.risk, Some(stored.risk));
        assert_eq!(serde_json::to_value(&stored).unwrap(), validation);
    }

    /// Answers with something that is not a valid proposal.
    struct InvalidLlm;

    #[async_trait::async_trait]
    impl Llm for InvalidLlm {
        async fn propose(
            &self,
            _: &crate::generate::LlmRequest,
        ) -> Result<crate::generate::LlmAnswer, LlmError> {
            Err(LlmError::InvalidAnswer(
                "change.reserved_concurrency: -1 is not a count".into(),
            ))
        }
    }

    #[tokio::test]
    async fn a_proposal_refused_in_generate_is_audited_and_recorded() {
        let world = World {
            llm: Box::new(InvalidLlm),
            ..World::new()
        };
        let mut ungenerated = item();
        ungenerated.generated = None;
        let err = world
            .run(
                StepFunction::Generate,
                serde_json::to_value(&ungenerated).unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidProposal");
        let audit = world.records.events.lock().unwrap().clone();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "proposal_refused");
        assert_eq!(audit[0].actor, "selfbuild:generate");
        assert!(
            audit[0].detail.contains("-1 is not a count"),
            "{}",
            audit[0].detail
        );
        let records = world.records.improvements.lock().unwrap().clone();
        let record = records.values().next().unwrap();
        assert_eq!(record.status, ImprovementStatus::Rejected);
    }

    #[tokio::test]
    async fn generate_adds_its_cost_and_the_circuits_to_the_day() {
        let world = World::new();
        let mut ungenerated = item();
        ungenerated.generated = None;
        for _ in 0..2 {
            world
                .run(
                    StepFunction::Generate,
                    serde_json::to_value(&ungenerated).unwrap(),
                )
                .await
                .unwrap();
        }
        let usage = world.records.usage.lock().unwrap()[&date!(2026 - 11 - 22)].clone();
        assert_eq!((usage.cost_usd, usage.calls), (0.5, 2));
        assert_eq!(usage.providers[0].state, CircuitState::HalfOpen);
        let metrics = world.records.metrics.lock().unwrap().clone();
        let named = |n: &str| -> Vec<f64> {
            metrics
                .iter()
                .filter(|m| m.name == n)
                .map(|m| m.value)
                .collect()
        };
        assert_eq!(named("LlmCostUsd"), [0.25, 0.25]);
        assert_eq!(
            named("CircuitBreakerOpen"),
            [0.0, 0.0],
            "half-open is not open"
        );
        // No audited transition: no improvement record yet.
        assert!(world.records.improvements.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn summarize_finishes_the_cycle_as_failed_or_succeeded() {
        let world = World::new();
        world
            .run(
                StepFunction::Monitor,
                json!({"action": "summarize", "cycle": {"cycle_id": "c1"}}),
            )
            .await
            .unwrap();
        world
            .run(
                StepFunction::Monitor,
                json!({"action": "summarize", "cycle": {"cycle_id": "c2", "failure": {"Error": "Retryable"}}}),
            )
            .await
            .unwrap();
        let finished = world.records.finished.lock().unwrap().clone();
        assert_eq!(
            finished,
            [
                (CycleId::parse("c1").unwrap(), CycleStatus::Succeeded),
                (CycleId::parse("c2").unwrap(), CycleStatus::Failed),
            ]
        );
    }

    #[tokio::test]
    async fn summarize_emits_the_metrics_the_operations_alarms_read() {
        let world = World::new();
        let mut promoted = serde_json::to_value(item()).unwrap();
        promoted["outcome"] = json!("promoted");
        let mut failed = serde_json::to_value(item()).unwrap();
        failed["opportunity"]["rank"] = json!(2);
        failed["outcome"] = json!("deploy_failed");
        let cycle = json!({"cycle_id": "c1", "requested_at": "2026-11-22T04:00:00Z",
                           "improvements": [promoted, failed]});
        world
            .run(
                StepFunction::Monitor,
                json!({"action": "summarize", "cycle": cycle}),
            )
            .await
            .unwrap();
        let metrics = world.records.metrics.lock().unwrap().clone();
        let value = |n: &str| metrics.iter().find(|m| m.name == n).map(|m| m.value);
        assert_eq!(value("ImprovementsAttempted"), Some(2.0));
        assert_eq!(value("ImprovementsFailed"), Some(1.0));
        assert_eq!(value("ImprovementsPromoted"), Some(1.0));
        assert_eq!(value("ImprovementsRolledBack"), Some(0.0));
        let since_request = NOW - time::macros::datetime!(2026-11-22 04:00 UTC);
        assert_eq!(
            value("CycleDuration"),
            Some(since_request.whole_milliseconds() as f64)
        );
        assert!(
            metrics.iter().all(|m| m.dimensions.is_empty()),
            "fleet-wide metrics"
        );
    }
}
