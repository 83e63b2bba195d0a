//! The executor: runs a loaded [`StateMachine`] against a [`TaskHandler`], reporting
//! progress to an [`Observer`].
//!
//! Data flow per state follows Step Functions: InputPath → Parameters → (task / items) →
//! ResultSelector → ResultPath (merged into the state's raw input) → OutputPath. A Catch
//! applies its ResultPath to the raw input, and no OutputPath. Waits, retry intervals and
//! timeouts run on the execution's [`VirtualClock`], which is tokio's clock: event-driven
//! on a runtime with paused time, real time elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use selfbuild_core::text::Escaped;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tracing::debug;

use super::clock::{VirtualClock, duration, format_timestamp, parse_timestamp};
use super::definition::{
    Concurrency, Graph, Kind, MapSpec, Retrier, State, StateMachine, TaskSpec, Text, Transition,
    WaitFor, error_matches,
};
use super::path::{ContextObject, Path, kind_of, merge_result};
use super::template::{Scope, Template, UuidSource, fnv1a};
use super::tokens::TaskTokens;
use super::{ExecutionFailure, errors};

/// The state machine ARN used for `$$.StateMachine.Id` unless the options name another.
pub const DEFAULT_STATE_MACHINE_ARN: &str =
    "arn:aws:states:local:000000000000:stateMachine:selfbuild";

/// One invocation of a Task state's resource.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCall {
    /// The `Resource`, without a `.waitForTaskToken` suffix.
    pub resource: String,
    /// Whether the resource had `.waitForTaskToken`: the handler's answer is ignored and
    /// the task waits for its token instead.
    pub wait_for_task_token: bool,
    /// The effective input: the state input after InputPath and Parameters.
    pub input: Value,
    /// The Task state's name.
    pub state_name: String,
    /// The task token, when waiting for one.
    pub task_token: Option<String>,
    /// The execution's name.
    pub execution_name: String,
    /// How many retries came before this invocation (`$$.State.RetryCount`).
    pub retry_count: u64,
}

/// A failed task: `error` is the name Retry and Catch match on (the Lambda `errorType`,
/// e.g. `Retryable` or `Lambda.ServiceException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct TaskError {
    /// The error name.
    pub error: String,
    /// The cause.
    pub cause: String,
}

impl TaskError {
    /// A task error named `error` with `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

impl From<TaskError> for ExecutionFailure {
    fn from(e: TaskError) -> Self {
        Self::new(e.error, e.cause)
    }
}

/// Runs the work behind Task states.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Invokes `task.resource` with `task.input`; the value returned is the task's result
    /// (for `lambda:invoke` resources, whatever shape the handler chooses).
    async fn invoke(&self, task: TaskCall) -> Result<Value, TaskError>;
}

/// One level of Map iteration around a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iteration {
    /// The Map state.
    pub map_state: String,
    /// The item's index.
    pub index: usize,
}

/// Which state an observer event is about.
#[derive(Debug, Clone, Copy)]
pub struct StateRef<'a> {
    /// The state's name.
    pub name: &'a str,
    /// The Map iterations it runs in, outermost first; empty at top level.
    pub iterations: &'a [Iteration],
}

/// Hears about an execution's progress; every method does nothing by default.
pub trait Observer: Send + Sync {
    /// A state was entered with `input`.
    fn on_state_entered(&self, _state: StateRef<'_>, _input: &Value) {}
    /// A state finished (normally, or through a Catch) with `output`.
    fn on_state_exited(&self, _state: StateRef<'_>, _output: &Value) {}
    /// A state failed with `failure` (before any Catch applies).
    fn on_state_failed(&self, _state: StateRef<'_>, _failure: &ExecutionFailure) {}
    /// A Task or Map state will be retried: `attempt` is the retrier's count (1 = first
    /// retry) and `delay` the wait before it.
    fn on_task_retry(
        &self,
        _state: StateRef<'_>,
        _failure: &ExecutionFailure,
        _attempt: u64,
        _delay: Duration,
    ) {
    }
    /// The execution ended.
    fn on_execution_finished(&self, _result: &Result<Value, ExecutionFailure>) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// How an execution runs.
#[derive(Debug, Clone)]
pub struct ExecutionOptions {
    /// The most states entered (Map iterations included) before the execution fails with
    /// `States.Runtime`; default 25,000 (the Step Functions history limit).
    pub max_transitions: u64,
    /// The execution's clock: `$$.Execution.StartTime` is its reading when the execution
    /// starts, and Waits, retry intervals and timeouts run on it. The caller's clock, never
    /// the wall clock, so an execution replays the same on any day; task handlers that
    /// share it stamp the same times the execution sees.
    pub clock: VirtualClock,
    /// `$$.StateMachine.Id`; the execution ARN is derived from it.
    pub state_machine_arn: String,
    /// The largest state input/output or task result, serialized, in bytes; default
    /// 262,144 (256 KiB, as Step Functions); 0 means no limit.
    pub max_payload_bytes: usize,
}

impl ExecutionOptions {
    /// The Step Functions limits, on `clock`.
    pub fn on(clock: VirtualClock) -> Self {
        Self {
            max_transitions: 25_000,
            clock,
            state_machine_arn: DEFAULT_STATE_MACHINE_ARN.to_owned(),
            max_payload_bytes: 262_144,
        }
    }

    /// The Step Functions limits, on a clock reading `start_time` now.
    pub fn starting_at(start_time: OffsetDateTime) -> Self {
        Self::on(VirtualClock::new(start_time))
    }
}

/// Runs `machine` as the execution `name` with `input` until it succeeds or fails.
pub async fn run_execution(
    machine: &StateMachine,
    name: &str,
    input: Value,
    handler: &dyn TaskHandler,
    tokens: &TaskTokens,
    observer: &dyn Observer,
    options: &ExecutionOptions,
) -> Result<Value, ExecutionFailure> {
    let result = execute(machine, name, input, handler, tokens, observer, options).await;
    match &result {
        Ok(_) => debug!(execution = %name, "execution succeeded"),
        Err(failure) => {
            debug!(execution = %name, error = %Escaped(&failure.error), cause = %Escaped(&failure.cause), "execution failed")
        }
    }
    observer.on_execution_finished(&result);
    result
}

async fn execute(
    machine: &StateMachine,
    name: &str,
    input: Value,
    handler: &dyn TaskHandler,
    tokens: &TaskTokens,
    observer: &dyn Observer,
    options: &ExecutionOptions,
) -> Result<Value, ExecutionFailure> {
    let start = options.clock.now();
    let arn = &options.state_machine_arn;
    let exec = Exec {
        handler,
        tokens,
        observer,
        options,
        name,
        execution_id: format!(
            "{}:{name}",
            arn.replacen(":stateMachine:", ":execution:", 1)
        ),
        state_machine_name: arn.rsplit(':').next().unwrap_or_default().to_owned(),
        start_time: format_timestamp(start),
        clock: options.clock.clone(),
        transitions: AtomicU64::new(0),
        uuids: UuidSource::new(name),
        input,
    };
    exec.check_size(&exec.input, || "the execution input".to_owned())?;
    let run = exec.run_graph(&machine.graph, exec.input.clone(), &[]);
    match machine.timeout_seconds {
        Some(seconds) => tokio::time::timeout(duration(seconds as f64), run)
            .await
            .unwrap_or_else(|_| {
                Err(ExecutionFailure::new(
                    errors::TIMEOUT,
                    format!("the execution did not finish within its TimeoutSeconds ({seconds} s)"),
                ))
            }),
        None => run.await,
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One running execution.
struct Exec<'a> {
    handler: &'a dyn TaskHandler,
    tokens: &'a TaskTokens,
    observer: &'a dyn Observer,
    options: &'a ExecutionOptions,
    name: &'a str,
    input: Value,
    execution_id: String,
    state_machine_name: String,
    start_time: String,
    clock: VirtualClock,
    transitions: AtomicU64,
    uuids: UuidSource,
}

/// A state being run: the facts its context object needs.
struct Entry<'s> {
    state: &'s State,
    entered_time: String,
    iterations: &'s [Iteration],
}

/// What a state did: its output, and the next state (`None` ends the graph).
struct Step<'g> {
    output: Value,
    next: Option<&'g str>,
}

impl Exec<'_> {
    /// Runs a graph (the machine, or one Map iteration) from its start to its end.
    fn run_graph<'s>(
        &'s self,
        graph: &'s Graph,
        input: Value,
        iterations: &'s [Iteration],
    ) -> BoxFuture<'s, Result<Value, ExecutionFailure>> {
        Box::pin(async move {
            let mut current = graph.start_at.as_str();
            let mut input = input;
            loop {
                let entered = self.transitions.fetch_add(1, Ordering::Relaxed) + 1;
                if entered > self.options.max_transitions {
                    return Err(ExecutionFailure::runtime(format!(
                        "the execution exceeded {} state transitions (entering state \"{current}\")",
                        self.options.max_transitions
                    )));
                }
                let Some(state) = graph.states.get(current) else {
                    return Err(ExecutionFailure::runtime(format!(
                        "there is no state \"{current}\""
                    )));
                };
                let at = StateRef {
                    name: &state.name,
                    iterations,
                };
                debug!(execution = %self.name, state = %state.name, "state entered");
                self.observer.on_state_entered(at, &input);
                let entry = Entry {
                    state,
                    entered_time: format_timestamp(self.clock.now()),
                    iterations,
                };
                let step = match self.run_state(&entry, &input).await {
                    Ok(step) => step,
                    Err(failure) => {
                        debug!(execution = %self.name, state = %state.name, error = %Escaped(&failure.error), "state failed");
                        self.observer.on_state_failed(at, &failure);
                        catch(state, input, failure)?
                    }
                };
                self.check_size(&step.output, || {
                    format!("the output of state \"{}\"", state.name)
                })?;
                self.observer.on_state_exited(at, &step.output);
                match step.next {
                    Some(next) => {
                        current = next;
                        input = step.output;
                    }
                    None => return Ok(step.output),
                }
            }
        })
    }

