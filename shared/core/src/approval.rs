//! Approvals (R9): a change that needs approval waits on a task token; approvers decide;
//! a CRITICAL change needs two different approvers; a rejection or the timeout ends it.

use serde::Serialize;
use time::OffsetDateTime;
use tracing::info;

use crate::audit::{AuditAction, AuditEvent};
use crate::error::{ErrorType, OrchestratorError, StableError, StoreError};
use crate::ids::ImprovementId;
use crate::improvement::{ApprovalDecision, ImprovementItem};
use crate::ports::{ApprovalStore, AuditLog, TaskTokens};
use crate::records::{ImprovementStatus, PendingApproval};

/// Why an approval call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The improvement exists but waits for no approval (decided already, or never asked).
    #[error("improvement {0} is not waiting for approval (it is {1})")]
    NotPending(ImprovementId, &'static str),
    /// No improvement has this id.
    #[error("no improvement {0}")]
    NotFound(ImprovementId),
    /// The approval window closed unanswered: nothing was approved or deployed.
    #[error(
        "the approval window of improvement {id} closed unanswered at {closed_at}; the change \
         was not deployed (a new cycle proposes it again if it is still needed)"
    )]
    Closed {
        /// The improvement.
        id: ImprovementId,
        /// When the window closed (RFC 3339).
        closed_at: String,
    },
    /// The input is unusable (empty approver name …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The orchestrator failed to resume the execution.
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
    /// The halt switch is on: approvals wait until `resume`.
    #[error("{0}")]
    Halted(String),
}

impl StableError for ApprovalError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::NotPending(..) => ErrorType::NotPending,
            Self::NotFound(_) => ErrorType::NotFound,
            Self::Closed { .. } => ErrorType::ApprovalClosed,
            Self::InvalidInput(_) => ErrorType::InvalidInput,
            Self::Store(e) => e.error_type(),
            Self::Orchestrator(e) => e.error_type(),
            Self::Halted(_) => ErrorType::Halted,
        }
    }
}

/// Records that `item` waits for approval under `task_token`.
pub async fn request_approval(
    store: &dyn ApprovalStore,
    item: &ImprovementItem,
    task_token: &str,
    now: OffsetDateTime,
) -> Result<PendingApproval, StoreError> {
    let validation = item.validation.as_ref();
    let pending = PendingApproval {
        improvement_id: item.improvement_id(),
        cycle_id: item.cycle_id.clone(),
        tenant_id: item.tenant_id.clone(),
        task_token: task_token.to_owned(),
        change: item.generated.as_ref().map_or_else(String::new, |g| {
            g.proposal
                .change
                .describe(item.opportunity.current.as_ref())
        }),
        risk: validation.map_or_else(String::new, |v| v.risk.as_str().to_owned()),
        approvals_required: validation.map_or(1, |v| v.approvals_required.max(1)),
        approvers: Vec::new(),
        requested_at: now,
    };
    store.put_pending(&pending).await?;
    info!(improvement = %pending.improvement_id, risk = %pending.risk, "approval requested");
    Ok(pending)
}

/// What an approve/reject call did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalProgress {
    /// The improvement.
    pub improvement_id: ImprovementId,
    /// `approved`, `rejected`, or `waiting` for more approvers.
    pub status: String,
    /// Approvers so far.
    pub approvers: Vec<String>,
    /// Approvals needed in all.
    pub approvals_required: u8,
}

/// The ports an approval decision uses.
#[derive(Clone, Copy)]
pub struct ApprovalPorts<'a> {
    /// Pending approvals.
    pub store: &'a dyn ApprovalStore,
    /// Resumes the waiting execution.
    pub tokens: &'a dyn TaskTokens,
    /// Records who decided.
    pub audit: &'a dyn AuditLog,
    /// Improvement records, moved to approved or rejected when decided.
    pub improvements: &'a dyn crate::ports::ImprovementStore,
    /// The time.
    pub clock: &'a dyn crate::ports::Clock,
    /// The halt switch: no approval is taken while it is on.
    pub halt: &'a dyn crate::ports::HaltSwitch,
}

