//! `reject_improvement`: rejects a waiting improvement; its execution resumes and records it.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use serde::Deserialize;
use serde_json::Value;

use super::{ToolContext, ToolError, ToolSpec};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "reject_improvement",
    description: "Reject an improvement that waits for approval; the cycle resumes, records the \
rejection and deploys nothing.",
    scope: Scope::Approve,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The improvement id.
    id: String,
    /// Why, for the audit trail.
    #[serde(default)]
    comment: Option<String>,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    super::approve_improvement::decide_as(ctx, &args.id, false, args.comment).await
}
