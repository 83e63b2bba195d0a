//! `validate` (R8, R9): the proposal judged and audited; a change that needs people waits
//! with its task token.

use serde::Deserialize;
use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::audit::AuditAction;
use crate::config::Config;
use crate::improvement::ImprovementItem;
use crate::validate::validate;

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
}

/// Runs the `validate` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_payload::<ValidateRequest>(payload)? {
        ValidateRequest::Validate { item } => {
            let validation = validate(&item, config);
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
    }
}
