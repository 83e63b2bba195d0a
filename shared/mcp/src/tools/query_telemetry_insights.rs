//! `query_telemetry_insights`: the analysis a cycle would make, without starting one.

use schemars::JsonSchema;
use selfbuild_core::analyze::analyze;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::error::TelemetryError;
use selfbuild_core::ids::{CycleId, DedupKey};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name, in_range};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "query_telemetry_insights",
    description: "Analyse recent CloudWatch metrics and logs without starting a cycle: top error \
templates (with counts and samples), per-component metric summaries, and ranked improvement \
opportunities with their evidence and impact score.",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Hours of telemetry, ending now (1–168).
    #[serde(default = "default_hours")]
    #[schemars(range(min = 1, max = 168))]
    time_range_hours: u32,
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
    /// One component (function name); omitted: all in scope.
    #[serde(default)]
    component: Option<String>,
    /// Most opportunities to rank (1–10).
    #[serde(default = "default_max")]
    #[schemars(range(min = 1, max = 10))]
    max_opportunities: u32,
}

fn default_hours() -> u32 {
    24
}

fn default_max() -> u32 {
    5
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let hours = in_range("time_range_hours", args.time_range_hours, 1, 168)?;
    let max = in_range("max_opportunities", args.max_opportunities, 1, 10)?;
    let tenant = ctx.acting_tenant(args.tenant_id.as_deref())?;
    let component = args
        .component
        .as_deref()
        .map(|c| function_name("component", c))
        .transpose()?;
    let now = ctx.now;
    let key = DedupKey::new(tenant.clone(), component.clone());
    let request = CycleRequest {
        cycle_id: CycleId::for_claim(&key, now),
        mode: if hours <= 1 {
            CycleMode::Emergency
        } else {
            CycleMode::Routine
        },
        tenant_id: tenant,
        components: component.into_iter().collect(),
        analysis_window: TimeWindow {
            start: now - time::Duration::hours(i64::from(hours)),
            end: now,
        },
        max_improvements: max,
        max_concurrency: 1,
        dry_run: true,
        trigger: Trigger::Manual {
            requested_by: ctx.actor(),
        },
        dedup_key: key.as_str().to_owned(),
        requested_at: now,
    };
    let report = analyze(&*ctx.deps.telemetry, &*ctx.deps.deployer, &request)
        .await
        .map_err(|e| match e {
            TelemetryError::Unavailable(m) => ToolError::Unavailable(m),
            TelemetryError::Invalid(m) => ToolError::Failed(m),
        })?;
    Ok(json!({
        "window": report.window,
        "top_error_templates": report.templates,
        "metric_summaries": report.components,
        "opportunities": report.opportunities,
    }))
}
