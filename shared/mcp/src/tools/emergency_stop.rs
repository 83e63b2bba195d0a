//! `emergency_stop`: sets the halt switch; no cycle starts and no canary deploys until `resume`.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::ports::HaltState;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, required_text, rfc3339};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "emergency_stop",
    description: "Stop selfbuild at once: no new cycles start and no canary deploys until \
resume is called. Canaries already live keep being watched and can still be rolled back.",
    scope: Scope::Admin,
    read_only: false,
    destructive: true,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Why, shown in status and in every refused cycle.
    reason: String,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let reason = required_text("reason", &args.reason, 1000)?;
    let halt = HaltState {
        reason,
        actor: ctx.actor(),
        since: ctx.now,
    };
    ctx.deps.store.set_halt(&halt).await?;
    tracing::warn!(actor = ?halt.actor, reason = ?halt.reason, "emergency stop");
    Ok(
        json!({"halted": true, "reason": halt.reason, "actor": halt.actor, "since": rfc3339(halt.since)}),
    )
}
