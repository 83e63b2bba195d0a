//! BedrockLlm over Converse, against recorded Converse responses.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use selfbuild_aws::llm::{BedrockLlm, ModelPrice, TokenLimits};
use selfbuild_core::change::{Change, RiskLevel};
use selfbuild_core::generate::proposal_schema;
use selfbuild_core::ports::{Llm, LlmError};
use serde_json::json;

use crate::support::{
    BEDROCK_MALFORMED, BEDROCK_THROTTLING, BEDROCK_TOOL_USE, Reply, Server, recorded_body, request,
};

pub const MODEL: &str = "anthropic.claude-sonnet-4-20250514-v1:0";

/// SDK configuration pointing at `url` with fixed credentials.
pub fn sdk_config(url: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDRECORDED",
            "recorded-secret",
            None,
            None,
            "recorded",
        )))
        .build()
}

#[tokio::test]
async fn a_forced_tool_call_becomes_a_typed_proposal_with_its_cost() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_TOOL_USE)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL);

    let answer = llm
        .propose(&request(1.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let Change::LambdaConfig { function, config } = &answer.proposal.change else {
        panic!("expected lambda_config, got {:?}", answer.proposal.change);
    };
    assert_eq!(function.as_str(), "orders-api");
    assert_eq!(
        (config.timeout_seconds, config.memory_mb),
        (Some(10), Some(512))
    );
    assert_eq!(answer.proposal.claimed_risk, RiskLevel::Low);
    assert_eq!(answer.provider, format!("bedrock:{MODEL}"));
    let usage = recorded_body(BEDROCK_TOOL_USE)["usage"].clone();
    assert_eq!(
        answer.usage.input_tokens,
        usage["inputTokens"].as_u64().unwrap_or_default()
    );
    assert_eq!(
        answer.usage.output_tokens,
        usage["outputTokens"].as_u64().unwrap_or_default()
    );
    // Sonnet list price: $3 / $15 per million tokens.
    let expected = (1873.0 * 3.0 + 412.0 * 15.0) / 1e6;
    assert!(
        (answer.usage.cost_usd - expected).abs() < 1e-12,
        "{}",
        answer.usage.cost_usd
    );
}

#[tokio::test]
async fn the_request_forces_propose_change_with_the_proposal_schema() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_TOOL_USE)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL);
    let sent = request(1.0);
    llm.propose(&sent).await.unwrap_or_else(|e| panic!("{e}"));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let captured = &requests[0];
    assert_eq!(captured.method, "POST");
    assert_eq!(
        captured.path,
        "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/converse"
    );
    let auth = captured.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDRECORDED/"),
        "{auth}"
    );
    let body = captured.json();
    assert_eq!(
        body["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "propose_change"}})
    );
    let spec = &body["toolConfig"]["tools"][0]["toolSpec"];
    assert_eq!(spec["name"], "propose_change");
    assert_eq!(spec["inputSchema"]["json"], proposal_schema());
    assert_eq!(body["system"], json!([{"text": sent.system}]));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"text": sent.prompt}]}])
    );
    // A $1 budget affords the full 4096 output tokens.
    assert_eq!(body["inferenceConfig"]["maxTokens"], 4096);
}

#[tokio::test]
async fn max_tokens_shrinks_to_what_the_budget_affords() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_TOOL_USE)]).await;
    let llm =
        BedrockLlm::new(&sdk_config(server.url()), MODEL).with_price(ModelPrice::new(0.0, 100.0));
    // $0.1 at $100 per million output tokens: 1000 tokens; the answer's 412 cost $0.0412.
    let answer = llm
        .propose(&request(0.1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert!((answer.usage.cost_usd - 0.0412).abs() < 1e-12);
    assert_eq!(
        server.requests()[0].json()["inferenceConfig"]["maxTokens"],
        1000
    );
}

#[tokio::test]
async fn a_budget_too_small_is_refused_before_any_request() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_TOOL_USE)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL);

    let err = llm.propose(&request(0.001)).await.expect_err("over budget");

    assert!(matches!(err, LlmError::BudgetExceeded(_)), "{err}");
    assert!(server.requests().is_empty(), "nothing may be sent");
}

#[tokio::test]
async fn an_answer_costing_more_than_the_budget_is_refused() {
    // GIVEN a model that ignores maxTokens: the budget affords 300 tokens, it sends 412.
    let server = Server::start(vec![Reply::Recorded(BEDROCK_TOOL_USE)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL)
        .with_price(ModelPrice::new(0.0, 1000.0))
        .with_token_limits(TokenLimits {
            max_output_tokens: 4096,
            min_output_tokens: 100,
        });

    let err = llm.propose(&request(0.3)).await.expect_err("over budget");

    assert!(
        matches!(&err, LlmError::BudgetExceeded(m) if m.contains("$0.4120")),
        "{err}"
    );
    assert_eq!(
        server.requests()[0].json()["inferenceConfig"]["maxTokens"],
        300
    );
}

#[tokio::test]
async fn a_malformed_tool_input_is_an_invalid_answer_naming_the_field() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_MALFORMED)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL);

    let err = llm.propose(&request(1.0)).await.expect_err("malformed");

    assert!(
        matches!(&err, LlmError::InvalidAnswer(m) if m.contains("`expected_gain`")),
        "{err}"
    );
}

#[tokio::test]
async fn throttling_is_unavailable_and_the_sdk_does_not_retry_by_itself() {
    let server = Server::start(vec![Reply::Recorded(BEDROCK_THROTTLING)]).await;
    let llm = BedrockLlm::new(&sdk_config(server.url()), MODEL);

    let err = llm.propose(&request(1.0)).await.expect_err("throttled");

    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("ThrottlingException")),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}
