//! What the self health pass needs beyond the other ports: the orchestrator's executions
//! (list, redrive, stop) and the store's heal ledgers, health events and last report.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{OrchestratorError, StoreError};
use crate::health::{ComponentHealth, ExecutionFact, HealthEvent, HealthReport};

/// The cycle executions as the orchestrator sees them (Step Functions on AWS, the embedded
/// runner's records offline).
#[async_trait]
pub trait ExecutionMonitor: Send + Sync {
    /// Executions running now and those that ended at or after `since`, at most `limit`;
    /// one ended by [`ExecutionMonitor::stop`] is left out (its cycle was restarted under a
    /// new name, so redriving it would run the cycle twice).
    async fn executions(
        &self,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExecutionFact>, OrchestratorError>;
    /// Redrives a failed, timed-out or aborted execution from where it failed.
    async fn redrive(&self, execution_ref: &str) -> Result<(), OrchestratorError>;
    /// Stops a running execution (it ends ABORTED) with `cause`.
    async fn stop(&self, execution_ref: &str, cause: &str) -> Result<(), OrchestratorError>;
}

/// Heal ledgers per component, health events and the last report.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Every component's ledger that has one, by name.
    async fn component_health(&self) -> Result<Vec<ComponentHealth>, StoreError>;
    /// Stores a component's ledger, replacing its earlier one.
    async fn put_component_health(&self, ledger: &ComponentHealth) -> Result<(), StoreError>;
    /// Clears a component's ledger (re-enabled: it starts from 0 failed heals); true if it
    /// was disabled.
    async fn enable_component(&self, component: &str) -> Result<bool, StoreError>;
    /// Appends a health event (a heal attempt, a disable, a re-enable).
    async fn append_health_event(&self, event: &HealthEvent) -> Result<(), StoreError>;
    /// The newest `limit` health events, of one component or all, newest first.
    async fn health_events(
        &self,
        component: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError>;
    /// Stores the report as the last one.
    async fn save_health_report(&self, report: &HealthReport) -> Result<(), StoreError>;
    /// The last stored report.
    async fn last_health_report(&self) -> Result<Option<HealthReport>, StoreError>;
}
