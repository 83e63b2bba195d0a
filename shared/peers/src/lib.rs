//! selfbuild as an MCP client of the agents it serves (seed R10): [`RmcpPeers`] implements
//! the core `AgentPeers` port with rmcp's client over Streamable HTTP (reqwest), one
//! short-lived session per call, every call bounded by a timeout and notifications retried
//! with backoff.
//!
//! A crate of its own so the deploy and rollback functions and the local runner link rmcp's
//! client without the MCP server's axum stack.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, ClientRequest, PingRequest};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use selfbuild_core::agents::{PeerTarget, WindowAnswer};
use selfbuild_core::ports::{AgentPeers, Delivery, DeliveryOutcome, PeerError, PeerKeys};
use serde_json::Value;

/// Timeouts, retries and backoff of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSettings {
    /// The TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// The whole of one call: connect, `initialize`, the request, closing.
    pub call_timeout: Duration,
    /// Calls made per notification, the first included.
    pub notify_attempts: u32,
    /// The wait before the second attempt; doubled before each later one.
    pub backoff: Duration,
}

impl Default for PeerSettings {
    /// 2 s to connect, 5 s a call, 3 attempts 0.25 s then 0.5 s apart: a notification gives
    /// up after at most 3 × 5 + 0.75 = 15.75 s, and deliveries run side by side.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            notify_attempts: 3,
            backoff: Duration::from_millis(250),
        }
    }
}

impl PeerSettings {
    /// The settings `AGENT_CALL_TIMEOUT_SECONDS` and `AGENT_NOTIFY_ATTEMPTS` give.
    pub fn from_config(config: &selfbuild_core::config::Config) -> Self {
        let call_timeout = Duration::from_secs(u64::from(config.agent_call_timeout_seconds));
        Self {
            connect_timeout: Self::default().connect_timeout.min(call_timeout),
            call_timeout,
            notify_attempts: config.agent_notify_attempts,
            ..Self::default()
        }
    }

    /// The longest a notification to one agent may take, all attempts and waits included.
    pub fn worst_case_notify(&self) -> Duration {
        let mut total = self.call_timeout * self.notify_attempts;
        let mut wait = self.backoff;
        for _ in 1..self.notify_attempts {
            total += wait;
            wait *= 2;
        }
        total
    }
}

/// The rmcp client of registered agents.
#[derive(Clone)]
pub struct RmcpPeers {
    http: reqwest::Client,
    keys: Arc<dyn PeerKeys>,
    settings: PeerSettings,
}

impl RmcpPeers {
    /// A client reading bearer keys from `keys`.
    pub fn new(keys: Arc<dyn PeerKeys>, settings: PeerSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.call_timeout)
            .build()
            .map_err(|e| format!("cannot build the agents' HTTP client: {e}"))?;
        Ok(Self {
            http,
            keys,
            settings,
        })
    }

    /// An initialised session with `target` (its key read when it names one).
    async fn connect(
        &self,
        target: &PeerTarget,
    ) -> Result<RunningService<RoleClient, ClientConfig>, PeerError> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(target.mcp_url.clone());
        if let Some(secret) = &target.key_secret_id {
            let key = self
                .keys
                .bearer_key(secret)
                .await
                .map_err(|message| PeerError::Key {
                    agent: target.name.clone(),
                    message,
                })?;
            config = config.auth_header(key);
        }
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        ClientConfig::default()
            .serve(transport)
            .await
            .map_err(|e| unreachable(target, &e.to_string()))
    }

    /// Runs `call` on a fresh session within the call timeout, then closes the session.
    async fn within_timeout<T, F, Fut>(&self, target: &PeerTarget, call: F) -> Result<T, PeerError>
    where
        F: FnOnce(Arc<RunningService<RoleClient, ClientConfig>>) -> Fut,
        Fut: std::future::Future<Output = Result<T, PeerError>>,
    {
        let work = async {
            let session = Arc::new(self.connect(target).await?);
            let result = call(Arc::clone(&session)).await;
            if let Ok(session) = Arc::try_unwrap(session) {
                // Closing is courtesy (the agent may be stateless): its failure changes nothing.
                let _ = session.cancel().await;
            }
            result
        };
        tokio::time::timeout(self.settings.call_timeout, work)
            .await
            .map_err(|_| {
                unreachable(
                    target,
                    &format!(
                        "no answer within {} ms",
                        self.settings.call_timeout.as_millis()
                    ),
                )
            })?
    }

    /// One `tools/call`: the result's structured content, else its first text parsed as
    /// JSON, else the text as a string.
    async fn call_tool(
        &self,
        target: &PeerTarget,
        tool: &str,
        arguments: Value,
    ) -> Result<Value, PeerError> {
        let arguments = match arguments {
            Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".into(), other);
                map
            }
        };
        let tool_name = tool.to_owned();
        self.within_timeout(target, |session| async move {
            let result = session
                .call_tool(CallToolRequestParams::new(tool_name.clone()).with_arguments(arguments))
                .await
                .map_err(|e| PeerError::Tool {
                    agent: target.name.clone(),
                    tool: tool_name.clone(),
                    message: e.to_string(),
                })?;
            let text = result
                .content
                .iter()
                .find_map(|c| c.as_text().map(|t| t.text.clone()));
            if result.is_error == Some(true) {
                return Err(PeerError::Tool {
                    agent: target.name.clone(),
                    tool: tool_name,
                    message: text.unwrap_or_else(|| "the tool reported an error".into()),
                });
            }
            Ok(match (result.structured_content, text) {
                (Some(value), _) => value,
                (None, Some(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
                (None, None) => Value::Null,
            })
        })
        .await
    }
}