    /// Runs one state on its raw input.
    async fn run_state<'g>(
        &self,
        entry: &Entry<'g>,
        raw: &Value,
    ) -> Result<Step<'g>, ExecutionFailure> {
        let state = entry.state;
        let context = self.context(entry, 0, None, None);
        let effective = select(state, state.input_path.as_ref(), raw, &context, "InputPath")?;
        let (result, next) = match &state.kind {
            Kind::Pass { result } => {
                let effective = match &state.parameters {
                    Some(template) => {
                        self.eval(template, &effective, &context, state, "Parameters")?
                    }
                    None => effective,
                };
                let result = result.clone().unwrap_or(effective);
                (merge(state, raw, result)?, next_of(state))
            }
            Kind::Task(_) | Kind::Map(_) => {
                let result = self.retrying(entry, &effective).await?;
                let result = match &state.result_selector {
                    Some(template) => {
                        self.eval(template, &result, &context, state, "ResultSelector")?
                    }
                    None => result,
                };
                (merge(state, raw, result)?, next_of(state))
            }
            Kind::Choice { choices, default } => {
                let mut chosen = None;
                for rule in choices {
                    let holds = rule
                        .condition
                        .holds(&effective, &context)
                        .map_err(|mut f| {
                            f.cause = format!("state \"{}\": {}", state.name, f.cause);
                            f
                        })?;
                    if holds {
                        chosen = Some(rule.next.as_str());
                        break;
                    }
                }
                let next = chosen.or(default.as_deref()).ok_or_else(|| {
                    ExecutionFailure::new(
                        errors::NO_CHOICE_MATCHED,
                        format!(
                            "state \"{}\": no choice rule matched and there is no Default",
                            state.name
                        ),
                    )
                })?;
                (effective, Some(next))
            }
            Kind::Wait(wait) => {
                let seconds = self.wait_seconds(state, wait, &effective, &context)?;
                self.clock.sleep(seconds).await;
                (effective, next_of(state))
            }
            Kind::Succeed => (effective, None),
            Kind::Fail { error, cause } => {
                let error = self.text(error.as_ref(), raw, &context, state, "ErrorPath")?;
                let cause = self.text(cause.as_ref(), raw, &context, state, "CausePath")?;
                return Err(ExecutionFailure::new(error, cause));
            }
        };
        let output = select(
            state,
            state.output_path.as_ref(),
            &result,
            &context,
            "OutputPath",
        )?;
        Ok(Step { output, next })
    }

    /// Runs a Task or Map state's work, retrying as its Retry says.
    async fn retrying(
        &self,
        entry: &Entry<'_>,
        effective: &Value,
    ) -> Result<Value, ExecutionFailure> {
        let state = entry.state;
        let mut counts = vec![0_u64; state.retry.len()];
        let mut retries = 0_u64;
        loop {
            let attempt = match &state.kind {
                Kind::Task(task) => self.task_attempt(entry, task, effective, retries).await,
                Kind::Map(map) => self.map_attempt(entry, map, effective, retries).await,
                _ => Err(ExecutionFailure::runtime(format!(
                    "state \"{}\" has no work to retry",
                    state.name
                ))),
            };
            let failure = match attempt {
                Ok(result) => return Ok(result),
                Err(failure) if failure.is_terminal() => return Err(failure),
                Err(failure) => failure,
            };
            let Some((i, retrier)) = state
                .retry
                .iter()
                .enumerate()
                .find(|(_, r)| error_matches(&r.error_equals, &failure.error))
            else {
                return Err(failure);
            };
            let Some(count) = counts.get_mut(i) else {
                return Err(failure);
            };
            if *count >= retrier.max_attempts {
                return Err(failure);
            }
            let jitter = || jitter_fraction(self.name, &state.name, entry.iterations, retries);
            let delay = retry_delay(retrier, *count, jitter);
            *count += 1;
            retries += 1;
            debug!(execution = %self.name, state = %state.name, error = %Escaped(&failure.error), attempt = *count, delay, "retrying");
            self.observer.on_task_retry(
                StateRef {
                    name: &state.name,
                    iterations: entry.iterations,
                },
                &failure,
                *count,
                Duration::try_from_secs_f64(delay).unwrap_or(Duration::MAX),
            );
            self.clock.sleep(delay).await;
        }
    }

    /// One attempt of a Task state: Parameters, the handler, and the token wait.
    async fn task_attempt(
        &self,
        entry: &Entry<'_>,
        task: &TaskSpec,
        effective: &Value,
        retries: u64,
    ) -> Result<Value, ExecutionFailure> {
        let state = entry.state;
        // Without heartbeats, HeartbeatSeconds is simply a shorter timeout.
        let limit = match (task.timeout_seconds, task.heartbeat_seconds) {
            (Some(t), Some(h)) => Some(t.min(h)),
            (t, h) => t.or(h),
        };
        let work = async {
            let wait = task.wait_for_task_token.then(|| {
                let deadline = limit.and_then(|seconds| {
                    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                    self.clock
                        .now()
                        .checked_add(time::Duration::seconds(seconds))
                });
                self.tokens
                    .issue(self.name, &state.name, entry.iterations, deadline)
            });
            let token = wait.as_ref().map(|w| w.token().to_owned());
            let context = self.context(entry, retries, token.as_deref(), None);
            let input = match &state.parameters {
                Some(template) => self.eval(template, effective, &context, state, "Parameters")?,
                None => effective.clone(),
            };
            self.check_size(&input, || format!("the input of task \"{}\"", state.name))?;
            let call = TaskCall {
                resource: task.resource.clone(),
                wait_for_task_token: task.wait_for_task_token,
                input,
                state_name: state.name.clone(),
                task_token: token,
                execution_name: self.name.to_owned(),
                retry_count: retries,
            };
            let answer = self.handler.invoke(call).await?;
            let result = match wait {
                Some(wait) => wait.wait().await?,
                None => answer,
            };
            self.check_size(&result, || format!("the result of task \"{}\"", state.name))?;
            Ok(result)
        };
        match limit {
            Some(seconds) => tokio::time::timeout(duration(seconds as f64), work)
                .await
                .unwrap_or_else(|_| {
                    Err(ExecutionFailure::new(
                        errors::TIMEOUT,
                        format!("state \"{}\" did not finish within {seconds} s", state.name),
                    ))
                }),
            None => work.await,
        }
    }

    /// One attempt of a Map state: every item through the item processor, at most
    /// MaxConcurrency at a time, results in item order.
    async fn map_attempt(
        &self,
        entry: &Entry<'_>,
        map: &MapSpec,
        effective: &Value,
        retries: u64,
    ) -> Result<Value, ExecutionFailure> {
        let state = entry.state;
        let context = self.context(entry, retries, None, None);
        let items = match map.items_path.lookup(effective, &context) {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(ExecutionFailure::runtime(format!(
                    "state \"{}\": ItemsPath \"{}\" must select an array, not {}",
                    state.name,
                    map.items_path,
                    kind_of(&other)
                )));
            }
            None => {
                return Err(ExecutionFailure::runtime(format!(
                    "state \"{}\": ItemsPath \"{}\" matches nothing",
                    state.name, map.items_path
                )));
            }
        };
        let count = items.len();
        let max_concurrency = match &map.max_concurrency {
            Concurrency::Fixed(n) => *n,
            Concurrency::Path(path) => match path.lookup(effective, &context) {
                Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0),
                Some(other) => {
                    return Err(ExecutionFailure::runtime(format!(
                        "state \"{}\": MaxConcurrencyPath \"{path}\" must select a non-negative integer, not {other}",
                        state.name
                    )));
                }
                None => {
                    return Err(ExecutionFailure::runtime(format!(
                        "state \"{}\": MaxConcurrencyPath \"{path}\" matches nothing",
                        state.name
                    )));
                }
            },
        };
        let limit = match max_concurrency {
            0 => count.max(1),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut items = items.into_iter();
        let start = |index: usize| -> BoxFuture<'_, Result<Value, ExecutionFailure>> {
            let item = items.next().unwrap_or_default();
            Box::pin(self.iteration(entry, map, effective, index, item, retries))
        };
        run_bounded(count, limit, start).await.map(Value::Array)
    }

    /// One Map iteration: ItemSelector, then the item processor.
    async fn iteration(
        &self,
        entry: &Entry<'_>,
        map: &MapSpec,
        effective: &Value,
        index: usize,
        item: Value,
        retries: u64,
    ) -> Result<Value, ExecutionFailure> {
        let input = match &map.item_selector {
            Some(selector) => {
                let context = self.context(entry, retries, None, Some((index, &item)));
                self.eval(selector, effective, &context, entry.state, "ItemSelector")?
            }
            None => item,
        };
        let mut iterations = entry.iterations.to_vec();
        iterations.push(Iteration {
            map_state: entry.state.name.clone(),
            index,
        });
        self.run_graph(&map.processor, input, &iterations).await
    }

    /// How long a Wait state waits, in virtual seconds.
    fn wait_seconds(
        &self,
        state: &State,
        wait: &WaitFor,
        effective: &Value,
        context: &ContextObject<'_>,
    ) -> Result<f64, ExecutionFailure> {
        let looked_up = |path: &Path, field: &str| {
            path.lookup(effective, context).ok_or_else(|| {
                ExecutionFailure::runtime(format!(
                    "state \"{}\": {field} \"{path}\" matches nothing",
                    state.name
                ))
            })
        };
        Ok(match wait {
            WaitFor::Seconds(seconds) => *seconds as f64,
            WaitFor::Timestamp(at) => self.clock.seconds_until(*at),
            WaitFor::SecondsPath(path) => match looked_up(path, "SecondsPath")? {
                Value::Number(n) if n.as_u64().is_some() => n.as_u64().unwrap_or_default() as f64,
                other => {
                    return Err(ExecutionFailure::runtime(format!(
                        "state \"{}\": SecondsPath \"{path}\" must select a non-negative integer, not {other}",
                        state.name
                    )));
                }
            },
            WaitFor::TimestampPath(path) => {
                let value = looked_up(path, "TimestampPath")?;
                match value.as_str().and_then(parse_timestamp) {
                    Some(at) => self.clock.seconds_until(at),
                    None => {
                        return Err(ExecutionFailure::runtime(format!(
                            "state \"{}\": TimestampPath \"{path}\" must select an RFC 3339 timestamp, not {value}",
                            state.name
                        )));
                    }
                }
            }
        })
    }

    /// A Fail state's error or cause.
    fn text(
        &self,
        text: Option<&Text>,
        raw: &Value,
        context: &ContextObject<'_>,
        state: &State,
        field: &str,
    ) -> Result<String, ExecutionFailure> {
        match text {
            None => Ok(String::new()),
            Some(Text::Literal(text)) => Ok(text.clone()),
            Some(Text::Dynamic(template)) => {
                match self.eval(template, raw, context, state, field)? {
                    Value::String(text) => Ok(text),
                    other => Err(ExecutionFailure::runtime(format!(
                        "state \"{}\": {field} must select a string, not {}",
                        state.name,
                        kind_of(&other)
                    ))),
                }
            }
        }
    }

    /// The context object `$$` for a state.
    fn context(
        &self,
        entry: &Entry<'_>,
        retries: u64,
        token: Option<&str>,
        item: Option<(usize, &Value)>,
    ) -> ContextObject<'_> {
        let mut rest = json!({
            "Execution": {
                "Id": self.execution_id,
                "Name": self.name,
                "StartTime": self.start_time,
            },
            "State": {
                "Name": entry.state.name,
                "EnteredTime": entry.entered_time,
                "RetryCount": retries,
            },
            "StateMachine": {
                "Id": self.options.state_machine_arn,
                "Name": self.state_machine_name,
            },
        });
        if let Value::Object(members) = &mut rest {
            if let Some(token) = token {
                members.insert("Task".to_owned(), json!({ "Token": token }));
            }
            if let Some((index, value)) = item {
                members.insert(
                    "Map".to_owned(),
                    json!({ "Item": { "Index": index, "Value": value } }),
                );
            }
        }
        ContextObject {
            execution_input: &self.input,
            rest,
        }
    }

    /// Evaluates a payload template, naming the state and field in errors.
    fn eval(
        &self,
        template: &Template,
        input: &Value,
        context: &ContextObject<'_>,
        state: &State,
        field: &str,
    ) -> Result<Value, ExecutionFailure> {
        template
            .eval(&Scope {
                input,
                context,
                uuids: &self.uuids,
            })
            .map_err(|mut f| {
                f.cause = format!("state \"{}\" {field}: {}", state.name, f.cause);
                f
            })
    }

    /// Fails with `States.DataLimitExceeded` when `value` is over the payload limit.
    fn check_size(&self, value: &Value, what: impl Fn() -> String) -> Result<(), ExecutionFailure> {
        let limit = self.options.max_payload_bytes;
        if limit == 0 {
            return Ok(());
        }
        let size = json_size(value);
        if size > limit {
            return Err(ExecutionFailure::new(
                errors::DATA_LIMIT_EXCEEDED,
                format!("{} is {size} bytes, over the {limit}-byte limit", what()),
            ));
        }
        Ok(())
    }
}

