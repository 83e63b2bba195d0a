//! A loopback listener that answers every request with one recorded HTTP response
//! (`{"status", "headers", "body"}`, the format of `shared/aws/tests/recorded/`), and keeps
//! what it was sent: a stand-in for Bedrock Runtime (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::http::Request;

/// A listener on 127.0.0.1, stopped when dropped.
pub struct RecordedServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordedServer {
    /// Starts answering with the recorded response in `file`.
    pub async fn start(file: &Path) -> Self {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let recorded: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let response = Arc::new(response_bytes(&recorded));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the recorded listener: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("recorded listener address: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, response) = (Arc::clone(&seen), Arc::clone(&response));
                tokio::spawn(async move {
                    if let Ok(Some(request)) = crate::http::read_request(&mut stream).await {
                        seen.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(request);
                        let _ = stream.write_all(&response).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            requests,
            task,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RecordedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The HTTP/1.1 response a recording describes; a JSON body is sent compact.
fn response_bytes(recorded: &Value) -> Vec<u8> {
    let status = recorded["status"].as_u64().unwrap_or(200);
    let body = match &recorded["body"] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut head = format!("HTTP/1.1 {status} Recorded\r\n");
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
