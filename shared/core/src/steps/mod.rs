//! The cycle's Lambda functions as the state machine calls them: one request type per
//! function (tagged by `action` where a function serves several states) and one entry point
//! each, shared by the Lambda binaries and the embedded runner.

mod analyze;
mod deploy;
mod generate;
mod monitor;
mod peers;
mod rollback;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agents::ChangeEvent;
use crate::audit::AuditAction;
use crate::canary::{CanaryDeps, CanaryError, RollbackPorts, function_state_for_audit};
use crate::config::Config;
use crate::error::{ErrorType, StableError, StoreError, TelemetryError};
use crate::improvement::{ImprovementItem, MonitorReport, Verdict};
use crate::peers::{Announced, Dependents};
use crate::ports::{
    AgentPeers, Clock, CodeChecker, CodeSource, CodeSourceError, Deployer, Llm, LlmError,
    MetricRecord, MetricSink, Notifier, Registry, StepStore, Telemetry, Unit,
};
use crate::records::ImprovementStatus;
use crate::transition::{Recorder, Transition};

/// The actor the deploy function's deliveries name.
const DEPLOY_ACTOR: &str = "selfbuild:deploy";

pub use deploy::DeployRequest;
pub use monitor::MonitorRequest;
pub use rollback::RollbackRequest;
pub use summary::{CycleSummary, ImprovementSummary, ItemOutcome, summarize};
pub use validate::{REVIEW_NOTIFICATION, ValidateRequest};

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
    /// A target's deployed code could not be read.
    #[error(transparent)]
    Code(#[from] CodeSourceError),
    /// Automatic rollback is turned off.
    #[error("{0}")]
    RollbackDisabled(String),
    /// The halt switch is on: this item goes no further.
    #[error("{0}")]
    Halted(String),
}

impl StableError for StepError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::InvalidInput(_) => ErrorType::InvalidInput,
            Self::Telemetry(e) => e.error_type(),
            Self::Llm(e) => e.error_type(),
            Self::Canary(e) => e.error_type(),
            Self::Store(e) => e.error_type(),
            Self::Code(e) => e.error_type(),
            Self::RollbackDisabled(_) => ErrorType::RollbackDisabled,
            Self::Halted(_) => ErrorType::Halted,
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

/// The ports the cycle's functions use.
#[derive(Clone, Copy)]
pub struct StepDeps<'a> {
    /// Metrics and logs.
    pub telemetry: &'a dyn Telemetry,
    /// Lambda.
    pub deployer: &'a dyn Deployer,
    /// The targets' deployed code, read when a code patch is validated.
    pub code: &'a dyn CodeSource,
    /// Parses and checks code patches (only the validate function links a real one).
    pub checker: &'a dyn CodeChecker,
    /// Proposals.
    pub llm: &'a dyn Llm,
    /// The halt switch, approvals, audit, improvement records, LLM spend and cycles.
    pub store: &'a dyn StepStore,
    /// Notifications for other agents.
    pub notifier: &'a dyn Notifier,
    /// The registered agents, read at each deploy, promote and rollback.
    pub registry: &'a dyn Registry,
    /// Registered agents called over MCP (window, notifications).
    pub peers: &'a dyn AgentPeers,
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
        action: AuditAction,
        before: Option<Value>,
        after: Option<Value>,
        detail: String,
        notify: Option<&str>,
    ) -> Result<(), StepError> {
        let status = action.status_after();
        self.record_status(item, action, status, before, after, detail, notify)
            .await
    }

    /// [`Self::record`] with the status given rather than derived from the action.
    #[allow(clippy::too_many_arguments)]
    async fn record_status(
        &self,
        item: &ImprovementItem,
        action: AuditAction,
        status: Option<ImprovementStatus>,
        before: Option<Value>,
        after: Option<Value>,
        detail: String,
        notify: Option<&str>,
    ) -> Result<(), StepError> {
        let transition = Transition {
            status,
            before,
            after,
            notify,
            ..Transition::by_step(action, detail)
        };
        self.recorder().record(item, transition).await?;
        Ok(())
    }

    /// Where transitions are written.
    fn recorder(&self) -> Recorder<'_> {
        Recorder {
            audit: self.store,
            improvements: self.store,
            notifier: self.notifier,
            clock: self.clock,
        }
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
            AuditAction::HaltedInFlight,
            Some(status),
            state,
            after,
            detail,
            None,
        )
        .await
    }

    /// Audits one look (`canary_checked`: the report as `after`, the time of the look the
    /// state machine kept before it as `before`, so a report can tell a retried look from the
    /// one that counted). Only logged when the write fails: a look's record is for people,
    /// and a store outage must not roll a canary back.
    async fn canary_checked(&self, item: &ImprovementItem, report: &MonitorReport) {
        let before = item
            .monitor
            .as_ref()
            .and_then(|m| {
                m.checked_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map(|at| serde_json::json!({ "checked_at": at }));
        let verdict = serde_json::to_value(report.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let detail = format!(
            "{verdict} after {:.0} canary and {:.0} stable requests: {}",
            report.canary_requests, report.stable_requests, report.reason
        );
        let transition = Transition {
            before,
            after: serde_json::to_value(report).ok(),
            ..Transition::by_step(AuditAction::CanaryChecked, detail)
        };
        if let Err(e) = self.recorder().record(item, transition).await {
            tracing::warn!(error = %crate::text::Escaped(&e), "the look's audit event was not written");
        }
    }

    /// The item's function as deployed now, for an audit event's before/after.
    async fn function_state_for_audit(&self, item: &ImprovementItem) -> Option<Value> {
        function_state_for_audit(self.deployer, item).await
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

    /// The agents depending on a changed component, and how they are called.
    fn dependents(&self) -> Dependents<'_> {
        Dependents {
            registry: self.registry,
            peers: self.peers,
        }
    }

    /// What a recorded rollback uses.
    fn rollback_ports(&self) -> RollbackPorts<'_> {
        RollbackPorts {
            deployer: self.deployer,
            recorder: self.recorder(),
            metrics: self.metrics,
            dependents: self.dependents(),
        }
    }

    /// Tells the agents depending on `item`'s component that `event` happened, as
    /// `selfbuild:deploy` (deploy and promote).
    async fn notify_dependents(&self, item: &ImprovementItem, event: ChangeEvent, detail: &str) {
        let change = Announced {
            event,
            actor: DEPLOY_ACTOR,
            detail,
        };
        self.dependents()
            .notify(self.recorder(), item, change)
            .await;
    }

    fn canary(&self) -> CanaryDeps<'_> {
        CanaryDeps {
            deployer: self.deployer,
            telemetry: self.telemetry,
            halt: self.store,
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
        StepFunction::Analyze => analyze::run(deps, config, payload).await,
        StepFunction::Generate => generate::run(deps, config, payload).await,
        StepFunction::Validate => validate::run(deps, config, payload).await,
        StepFunction::Deploy => deploy::run(deps, config, payload).await,
        StepFunction::Monitor => monitor::run(deps, config, payload).await,
        StepFunction::Rollback => rollback::run(deps, config, payload).await,
    }
}
