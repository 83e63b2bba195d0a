//! The ASL loader: `${Name}` substitutions, parsing and validation of a state machine
//! definition (`StateMachine::load`, with the substitutions the offline cycle uses).
//!
//! Properties: a loaded machine starts at one of its states, its state names are unique
//! and within Step Functions' 80 characters, its timeout is within the documented range,
//! and loading the re-serialised definition gives the same machine; a refusal says what is
//! wrong without echoing the input whole.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use selfbuild_local::asl::{AslError, StateMachine};
use serde_json::Value;

static SUBSTITUTIONS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    selfbuild_local::cycle::substitutions("arn:aws:lambda:us-east-1:123456789012:function:")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let machine = match StateMachine::load(text, &SUBSTITUTIONS) {
        Ok(machine) => machine,
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            // Names and fields come from the definition; a value is never repeated whole.
            assert!(
                message.len() <= 2 * text.len() + 512,
                "the error is longer than the input: {} bytes",
                message.len()
            );
            if let AslError::Invalid { at, field, .. } | AslError::Unsupported { at, field } = &e {
                assert!(!at.is_empty(), "{e}");
                // A field without a name is one whose key is "" (as it says: field "").
                assert!(!field.is_empty() || text.contains("\"\""), "{e}");
            }
            return;
        }
    };
    let names = machine.state_names();
    assert!(names.contains(&machine.start_at()), "StartAt is no state");
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a state name appears twice");
    for name in &names {
        assert!(
            (1..=80).contains(&name.chars().count()),
            "state name {name:?}"
        );
    }
    if let Some(t) = machine.timeout_seconds() {
        assert!((1..=99_999_999).contains(&t));
    }
    // The loaded definition is JSON whose compact form (substitutions done) loads the same.
    let substituted = substitute_all(text);
    // (A `\u0024{` escape is `${` once parsed: the compact form would ask for a substitution.)
    if let Ok(value) = serde_json::from_str::<Value>(&substituted)
        && let compact = value.to_string()
        && !compact.contains("${")
    {
        let again = StateMachine::load(&compact, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("the re-serialised definition fails: {e}"));
        assert_eq!(again.state_names(), names);
        assert_eq!(again.start_at(), machine.start_at());
        assert_eq!(again.timeout_seconds(), machine.timeout_seconds());
        assert_eq!(again.comment(), machine.comment());
    }
});

/// The text with every known `${Name}` replaced (a loaded definition has no other).
fn substitute_all(text: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(text.to_owned(), |t, (name, value)| {
            t.replace(&format!("${{{name}}}"), value)
        })
}
