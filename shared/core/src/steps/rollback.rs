//! `rollback` (R12): the baseline restored exactly and recorded, unless automatic rollback
//! is off; the undo of what a failed deploy left, audited with the deploy's failure; and a
//! requested rollback handed over by the health pass (an asynchronous invocation, not a
//! state of the state machine), with the time a code patch's rollback takes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{StepDeps, StepError, parse_payload};
use crate::audit::AuditAction;
use crate::canary::{
    RollbackCause, RollbackOrder, record_rollback_failure, roll_back_ordered, roll_back_recorded,
    rollback,
};
use crate::config::Config;
use crate::improvement::ImprovementItem;
use crate::ports::RollbackHealError;
use crate::transition::Transition;

/// The `rollback` function's requests: the state machine's (`rollback`, `undo_deploy`) and
/// the health pass's (`requested_rollback`), told apart by `action`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RollbackRequest {
    /// Restore the baseline.
    Rollback {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Undo what a failed deploy left, and audit the failure.
    UndoDeploy {
        /// The Map item.
        item: Box<ImprovementItem>,
        /// The deploy's failure as the state machine caught it (`Error`, `Cause`).
        #[serde(default)]
        failure: Option<Value>,
    },
    /// Roll back a recorded improvement as someone asked (the health pass's heal): the same
    /// requested rollback as MCP `rollback_improvement`.
    RequestedRollback(RollbackOrder),
}

/// Runs the `rollback` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_request(payload)? {
        RollbackRequest::Rollback { .. } if !config.improvement_rollback => {
            Err(StepError::RollbackDisabled(
                "ENABLE_IMPROVEMENT_ROLLBACK is off: the canary stays in place for a human to decide".into(),
            ))
        }
        RollbackRequest::Rollback { item } => {
            let done =
                roll_back_recorded(deps.rollback_ports(), &item, None, RollbackCause::Verdict)
                    .await?;
            Ok(serde_json::json!({"restored": done.restored, "outcome": done.event.action}))
        }
        RollbackRequest::UndoDeploy { item, failure } => {
            undo_deploy(deps, config, &item, failure.as_ref()).await
        }
        RollbackRequest::RequestedRollback(order) => requested(deps, order).await,
    }
}

/// The `action` of a requested rollback.
const REQUESTED_ROLLBACK: &str = "requested_rollback";

/// Parses the function's request. A requested rollback's fields are parsed on their own, so
/// that an error names the field (inside a tagged enum serde loses the path).
fn parse_request(payload: &Value) -> Result<RollbackRequest, StepError> {
    if payload.get("action").and_then(Value::as_str) == Some(REQUESTED_ROLLBACK) {
        let mut fields = payload.clone();
        if let Some(map) = fields.as_object_mut() {
            map.remove("action");
        }
        return Ok(RollbackRequest::RequestedRollback(parse_payload(&fields)?));
    }
    parse_payload(payload)
}

/// Carries out a requested rollback handed over by the health pass. Nothing left to undo is
/// an answer, not an error (a retry of the invocation would find the same); a failed
/// rollback is an error, so Lambda retries the invocation and a retry finishes it.
async fn requested(deps: StepDeps<'_>, order: RollbackOrder) -> Result<Value, StepError> {
    let order = order
        .checked()
        .map_err(|e| StepError::InvalidInput(e.to_string()))?;
    let id = order.improvement_id.to_string();
    match roll_back_ordered(deps.rollback_ports(), &order).await {
        Ok(detail) => Ok(serde_json::json!({
            "improvement_id": id, "actor": order.actor, "outcome": "rolled_back", "detail": detail,
        })),
        Err(RollbackHealError::NothingToUndo(detail)) => {
            tracing::warn!(improvement = %id, actor = %order.actor, detail = %detail, "requested rollback: nothing to undo");
            Ok(serde_json::json!({
                "improvement_id": id, "actor": order.actor, "outcome": "nothing_to_undo",
                "detail": detail,
            }))
        }
        Err(RollbackHealError::Rollback(e)) => Err(e.into()),
        Err(RollbackHealError::Store(e)) => Err(e.into()),
        // Not made here: this function carries the rollback out itself.
        Err(e @ RollbackHealError::HandOver(_)) => Err(StepError::InvalidInput(e.to_string())),
    }
}

