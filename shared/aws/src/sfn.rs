//! The Orchestrator port over Step Functions: one execution per cycle, named by the cycle id;
//! and the ExecutionMonitor port (the health pass): list, redrive and stop those executions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::redrive_execution::RedriveExecutionError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::stop_execution::StopExecutionError;
use aws_sdk_sfn::types::ExecutionStatus as SfnStatus;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::cycle::CycleRequest;
use selfbuild_core::error::OrchestratorError;
use selfbuild_core::health::{ExecutionFact, ExecutionStatus, FLEET};
use selfbuild_core::ports::{CycleHandle, ExecutionMonitor, Orchestrator};
use selfbuild_core::text::Excerpt;
use time::OffsetDateTime;
use tracing::{debug, info, warn};

use crate::sdk_error::{ErrorChain, is_transient};

/// Starts improvement cycles as executions of one state machine.
#[derive(Debug, Clone)]
pub struct StepFunctionsOrchestrator {
    client: Client,
    state_machine_arn: String,
    /// Ended executions that started this long before `since` are not looked for.
    history_horizon: Duration,
    /// Execution ARN → component, read once per execution per container (inputs never
    /// change).
    components: Arc<Mutex<HashMap<String, String>>>,
}

/// How far before `since` the monitor looks for the start of an execution that ended after
/// it, unless set: 2 days, more than the longest a cycle may take with the defaults (27 h).
pub const DEFAULT_HISTORY_HORIZON: Duration = Duration::from_secs(2 * 24 * 3600);

/// The most components remembered per container; past it the memory starts afresh.
const COMPONENT_CACHE_MAX: usize = 10_000;

/// The page size of `ListExecutions` (its maximum is 1000; 100 keeps one page small).
const LIST_PAGE_SIZE: i32 = 100;

/// The statuses the monitor lists, one `ListExecutions` listing each.
const LISTED: [SfnStatus; 5] = [
    SfnStatus::Running,
    SfnStatus::Failed,
    SfnStatus::TimedOut,
    SfnStatus::Aborted,
    SfnStatus::Succeeded,
];

/// The error a stuck execution is stopped with; an execution that ended ABORTED with it was
/// stopped by the health pass (its cycle restarted under a new name) and is not reported, so
/// that no later pass redrives it.
pub const STOPPED_AS_STUCK: &str = "selfbuild.Stuck";

