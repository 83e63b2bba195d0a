//! `resume`: clears the halt switch.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "resume",
    description: "Clear the halt switch set by emergency_stop; cycles and deploys start again.",
    scope: Scope::Admin,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments (none).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {}

pub(crate) async fn call(ctx: &ToolContext<'_>, _args: Args) -> Result<Value, ToolError> {
    let was_halted = ctx.deps.store.clear_halt().await?;
    tracing::info!(actor = ?ctx.actor(), was_halted, "resumed");
    Ok(json!({"halted": false, "was_halted": was_halted}))
}
