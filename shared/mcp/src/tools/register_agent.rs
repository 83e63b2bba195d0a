//! `register_agent`: records another agent for its tenant: name, URL, capabilities, and
//! what selfbuild needs to treat it as a peer (MCP URL, key secret, components, dependencies,
//! low-traffic windows, tool names) and where its own metrics are (seed R10.2).

use schemars::JsonSchema;
use selfbuild_core::agents::metrics::{AgentMetrics, shared_namespace_problem};
use selfbuild_core::agents::{LowTrafficWindow, MAX_WINDOWS};
use selfbuild_core::apikeys::Scope;
use selfbuild_core::records::AgentRecord;
use selfbuild_core::text::Excerpt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name, required_text};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "register_agent",
    description: "Register another agent (or update it): a name unique within its tenant, the \
http(s) URL it is reached at, its capabilities; optionally the MCP URL selfbuild calls it on \
and the secret id of the key it calls with, the functions it owns, the agents it depends on \
(it is notified when their components change), its low-traffic windows (HH:MM-HH:MM UTC) and \
the names of its deployment-window and notification tools; and where its own metrics are in \
CloudWatch (namespace, the dimensions selecting it, default Agent=<name>, and which metric is \
its requests, errors, latency and memory use), which analysis reads like a component's.",
    scope: Scope::Trigger,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// 1–64 letters, digits, '.', '_' or '-'.
    name: String,
    /// Where the agent is reached (http or https).
    url: String,
    /// What it can do (1–32 entries).
    capabilities: Vec<String>,
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
    /// Its MCP endpoint (Streamable HTTP, http or https) selfbuild calls.
    #[serde(default)]
    mcp_url: Option<String>,
    /// The Secrets Manager secret id of the bearer key selfbuild calls it with (never the key).
    #[serde(default)]
    key_secret_id: Option<String>,
    /// The Lambda functions it owns (0–64).
    #[serde(default)]
    components: Vec<String>,
    /// The agents, by name, it depends on (0–32); it hears of their changes.
    #[serde(default)]
    depends_on: Vec<String>,
    /// Daily quiet times, `HH:MM-HH:MM` in UTC (may wrap midnight), 0–24.
    #[serde(default)]
    low_traffic_windows: Vec<String>,
    /// Its deployment-window tool (default `request_deployment_window`).
    #[serde(default)]
    window_tool: Option<String>,
    /// Its notification tool (default `notify_dependency_changed`).
    #[serde(default)]
    notify_tool: Option<String>,
    /// Where its own metrics are in CloudWatch and which is which; analysis reads them like a
    /// component's and puts what it finds on one of its `components`.
    #[serde(default)]
    metrics: Option<AgentMetrics>,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let name = agent_name("name", &args.name)?;
    let url = http_url("url", &args.url)?;
    if args.capabilities.is_empty() || args.capabilities.len() > 32 {
        return Err(ToolError::InvalidArguments(
            "capabilities: must list 1–32 capabilities".into(),
        ));
    }
    let mut capabilities = Vec::new();
    for (n, c) in args.capabilities.iter().enumerate() {
        let c = required_text(&format!("capabilities[{n}]"), c, 100)?;
        if !capabilities.contains(&c) {
            capabilities.push(c);
        }
    }
    let mcp_url = args
        .mcp_url
        .as_deref()
        .map(|u| http_url("mcp_url", u))
        .transpose()?;
    let key_secret_id = args
        .key_secret_id
        .as_deref()
        .map(|id| secret_id("key_secret_id", id))
        .transpose()?;
    if key_secret_id.is_some() && mcp_url.is_none() {
        return Err(ToolError::InvalidArguments(
            "key_secret_id: given without mcp_url (the key is only used to call the MCP URL)"
                .into(),
        ));
    }
    let components = names("components", &args.components, 64, |field, c| {
        function_name(field, c).map(|id| id.as_str().to_owned())
    })?;
    let depends_on = names("depends_on", &args.depends_on, 32, agent_name)?;
    if depends_on.contains(&name) {
        return Err(ToolError::InvalidArguments(format!(
            "depends_on: {name:?} is the agent itself"
        )));
    }
    if args.low_traffic_windows.len() > MAX_WINDOWS {
        return Err(ToolError::InvalidArguments(format!(
            "low_traffic_windows: at most {MAX_WINDOWS} windows"
        )));
    }
    let mut low_traffic_windows = Vec::new();
    for (n, w) in args.low_traffic_windows.iter().enumerate() {
        let window = LowTrafficWindow::parse(w.trim())
            .map_err(|e| ToolError::InvalidArguments(format!("low_traffic_windows[{n}]: {e}")))?;
        low_traffic_windows.push(window);
    }
    let window_tool = args
        .window_tool
        .as_deref()
        .map(|t| tool_name("window_tool", t))
        .transpose()?;
    let notify_tool = args
        .notify_tool
        .as_deref()
        .map(|t| tool_name("notify_tool", t))
        .transpose()?;
    let tenant_id = ctx.acting_tenant(args.tenant_id.as_deref())?;
    if let Some(metrics) = &args.metrics {
        metrics
            .check(tenant_id.as_ref())
            .map_err(ToolError::InvalidArguments)?;
        let config = &ctx.deps.config;
        let shared = [
            config.metrics_namespace.as_str(),
            config.custom_metrics_namespace.as_str(),
        ];
        if let Some(problem) = shared_namespace_problem(
            &metrics.namespace,
            &metrics.dimensions_for(&name),
            tenant_id.as_ref(),
            &shared,
        ) {
            return Err(ToolError::InvalidArguments(problem));
        }
    }
    let agent = AgentRecord {
        name,
        url,
        capabilities,
        mcp_url,
        key_secret_id,
        components,
        depends_on,
        low_traffic_windows,
        window_tool,
        notify_tool,
        metrics: args.metrics,
        tenant_id,
        registered_by: ctx.key.id.clone(),
        registered_at: ctx.now,
    };
    ctx.deps.store.register_agent(&agent).await?;
    Ok(json!({"registered": true, "agent": agent}))
}

