//! `rollback` (R12): the baseline restored exactly and recorded, unless automatic rollback
//! is off.

use serde::Deserialize;
use serde_json::Value;

use super::{StepDeps, StepError, parse_payload};
use crate::canary::{RollbackCause, roll_back_recorded};
use crate::config::Config;
use crate::improvement::ImprovementItem;

/// The `rollback` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RollbackRequest {
    /// Restore the baseline.
    Rollback {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
}

/// Runs the `rollback` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_payload::<RollbackRequest>(payload)? {
        RollbackRequest::Rollback { .. } if !config.improvement_rollback => {
            Err(StepError::RollbackDisabled(
                "ENABLE_IMPROVEMENT_ROLLBACK is off: the canary stays in place for a human to decide".into(),
            ))
        }
        RollbackRequest::Rollback { item } => {
            let done = roll_back_recorded(
                deps.deployer,
                deps.recorder(),
                deps.metrics,
                &item,
                None,
                RollbackCause::Verdict,
            )
            .await?;
            Ok(serde_json::json!({"restored": done.restored, "outcome": done.event.action}))
        }
    }
}
