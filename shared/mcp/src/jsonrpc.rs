//! The JSON-RPC check every POST body passes before rmcp sees it, and JSON-RPC errors for
//! what fails: `-32700` (not UTF-8 JSON), `-32600` (not one JSON-RPC message) and `-32602`
//! (the params of a method served do not fit it), each naming what is wrong.
//!
//! rmcp answers a body it cannot read with a plain-text 415, and a served method with
//! unusable params with `-32601` naming the method (its untagged parse falls back to a
//! custom request); the Streamable HTTP transport wants JSON-RPC errors in JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, InitializeRequestParams,
    JsonRpcMessage, NumberOrString, PaginatedRequestParams,
};
use selfbuild_core::event::EventJson;
use selfbuild_core::text::Excerpt;
use serde::Deserialize;
use serde_json::{Value, json};

/// JSON-RPC: the body is not JSON (or not UTF-8).
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not one valid request, notification or response.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the method's params are unusable.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: the server failed.
pub const INTERNAL_ERROR: i64 = -32603;

/// The methods this endpoint serves whose params rmcp reads into a type.
const SERVED: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
];

/// The longest part of a parser's message an error repeats (serde quotes the values it
/// rejects, and a value may be megabytes long).
const DETAIL_CHARS: usize = 200;

/// Why a body is not a message the endpoint takes: a 400 with a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The request's id when it has a usable one, else null.
    pub id: Value,
    /// The JSON-RPC error code.
    pub code: i64,
    /// What is wrong, naming the member.
    pub message: String,
}

impl Refusal {
    fn new(id: Value, code: i64, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_response(StatusCode::BAD_REQUEST, self.id, self.code, self.message)
    }
}

/// A JSON-RPC error response (`Content-Type: application/json`) with this HTTP status.
pub fn error_response(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// A body that passed [`check_message`]: the message as JSON and as rmcp reads it.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The message as JSON.
    pub value: Value,
    /// The same message as rmcp's types read it.
    pub message: ClientJsonRpcMessage,
}

/// The body as one JSON-RPC message rmcp will read, or why it is not one.
pub fn check(body: &[u8]) -> Result<Value, Refusal> {
    check_message(body).map(|checked| checked.value)
}

