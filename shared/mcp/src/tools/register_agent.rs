//! `register_agent`: records another agent (name, URL, capabilities) for its tenant.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::records::AgentRecord;
use selfbuild_core::text::Excerpt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, required_text};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "register_agent",
    description: "Register another agent (or update it): a name unique within its tenant, the \
http(s) URL it is reached at, and its capabilities.",
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
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let name = required_text("name", &args.name, 64)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ToolError::InvalidArguments(format!(
            "name: {name:?} may only contain letters, digits, '.', '_' and '-'"
        )));
    }
    let url = required_text("url", &args.url, 2048)?;
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ToolError::InvalidArguments(format!(
                "url: {} must start with http:// or https://",
                Excerpt(&url)
            ))
        })?;
    if host.is_empty() || host.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err(ToolError::InvalidArguments(format!(
            "url: {} has no host",
            Excerpt(&url)
        )));
    }
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
    let agent = AgentRecord {
        name,
        url,
        capabilities,
        tenant_id: ctx.acting_tenant(args.tenant_id.as_deref())?,
        registered_by: ctx.key.id.clone(),
        registered_at: ctx.now,
    };
    ctx.deps.store.register_agent(&agent).await?;
    Ok(json!({"registered": true, "agent": agent}))
}
