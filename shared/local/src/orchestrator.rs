//! The embedded Orchestrator: records each started cycle in the store, keyed by cycle id,
//! so starting the same cycle twice is a no-op, as with a Step Functions execution name.

use async_trait::async_trait;
use selfbuild_core::cycle::{CycleRecord, CycleRequest, CycleStatus};
use selfbuild_core::error::{OrchestratorError, StoreError};
use selfbuild_core::health::{ExecutionFact, ExecutionStatus, FLEET};
use selfbuild_core::ids::CycleId;
use selfbuild_core::ports::{Clock, CycleHandle, CycleStore, ExecutionMonitor, Orchestrator};
use time::OffsetDateTime;

use crate::store::SqliteStore;

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

/// The embedded executions are the store's cycle records: a redrive puts a failed or stopped
/// cycle back to running (its age counting from then), a stop ends it `aborted` (only the
/// health pass stops one, so `aborted` ones are not listed).
#[async_trait]
impl<C: Clock> ExecutionMonitor for RecordingOrchestrator<SqliteStore, C> {
    async fn executions(
        &self,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExecutionFact>, OrchestratorError> {
        let rows = self
            .store
            .cycle_executions(since, limit)
            .await
            .map_err(orchestrator_error)?;
        Ok(rows
            .into_iter()
            .filter(|row| row.state != "aborted")
            .map(|row| ExecutionFact {
                execution_ref: row.cycle.execution_ref.clone(),
                cycle_id: row.cycle.request.cycle_id.as_str().to_owned(),
                component: row
                    .cycle
                    .request
                    .components
                    .first()
                    .map_or(FLEET, |c| c.as_str())
                    .to_owned(),
                status: match row.state.as_str() {
                    "running" => ExecutionStatus::Running,
                    "succeeded" => ExecutionStatus::Succeeded,
                    _ => ExecutionStatus::Failed,
                },
                started_at: row.cycle.started_at,
                stopped_at: row.finished_at,
            })
            .collect())
    }

    async fn redrive(&self, execution_ref: &str) -> Result<(), OrchestratorError> {
        let id = cycle_of(execution_ref)?;
        let redriven = self
            .store
            .redrive_cycle(&id, self.clock.now())
            .await
            .map_err(orchestrator_error)?;
        if redriven {
            Ok(())
        } else {
            Err(OrchestratorError::Rejected(format!(
                "{execution_ref} is not a failed or stopped execution"
            )))
        }
    }

    async fn stop(&self, execution_ref: &str, _cause: &str) -> Result<(), OrchestratorError> {
        let id = cycle_of(execution_ref)?;
        let stopped = self
            .store
            .stop_cycle(&id, self.clock.now())
            .await
            .map_err(orchestrator_error)?;
        if stopped {
            Ok(())
        } else {
            Err(OrchestratorError::Rejected(format!(
                "{execution_ref} is not a running execution"
            )))
        }
    }
}

/// The cycle of an embedded execution reference (`local:<cycle>`).
fn cycle_of(execution_ref: &str) -> Result<CycleId, OrchestratorError> {
    let id = execution_ref.strip_prefix("local:").ok_or_else(|| {
        OrchestratorError::Rejected(format!(
            "{execution_ref} is not an embedded execution (local:<cycle>)"
        ))
    })?;
    CycleId::parse(id).map_err(|e| OrchestratorError::Rejected(e.to_string()))
}

fn orchestrator_error(e: StoreError) -> OrchestratorError {
    match e {
        StoreError::Unavailable(m) => OrchestratorError::Unavailable(m),
        StoreError::Rejected(_) | StoreError::Fault(_) | StoreError::Corrupt { .. } => {
            OrchestratorError::Rejected(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfbuild_core::clock::FixedClock;
    use selfbuild_core::cycle::{CycleMode, TimeWindow, Trigger};
    use selfbuild_core::ids::ComponentId;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

    fn running(id: &str) -> CycleRecord {
        CycleRecord {
            request: CycleRequest {
                cycle_id: CycleId::parse(id).expect("cycle id"),
                mode: CycleMode::Routine,
                tenant_id: None,
                components: vec![ComponentId::parse("orders").expect("component")],
                analysis_window: TimeWindow {
                    start: NOW - Duration::from_secs(3600),
                    end: NOW,
                },
                max_improvements: 1,
                max_concurrency: 1,
                dry_run: false,
                trigger: Trigger::Schedule { rule: None },
                dedup_key: format!("*#{id}"),
                requested_at: NOW,
            },
            status: CycleStatus::Running,
            execution_ref: format!("local:{id}"),
            started_at: NOW,
        }
    }

    #[tokio::test]
    async fn an_execution_the_pass_stopped_is_not_listed_so_no_later_pass_redrives_it() {
        // GIVEN a stuck cycle stopped a minute after the pass began, and a failed one
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("store");
        let later = FixedClock(NOW + Duration::from_secs(60));
        let orchestrator = RecordingOrchestrator::new(store.clone(), later);
        for id in ["c-stuck", "c-failed"] {
            store.create_cycle(&running(id)).await.expect("created");
        }
        orchestrator
            .stop("local:c-stuck", "stuck")
            .await
            .expect("stopped");
        let failed = CycleId::parse("c-failed").expect("cycle id");
        store
            .finish_cycle(&failed, CycleStatus::Failed, NOW + Duration::from_secs(60))
            .await
            .expect("failed");

        // WHEN the next pass lists what ended since the first one began
        let listed = orchestrator.executions(NOW, 10).await.expect("listed");

        // THEN only the failed cycle is there to redrive
        let seen: Vec<_> = listed
            .iter()
            .map(|e| (e.cycle_id.as_str(), e.status))
            .collect();
        assert_eq!(seen, [("c-failed", ExecutionStatus::Failed)], "{listed:?}");
    }
}
