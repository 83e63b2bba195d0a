//! The two access log sinks ([`AccessLogSink`]): a tool call hands its entry over and
//! answers; it never waits for the entry to be stored.
//!
//! - [`BatchedAccessLog`] (`selfbuild serve`): one writer task takes every entry waiting and
//!   commits them in one store transaction (group commit: the busier the endpoint, the larger
//!   the batches; entries gather for 10 ms after the first of a batch). [`AccessLogSink::flush`] waits for what was handed over; `serve` calls it
//!   on shutdown, so a graceful stop loses nothing.
//! - [`LogRecordAccessLog`] (Lambda): each entry is one JSON line on stdout, a structured
//!   record in the function's CloudWatch Logs group, written before the answer leaves.
//!   Logs Insights reads its fields: `filter record = "mcp_tool_call" | stats count() by
//!   key_id, outcome`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use selfbuild_core::error::StoreError;
use selfbuild_core::ports::{AccessLog, AccessLogSink};
use selfbuild_core::records::ToolCallEvent;
use selfbuild_core::text::Escaped;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

/// The largest batch one transaction commits.
const MAX_BATCH: usize = 4096;

/// How long the writer lets entries gather after the first of a batch: at most this much
/// later than the call, an entry is stored, and a busy endpoint commits about 100 times a
/// second, not once per call. A flush does not wait for it.
const GATHER: Duration = Duration::from_millis(10);

/// How often a failed batch is tried again, and the waits between tries.
const RETRY_WAITS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

enum Message {
    Entry(ToolCallEvent),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// Entries handed to one writer task that commits them to the store in batches.
pub struct BatchedAccessLog {
    sender: mpsc::UnboundedSender<Message>,
}

impl BatchedAccessLog {
    /// Starts the writer on the current tokio runtime.
    pub fn spawn(store: Arc<dyn AccessLog>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, receiver));
        Self { sender }
    }
}

#[async_trait]
impl AccessLogSink for BatchedAccessLog {
    fn record(&self, event: ToolCallEvent) {
        if let Err(mpsc::error::SendError(Message::Entry(event))) =
            self.sender.send(Message::Entry(event))
        {
            // The writer is gone (its runtime shut down): the process log keeps the entry.
            lost(&event, "the access log writer has stopped");
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.sender
            .send(Message::Flush(done))
            .map_err(|_| StoreError::Unavailable("the access log writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Unavailable("the access log writer has stopped".into()))?
    }
}

/// The writer: takes every message waiting, commits the entries among them in one
/// transaction, then answers the flushes that came after them.
async fn write_batches(store: Arc<dyn AccessLog>, mut receiver: mpsc::UnboundedReceiver<Message>) {
    let mut batch = Vec::new();
    let mut flushes = Vec::new();
    loop {
        let Some(first) = receiver.recv().await else {
            return;
        };
        if matches!(first, Message::Entry(_)) {
            tokio::time::sleep(GATHER).await;
        }
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Entry(event) => batch.push(event),
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < MAX_BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        let result = commit(&*store, &batch).await;
        batch.clear();
        for done in flushes.drain(..) {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(e.to_string())),
            };
            let _ = done.send(answer);
        }
    }
}

/// Commits a batch, trying again after a failure; a batch that cannot be stored goes to the
/// process log entry by entry, so nothing is dropped unseen.
async fn commit(store: &dyn AccessLog, batch: &[ToolCallEvent]) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut result = store.record_tool_calls(batch).await;
    for wait in RETRY_WAITS {
        let Err(e) = &result else {
            return Ok(());
        };
        warn!(error = %Escaped(e), entries = batch.len(), "access log batch not written; trying again");
        tokio::time::sleep(wait).await;
        result = store.record_tool_calls(batch).await;
    }
    if let Err(e) = &result {
        error!(error = %Escaped(e), entries = batch.len(), "access log batch not written");
        for event in batch {
            lost(event, "the store refused it");
        }
    }
    result
}

/// An entry that could not be stored, in the process log with every field.
fn lost(event: &ToolCallEvent, why: &str) {
    error!(
        at = %event.at,
        key = %Escaped(&event.key_id),
        tenant = ?event.tenant_id.as_ref().map(|t| t.as_str()),
        tool = %Escaped(&event.tool),
        outcome = %event.outcome,
        detail = %Escaped(&event.detail),
        why,
        "access log entry not stored"
    );
}

/// Entries as structured log records: one JSON object per line, written before the call
/// answers (on Lambda, stdout is the function's CloudWatch Logs stream).
pub struct LogRecordAccessLog<W> {
    out: Mutex<W>,
}

/// The `record` field that marks an access log line.
pub const RECORD_TYPE: &str = "mcp_tool_call";

impl LogRecordAccessLog<std::io::Stdout> {
    /// Records on stdout.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write + Send> LogRecordAccessLog<W> {
    /// Records written to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        self.out
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One access log line: `{"record": "mcp_tool_call", "at", "key_id", "tenant_id", "tool",
/// "outcome", "detail"}` (JSON escapes every control character: one line per entry).
pub fn record_line(event: &ToolCallEvent) -> String {
    let mut line = serde_json::json!({
        "record": RECORD_TYPE,
        "at": event.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "key_id": event.key_id,
        "tenant_id": event.tenant_id,
        "tool": event.tool,
        "outcome": event.outcome,
        "detail": event.detail,
    })
    .to_string();
    line.push('\n');
    line
}

#[async_trait]
impl<W: Write + Send> AccessLogSink for LogRecordAccessLog<W> {
    fn record(&self, event: ToolCallEvent) {
        let line = record_line(&event);
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            drop(out);
            warn!(error = %e, "access log record not written to stdout");
            lost(&event, "stdout refused it");
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush()
            .map_err(|e| StoreError::Unavailable(format!("stdout: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(n: u32) -> ToolCallEvent {
        ToolCallEvent {
            at: datetime!(2026-11-22 05:00 UTC),
            key_id: format!("k{n}"),
            tenant_id: None,
            tool: "list_agents".into(),
            outcome: "ok".into(),
            detail: "two\nlines".into(),
        }
    }

    #[test]
    fn a_record_is_one_json_line_with_every_field() {
        let sink = LogRecordAccessLog::new(Vec::new());
        sink.record(event(1));
        sink.record(event(2));
        let text = String::from_utf8(sink.into_inner()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["record"], RECORD_TYPE);
        assert_eq!(lines[1]["key_id"], "k2");
        assert_eq!(lines[0]["detail"], "two\nlines");
        assert_eq!(lines[0]["at"], "2026-11-22T05:00:00Z");
    }
}