/// [`check`], keeping rmcp's read of the message (the check reads it with rmcp's types).
pub fn check_message(body: &[u8]) -> Result<Checked, Refusal> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Refusal::new(
            Value::Null,
            PARSE_ERROR,
            format!(
                "request body is not UTF-8 (byte {} is not valid UTF-8); JSON-RPC messages are UTF-8 JSON",
                e.valid_up_to()
            ),
        )
    })?;
    // The events' strict reader: a repeated key is refused, not silently the last one.
    let message = serde_json::from_str::<EventJson>(text)
        .map_err(|e| {
            Refusal::new(
                Value::Null,
                PARSE_ERROR,
                format!("request body is not JSON: {e}"),
            )
        })?
        .into_value()
        .map_err(|e| Refusal::new(Value::Null, INVALID_REQUEST, e.0))?;
    let object = match &message {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Refusal::new(
                Value::Null,
                INVALID_REQUEST,
                "batches are not supported: send one JSON-RPC message per request (MCP dropped JSON-RPC batching in 2025-06-18)",
            ));
        }
        other => {
            return Err(Refusal::new(
                Value::Null,
                INVALID_REQUEST,
                format!(
                    "a JSON-RPC message is a JSON object, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    let id = match object.get("id") {
        None => Value::Null,
        // rmcp reads a number with a fraction of zero (`1.0`) as the integer and answers
        // with `1`: a client matching the answer's id to its own would not find it.
        Some(id) => match NumberOrString::deserialize(id) {
            Ok(_) if !id.is_f64() => id.clone(),
            _ => {
                return Err(Refusal::new(
                    Value::Null,
                    INVALID_REQUEST,
                    format!("id must be a string or an integer, got {}", describe(id)),
                ));
            }
        },
    };
    let refuse = |code, message: String| Err(Refusal::new(id.clone(), code, message));
    match object.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        None => {
            return refuse(
                INVALID_REQUEST,
                "jsonrpc is missing; it must be \"2.0\"".into(),
            );
        }
        Some(other) => {
            return refuse(
                INVALID_REQUEST,
                format!("jsonrpc must be \"2.0\", got {}", describe(other)),
            );
        }
    }
    let method = match object.get("method") {
        Some(Value::String(method)) => method.as_str(),
        Some(other) => {
            return refuse(
                INVALID_REQUEST,
                format!("method must be a string, got {}", describe(other)),
            );
        }
        None if object.contains_key("id")
            && (object.contains_key("result") || object.contains_key("error")) =>
        {
            // A response to a server request: rmcp reads it (or it fails the check below).
            return rmcp_reads(message, id);
        }
        None => {
            return refuse(
                INVALID_REQUEST,
                "method is missing: a request has \"method\" and \"id\", a notification \"method\""
                    .into(),
            );
        }
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => None,
        Some(params @ Value::Object(_)) => Some(params),
        Some(other) => {
            return refuse(
                INVALID_PARAMS,
                format!(
                    "params of {} must be an object, got {}",
                    Excerpt(method),
                    json_kind(other)
                ),
            );
        }
    };
    // The methods served are requests; a notification's params are never read.
    if object.contains_key("id")
        && let Some(problem) = params_problem(method, params)
    {
        return refuse(INVALID_PARAMS, problem);
    }
    rmcp_reads(message, id)
}

/// The message if rmcp reads it, and reads a served method as that method (its untagged
/// parse makes a request whose params do not fit a custom one).
fn rmcp_reads(value: Value, id: Value) -> Result<Checked, Refusal> {
    match ClientJsonRpcMessage::deserialize(&value) {
        Err(e) => Err(Refusal::new(
            id,
            INVALID_REQUEST,
            format!("not an MCP message: {}", cut(&e.to_string())),
        )),
        Ok(message) => {
            if let JsonRpcMessage::Request(request) = &message
                && let ClientRequest::CustomRequest(custom) = &request.request
                && SERVED.contains(&custom.method.as_str())
            {
                return Err(Refusal::new(
                    id,
                    INVALID_PARAMS,
                    format!(
                        "params do not fit {}; see the MCP schema for its params",
                        custom.method
                    ),
                ));
            }
            Ok(Checked { value, message })
        }
    }
}

/// What is wrong with a served request's params, naming the member.
fn params_problem(method: &str, params: Option<&Value>) -> Option<String> {
    match method {
        "tools/call" => {
            let Some(params) = params else {
                return Some(
                    "tools/call needs params: {\"name\": <tool name>, \"arguments\": {…}}".into(),
                );
            };
            match params.get("name") {
                Some(Value::String(_)) => {}
                None => return Some("params.name is missing: the tool to call".into()),
                Some(other) => {
                    return Some(format!(
                        "params.name must be a string (the tool to call), got {}",
                        describe(other)
                    ));
                }
            }
            match params.get("arguments") {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(other) => {
                    return Some(format!(
                        "params.arguments must be an object (the tool's arguments by name), got {}",
                        describe(other)
                    ));
                }
            }
            typed::<CallToolRequestParams>(params)
        }
        "initialize" => match params {
            None => Some(
                "initialize needs params: {\"protocolVersion\", \"capabilities\", \"clientInfo\"}"
                    .into(),
            ),
            Some(params) => typed::<InitializeRequestParams>(params),
        },
        "tools/list" => params.and_then(typed::<PaginatedRequestParams>),
        _ => None,
    }
}

/// The first problem serde finds reading `params` as `T`, with its path.
fn typed<T: for<'de> Deserialize<'de>>(params: &Value) -> Option<String> {
    serde_path_to_error::deserialize::<_, T>(params)
        .err()
        .map(|e| {
            // The path holds the client's keys: cut like the parser's message.
            let path = cut(&e.path().to_string());
            let inner = cut(&e.into_inner().to_string());
            if path == "." {
                format!("params: {inner}")
            } else {
                format!("params.{path}: {inner}")
            }
        })
}

/// rmcp's own refusals (406 for `Accept`, …) are plain text; they become JSON-RPC errors
/// with the same status and text.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let code = if status.is_server_error() {
        INTERNAL_ERROR
    } else {
        INVALID_REQUEST
    };
    let message = if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        cut(text.trim())
    };
    let mut answer = error_response(status, Value::Null, code, message);
    // Keep what else rmcp said (`Allow`, …), not its body's headers.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// `Content-Type` is `application/json` (parameters allowed), as rmcp checks it.
pub fn is_json_content(value: Option<&HeaderValue>) -> bool {
    value.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let essence = v.split_once(';').map_or(v, |(essence, _)| essence);
        essence.trim().eq_ignore_ascii_case("application/json")
    })
}

