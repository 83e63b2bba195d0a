//! `list_improvements`: improvements visible to the key, newest first, filtered and paged.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::error::StoreError;
use selfbuild_core::records::{ImprovementQuery, ImprovementRecord, ImprovementStatus};
use selfbuild_core::text::Excerpt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, in_range, rfc3339};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "list_improvements",
    description: "List improvements newest first, optionally by status (validated, \
awaiting_approval, approved, rejected, deployed, deferred, halted, frozen, skipped, \
promoted, rolled_back, inconclusive) and tenant; pass next_cursor back as cursor for the next page.",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Only improvements in this status.
    #[serde(default)]
    status: Option<String>,
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
    /// Page size (1–100).
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = 100))]
    limit: u32,
    /// next_cursor of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

fn default_limit() -> u32 {
    20
}

/// The listing line of a record.
pub(crate) fn summary(record: &ImprovementRecord) -> Value {
    json!({
        "improvement_id": record.improvement_id,
        "cycle_id": record.cycle_id,
        "tenant_id": record.tenant_id,
        "component": record.component,
        "status": record.status.as_str(),
        "risk": record.risk.map(|r| r.as_str()),
        "change": record.change,
        "updated_at": rfc3339(record.updated_at),
    })
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let limit = in_range("limit", args.limit, 1, 100)?;
    let status = args
        .status
        .as_deref()
        .map(|s| {
            ImprovementStatus::parse(s).ok_or_else(|| {
                let names: Vec<&str> = ImprovementStatus::ALL.iter().map(|s| s.as_str()).collect();
                ToolError::InvalidArguments(format!(
                    "status: {} is not one of {}",
                    Excerpt(s),
                    names.join(", ")
                ))
            })
        })
        .transpose()?;
    let scope = ctx.listing_scope(args.tenant_id.as_deref())?;
    let page = ctx
        .deps
        .store
        .list_improvements(&ImprovementQuery {
            scope,
            status,
            limit: limit as usize,
            cursor: args.cursor,
        })
        .await
        .map_err(|e| match e {
            StoreError::Rejected(m) => ToolError::InvalidArguments(format!("cursor: {m}")),
            other => other.into(),
        })?;
    Ok(json!({
        "improvements": page.items.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    }))
}
