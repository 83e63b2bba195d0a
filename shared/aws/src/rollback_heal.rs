//! The health pass's rollback heal on AWS, handed to the rollback function: alarm-intake's
//! pass has 20 s, and a code patch's rollback (the stable package fetched, two updates of
//! `$LATEST` waited out) may take minutes, which the rollback function (300 s) has.
//!
//! One call per heal: Lambda `Invoke` of `ROLLBACK_FUNCTION_NAME` with
//! `InvocationType=Event` and the order (`{"action": "requested_rollback", "improvement_id",
//! "actor", "reason"}`, `selfbuild_core::steps::RollbackRequest`). The heal is made once
//! Lambda accepted the invocation (202); whether it held the pass judges at its next look
//! (the heal is pending until then). A failed rollback fails the invocation, which Lambda
//! retries twice; the rollback function records it `rollback_failed` either way.

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::error::display::DisplayErrorContext;
use selfbuild_core::canary::RollbackOrder;
use selfbuild_core::ports::{RollbackHeal, RollbackHealError};
use selfbuild_core::steps::RollbackRequest;
use tracing::{info, warn};

use crate::sdk_error::ErrorChain;

/// The status Lambda answers an accepted asynchronous invocation with.
const ACCEPTED: i32 = 202;

/// Rollback heals handed to the rollback function by asynchronous invocation.
#[derive(Debug, Clone)]
pub struct InvokeRollbackFunction {
    lambda: aws_sdk_lambda::Client,
    function: String,
}

impl InvokeRollbackFunction {
    /// Hands heals to `function` (the rollback function's name or ARN) through `lambda`.
    pub fn new(lambda: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        Self {
            lambda,
            function: function.into(),
        }
    }
}

#[async_trait]
impl RollbackHeal for InvokeRollbackFunction {
    async fn roll_back(&self, order: &RollbackOrder) -> Result<String, RollbackHealError> {
        let request = RollbackRequest::RequestedRollback(order.clone());
        let payload = serde_json::to_vec(&request)
            .map_err(|e| RollbackHealError::HandOver(format!("the order as JSON: {e}")))?;
        let out = self
            .lambda
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                warn!(function = %self.function, error = %DisplayErrorContext(&e), "rollback heal not handed over");
                RollbackHealError::HandOver(format!("Invoke on {}: {}", self.function, ErrorChain(&e)))
            })?;
        if out.status_code() != ACCEPTED {
            return Err(RollbackHealError::HandOver(format!(
                "Invoke on {} answered {}, not {ACCEPTED} Accepted",
                self.function,
                out.status_code()
            )));
        }
        info!(function = %self.function, improvement = %order.improvement_id, "rollback heal handed over");
        Ok(format!(
            "rollback of {} handed to {} (asynchronous Invoke accepted)",
            order.improvement_id, self.function
        ))
    }
}
