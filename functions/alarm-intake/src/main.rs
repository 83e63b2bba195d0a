//! alarm-intake Lambda: wiring only. The logic is `selfbuild_core::intake` (EventBridge
//! events and CloudWatch Logs subscription deliveries) and, after each poll tick, one self
//! health pass (`selfbuild_aws::health`), which runs whatever ENABLE_SELF_BUILDING says and
//! never changes the poll's answer; its rollback heal is handed to the rollback function
//! (an asynchronous invocation: a code patch's rollback may not fit the pass's 20 s).

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use selfbuild_aws::cloudwatch::CloudWatchAlarms;
use selfbuild_aws::dlq::SqsDeadLetters;
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::eventbridge::EventBridgeNotifier;
use selfbuild_aws::health::{
    AgentSources, ComponentSources, HealthSources, NO_ROLLBACK_FUNCTION, PollHealth,
    handle_then_pass,
};
use selfbuild_aws::lambda::diagnostic;
use selfbuild_aws::observability::ColdStart;
use selfbuild_aws::rollback_heal::InvokeRollbackFunction;
use selfbuild_aws::secrets::SecretsManagerSecrets;
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_aws::telemetry::CloudWatchTelemetry;
use selfbuild_core::Config;
use selfbuild_core::clock::SystemClock;
use selfbuild_core::event::EventJson;
use selfbuild_core::health::Thresholds;
use selfbuild_core::health::pass::PassPorts;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::intake::IntakeDeps;
use selfbuild_core::ports::{DeadLetters, RollbackHeal};
use selfbuild_peers::{PeerSettings, RmcpPeers};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    selfbuild_aws::observability::init_logging();
    let config = Config::from_env()?;
    let state_machine_arn = config.require_state_machine_arn()?.to_owned();
    let limits = Thresholds::from_config(&config);
    let own_functions = config
        .self_function_names
        .iter()
        .map(|name| ComponentId::parse(name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("SELF_FUNCTION_NAMES: {e}"))?;

    // Clients are built once per container, outside the handler.
    let sdk = selfbuild_aws::sdk_config().await;
    let store = DynamoStore::new(&sdk, config.table_name.clone());
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, state_machine_arn)
        .with_history_horizon(limits.max_cycle_age);
    let alarms = CloudWatchAlarms::new(&sdk);
    let telemetry = CloudWatchTelemetry::for_cycle(&sdk, &config);
    let notifier = EventBridgeNotifier::new(&sdk, config.event_bus_name.clone());
    let dead_letters = config
        .intake_dlq_url
        .clone()
        .map(|url| SqsDeadLetters::new(&sdk, url, config.intake_function_name.clone()));
    let metrics = selfbuild_aws::observability::metrics(&config);
    // The rollback heal is handed to the rollback function, which has the time for it.
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let rollback: Box<dyn RollbackHeal> = match &config.rollback_function_name {
        Some(function) => Box::new(InvokeRollbackFunction::new(lambda.clone(), function)),
        None => Box::new(NO_ROLLBACK_FUNCTION),
    };
    // The pass pings registered agents with their keys, as the deploy function calls them.
    let keys = Arc::new(SecretsManagerSecrets::new(&sdk, Duration::from_secs(300)));
    let peers = RmcpPeers::new(keys, PeerSettings::from_config(&config))?;
    let cold_start = &ColdStart::from_env();
    let clock = SystemClock;
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let health = PollHealth {
        ports: PassPorts {
            executions: &orchestrator,
            orchestrator: &orchestrator,
            cycles: &store,
            health: &store,
            usage: &store,
            notifier: &notifier,
            metrics: &metrics,
            rollback: rollback.as_ref(),
            dead_letters: dead_letters.as_ref().map(|d| d as &dyn DeadLetters),
        },
        sources: HealthSources {
            telemetry: &telemetry,
            own_functions: &own_functions,
            dead_letters: dead_letters.as_ref().map(|d| d as &dyn DeadLetters),
            components: Some(ComponentSources {
                improvements: &store,
                lambda: &lambda,
            }),
            agents: Some(AgentSources {
                registry: &store,
                peers: &peers,
            }),
        },
        limits,
    };
    let (config, alarms, store, health) = (&config, &alarms, &store, &health);

    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventJson>| async move {
            cold_start.invoked(deps.metrics, deps.clock);
            handle_then_pass(deps, store, alarms, config, event.payload, health)
                .await
                .map_err(|e| diagnostic(&e))
        },
    ))
    .await
}
