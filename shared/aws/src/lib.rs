//! selfbuild's ports over the AWS SDK.
//!
//! - [`dynamo`]: [`DynamoStore`], every store port (claims, halt switch, cycles, approvals, audit,
//!   improvement records, LLM usage, MCP registry and access log) on one DynamoDB table.
//! - [`sfn`]: [`StepFunctionsOrchestrator`], cycles as Step Functions executions named by cycle id.
//! - [`cloudwatch`]: [`CloudWatchAlarms`], the alarms in ALARM from CloudWatch `DescribeAlarms`.
//! - [`telemetry`]: [`telemetry::CloudWatchTelemetry`], metric series from CloudWatch
//!   `GetMetricData` and error rows from CloudWatch Logs Insights.
//! - [`dlq`]: [`dlq::SqsDeadLetters`], intake's dead-letter queue (SQS): its depth, and each
//!   message re-sent once to alarm-intake.
//! - [`eventbridge`]: [`eventbridge::EventBridgeNotifier`], notifications for other agents on an event bus.
//! - [`health`]: the self health pass on AWS: own functions' metrics, the DLQ depth, one
//!   pass after each poll tick.
//! - [`rollback_heal`]: [`rollback_heal::InvokeRollbackFunction`], the health pass's
//!   rollback heal handed to the rollback function (an asynchronous Lambda `Invoke`).
//! - [`secrets`]: JSON secrets from Secrets Manager, cached per container.
//! - [`steps`]: the cycle's Lambda functions on their AWS adapters ([`steps::run`]).
//! - [`lambda`]: [`lambda::diagnostic`], Lambda error reports with a stable `errorType`.
//! - [`lambda_deployer`]: [`LambdaDeployer`], canaries as published versions weighted behind
//!   the alias `live`.
//! - [`llm`]: the Llm port over Bedrock Converse ([`llm::BedrockLlm`]) and OpenAI-compatible
//!   endpoints ([`llm::OpenAiCompatibleLlm`]), one forced tool call each, behind retries and
//!   circuit breakers ([`llm::ResilientLlm`]).
//! - `sdk_error` (private): which SDK errors are transient, and error text without raw dumps.
//!
//! [`sdk_config`] loads the SDK configuration once per process. Local endpoints (moto,
//! DynamoDB Local) are chosen with `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`, which the
//! SDK honours by itself; there is no local switch in code.

pub mod cloudwatch;
pub mod dlq;
pub mod dynamo;
pub mod eventbridge;
pub mod health;
pub mod lambda;
pub mod lambda_code;
pub mod lambda_deployer;
pub mod llm;
pub mod observability;
pub mod rollback_heal;
mod sdk_error;
pub mod secrets;
pub mod sfn;
pub mod steps;
pub mod telemetry;

pub use cloudwatch::CloudWatchAlarms;
pub use dynamo::DynamoStore;
pub use lambda_deployer::LambdaDeployer;
pub use sfn::StepFunctionsOrchestrator;

use aws_config::BehaviorVersion;

/// The SDK configuration from the environment (region, credentials, endpoint overrides).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
