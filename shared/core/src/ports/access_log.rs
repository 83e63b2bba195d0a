//! Where the MCP access log goes: handed over without waiting for storage, so a tool call
//! never waits for its own log entry (a batching writer over the store with `selfbuild
//! serve`, structured log records in CloudWatch Logs on Lambda).

use async_trait::async_trait;

use crate::error::StoreError;
use crate::records::ToolCallEvent;

/// Takes access log entries.
#[async_trait]
pub trait AccessLogSink: Send + Sync {
    /// Takes one entry; it is stored later, but before [`AccessLogSink::flush`] returns.
    fn record(&self, event: ToolCallEvent);
    /// Returns once every entry taken before the call is stored (or, failing that, written
    /// to the process log); the error says why an entry could not be stored.
    async fn flush(&self) -> Result<(), StoreError>;
}
