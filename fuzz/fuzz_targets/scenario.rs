//! Scenario files (`events/scenarios/**`): `Scenario::parse`, which reads, then checks ranges,
//! unique names and time order.
//!
//! Properties: an accepted scenario serialises and parses back equal and within its
//! documented ranges; a refusal names a field that is in the document (or `.`, the
//! document) and prefixes the source name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfbuild_local::fleet::{Scenario, ScenarioError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scenario = match Scenario::parse(text, "fuzz.json") {
        Ok(scenario) => scenario,
        Err(ScenarioError::Invalid {
            source_name,
            field,
            message,
        }) => {
            assert_eq!(source_name, "fuzz.json");
            assert!(!message.is_empty());
            if field != "." && !field.contains('?') {
                // The document may be no JSON at all past the error; check only what parses
                // without a repeated key (serde reads a struct's first, a Value keeps the last).
                if let Ok(document) = selfbuild_core::event::read_event(text) {
                    assert!(
                        selfbuild_fuzz::names_a_field(&document, &field),
                        "the error names no field of the scenario: {field}: {message}"
                    );
                }
            }
            return;
        }
        Err(other) => panic!("parse gave {other}"),
    };
    for f in &scenario.functions {
        assert!((128..=10_240).contains(&f.settings.memory_mb));
        assert!((1..=900).contains(&f.settings.timeout_seconds));
    }
    assert!(!scenario.name.trim().is_empty());
    let text = serde_json::to_string(&scenario).unwrap_or_else(|e| panic!("{e}"));
    let back = Scenario::parse(&text, "fuzz.json")
        .unwrap_or_else(|e| panic!("the serialised scenario fails: {e}\n{text}"));
    assert_eq!(back, scenario, "the scenario changed on a round trip");
});