/// Step Functions' limit on a `StopExecution` cause, in characters.
const MAX_CAUSE_CHARS: usize = 32_768;

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
            history_horizon: DEFAULT_HISTORY_HORIZON,
            components: Arc::default(),
        }
    }

    /// The same orchestrator looking `horizon` before `since` for executions that ended
    /// after it (set it to the longest a cycle may take, or more).
    #[must_use]
    pub fn with_history_horizon(mut self, horizon: Duration) -> Self {
        self.history_horizon = horizon;
        self
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

/// The cycle's executions for the health pass. Per call: one `ListExecutions` listing per
/// status (RUNNING, FAILED, TIMED_OUT, ABORTED, SUCCEEDED; pages of 100, newest first; the
/// ended ones stop at a page starting before `since` minus the history horizon), one
/// `DescribeExecution` per execution this container has not seen before (the component is in
/// its input, which never changes), and one per ABORTED execution ended since `since` (one
/// the health pass stopped as stuck, [`STOPPED_AS_STUCK`], is left out). `redrive` is `RedriveExecution`, `stop` is
/// `StopExecution` with the cause.
#[async_trait]
impl ExecutionMonitor for StepFunctionsOrchestrator {
    async fn executions(
        &self,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExecutionFact>, OrchestratorError> {
        let oldest_start = since - self.history_horizon;
        let mut facts = Vec::new();
        for status in LISTED {
            if facts.len() >= limit {
                break;
            }
            let mut pages = self
                .client
                .list_executions()
                .state_machine_arn(&self.state_machine_arn)
                .status_filter(status.clone())
                .max_results(LIST_PAGE_SIZE)
                .into_paginator()
                .send();
            'pages: while let Some(page) = pages
                .try_next()
                .await
                .map_err(|e| sfn_error("ListExecutions", &self.state_machine_arn, &e, false))?
            {
                let mut older = false;
                for item in page.executions() {
                    if facts.len() >= limit {
                        break 'pages;
                    }
                    let started = offset_time(item.start_date())?;
                    let stopped = item.stop_date().map(offset_time).transpose()?;
                    if status != SfnStatus::Running {
                        older |= started < oldest_start;
                        if stopped.is_none_or(|t| t < since) {
                            continue;
                        }
                    }
                    let Some(status) = fact_status(item.status()) else {
                        continue;
                    };
                    if status == ExecutionStatus::Aborted
                        && self.stopped_as_stuck(item.execution_arn()).await?
                    {
                        continue;
                    }
                    let Some(component) = self.component_of(item.execution_arn()).await? else {
                        continue;
                    };
                    let redriven = item.redrive_date().map(offset_time).transpose()?;
                    facts.push(ExecutionFact {
                        execution_ref: item.execution_arn().to_owned(),
                        cycle_id: item.name().to_owned(),
                        component,
                        status,
                        started_at: redriven.map_or(started, |r| r.max(started)),
                        stopped_at: stopped,
                    });
                }
                if older {
                    break;
                }
            }
        }
        debug!(
            state_machine = %self.state_machine_arn,
            executions = facts.len(),
            "executions listed"
        );
        Ok(facts)
    }

    async fn redrive(&self, execution_ref: &str) -> Result<(), OrchestratorError> {
        self.client
            .redrive_execution()
            .execution_arn(execution_ref)
            .send()
            .await
            .map_err(|e| {
                let quota = matches!(
                    e.as_service_error(),
                    Some(RedriveExecutionError::ExecutionLimitExceeded(_))
                );
                sfn_error("RedriveExecution", execution_ref, &e, quota)
            })?;
        info!(execution = execution_ref, "execution redriven");
        Ok(())
    }

    async fn stop(&self, execution_ref: &str, cause: &str) -> Result<(), OrchestratorError> {
        let cause: String = cause.chars().take(MAX_CAUSE_CHARS).collect();
        self.client
            .stop_execution()
            .execution_arn(execution_ref)
            .error(STOPPED_AS_STUCK)
            .cause(cause)
            .send()
            .await
            .map_err(|e| {
                let quota = matches!(
                    e.as_service_error(),
                    Some(StopExecutionError::KmsThrottlingException(_))
                );
                sfn_error("StopExecution", execution_ref, &e, quota)
            })?;
        info!(execution = execution_ref, "execution stopped");
        Ok(())
    }
}

impl StepFunctionsOrchestrator {
    /// The component of an execution: the first component of its input's cycle request,
    /// [`FLEET`] for a fleet-wide cycle or an input that is no cycle request; none when the
    /// execution is gone.
    async fn component_of(&self, execution_arn: &str) -> Result<Option<String>, OrchestratorError> {
        if let Some(known) = self.cached(execution_arn) {
            return Ok(Some(known));
        }
        let described = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await;
        let input = match described {
            Ok(out) => out.input().unwrap_or_default().to_owned(),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeExecutionError::ExecutionDoesNotExist(_))
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(describe_error(&self.state_machine_arn, &e)),
        };
        let component = component_of_input(&input).unwrap_or_else(|problem| {
            warn!(execution = execution_arn, problem = %Excerpt(&problem), "execution input is no cycle request; counted as fleet-wide");
            FLEET.to_owned()
        });
        let mut cache = self
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= COMPONENT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(execution_arn.to_owned(), component.clone());
        Ok(Some(component))
    }

    /// Whether an aborted execution was stopped by the health pass (one `DescribeExecution`
    /// per aborted execution that ended since the last pass).
    async fn stopped_as_stuck(&self, execution_arn: &str) -> Result<bool, OrchestratorError> {
        let described = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await;
        match described {
            Ok(out) => Ok(out.error() == Some(STOPPED_AS_STUCK)),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeExecutionError::ExecutionDoesNotExist(_))
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(describe_error(&self.state_machine_arn, &e)),
        }
    }

    fn cached(&self, execution_arn: &str) -> Option<String> {
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(execution_arn)
            .cloned()
    }
}

/// The component a cycle request's input works on: its first component, or [`FLEET`].
fn component_of_input(input: &str) -> Result<String, String> {
    let request: CycleRequest = serde_json::from_str(input).map_err(|e| e.to_string())?;
    Ok(request
        .components
        .first()
        .map_or(FLEET, |c| c.as_str())
        .to_owned())
}

/// The health pass's name for a Step Functions status; none for one it does not know
/// (`PENDING_REDRIVE` is reported as running: the redrive has been accepted).
fn fact_status(status: &SfnStatus) -> Option<ExecutionStatus> {
    Some(match status {
        SfnStatus::Running | SfnStatus::PendingRedrive => ExecutionStatus::Running,
        SfnStatus::Succeeded => ExecutionStatus::Succeeded,
        SfnStatus::Failed => ExecutionStatus::Failed,
        SfnStatus::TimedOut => ExecutionStatus::TimedOut,
        SfnStatus::Aborted => ExecutionStatus::Aborted,
        _ => return None,
    })
}

fn offset_time(t: &DateTime) -> Result<OffsetDateTime, OrchestratorError> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).map_err(|e| {
        OrchestratorError::Rejected(format!("Step Functions date {t} is out of range: {e}"))
    })
}

