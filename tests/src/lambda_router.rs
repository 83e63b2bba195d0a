//! A loopback HTTP router in front of moto: Lambda `Invoke` calls
//! (`POST /2015-03-31/functions/<name>/invocations`) go to an in-process handler, every other
//! request is forwarded to moto unchanged. Moto's Step Functions engine calls Lambda at
//! `localhost:$MOTO_PORT`, so starting moto with `MOTO_PORT` = this router's port makes its
//! executions run our step functions.

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

struct Request {
    head: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    Ok(Some(Request { head, path, body }))
}

async fn handle(
    mut stream: TcpStream,
    upstream: SocketAddr,
    invoke: InvokeFn,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
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
