//! An MCP request body as the endpoint reads it: `jsonrpc::check` (UTF-8, strict JSON,
//! one JSON-RPC message, params of the methods served), then, for a `tools/call` of a known
//! tool, the tool's argument parsing. The seeds are real `tools/call` bodies, so the
//! fuzzer mutates arguments inside a valid envelope; `fuzz/dict/mcp_request.dict` holds the
//! tool and argument names.
//!
//! Properties: an accepted message re-serialises and is accepted again unchanged; a refusal
//! has a JSON-RPC error code, echoes the request's id only when it is usable, and a short
//! message; accepted arguments use only the properties the tool's `tools/list` schema
//! declares and include its required ones; refused arguments name a field of the
//! arguments or of the schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfbuild_mcp::jsonrpc::{INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, check};
use selfbuild_mcp::tools::{DEFINITIONS, ToolError, ToolName};
use serde_json::Value;

/// The longest refusal message: excerpts and cut parser messages, never the input.
const MAX_MESSAGE: usize = 1200;

fuzz_target!(|data: &[u8]| {
    let message = match check(data) {
        Ok(message) => message,
        Err(refusal) => {
            assert!(
                [PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS].contains(&refusal.code),
                "code {}",
                refusal.code
            );
            assert!(!refusal.message.is_empty());
            assert!(
                refusal.message.len() <= MAX_MESSAGE
                    || refusal.message.contains("appears more than once"),
                "refusal echoes too much: {} bytes",
                refusal.message.len()
            );
            if !refusal.id.is_null() {
                let sent: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
                assert_eq!(
                    sent.get("id"),
                    Some(&refusal.id),
                    "the id answered is not the one sent"
                );
            }
            return;
        }
    };
    // What passes the check is accepted again, as the same message, once re-serialised.
    let again =
        check(message.to_string().as_bytes()).unwrap_or_else(|r| panic!("re-check refused: {r:?}"));
    assert_eq!(again, message);
    assert_eq!(message["jsonrpc"], "2.0");

    if message.get("method").and_then(Value::as_str) != Some("tools/call")
        || message.get("id").is_none()
    {
        return;
    }
    let params = &message["params"];
    let name = params["name"]
        .as_str()
        .unwrap_or_else(|| panic!("tools/call passed without a string name: {params}"));
    let Some(tool) = ToolName::parse(name) else {
        return;
    };
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    let definition = DEFINITIONS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} has no definition"));
    let schema = &definition.input_schema;
    let properties = schema.get("properties").and_then(Value::as_object);
    match tool.parse_arguments(arguments.clone()) {
        Ok(()) => {
            let given = arguments.as_object().cloned().unwrap_or_default();
            for key in given.keys() {
                assert!(
                    properties.is_some_and(|p| p.contains_key(key)),
                    "{name} accepted {key:?}, which its schema does not declare"
                );
            }
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let required = required.as_str().unwrap_or_default();
                assert!(
                    given.contains_key(required),
                    "{name} accepted arguments without the required {required:?}"
                );
            }
        }
        Err(ToolError::InvalidArguments(problem)) => {
            // The field is the text before a ": " (a key may hold ": " itself); a long one
            // is cut with "…".
            let named = problem.match_indices(": ").any(|(at, _)| {
                let field = &problem[..at];
                let first = field.split(['.', '[']).next().unwrap_or_default();
                field == "arguments"
                    || field.contains('…')
                    || selfbuild_fuzz::names_a_field(&arguments, field)
                    || properties.is_some_and(|p| p.contains_key(first))
            });
            assert!(named, "{name}: the error names no argument: {problem}");
            assert!(
                problem.len() <= MAX_MESSAGE,
                "{name}: {} bytes",
                problem.len()
            );
        }
        Err(other) => panic!("{name}: parsing arguments gave {other:?}"),
    }
});
