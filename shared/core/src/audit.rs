//! Audit events (R13): every transition of an improvement, who made it, before and after.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::StoreError;
use crate::ids::{CycleId, TenantId};

/// One transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The cycle.
    pub cycle_id: CycleId,
    /// The improvement, when the event is about one.
    pub improvement_id: Option<String>,
    /// Who: `selfbuild:<function>`, or the approver.
    pub actor: String,
    /// What: `validated`, `approval_requested`, `approved`, `rejected`, `deployed`,
    /// `deploy_deferred`, `deploy_halted`, `generate_halted`, `halted_in_flight`, `promoted`,
    /// `rolled_back`, `inconclusive`, `proposal_refused`, `cycle_finished`.
    pub action: String,
    /// State before, when it changed.
    pub before: Option<Value>,
    /// State after.
    pub after: Option<Value>,
    /// In words.
    pub detail: String,
}

/// Appends and reads audit events.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one event.
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The cycle's events in time order.
    async fn cycle_events(&self, cycle_id: &CycleId) -> Result<Vec<AuditEvent>, StoreError>;
}

/// Events other agents subscribe to (EventBridge on AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Publishes `detail_type` (`Improvement Deployed`, `Improvement Rolled Back`,
    /// `Approval Needed`) with `detail`.
    async fn notify(&self, detail_type: &str, detail: &Value) -> Result<(), StoreError>;
}