/// Approves (`approved`) or rejects an improvement; resumes its execution when decided.
/// While halted an approval is refused (the change keeps waiting); a rejection is taken.
pub async fn decide(
    ports: ApprovalPorts<'_>,
    improvement_id: &ImprovementId,
    approver: &str,
    approved: bool,
    comment: Option<String>,
) -> Result<ApprovalProgress, ApprovalError> {
    let ApprovalPorts {
        store,
        tokens,
        audit,
        improvements,
        clock,
        halt,
    } = ports;
    if approver.trim().is_empty() {
        return Err(ApprovalError::InvalidInput(
            "approver must not be empty".into(),
        ));
    }
    let Some(pending) = store.get_pending(improvement_id).await? else {
        return Err(not_waiting(improvements, audit, improvement_id).await?);
    };
    if approved && let Some(halt) = halt.halt_state().await? {
        return Err(ApprovalError::Halted(format!(
            "the halt switch is on ({}: {}); approvals wait until `resume`",
            halt.actor, halt.reason
        )));
    }
    let (status, approvers) = if approved {
        let updated = store
            .add_approver(improvement_id, approver)
            .await?
            .ok_or_else(|| ApprovalError::NotPending(improvement_id.to_owned(), "decided"))?;
        let enough = updated.approvers.len() >= usize::from(updated.approvals_required);
        (
            if enough { "approved" } else { "waiting" },
            updated.approvers,
        )
    } else {
        ("rejected", pending.approvers.clone())
    };
    audit
        .append(&AuditEvent {
            at: clock.now(),
            tenant_id: pending.tenant_id.clone(),
            cycle_id: pending.cycle_id.clone(),
            improvement_id: Some(improvement_id.to_owned()),
            actor: approver.to_owned(),
            action: if approved {
                AuditAction::Approved
            } else {
                AuditAction::Rejected
            },
            before: None,
            after: None,
            detail: format!("{} ({}): {status}", pending.change, pending.risk),
        })
        .await?;
    if status != "waiting" {
        let decision = ApprovalDecision {
            approved: status == "approved",
            approvers: if approved {
                approvers.clone()
            } else {
                vec![approver.to_owned()]
            },
            comment,
        };
        let output = serde_json::to_value(&decision)
            .map_err(|e| ApprovalError::InvalidInput(e.to_string()))?;
        tokens.send_success(&pending.task_token, &output).await?;
        store.remove_pending(improvement_id).await?;
        if let Some(mut record) = improvements.get_improvement(improvement_id).await? {
            record.status = if decision.approved {
                ImprovementStatus::Approved
            } else {
                ImprovementStatus::Rejected
            };
            record.updated_at = clock.now();
            improvements.put_improvement(&record).await?;
        }
    }
    info!(improvement = %improvement_id, status, "approval decided");
    Ok(ApprovalProgress {
        improvement_id: improvement_id.to_owned(),
        status: status.to_owned(),
        approvers,
        approvals_required: pending.approvals_required,
    })
}