/// Applies a matching Catch of `state` to `failure`, or gives the failure back.
fn catch<'g>(
    state: &'g State,
    input: Value,
    failure: ExecutionFailure,
) -> Result<Step<'g>, ExecutionFailure> {
    if failure.is_terminal() {
        return Err(failure);
    }
    let Some(catcher) = state
        .catch
        .iter()
        .find(|c| error_matches(&c.error_equals, &failure.error))
    else {
        return Err(failure);
    };
    let error_output = json!({ "Error": failure.error, "Cause": failure.cause });
    let output =
        merge_result(input, catcher.result_path.as_ref(), error_output).map_err(|why| {
            ExecutionFailure::new(
                errors::RESULT_PATH_MATCH_FAILURE,
                format!("state \"{}\": Catch ResultPath {why}", state.name),
            )
        })?;
    Ok(Step {
        output,
        next: Some(&catcher.next),
    })
}

/// InputPath/OutputPath: `null` gives `{}`, `$` the whole value, else the selected node.
fn select(
    state: &State,
    path: Option<&Path>,
    value: &Value,
    context: &ContextObject<'_>,
    field: &str,
) -> Result<Value, ExecutionFailure> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some(path) if path.is_root() => Ok(value.clone()),
        Some(path) => path.lookup(value, context).ok_or_else(|| {
            ExecutionFailure::runtime(format!(
                "state \"{}\": {field} \"{path}\" matches nothing",
                state.name
            ))
        }),
    }
}

