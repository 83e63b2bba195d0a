//! `rollback_improvement`: restores a deployed improvement's baseline (version, alias routing
//! and configuration), audits and announces it, and tells the agents depending on the
//! component's owner (each delivery audited as the key's).

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::canary::{RequestedRollback, RollbackPorts, roll_back_requested};
use selfbuild_core::peers::Dependents;
use selfbuild_core::transition::Recorder;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, improvement_id, required_text};

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
    let id = improvement_id("id", &args.id)?;
    let reason = required_text("reason", &args.reason, 1000)?;
    let store = &ctx.deps.store;
    let record = store
        .get_improvement(&id)
        .await?
        .filter(|r| ctx.sees(r.tenant_id.as_ref()))
        .ok_or_else(|| ToolError::NotFound(format!("improvement {id}")))?;
    let actor = ctx.actor();
    let recorder = Recorder {
        audit: &*ctx.deps.store,
        improvements: &*ctx.deps.store,
        notifier: &*ctx.deps.notifier,
        clock: &*ctx.deps.clock,
    };
    let ports = RollbackPorts {
        deployer: &*ctx.deps.deployer,
        recorder,
        metrics: &*ctx.deps.metrics,
        dependents: Dependents {
            registry: &*ctx.deps.store,
            peers: &*ctx.deps.peers,
        },
    };
    let restored = match roll_back_requested(ports, &record, &actor, &reason).await? {
        RequestedRollback::Done { restored } => restored,
        RequestedRollback::AlreadyRolledBack => {
            return Ok(
                json!({"improvement_id": id, "status": "rolled_back", "restored": false,
                "detail": "already rolled back"}),
            );
        }
        RequestedRollback::NotRollbackable(other) => {
            return Err(ToolError::Conflict(format!(
                "improvement {id} is {}; only deployed, frozen, promoted or rollback_failed improvements can be rolled back",
                other.as_str()
            )));
        }
    };
    Ok(json!({"improvement_id": id, "status": "rolled_back", "restored": restored}))
}
