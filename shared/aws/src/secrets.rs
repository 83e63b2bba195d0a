//! The Secrets port over Secrets Manager: JSON secrets (provider keys, API keys), read once and
//! cached per container for a refresh interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use selfbuild_core::apikeys::{KeyListError, KeySet};
use selfbuild_core::ports::{KeySource, KeySourceError, PeerKeys};
use serde_json::Value;

use crate::sdk_error::{ErrorChain, is_transient};

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager was unavailable or throttled; trying again may work.
    #[error("secret {id}: unavailable: {message}")]
    Unavailable {
        /// The secret.
        id: String,
        /// What happened.
        message: String,
    },
    /// The secret does not exist, is not readable, or is not the JSON expected.
    #[error("secret {id}: {message}")]
    Invalid {
        /// The secret.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads JSON secrets, caching each for `refresh`.
pub struct SecretsManagerSecrets {
    client: Client,
    refresh: Duration,
    cache: Mutex<HashMap<String, (Instant, Value)>>,
}

impl SecretsManagerSecrets {
    /// A reader with a client built from `config`, caching for `refresh`.
    pub fn new(config: &aws_config::SdkConfig, refresh: Duration) -> Self {
        Self {
            client: Client::new(config),
            refresh,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's `SecretString` parsed as JSON (from the cache while it is fresh).
    pub async fn json(&self, id: &str) -> Result<Value, SecretError> {
        if let Some((at, value)) = self.lock().get(id)
            && at.elapsed() < self.refresh
        {
            return Ok(value.clone());
        }
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| {
                let message = ErrorChain(&e).to_string();
                if is_transient(&e) {
                    SecretError::Unavailable {
                        id: id.to_owned(),
                        message,
                    }
                } else {
                    SecretError::Invalid {
                        id: id.to_owned(),
                        message,
                    }
                }
            })?;
        let text = out.secret_string().ok_or_else(|| SecretError::Invalid {
            id: id.to_owned(),
            message: "has no SecretString (binary secrets are not supported)".into(),
        })?;
        let value: Value = serde_json::from_str(text).map_err(|e| SecretError::Invalid {
            id: id.to_owned(),
            message: format!("SecretString is not JSON: {e}"),
        })?;
        self.lock()
            .insert(id.to_owned(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Value)>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads a required string field of a JSON secret.
pub fn field<'a>(id: &str, secret: &'a Value, name: &str) -> Result<&'a str, SecretError> {
    secret
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| SecretError::Invalid {
            id: id.to_owned(),
            message: format!("field {name:?} is missing or not a non-empty string"),
        })
}

/// An agent's bearer key: the `api_key` field of the JSON secret its registration names.
#[async_trait]
impl PeerKeys for SecretsManagerSecrets {
    async fn bearer_key(&self, secret_id: &str) -> Result<String, String> {
        let secret = self.json(secret_id).await.map_err(|e| e.to_string())?;
        field(secret_id, &secret, "api_key")
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    }
}

/// The MCP endpoint's API keys from a Secrets Manager secret (the [`KeySet`] JSON), parsed
/// once per refresh interval.
pub struct SecretsManagerKeys {
    secrets: SecretsManagerSecrets,
    secret_id: String,
    refresh: Duration,
    parsed: Mutex<Option<(Instant, Arc<KeySet>)>>,
}

impl SecretsManagerKeys {
    /// Keys from `secret_id`, read again after `refresh`.
    pub fn new(
        config: &aws_config::SdkConfig,
        secret_id: impl Into<String>,
        refresh: Duration,
    ) -> Self {
        Self {
            secrets: SecretsManagerSecrets::new(config, refresh),
            secret_id: secret_id.into(),
            refresh,
            parsed: Mutex::new(None),
        }
    }
}

#[async_trait]
impl KeySource for SecretsManagerKeys {
    async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError> {
        {
            let parsed = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, keys)) = parsed.as_ref()
                && at.elapsed() < self.refresh
            {
                return Ok(Arc::clone(keys));
            }
        }
        let value = self
            .secrets
            .json(&self.secret_id)
            .await
            .map_err(|e| match e {
                SecretError::Unavailable { .. } => KeySourceError::Unavailable(e.to_string()),
                SecretError::Invalid { .. } => KeySourceError::Invalid(KeyListError(e.to_string())),
            })?;
        let keys = Arc::new(KeySet::parse(&value).map_err(|e| {
            KeySourceError::Invalid(KeyListError(format!("secret {}: {}", self.secret_id, e.0)))
        })?);
        *self.parsed.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&keys)));
        Ok(keys)
    }
}
