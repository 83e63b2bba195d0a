//! `deploy` (R10) and `promote`: the canary shipped and audited; promotion unless rolled
//! back by hand or halted.

use serde::Deserialize;
use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, peers, to_value};
use crate::agents::ChangeEvent;
use crate::audit::AuditAction;
use crate::canary::{deploy, promote};
use crate::change::Change;
use crate::config::Config;
use crate::improvement::{DeployStatus, ImprovementItem, PromoteOutcome, PromoteStatus};
use crate::ports::Unit;
use crate::records::ImprovementStatus;

/// The `deploy` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DeployRequest {
    /// Ship the validated settings as a canary.
    Deploy {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Shift all traffic to the canary.
    Promote {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
}

/// The detail-type of the notification that deployed code is not in the source repository.
pub const DRIFT_NOTIFICATION: &str = "Source Repository Drifted";

/// Runs the `deploy` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_payload::<DeployRequest>(payload)? {
        DeployRequest::Deploy { item } => {
            let window = peers::owner_window(&deps, config, &item).await;
            let outcome = deploy(deps.canary(), config, &item, &window).await?;
            if outcome.status == DeployStatus::Deployed {
                deps.metric("ImprovementsDeployed", Unit::Count, 1.0);
            }
            let (action, notify) = match outcome.status {
                DeployStatus::Deployed => (AuditAction::Deployed, Some("Improvement Deployed")),
                DeployStatus::Deferred => (AuditAction::DeployDeferred, None),
                DeployStatus::Halted => (AuditAction::DeployHalted, None),
                DeployStatus::Skipped => (AuditAction::DeploySkipped, None),
            };
            let deployment = outcome.deployment.as_ref();
            let before = deployment.and_then(|d| serde_json::to_value(&d.baseline).ok());
            let after = deployment.and_then(|d| match &d.code {
                None => serde_json::to_value(&d.settings).ok(),
                // The record of what now runs and is in no repository: hashes and the diffs.
                Some(code) => Some(serde_json::json!({
                    "settings": d.settings,
                    "code": code,
                    "files": item.generated.as_ref().map(|g| match &g.proposal.change {
                        Change::CodePatch { files, .. } => serde_json::json!(files),
                        Change::LambdaConfig { .. } => Value::Null,
                    }),
                })),
            });
            // The record keeps the deployment, so a later rollback can restore its baseline.
            let mut deployed = (*item).clone();
            deployed.deploy = Some(outcome.clone());
            deps.record(
                &deployed,
                action,
                before,
                after,
                outcome.reason.clone(),
                notify,
            )
            .await?;
            if let Some(code) = deployment.and_then(|d| d.code.as_ref()) {
                deps.record(
                    &deployed,
                    AuditAction::SourceDrifted,
                    None,
                    serde_json::to_value(code).ok(),
                    format!(
                        "{} now runs code ({}) that is in no source repository: merge the stored \
                         patch there ({}), or the next build from the repository undoes it",
                        item.opportunity.component,
                        code.code_sha256,
                        code.files.join(", ")
                    ),
                    Some(DRIFT_NOTIFICATION),
                )
                .await?;
            }
            if outcome.status == DeployStatus::Deployed {
                deps.notify_dependents(&item, ChangeEvent::Deployed, &outcome.reason)
                    .await;
            }
            to_value(&outcome)
        }
        DeployRequest::Promote { item } => {
            // A canary rolled back by hand (MCP) while it was watched must stay rolled back.
            if let Some(record) = deps.store.get_improvement(&item.improvement_id()).await?
                && record.status == ImprovementStatus::RolledBack
            {
                return to_value(&PromoteOutcome {
                    status: PromoteStatus::RolledBack,
                    reason: "rolled back by hand while the canary was watched".into(),
                });
            }
            let outcome = promote(deps.canary(), &item).await?;
            // Refused while halted: the state machine looks again, and that look applies
            // HALT_IN_FLIGHT (or judges anew after a resume).
            if outcome.status == PromoteStatus::Promoted {
                deps.record(
                    &item,
                    AuditAction::Promoted,
                    None,
                    None,
                    "canary promoted to 100 %".into(),
                    None,
                )
                .await?;
                deps.notify_dependents(&item, ChangeEvent::Promoted, &outcome.reason)
                    .await;
            }
            to_value(&outcome)
        }
    }
}
