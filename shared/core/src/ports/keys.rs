//! The MCP endpoint's key source (Secrets Manager on AWS, an env var or file locally).

use std::sync::Arc;

use async_trait::async_trait;

use crate::apikeys::{KeyListError, KeySet};

/// Why the key list could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeySourceError {
    /// The store of keys was unreachable; a later request may succeed.
    #[error("API keys unavailable: {0}")]
    Unavailable(String),
    /// The key list is missing or malformed.
    #[error(transparent)]
    Invalid(#[from] KeyListError),
}

/// Where the endpoint gets its keys (Secrets Manager on AWS, an env var or file locally).
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The current key list.
    async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError>;
}

/// A key list fixed at start-up.
#[derive(Debug, Clone)]
pub struct StaticKeys(pub Arc<KeySet>);

#[async_trait]
impl KeySource for StaticKeys {
    async fn keys(&self) -> Result<Arc<KeySet>, KeySourceError> {
        Ok(Arc::clone(&self.0))
    }
}
