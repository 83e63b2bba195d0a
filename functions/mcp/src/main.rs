//! mcp Lambda: wiring only. The endpoint is `selfbuild_mcp::app`, served behind the function
//! URL by `lambda_http`. `generate_component` drafts with the cycle's LLM (Bedrock, then the
//! OpenAI-compatible fallback) and checks the draft with `selfbuild-validate`, linked here so
//! that no drafted component is recorded unvalidated. `rollback_improvement` tells the
//! dependent agents over MCP (`selfbuild-peers`, keys from Secrets Manager).

use std::sync::Arc;
use std::time::Duration;

use lambda_http::tower::ServiceExt;
use lambda_http::{Request, service_fn};
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::eventbridge::EventBridgeNotifier;
use selfbuild_aws::lambda_code::PackageFetcher;
use selfbuild_aws::lambda_deployer::LambdaDeployer;
use selfbuild_aws::observability::ColdStart;
use selfbuild_aws::secrets::{SecretsManagerKeys, SecretsManagerSecrets};
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::Config;
use selfbuild_core::clock::SystemClock;
use selfbuild_core::config::ConfigError;
use selfbuild_core::idsource::OsRandom;
use selfbuild_mcp::access_log::LogRecordAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings, app};
use selfbuild_peers::{PeerSettings, RmcpPeers};
use selfbuild_validate::{PipelineChecker, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    selfbuild_aws::observability::init_logging();
    let config = Config::from_env()?;
    let settings = McpSettings::from_env()?;
    let state_machine_arn = config.require_state_machine_arn()?.to_owned();
    let keys_secret = std::env::var("API_KEYS_SECRET_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing {
            name: "API_KEYS_SECRET_ID",
        })?;

    let checker = PipelineChecker::new(Settings::from_env()?);
    let metrics = Arc::new(selfbuild_aws::observability::metrics(&config));
    // Clients are built once per container, outside the handler.
    let sdk = selfbuild_aws::sdk_config().await;
    // One client starts executions and resumes the ones waiting for approval.
    let sfn = Arc::new(StepFunctionsOrchestrator::new(&sdk, state_machine_arn));
    // The fallback's secret is read now only when component generation is on.
    let llm = selfbuild_aws::steps::cycle_llm(&sdk, &config, config.component_generation).await?;
    // rollback_improvement tells the dependent agents, with their keys from Secrets Manager.
    let agent_keys = Arc::new(SecretsManagerSecrets::new(&sdk, Duration::from_secs(300)));
    let peers = RmcpPeers::new(agent_keys, PeerSettings::from_config(&config))?;
    let deps = McpDeps {
        store: Arc::new(DynamoStore::new(&sdk, config.table_name.clone())),
        // Structured records in the function's log group, written before each answer.
        access_log: Arc::new(LogRecordAccessLog::stdout()),
        orchestrator: sfn.clone(),
        task_tokens: sfn,
        telemetry: Arc::new(selfbuild_aws::telemetry::CloudWatchTelemetry::for_cycle(
            &sdk, &config,
        )),
        deployer: Arc::new(LambdaDeployer::new(&sdk).with_packages(PackageFetcher::from_env()?)),
        notifier: Arc::new(EventBridgeNotifier::new(
            &sdk,
            config.event_bus_name.clone(),
        )),
        peers: Arc::new(peers),
        llm: Arc::new(llm),
        checker: Arc::new(checker),
        metrics: metrics.clone(),
        keys: Arc::new(SecretsManagerKeys::new(
            &sdk,
            keys_secret,
            settings.keys_refresh,
        )),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        config: Arc::new(config),
        settings,
    };
    let router = app(deps);
    let cold_start = Arc::new(ColdStart::from_env());
    lambda_http::run(service_fn(move |request: Request| {
        cold_start.invoked(metrics.as_ref(), &SystemClock);
        router.clone().oneshot(request)
    }))
    .await
}