/// A 415 for a body that is not declared JSON.
pub fn unsupported_media_type(value: Option<&HeaderValue>) -> Response {
    let got = value.map_or_else(
        || "none".to_owned(),
        |v| Excerpt(&String::from_utf8_lossy(v.as_bytes())).to_string(),
    );
    error_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Value::Null,
        INVALID_REQUEST,
        format!("Content-Type must be application/json, got {got}"),
    )
}

/// `text` cut after [`DETAIL_CHARS`] characters, its size noted.
pub(crate) fn cut(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
    }
}

/// A JSON value's kind, and the value itself when it is short.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {}", Excerpt(s)),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("{b}"),
        other => json_kind(other).to_owned(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &[u8]) -> Refusal {
        check(body).expect_err("refused")
    }

    #[test]
    fn well_formed_messages_pass() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/list","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":null}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method","params":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","id":4,"result":{}}"#,
        ] {
            assert!(check(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn each_fault_has_its_code_and_names_the_member() {
        for (body, code, names) in [
            (&br#"{"jsonrpc":"2.0","id":1,"#[..], PARSE_ERROR, "not JSON"),
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffng\"}", PARSE_ERROR, "UTF-8"),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, INVALID_REQUEST, "batch"),
            (br#""ping""#, INVALID_REQUEST, "JSON object"),
            (br#"{"id":1,"method":"ping"}"#, INVALID_REQUEST, "jsonrpc"),
            (br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, INVALID_REQUEST, "id: the key appears more than once"),
            (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, INVALID_REQUEST, "id must be"),
            (br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, INVALID_REQUEST, "id must be"),
            // Found by fuzzing (mcp_router): 1.0 was answered as id 1.
            (br#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#, INVALID_REQUEST, "id must be"),
            (br#"{"jsonrpc":"2.0","id":1.0000000000000000005,"method":"ping"}"#, INVALID_REQUEST, "id must be"),
            (br#"{"jsonrpc":"2.0","id":1e0,"method":"ping"}"#, INVALID_REQUEST, "id must be"),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST, "method must be a string"),
            (br#"{"jsonrpc":"2.0","id":1}"#, INVALID_REQUEST, "method is missing"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}"#, INVALID_PARAMS, "must be an object"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, INVALID_PARAMS, "tools/call needs params"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#, INVALID_PARAMS, "params.name must be a string"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#, INVALID_PARAMS, "params.arguments must be an object"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":5}}"#, INVALID_PARAMS, "params.cursor"),
            (br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#, INVALID_PARAMS, "clientInfo"),
        ] {
            let r = refused(body);
            assert_eq!(r.code, code, "{}: {r:?}", String::from_utf8_lossy(body));
            assert!(r.message.contains(names), "{}: {r:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_usable_id_is_answered_and_an_unusable_one_is_null() {
        assert_eq!(
            refused(br#"{"jsonrpc":"2.0","id":"a","method":"tools/call"}"#).id,
            "a"
        );
        assert_eq!(
            refused(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).id,
            Value::Null
        );
    }

    #[test]
    fn an_accepted_message_is_accepted_again_unchanged() {
        // Found by fuzzing: a long number parsed inexactly, so the message re-serialised
        // differed from the one checked.
        let body = br#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"list_improvements","arguments":{"limit":2099999999199999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999}}}"#;
        let message = check(body).unwrap();
        assert_eq!(check(message.to_string().as_bytes()).unwrap(), message);
    }

    #[test]
    fn a_huge_wrong_value_is_not_echoed() {
        let huge = "x".repeat(1_000_000);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "x", "arguments": huge}})
        .to_string();
        let r = refused(body.as_bytes());
        assert!(r.message.len() < 300, "{}", r.message.len());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                          "params": {"cursor": {"deep": huge}}})
        .to_string();
        let r = refused(body.as_bytes());
        assert!(r.message.len() < 300, "{}", r.message.len());
        // Found by fuzzing: a long key became part of the path, which was not cut.
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18", "clientInfo": {"name": "c", "version": "1"},
                                     "capabilities": {"experimental": {huge.clone(): 5}}}})
        .to_string();
        let r = refused(body.as_bytes());
        assert!(
            r.message.starts_with("params.capabilities.experimental."),
            "{}",
            &r.message[..100]
        );
        assert!(r.message.len() < 600, "{}", r.message.len());
    }
}
