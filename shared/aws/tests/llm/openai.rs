//! OpenAiCompatibleLlm over chat/completions, against recorded responses.

use std::time::Duration;

use selfbuild_aws::llm::{ModelPrice, OpenAiCompatibleLlm, OpenAiConfig};
use selfbuild_core::change::Change;
use selfbuild_core::generate::proposal_schema;
use selfbuild_core::ports::{Llm, LlmError};
use serde_json::json;

use crate::support::{
    OPENAI_INVALID_KEY, OPENAI_RATE_LIMITED, OPENAI_TOOL_CALL, Reply, Server, request,
};

pub const MODEL: &str = "gpt-4.1";

/// An adapter for the listener at `url`, the API under `/v1`, $2 / $8 per million tokens.
pub fn openai(url: &str) -> OpenAiCompatibleLlm {
    OpenAiCompatibleLlm::new(OpenAiConfig {
        base_url: format!("{url}/v1/"),
        api_key: "sk-test".into(),
        model: MODEL.into(),
        price: ModelPrice::new(2.0, 8.0),
    })
    .unwrap_or_else(|e| panic!("client: {e}"))
}

#[tokio::test]
async fn a_forced_function_call_becomes_a_typed_proposal() {
    let server = Server::start(vec![Reply::Recorded(OPENAI_TOOL_CALL)]).await;
    let sent = request(1.0);

    let answer = openai(server.url())
        .propose(&sent)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let Change::LambdaConfig { config, .. } = &answer.proposal.change else {
        panic!("expected lambda_config");
    };
    assert_eq!(
        (config.timeout_seconds, config.memory_mb),
        (Some(10), Some(256))
    );
    assert_eq!(answer.provider, "openai:gpt-4.1");
    assert_eq!(
        (answer.usage.input_tokens, answer.usage.output_tokens),
        (1502, 88)
    );
    assert!((answer.usage.cost_usd - (1502.0 * 2.0 + 88.0 * 8.0) / 1e6).abs() < 1e-12);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let captured = &requests[0];
    assert_eq!(
        (captured.method.as_str(), captured.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(captured.header("authorization"), Some("Bearer sk-test"));
    let body = captured.json();
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "propose_change"}})
    );
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "propose_change");
    assert_eq!(
        body["tools"][0]["function"]["parameters"],
        proposal_schema()
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": sent.system},
            {"role": "user", "content": sent.prompt},
        ])
    );
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 4096);
}

#[tokio::test]
async fn rate_limiting_is_unavailable() {
    let server = Server::start(vec![Reply::Recorded(OPENAI_RATE_LIMITED)]).await;

    let err = openai(server.url())
        .propose(&request(1.0))
        .await
        .expect_err("429");

    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("429") && m.contains("Rate limit reached")),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_key_is_no_proposal_with_the_status_and_message() {
    let server = Server::start(vec![Reply::Recorded(OPENAI_INVALID_KEY)]).await;

    let err = openai(server.url())
        .propose(&request(1.0))
        .await
        .expect_err("401");

    assert!(
        matches!(&err, LlmError::NoProposal(m) if m.contains("401") && m.contains("Incorrect API key")),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_in_time_is_unavailable() {
    let server = Server::start(vec![Reply::Hang]).await;
    let llm = OpenAiCompatibleLlm::with_timeout(
        OpenAiConfig {
            base_url: format!("{}/v1", server.url()),
            api_key: "sk-test".into(),
            model: MODEL.into(),
            price: ModelPrice::new(2.0, 8.0),
        },
        Duration::from_millis(300),
    )
    .unwrap_or_else(|e| panic!("client: {e}"));

    let err = llm.propose(&request(1.0)).await.expect_err("timeout");

    assert!(
        matches!(&err, LlmError::Unavailable(m) if m.contains("timed out")),
        "{err}"
    );
}

#[tokio::test]
async fn a_budget_too_small_sends_nothing() {
    let server = Server::start(vec![Reply::Recorded(OPENAI_TOOL_CALL)]).await;

    let err = openai(server.url())
        .propose(&request(0.001))
        .await
        .expect_err("budget");

    assert!(matches!(err, LlmError::BudgetExceeded(_)), "{err}");
    assert!(server.requests().is_empty());
}
