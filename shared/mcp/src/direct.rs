//! Read-only tool calls answered without a second read of the body (issue 19): the guard
//! has already read the message with rmcp's types ([`crate::jsonrpc::check_message`]), so a
//! plain `tools/call` of a read-only tool goes from there to the handler
//! ([`SelfbuildMcp::call_as`]) and its answer is rmcp's message, serialised as rmcp's
//! transport serialises it: the same bytes (tests/router.rs compares both ways for every
//! read-only tool). rmcp's transport would read the body again, start a service task and a
//! handler task per request and pass the answer through channels.
//!
//! Only a request rmcp's Streamable HTTP transport (stateless, JSON answers) would hand to
//! the handler unchanged takes this way: a `Host` it parses, an `Accept` naming both JSON and
//! SSE without parameters, an `MCP-Protocol-Version` it knows from before per-request
//! metadata (or none), and params of `name` and `arguments` only (no `_meta`). Anything
//! else goes through rmcp, which answers or refuses it as before. The guard's checks (host,
//! key, content type, body, JSON-RPC, scope) come first either way.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, JsonRpcRequest,
    ProtocolVersion, RequestId, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use selfbuild_core::apikeys::ApiKey;
use serde_json::Value;
use tracing::error;

use crate::guard::Caller;
use crate::jsonrpc::{self, Checked};
use crate::server::SelfbuildMcp;
use crate::tools::ToolName;

/// A read-only `tools/call` the endpoint answers itself (put in the request's extensions by
/// the guard instead of [`Caller`]).
#[derive(Debug, Clone)]
pub struct DirectCall {
    key: ApiKey,
    id: RequestId,
    params: CallToolRequestParams,
}

/// What the MCP routes serve: rmcp's transport, and the handler for direct calls (shared
/// behind an `Arc`: axum clones the state for every request).
pub struct Endpoint {
    /// rmcp's Streamable HTTP transport (stateless, JSON answers).
    pub rmcp: StreamableHttpService<SelfbuildMcp, NeverSessionManager>,
    /// The handler rmcp's transport serves.
    pub handler: SelfbuildMcp,
}

/// The MCP routes: a [`DirectCall`] is answered here, every other request by rmcp.
pub async fn endpoint(State(endpoint): State<Arc<Endpoint>>, mut request: Request) -> Response {
    match request.extensions_mut().remove::<DirectCall>() {
        Some(call) => answer(&endpoint.handler, call).await,
        None => endpoint.rmcp.handle(request).await.into_response(),
    }
}

/// Where the guard sends a checked request: a [`DirectCall`] in its extensions, or [`Caller`]
/// and the body for rmcp.
pub(crate) fn route(
    extensions: &mut axum::http::Extensions,
    uri: &Uri,
    headers: &HeaderMap,
    key: ApiKey,
    checked: Checked,
    body: axum::body::Bytes,
) -> Body {
    match plain_read_only_call(uri, headers, checked) {
        Some((id, params)) => {
            extensions.insert(DirectCall { key, id, params });
            Body::empty()
        }
        None => {
            extensions.insert(Caller(key));
            Body::from(body)
        }
    }
}

/// The id and params of a `tools/call` of a read-only tool that rmcp's transport would hand
/// to the handler as it is; none for anything else.
fn plain_read_only_call(
    uri: &Uri,
    headers: &HeaderMap,
    checked: Checked,
) -> Option<(RequestId, CallToolRequestParams)> {
    let Checked { value, message } = checked;
    let ClientJsonRpcMessage::Request(JsonRpcRequest {
        id,
        request: ClientRequest::CallToolRequest(call),
        ..
    }) = message
    else {
        return None;
    };
    // No `_meta` (per-request protocol version, progress token) and nothing newer.
    let params = value.get("params").and_then(Value::as_object)?;
    if !params.keys().all(|k| k == "name" || k == "arguments") {
        return None;
    }
    let tool = ToolName::parse(&call.params.name)?;
    if !tool.spec().read_only || !plain_headers(uri, headers) {
        return None;
    }
    Some((id, call.params))
}

/// rmcp's transport takes these headers as they are: it would neither refuse the request
/// nor route it by protocol version.
fn plain_headers(uri: &Uri, headers: &HeaderMap) -> bool {
    host_parses(uri, headers) && accepts_json_and_sse(headers) && version_before_metadata(headers)
}

/// rmcp answers 400 to a `Host` that is not an authority (or to no host at all).
fn host_parses(uri: &Uri, headers: &HeaderMap) -> bool {
    match headers.get(header::HOST) {
        Some(host) => host
            .to_str()
            .is_ok_and(|h| h.parse::<axum::http::uri::Authority>().is_ok()),
        None => uri.authority().is_some(),
    }
}

