//! The embedded Orchestrator: records each started cycle in the store, keyed by cycle id,
//! so starting the same cycle twice is a no-op, as with a Step Functions execution name.

use async_trait::async_trait;
use selfbuild_core::cycle::{CycleRecord, CycleRequest, CycleStatus};
use selfbuild_core::error::{OrchestratorError, StoreError};
use selfbuild_core::ports::{Clock, CycleHandle, CycleStore, Orchestrator};

/// Starts cycles by recording them in a [`CycleStore`].
pub struct RecordingOrchestrator<S, C> {
    store: S,
    clock: C,
}

impl<S: CycleStore, C: Clock> RecordingOrchestrator<S, C> {
    /// An orchestrator writing to `store`, stamping with `clock`.
    pub fn new(store: S, clock: C) -> Self {
        Self { store, clock }
    }
}

#[async_trait]
impl<S: CycleStore, C: Clock> Orchestrator for RecordingOrchestrator<S, C> {
    async fn start_cycle(&self, request: &CycleRequest) -> Result<CycleHandle, OrchestratorError> {
        let execution_ref = format!("local:{}", request.cycle_id);
        let record = CycleRecord {
            request: request.clone(),
            status: CycleStatus::Running,
            execution_ref: execution_ref.clone(),
            started_at: self.clock.now(),
        };
        let created = self
            .store
            .create_cycle(&record)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(m) => OrchestratorError::Unavailable(m),
                StoreError::Rejected(_) | StoreError::Fault(_) | StoreError::Corrupt { .. } => {
                    OrchestratorError::Rejected(e.to_string())
                }
            })?;
        Ok(CycleHandle {
            execution_ref,
            already_started: !created,
        })
    }
}
