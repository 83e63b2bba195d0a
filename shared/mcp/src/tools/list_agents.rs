//! `list_agents`: agents registered for the key's tenants.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "list_agents",
    description: "List registered agents (name, URL, capabilities, tenant, MCP URL, key secret id \
but never the key, components, dependencies, low-traffic windows, tool names).",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let scope = ctx.listing_scope(args.tenant_id.as_deref())?;
    let agents = ctx.deps.store.list_agents(&scope).await?;
    Ok(json!({"agents": agents}))
}
