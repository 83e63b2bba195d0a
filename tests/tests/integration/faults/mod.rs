//! Fault injection (issue 12, docs/faults.md): the AWS adapters talk to moto through a fault
//! proxy (`selfbuild_tests::fault_proxy`) that throttles, fails, delays or drops a share of
//! calls, or lets a call take effect and fails its answer. The cycle's steps run as the state
//! machine runs them: a step whose error the Task state's `Retry` names is called again with
//! the same input, up to its `MaxAttempts`, and then caught to the state its `Catch` names
//! (both read from the real definition).
//!
//! - `sdk`: the error shapes the proxy writes are what the SDK reads, and the SDK's retries
//!   show in the proxy's log.
//! - `intake`: the dedup claim and the cycle records under DynamoDB throttles, 500s and lost
//!   answers.
//! - `deploy`: failures between `PublishVersion` and `UpdateAlias`, a throttled update, slow
//!   polls.
//! - `rollback`: failures between the rollback's steps.
//! - `world`: a function behind `live`, the adapters through the proxy, the Task states.
//! - `sweep`: seeded faults on every Lambda call over deploy → promote or roll back.

mod deploy;
mod intake;
mod rollback;
mod sdk;
mod sweep;
mod world;

use selfbuild_core::ports::{MetricRecord, MetricSink};
use time::OffsetDateTime;
use time::macros::datetime;

/// The time the tests run at (a fixed clock: no test depends on the wall clock).
pub const NOW: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

/// Metrics the tests do not read.
struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _: MetricRecord) {}
}
