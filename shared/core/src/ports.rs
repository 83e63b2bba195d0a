//! The ports: small traits the handlers depend on. AWS adapters live in `selfbuild-aws`,
//! embedded ones in `selfbuild-local`; each has a contract test suite run against both.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::alarm::AlarmSignal;
use crate::change::LambdaSettings;
use crate::cycle::{CycleRecord, CycleRequest, TimeWindow};
use crate::deployment::{CanaryDeployment, FunctionState};
use crate::error::{OrchestratorError, StoreError, TelemetryError};
use crate::ids::{ComponentId, CycleId, DedupKey};
use crate::telemetry::{DurationQuery, ErrorRow, MetricSeries, TelemetryQuery, VersionTotals};

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
        status: crate::cycle::CycleStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Cycles still running that `scope` may see, oldest first, at most `limit`.
    async fn running_cycles(
        &self,
        scope: &crate::records::TenantScope,
        limit: usize,
    ) -> Result<Vec<CycleRecord>, StoreError>;
}

/// Every store port, as one adapter provides them.
pub trait Store:
    DedupStore
    + HaltSwitch
    + CycleStore
    + crate::approval::ApprovalStore
    + crate::audit::AuditLog
    + crate::records::ImprovementStore
    + crate::records::UsageLedger
    + crate::records::Registry
    + crate::records::AccessLog
{
}
impl<T> Store for T where
    T: DedupStore
        + HaltSwitch
        + CycleStore
        + crate::approval::ApprovalStore
        + crate::audit::AuditLog
        + crate::records::ImprovementStore
        + crate::records::UsageLedger
        + crate::records::Registry
        + crate::records::AccessLog
{
}

/// The store ports the cycle's steps use, as one.
pub trait StepStore:
    HaltSwitch
    + CycleStore
    + crate::approval::ApprovalStore
    + crate::audit::AuditLog
    + crate::records::ImprovementStore
    + crate::records::UsageLedger
{
}
impl<T> StepStore for T where
    T: HaltSwitch
        + CycleStore
        + crate::approval::ApprovalStore
        + crate::audit::AuditLog
        + crate::records::ImprovementStore
        + crate::records::UsageLedger
{
}

/// A started cycle's handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleHandle {
    /// The orchestrator's reference (an execution ARN on AWS).
    pub execution_ref: String,
    /// True if an execution with this cycle id already existed.
    pub already_started: bool,
}

/// Runs improvement cycles.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    /// Starts the cycle; idempotent for the same cycle id and input.
    async fn start_cycle(&self, request: &CycleRequest) -> Result<CycleHandle, OrchestratorError>;
}

/// The alarms part of the Telemetry port.
#[async_trait]
pub trait AlarmSource: Send + Sync {
    /// Every metric and composite alarm currently in ALARM.
    async fn alarms_in_alarm(&self) -> Result<Vec<AlarmSignal>, TelemetryError>;
}

/// Metric series and error rows (the rest of the Telemetry port).
#[async_trait]
pub trait Telemetry: Send + Sync {
    /// Every metric of [`MetricName::ALL`](crate::telemetry::MetricName::ALL) for the components in scope, all versions together:
    /// each named component (one without data gets series without points), or when none is
    /// named every component with data. A source without percentile statistics leaves out
    /// `DurationP99`.
    async fn metric_series(
        &self,
        query: &TelemetryQuery,
    ) -> Result<Vec<MetricSeries>, TelemetryError>;

    /// Counts and latency of each of `versions` of one function pooled over `window` (for
    /// canary monitoring), in the order asked, with what `durations` asks for: how many
    /// invocations ran longer than each threshold and the duration at each percentile level.
    /// A version without data gets zero counts.
    async fn version_totals(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        durations: &DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError>;

    /// Error log rows for the components in scope, at most `limit`, newest first.
    async fn error_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<ErrorRow>, TelemetryError>;
}

/// Why a deployer call failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Lambda was unavailable or throttled, or a resource was mid-update; trying again may work.
    #[error("deployer unavailable: {0}")]
    Unavailable(String),
    /// The function does not exist or cannot be changed like this.
    #[error("deployer rejected the request: {0}")]
    Rejected(String),
}

impl DeployError {
    /// The same error, saying what the failed call left behind.
    #[must_use]
    pub fn leaving(self, left: &str) -> Self {
        match self {
            Self::Unavailable(m) => Self::Unavailable(format!("{m}; left: {left}")),
            Self::Rejected(m) => Self::Rejected(format!("{m}; left: {left}")),
        }
    }
}

/// Reads and changes deployed functions.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// The function's current settings and alias routing. While a canary runs, the settings
    /// are the stable version's, except reserved concurrency where the platform keeps one per
    /// function (Lambda: the canary's from its deploy on); see [`FunctionState::settings`].
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError>;

    /// Applies `settings` as a new version and routes `weight` of the alias to it.
    /// Idempotent per `improvement_id`: a retry after any partial step ends in the same state,
    /// and a retry after it was routed (promoted or rolled back since) changes nothing and
    /// returns the same deployment. Refused: other settings or weight for the same
    /// improvement, a second canary while one is routed, and a retry once a later
    /// improvement's version was published for the function.
    async fn deploy_canary(
        &self,
        improvement_id: &str,
        function: &ComponentId,
        settings: &LambdaSettings,
        weight: f64,
    ) -> Result<CanaryDeployment, DeployError>;

    /// Routes all traffic to the canary version. Idempotent; refused once rolled back.
    async fn promote(&self, deployment: &CanaryDeployment) -> Result<(), DeployError>;

    /// Restores the baseline's exact routing and configuration, also after a promotion.
    /// Idempotent; refused once a later improvement was deployed to the function.
    async fn rollback(&self, deployment: &CanaryDeployment) -> Result<(), DeployError>;

    /// Undoes whatever a deploy of `improvement_id` that failed part-way left on `function`
    /// (its settings on `$LATEST`, a published version, the reservation, the routing), back
    /// to the version the deploy was cut against; the state restored, none when the deploy
    /// left nothing. Idempotent; never touches another improvement's deploy.
    async fn undo_deploy(
        &self,
        improvement_id: &str,
        function: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError>;
}