/// `Unavailable` for throttling, quotas and transient failures; `Rejected` for the rest (a
/// missing execution or state machine, one that cannot be redriven, a bad ARN, IAM denial).
/// `quota` says the service answered with a modeled quota or throttling error.
fn sfn_error<E>(
    operation: &str,
    target: &str,
    err: &SdkError<E, HttpResponse>,
    quota: bool,
) -> OrchestratorError
where
    E: ProvideErrorKind + std::error::Error + Send + Sync + 'static,
{
    let message = format!("{operation} on {target}: {}", ErrorChain(err));
    if quota || is_transient(err) {
        debug!(operation, target, error = %DisplayErrorContext(err), "Step Functions call failed");
        OrchestratorError::Unavailable(message)
    } else {
        warn!(operation, target, error = %DisplayErrorContext(err), "Step Functions refused the call");
        OrchestratorError::Rejected(message)
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
    fn the_component_is_the_first_of_the_request_or_the_fleet() {
        let mut request: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/steps/analyze.json")).unwrap();
        request["components"] = serde_json::json!(["orders", "billing"]);
        assert_eq!(component_of_input(&request.to_string()).unwrap(), "orders");
        request["components"] = serde_json::json!([]);
        assert_eq!(component_of_input(&request.to_string()).unwrap(), FLEET);
        assert!(component_of_input("{\"not\": \"a request\"}").is_err());
        assert!(component_of_input("").is_err());
    }

    #[test]
    fn pending_redrive_counts_as_running_and_unknown_statuses_are_left_out() {
        assert_eq!(
            fact_status(&SfnStatus::PendingRedrive),
            Some(ExecutionStatus::Running)
        );
        assert_eq!(
            fact_status(&SfnStatus::TimedOut),
            Some(ExecutionStatus::TimedOut)
        );
        assert_eq!(fact_status(&SfnStatus::from("SOMETHING_NEW")), None);
    }

    #[test]
    fn a_redrive_over_the_quota_is_unavailable_one_not_redrivable_is_rejected() {
        use aws_sdk_sfn::types::error::{ExecutionLimitExceeded, ExecutionNotRedrivable};
        let limit = RedriveExecutionError::ExecutionLimitExceeded(
            ExecutionLimitExceeded::builder().build(),
        );
        assert!(matches!(
            sfn_error("RedriveExecution", "arn", &service_error(limit, 400), true),
            OrchestratorError::Unavailable(_)
        ));
        let not = RedriveExecutionError::ExecutionNotRedrivable(
            ExecutionNotRedrivable::builder().message("too old").build(),
        );
        let err = sfn_error("RedriveExecution", "arn", &service_error(not, 400), false);
        assert!(
            matches!(&err, OrchestratorError::Rejected(m) if m.starts_with("RedriveExecution on arn")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ended_executions_since_are_listed_and_one_stopped_as_stuck_is_not() {
        use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
        use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
        use aws_sdk_sfn::types::ExecutionListItem;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        use time::macros::datetime;

        let since = datetime!(2026-12-05 12:00 UTC);
        let at = |t: OffsetDateTime| DateTime::from_secs(t.unix_timestamp());
        let item = move |name: &str, status: SfnStatus, stopped: OffsetDateTime| {
            ExecutionListItem::builder()
                .execution_arn(format!("{MACHINE}:{name}").replace("stateMachine", "execution"))
                .state_machine_arn(MACHINE)
                .name(name)
                .status(status)
                .start_date(at(stopped - Duration::from_secs(600)))
                .stop_date(at(stopped))
                .build()
                .unwrap()
        };
        let later = since + Duration::from_secs(60);
        let aborted = mock!(Client::list_executions)
            .match_requests(|r| r.status_filter() == Some(&SfnStatus::Aborted))
            .then_output(move || {
                ListExecutionsOutput::builder()
                    .set_executions(Some(vec![
                        item("stopped-by-us", SfnStatus::Aborted, later),
                        item("stopped-by-a-person", SfnStatus::Aborted, later),
                        item(
                            "ended-before",
                            SfnStatus::Aborted,
                            since - Duration::from_secs(1),
                        ),
                    ]))
                    .build()
                    .unwrap()
            });
        let others = mock!(Client::list_executions).then_output(|| {
            ListExecutionsOutput::builder()
                .set_executions(Some(Vec::new()))
                .build()
                .unwrap()
        });
        let request = include_str!("../../../events/steps/analyze.json");
        let describe = mock!(Client::describe_execution).then_output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn("x")
                .state_machine_arn(MACHINE)
                .status(SfnStatus::Aborted)
                .start_date(DateTime::from_secs(0))
                .input(request)
                .build()
                .unwrap()
        });
        let by_us = mock!(Client::describe_execution)
            .match_requests(|r| {
                r.execution_arn()
                    .is_some_and(|a| a.ends_with(":stopped-by-us"))
            })
            .then_output(|| {
                DescribeExecutionOutput::builder()
                    .execution_arn("x")
                    .state_machine_arn(MACHINE)
                    .status(SfnStatus::Aborted)
                    .start_date(DateTime::from_secs(0))
                    .error(STOPPED_AS_STUCK)
                    .build()
                    .unwrap()
            });
        let client = mock_client!(
            aws_sdk_sfn,
            RuleMode::MatchAny,
            [&by_us, &describe, &aborted, &others]
        );
        let monitor = StepFunctionsOrchestrator::from_client(client, MACHINE);
        let facts = monitor.executions(since, 100).await.unwrap();
        // Only the one a person stopped, ended after `since`, counts.
        let names: Vec<&str> = facts.iter().map(|f| f.cycle_id.as_str()).collect();
        assert_eq!(names, vec!["stopped-by-a-person"], "{facts:#?}");
        assert_eq!(facts[0].component, "orders-api");
        assert_eq!(facts[0].status, ExecutionStatus::Aborted);
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