/// ResultPath, naming the state when it cannot be applied.
fn merge(state: &State, raw: &Value, result: Value) -> Result<Value, ExecutionFailure> {
    merge_result(raw.clone(), state.result_path.as_ref(), result).map_err(|why| {
        ExecutionFailure::new(
            errors::RESULT_PATH_MATCH_FAILURE,
            format!("state \"{}\": ResultPath {why}", state.name),
        )
    })
}

fn next_of(state: &State) -> Option<&str> {
    match &state.transition {
        Transition::Next(next) => Some(next),
        Transition::End | Transition::Own => None,
    }
}

/// The delay before a retrier's next retry, given how many it already made:
/// IntervalSeconds × BackoffRate^count, capped by MaxDelaySeconds, times `jitter()` when
/// the retrier asks for full jitter.
fn retry_delay(retrier: &Retrier, count: u64, jitter: impl FnOnce() -> f64) -> f64 {
    let exponent = i32::try_from(count).unwrap_or(i32::MAX);
    let mut delay = retrier.interval_seconds as f64 * retrier.backoff_rate.powi(exponent);
    if let Some(max) = retrier.max_delay_seconds {
        delay = delay.min(max as f64);
    }
    if !delay.is_finite() {
        delay = 99_999_999.0;
    }
    if retrier.full_jitter {
        delay *= jitter();
    }
    delay
}

/// A number in [0, 1) for full jitter, spread like a random one but derived from the
/// execution, the state, its Map iterations and the retry count, so a replay waits the same.
fn jitter_fraction(execution: &str, state: &str, iterations: &[Iteration], retries: u64) -> f64 {
    let mut key = format!("{execution}\u{0}{state}");
    for it in iterations {
        key.push_str(&format!("\u{0}{}#{}", it.map_state, it.index));
    }
    (fnv1a(0x9e37_79b9_7f4a_7c15, key.as_bytes(), retries) >> 11) as f64 / (1_u64 << 53) as f64
}

