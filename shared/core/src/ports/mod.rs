//! The ports: the traits the handlers depend on, one file per outside system. AWS adapters
//! live in `selfbuild-aws`, embedded ones in `selfbuild-local`; each port has a contract
//! test suite run against both (`tests/tests/integration/*_contract.rs`).

mod access_log;
mod clock;
mod code;
mod dead_letters;
mod deployer;
mod heal;
mod health;
mod ids;
mod keys;
mod llm;
mod metrics;
mod notifier;
mod orchestrator;
mod peers;
mod store;
mod telemetry;

pub use access_log::AccessLogSink;
pub use clock::Clock;
pub use code::{
    CheckError, CodeCheck, CodeChecker, CodeFinding, CodeSource, CodeSourceError, DeployedFiles,
    NoCodeChecker, NoCodeSource, PatchUnderReview,
};
pub use dead_letters::DeadLetters;
pub use deployer::{DeployError, Deployer};
pub use heal::{NoRollbackHeal, RollbackHeal, RollbackHealError};
pub use health::{ExecutionMonitor, HealthStore};
pub use ids::IdSource;
pub use keys::{KeySource, KeySourceError, StaticKeys};
pub use llm::{ForcedTool, Llm, LlmAnswer, LlmError, LlmRequest, ToolAnswer, ToolRequest};
pub use metrics::{MetricRecord, MetricSink, Unit};
pub use notifier::Notifier;
pub use orchestrator::{CycleHandle, Orchestrator, TaskTokens};
pub use peers::{AgentPeers, Delivery, DeliveryOutcome, NoPeerKeys, NoPeers, PeerError, PeerKeys};
pub use store::{
    AccessLog, ApprovalStore, AuditLog, ClaimOutcome, CycleStore, DedupClaim, DedupStore,
    HaltState, HaltSwitch, HeldClaim, ImprovementStore, MinerStateStore, Registry, SavedMinerState,
    StepStore, Store, UsageLedger,
};
pub use telemetry::{AlarmSource, Telemetry};
