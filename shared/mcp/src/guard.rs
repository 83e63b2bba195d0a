//! Checks every request passes before the MCP protocol sees it: the `Host` header, the method,
//! the Bearer key (401), the content type (415), the body size (413) and time (408), the
//! JSON-RPC message ([`crate::jsonrpc`], 400) and, for `tools/call`, the tool's scope (403);
//! then hands the request on for rmcp, or as a [`crate::direct::DirectCall`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use selfbuild_core::apikeys::ApiKey;
use selfbuild_core::ports::KeySourceError;
use selfbuild_core::text::glob_matches;
use serde_json::Value;
use tracing::{error, warn};

use crate::McpDeps;
use crate::jsonrpc;
use crate::tools::ToolName;

/// The authenticated key of a request, put in the request's extensions for the handler.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKey);

/// JSON-RPC error code for a request refused by authentication or authorization.
pub const FORBIDDEN_CODE: i64 = -32001;

/// The middleware: refuses or passes the request on with a [`Caller`] extension.
pub async fn guard(State(deps): State<Arc<McpDeps>>, request: Request, next: Next) -> Response {
    if let Some(refusal) = check_host(&deps.settings.allowed_hosts, &request) {
        return refusal;
    }
    if request.method() != axum::http::Method::POST {
        let mut response = rpc_error(
            StatusCode::METHOD_NOT_ALLOWED,
            Value::Null,
            -32600,
            format!(
                "{} is not supported: this endpoint is stateless and answers POST only (no SSE stream, no sessions)",
                request.method()
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let key = match authenticate(&deps, authorization.as_deref()).await {
        Ok(key) => key,
        Err(refusal) => return refusal,
    };
    let content_type = request.headers().get(header::CONTENT_TYPE);
    if !jsonrpc::is_json_content(content_type) {
        return jsonrpc::unsupported_media_type(content_type);
    }
    let (mut parts, body) = request.into_parts();
    let limit = deps.settings.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            if let Some(timeout) = timed_out(&e) {
                return rpc_error(
                    StatusCode::REQUEST_TIMEOUT,
                    Value::Null,
                    -32600,
                    timeout.to_string(),
                );
            }
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                -32600,
                format!("request body is larger than {limit} bytes (MCP_MAX_BODY_BYTES)"),
            );
        }
    };
    let checked = match jsonrpc::check_message(&bytes) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some((tool, message, refusal)) = check_scopes(&key, &checked.value) {
        let now = deps.clock.now();
        crate::server::log_tool_call(&deps, &key, tool, "denied", message, now);
        return refusal;
    }
    let body = crate::direct::route(
        &mut parts.extensions,
        &parts.uri,
        &parts.headers,
        key,
        checked,
        bytes,
    );
    let response = next.run(Request::from_parts(parts, body)).await;
    jsonrpc::json_errors(response).await
}

/// The timeout behind a body that could not be read, if that is why (the server's body
/// timeout, e.g. `selfbuild serve --body-timeout`).
fn timed_out(e: &axum::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(e) = source {
        if let Some(io) = e
            .downcast_ref::<std::io::Error>()
            .filter(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// A 403 when the `Host` header matches none of the allowed patterns.
fn check_host(allowed: &[String], request: &Request) -> Option<Response> {
    if allowed.is_empty() {
        return None;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let without_port = strip_port(host);
    if allowed
        .iter()
        .any(|p| host_matches(p, host) || host_matches(p, without_port))
    {
        return None;
    }
    warn!(host, "request for a host that is not allowed");
    Some(rpc_error(
        StatusCode::FORBIDDEN,
        Value::Null,
        FORBIDDEN_CODE,
        format!("Host {host:?} is not allowed (MCP_ALLOWED_HOSTS)"),
    ))
}

/// [`glob_matches`], without its allocations for a pattern with no wildcard (most are).
fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern.contains(['*', '?']) {
        glob_matches(pattern, host)
    } else {
        pattern.eq_ignore_ascii_case(host)
    }
}

/// `host:port` → `host`; `[::1]:8787` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.rfind(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

async fn authenticate(deps: &McpDeps, authorization: Option<&str>) -> Result<ApiKey, Response> {
    let presented = authorization.and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    });
    let Some(presented) = presented else {
        return Err(unauthorized(
            "Bearer realm=\"selfbuild\"",
            "missing API key: send `Authorization: Bearer <key>`",
        ));
    };
    let keys = deps.keys.keys().await.map_err(|e| {
        error!(error = %e, "API keys could not be loaded");
        let status = match e {
            KeySourceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            KeySourceError::Invalid(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        rpc_error(
            status,
            Value::Null,
            -32603,
            "the API key list cannot be read; the operator has been alerted in the logs".into(),
        )
    })?;
    match keys.authenticate(presented) {
        Some(key) => Ok(key.clone()),
        None => Err(unauthorized(
            "Bearer realm=\"selfbuild\", error=\"invalid_token\", error_description=\"unknown API key\"",
            "invalid API key",
        )),
    }
}

fn unauthorized(challenge: &'static str, message: &str) -> Response {
    let mut response = rpc_error(
        StatusCode::UNAUTHORIZED,
        Value::Null,
        FORBIDDEN_CODE,
        message.to_owned(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The tool, the reason and a 403 when the message is a `tools/call` whose tool needs a scope
/// the key lacks (the message is one, checked: batches are refused before).
fn check_scopes(key: &ApiKey, message: &Value) -> Option<(String, String, Response)> {
    if message.get("method").and_then(Value::as_str) != Some("tools/call") {
        return None;
    }
    let tool = message
        .pointer("/params/name")
        .and_then(Value::as_str)
        .and_then(ToolName::parse)?;
    let scope = tool.scope();
    if key.allows(scope) {
        return None;
    }
    let reason = format!(
        "API key {:?} lacks the {:?} scope that tool {} needs",
        key.id,
        scope.as_str(),
        tool.name()
    );
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let response = rpc_error(StatusCode::FORBIDDEN, id, FORBIDDEN_CODE, reason.clone());
    Some((tool.name().to_owned(), reason, response))
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: String) -> Response {
    jsonrpc::error_response(status, id, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_with_wildcards_and_without_ports() {
        assert!(glob_matches(
            "*.lambda-url.*.on.aws",
            "abc123.lambda-url.eu-west-1.on.aws"
        ));
        assert!(!glob_matches("*.lambda-url.*.on.aws", "evil.example.com"));
        assert!(!glob_matches(
            "*.lambda-url.*.on.aws",
            "x.lambda-url.on.aws.evil.com"
        ));
        assert!(glob_matches("localhost", "LOCALHOST"));
        assert!(!glob_matches("localhost", "localhost.evil"));
        for (pattern, host) in [
            ("localhost", "LocalHost"),
            ("localhost", "localhost.evil"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("héllo", "HÉLLO"),
            ("*.lambda-url.*.on.aws", "a.lambda-url.x.on.aws"),
            ("h?st", "host"),
        ] {
            assert_eq!(
                host_matches(pattern, host),
                glob_matches(pattern, host),
                "{pattern} {host}"
            );
        }
        assert_eq!(strip_port("127.0.0.1:8787"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:8787"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }
}
