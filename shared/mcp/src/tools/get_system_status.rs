//! `get_system_status`: halt switch, running cycles, improvements by status, component health,
//! LLM circuit breakers, today's LLM spend and the evolution level.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::records::{ImprovementStatus, TenantScope};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolContext, ToolError, ToolSpec, rfc3339};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "get_system_status",
    description: "The state of selfbuild: halt switch, running cycles, improvements by status, \
component health over the last hour (error and throttle rates), LLM circuit breakers, LLM \
spend today against the per-request budget, and the evolution level (promoted improvements).",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Include component health from the last hour of metrics (one telemetry query).
    #[serde(default = "yes")]
    include_health: bool,
}

fn yes() -> bool {
    true
}

/// A component is degraded above these rates.
const DEGRADED_ERROR_RATE: f64 = 0.05;
const DEGRADED_THROTTLE_RATE: f64 = 0.01;

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let deps = ctx.deps;
    let scope = ctx.key.tenant.clone();
    let halt = deps.store.halt_state().await?;
    let running = deps.store.running_cycles(&scope, 50).await?;
    let counts = deps.store.improvement_counts(&scope).await?;
    let usage = deps.store.llm_usage(ctx.now.date()).await?;

    let mut by_status = Map::new();
    for status in ImprovementStatus::ALL {
        by_status.insert(
            status.as_str().into(),
            json!(counts.get(&status).copied().unwrap_or(0)),
        );
    }
    let health = if args.include_health {
        component_health(ctx, &scope).await
    } else {
        Value::Null
    };
    Ok(json!({
        "halt": match &halt {
            Some(h) => json!({"on": true, "reason": h.reason, "actor": h.actor, "since": rfc3339(h.since)}),
            None => json!({"on": false}),
        },
        "running_cycles": running.iter().map(|c| json!({
            "cycle_id": c.request.cycle_id,
            "tenant_id": c.request.tenant_id,
            "mode": c.request.mode.as_str(),
            "started_at": rfc3339(c.started_at),
            "execution": c.execution_ref,
        })).collect::<Vec<_>>(),
        "improvements_by_status": by_status,
        "component_health": health,
        "circuit_breakers": usage.providers,
        "budget": {
            "llm_spent_today_usd": usage.cost_usd,
            "llm_calls_today": usage.calls,
            "per_request_limit_usd": deps.config.llm_budget_usd,
        },
        "evolution_level": counts.get(&ImprovementStatus::Promoted).copied().unwrap_or(0),
        "features": {
            "autonomous_improvements": deps.config.autonomous_improvements,
            "improvement_rollback": deps.config.improvement_rollback,
        },
    }))
}

/// Per component over the last hour; a telemetry failure is reported, not raised.
async fn component_health(ctx: &ToolContext<'_>, scope: &TenantScope) -> Value {
    match ctx
        .analysis(scope.tenant().cloned(), Vec::new(), 1, 0)
        .await
    {
        Ok(report) => Value::Array(
            report
                .components
                .iter()
                .map(|c| {
                    let degraded = c.error_rate > DEGRADED_ERROR_RATE
                        || c.throttle_rate > DEGRADED_THROTTLE_RATE;
                    json!({
                        "component": c.component,
                        "health": if degraded { "degraded" } else { "healthy" },
                        "invocations": c.invocations,
                        "error_rate": c.error_rate,
                        "throttle_rate": c.throttle_rate,
                        "p99_ms": c.p99_ms,
                    })
                })
                .collect(),
        ),
        Err(e) => json!({"error": e.to_string()}),
    }
}
