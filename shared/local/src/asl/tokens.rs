//! The task-token broker: a `.waitForTaskToken` task registers a fresh token here, hands it
//! to its handler, and waits until someone calls [`TaskTokens::send_success`] or
//! [`TaskTokens::send_failure`] with it (as `SendTaskSuccess`/`SendTaskFailure` do), or
//! until the task times out. [`TaskTokens::changes`] tells whoever answers when a task
//! starts or stops waiting, so nobody needs to poll (a polling timer would keep
//! event-driven virtual time moving).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

use super::run::{Iteration, TaskError};
use super::template::fnv1a;

/// Tokens issued in this process, so tokens differ across brokers too.
static ISSUED: AtomicU64 = AtomicU64::new(0);

/// Shared between executions and whoever completes their tasks; clones share one broker.
#[derive(Clone)]
pub struct TaskTokens {
    inner: Arc<Mutex<Inner>>,
    /// Counts the times a task started or stopped waiting.
    changes: Arc<watch::Sender<u64>>,
}

impl Default for TaskTokens {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
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
    iterations: Vec<Iteration>,
    deadline: Option<OffsetDateTime>,
    /// Whether the task's handler has answered and the task now waits for the token.
    parked: bool,
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
    /// The Map iterations the state runs in, outermost first.
    pub iterations: Vec<Iteration>,
    /// When the task times out (TimeoutSeconds or HeartbeatSeconds), on the execution's
    /// clock; none without a timeout.
    pub deadline: Option<OffsetDateTime>,
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

    /// The tasks whose handler has answered and that now wait for their token, in the
    /// order their tokens were issued.
    pub fn pending(&self) -> Vec<PendingTask> {
        let mut pending: Vec<PendingTask> = self
            .lock()
            .waiting
            .iter()
            .filter(|(_, w)| w.parked)
            .map(|(token, w)| PendingTask {
                token: token.clone(),
                execution: w.execution.clone(),
                state: w.state.clone(),
                iterations: w.iterations.clone(),
                deadline: w.deadline,
            })
            .collect();
        // Tokens start with their zero-padded issue number.
        pending.sort_by(|a, b| a.token.cmp(&b.token));
        pending
    }

    /// Sees a change each time a task starts or stops waiting for its token; what changed
    /// is in [`TaskTokens::pending`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn complete(&self, token: &str, outcome: Result<Value, TaskError>) -> Result<(), TokenError> {
        let mut inner = self.lock();
        let Some(waiting) = inner.waiting.remove(token) else {
            return Err(if inner.closed.contains(token) {
                TokenError::TaskTimedOut(token.to_owned())
            } else {
                TokenError::TaskDoesNotExist(token.to_owned())
            });
        };
        inner.closed.insert(token.to_owned());
        drop(inner);
        let sent = waiting
            .sender
            .send(outcome)
            .map_err(|_| TokenError::TaskTimedOut(token.to_owned()));
        if waiting.parked {
            self.changed();
        }
        sent
    }

    /// Registers a fresh token for `state` of `execution` (in `iterations`), timing out at
    /// `deadline`. The token closes when the returned wait is dropped, so a timed-out or
    /// stopped task cannot be completed later.
    pub(crate) fn issue(
        &self,
        execution: &str,
        state: &str,
        iterations: &[Iteration],
        deadline: Option<OffsetDateTime>,
    ) -> TokenWait {
        let seq = ISSUED.fetch_add(1, Ordering::Relaxed);
        // Random per process, so the tokens of two processes sharing a store differ.
        let salt = RandomState::new().hash_one(seq);
        let mix = fnv1a(salt, format!("{execution}\u{0}{state}").as_bytes(), seq);
        let token = format!("{seq:08x}{mix:016x}");
        let (sender, receiver) = oneshot::channel();
        self.lock().waiting.insert(
            token.clone(),
            Waiting {
                sender,
                execution: execution.to_owned(),
                state: state.to_owned(),
                iterations: iterations.to_vec(),
                deadline,
                parked: false,
            },
        );
        TokenWait {
            token,
            receiver,
            tokens: self.clone(),
        }
    }

    /// Marks the task of `token` as waiting for it.
    fn park(&self, token: &str) {
        if let Some(waiting) = self.lock().waiting.get_mut(token) {
            waiting.parked = true;
        } else {
            return;
        }
        self.changed();
    }

    fn close(&self, token: &str) {
        let mut inner = self.lock();
        let Some(waiting) = inner.waiting.remove(token) else {
            return;
        };
        inner.closed.insert(token.to_owned());
        drop(inner);
        if waiting.parked {
            self.changed();
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
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
        self.tokens.park(&self.token);
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
        let wait = tokens.issue("exec", "Approve", &[], None);
        let token = wait.token().to_owned();
        tokens.send_success(&token, json!({"ok": true})).unwrap();
        assert_eq!(wait.wait().await.unwrap(), json!({"ok": true}));
        assert_eq!(
            tokens.send_success(&token, json!(1)),
            Err(TokenError::TaskTimedOut(token.clone()))
        );
        assert!(tokens.pending().is_empty());
    }

    #[tokio::test]
    async fn pending_lists_tasks_once_they_wait_and_changes_tell_when() {
        let tokens = TaskTokens::new();
        let mut changes = tokens.changes();
        let deadline = time::macros::datetime!(2024-05-02 12:00 UTC);
        let item = [Iteration {
            map_state: "Improve".to_owned(),
            index: 1,
        }];
        let first = tokens.issue("exec", "Approve", &item, Some(deadline));
        let second = tokens.issue("exec", "Approve", &[], None);
        assert!(tokens.pending().is_empty(), "no handler has answered yet");
        let (first_token, second_token) = (first.token().to_owned(), second.token().to_owned());
        let second = tokio::spawn(second.wait());
        let first = tokio::spawn(first.wait());
        while tokens.pending().len() < 2 {
            changes.changed().await.unwrap();
        }
        let pending = tokens.pending();
        assert_eq!(
            pending.iter().map(|p| p.token.as_str()).collect::<Vec<_>>(),
            [first_token.as_str(), second_token.as_str()],
            "in issue order"
        );
        assert_eq!(pending[0].iterations, item);
        assert_eq!(pending[0].deadline, Some(deadline));
        assert_eq!(pending[1].deadline, None);
        tokens.send_success(&first_token, json!(1)).unwrap();
        changes.changed().await.unwrap();
        assert_eq!(tokens.pending().len(), 1);
        assert_eq!(first.await.unwrap().unwrap(), json!(1));
        second.abort();
        assert!(second.await.unwrap_err().is_cancelled());
        changes.changed().await.unwrap();
        assert!(tokens.pending().is_empty(), "a dropped wait stops waiting");
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
        let wait = tokens.issue("exec", "Approve", &[], None);
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
        let wait = tokens.issue("exec", "Approve", &[], None);
        tokens
            .send_failure(wait.token(), "Rejected", "no thanks")
            .unwrap();
        assert_eq!(
            wait.wait().await.unwrap_err(),
            TaskError::new("Rejected", "no thanks")
        );
    }
}