/// Every `Accept` value is plain text without parameters or quotes (rmcp's reading of those
/// is not repeated here), and together they name `application/json` and `text/event-stream`
/// (rmcp answers 406 without both).
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in &headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        if value.contains([';', '"', '\\']) {
            return false;
        }
        for essence in value.split(',').map(str::trim) {
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

/// No `MCP-Protocol-Version` (rmcp assumes 2025-03-26), or one rmcp knows that is older than
/// per-request metadata and the standard headers (from those on, rmcp checks more).
fn version_before_metadata(headers: &HeaderMap) -> bool {
    let Some(version) = headers.get("mcp-protocol-version") else {
        return true;
    };
    let Ok(version) = version.to_str() else {
        return false;
    };
    let first_checked = ProtocolVersion::STANDARD_HEADERS
        .as_str()
        .min(ProtocolVersion::NO_INITIALIZE.as_str());
    ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .any(|known| known.as_str() == version)
        && version < first_checked
}

/// The call's answer as rmcp's transport gives it: a JSON-RPC response (or error) with 200.
async fn answer(handler: &SelfbuildMcp, call: DirectCall) -> Response {
    let message = match handler.call_as(&call.key, call.params).await {
        Ok(response) => {
            let mut result = ServerResult::from(response);
            // As rmcp's handler answers a peer on a version before 2026-07-28 (the only
            // versions answered here): without `resultType: "complete"`.
            result.strip_result_type_for_legacy_peer();
            ServerJsonRpcMessage::response(result, call.id)
        }
        Err(error) => JsonRpcMessage::error(error, Some(call.id)),
    };
    match serde_json::to_vec(&message) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => {
            error!(error = %e, "tool call answer not serialised");
            jsonrpc::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Value::Null,
                jsonrpc::INTERNAL_ERROR,
                format!("the answer could not be serialised: {e}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const PLAIN: [(&str, &str); 3] = [
        ("host", "127.0.0.1:8787"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    fn checked(body: Value) -> Checked {
        jsonrpc::check_message(body.to_string().as_bytes()).expect("checked")
    }

    fn direct(headers: &HeaderMap, body: Value) -> bool {
        plain_read_only_call(&Uri::from_static("/mcp"), headers, checked(body)).is_some()
    }

    fn call(name: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": name, "arguments": {}}})
    }

    #[test]
    fn a_plain_call_of_a_read_only_tool_is_answered_directly() {
        let plain = headers(&PLAIN);
        for tool in ToolName::ALL {
            assert_eq!(
                direct(&plain, call(tool.name())),
                tool.spec().read_only,
                "{}",
                tool.name()
            );
        }
        for version in ["2024-11-05", "2025-03-26", "2025-11-25"] {
            let mut h = headers(&PLAIN[..2]);
            h.insert("mcp-protocol-version", HeaderValue::from_static(version));
            assert!(direct(&h, call("list_agents")), "{version}");
        }
        assert!(direct(&headers(&PLAIN[..2]), call("list_agents")));
        let no_arguments = json!({"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                                  "params": {"name": "list_agents"}});
        assert!(direct(&plain, no_arguments));
        let split_accept = headers(&[
            ("host", "localhost"),
            ("accept", "text/event-stream"),
            ("accept", "APPLICATION/JSON"),
        ]);
        assert!(direct(&split_accept, call("list_agents")));
    }

    #[test]
    fn anything_rmcp_would_look_at_goes_through_rmcp() {
        let plain = headers(&PLAIN);
        let with = |name: &'static str, value: &'static str| {
            let mut h = headers(&PLAIN);
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        for (what, h) in [
            (
                "2026 per-request form",
                with("mcp-protocol-version", "2026-07-28"),
            ),
            (
                "unknown version",
                with("mcp-protocol-version", "2099-01-01"),
            ),
            ("JSON only", with("accept", "application/json")),
            ("SSE only", with("accept", "text/event-stream")),
            (
                "parameters",
                with("accept", "application/json;q=1, text/event-stream"),
            ),
            (
                "quotes",
                with("accept", "application/json, text/event-stream, a/b\""),
            ),
            ("bad host", with("host", "a b")),
        ] {
            assert!(!direct(&h, call("list_agents")), "{what}");
        }
        let no_host = headers(&PLAIN[1..]);
        assert!(!direct(&no_host, call("list_agents")));
        for body in [
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "list_agents", "arguments": {}, "_meta": {"progressToken": 1}}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "list_agents", "requestState": "x"}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "no_such_tool"}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ] {
            assert!(!direct(&plain, body.clone()), "{body}");
        }
    }
}
