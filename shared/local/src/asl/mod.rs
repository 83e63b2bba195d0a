//! An in-process interpreter for the Amazon States Language (JSONPath flavour), so the
//! offline runner executes `statemachine/improvement-cycle.asl.json` itself, with the same
//! semantics as AWS Step Functions for everything it supports, and refuses the rest when
//! the definition loads.
//!
//! - [`definition`]: loading: `${Name}` substitutions, parsing, validation
//!   ([`StateMachine::load`]).
//! - [`run`]: the executor ([`run_execution`]), its ports ([`TaskHandler`], [`Observer`])
//!   and [`ExecutionOptions`] (clock, transition limit).
//! - [`tokens`]: the task-token broker for `.waitForTaskToken` tasks ([`TaskTokens`]).
//! - `path`: JSONPath reference paths, the context object `$$`, `ResultPath` merging.
//! - `template`: payload templates (`Parameters`, `ResultSelector`, `ItemSelector`) and
//!   the intrinsic functions.
//! - `choice`: Choice rules.
//! - `clock`: the execution's clock ([`VirtualClock`]): a time of day on tokio's clock, so
//!   on a runtime with paused time Waits, retries and timeouts are event-driven.
//!
//! Supported: Task, Choice, Wait, Map (inline), Pass, Succeed and Fail states with
//! InputPath, Parameters, ResultSelector, ResultPath, OutputPath, Retry and Catch.
//! Refused at load: other state types (Parallel), JSONata, variables (`Assign`),
//! `Arguments`/`Output`, `…Path` variants of timeouts and concurrency, distributed-Map
//! fields (ItemReader, ItemBatcher, ResultWriter, ToleratedFailure…), JSONPath beyond
//! reference paths, and intrinsics other than States.Format, States.StringToJson,
//! States.JsonToString, States.Array, States.MathAdd and States.UUID.

mod choice;
mod clock;
pub mod definition;
mod path;
pub mod run;
mod template;
pub mod tokens;

pub use clock::VirtualClock;
pub use definition::StateMachine;
pub use run::{
    DEFAULT_STATE_MACHINE_ARN, ExecutionOptions, Iteration, NoopObserver, Observer, StateRef,
    TaskCall, TaskError, TaskHandler, run_execution,
};
pub use tokens::{PendingTask, TaskTokens, TokenError};

/// Error names the interpreter raises or treats specially, as Step Functions names them.
pub mod errors {
    /// Matches every error name except `States.Runtime` and `States.DataLimitExceeded`.
    pub const ALL: &str = "States.ALL";
    /// Matches every error name except `States.Timeout` (and the two `States.ALL` misses).
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// A task or the execution ran longer than its `TimeoutSeconds` (or `HeartbeatSeconds`).
    pub const TIMEOUT: &str = "States.Timeout";
    /// Bad data at run time (a path matching nothing, a transition limit); never caught.
    pub const RUNTIME: &str = "States.Runtime";
    /// A Choice state matched no rule and has no `Default`.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// `ResultPath` cannot be applied to the state's input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// An intrinsic function failed on its arguments.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// A state's input, output or task result exceeds the payload limit.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
}

/// A definition that cannot be loaded; the message names the state and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AslError {
    /// A `${Name}` placeholder has no substitution.
    #[error("definition substitution ${{{0}}} has no value")]
    MissingSubstitution(String),
    /// The definition (after substitution) is not JSON.
    #[error("definition is not valid JSON: {0}")]
    Json(String),
    /// A field (or state type, operator, …) this interpreter does not support.
    #[error("{at}: field \"{field}\" is not supported")]
    Unsupported {
        /// `definition` or `state "Name"`.
        at: String,
        /// The field, e.g. `Arguments` or `Retry[0].Jitter`.
        field: String,
    },
    /// A supported field with a wrong value.
    #[error("{at}: field \"{field}\" {problem}")]
    Invalid {
        /// `definition` or `state "Name"`.
        at: String,
        /// The field, e.g. `Next` or `Choices[1].NumericEquals`.
        field: String,
        /// What is wrong, e.g. `names state "X", which does not exist`.
        problem: String,
    },
    /// A problem with the shape of the machine (duplicate or unreachable states).
    #[error("{0}")]
    Structure(String),
}

/// An execution (or a state) that failed: the error name and its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct ExecutionFailure {
    /// The error name, e.g. `States.Timeout` or a task's `errorType`.
    pub error: String,
    /// The human-readable cause.
    pub cause: String,
}

impl ExecutionFailure {
    /// A failure named `error` with `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// A `States.Runtime` failure.
    pub(crate) fn runtime(cause: impl Into<String>) -> Self {
        Self::new(errors::RUNTIME, cause)
    }

    /// Whether no Retry or Catch may handle it (`States.Runtime`, as in Step Functions).
    pub fn is_terminal(&self) -> bool {
        self.error == errors::RUNTIME
    }
}
