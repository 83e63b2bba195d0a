//! `validate` (R8, R9): the proposal judged and audited; a change that needs people waits
//! with its task token.

use serde::Deserialize;
use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::approval::ExpiryPorts;
use crate::audit::AuditAction;
use crate::change::Change;
use crate::change::code_patch::diff_size;
use crate::config::Config;
use crate::improvement::ImprovementItem;
use crate::validate::{check_code_patch, validate};

/// The `validate` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ValidateRequest {
    /// Judge the item's proposal.
    Validate {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Record the task token of a change that waits for approval.
    RequestApproval {
        /// The token the state machine waits on.
        task_token: String,
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Close the approval whose window ended unanswered (the state machine's timeout).
    ExpireApproval {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
}

/// Runs the `validate` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_payload::<ValidateRequest>(payload)? {
        ValidateRequest::Validate { item } => {
            let check = check_code_patch(deps.code, deps.checker, &item).await?;
            let validation = validate(&item, config, check.as_ref());
            let detail = format!(
                "risk {}, {:?}, {} finding(s)",
                validation.risk.as_str(),
                validation.decision,
                validation.findings.len()
            );
            let before = serde_json::to_value(&validation.before).ok();
            let after = serde_json::to_value(&validation.after).ok();
            let mut validated = (*item).clone();
            validated.validation = Some(validation.clone());
            deps.record(
                &validated,
                AuditAction::Validated,
                before,
                after,
                detail,
                None,
            )
            .await?;
            if validation.held_for_review {
                hold_for_review(deps, &validated).await?;
            }
            to_value(&validation)
        }
        ValidateRequest::RequestApproval { task_token, item } => {
            let pending =
                crate::approval::request_approval(deps.store, &item, &task_token, deps.clock.now())
                    .await?;
            let detail = format!(
                "{} ({}) needs {} approval(s)",
                pending.change, pending.risk, pending.approvals_required
            );
            deps.record(
                &item,
                AuditAction::ApprovalRequested,
                None,
                None,
                detail,
                Some("Approval Needed"),
            )
            .await?;
            to_value(&pending)
        }
        ValidateRequest::ExpireApproval { item } => {
            let ports = ExpiryPorts {
                store: deps.store,
                audit: deps.store,
                improvements: deps.store,
                clock: deps.clock,
            };
            let expiry = crate::approval::expire(ports, &item.improvement_id()).await?;
            Ok(serde_json::json!({ "expiry": expiry }))
        }
    }
}

/// The detail-type of the notification that a code patch waits for people to review.
pub const REVIEW_NOTIFICATION: &str = "Code Patch Ready for Review";

/// Stores a validated code patch for review and notifies: where a patch to code selfbuild
/// does not ship itself (a compiled runtime, a container image) ends. The audit event's `after` is the review (files, risk, the
/// approvals the policy asks, the located findings); the stored record keeps the diffs.
async fn hold_for_review(deps: StepDeps<'_>, item: &ImprovementItem) -> Result<(), StepError> {
    let (Some(generated), Some(validation)) = (&item.generated, &item.validation) else {
        return Ok(());
    };
    let files: Vec<serde_json::Value> = match &generated.proposal.change {
        Change::CodePatch { files, .. } => files
            .iter()
            .map(|f| {
                let (added, removed) = diff_size(&f.diff);
                serde_json::json!({
                    "path": f.path, "language": f.language,
                    "lines_added": added, "lines_removed": removed,
                })
            })
            .collect(),
        Change::LambdaConfig { .. } => return Ok(()),
    };
    let review = serde_json::json!({
        "change": generated.proposal.change.describe(None),
        "rationale": generated.proposal.rationale,
        "files": files,
        "risk": validation.risk,
        "approvals_required": validation.approvals_required,
        "decision": validation.decision,
        "findings": validation.findings,
    });
    let detail = format!(
        "{} held for review ({} code is not shipped by selfbuild): risk {}, {} finding(s), {} approval(s) asked",
        generated.proposal.change.describe(None),
        validation
            .code_base
            .as_ref()
            .and_then(|b| b.runtime.as_deref())
            .unwrap_or("unknown-runtime"),
        validation.risk.as_str(),
        validation.findings.len(),
        validation.approvals_required
    );
    deps.record(
        item,
        AuditAction::HeldForReview,
        None,
        Some(review),
        detail,
        Some(REVIEW_NOTIFICATION),
    )
    .await
}
