//! alarm-intake Lambda: wiring only. The logic is `selfbuild_core::intake` (EventBridge
//! events and CloudWatch Logs subscription deliveries).

use lambda_runtime::{LambdaEvent, service_fn};
use selfbuild_aws::cloudwatch::CloudWatchAlarms;
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::lambda::diagnostic;
use selfbuild_aws::observability::ColdStart;
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::Config;
use selfbuild_core::clock::SystemClock;
use selfbuild_core::event::EventJson;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::intake::{IntakeDeps, handle_delivery};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    selfbuild_aws::observability::init_logging();
    let config = Config::from_env()?;
    let state_machine_arn = config.require_state_machine_arn()?.to_owned();

    // Clients are built once per container, outside the handler.
    let sdk = selfbuild_aws::sdk_config().await;
    let store = DynamoStore::new(&sdk, config.table_name.clone());
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, state_machine_arn);
    let alarms = CloudWatchAlarms::new(&sdk);
    let metrics = selfbuild_aws::observability::metrics(&config);
    let cold_start = &ColdStart::from_env();
    let clock = SystemClock;
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let config = &config;
    let alarms = &alarms;
    let store = &store;

    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventJson>| async move {
            cold_start.invoked(deps.metrics, deps.clock);
            handle_delivery(deps, store, alarms, config, event.payload)
                .await
                .map_err(|e| diagnostic(&e))
        },
    ))
    .await
}
