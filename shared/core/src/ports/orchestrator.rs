//! The orchestrator: starts cycles and resumes executions waiting on a task token (Step
//! Functions on AWS, the embedded runner offline).

use async_trait::async_trait;

use crate::cycle::CycleRequest;
use crate::error::OrchestratorError;

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

/// Resumes an execution waiting on a task token.
#[async_trait]
pub trait TaskTokens: Send + Sync {
    /// SendTaskSuccess with `output`.
    async fn send_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), OrchestratorError>;
}
