//! `generate_component` (R18): a thin adapter over [`selfbuild_core::component`]: [`decide`]
//! declines with a reason and alternatives before anything is spent; an accepted request is
//! drafted by the LLM and checked ([`draft_component`]), its spend added to the day's, and
//! recorded awaiting approval, declined with findings, or failed with the reason.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::component::{
    ComponentDecision, ComponentRequest, ComponentType, Conditions, DraftDeps, Requirements,
    decide, draft_component,
};
use selfbuild_core::records::{ComponentRecord, ComponentStatus, TenantScope};
use selfbuild_core::text::Escaped;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolContext, ToolError, ToolSpec};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "generate_component",
    description: "Request a new component (lambda_function, step_function_task, event_consumer \
or scheduled_job) from requirements: name, description and capabilities. The request is \
checked for completeness, risk (from the capabilities) and current load, and declined with \
the reason and suggested alternatives; otherwise the LLM writes its code, handler, runtime \
and SAM resource, which are validated like a code patch. The component is recorded \
awaiting_approval (never deployed by this tool), declined with the findings, or failed with \
the reason and alternatives; get_component returns its code.",
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
            let deps = DraftDeps {
                llm: ctx.deps.llm.as_ref(),
                checker: ctx.deps.checker.as_ref(),
            };
            let tenant = tenant_id.as_ref().map(|t| t.as_str());
            let outcome =
                draft_component(deps, &request, &plan, tenant, config.llm_budget_usd).await;
            // Spend is incurred whatever became of the draft; a ledger failure must not
            // lose the component.
            if outcome.provider.is_some() || outcome.usage.cost_usd > 0.0 {
                let providers = ctx.deps.llm.provider_health();
                if let Err(e) = store
                    .record_llm_usage(ctx.now, outcome.usage.cost_usd, &providers)
                    .await
                {
                    tracing::warn!(error = %Escaped(&e), "LLM usage not recorded");
                }
            }
            let decision = match outcome.status {
                ComponentStatus::Declined => "declined",
                ComponentStatus::Failed => "failed",
                ComponentStatus::Registered | ComponentStatus::AwaitingApproval => "accepted",
            };
            let mut detail = plan.detail;
            detail["requested_by"] = json!(ctx.key.id);
            let generated = serde_json::to_value(&outcome)
                .map_err(|e| ToolError::Failed(format!("component draft: {e}")))?;
            if let (Value::Object(detail), Value::Object(generated)) = (&mut detail, generated) {
                // The draft's risk replaces the rule-derived one; status goes on the record.
                detail.extend(generated.into_iter().filter(|(k, _)| k != "status"));
            }
            let record = ComponentRecord {
                name: plan.name.as_str().to_owned(),
                component_type: request.component_type.as_str().to_owned(),
                tenant_id,
                status: outcome.status,
                detail,
                created_at: ctx.now,
            };
            store.put_component(&record).await?;
            let mut answer = json!({
                "decision": decision,
                "component": {
                    "name": record.name,
                    "component_type": record.component_type,
                    "tenant_id": record.tenant_id,
                    "status": record.status,
                    "risk": outcome.risk.as_str(),
                },
                "validation": outcome.validation,
                "llm_usage": outcome.usage,
            });
            if let Some(reason) = &outcome.reason {
                answer["reason"] = json!(reason);
                answer["suggested_alternatives"] = json!(outcome.suggested_alternatives);
            }
            Ok(answer)
        }
    }
}
