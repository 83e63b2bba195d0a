//! `generate_component` (R18): a thin adapter over [`selfbuild_core::component::decide`]:
//! declined with a reason and alternatives, or registered with a specification and a status.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::component::{
    ComponentDecision, ComponentRequest, ComponentType, Conditions, Requirements, decide,
};
use selfbuild_core::records::{ComponentRecord, TenantScope};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolContext, ToolError, ToolSpec};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "generate_component",
    description: "Request a new component (lambda_function, step_function_task, event_consumer \
or scheduled_job) from requirements: name, description and capabilities. The request is \
checked for completeness, risk (from the capabilities) and current load; it is declined with \
the reason and suggested alternatives, or registered with its specification and status \
(registered, or awaiting_approval for high-risk capabilities).",
    scope: Scope::Trigger,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// What to build.
    component_type: ComponentType,
    /// What it must do.
    requirements: Requirements,
    /// Anything that helps: runtime, callers, data, expected traffic (a JSON object).
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let tenant_id = ctx.acting_tenant(args.tenant_id.as_deref())?;
    let config = &ctx.deps.config;
    let store = &ctx.deps.store;
    // Only what the decision needs is read: a disabled tool touches nothing.
    let halted = if config.component_generation {
        store.halt_state().await?.map(|h| h.reason)
    } else {
        None
    };
    let running_cycles = if config.component_generation && halted.is_none() {
        store.running_cycles(&TenantScope::All, 1000).await?.len()
    } else {
        0
    };
    let request = ComponentRequest {
        component_type: args.component_type,
        requirements: args.requirements,
        context: args.context,
    };
    let conditions = Conditions {
        enabled: config.component_generation,
        halted,
        running_cycles,
        capacity: config.max_concurrent_improvements as usize,
    };
    match decide(&request, &conditions) {
        ComponentDecision::Declined {
            reason,
            risk,
            findings,
            alternatives,
        } => {
            let mut answer = json!({"decision": "declined", "reason": reason,
                "suggested_alternatives": alternatives});
            if let Some(risk) = risk {
                answer["risk"] = json!(risk.as_str());
                answer["findings"] = json!(findings);
            }
            Ok(answer)
        }
        ComponentDecision::Accepted(plan) => {
            let mut detail = plan.detail;
            detail["requested_by"] = json!(ctx.key.id);
            let record = ComponentRecord {
                name: plan.name.as_str().to_owned(),
                component_type: request.component_type.as_str().to_owned(),
                tenant_id,
                status: plan.status,
                detail,
                created_at: ctx.now,
            };
            store.put_component(&record).await?;
            Ok(json!({"decision": "accepted", "component": record}))
        }
    }
}