/// The size of `value` serialized as compact JSON.
fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to the counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Runs `count` futures made by `start(index)`, at most `limit` at once, and returns their
/// values in index order; the first failure stops (drops) the others.
async fn run_bounded<'a, F>(
    count: usize,
    limit: usize,
    mut start: F,
) -> Result<Vec<Value>, ExecutionFailure>
where
    F: FnMut(usize) -> BoxFuture<'a, Result<Value, ExecutionFailure>> + Send,
{
    let mut results: Vec<Option<Value>> = vec![None; count];
    let mut running: Vec<(usize, BoxFuture<'a, Result<Value, ExecutionFailure>>)> = Vec::new();
    let mut next = 0;
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit.max(1) && next < count {
                running.push((next, start(next)));
                next += 1;
            }
            if running.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let mut finished_any = false;
            let mut k = 0;
            while let Some((index, future)) = running.get_mut(k) {
                let index = *index;
                match future.as_mut().poll(cx) {
                    Poll::Pending => k += 1,
                    Poll::Ready(Err(failure)) => return Poll::Ready(Err(failure)),
                    Poll::Ready(Ok(value)) => {
                        if let Some(slot) = results.get_mut(index) {
                            *slot = Some(value);
                        }
                        drop(running.swap_remove(k));
                        finished_any = true;
                    }
                }
            }
            if !finished_any {
                return Poll::Pending;
            }
        }
    })
    .await?;
    drop(running);
    Ok(results.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::asl::PendingTask;

    fn machine(definition: Value) -> StateMachine {
        StateMachine::load(&definition.to_string(), &BTreeMap::new()).unwrap()
    }

    /// Options starting at 2024-05-01 12:00 UTC. The tests run on paused tokio time, so
    /// Waits, retries and timeouts take no real time.
    fn fast() -> ExecutionOptions {
        ExecutionOptions::starting_at(datetime!(2024-05-01 12:00 UTC))
    }

    async fn run(
        machine: &StateMachine,
        input: Value,
        handler: &dyn TaskHandler,
    ) -> Result<Value, ExecutionFailure> {
        run_execution(
            machine,
            "exec-1",
            input,
            handler,
            &TaskTokens::new(),
            &NoopObserver,
            &fast(),
        )
        .await
    }

    type Answer = dyn Fn(&TaskCall, usize) -> Result<Value, TaskError> + Send + Sync;

    /// Answers each call with `answer(call, n)` (n counts calls from 1) and records calls.
    struct Script {
        answer: Box<Answer>,
        calls: Mutex<Vec<TaskCall>>,
    }

    impl Script {
        fn new(
            answer: impl Fn(&TaskCall, usize) -> Result<Value, TaskError> + Send + Sync + 'static,
        ) -> Self {
            Self {
                answer: Box::new(answer),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn calls(&self) -> Vec<TaskCall> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl TaskHandler for Script {
        async fn invoke(&self, task: TaskCall) -> Result<Value, TaskError> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(task.clone());
                calls.len()
            };
            (self.answer)(&task, n)
        }
    }

    /// Sleeps (really) in every call and tracks how many calls run at once.
    #[derive(Default)]
    struct Slow {
        running: AtomicUsize,
        peak: AtomicUsize,
    }

    #[async_trait]
    impl TaskHandler for Slow {
        async fn invoke(&self, task: TaskCall) -> Result<Value, TaskError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            let mut out = task.input.clone();
            let n = task.input["n"].as_i64().unwrap_or_default();
            out["doubled"] = json!(n * 2);
            Ok(out)
        }
    }

    /// Never answers.
    struct Hang;

    #[async_trait]
    impl TaskHandler for Hang {
        async fn invoke(&self, _task: TaskCall) -> Result<Value, TaskError> {
            std::future::pending().await
        }
    }

    /// Records observer events as text.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn push(&self, event: String) {
            self.events.lock().unwrap().push(event);
        }

        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
    }

    fn label(state: StateRef<'_>) -> String {
        let mut out = state.name.to_owned();
        for it in state.iterations {
            out.push_str(&format!("[{}#{}]", it.map_state, it.index));
        }
        out
    }

    impl Observer for Recorder {
        fn on_state_entered(&self, state: StateRef<'_>, _input: &Value) {
            self.push(format!("enter {}", label(state)));
        }
        fn on_state_exited(&self, state: StateRef<'_>, _output: &Value) {
            self.push(format!("exit {}", label(state)));
        }
        fn on_state_failed(&self, state: StateRef<'_>, failure: &ExecutionFailure) {
            self.push(format!("fail {} {}", label(state), failure.error));
        }
        fn on_task_retry(
            &self,
            state: StateRef<'_>,
            failure: &ExecutionFailure,
            attempt: u64,
            delay: Duration,
        ) {
            self.push(format!(
                "retry {} {} #{attempt} after {}s",
                label(state),
                failure.error,
                delay.as_secs_f64()
            ));
        }
        fn on_execution_finished(&self, result: &Result<Value, ExecutionFailure>) {
            self.push(match result {
                Ok(_) => "finished ok".to_owned(),
                Err(f) => format!("finished {}", f.error),
            });
        }
    }

    fn fails(error: &str) -> TaskError {
        TaskError::new(error, "boom")
    }

    #[tokio::test(start_paused = true)]
    async fn task_data_flow_composes_input_path_parameters_result_selector_result_path_and_output_path()
     {
        let m = machine(json!({"StartAt": "Analyze", "States": {"Analyze": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "InputPath": "$.cycle",
            "Parameters": {"FunctionName": "analyze", "Payload.$": "$",
                "execution.$": "$$.Execution.Name", "state.$": "$$.State.Name"},
            "ResultSelector": {"opportunities.$": "$.Payload.opportunities", "status.$": "$.StatusCode"},
            "ResultPath": "$.cycle.analysis",
            "OutputPath": "$.cycle",
            "End": true}}}));
        let handler = Script::new(|_, _| {
            Ok(json!({"Payload": {"opportunities": [1, 2], "extra": "x"}, "StatusCode": 200}))
        });
        let out = run(&m, json!({"cycle": {"id": "c1"}, "noise": true}), &handler)
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "c1", "analysis": {"opportunities": [1, 2], "status": 200}})
        );
        let calls = handler.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].resource, "arn:aws:states:::lambda:invoke");
        assert_eq!(calls[0].state_name, "Analyze");
        assert!(!calls[0].wait_for_task_token && calls[0].task_token.is_none());
        assert_eq!(
            calls[0].input,
            json!({"FunctionName": "analyze", "Payload": {"id": "c1"}, "execution": "exec-1", "state": "Analyze"})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn null_paths_pass_result_and_intrinsics() {
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Result": {"r": 1}, "ResultPath": "$.fromPass", "Next": "B"},
            "B": {"Type": "Task", "Resource": "r", "InputPath": null, "ResultPath": null, "Next": "C"},
            "C": {"Type": "Pass", "Parameters": {
                    "greeting.$": "States.Format('hi {}, r={}', $.name, $.fromPass.r)",
                    "id.$": "States.UUID()"},
                  "ResultPath": "$.p", "OutputPath": "$.p", "End": true}}}));
        let handler = Script::new(|_, _| Ok(json!("discarded")));
        let out = run(&m, json!({"name": "ann"}), &handler).await.unwrap();
        assert_eq!(handler.calls()[0].input, json!({}));
        assert_eq!(out["greeting"], json!("hi ann, r=1"));
        assert_eq!(out["id"].as_str().map(str::len), Some(36));
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "OutputPath": null, "End": true}}}));
        assert_eq!(run(&m, json!({"x": 1}), &handler).await.unwrap(), json!({}));
    }

    #[tokio::test(start_paused = true)]
    async fn the_context_object_describes_execution_state_and_machine() {
        let m = machine(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {
            "id.$": "$$.Execution.Id", "input.$": "$$.Execution.Input.a", "start.$": "$$.Execution.StartTime",
            "sm.$": "$$.StateMachine.Id", "smName.$": "$$.StateMachine.Name", "retries.$": "$$.State.RetryCount",
            "entered.$": "$$.State.EnteredTime"}, "End": true}}}),
        );
        let out = run(&m, json!({"a": [1]}), &Script::new(|_, _| Ok(json!(null))))
            .await
            .unwrap();
        assert_eq!(
            out["id"],
            json!("arn:aws:states:local:000000000000:execution:selfbuild:exec-1")
        );
        assert_eq!(out["input"], json!([1]));
        assert_eq!(out["start"], json!("2024-05-01T12:00:00.000Z"));
        assert_eq!(out["sm"], json!(DEFAULT_STATE_MACHINE_ARN));
        assert_eq!(out["smName"], json!("selfbuild"));
        assert_eq!(out["retries"], json!(0));
        assert_eq!(out["entered"], json!("2024-05-01T12:00:00.000Z"));
    }

    fn router() -> Value {
        json!({"StartAt": "Route", "States": {
            "Route": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.risk", "StringEquals": "LOW"},
                         {"Not": {"Variable": "$.system_wide", "BooleanEquals": true}}],
                 "Next": "Auto"},
                {"Or": [{"Variable": "$.risk", "StringEquals": "HIGH"},
                        {"Variable": "$.risk", "StringEquals": "CRITICAL"}],
                 "Next": "Approve"}],
             "Default": "Hold"},
            "Auto": {"Type": "Pass", "Result": "auto", "ResultPath": "$.route", "End": true},
            "Approve": {"Type": "Pass", "Result": "approve", "ResultPath": "$.route", "End": true},
            "Hold": {"Type": "Pass", "Result": "hold", "ResultPath": "$.route", "End": true}}})
    }

    #[tokio::test(start_paused = true)]
    async fn choice_routes_with_and_or_not_and_default() {
        let m = machine(router());
        let handler = Script::new(|_, _| Ok(json!(null)));
        for (input, route) in [
            (json!({"risk": "LOW", "system_wide": false}), "auto"),
            (json!({"risk": "LOW", "system_wide": true}), "hold"),
            (json!({"risk": "CRITICAL", "system_wide": false}), "approve"),
            (json!({"risk": "MEDIUM", "system_wide": false}), "hold"),
        ] {
            let out = run(&m, input.clone(), &handler).await.unwrap();
            assert_eq!(out["route"], json!(route), "{input}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn choice_without_match_or_default_fails_and_a_missing_variable_is_runtime() {
        let m = machine(json!({"StartAt": "IsReady", "States": {
            "IsReady": {"Type": "Choice", "Choices": [
                {"Variable": "$.ready", "BooleanEquals": true, "Next": "Done"}]},
            "Done": {"Type": "Succeed"}}}));
        let handler = Script::new(|_, _| Ok(json!(null)));
        let err = run(&m, json!({"ready": false}), &handler)
            .await
            .unwrap_err();
        assert_eq!(err.error, errors::NO_CHOICE_MATCHED);
        let err = run(&m, json!({}), &handler).await.unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
        assert!(err.cause.contains("$.ready"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_of_waits_takes_no_real_time_and_stamps_exact_virtual_times() {
        let real = std::time::Instant::now();
        let m = machine(json!({"StartAt": "Hour", "States": {
            "Hour": {"Type": "Wait", "Seconds": 3600, "Next": "Until"},
            "Until": {"Type": "Wait", "Timestamp": "2024-05-01T13:00:00Z", "Next": "FromInput"},
            "FromInput": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Past"},
            "Past": {"Type": "Wait", "TimestampPath": "$.past", "Next": "Stamp"},
            "Stamp": {"Type": "Pass", "Parameters": {"entered.$": "$$.State.EnteredTime"}, "End": true}}}));
        let out = run(
            &m,
            json!({"delay": 60, "past": "2020-01-01T00:00:00Z"}),
            &Script::new(|_, _| Ok(json!(null))),
        )
        .await
        .unwrap();
        // An hour, nothing until 13:00 (it is 13:00), a minute, nothing (the past).
        assert_eq!(out["entered"], json!("2024-05-01T13:01:00.000Z"));
        // Generous for a loaded machine, yet far below the hour a wall-clock wait takes.
        assert!(
            real.elapsed() < Duration::from_secs(60),
            "{:?}",
            real.elapsed()
        );

        let err = run(
            &m,
            json!({"delay": -1, "past": "x"}),
            &Script::new(|_, _| Ok(json!(null))),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
        assert!(err.cause.contains("SecondsPath"), "{err}");
    }

    fn fan_out(max_concurrency: u64) -> Value {
        json!({"StartAt": "Fan", "States": {"Fan": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": max_concurrency,
            "ItemSelector": {"n.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index", "label.$": "$.label"},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Double", "States": {
                "Double": {"Type": "Task", "Resource": "double", "End": true}}},
            "ResultPath": "$.results", "End": true}}})
    }

    #[tokio::test(start_paused = true)]
    async fn map_never_runs_more_than_max_concurrency_and_keeps_item_order() {
        let m = machine(fan_out(2));
        let handler = Slow::default();
        let recorder = Recorder::default();
        let out = run_execution(
            &m,
            "exec-1",
            json!({"items": [1, 2, 3, 4, 5, 6], "label": "x"}),
            &handler,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(handler.peak.load(Ordering::SeqCst), 2);
        let expected: Vec<Value> = (0..6)
            .map(|i| json!({"n": i + 1, "i": i, "label": "x", "doubled": 2 * (i + 1)}))
            .collect();
        assert_eq!(out["results"], Value::Array(expected));
        let events = recorder.events();
        assert!(
            events.contains(&"enter Double[Fan#5]".to_owned()),
            "{events:?}"
        );
        assert_eq!(events.first().map(String::as_str), Some("enter Fan"));
        assert_eq!(events.last().map(String::as_str), Some("finished ok"));
    }

    #[tokio::test(start_paused = true)]
    async fn max_concurrency_path_reads_the_bound_from_the_input() {
        let mut definition = fan_out(0);
        let fan = &mut definition["States"]["Fan"];
        fan.as_object_mut().unwrap().remove("MaxConcurrency");
        fan["MaxConcurrencyPath"] = json!("$.limit");
        let m = machine(definition.clone());
        let handler = Slow::default();
        run_execution(
            &m,
            "exec-1",
            json!({"items": [1, 2, 3, 4, 5], "label": "x", "limit": 3}),
            &handler,
            &TaskTokens::new(),
            &NoopObserver,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(handler.peak.load(Ordering::SeqCst), 3);
        let err = run_execution(
            &m,
            "exec-2",
            json!({"items": [1], "label": "x", "limit": "three"}),
            &handler,
            &TaskTokens::new(),
            &NoopObserver,
            &fast(),
        )
        .await
        .unwrap_err();
        assert!(err.cause.contains("MaxConcurrencyPath"), "{err}");
        definition["States"]["Fan"]["MaxConcurrency"] = json!(2);
        let both = StateMachine::load(&definition.to_string(), &BTreeMap::new()).unwrap_err();
        assert!(both.to_string().contains("MaxConcurrencyPath"), "{both}");
    }

    #[tokio::test(start_paused = true)]
    async fn map_max_concurrency_zero_is_unlimited_and_legacy_fields_work() {
        let m = machine(json!({"StartAt": "Fan", "States": {"Fan": {
            "Type": "Map", "ItemsPath": "$.items",
            "Parameters": {"n.$": "$$.Map.Item.Value"},
            "Iterator": {"StartAt": "Double", "States": {
                "Double": {"Type": "Task", "Resource": "double", "End": true}}},
            "End": true}}}));
        let handler = Slow::default();
        let out = run(&m, json!({"items": [1, 2, 3, 4, 5, 6]}), &handler)
            .await
            .unwrap();
        assert_eq!(handler.peak.load(Ordering::SeqCst), 6);
        assert_eq!(out[5], json!({"n": 6, "doubled": 12}));
        let out = run(&m, json!({"items": []}), &handler).await.unwrap();
        assert_eq!(out, json!([]));
        let err = run(&m, json!({"items": "nope"}), &handler)
            .await
            .unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_iteration_fails_the_map_and_its_catch_applies() {
        let m = machine(json!({"StartAt": "Fan", "States": {
            "Fan": {"Type": "Map", "Iterator": {"StartAt": "Check", "States": {
                    "Check": {"Type": "Choice", "Choices": [
                        {"Variable": "$", "NumericLessThan": 3, "Next": "Ok"}], "Default": "Bad"},
                    "Ok": {"Type": "Succeed"},
                    "Bad": {"Type": "Fail", "Error": "ItemFailed", "Cause": "too big"}}},
                "Catch": [{"ErrorEquals": ["ItemFailed"], "Next": "FanFailed", "ResultPath": "$.error"}],
                "ItemsPath": "$.items", "End": true},
            "FanFailed": {"Type": "Pass", "End": true}}}));
        let out = run(
            &m,
            json!({"items": [1, 2, 3]}),
            &Script::new(|_, _| Ok(json!(null))),
        )
        .await
        .unwrap();
        assert_eq!(
            out["error"],
            json!({"Error": "ItemFailed", "Cause": "too big"})
        );
        let out = run(
            &m,
            json!({"items": [1, 2]}),
            &Script::new(|_, _| Ok(json!(null))),
        )
        .await
        .unwrap();
        assert_eq!(out, json!([1, 2]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_backs_off_then_succeeds() {
        let m = machine(json!({"StartAt": "Generate", "States": {"Generate": {
            "Type": "Task", "Resource": "generate",
            "Retry": [
                {"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 5},
                {"ErrorEquals": ["Retryable"], "IntervalSeconds": 2, "BackoffRate": 3.0, "MaxAttempts": 3}],
            "End": true}}}));
        let handler = Script::new(|_, n| {
            if n <= 2 {
                Err(fails("Retryable"))
            } else {
                Ok(json!("done"))
            }
        });
        let recorder = Recorder::default();
        let out = run_execution(
            &m,
            "exec-1",
            json!({}),
            &handler,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(out, json!("done"));
        let calls = handler.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls.iter().map(|c| c.retry_count).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let retries: Vec<String> = recorder
            .events()
            .into_iter()
            .filter(|e| e.starts_with("retry"))
            .collect();
        assert_eq!(
            retries,
            [
                "retry Generate Retryable #1 after 2s",
                "retry Generate Retryable #2 after 6s"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retriers_count_separately_and_max_delay_caps_the_backoff() {
        let m = machine(json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "t",
            "Retry": [
                {"ErrorEquals": ["A"], "MaxAttempts": 1},
                {"ErrorEquals": ["B"], "IntervalSeconds": 10, "BackoffRate": 10, "MaxDelaySeconds": 50, "MaxAttempts": 3}],
            "End": true}}}));
        // A, B, B, A(retry refused: retrier A already used its one attempt)
        let handler = Script::new(|_, n| Err(fails(if n == 1 || n == 4 { "A" } else { "B" })));
        let recorder = Recorder::default();
        let err = run_execution(
            &m,
            "exec-1",
            json!({}),
            &handler,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error, "A");
        assert_eq!(handler.calls().len(), 4);
        let retries: Vec<String> = recorder
            .events()
            .into_iter()
            .filter(|e| e.starts_with("retry"))
            .collect();
        assert_eq!(
            retries,
            [
                "retry T A #1 after 1s",
                "retry T B #1 after 10s",
                "retry T B #2 after 50s"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_exhaustion_goes_to_the_catch_with_result_path() {
        let m = machine(json!({"StartAt": "Deploy", "States": {
            "Deploy": {"Type": "Task", "Resource": "deploy",
                "Retry": [{"ErrorEquals": ["Retryable"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["Retryable"], "Next": "DeployFailed", "ResultPath": "$.error"}],
                "Next": "Done"},
            "Done": {"Type": "Succeed"},
            "DeployFailed": {"Type": "Pass", "End": true}}}));
        let handler = Script::new(|_, _| Err(fails("Retryable")));
        let recorder = Recorder::default();
        let out = run_execution(
            &m,
            "exec-1",
            json!({"x": 1}),
            &handler,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(handler.calls().len(), 3);
        assert_eq!(
            out,
            json!({"x": 1, "error": {"Error": "Retryable", "Cause": "boom"}})
        );
        let events = recorder.events();
        let at = events
            .iter()
            .position(|e| e == "fail Deploy Retryable")
            .unwrap();
        assert_eq!(events[at + 1], "exit Deploy");
        assert_eq!(events[at + 2], "enter DeployFailed");
    }

    #[tokio::test(start_paused = true)]
    async fn states_all_catches_anything_named_and_max_attempts_zero_never_retries() {
        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t",
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}],
                "Catch": [
                    {"ErrorEquals": ["Specific"], "Next": "Specific"},
                    {"ErrorEquals": ["States.ALL"], "Next": "Anything"}],
                "End": true},
            "Specific": {"Type": "Pass", "Result": "specific", "End": true},
            "Anything": {"Type": "Pass", "Result": "anything", "End": true}}}));
        let handler = Script::new(|_, _| Err(fails("Lambda.Unknown")));
        assert_eq!(
            run(&m, json!({}), &handler).await.unwrap(),
            json!("anything")
        );
        assert_eq!(handler.calls().len(), 1);
        let handler = Script::new(|_, _| Err(fails("Specific")));
        assert_eq!(
            run(&m, json!({}), &handler).await.unwrap(),
            json!("specific")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn task_timeout_is_states_timeout_which_task_failed_does_not_catch() {
        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t", "TimeoutSeconds": 60,
                "Catch": [
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "Failed"},
                    {"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
                "End": true},
            "Failed": {"Type": "Pass", "Result": "failed", "End": true},
            "TimedOut": {"Type": "Pass", "Result": "timed out", "End": true}}}));
        assert_eq!(run(&m, json!({}), &Hang).await.unwrap(), json!("timed out"));
        let handler = Script::new(|_, _| Err(fails("Oops")));
        assert_eq!(run(&m, json!({}), &handler).await.unwrap(), json!("failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_and_heartbeats_fire_at_exact_virtual_times_without_real_waiting() {
        let m = machine(json!({"StartAt": "Hour", "States": {
            "Hour": {"Type": "Task", "Resource": "t", "TimeoutSeconds": 3600,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Beat", "ResultPath": "$.first"}],
                "End": true},
            "Beat": {"Type": "Task", "Resource": "t", "TimeoutSeconds": 3600, "HeartbeatSeconds": 600,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Stamp", "ResultPath": "$.second"}],
                "End": true},
            "Stamp": {"Type": "Pass", "Parameters": {"entered.$": "$$.State.EnteredTime", "error.$": "$.second.Error"}, "End": true}}}));
        let real = std::time::Instant::now();
        let out = run(&m, json!({}), &Hang).await.unwrap();
        assert_eq!(
            out,
            json!({"entered": "2024-05-01T13:10:00.000Z", "error": "States.Timeout"})
        );
        assert!(
            real.elapsed() < Duration::from_secs(60),
            "{:?}",
            real.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_intervals_pass_in_virtual_time_and_jitter_replays_the_same() {
        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t",
                "Retry": [{"ErrorEquals": ["Retryable"], "IntervalSeconds": 2, "BackoffRate": 2.0, "MaxAttempts": 2}],
                "Next": "Stamp"},
            "Stamp": {"Type": "Pass", "Parameters": {"entered.$": "$$.State.EnteredTime"}, "End": true}}}));
        let flaky = || {
            Script::new(|_, n| {
                if n <= 2 {
                    Err(fails("Retryable"))
                } else {
                    Ok(json!({}))
                }
            })
        };
        let out = run(&m, json!({}), &flaky()).await.unwrap();
        assert_eq!(out["entered"], json!("2024-05-01T12:00:06.000Z"));

        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t",
                "Retry": [{"ErrorEquals": ["Retryable"], "IntervalSeconds": 100, "MaxAttempts": 2, "JitterStrategy": "FULL"}],
                "End": true}}}));
        let delays = || async {
            let recorder = Recorder::default();
            run_execution(
                &m,
                "exec-1",
                json!({}),
                &flaky(),
                &TaskTokens::new(),
                &recorder,
                &fast(),
            )
            .await
            .unwrap();
            recorder
                .events()
                .into_iter()
                .filter(|e| e.starts_with("retry"))
                .collect::<Vec<_>>()
        };
        let first = delays().await;
        assert_eq!(first.len(), 2);
        assert_eq!(first, delays().await);
        assert_ne!(
            first[0], "retry T Retryable #1 after 100s",
            "jitter shortens the wait"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_errors_are_not_caught_by_states_all() {
        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t", "Parameters": {"x.$": "$.missing"},
                "Retry": [{"ErrorEquals": ["States.ALL"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
            "Caught": {"Type": "Succeed"}}}));
        let handler = Script::new(|_, _| Ok(json!(null)));
        let err = run(&m, json!({}), &handler).await.unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
        assert!(err.cause.contains("state \"T\" Parameters"), "{err}");
        assert!(err.cause.contains("$.missing"), "{err}");
        assert!(handler.calls().is_empty());
    }

    fn approval(timeout_seconds: u64) -> Value {
        json!({"StartAt": "WaitForApproval", "States": {
            "WaitForApproval": {"Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "notify", "Payload": {"token.$": "$$.Task.Token", "id.$": "$.id"}},
                "TimeoutSeconds": timeout_seconds,
                "ResultPath": "$.approval",
                "Catch": [
                    {"ErrorEquals": ["States.Timeout"], "Next": "ApprovalTimedOut", "ResultPath": "$.error"},
                    {"ErrorEquals": ["Rejected"], "Next": "ApprovalRejected", "ResultPath": "$.error"}],
                "End": true},
            "ApprovalTimedOut": {"Type": "Pass", "End": true},
            "ApprovalRejected": {"Type": "Pass", "End": true}}})
    }

    /// Waits until a task waits for a token and returns it.
    async fn next_pending(tokens: &TaskTokens) -> PendingTask {
        let mut changes = tokens.changes();
        loop {
            if let Some(pending) = tokens.pending().pop() {
                return pending;
            }
            changes.changed().await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_task_token_resumes_when_another_task_sends_success() {
        let m = machine(approval(3600 * 24));
        let tokens = TaskTokens::new();
        let handler = Script::new(|_, _| Ok(json!({"ignored": true})));
        let approver = tokens.clone();
        let options = fast();
        let execution = run_execution(
            &m,
            "exec-1",
            json!({"id": 7}),
            &handler,
            &tokens,
            &NoopObserver,
            &options,
        );
        let approve = async move {
            let pending = next_pending(&approver).await;
            assert_eq!(pending.state, "WaitForApproval");
            assert_eq!(pending.execution, "exec-1");
            assert!(pending.iterations.is_empty());
            assert_eq!(pending.deadline, Some(datetime!(2024-05-02 12:00 UTC)));
            approver
                .send_success(&pending.token, json!({"approved": true}))
                .unwrap();
            pending.token
        };
        let (out, token) = tokio::join!(execution, approve);
        assert_eq!(
            out.unwrap(),
            json!({"id": 7, "approval": {"approved": true}})
        );
        let call = &handler.calls()[0];
        assert_eq!(call.resource, "arn:aws:states:::lambda:invoke");
        assert!(call.wait_for_task_token);
        assert_eq!(call.task_token.as_deref(), Some(token.as_str()));
        assert_eq!(
            call.input,
            json!({"FunctionName": "notify", "Payload": {"token": token, "id": 7}})
        );
        assert_eq!(
            tokens
                .send_success(&token, json!(1))
                .unwrap_err()
                .error_type(),
            "TaskTimedOut"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_task_token_times_out_and_send_failure_fails_the_task() {
        let m = machine(approval(3600));
        let tokens = TaskTokens::new();
        let handler = Script::new(|_, _| Ok(json!(null)));
        let out = run_execution(
            &m,
            "exec-1",
            json!({"id": 1}),
            &handler,
            &tokens,
            &NoopObserver,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(out["error"]["Error"], json!("States.Timeout"));
        let late = handler.calls()[0].task_token.clone().unwrap();
        assert_eq!(
            tokens
                .send_success(&late, json!({}))
                .unwrap_err()
                .error_type(),
            "TaskTimedOut"
        );
        assert!(tokens.pending().is_empty());

        let m = machine(approval(3600 * 24));
        let rejecter = tokens.clone();
        let options = fast();
        let execution = run_execution(
            &m,
            "exec-2",
            json!({"id": 2}),
            &handler,
            &tokens,
            &NoopObserver,
            &options,
        );
        let reject = async move {
            let pending = next_pending(&rejecter).await;
            rejecter
                .send_failure(&pending.token, "Rejected", "not now")
                .unwrap();
        };
        let (out, ()) = tokio::join!(execution, reject);
        assert_eq!(
            out.unwrap(),
            json!({"id": 2, "error": {"Error": "Rejected", "Cause": "not now"}})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fail_state_surfaces_its_error_and_cause() {
        let m = machine(json!({"StartAt": "CycleFailed", "States": {
            "CycleFailed": {"Type": "Fail", "Error": "CycleFailed", "Cause": "validation found secrets"}}}));
        let recorder = Recorder::default();
        let err = run_execution(
            &m,
            "e",
            json!({}),
            &Hang,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            ExecutionFailure::new("CycleFailed", "validation found secrets")
        );
        assert_eq!(
            recorder.events(),
            [
                "enter CycleFailed",
                "fail CycleFailed CycleFailed",
                "finished CycleFailed"
            ]
        );
        let m = machine(json!({"StartAt": "F", "States": {
            "F": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "States.Format('because {}', $.error.Cause)"}}}));
        let err = run(
            &m,
            json!({"error": {"Error": "Retryable", "Cause": "throttled"}}),
            &Hang,
        )
        .await
        .unwrap_err();
        assert_eq!(err, ExecutionFailure::new("Retryable", "because throttled"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_choice_loop_hits_the_transition_limit() {
        let m = machine(json!({"StartAt": "IsDone", "States": {
            "IsDone": {"Type": "Choice", "Choices": [
                {"Variable": "$.done", "BooleanEquals": true, "Next": "Done"}], "Default": "IsDone"},
            "Done": {"Type": "Succeed"}}}));
        let err = run(&m, json!({"done": false}), &Hang).await.unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
        assert!(err.cause.contains("25000 state transitions"), "{err}");
        let options = ExecutionOptions {
            max_transitions: 10,
            ..fast()
        };
        let err = run_execution(
            &m,
            "e",
            json!({"done": false}),
            &Hang,
            &TaskTokens::new(),
            &NoopObserver,
            &options,
        )
        .await
        .unwrap_err();
        assert!(err.cause.contains("10 state transitions"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_execution_timeout_stops_a_long_wait() {
        let m = machine(json!({"TimeoutSeconds": 60, "StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 99999999, "End": true}}}));
        let err = run(&m, json!({}), &Hang).await.unwrap_err();
        assert_eq!(err.error, errors::TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_payloads_fail_with_data_limit_exceeded_which_states_all_does_not_catch() {
        let m = machine(json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
            "Caught": {"Type": "Succeed"}}}));
        let options = ExecutionOptions {
            max_payload_bytes: 100,
            ..fast()
        };
        let handler = Script::new(|_, _| Ok(json!("x".repeat(200))));
        let err = run_execution(
            &m,
            "e",
            json!({}),
            &handler,
            &TaskTokens::new(),
            &NoopObserver,
            &options,
        )
        .await
        .unwrap_err();
        assert_eq!(err.error, errors::DATA_LIMIT_EXCEEDED);
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_path_that_does_not_fit_the_input_fails() {
        let m = machine(json!({"StartAt": "P", "States": {
            "P": {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b", "End": true}}}));
        let err = run(&m, json!({"a": "text"}), &Hang).await.unwrap_err();
        assert_eq!(err.error, errors::RESULT_PATH_MATCH_FAILURE);
        assert!(err.cause.contains("state \"P\""), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn observers_see_every_state_in_order() {
        let m = machine(json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}}));
        let recorder = Recorder::default();
        run_execution(
            &m,
            "e",
            json!({}),
            &Hang,
            &TaskTokens::new(),
            &recorder,
            &fast(),
        )
        .await
        .unwrap();
        assert_eq!(
            recorder.events(),
            ["enter A", "exit A", "enter B", "exit B", "finished ok"]
        );
    }
}
