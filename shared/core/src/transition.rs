//! Recording an improvement's transition (R13): the audit event, the improvement's new status
//! and the notification other agents subscribe to. The cycle's steps and the MCP tools record
//! through the same [`Recorder`], so a transition reads the same whoever made it.

use serde_json::Value;

use crate::audit::{AuditAction, AuditEvent};
use crate::error::StoreError;
use crate::improvement::ImprovementItem;
use crate::ports::{AuditLog, Clock, ImprovementStore, Notifier};
use crate::records::{ImprovementRecord, ImprovementStatus};
use crate::text::Escaped;

/// One transition of an improvement.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// What happened.
    pub action: AuditAction,
    /// Who did it: `selfbuild:<function>`, or the person or agent.
    pub actor: String,
    /// The status it leaves; none leaves the stored status as it is.
    pub status: Option<ImprovementStatus>,
    /// State before, when it changed.
    pub before: Option<Value>,
    /// State after.
    pub after: Option<Value>,
    /// In words.
    pub detail: String,
    /// The notification's detail-type, when other agents hear of it.
    pub notify: Option<&'a str>,
}

impl Transition<'_> {
    /// A transition selfbuild's own step makes, leaving the status the action implies.
    pub fn by_step(action: AuditAction, detail: String) -> Self {
        Self {
            action,
            actor: format!("selfbuild:{}", action.step_function()),
            status: action.status_after(),
            before: None,
            after: None,
            detail,
            notify: None,
        }
    }
}

/// Writes transitions.
#[derive(Clone, Copy)]
pub struct Recorder<'a> {
    /// Audit events.
    pub audit: &'a dyn AuditLog,
    /// Each improvement's latest state.
    pub improvements: &'a dyn ImprovementStore,
    /// Notifications for other agents.
    pub notifier: &'a dyn Notifier,
    /// The time.
    pub clock: &'a dyn Clock,
}

impl Recorder<'_> {
    /// Appends the audit event and stores the new status (failing if either cannot be
    /// written), then notifies (a failed notification is only logged). Returns the event.
    pub async fn record(
        &self,
        item: &ImprovementItem,
        transition: Transition<'_>,
    ) -> Result<AuditEvent, StoreError> {
        let event = AuditEvent {
            at: self.clock.now(),
            tenant_id: item.tenant_id.clone(),
            cycle_id: item.cycle_id.clone(),
            improvement_id: Some(item.improvement_id()),
            actor: transition.actor,
            action: transition.action,
            before: transition.before,
            after: transition.after,
            detail: transition.detail,
        };
        self.audit.append(&event).await?;
        if let Some(status) = transition.status {
            let record = ImprovementRecord::of_item(item, status, event.at);
            self.improvements.put_improvement(&record).await?;
        }
        if let Some(detail_type) = transition.notify {
            let body = serde_json::to_value(&event).unwrap_or(Value::Null);
            if let Err(e) = self.notifier.notify(detail_type, &body).await {
                tracing::warn!(error = %Escaped(&e), detail_type, "notification failed");
            }
        }
        Ok(event)
    }
}
