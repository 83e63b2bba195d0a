//! `query_telemetry_insights`: the analysis a cycle would make, without starting one.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name, in_range};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "query_telemetry_insights",
    description: "Analyse recent CloudWatch metrics and logs without starting a cycle: top error \
templates (with counts and samples), per-component metric summaries (with the REPORT-line facts \
per version), stack traces grouped by exception and top frame, and ranked improvement \
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
    let report = ctx
        .analysis(tenant, component.into_iter().collect(), hours, max)
        .await?;
    Ok(json!({
        "window": report.window,
        "top_error_templates": report.templates,
        "metric_summaries": report.components,
        "stack_traces": report.traces,
        "logs": report.logs,
        "opportunities": report.opportunities,
    }))
}
