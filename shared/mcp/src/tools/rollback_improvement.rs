//! `rollback_improvement`: restores a deployed improvement's baseline (version, alias routing
//! and configuration), audits and announces it.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::canary::{CanaryError, rollback};
use selfbuild_core::emf::{MetricRecord, Unit};
use selfbuild_core::records::ImprovementStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use super::{ToolContext, ToolError, ToolSpec, required_text};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "rollback_improvement",
    description: "Roll back a deployed, frozen or promoted improvement, or finish one whose \
rollback failed: the function's alias, version and configuration go back to the baseline \
recorded before the deploy. A canary still being watched is not promoted afterwards.",
    scope: Scope::Approve,
    read_only: false,
    destructive: true,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The improvement id.
    id: String,
    /// Why, for the audit trail and the notification.
    reason: String,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let id = required_text("id", &args.id, 120)?;
    let reason = required_text("reason", &args.reason, 1000)?;
    let store = &ctx.deps.store;
    let mut record = store
        .get_improvement(&id)
        .await?
        .filter(|r| ctx.sees(r.tenant_id.as_ref()))
        .ok_or_else(|| ToolError::NotFound(format!("improvement {id}")))?;
    match record.status {
        ImprovementStatus::Deployed
        | ImprovementStatus::Frozen
        | ImprovementStatus::Promoted
        | ImprovementStatus::RollbackFailed => {}
        ImprovementStatus::RolledBack => {
            return Ok(
                json!({"improvement_id": id, "status": "rolled_back", "restored": false,
                "detail": "already rolled back"}),
            );
        }
        other => {
            return Err(ToolError::Conflict(format!(
                "improvement {id} is {}; only deployed, frozen, promoted or rollback_failed improvements can be rolled back",
                other.as_str()
            )));
        }
    }
    let restored = rollback(&*ctx.deps.deployer, &record.item)
        .await
        .map_err(|e| match e {
            CanaryError::InvalidInput(m) => ToolError::Conflict(m),
            other => ToolError::Unavailable(other.to_string()),
        })?;
    let event = AuditEvent {
        at: ctx.now,
        tenant_id: record.tenant_id.clone(),
        cycle_id: record.cycle_id.clone(),
        improvement_id: Some(id.clone()),
        actor: ctx.actor(),
        action: "rolled_back".into(),
        before: Some(json!({"status": record.status.as_str()})),
        after: record
            .item
            .deploy
            .as_ref()
            .and_then(|d| d.deployment.as_ref())
            .and_then(|d| serde_json::to_value(&d.baseline).ok()),
        detail: format!("rolled back by {}: {reason}", ctx.actor()),
    };
    store.append(&event).await?;
    ctx.deps.metrics.record(MetricRecord {
        name: "ImprovementsRolledBack",
        unit: Unit::Count,
        value: 1.0,
        dimensions: Vec::new(),
        timestamp: ctx.now,
    });
    record.status = ImprovementStatus::RolledBack;
    record.updated_at = ctx.now;
    store.put_improvement(&record).await?;
    let body = serde_json::to_value(&event).unwrap_or(Value::Null);
    if let Err(e) = ctx
        .deps
        .notifier
        .notify("Improvement Rolled Back", &body)
        .await
    {
        warn!(error = %e, "rollback notification failed");
    }
    Ok(json!({"improvement_id": id, "status": "rolled_back", "restored": restored}))
}