fn unreachable(target: &PeerTarget, message: &str) -> PeerError {
    PeerError::Unreachable {
        agent: target.name.clone(),
        message: message.to_owned(),
    }
}

#[async_trait]
impl AgentPeers for RmcpPeers {
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        tool: &str,
        arguments: Value,
    ) -> Result<WindowAnswer, PeerError> {
        let answer = self.call_tool(target, tool, arguments).await?;
        serde_json::from_value(answer.clone()).map_err(|e| PeerError::BadAnswer {
            agent: target.name.clone(),
            tool: tool.to_owned(),
            message: format!(
                "{}, not {{\"deploy_now\": bool, \"retry_after_seconds\"?: int, \"reason\"?: string}} ({e})",
                selfbuild_core::text::Excerpt(&answer.to_string())
            ),
        })
    }

    async fn notify(&self, deliveries: &[Delivery], notice: Value) -> Vec<DeliveryOutcome> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, delivery) in deliveries.iter().cloned().enumerate() {
            let peers = self.clone();
            let notice = notice.clone();
            tasks.spawn(async move { (index, peers.deliver(&delivery, notice).await) });
        }
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; deliveries.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, outcome)) = joined
                && let Some(slot) = outcomes.get_mut(index)
            {
                *slot = Some(outcome);
            }
        }
        // A delivery whose task panicked (it should not) is reported, never lost.
        outcomes
            .into_iter()
            .zip(deliveries)
            .map(|(outcome, d)| {
                outcome.unwrap_or_else(|| DeliveryOutcome {
                    agent: d.target.name.clone(),
                    attempts: 0,
                    error: Some(unreachable(&d.target, "the delivery task failed")),
                })
            })
            .collect()
    }

    async fn ping(&self, target: &PeerTarget) -> Result<(), PeerError> {
        self.within_timeout(target, |session| async move {
            session
                .send_request(ClientRequest::PingRequest(PingRequest::default()))
                .await
                .map(|_| ())
                .map_err(|e| unreachable(target, &format!("ping: {e}")))
        })
        .await
    }
}

impl RmcpPeers {
    /// One delivery with its retries: attempts until one succeeds or they run out.
    async fn deliver(&self, delivery: &Delivery, notice: Value) -> DeliveryOutcome {
        let attempts = self.settings.notify_attempts.max(1);
        let mut wait = self.settings.backoff;
        let mut last = None;
        for attempt in 1..=attempts {
            match self
                .call_tool(&delivery.target, &delivery.tool, notice.clone())
                .await
            {
                Ok(_) => {
                    return DeliveryOutcome {
                        agent: delivery.target.name.clone(),
                        attempts: attempt,
                        error: None,
                    };
                }
                Err(e) => {
                    tracing::info!(agent = %delivery.target.name, attempt, error = %e, "notification not delivered");
                    // A missing key will not appear between attempts.
                    let give_up = matches!(e, PeerError::Key { .. });
                    last = Some(e);
                    if give_up {
                        return DeliveryOutcome {
                            agent: delivery.target.name.clone(),
                            attempts: attempt,
                            error: last,
                        };
                    }
                }
            }
            if attempt < attempts {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        DeliveryOutcome {
            agent: delivery.target.name.clone(),
            attempts,
            error: last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_worst_case_fits_well_inside_a_step_function_timeout() {
        let worst = PeerSettings::default().worst_case_notify();
        assert_eq!(worst, Duration::from_millis(15_750));
    }
}
