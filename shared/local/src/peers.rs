//! Registered agents called offline: the rmcp client on a runtime of its own (the cycle runs
//! on paused virtual time, where a real network wait would time out at once), and bearer
//! keys from a local JSON file shaped like the Secrets Manager secrets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use selfbuild_core::Config;
use selfbuild_core::agents::{PeerTarget, WindowAnswer};
use selfbuild_core::ports::{AgentPeers, Delivery, DeliveryOutcome, PeerError, PeerKeys};
use selfbuild_peers::{PeerSettings, RmcpPeers};
use serde_json::Value;

/// The environment variable naming the local agent key file.
pub const AGENT_KEYS_FILE_VAR: &str = "SELFBUILD_AGENT_KEYS_FILE";

/// Agent keys from a JSON file `{"<secret id>": {"api_key": "<key>"}, …}`.
#[derive(Debug, Clone, Default)]
pub struct FilePeerKeys {
    keys: HashMap<String, String>,
}

impl FilePeerKeys {
    /// The keys in `path`; the error names the file and what is wrong (never a key).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{AGENT_KEYS_FILE_VAR} {}: {e}", path.display()))?;
        let json: HashMap<String, Value> = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{AGENT_KEYS_FILE_VAR} {}: not a JSON object of secrets: {e}",
                path.display()
            )
        })?;
        let mut keys = HashMap::new();
        for (id, secret) in json {
            let key = secret
                .get("api_key")
                .and_then(Value::as_str)
                .filter(|k| !k.trim().is_empty())
                .ok_or_else(|| {
                    format!(
                        "{AGENT_KEYS_FILE_VAR} {}: secret {id:?} has no non-empty \"api_key\"",
                        path.display()
                    )
                })?;
            keys.insert(id, key.to_owned());
        }
        Ok(Self { keys })
    }

    /// The keys the configured file (`SELFBUILD_AGENT_KEYS_FILE`) holds, or none.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        match &config.agent_keys_file {
            Some(path) => Self::read(Path::new(path)),
            None => Ok(Self::default()),
        }
    }
}

#[async_trait]
impl PeerKeys for FilePeerKeys {
    async fn bearer_key(&self, secret_id: &str) -> Result<String, String> {
        self.keys.get(secret_id).cloned().ok_or_else(|| {
            format!("secret {secret_id}: not in {AGENT_KEYS_FILE_VAR} (or the variable is unset)")
        })
    }
}

/// The agents' own runtime: real time, one worker, alive for the process.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("selfbuild-peers")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the agents' runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// [`RmcpPeers`] run on a real-time runtime of its own.
#[derive(Clone)]
pub struct LocalPeers {
    inner: Arc<RmcpPeers>,
}

impl LocalPeers {
    /// A client with `config`'s timeouts and keys from `SELFBUILD_AGENT_KEYS_FILE`.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Self::new(
            Arc::new(FilePeerKeys::from_config(config)?),
            PeerSettings::from_config(config),
        )
    }

    /// A client with these keys and settings.
    pub fn new(keys: Arc<dyn PeerKeys>, settings: PeerSettings) -> Result<Self, String> {
        runtime()?;
        Ok(Self {
            inner: Arc::new(RmcpPeers::new(keys, settings)?),
        })
    }

    /// Runs `work` on the agents' runtime.
    async fn on_runtime<T, F>(&self, agent: &str, work: F) -> Result<T, PeerError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let failed = |message: String| PeerError::Unreachable {
            agent: agent.to_owned(),
            message,
        };
        let runtime = runtime().map_err(failed)?;
        runtime
            .spawn(work)
            .await
            .map_err(|e| failed(format!("the call's task failed: {e}")))
    }
}

#[async_trait]
impl AgentPeers for LocalPeers {
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        tool: &str,
        arguments: Value,
    ) -> Result<WindowAnswer, PeerError> {
        let (inner, t, tool) = (Arc::clone(&self.inner), target.clone(), tool.to_owned());
        self.on_runtime(&target.name, async move {
            inner.deployment_window(&t, &tool, arguments).await
        })
        .await?
    }

    async fn notify(&self, deliveries: &[Delivery], notice: Value) -> Vec<DeliveryOutcome> {
        let (inner, all) = (Arc::clone(&self.inner), deliveries.to_vec());
        let outcome = self
            .on_runtime("(all)", async move { inner.notify(&all, notice).await })
            .await;
        outcome.unwrap_or_else(|e| {
            deliveries
                .iter()
                .map(|d| DeliveryOutcome {
                    agent: d.target.name.clone(),
                    attempts: 0,
                    error: Some(e.clone()),
                })
                .collect()
        })
    }

    async fn ping(&self, target: &PeerTarget) -> Result<(), PeerError> {
        let (inner, t) = (Arc::clone(&self.inner), target.clone());
        self.on_runtime(&target.name, async move { inner.ping(&t).await })
            .await?
    }
}
