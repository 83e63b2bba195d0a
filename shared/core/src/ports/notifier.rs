//! The notifier: events other agents subscribe to (EventBridge on AWS, a log offline).

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreError;

/// Events other agents subscribe to (EventBridge on AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Publishes `detail_type` (`Improvement Deployed`, `Improvement Rolled Back`,
    /// `Approval Needed`) with `detail`.
    async fn notify(&self, detail_type: &str, detail: &Value) -> Result<(), StoreError>;
}
