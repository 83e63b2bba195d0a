//! A local HTTP/1.1 listener that answers with recorded responses and keeps what it was sent,
//! and the fixtures the LLM tests share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use selfbuild_core::change::LambdaSettings;
use selfbuild_core::cycle::CycleMode;
use selfbuild_core::generate::build_request;
use selfbuild_core::ids::{ComponentId, CycleId};
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::opportunity::{Opportunity, OpportunityKind, Priority};
use selfbuild_core::ports::LlmRequest;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Converse answering with a forced `propose_change` call (timeout 10 s, memory 512 MB).
pub const BEDROCK_TOOL_USE: &str = include_str!("../recorded/bedrock-converse-tool-use.json");
/// Converse throttled: 429 with `x-amzn-ErrorType: ThrottlingException:…`.
pub const BEDROCK_THROTTLING: &str = include_str!("../recorded/bedrock-throttling.json");
/// Converse answering with `expected_gain: "about 30%"`.
pub const BEDROCK_MALFORMED: &str = include_str!("../recorded/bedrock-malformed-tool-input.json");
/// A chat completion with a forced `propose_change` function call.
pub const OPENAI_TOOL_CALL: &str = include_str!("../recorded/openai-chat-tool-call.json");
/// A chat completion refused with 429 `rate_limit_exceeded`.
pub const OPENAI_RATE_LIMITED: &str = include_str!("../recorded/openai-rate-limited.json");
/// A chat completion refused with 401 `invalid_api_key`.
pub const OPENAI_INVALID_KEY: &str = include_str!("../recorded/openai-invalid-key.json");

/// What the listener does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with a recorded response (`{"status", "headers", "body"}`).
    Recorded(&'static str),
    /// Reads the request and never answers (the client times out).
    Hang,
}

/// One request the listener received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `POST`, …
    pub method: String,
    /// The request target, e.g. `/model/…/converse`.
    pub path: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Captured {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON: {e}"))
    }
}

/// A listener on 127.0.0.1 answering from a script; the last reply repeats.
pub struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts listening; replies come from `script` in order.
    pub async fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty(), "a server needs at least one reply");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move { serve(stream, seen, script).await });
            }
        });
        Self {
            url: format!("http://{addr}"),
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request, records it, answers it and closes the connection.
async fn serve(
    mut stream: TcpStream,
    seen: Arc<Mutex<Vec<Captured>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    let reply = {
        let mut script = script.lock().unwrap_or_else(|e| e.into_inner());
        if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        }
    };
    match reply {
        Some(Reply::Recorded(recorded)) => {
            let _ = stream.write_all(&response_bytes(recorded)).await;
            let _ = stream.shutdown().await;
        }
        Some(Reply::Hang) | None => {
            // Hold the connection open until the client gives up.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Captured> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "this listener reads bodies by content-length only"
    );
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Captured {
        method,
        path,
        headers,
        body,
    })
}

/// A recorded `{"status", "headers", "body"}` as an HTTP/1.1 response that closes the connection.
fn response_bytes(recorded: &str) -> Vec<u8> {
    let recorded: Value =
        serde_json::from_str(recorded).unwrap_or_else(|e| panic!("recorded response: {e}"));
    let status = recorded["status"].as_u64().unwrap_or(200);
    let body = recorded["body"].to_string();
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    if let Some(headers) = recorded["headers"].as_object() {
        for (name, value) in headers {
            head.push_str(&format!(
                "{name}: {}\r\n",
                value.as_str().unwrap_or_default()
            ));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

fn reason(status: u64) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        _ => "Status",
    }
}

/// The recorded body of a fixture, to compare answers with.
pub fn recorded_body(recorded: &str) -> Value {
    let recorded: Value =
        serde_json::from_str(recorded).unwrap_or_else(|e| panic!("recorded response: {e}"));
    recorded["body"].clone()
}

/// An item about `orders-api` timing out at 3 s with 128 MB.
pub fn item() -> ImprovementItem {
    let component = ComponentId::parse("orders-api").unwrap_or_else(|e| panic!("{e}"));
    ImprovementItem {
        cycle_id: CycleId::parse("c1").unwrap_or_else(|e| panic!("{e}")),
        tenant_id: None,
        mode: CycleMode::Routine,
        dry_run: false,
        opportunity: Opportunity {
            id: "orders-api:timeouts".into(),
            rank: 1,
            component,
            tenant_id: None,
            kind: OpportunityKind::Timeouts,
            evidence: vec![],
            expected_gain: 0.9,
            affected_requests: 100.0,
            impact_score: 90.0,
            priority: Priority::High,
            current: Some(LambdaSettings {
                memory_mb: 128,
                timeout_seconds: 3,
                reserved_concurrency: None,
                environment: Default::default(),
            }),
            top_errors: vec!["Task timed out after 3.00 seconds".into()],
            stack_traces: vec![],
            agents: vec![],
        },
        generated: None,
        validation: None,
        approval: None,
        deploy: None,
        monitor: None,
    }
}

/// generate's request for [`item`] with this budget.
pub fn request(budget_usd: f64) -> LlmRequest {
    build_request(&item(), budget_usd)
}
