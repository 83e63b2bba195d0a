//! Telemetry as the cycle reads it: metric series and error log lines, per component.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cycle::TimeWindow;
use crate::ids::{ComponentId, TenantId};

/// The metrics analysis and monitoring read, per component (AWS/Lambda plus the seeds' custom ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MetricName {
    /// AWS/Lambda `Invocations`, Sum.
    Invocations,
    /// AWS/Lambda `Errors`, Sum.
    Errors,
    /// AWS/Lambda `Throttles`, Sum.
    Throttles,
    /// AWS/Lambda `Duration`, Average (ms).
    DurationAvg,
    /// AWS/Lambda `Duration`, p99 (ms).
    DurationP99,
    /// AWS/Lambda `ConcurrentExecutions`, Maximum.
    ConcurrentExecutions,
    /// Custom `MemoryUtilization`, Maximum (percent of the configured memory).
    MemoryUtilization,
}

impl MetricName {
    /// Every metric, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::Invocations,
        Self::Errors,
        Self::Throttles,
        Self::DurationAvg,
        Self::DurationP99,
        Self::ConcurrentExecutions,
        Self::MemoryUtilization,
    ];
}

/// One value at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DataPoint {
    /// Start of the period.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The statistic's value.
    pub value: f64,
}

/// A metric's values for one component (and, when monitoring a canary, one version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// The component.
    pub component: ComponentId,
    /// The metric.
    pub metric: MetricName,
    /// The function version the values are for (`ExecutedVersion`); none for all versions.
    pub version: Option<String>,
    /// Values in time order, one per period.
    pub points: Vec<DataPoint>,
}

impl MetricSeries {
    /// The values without timestamps.
    pub fn values(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.value).collect()
    }

    /// The sum of the values.
    pub fn sum(&self) -> f64 {
        self.points.iter().map(|p| p.value).sum()
    }
}

/// Pooled duration quantiles, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// One version's telemetry pooled over a whole window, for canary judgment: counts, not
/// per-period summaries, so a low-traffic version is weighed by its requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionTotals {
    /// The version (`ExecutedVersion`).
    pub version: String,
    /// Invocations that ran, failed ones included (`Invocations`, Sum).
    pub invocations: f64,
    /// Invocations that failed, timeouts and out-of-memory kills included (`Errors`, Sum).
    pub errors: f64,
    /// Requests refused for lack of concurrency (`Throttles`, Sum).
    pub throttles: f64,
    /// Duration quantiles over every invocation of the window; none without invocations
    /// or where the source has no percentiles.
    pub duration_ms: Option<Quantiles>,
    /// Invocations that ran longer than each threshold asked for, in order; empty when none
    /// was asked or the source cannot tell.
    pub slower_than: Vec<f64>,
    /// Duration at each percentile level asked for, in order, ms; empty when none was asked
    /// or the source cannot tell.
    #[serde(default)]
    pub percentiles: Vec<f64>,
    /// The durations of the invocations that succeeded; none when not asked for or where
    /// the source cannot tell a success from a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes: Option<SuccessDurations>,
}

/// One version's successful invocations pooled over the window: what a caller who got an
/// answer waited, without the failures' durations (often capped at the timeout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessDurations {
    /// Invocations that succeeded.
    pub requests: f64,
    /// Their duration quantiles, ms.
    pub duration_ms: Quantiles,
    /// Their duration at each level of [`DurationQuery::success_percentiles`], in order, ms;
    /// empty where the source cannot tell.
    #[serde(default)]
    pub percentiles: Vec<f64>,
}

/// What [`crate::ports::Telemetry::version_totals`] reads about durations beyond the
/// quantiles it always reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DurationQuery {
    /// Count the invocations slower than each of these, ms.
    pub slower_than_ms: Vec<f64>,
    /// Read the duration at each of these percentile levels (0–1].
    pub percentiles: Vec<f64>,
    /// Read the successful invocations' durations too, with the duration at each of these
    /// levels (0–1]; none: successes are not read (a source may need a query of its own).
    pub success_percentiles: Option<Vec<f64>>,
}

impl VersionTotals {
    /// A version with no data.
    pub fn empty(version: &str) -> Self {
        Self {
            version: version.to_owned(),
            invocations: 0.0,
            errors: 0.0,
            throttles: 0.0,
            duration_ms: None,
            slower_than: Vec::new(),
            percentiles: Vec::new(),
            successes: None,
        }
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryQuery {
    /// Only this tenant's data; none means every tenant.
    pub tenant: Option<TenantId>,
    /// Only these components; empty means every component of the fleet.
    pub components: Vec<ComponentId>,
    /// The time range.
    pub window: TimeWindow,
    /// Seconds per data point.
    pub period_seconds: u32,
}

/// One agent's own metrics to read (seed R10.2), defaults filled in: see
/// [`crate::agents::metrics::AgentMetrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSource {
    /// The agent's name.
    pub agent: String,
    /// Its tenant, or none for a fleet-wide agent.
    pub tenant_id: Option<TenantId>,
    /// The CloudWatch namespace.
    pub namespace: String,
    /// The dimensions that select it.
    pub dimensions: Vec<crate::agents::metrics::MetricDimension>,
    /// What each metric is read as, its CloudWatch name and statistic.
    pub stats: Vec<(MetricName, String, String)>,
}

/// One metric of one agent: its values per period, read as the [`MetricName`] it stands for
/// (requests as `Invocations`, latency as `DurationAvg`/`DurationP99`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSeries {
    /// The agent's name.
    pub agent: String,
    /// Its tenant.
    pub tenant_id: Option<TenantId>,
    /// What the metric stands for.
    pub metric: MetricName,
    /// Values in time order, one per period with data.
    pub points: Vec<DataPoint>,
}

/// One log row (Logs Insights `@timestamp`, `@message`, `@logStream`): an error line, or a
/// `REPORT` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// When it was logged.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The component that logged it.
    pub component: ComponentId,
    /// The message, stack trace included.
    pub message: String,
    /// The log stream (for Lambda `YYYY/MM/DD/[<version>]<hash>`, which names the version
    /// that ran), where the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
}