/// Why an improvement without a pending approval cannot be decided: it does not exist, its
/// window closed ([`expire`]), or it is past approval.
async fn not_waiting(
    improvements: &dyn crate::ports::ImprovementStore,
    audit: &dyn AuditLog,
    id: &ImprovementId,
) -> Result<ApprovalError, StoreError> {
    if let Some(closed_at) = window_closed_at(audit, id).await? {
        return Ok(ApprovalError::Closed {
            id: id.to_owned(),
            closed_at: closed_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
    }
    Ok(match improvements.get_improvement(id).await? {
        Some(record) => ApprovalError::NotPending(id.to_owned(), record.status.as_str()),
        None => ApprovalError::NotFound(id.to_owned()),
    })
}

/// When the approval window of `id` closed unanswered (its `approval_expired` event), if it did.
async fn window_closed_at(
    audit: &dyn AuditLog,
    id: &ImprovementId,
) -> Result<Option<OffsetDateTime>, StoreError> {
    Ok(audit
        .cycle_events(&id.cycle_id())
        .await?
        .into_iter()
        .rev()
        .find(|e| e.improvement_id.as_ref() == Some(id) && e.action == AuditAction::ApprovalExpired)
        .map(|e| e.at))
}

/// What closing an approval window did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiry {
    /// It was pending and is closed now: the improvement is rejected by the timeout.
    Closed,
    /// An earlier call closed it (the state machine's timeout task, or the offline runner).
    AlreadyClosed,
    /// Nothing was pending: decided in time, or never waiting.
    NotPending,
}

/// The ports [`expire`] needs.
#[derive(Clone, Copy)]
pub struct ExpiryPorts<'a> {
    /// Pending approvals.
    pub store: &'a dyn ApprovalStore,
    /// Records the expiry.
    pub audit: &'a dyn AuditLog,
    /// Improvement records, moved to rejected.
    pub improvements: &'a dyn crate::ports::ImprovementStore,
    /// The time.
    pub clock: &'a dyn crate::ports::Clock,
}

impl<'a> ApprovalPorts<'a> {
    /// The ports that closing a window needs.
    pub fn expiry(&self) -> ExpiryPorts<'a> {
        ExpiryPorts {
            store: self.store,
            audit: self.audit,
            improvements: self.improvements,
            clock: self.clock,
        }
    }
}

