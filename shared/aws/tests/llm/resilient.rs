//! ResilientLlm over the real adapters: retries on throttling, a breaker that opens, a fallback.

use std::sync::Arc;
use std::time::Duration;

use selfbuild_aws::llm::{BedrockLlm, BreakerState, ManualTimer, ResilientLlm};

use crate::bedrock::{MODEL, sdk_config};
use crate::openai::openai;
use crate::support::{
    BEDROCK_THROTTLING, BEDROCK_TOOL_USE, OPENAI_TOOL_CALL, Reply, Server, request,
};
use selfbuild_core::ports::Llm;

#[tokio::test]
async fn throttling_then_success_is_retried_after_200_ms() {
    let server = Server::start(vec![
        Reply::Recorded(BEDROCK_THROTTLING),
        Reply::Recorded(BEDROCK_TOOL_USE),
    ])
    .await;
    let bedrock = BedrockLlm::new(&sdk_config(server.url()), MODEL);
    let clock = Arc::new(ManualTimer::new());
    let llm =
        ResilientLlm::new(bedrock.provider_name(), Arc::new(bedrock)).with_timer(clock.clone());

    let answer = llm
        .propose(&request(1.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(answer.provider, format!("bedrock:{MODEL}"));
    assert_eq!(server.requests().len(), 2);
    assert_eq!(clock.slept(), [Duration::from_millis(200)]);
    assert_eq!(llm.breaker_states()[0].1, BreakerState::Closed);
}

#[tokio::test]
async fn three_throttled_attempts_open_the_circuit_and_the_fallback_answers() {
    let bedrock_server = Server::start(vec![Reply::Recorded(BEDROCK_THROTTLING)]).await;
    let openai_server = Server::start(vec![Reply::Recorded(OPENAI_TOOL_CALL)]).await;
    let bedrock = BedrockLlm::new(&sdk_config(bedrock_server.url()), MODEL);
    let fallback = openai(openai_server.url());
    let clock = Arc::new(ManualTimer::new());
    let llm = ResilientLlm::new(bedrock.provider_name(), Arc::new(bedrock))
        .with_fallback(fallback.provider_name(), Arc::new(fallback))
        .with_timer(clock.clone());

    // WHEN the primary is throttled three times in a row
    let answer = llm
        .propose(&request(1.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // THEN its circuit opens after the third attempt and the fallback answers
    assert_eq!(answer.provider, "openai:gpt-4.1");
    assert_eq!(bedrock_server.requests().len(), 3);
    assert_eq!(openai_server.requests().len(), 1);
    assert_eq!(
        clock.slept(),
        [Duration::from_millis(200), Duration::from_millis(400)]
    );
    assert_eq!(
        llm.breaker_states(),
        [
            (format!("bedrock:{MODEL}"), BreakerState::Open),
            ("openai:gpt-4.1".to_owned(), BreakerState::Closed),
        ]
    );

    // AND while it is open the primary is not called at all
    let answer = llm
        .propose(&request(1.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.provider, "openai:gpt-4.1");
    assert_eq!(bedrock_server.requests().len(), 3);

    // AND after the cool-down one trial goes to the primary
    clock.advance(Duration::from_secs(60));
    assert_eq!(llm.breaker_states()[0].1, BreakerState::HalfOpen);
    llm.propose(&request(1.0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bedrock_server.requests().len(), 4);
    assert_eq!(llm.breaker_states()[0].1, BreakerState::Open);
}
