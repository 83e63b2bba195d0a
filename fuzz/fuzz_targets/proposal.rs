//! An LLM's forced `propose_change` tool input, as the providers and the recorded answers
//! hand it over: JSON text → `generate::parse_proposal` → `validate` (the next step).
//!
//! Properties: a parsed proposal re-serialises and parses back the same; a refusal is an
//! `InvalidAnswer` that starts with the provider and names a field of the input; validation
//! never panics, and a change it lets deploy without a human is within Lambda's documented
//! bounds (memory 128–10240 MB, timeout 1–900 s, expected gain 0–1).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use selfbuild_core::Config;
use selfbuild_core::change::{Change, LambdaSettings};
use selfbuild_core::generate::parse_proposal;
use selfbuild_core::improvement::{Generated, ImprovementItem, LlmUsage, ValidationDecision};
use selfbuild_core::ports::LlmError;
use selfbuild_core::validate::{MAX_TIMEOUT_SECONDS, MEMORY_MB, validate};
use serde_json::{Value, json};

const PROVIDER: &str = "fuzz";

/// Autonomy on, so that a LOW change may deploy without a human.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_lookup(|name| (name == "ENABLE_AUTONOMOUS_IMPROVEMENTS").then(|| "true".into()))
        .unwrap_or_else(|e| panic!("{e}"))
});

/// A tenant's item about `orders-api` timing out at 3 s with 128 MB.
static ITEM: LazyLock<ImprovementItem> = LazyLock::new(|| {
    let mut item: ImprovementItem = serde_json::from_value(json!({
        "cycle_id": "c1", "tenant_id": "acme", "mode": "routine",
        "opportunity": {"id": "orders-api:timeouts", "rank": 1, "component": "orders-api",
            "tenant_id": "acme", "kind": "timeouts", "evidence": [], "expected_gain": 0.9,
            "affected_requests": 100.0, "impact_score": 90.0, "priority": "high",
            "current": null, "top_errors": []},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    item.opportunity.current = Some(LambdaSettings {
        memory_mb: 128,
        timeout_seconds: 3,
        reserved_concurrency: None,
        environment: Default::default(),
    });
    item
});

fuzz_target!(|data: &[u8]| {
    // Bedrock hands over a JSON document, the OpenAI-compatible API a JSON string: text.
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let proposal = match parse_proposal(PROVIDER, input.clone()) {
        Ok(proposal) => proposal,
        Err(LlmError::InvalidAnswer(message)) => {
            let rest = message
                .strip_prefix("fuzz: the propose_change input")
                .unwrap_or_else(|| panic!("the error does not say whose answer: {message}"));
            if let Some(at) = rest.strip_prefix(" at `") {
                let path = at.split_once('`').map_or(at, |(path, _)| path);
                assert!(
                    selfbuild_fuzz::names_a_field(&input, path),
                    "the error names no field of the input: {message}"
                );
            }
            return;
        }
        Err(other) => panic!("parse_proposal gave {other:?}"),
    };
    // Nothing is lost between the answer and the record.
    let stored = serde_json::to_value(&proposal).unwrap_or_else(|e| panic!("{e}"));
    let back = parse_proposal(PROVIDER, stored).unwrap_or_else(|e| panic!("re-parse: {e}"));
    assert_eq!(back, proposal);

    let mut item = ITEM.clone();
    // Aim the opportunity at the proposal's target, so the rules past the scope check run.
    item.opportunity.component = proposal.change.target().clone();
    item.generated = Some(Generated {
        improvement_id: "c1-1".parse().unwrap(),
        proposal: proposal.clone(),
        provider: PROVIDER.into(),
        usage: LlmUsage::default(),
        repair_rounds: 0,
    });
    // A code patch is checked by the pipeline (fuzzed by `validate_patch`); unchecked, it
    // must be refused.
    let validation = validate(&item, &CONFIG, None);
    if validation.decision == ValidationDecision::AutoDeploy {
        assert!((0.0..=1.0).contains(&proposal.expected_gain));
        assert!(matches!(proposal.change, Change::LambdaConfig { .. }));
        let after = validation
            .after
            .unwrap_or_else(|| panic!("an auto-deployed change without settings"));
        assert!(
            (MEMORY_MB.0..=MEMORY_MB.1).contains(&after.memory_mb),
            "{after:?}"
        );
        assert!(
            (1..=MAX_TIMEOUT_SECONDS).contains(&after.timeout_seconds),
            "{after:?}"
        );
    }
});
