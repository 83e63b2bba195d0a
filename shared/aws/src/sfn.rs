//! The Orchestrator port over Step Functions: one execution per cycle, named by the cycle id.

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use selfbuild_core::cycle::CycleRequest;
use selfbuild_core::error::OrchestratorError;
use selfbuild_core::ports::{CycleHandle, Orchestrator};
use tracing::{debug, info, warn};

use crate::sdk_error::{ErrorChain, is_transient};

/// Starts improvement cycles as executions of one state machine.
#[derive(Debug, Clone)]
pub struct StepFunctionsOrchestrator {
    client: Client,
    state_machine_arn: String,
}

impl StepFunctionsOrchestrator {
    /// An orchestrator for the state machine `state_machine_arn`, with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig, state_machine_arn: impl Into<String>) -> Self {
        Self::from_client(Client::new(config), state_machine_arn)
    }

    /// An orchestrator for the state machine `state_machine_arn` using an existing client.
    pub fn from_client(client: Client, state_machine_arn: impl Into<String>) -> Self {
        Self {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }

    /// The state machine's ARN.
    pub fn state_machine_arn(&self) -> &str {
        &self.state_machine_arn
    }
}

/// Resumes an execution waiting on a task token (approvals) with SendTaskSuccess.
#[async_trait]
impl selfbuild_core::ports::TaskTokens for StepFunctionsOrchestrator {
    async fn send_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), OrchestratorError> {
        let sent = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Err(OrchestratorError::Unavailable(format!(
                "SendTaskSuccess: {}",
                ErrorChain(&e)
            ))),
            Err(e) => {
                // TaskDoesNotExist / TaskTimedOut / InvalidToken: the wait is over.
                warn!(error = %DisplayErrorContext(&e), "SendTaskSuccess refused");
                Err(OrchestratorError::Rejected(format!(
                    "SendTaskSuccess: {}",
                    ErrorChain(&e)
                )))
            }
        }
    }
}

/// Starts the execution named by the cycle id. Step Functions answers a repeated
/// `StartExecution` of a running execution with the same input as if it had started it, so
/// `DescribeExecution` asks first whether it exists: `already_started` is then exact, except
/// when two starts of one cycle race (both may say false; intake's dedup claim lets one
/// start it). An execution with the name and other input, or one that has ended, is
/// `ExecutionAlreadyExists`: already started too.
#[async_trait]
impl Orchestrator for StepFunctionsOrchestrator {
    async fn start_cycle(&self, request: &CycleRequest) -> Result<CycleHandle, OrchestratorError> {
        let name = request.cycle_id.as_str();
        let input = serde_json::to_string(request).map_err(|e| {
            OrchestratorError::Rejected(format!("cycle {name} input cannot be serialized: {e}"))
        })?;
        let execution_ref = execution_arn(&self.state_machine_arn, name).ok_or_else(|| {
            OrchestratorError::Rejected(format!(
                "state machine ARN {} has no :stateMachine: part",
                self.state_machine_arn
            ))
        })?;
        let existing = self
            .client
            .describe_execution()
            .execution_arn(&execution_ref)
            .send()
            .await;
        match existing {
            Ok(_) => {
                debug!(cycle_id = name, execution = %execution_ref, "execution already exists");
                return Ok(CycleHandle {
                    execution_ref,
                    already_started: true,
                });
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeExecutionError::ExecutionDoesNotExist(_))
                ) => {}
            Err(e) => return Err(describe_error(&self.state_machine_arn, &e)),
        }
        let started = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await;
        match started {
            Ok(out) => {
                info!(
                    cycle_id = name,
                    execution = out.execution_arn(),
                    "execution started"
                );
                Ok(CycleHandle {
                    execution_ref: out.execution_arn().to_owned(),
                    already_started: false,
                })
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(StartExecutionError::ExecutionAlreadyExists(_))
                ) =>
            {
                debug!(cycle_id = name, execution = %execution_ref, "execution already exists");
                Ok(CycleHandle {
                    execution_ref,
                    already_started: true,
                })
            }
            Err(e) => Err(start_error(&self.state_machine_arn, &e)),
        }
    }
}