/// Closes the approval of an improvement whose window ended unanswered (its task timed
/// out): the pending approval goes, the improvement is rejected by the timeout and the audit
/// says so, so a late `approve` answers that the window closed and resumes nothing.
/// Idempotent: a second call (a retried task, the offline runner after the state machine)
/// finds it [`Expiry::AlreadyClosed`].
pub async fn expire(
    ports: ExpiryPorts<'_>,
    improvement_id: &ImprovementId,
) -> Result<Expiry, StoreError> {
    let pending = match ports.store.get_pending(improvement_id).await? {
        Some(pending) if ports.store.remove_pending(improvement_id).await? => pending,
        _ => {
            let closed = window_closed_at(ports.audit, improvement_id).await?;
            return Ok(if closed.is_some() {
                Expiry::AlreadyClosed
            } else {
                Expiry::NotPending
            });
        }
    };
    let now = ports.clock.now();
    ports
        .audit
        .append(&AuditEvent {
            at: now,
            tenant_id: pending.tenant_id.clone(),
            cycle_id: pending.cycle_id.clone(),
            improvement_id: Some(improvement_id.to_owned()),
            actor: "selfbuild:approval-timeout".to_owned(),
            action: AuditAction::ApprovalExpired,
            before: None,
            after: None,
            detail: format!(
                "{} ({}): the approval window closed with {} of {} approvals",
                pending.change,
                pending.risk,
                pending.approvers.len(),
                pending.approvals_required
            ),
        })
        .await?;
    if let Some(mut record) = ports.improvements.get_improvement(improvement_id).await? {
        record.status = ImprovementStatus::Rejected;
        record.updated_at = now;
        ports.improvements.put_improvement(&record).await?;
    }
    info!(improvement = %improvement_id, "approval window closed unanswered");
    Ok(Expiry::Closed)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use time::macros::datetime;

    use super::*;
    use crate::clock::FixedClock;
    use crate::ids::CycleId;
    use crate::ports::{HaltState, HaltSwitch};
    use crate::testing::MemoryRecords;

    /// Remembers the tokens it resumed.
    #[derive(Default)]
    struct Resumed(Mutex<Vec<String>>);

    #[async_trait]
    impl TaskTokens for Resumed {
        async fn send_success(
            &self,
            token: &str,
            _: &serde_json::Value,
        ) -> Result<(), OrchestratorError> {
            self.0.lock().unwrap().push(token.to_owned());
            Ok(())
        }
    }

    fn id(text: &str) -> ImprovementId {
        text.parse().unwrap()
    }

    fn pending(id: &str) -> PendingApproval {
        PendingApproval {
            improvement_id: id.parse().unwrap(),
            cycle_id: CycleId::parse("c1").unwrap(),
            tenant_id: None,
            task_token: format!("token-{id}"),
            change: "orders-api: timeout 3→9 s".into(),
            risk: "HIGH".into(),
            approvals_required: 1,
            approvers: vec![],
            requested_at: datetime!(2026-11-22 05:00 UTC),
        }
    }

    #[tokio::test]
    async fn while_halted_an_approval_is_refused_and_a_rejection_taken() {
        let records = MemoryRecords::default();
        let tokens = Resumed::default();
        let clock = FixedClock(datetime!(2026-11-22 05:30 UTC));
        let ports = ApprovalPorts {
            store: &records,
            tokens: &tokens,
            audit: &records,
            improvements: &records,
            clock: &clock,
            halt: &records,
        };
        for id in ["c1-1", "c1-2"] {
            records.put_pending(&pending(id)).await.unwrap();
        }
        let halt = HaltState {
            reason: "incident 42".into(),
            actor: "ops".into(),
            since: clock.0,
        };
        records.set_halt(&halt).await.unwrap();

        let err = decide(ports, &id("c1-1"), "alice", true, None)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "Halted");
        assert!(err.to_string().contains("ops: incident 42"), "{err}");
        // Nothing moved: still pending without approvers, nothing resumed or audited.
        let still = records.get_pending(&id("c1-1")).await.unwrap().unwrap();
        assert!(still.approvers.is_empty());
        assert!(tokens.0.lock().unwrap().is_empty());
        assert!(records.events.lock().unwrap().is_empty());

        let rejected = decide(ports, &id("c1-2"), "alice", false, None)
            .await
            .unwrap();
        assert_eq!(rejected.status, "rejected");
        assert_eq!(*tokens.0.lock().unwrap(), ["token-c1-2"]);

        records.clear_halt().await.unwrap();
        let approved = decide(ports, &id("c1-1"), "alice", true, None)
            .await
            .unwrap();
        assert_eq!(approved.status, "approved");
    }

    #[tokio::test]
    async fn an_expired_window_closes_once_and_a_late_approval_is_told_so() {
        let records = MemoryRecords::default();
        let tokens = Resumed::default();
        let clock = FixedClock(datetime!(2026-11-23 05:00 UTC));
        let ports = ApprovalPorts {
            store: &records,
            tokens: &tokens,
            audit: &records,
            improvements: &records,
            clock: &clock,
            halt: &records,
        };
        records.put_pending(&pending("c1-1")).await.unwrap();

        assert_eq!(
            expire(ports.expiry(), &id("c1-1")).await.unwrap(),
            Expiry::Closed
        );
        // A retried task, or the offline runner after the state machine: nothing twice.
        assert_eq!(
            expire(ports.expiry(), &id("c1-1")).await.unwrap(),
            Expiry::AlreadyClosed
        );
        let expired: Vec<_> = records
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.action == AuditAction::ApprovalExpired)
            .map(|e| e.actor.clone())
            .collect();
        assert_eq!(expired, ["selfbuild:approval-timeout"]);
        let err = decide(ports, &id("c1-1"), "alice", true, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ApprovalError::Closed { .. }), "{err}");
        assert!(tokens.0.lock().unwrap().is_empty());
        // Never waiting: nothing to close.
        assert_eq!(
            expire(ports.expiry(), &id("c1-9")).await.unwrap(),
            Expiry::NotPending
        );
    }
}
