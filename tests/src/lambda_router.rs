//! A loopback HTTP router in front of moto: Lambda `Invoke` calls
//! (`POST /2015-03-31/functions/<name>/invocations`) go to an [`InvokeFn`], every other
//! request is forwarded to moto unchanged. Moto's Step Functions engine calls Lambda at
//! `localhost:$MOTO_PORT`, so starting moto with `MOTO_PORT` = this router's port makes its
//! executions run our step functions.
//!
//! The [`InvokeFn`] is either in-process handlers, or [`forward_invocations`]: the real
//! function binaries behind `cargo lambda watch`, one Invoke API port per function.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A function's answer: its result, or (errorType, errorMessage).
pub type InvokeResult = Result<Value, (String, String)>;

/// Runs a function by name on a payload.
pub type InvokeFn =
    Arc<dyn Fn(String, Value) -> Pin<Box<dyn Future<Output = InvokeResult> + Send>> + Send + Sync>;

/// Invocations sent on to Lambda Invoke API emulators, e.g. `cargo lambda watch`, by function
/// name (the last `:`-segment of the ARN moto's engine sends).
///
/// The answer is translated into what Lambda itself says, which the router then writes: a
/// function error comes from cargo-lambda as HTTP 500 with `{"errorType", "errorMessage"}` and
/// no `X-Amz-Function-Error`, whereas Lambda answers 200 with `X-Amz-Function-Error: Unhandled`
/// (what moto's engine matches `Retry`/`Catch` on). An unknown name is
/// `Lambda.ResourceNotFoundException`; an emulator that cannot be reached or answers anything
/// else is `Lambda.ServiceException` with its status and body.
pub fn forward_invocations(targets: BTreeMap<String, SocketAddr>) -> InvokeFn {
    let targets = Arc::new(targets);
    Arc::new(move |name: String, payload: Value| {
        let targets = Arc::clone(&targets);
        Box::pin(async move {
            let Some(addr) = targets.get(&name).copied() else {
                return Err((
                    "Lambda.ResourceNotFoundException".to_owned(),
                    format!("Function not found: {name} (no emulator for it)"),
                ));
            };
            let path = format!("/2015-03-31/functions/{name}/invocations");
            let body = payload.to_string();
            let response = crate::http::send(
                addr,
                "POST",
                &path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await
            .map_err(|e| {
                (
                    "Lambda.ServiceException".to_owned(),
                    format!("{name} at {addr}: {e}"),
                )
            })?;
            invoke_result(&name, &response)
        })
    })
}

/// What an Invoke API answer means: the result, or (errorType, errorMessage).
fn invoke_result(name: &str, response: &crate::http::Response) -> InvokeResult {
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    let reported = json.as_ref().and_then(|v| {
        let error_type = v.get("errorType")?.as_str()?.to_owned();
        let message = v
            .get("errorMessage")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some((error_type, message))
    });
    let function_error =
        response.status == 500 || response.header("x-amz-function-error").is_some();
    if function_error && let Some(reported) = reported {
        return Err(reported);
    }
    if response.status == 200 && !function_error {
        return json.ok_or_else(|| {
            (
                "Lambda.ServiceException".to_owned(),
                format!(
                    "{name} answered 200 with a body that is not JSON: {}",
                    response.text()
                ),
            )
        });
    }
    Err((
        "Lambda.ServiceException".to_owned(),
        format!("{name} answered {}: {}", response.status, response.text()),
    ))
}

/// A bound router, not yet serving.
pub struct LambdaRouter {
    listener: TcpListener,
    /// The port it listens on.
    pub port: u16,
}

impl LambdaRouter {
    /// Binds a free loopback port.
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the router");
        let port = listener.local_addr().expect("router address").port();
        Self { listener, port }
    }

    /// Serves until the task is aborted: invocations to `invoke`, the rest to `upstream`.
    pub fn serve(self, upstream: SocketAddr, invoke: InvokeFn) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = self.listener.accept().await else {
                    continue;
                };
                let invoke = Arc::clone(&invoke);
                tokio::spawn(async move {
                    let _ = handle(stream, upstream, invoke).await;
                });
            }
        })
    }
}

async fn handle(
    mut stream: TcpStream,
    upstream: SocketAddr,
    invoke: InvokeFn,
) -> std::io::Result<()> {
    let Some(request) = crate::http::read_request(&mut stream).await? else {
        return Ok(());
    };
    let function = request
        .path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.split_once("/invocations"))
        .map(|(name, _)| {
            // The SDK sends an ARN as the name, percent-encoded.
            let name = percent_decode(name);
            name.rsplit(':').next().unwrap_or(&name).to_owned()
        });
    match function {
        Some(name) => {
            let payload: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let (status_headers, body) = match invoke(name, payload).await {
                Ok(value) => (String::new(), value.to_string()),
                Err((error_type, message)) => (
                    "X-Amz-Function-Error: Unhandled\r\n".to_owned(),
                    serde_json::json!({"errorType": error_type, "errorMessage": message})
                        .to_string(),
                ),
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{status_headers}X-Amz-Executed-Version: $LATEST\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await?;
        }
        None => {
            // Forward as-is, but ask moto to close so the response ends at EOF.
            let mut head: String = request
                .head
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
                .map(|l| format!("{l}\r\n"))
                .collect();
            head.push_str("Connection: close\r\n\r\n");
            let mut moto = TcpStream::connect(upstream).await?;
            moto.write_all(head.as_bytes()).await?;
            moto.write_all(&request.body).await?;
            let mut response = Vec::new();
            moto.read_to_end(&mut response).await?;
            stream.write_all(&response).await?;
        }
    }
    stream.shutdown().await
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::parse_response;

    fn answer(raw: &str) -> InvokeResult {
        invoke_result("analyze", &parse_response(raw.as_bytes()).unwrap())
    }

    #[test]
    fn cargo_lambdas_answers_read_as_lambdas() {
        // A result, and a function error as cargo-lambda 1.9.2 reports it (500, no header).
        assert_eq!(
            answer("HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"),
            Ok(serde_json::json!({"ok": true}))
        );
        let error = r#"{"errorType":"InvalidInput","errorMessage":"invalid input: cycle_id"}"#;
        assert_eq!(
            answer(&format!(
                "HTTP/1.1 500 Internal Server Error\r\n\r\n{error}"
            )),
            Err(("InvalidInput".into(), "invalid input: cycle_id".into()))
        );
        // Lambda's own form, for an emulator that already speaks it.
        assert_eq!(
            answer(&format!(
                "HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\n\r\n{error}"
            )),
            Err(("InvalidInput".into(), "invalid input: cycle_id".into()))
        );
        // The emulator's own refusals are service errors, not the function's.
        let missing = answer("HTTP/1.1 404 Not Found\r\n\r\n{\"title\":\"Missing function\"}");
        assert!(
            matches!(&missing, Err((t, m)) if t == "Lambda.ServiceException" && m.contains("404")),
            "{missing:?}"
        );
    }
}
