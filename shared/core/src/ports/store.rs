//! The store: dedup claims, the halt switch, cycles, approvals, audit events, improvement
//! records, LLM spend, the registry and the access log (DynamoDB on AWS, SQLite offline);
//! [`Store`] also takes in the health pass's [`HealthStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::{Date, OffsetDateTime};

use super::HealthStore;
use crate::audit::AuditEvent;
use crate::cycle::{CycleRecord, CycleStatus};
use crate::error::StoreError;
use crate::ids::{CycleId, DedupKey, ImprovementId};
use crate::records::{
    AgentRecord, ComponentRecord, DailyUsage, ImprovementQuery, ImprovementRecord,
    ImprovementStatus, Page, PendingApproval, ProviderHealth, TenantScope, ToolCallEvent,
};

/// A request to own a dedup key for one window.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupClaim {
    /// The (tenant, component) scope.
    pub key: DedupKey,
    /// The cycle the claim admits; also identifies the claim.
    pub cycle_id: CycleId,
    /// When the claim is made; a held claim is replaced only if its window ended before this.
    pub claimed_at: OffsetDateTime,
    /// When the window ends.
    pub window_end: OffsetDateTime,
    /// When the store may delete the record (TTL); never used for correctness.
    pub expires_at: OffsetDateTime,
    /// The cycle's input as JSON, kept so an unstarted claim can be started later.
    pub cycle_input: String,
}

/// The claim that holds a dedup key.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldClaim {
    /// The cycle it admitted.
    pub cycle_id: CycleId,
    /// When it was made.
    pub claimed_at: OffsetDateTime,
    /// When its window ends.
    pub window_end: OffsetDateTime,
    /// Events suppressed by it so far, this one included.
    pub suppressed_count: u64,
    /// Whether its cycle was handed to the orchestrator.
    pub started: bool,
    /// The cycle's input as JSON.
    pub cycle_input: String,
}

/// What one conditional claim decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This claim now holds the key.
    Won,
    /// Another claim holds the key for this window; its suppressed count was incremented.
    Held(HeldClaim),
}

/// Dedup claims (R2): at most one winner per key per window. Claim times are kept, and
/// compared, to the millisecond.
#[async_trait]
pub trait DedupStore: Send + Sync {
    /// Claims the key unless a claim whose window has not ended holds it; decided by ONE
    /// conditional write. On `Held`, the holder's suppressed count was incremented once.
    /// A claim held by the same cycle id is `Won` again, uncounted: the same claim sent
    /// twice (a retry after a lost answer) wins, as it did the first time.
    async fn claim(&self, claim: &DedupClaim) -> Result<ClaimOutcome, StoreError>;

    /// Records that the claim's cycle was handed to the orchestrator.
    async fn mark_started(
        &self,
        key: &DedupKey,
        cycle_id: &CycleId,
        execution_ref: &str,
    ) -> Result<(), StoreError>;

    /// Deletes the claim if `cycle_id` still holds it (the start failed); true if deleted.
    async fn release(&self, key: &DedupKey, cycle_id: &CycleId) -> Result<bool, StoreError>;
}

/// The halt switch (R14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltState {
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub actor: String,
    /// When it was set.
    pub since: OffsetDateTime,
}

/// Reads and flips the halt switch.
#[async_trait]
pub trait HaltSwitch: Send + Sync {
    /// The switch, if set.
    async fn halt_state(&self) -> Result<Option<HaltState>, StoreError>;
    /// Sets the switch (replacing an earlier reason).
    async fn set_halt(&self, halt: &HaltState) -> Result<(), StoreError>;
    /// Clears the switch; true if it was set.
    async fn clear_halt(&self) -> Result<bool, StoreError>;
}

/// Cycle records.
#[async_trait]
pub trait CycleStore: Send + Sync {
    /// Stores a new cycle; false (and no change) if one with the same id exists.
    async fn create_cycle(&self, cycle: &CycleRecord) -> Result<bool, StoreError>;
    /// The cycle with this id.
    async fn get_cycle(&self, id: &CycleId) -> Result<Option<CycleRecord>, StoreError>;
    /// Marks the cycle finished; false if there is no such cycle.
    async fn finish_cycle(
        &self,
        id: &CycleId,
        status: CycleStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Cycles still running that `scope` may see, oldest first, at most `limit`.
    async fn running_cycles(
        &self,
        scope: &TenantScope,
        limit: usize,
    ) -> Result<Vec<CycleRecord>, StoreError>;
}

/// Improvement records.
#[async_trait]
pub trait ImprovementStore: Send + Sync {
    /// Stores the record, replacing the improvement's earlier one.
    async fn put_improvement(&self, record: &ImprovementRecord) -> Result<(), StoreError>;
    /// The improvement's record.
    async fn get_improvement(
        &self,
        id: &ImprovementId,
    ) -> Result<Option<ImprovementRecord>, StoreError>;
    /// One page of records, improvement ids descending; a cursor that is not one this store
    /// returned is `StoreError::Rejected`.
    async fn list_improvements(
        &self,
        query: &ImprovementQuery,
    ) -> Result<Page<ImprovementRecord>, StoreError>;

