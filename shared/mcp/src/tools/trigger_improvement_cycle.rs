//! `trigger_improvement_cycle`: starts a cycle through the same halt check and dedup as intake.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::cycle::CycleMode;
use selfbuild_core::intake::{IntakeDeps, ManualCycle, request_cycle};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name, in_range};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "trigger_improvement_cycle",
    description: "Start an improvement cycle: analyse the last hours of metrics and logs, propose, \
validate and canary-deploy fixes. Deduplicated like alarms: at most one cycle per tenant and \
component every 5 minutes; a duplicate returns the running cycle's id.",
    scope: Scope::Trigger,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Hours of telemetry to analyse (1–168).
    #[serde(default = "default_window")]
    #[schemars(range(min = 1, max = 168))]
    analysis_window_hours: u32,
    /// Most improvements to act on (1–10).
    #[serde(default = "default_max")]
    #[schemars(range(min = 1, max = 10))]
    max_improvements: u32,
    /// The tenant; a tenant key may only name its own. Omitted: the key's tenant, or the whole fleet.
    #[serde(default)]
    tenant_id: Option<String>,
    /// Components (function names) to analyse; omitted: all of the tenant's.
    #[serde(default)]
    components: Option<Vec<String>>,
    /// routine, or emergency (acts on the freshest evidence first).
    #[serde(default)]
    mode: Mode,
    /// Propose and validate, never deploy.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Routine,
    Emergency,
}

fn default_window() -> u32 {
    24
}

fn default_max() -> u32 {
    3
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let analysis_window_hours =
        in_range("analysis_window_hours", args.analysis_window_hours, 1, 168)?;
    let max_improvements = in_range("max_improvements", args.max_improvements, 1, 10)?;
    let tenant_id = ctx.acting_tenant(args.tenant_id.as_deref())?;
    let mut components = Vec::new();
    for (n, name) in args.components.unwrap_or_default().iter().enumerate() {
        let id = function_name(&format!("components[{n}]"), name)?;
        if !components.contains(&id) {
            components.push(id);
        }
    }
    let deps = ctx.deps;
    let intake = IntakeDeps {
        claims: &*deps.store,
        halt: &*deps.store,
        health: &*deps.store,
        orchestrator: &*deps.orchestrator,
        cycles: &*deps.store,
        clock: &*deps.clock,
        ids: &*deps.ids,
        metrics: &*deps.metrics,
    };
    let manual = ManualCycle {
        tenant_id,
        components,
        mode: match args.mode {
            Mode::Routine => CycleMode::Routine,
            Mode::Emergency => CycleMode::Emergency,
        },
        analysis_window_hours,
        max_improvements,
        dry_run: args.dry_run,
        requested_by: ctx.actor(),
    };
    let outcome = request_cycle(intake, &deps.config, manual).await?;
    Ok(json!({
        "cycle_id": outcome.cycle_id,
        "status": outcome.decision.as_str(),
        "mode": outcome.mode.as_str(),
        "tenant_id": outcome.tenant_id,
        "dedup_key": outcome.dedup_key,
        "suppressed_count": outcome.suppressed_count,
        "reason": outcome.reason,
    }))
}
