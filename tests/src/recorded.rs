//! A loopback listener that answers requests with recorded HTTP responses
//! (`{"status", "headers", "body"}`, the format of `shared/aws/tests/recorded/`), and keeps
//! what it was sent and which recording answered: a stand-in for Bedrock Runtime
//! (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`). One recording answers everything ([`start`]), or each
//! request gets the first [`Route`] whose text its body contains ([`start_routes`]).
//!
//! [`start`]: RecordedServer::start
//! [`start_routes`]: RecordedServer::start_routes

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::http::Request;

/// One recording and the requests it answers.
#[derive(Debug, Clone)]
pub struct Route {
    /// Text the request body must contain; empty: every request.
    pub body_contains: String,
    /// The recorded response.
    pub file: PathBuf,
}

impl Route {
    /// Answers requests whose body contains `text` with the recording in `file`.
    pub fn body_contains(text: &str, file: &Path) -> Self {
        Self {
            body_contains: text.to_owned(),
            file: file.to_owned(),
        }
    }

    /// Answers every request with the recording in `file`.
    pub fn any(file: &Path) -> Self {
        Self::body_contains("", file)
    }
}

/// A request received and the recording that answered it (none: no route matched).
#[derive(Debug, Clone)]
pub struct Answered {
    /// The request.
    pub request: Request,
    /// The recording's file.
    pub file: Option<PathBuf>,
}

/// A listener on 127.0.0.1, stopped when dropped.
pub struct RecordedServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    answered: Arc<Mutex<Vec<Answered>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordedServer {
    /// Starts answering every request with the recorded response in `file`.
    pub async fn start(file: &Path) -> Self {
        Self::start_routes(vec![Route::any(file)]).await
    }

    /// Starts answering each request with the first route's recording whose text the body
    /// contains; a request no route matches gets a 400 `ValidationException` naming that.
    pub async fn start_routes(routes: Vec<Route>) -> Self {
        let routes: Arc<Vec<(Route, Vec<u8>)>> = Arc::new(
            routes
                .into_iter()
                .map(|route| {
                    let bytes = response_bytes(&read_recording(&route.file));
                    (route, bytes)
                })
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the recorded listener: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("recorded listener address: {e}"));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&answered);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, routes) = (Arc::clone(&seen), Arc::clone(&routes));
                tokio::spawn(async move {
                    if let Ok(Some(request)) = crate::http::read_request(&mut stream).await {
                        let body = String::from_utf8_lossy(&request.body);
                        let route = routes
                            .iter()
                            .find(|(r, _)| body.contains(r.body_contains.as_str()));
                        let response = match route {
                            Some((_, bytes)) => bytes.clone(),
                            None => no_route(&routes),
                        };
                        seen.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(Answered {
                                file: route.map(|(r, _)| r.file.clone()),
                                request,
                            });
                        let _ = stream.write_all(&response).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            answered,
            task,
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.answered().into_iter().map(|a| a.request).collect()
    }

    /// The requests received so far, each with the recording that answered it.
    pub fn answered(&self) -> Vec<Answered> {
        self.answered
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

fn read_recording(file: &Path) -> Value {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()))
}

/// The answer to a request no route matches: an error the SDK does not retry, naming the
/// routes' texts.
fn no_route(routes: &[(Route, Vec<u8>)]) -> Vec<u8> {
    let texts: Vec<&str> = routes
        .iter()
        .map(|(r, _)| r.body_contains.as_str())
        .collect();
    response_bytes(&json!({
        "status": 400,
        "headers": {"Content-Type": "application/json", "x-amzn-ErrorType": "ValidationException"},
        "body": {"message": format!("no recording for this request: its body contains none of {texts:?}")},
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_request_gets_the_first_route_its_body_matches() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, status: u16| {
            let file = dir.path().join(name);
            std::fs::write(
                &file,
                json!({"status": status, "body": {"from": name}}).to_string(),
            )
            .unwrap();
            file
        };
        let (orders, billing) = (write("orders.json", 200), write("billing.json", 201));
        let server = RecordedServer::start_routes(vec![
            Route::body_contains("billing-api", &billing),
            Route::body_contains("orders-api", &orders),
        ])
        .await;
        let addr = server.url.trim_start_matches("http://").parse().unwrap();
        let mut statuses = Vec::new();
        for body in ["about orders-api", "billing-api and orders-api", "nothing"] {
            let answer = crate::http::send(addr, "POST", "/converse", &[], body.as_bytes())
                .await
                .unwrap();
            statuses.push(answer.status);
        }
        assert_eq!(statuses, [200, 201, 400]);
        let files: Vec<Option<PathBuf>> = server.answered().into_iter().map(|a| a.file).collect();
        assert_eq!(files, [Some(orders), Some(billing), None]);
    }
}