/// An agent name: 1–64 letters, digits, '.', '_' or '-'.
fn agent_name(field: &str, value: &str) -> Result<String, ToolError> {
    let name = required_text(field, value, 64)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ToolError::InvalidArguments(format!(
            "{field}: {name:?} may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(name)
}

/// An http(s) URL with a host.
fn http_url(field: &str, value: &str) -> Result<String, ToolError> {
    let url = required_text(field, value, 2048)?;
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ToolError::InvalidArguments(format!(
                "{field}: {} must start with http:// or https://",
                Excerpt(&url)
            ))
        })?;
    if host.is_empty() || host.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(ToolError::InvalidArguments(format!(
            "{field}: {} has no host",
            Excerpt(&url)
        )));
    }
    Ok(url)
}

/// A Secrets Manager secret id or ARN: 1–2048 of its allowed characters.
fn secret_id(field: &str, value: &str) -> Result<String, ToolError> {
    let id = required_text(field, value, 2048)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c))
    {
        return Err(ToolError::InvalidArguments(format!(
            "{field}: {} is not a secret id (letters, digits and /_+=.@-: only)",
            Excerpt(&id)
        )));
    }
    Ok(id)
}

/// An MCP tool name: 1–128 letters, digits, '_', '-' or '.'.
fn tool_name(field: &str, value: &str) -> Result<String, ToolError> {
    let name = required_text(field, value, 128)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ToolError::InvalidArguments(format!(
            "{field}: {name:?} may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(name)
}

/// Up to `max` entries, each checked by `check` (named `field[n]`), duplicates dropped.
fn names(
    field: &str,
    values: &[String],
    max: usize,
    check: impl Fn(&str, &str) -> Result<String, ToolError>,
) -> Result<Vec<String>, ToolError> {
    if values.len() > max {
        return Err(ToolError::InvalidArguments(format!(
            "{field}: at most {max} entries"
        )));
    }
    let mut out = Vec::new();
    for (n, v) in values.iter().enumerate() {
        let v = check(&format!("{field}[{n}]"), v.trim())?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}
