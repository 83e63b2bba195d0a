//! `approve_improvement`: adds the key as an approver; once enough distinct approvers agree,
//! the waiting execution resumes through its task token.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::approval::{ApprovalPorts, decide};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, improvement_id};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "approve_improvement",
    description: "Approve an improvement that waits for approval. HIGH risk needs one approval, \
CRITICAL two from different keys; when enough approvals are in, the cycle resumes and deploys \
the canary.",
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
    decide_as(ctx, &args.id, true, args.comment).await
}

/// Approves or rejects as the calling key, after checking the improvement is visible to it.
pub(crate) async fn decide_as(
    ctx: &ToolContext<'_>,
    id: &str,
    approved: bool,
    comment: Option<String>,
) -> Result<Value, ToolError> {
    let id = improvement_id("id", id)?;
    let store = &ctx.deps.store;
    store
        .get_pending(&id)
        .await?
        .filter(|p| ctx.sees(p.tenant_id.as_ref()))
        .ok_or_else(|| {
            ToolError::NotFound(format!("no approval is pending for improvement {id}"))
        })?;
    let ports = ApprovalPorts {
        store: &**store,
        tokens: &*ctx.deps.task_tokens,
        audit: &**store,
        improvements: &**store,
        clock: &*ctx.deps.clock,
        halt: &**store,
    };
    let progress = decide(ports, &id, &ctx.actor(), approved, comment).await?;
    Ok(json!({
        "improvement_id": progress.improvement_id,
        "status": progress.status,
        "approvers": progress.approvers,
        "approvals_required": progress.approvals_required,
    }))
}
