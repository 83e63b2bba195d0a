//! The task-token broker: a `.waitForTaskToken` task registers a fresh token here, hands it
//! to its handler, and waits until someone calls [`TaskTokens::send_success`] or
//! [`TaskTokens::send_failure`] with it (as `SendTaskSuccess`/`SendTaskFailure` do), or
//! until the task times out.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::oneshot;

use super::run::TaskError;
use super::template::fnv1a;

/// Tokens issued in this process, so tokens differ across brokers too.
static ISSUED: AtomicU64 = AtomicU64::new(0);

/// Shared between executions and whoever completes their tasks; clones share one broker.
#[derive(Clone, Default)]
pub struct TaskTokens {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for TaskTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokens")
            .field("pending", &self.lock().waiting.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<String, Waiting>,
    /// Tokens whose task completed, timed out or was stopped.
    closed: HashSet<String>,
}

struct Waiting {
    sender: oneshot::Sender<Result<Value, TaskError>>,
    execution: String,
    state: String,
}

/// A task waiting for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    /// The token to complete it with.
    pub token: String,
    /// The execution it belongs to.
    pub execution: String,
    /// The Task state that waits.
    pub state: String,
}

/// Why a token could not be completed; the names match the Step Functions API errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No task was ever given this token.
    #[error("TaskDoesNotExist: no task has the token {0}")]
    TaskDoesNotExist(String),
    /// The task already completed, timed out or stopped.
    #[error("TaskTimedOut: the task with the token {0} is no longer waiting")]
    TaskTimedOut(String),
}

impl TokenError {
    /// The Step Functions API error name (`TaskDoesNotExist`, `TaskTimedOut`).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::TaskDoesNotExist(_) => "TaskDoesNotExist",
            Self::TaskTimedOut(_) => "TaskTimedOut",
        }
    }
}

impl TaskTokens {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Completes the task waiting on `token` with `output` as its result.
    pub fn send_success(&self, token: &str, output: Value) -> Result<(), TokenError> {
        self.complete(token, Ok(output))
    }

    /// Fails the task waiting on `token` with `error` (the name Retry/Catch match) and `cause`.
    pub fn send_failure(&self, token: &str, error: &str, cause: &str) -> Result<(), TokenError> {
        self.complete(token, Err(TaskError::new(error, cause)))
    }

    /// The tasks waiting for a token now, in no particular order.
    pub fn pending(&self) -> Vec<PendingTask> {
        self.lock()
            .waiting
            .iter()
            .map(|(token, w)| PendingTask {
                token: token.clone(),
                execution: w.execution.clone(),
                state: w.state.clone(),
            })
            .collect()
    }

    fn complete(&self, token: &str, outcome: Result<Value, TaskError>) -> Result<(), TokenError> {
        let mut inner = self.lock();
        match inner.waiting.remove(token) {
            Some(waiting) => {
                inner.closed.insert(token.to_owned());
                waiting
                    .sender
                    .send(outcome)
                    .map_err(|_| TokenError::TaskTimedOut(token.to_owned()))
            }
            None if inner.closed.contains(token) => Err(TokenError::TaskTimedOut(token.to_owned())),
            None => Err(TokenError::TaskDoesNotExist(token.to_owned())),
        }
    }

    /// Registers a fresh token for `state` of `execution`. The token closes when the
    /// returned wait is dropped, so a timed-out or stopped task cannot be completed later.
    pub(crate) fn issue(&self, execution: &str, state: &str) -> TokenWait {
        let seq = ISSUED.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mix = fnv1a(nanos, format!("{execution}\u{0}{state}").as_bytes(), seq);
        let token = format!("{seq:08x}{mix:016x}");
        let (sender, receiver) = oneshot::channel();
        self.lock().waiting.insert(
            token.clone(),
            Waiting {
                sender,
                execution: execution.to_owned(),
                state: state.to_owned(),
            },
        );
        TokenWait {
            token,
            receiver,
            tokens: self.clone(),
        }
    }

    fn close(&self, token: &str) {
        let mut inner = self.lock();
        if inner.waiting.remove(token).is_some() {
            inner.closed.insert(token.to_owned());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registered token and the wait for its completion.
pub(crate) struct TokenWait {
    token: String,
    receiver: oneshot::Receiver<Result<Value, TaskError>>,
    tokens: TaskTokens,
}

impl TokenWait {
    /// The token.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Waits until the token is completed.
    pub(crate) async fn wait(mut self) -> Result<Value, TaskError> {
        match (&mut self.receiver).await {
            Ok(outcome) => outcome,
            Err(_) => Err(TaskError::new(
                super::errors::RUNTIME,
                format!("the task token {} was closed", self.token),
            )),
        }
    }
}

impl Drop for TokenWait {
    fn drop(&mut self) {
        self.tokens.close(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_token_completes_once() {
        let tokens = TaskTokens::new();
        let wait = tokens.issue("exec", "Approve");
        let token = wait.token().to_owned();
        assert_eq!(tokens.pending().len(), 1);
        assert_eq!(tokens.pending()[0].state, "Approve");
        tokens.send_success(&token, json!({"ok": true})).unwrap();
        assert_eq!(wait.wait().await.unwrap(), json!({"ok": true}));
        assert_eq!(
            tokens.send_success(&token, json!(1)),
            Err(TokenError::TaskTimedOut(token.clone()))
        );
        assert!(tokens.pending().is_empty());
    }

    #[tokio::test]
    async fn unknown_and_dropped_tokens_are_refused() {
        let tokens = TaskTokens::new();
        assert_eq!(
            tokens
                .send_failure("nope", "E", "c")
                .unwrap_err()
                .error_type(),
            "TaskDoesNotExist"
        );
        let wait = tokens.issue("exec", "Approve");
        let token = wait.token().to_owned();
        drop(wait);
        assert_eq!(
            tokens
                .send_failure(&token, "E", "c")
                .unwrap_err()
                .error_type(),
            "TaskTimedOut"
        );
    }

    #[tokio::test]
    async fn failures_reach_the_waiting_task() {
        let tokens = TaskTokens::new();
        let wait = tokens.issue("exec", "Approve");
        tokens
            .send_failure(wait.token(), "Rejected", "no thanks")
            .unwrap();
        assert_eq!(
            wait.wait().await.unwrap_err(),
            TaskError::new("Rejected", "no thanks")
        );
    }
}