/// Undoes what a failed deploy left (unless automatic rollback is off) and audits the
/// deploy's failure; a failed undo is audited too, and its error given back for the state
/// machine to retry or catch.
async fn undo_deploy(
    deps: StepDeps<'_>,
    config: &Config,
    item: &ImprovementItem,
    failure: Option<&Value>,
) -> Result<Value, StepError> {
    let failure = failure_text(failure);
    let left = deps.function_state_for_audit(item).await;
    let deploy_failed = |before, after, detail| Transition {
        before,
        after,
        ..Transition::by_step(AuditAction::DeployFailed, detail)
    };
    if !config.improvement_rollback {
        let detail = format!(
            "deploy failed ({failure}); ENABLE_IMPROVEMENT_ROLLBACK is off: what it left stays \
             for a human"
        );
        deps.recorder()
            .record(item, deploy_failed(left.clone(), left, detail))
            .await?;
        return Ok(serde_json::json!({"restored": false, "outcome": AuditAction::DeployFailed}));
    }
    let restored = match rollback(deps.deployer, item).await {
        Ok(restored) => restored,
        Err(e) => {
            let what = "undoing the failed deploy";
            record_rollback_failure(deps.deployer, deps.recorder(), item, None, what, &e).await;
            return Err(e.into());
        }
    };
    let (after, detail) = if restored {
        (
            deps.function_state_for_audit(item).await,
            format!("deploy failed ({failure}); what it left was undone"),
        )
    } else {
        (
            left.clone(),
            format!("deploy failed ({failure}); it left nothing to undo"),
        )
    };
    deps.recorder()
        .record(item, deploy_failed(left, after, detail))
        .await?;
    Ok(serde_json::json!({"restored": restored, "outcome": AuditAction::DeployFailed}))
}

/// The longest failure cause an audit event repeats.
const FAILURE_CHARS: usize = 2000;

/// A failure the state machine caught (`{"Error", "Cause"}`) in words: the error name and
/// the message (a Lambda function's `errorMessage` when the cause is its error report).
fn failure_text(failure: Option<&Value>) -> String {
    let Some(failure) = failure else {
        return "no failure recorded".to_owned();
    };
    let error = failure
        .get("Error")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let cause = failure.get("Cause").and_then(Value::as_str).unwrap_or("");
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| {
            v.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| cause.to_owned());
    let mut text = format!("{error}: {message}");
    if let Some((cut, _)) = text.char_indices().nth(FAILURE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_requested_rollback_is_written_as_it_is_read() {
        let order = RollbackOrder {
            improvement_id: "c1-1".parse().unwrap(),
            actor: "selfbuild:health".into(),
            reason: "errors".into(),
        };
        let payload =
            serde_json::to_value(RollbackRequest::RequestedRollback(order.clone())).unwrap();
        assert_eq!(payload["action"], REQUESTED_ROLLBACK);
        let RollbackRequest::RequestedRollback(read) = parse_request(&payload).unwrap() else {
            panic!("not read as a requested rollback: {payload}")
        };
        assert_eq!(read, order);
    }

    #[test]
    fn a_caught_failure_reads_as_its_error_and_message() {
        let lambda = json!({"Error": "Retryable", "Cause": "{\"errorType\":\"Retryable\",\"errorMessage\":\"m\"}"});
        assert_eq!(failure_text(Some(&lambda)), "Retryable: m");
        let local = json!({"Error": "DeployRejected", "Cause": "deployer rejected the request: x"});
        assert_eq!(
            failure_text(Some(&local)),
            "DeployRejected: deployer rejected the request: x"
        );
        let long = json!({"Error": "E", "Cause": "é".repeat(3000)});
        assert_eq!(failure_text(Some(&long)).chars().count(), FAILURE_CHARS + 1);
        assert_eq!(failure_text(None), "no failure recorded");
    }
}
