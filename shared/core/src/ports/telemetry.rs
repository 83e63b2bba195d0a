//! Telemetry: alarms in ALARM, metric series, per-version totals and error log rows
//! (CloudWatch and CloudWatch Logs on AWS, the simulated fleet offline).

use async_trait::async_trait;

use crate::alarm::AlarmSignal;
use crate::cycle::TimeWindow;
use crate::error::TelemetryError;
use crate::ids::ComponentId;
use crate::telemetry::{
    AgentSeries, AgentSource, DurationQuery, LogRow, MetricSeries, TelemetryQuery, VersionTotals,
};

/// The alarms part of the Telemetry port.
#[async_trait]
pub trait AlarmSource: Send + Sync {
    /// Every metric and composite alarm currently in ALARM.
    async fn alarms_in_alarm(&self) -> Result<Vec<AlarmSignal>, TelemetryError>;
}

/// Metric series and error rows (the rest of the Telemetry port).
#[async_trait]
pub trait Telemetry: Send + Sync {
    /// Every metric of [`MetricName::ALL`](crate::telemetry::MetricName::ALL) for the components in scope, all versions together:
    /// each named component (one without data gets series without points), or when none is
    /// named every component with data. A source without percentile statistics leaves out
    /// `DurationP99`.
    async fn metric_series(
        &self,
        query: &TelemetryQuery,
    ) -> Result<Vec<MetricSeries>, TelemetryError>;

    /// Counts and latency of each of `versions` of one function pooled over `window` (for
    /// canary monitoring), in the order asked, with what `durations` asks for: how many
    /// invocations ran longer than each threshold and the duration at each percentile level.
    /// A version without data gets zero counts.
    async fn version_totals(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        durations: &DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError>;

    /// Error log rows for the components in scope, at most `limit`, newest first.
    async fn error_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError>;

    /// Lambda's `REPORT` lines (one per invocation: durations, memory, init) of the named
    /// components in the window, at most `limit`, newest first, each with its log stream
    /// (which names the version). They are the whole function's: they carry no tenant, so
    /// the caller names the components (as for `AWS/Lambda` metrics). A source may return
    /// other lines too (the reader skips them); one without reports returns none, the
    /// default.
    async fn report_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        let _ = (query, limit);
        Ok(Vec::new())
    }

    /// Each metric of each agent's `stats` over `window`, one point per `period_seconds`
    /// with data, every series asked for returned (empty without data). A source that
    /// holds no agent metrics returns none, the default.
    async fn agent_series(
        &self,
        agents: &[AgentSource],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<AgentSeries>, TelemetryError> {
        let _ = (agents, window, period_seconds);
        Ok(Vec::new())
    }
}