    /// How many visible improvements are in each status (pages through the listing).
    async fn improvement_counts(
        &self,
        scope: &TenantScope,
    ) -> Result<BTreeMap<ImprovementStatus, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .list_improvements(&ImprovementQuery {
                    scope: scope.clone(),
                    status: None,
                    limit: 100,
                    cursor,
                })
                .await?;
            for record in &page.items {
                *counts.entry(record.status).or_insert(0) += 1;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(counts),
            }
        }
    }
}

/// LLM spend, accumulated per UTC day.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    /// Adds one generate call's cost to the day of `at` and replaces the provider snapshot.
    async fn record_llm_usage(
        &self,
        at: OffsetDateTime,
        cost_usd: f64,
        providers: &[ProviderHealth],
    ) -> Result<(), StoreError>;
    /// The day's usage (zero if nothing was recorded).
    async fn llm_usage(&self, day: Date) -> Result<DailyUsage, StoreError>;
}

/// Agents and components registered through MCP.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Stores the agent, replacing one with the same tenant and name.
    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    /// Agents `scope` may see, by tenant then name.
    async fn list_agents(&self, scope: &TenantScope) -> Result<Vec<AgentRecord>, StoreError>;
    /// Stores the component, replacing one with the same tenant and name.
    async fn put_component(&self, component: &ComponentRecord) -> Result<(), StoreError>;
    /// Components `scope` may see, by tenant then name.
    async fn list_components(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<ComponentRecord>, StoreError>;
}

/// Per-key accounting of MCP calls.
#[async_trait]
pub trait AccessLog: Send + Sync {
    /// Adds `calls` calls of `key_id` to the fixed window starting at `window_start` (one
    /// atomic increment; 0 only reads) and returns the window's count including them; the
    /// counter may be deleted after `expires_at`.
    async fn count_calls(
        &self,
        key_id: &str,
        window_start: OffsetDateTime,
        calls: u64,
        expires_at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// Appends a tool call to the access log.
    async fn record_tool_call(&self, event: &ToolCallEvent) -> Result<(), StoreError>;
    /// Appends tool calls to the access log, in order (one transaction where the store has
    /// them; by default one write each).
    async fn record_tool_calls(&self, events: &[ToolCallEvent]) -> Result<(), StoreError> {
        for event in events {
            self.record_tool_call(event).await?;
        }
        Ok(())
    }
    /// The newest `limit` tool calls of the week before `now` (at least), newest first.
    async fn recent_tool_calls(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ToolCallEvent>, StoreError>;
}

/// Pending approvals.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Stores (or replaces) a pending approval.
    async fn put_pending(&self, pending: &PendingApproval) -> Result<(), StoreError>;
    /// The pending approval of an improvement.
    async fn get_pending(
        &self,
        improvement_id: &ImprovementId,
    ) -> Result<Option<PendingApproval>, StoreError>;
    /// Adds an approver; returns the updated record (no change if they already approved).
    async fn add_approver(
        &self,
        improvement_id: &ImprovementId,
        approver: &str,
    ) -> Result<Option<PendingApproval>, StoreError>;
    /// Removes a decided approval; true if it was there.
    async fn remove_pending(&self, improvement_id: &ImprovementId) -> Result<bool, StoreError>;
}

/// Appends and reads audit events.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one event.
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// The cycle's events in time order.
    async fn cycle_events(&self, cycle_id: &CycleId) -> Result<Vec<AuditEvent>, StoreError>;
}

/// A log miner's saved state for one scope, with the version that guards its next save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMinerState {
    /// The state as the log stream wrote it (opaque to the store).
    pub body: String,
    /// How many times it was saved; 0 is never stored.
    pub version: u64,
}

/// Saved log-miner states (streamed log deliveries), one per `tenant#function` scope.
#[async_trait]
pub trait MinerStateStore: Send + Sync {
    /// The saved state of `scope`, if any.
    async fn load_miner_state(&self, scope: &str) -> Result<Option<SavedMinerState>, StoreError>;
    /// Saves `body` as version `expected + 1` if the stored version is still `expected`
    /// (0: nothing stored); false, and no change, if another writer saved first.
    async fn save_miner_state(
        &self,
        scope: &str,
        body: &str,
        expected: u64,
    ) -> Result<bool, StoreError>;
}

/// Every store port, as one adapter provides them.
pub trait Store:
    DedupStore
    + HaltSwitch
    + CycleStore
    + ApprovalStore
    + AuditLog
    + ImprovementStore
    + UsageLedger
    + Registry
    + AccessLog
    + MinerStateStore
    + HealthStore
{
}

impl<T> Store for T where
    T: DedupStore
        + HaltSwitch
        + CycleStore
        + ApprovalStore
        + AuditLog
        + ImprovementStore
        + UsageLedger
        + Registry
        + AccessLog
        + MinerStateStore
        + HealthStore
{
}

/// The store ports the cycle's steps use, as one (the heal ledgers: analyze leaves disabled
/// components out).
pub trait StepStore:
    HaltSwitch + CycleStore + ApprovalStore + AuditLog + ImprovementStore + UsageLedger + HealthStore
{
}

impl<T> StepStore for T where
    T: HaltSwitch
        + CycleStore
        + ApprovalStore
        + AuditLog
        + ImprovementStore
        + UsageLedger
        + HealthStore
{
}
