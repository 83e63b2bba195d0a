//! Runs improvement cycles offline: `statemachine/improvement-cycle.asl.json` on the
//! embedded ASL interpreter, whose Task states call the same step functions as the Lambda
//! binaries, over the fleet model, the SQLite store and the embedded Llm adapters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use selfbuild_core::Config;
use selfbuild_core::approval::ApprovalStore;
use selfbuild_core::audit::{AuditLog, Notifier};
use selfbuild_core::clock::Clock;
use selfbuild_core::emf::MetricSink;
use selfbuild_core::error::StableError;
use selfbuild_core::generate::Llm;
use selfbuild_core::ports::HaltSwitch;
use selfbuild_core::records::{CycleProgress, ImprovementStore, UsageLedger};
use selfbuild_core::steps::{StepDeps, StepFunction, run_step};
use serde_json::Value;
use time::OffsetDateTime;

use crate::asl::{StateMachine, TaskCall, TaskError, TaskHandler};
use crate::fleet::Fleet;

/// The state machine definition, compiled in so the CLI runs from anywhere.
pub const DEFINITION: &str = include_str!("../../../statemachine/improvement-cycle.asl.json");

/// The region and account of the local function ARNs.
const LOCAL_ARN_PREFIX: &str = "arn:aws:lambda:local:000000000000:function:";

/// `DefinitionSubstitutions` with each `${XFunctionArn}` → `<arn_prefix><name>`.
pub fn substitutions(arn_prefix: &str) -> BTreeMap<String, String> {
    StepFunction::ALL
        .into_iter()
        .map(|f| {
            let name = f.name();
            let key = format!(
                "{}{}FunctionArn",
                name[..1].to_ascii_uppercase(),
                &name[1..]
            );
            (key, format!("{arn_prefix}{name}"))
        })
        .collect()
}

/// Loads the bundled definition with local substitutions.
pub fn load_state_machine() -> Result<StateMachine, crate::asl::AslError> {
    StateMachine::load(DEFINITION, &substitutions(LOCAL_ARN_PREFIX))
}

/// Virtual time: `start` plus real elapsed time × `scale` (the interpreter's own clock runs
/// the same way, so Waits and the fleet's telemetry agree).
#[derive(Debug, Clone)]
pub struct ScaledClock {
    start: OffsetDateTime,
    started: Instant,
    scale: f64,
}

impl ScaledClock {
    /// A clock reading `start` now, running `scale` times faster than real time.
    pub fn new(start: OffsetDateTime, scale: f64) -> Self {
        Self {
            start,
            started: Instant::now(),
            scale,
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> OffsetDateTime {
        let seconds = self.started.elapsed().as_secs_f64() * self.scale;
        self.start + time::Duration::seconds_f64(seconds)
    }
}

/// The Task states' resources, served by the core step functions.
pub struct LocalSteps {
    /// Telemetry and deployer.
    pub fleet: Fleet,
    /// Proposals.
    pub llm: Box<dyn Llm>,
    /// Halt switch.
    pub halt: Arc<dyn HaltSwitch>,
    /// Pending approvals.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Audit events.
    pub audit: Arc<dyn AuditLog>,
    /// Notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Each improvement's latest state.
    pub improvements: Arc<dyn ImprovementStore>,
    /// LLM spend per day.
    pub usage: Arc<dyn UsageLedger>,
    /// Cycle completion.
    pub cycles: Arc<dyn CycleProgress>,
    /// Where the step metrics go.
    pub metrics: Arc<dyn MetricSink>,
    /// Virtual time.
    pub clock: Arc<dyn Clock>,
    /// Configuration.
    pub config: Config,
}

/// The function a Task resource names, and its payload.
fn resolve(task: &TaskCall) -> Result<(StepFunction, Value), TaskError> {
    let (arn, payload) = if task.resource.starts_with("arn:aws:states:::lambda:invoke") {
        let name = task
            .input
            .get("FunctionName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TaskError::new("States.Runtime", "lambda:invoke without FunctionName")
            })?;
        let payload = task.input.get("Payload").cloned().unwrap_or(Value::Null);
        (name.to_owned(), payload)
    } else {
        (task.resource.clone(), task.input.clone())
    };
    let name = arn.rsplit(':').next().unwrap_or(&arn);
    let function = StepFunction::from_name(name).ok_or_else(|| {
        TaskError::new(
            "Lambda.ResourceNotFoundException",
            format!("no local function {name:?} for resource {arn}"),
        )
    })?;
    Ok((function, payload))
}

#[async_trait]
impl TaskHandler for LocalSteps {
    async fn invoke(&self, task: TaskCall) -> Result<Value, TaskError> {
        let (function, payload) = resolve(&task)?;
        let deps = StepDeps {
            telemetry: &self.fleet,
            deployer: &self.fleet,
            llm: self.llm.as_ref(),
            halt: self.halt.as_ref(),
            approvals: self.approvals.as_ref(),
            audit: self.audit.as_ref(),
            notifier: self.notifier.as_ref(),
            improvements: self.improvements.as_ref(),
            usage: self.usage.as_ref(),
            cycles: self.cycles.as_ref(),
            metrics: self.metrics.as_ref(),
            clock: self.clock.as_ref(),
        };
        run_step(function, deps, &self.config, &payload)
            .await
            .map_err(|e| TaskError::new(e.error_type(), e.to_string()))
    }
}