/// `Unavailable` for throttling and transient failures; `Rejected` for the rest (bad ARN,
/// KMS or IAM denial).
fn describe_error(
    state_machine_arn: &str,
    err: &SdkError<DescribeExecutionError, HttpResponse>,
) -> OrchestratorError {
    let message = format!(
        "DescribeExecution on {state_machine_arn}: {}",
        ErrorChain(err)
    );
    let retry_later = is_transient(err)
        || matches!(
            err.as_service_error(),
            Some(DescribeExecutionError::KmsThrottlingException(_))
        );
    if retry_later {
        debug!(state_machine = state_machine_arn, error = %DisplayErrorContext(err), "DescribeExecution failed");
        OrchestratorError::Unavailable(message)
    } else {
        warn!(
            state_machine = state_machine_arn,
            error = %DisplayErrorContext(err),
            "Step Functions refused DescribeExecution"
        );
        OrchestratorError::Rejected(message)
    }
}

/// `Unavailable` for throttling, quotas and transient failures; `Rejected` for the rest
/// (missing or deleting state machine, bad ARN, name or input, KMS or IAM denial).
fn start_error(
    state_machine_arn: &str,
    err: &SdkError<StartExecutionError, HttpResponse>,
) -> OrchestratorError {
    let message = format!("StartExecution on {state_machine_arn}: {}", ErrorChain(err));
    let retry_later = is_transient(err)
        || matches!(
            err.as_service_error(),
            Some(
                StartExecutionError::ExecutionLimitExceeded(_)
                    | StartExecutionError::KmsThrottlingException(_)
            )
        );
    if retry_later {
        debug!(state_machine = state_machine_arn, error = %DisplayErrorContext(err), "StartExecution failed");
        OrchestratorError::Unavailable(message)
    } else {
        warn!(
            state_machine = state_machine_arn,
            error = %DisplayErrorContext(err),
            "Step Functions rejected the start"
        );
        OrchestratorError::Rejected(message)
    }
}

/// The ARN of execution `name` of a state machine:
/// `arn:aws:states:region:acct:stateMachine:NAME[:version-or-alias]` →
/// `arn:aws:states:region:acct:execution:NAME:name`.
fn execution_arn(state_machine_arn: &str, name: &str) -> Option<String> {
    let (prefix, rest) = state_machine_arn.split_once(":stateMachine:")?;
    let machine = rest.split(':').next().filter(|m| !m.is_empty())?;
    Some(format!("{prefix}:execution:{machine}:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_error::test_support::service_error;
    use aws_sdk_sfn::types::error::{InvalidArn, StateMachineDoesNotExist};
    use aws_smithy_types::error::ErrorMetadata;

    const MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:improvement-cycle";

    #[test]
    fn execution_arns_follow_the_state_machine_arn() {
        assert_eq!(
            execution_arn(MACHINE, "c-1").as_deref(),
            Some("arn:aws:states:eu-west-1:123456789012:execution:improvement-cycle:c-1")
        );
        assert_eq!(
            execution_arn(&format!("{MACHINE}:live"), "c-1").as_deref(),
            Some("arn:aws:states:eu-west-1:123456789012:execution:improvement-cycle:c-1")
        );
        assert_eq!(
            execution_arn("arn:aws-cn:states:cn-north-1:1:stateMachine:m", "c").as_deref(),
            Some("arn:aws-cn:states:cn-north-1:1:execution:m:c")
        );
        assert_eq!(execution_arn("arn:aws:lambda:x:1:function:f", "c"), None);
    }

    #[test]
    fn throttling_is_unavailable_and_a_missing_machine_is_rejected() {
        let throttled = StartExecutionError::generic(
            ErrorMetadata::builder().code("ThrottlingException").build(),
        );
        assert!(matches!(
            start_error(MACHINE, &service_error(throttled, 400)),
            OrchestratorError::Unavailable(_)
        ));
        let missing = StartExecutionError::StateMachineDoesNotExist(
            StateMachineDoesNotExist::builder().message("gone").build(),
        );
        assert!(matches!(
            start_error(MACHINE, &service_error(missing, 400)),
            OrchestratorError::Rejected(_)
        ));
        let bad_arn = StartExecutionError::InvalidArn(InvalidArn::builder().build());
        assert!(matches!(
            start_error(MACHINE, &service_error(bad_arn, 400)),
            OrchestratorError::Rejected(_)
        ));
        let denied = StartExecutionError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .build(),
        );
        assert!(matches!(
            start_error(MACHINE, &service_error(denied, 400)),
            OrchestratorError::Rejected(_)
        ));
    }
}
