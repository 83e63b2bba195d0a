//! Registered agents called as MCP servers (seed R10): a deployment window asked, changes
//! announced, health pinged. An rmcp client in `selfbuild-peers`; [`NoPeers`] where none is
//! wired.

use async_trait::async_trait;
use serde_json::Value;

use crate::agents::{PeerTarget, WindowAnswer};

/// Why a call to an agent failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// It could not be reached in time (connect, timeout, transport).
    #[error("agent {agent} unreachable: {message}")]
    Unreachable {
        /// The agent.
        agent: String,
        /// What happened.
        message: String,
    },
    /// It has no such tool, or the tool reported an error.
    #[error("agent {agent}: tool {tool}: {message}")]
    Tool {
        /// The agent.
        agent: String,
        /// The tool.
        tool: String,
        /// What it said.
        message: String,
    },
    /// Its key could not be read.
    #[error("agent {agent}: key: {message}")]
    Key {
        /// The agent.
        agent: String,
        /// What is wrong.
        message: String,
    },
    /// Its answer was not what the tool promises.
    #[error("agent {agent}: tool {tool} answered {message}")]
    BadAnswer {
        /// The agent.
        agent: String,
        /// The tool.
        tool: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One notification to deliver: to whom, with which tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The agent.
    pub target: PeerTarget,
    /// Its notification tool.
    pub tool: String,
}

/// What became of one delivery after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The agent.
    pub agent: String,
    /// Calls made (1 when the first succeeded).
    pub attempts: u32,
    /// The last failure, when every attempt failed.
    pub error: Option<PeerError>,
}

/// Calls registered agents' MCP tools, each call bounded by a timeout.
#[async_trait]
pub trait AgentPeers: Send + Sync {
    /// Asks `target` for a deployment window with `tool` (one attempt: a failure falls back
    /// to selfbuild's own low-traffic detection).
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        tool: &str,
        arguments: Value,
    ) -> Result<WindowAnswer, PeerError>;

    /// Sends `notice` to every delivery, retrying each with backoff; one outcome per
    /// delivery, in order. Never fails as a whole.
    async fn notify(&self, deliveries: &[Delivery], notice: Value) -> Vec<DeliveryOutcome>;

    /// An MCP `ping` of `target`.
    async fn ping(&self, target: &PeerTarget) -> Result<(), PeerError>;
}

/// No MCP client: every call fails as unreachable (so deploys fall back to their own
/// low-traffic detection and deliveries are audited as failed).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeers;

fn none(target: &PeerTarget) -> PeerError {
    PeerError::Unreachable {
        agent: target.name.clone(),
        message: "no MCP client is configured here".into(),
    }
}

#[async_trait]
impl AgentPeers for NoPeers {
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        _tool: &str,
        _arguments: Value,
    ) -> Result<WindowAnswer, PeerError> {
        Err(none(target))
    }

    async fn notify(&self, deliveries: &[Delivery], _notice: Value) -> Vec<DeliveryOutcome> {
        deliveries
            .iter()
            .map(|d| DeliveryOutcome {
                agent: d.target.name.clone(),
                attempts: 0,
                error: Some(none(&d.target)),
            })
            .collect()
    }

    async fn ping(&self, target: &PeerTarget) -> Result<(), PeerError> {
        Err(none(target))
    }
}

/// Where the bearer keys selfbuild calls agents with are read (Secrets Manager on AWS, a
/// local file offline), by the secret id an agent registered.
#[async_trait]
pub trait PeerKeys: Send + Sync {
    /// The key stored under `secret_id`; the error says what is wrong, never the key.
    async fn bearer_key(&self, secret_id: &str) -> Result<String, String>;
}

/// No keys: an agent that names a secret cannot be called.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeerKeys;

#[async_trait]
impl PeerKeys for NoPeerKeys {
    async fn bearer_key(&self, secret_id: &str) -> Result<String, String> {
        Err(format!(
            "secret {secret_id}: no secret store is configured here"
        ))
    }
}
