//! `enable_component`: re-enables a component the self health pass disabled after failed
//! heals, audited as a health event `enabled`.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::health::pass::enable_component;
use selfbuild_core::records::TenantScope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, required_text};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "enable_component",
    description: "Re-enable a component the self health pass disabled after three failed \
heals: selfbuild may change it again, and its failed heals start again from 0. Audited with \
the caller as a health event; get_system_status lists the disabled components.",
    scope: Scope::Approve,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The component's name (as get_system_status's disabled_components shows it).
    component: String,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let component = required_text("component", &args.component, 200)?;
    let store = &ctx.deps.store;
    // A tenant's key acts on its tenant's registered components only; one it may not see is
    // answered as a missing one.
    if let TenantScope::Only(_) = &ctx.key.tenant {
        let visible = store
            .list_components(&ctx.key.tenant)
            .await?
            .iter()
            .any(|c| c.name == component);
        if !visible {
            return Err(ToolError::NotFound(format!(
                "component {component} (a tenant's key may re-enable its registered components)"
            )));
        }
    }
    let actor = ctx.actor();
    let enabled = enable_component(store.as_ref(), &component, &actor, ctx.now).await?;
    tracing::info!(actor = ?actor, component = ?component, was_disabled = enabled.was_disabled, "component enabled");
    Ok(json!(enabled))
}
