//! `get_improvement`: one improvement with its proposal, validation, deployment, pending
//! approval and audit trail.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::audit::{AuditAction, AuditEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ToolContext, ToolError, ToolSpec, improvement_id};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "get_improvement",
    description: "One improvement: its change, rationale, risk and findings, deployment and \
monitor report, the approval it waits for (if any), and its audit trail.",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// The improvement id (`<cycle>-<rank>`).
    id: String,
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let id = improvement_id("id", &args.id)?;
    let store = &ctx.deps.store;
    // The three reads at once (the id names its cycle): one round trip of waiting, and the
    // same reads whether or not the record exists or is visible.
    let cycle = id.cycle_id();
    let (record, events, pending) = tokio::try_join!(
        store.get_improvement(&id),
        store.cycle_events(&cycle),
        store.get_pending(&id),
    )?;
    let record = record
        .filter(|r| ctx.sees(r.tenant_id.as_ref()))
        .ok_or_else(|| ToolError::NotFound(format!("improvement {id}")))?;
    let trail: Vec<Value> = events
        .into_iter()
        .filter(|e| e.improvement_id.as_ref() == Some(&id))
        .map(trail_entry)
        .collect();
    let pending = pending.map(|p| {
        json!({
            "approvals_required": p.approvals_required,
            "approvers": p.approvers,
            "requested_at": super::rfc3339(p.requested_at),
        })
    });
    let item = &record.item;
    Ok(json!({
        "improvement": super::list_improvements::summary(&record),
        "opportunity": item.opportunity,
        "proposal": item.generated.as_ref().map(|g| &g.proposal),
        "provider": item.generated.as_ref().map(|g| &g.provider),
        "llm_usage": item.generated.as_ref().map(|g| g.usage),
        "validation": item.validation,
        "approval": item.approval,
        "pending_approval": pending,
        "deploy": item.deploy,
        "monitor": item.monitor,
        "audit_trail": trail,
    }))
}

/// An audit event as the trail shows it: a look at the canary (`canary_checked`, up to ~13 an
/// hour, ~3.5 kB each) in a few fields, since `monitor` has the latest report in full and
/// `selfbuild report` charts them all.
fn trail_entry(event: AuditEvent) -> Value {
    if event.action != AuditAction::CanaryChecked {
        return json!(event);
    }
    let look = event.after.as_ref();
    let field = |name: &str| {
        look.and_then(|l| l.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let metrics: Vec<Value> = look
        .and_then(|l| l.get("metrics"))
        .and_then(Value::as_array)
        .map(|metrics| {
            metrics
                .iter()
                .map(|m| {
                    json!({"metric": m.get("metric"), "canary": m.get("canary"),
                           "baseline": m.get("baseline"), "degraded": m.get("degraded")})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "at": super::rfc3339(event.at),
        "actor": event.actor,
        "action": event.action,
        "detail": event.detail,
        "look": {
            "verdict": field("verdict"),
            "window_over": field("window_over"),
            "canary_requests": field("canary_requests"),
            "stable_requests": field("stable_requests"),
            "metrics": metrics,
        },
    })
}
