//! The cycle's Lambda functions on AWS: every port on its AWS adapter, built once per
//! container, then the core step for each event.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{LambdaEvent, service_fn};
use selfbuild_core::Config;
use selfbuild_core::clock::SystemClock;
use selfbuild_core::ports::{
    AgentPeers, CodeChecker, CodeSource, NoCodeChecker, NoCodeSource, NoPeers,
};
use selfbuild_core::steps::{StepDeps, StepFunction, run_step};
use selfbuild_peers::{PeerSettings, RmcpPeers};
use serde_json::Value;

use crate::dynamo::DynamoStore;
use crate::eventbridge::EventBridgeNotifier;
use crate::lambda::diagnostic;
use crate::lambda_code::PackageFetcher;
use crate::lambda_deployer::LambdaDeployer;
use crate::llm::{BedrockLlm, ModelPrice, OpenAiCompatibleLlm, OpenAiConfig, ResilientLlm};
use crate::observability::ColdStart;
use crate::secrets::{SecretsManagerSecrets, field};
use crate::telemetry::CloudWatchTelemetry;

/// Runs `function` as a Lambda function until the runtime stops it, without code: a code
/// patch reaching it is refused (only the validate function checks code: [`run_checking`]).
pub async fn run(function: StepFunction) -> Result<(), lambda_runtime::Error> {
    run_checking(function, &NoCodeSource, &NoCodeChecker).await
}

/// [`run`] with the deployed code (Lambda's, read by `lambda_code::LambdaCodeSource`,
/// on AWS) and a code checker: the validate function; generate reads the code for its
/// prompt with [`NoCodeChecker`].
pub async fn run_checking(
    function: StepFunction,
    code: &dyn CodeSource,
    checker: &dyn CodeChecker,
) -> Result<(), lambda_runtime::Error> {
    crate::observability::init_logging();
    let config = Config::from_env()?;
    let sdk = crate::sdk_config().await;
    let store = DynamoStore::new(&sdk, config.table_name.clone());
    let telemetry = CloudWatchTelemetry::for_cycle(&sdk, &config);
    let deployer = LambdaDeployer::new(&sdk).with_packages(PackageFetcher::from_env()?);
    // Only generate asks the LLM: the others skip reading the fallback secret at init.
    let llm = cycle_llm(&sdk, &config, function == StepFunction::Generate).await?;
    let notifier = EventBridgeNotifier::new(&sdk, config.event_bus_name.clone());
    let clock = SystemClock;
    let metrics = crate::observability::metrics(&config);
    let cold_start = &ColdStart::from_env();
    // Only deploy and rollback call agents; the others keep `NoPeers` (no client built).
    let calls_agents = matches!(function, StepFunction::Deploy | StepFunction::Rollback);
    let peers: Box<dyn AgentPeers> = if calls_agents {
        let keys = Arc::new(SecretsManagerSecrets::new(&sdk, Duration::from_secs(300)));
        Box::new(RmcpPeers::new(keys, PeerSettings::from_config(&config))?)
    } else {
        Box::new(NoPeers)
    };
    let deps = StepDeps {
        telemetry: &telemetry,
        deployer: &deployer,
        code,
        checker,
        llm: &llm,
        store: &store,
        notifier: &notifier,
        registry: &store,
        peers: peers.as_ref(),
        metrics: &metrics,
        clock: &clock,
    };
    let config = &config;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        cold_start.invoked(deps.metrics, deps.clock);
        run_step(function, deps, config, &event.payload)
            .await
            .map_err(|e| diagnostic(&e))
    }))
    .await
}

/// Bedrock behind a circuit breaker and retries, with the OpenAI-compatible fallback when
/// `with_fallback` and `LLM_FALLBACK_SECRET_ID` names one (its secret is read now, and an
/// unreadable secret is an error naming it).
pub async fn cycle_llm(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    with_fallback: bool,
) -> Result<ResilientLlm, lambda_runtime::Error> {
    let bedrock = BedrockLlm::new(sdk, config.bedrock_model_id.clone());
    let provider = bedrock.provider_name();
    let mut llm = ResilientLlm::new(provider, Arc::new(bedrock));
    if let Some(id) = config
        .llm_fallback_secret_id
        .as_ref()
        .filter(|_| with_fallback)
    {
        let secrets = SecretsManagerSecrets::new(sdk, Duration::from_secs(300));
        let fallback = openai_fallback(&secrets, id).await?;
        let name = fallback.provider_name();
        llm = llm.with_fallback(name, Arc::new(fallback));
    }
    Ok(llm)
}

/// The OpenAI-compatible fallback from its secret `{base_url, api_key, model}`.
async fn openai_fallback(
    secrets: &SecretsManagerSecrets,
    id: &str,
) -> Result<OpenAiCompatibleLlm, lambda_runtime::Error> {
    let secret = secrets.json(id).await?;
    let model = field(id, &secret, "model")?.to_owned();
    let config = OpenAiConfig {
        base_url: field(id, &secret, "base_url")?.to_owned(),
        api_key: field(id, &secret, "api_key")?.to_owned(),
        price: ModelPrice::from_env(&model)?,
        model,
    };
    Ok(OpenAiCompatibleLlm::new(config)?)
}
