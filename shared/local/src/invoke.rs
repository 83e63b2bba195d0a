//! `selfbuild invoke <function> <payload>`: one function's handler on one payload, offline on
//! the embedded adapters, printing what the Lambda function would return. alarm-intake takes
//! EventBridge events (`events/*.json`); the six step functions take the payloads the state
//! machine sends them (`events/steps/*.json`) and work on a scenario's simulated fleet, the
//! rule planner and the store in the data directory. Each invoke starts the fleet afresh from
//! its scenario: a `deploy` here is not seen by a later `monitor` in another process.

use std::path::Path;
use std::sync::Arc;

use clap::ValueEnum;
use selfbuild_core::Config;
use selfbuild_core::emf::TracingSink;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::intake::{IntakeDeps, IntakeResponse, handle_event, handle_logs};
use selfbuild_core::ports::Clock;
use selfbuild_core::steps::{StepDeps, StepFunction, run_step};
use serde_json::Value;

use crate::alarms::FileAlarmSource;
use crate::orchestrator::RecordingOrchestrator;
use crate::output::{CliError, cli_error};
use crate::store::SqliteStore;

/// The functions `invoke` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Function {
    /// CloudWatch alarm events, the daily schedule, the poll tick, Logs deliveries.
    AlarmIntake,
    /// The cycle's analysis (events/steps/analyze.json).
    Analyze,
    /// A proposal for one opportunity (events/steps/generate.json).
    Generate,
    /// validate, request_approval, expire_approval (events/steps/validate*.json).
    Validate,
    /// deploy, promote (events/steps/deploy*.json).
    Deploy,
    /// monitor, summarize (events/steps/monitor*.json).
    Monitor,
    /// rollback, undo_deploy (events/steps/rollback*.json).
    Rollback,
}

impl Function {
    fn step(self) -> Option<StepFunction> {
        Some(match self {
            Self::AlarmIntake => return None,
            Self::Analyze => StepFunction::Analyze,
            Self::Generate => StepFunction::Generate,
            Self::Validate => StepFunction::Validate,
            Self::Deploy => StepFunction::Deploy,
            Self::Monitor => StepFunction::Monitor,
            Self::Rollback => StepFunction::Rollback,
        })
    }
}

/// What one invoke needs.
pub struct Invocation<'a> {
    /// The function.
    pub function: Function,
    /// The payload, read already.
    pub payload: Value,
    /// The data directory.
    pub data_dir: &'a Path,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// alarm-intake's saved describe-alarms output.
    pub alarms: &'a Path,
    /// The steps' fleet.
    pub scenario: &'a Path,
}

/// Runs the handler; its JSON result.
pub async fn invoke(call: Invocation<'_>) -> Result<Value, CliError> {
    let config = Config::from_env()?;
    let store = SqliteStore::open(call.data_dir)?;
    let metrics = TracingSink {
        namespace: config.metrics_namespace.clone(),
    };
    let Some(step) = call.function.step() else {
        let alarms = FileAlarmSource::new(call.alarms);
        let orchestrator = RecordingOrchestrator::new(store.clone(), call.clock.as_ref());
        let deps = IntakeDeps {
            claims: &store,
            halt: &store,
            health: &store,
            orchestrator: &orchestrator,
            cycles: &store,
            clock: call.clock.as_ref(),
            ids: &OsRandom,
            metrics: &metrics,
        };
        // A CloudWatch Logs subscription delivery, as alarm-intake on Lambda tells it apart.
        let response = if selfbuild_core::logstream::is_delivery(&call.payload) {
            IntakeResponse::One(handle_logs(deps, &store, &config, &call.payload).await?)
        } else {
            handle_event(deps, &alarms, &config, &call.payload).await?
        };
        return serde_json::to_value(response).map_err(|e| cli_error("Internal", e.to_string()));
    };
    let scenario = crate::fleet::Scenario::load(call.scenario).map_err(|e| {
        let error = cli_error("InvalidInput", e.to_string());
        match e {
            crate::fleet::ScenarioError::Read { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                error.hint(crate::bundled::missing_hint(call.scenario))
            }
            _ => error,
        }
    })?;
    let fleet = crate::fleet::Fleet::new(&scenario, Arc::clone(&call.clock))
        .map_err(|e| cli_error("InvalidInput", e.to_string()))?;
    let settings =
        crate::demo::scenario_code_settings(&scenario).map_err(|e| cli_error("ConfigError", e))?;
    let checker = selfbuild_validate::PipelineChecker::new(settings);
    let peers =
        crate::peers::LocalPeers::from_config(&config).map_err(|e| cli_error("ConfigError", e))?;
    let deps = StepDeps {
        telemetry: &fleet,
        deployer: &fleet,
        code: &fleet,
        checker: &checker,
        llm: &crate::planner::RulePlanner,
        store: &store,
        notifier: &store,
        registry: &store,
        peers: &peers,
        metrics: &metrics,
        clock: call.clock.as_ref(),
    };
    Ok(run_step(step, deps, &config, &call.payload).await?)
}
