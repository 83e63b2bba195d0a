//! `get_component`: one component requested through `generate_component`, with its
//! specification, draft (files, handler, runtime, SAM resource), validation findings, LLM
//! usage and status.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "get_component",
    description: "One component requested through generate_component: its status \
(awaiting_approval, declined, failed), risk, specification, the drafted files, handler, \
runtime and SAM resource, validation findings, reason and alternatives, and LLM usage.",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The component's function name.
    name: String,
    /// The tenant; a tenant key may only name its own (a `*` key names one when several
    /// tenants use the name).
    #[serde(default)]
    tenant_id: Option<String>,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let name = function_name("name", args.name.trim())?;
    let scope = ctx.listing_scope(args.tenant_id.as_deref())?;
    let mut found: Vec<_> = ctx
        .deps
        .store
        .list_components(&scope)
        .await?
        .into_iter()
        .filter(|c| c.name == name.as_str() && ctx.sees(c.tenant_id.as_ref()))
        .collect();
    match found.len() {
        0 => Err(ToolError::NotFound(format!("component {name}"))),
        1 => Ok(json!({"component": found.remove(0)})),
        n => Err(ToolError::InvalidArguments(format!(
            "name: {n} tenants have a component {name}; name one with tenant_id"
        ))),
    }
}
