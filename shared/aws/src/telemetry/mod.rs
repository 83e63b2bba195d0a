//! The Telemetry port over CloudWatch: metric series from `GetMetricData`, error rows from
//! CloudWatch Logs Insights.
//!
//! # Where each metric is read
//!
//! | [`MetricName`]         | metric, statistic               | namespace |
//! |------------------------|---------------------------------|---|
//! | `Invocations`          | `Invocations`, Sum              | `AWS/Lambda` |
//! | `Errors`               | `Errors`, Sum                   | `AWS/Lambda` |
//! | `Throttles`            | `Throttles`, Sum                | `AWS/Lambda` |
//! | `DurationAvg`          | `Duration`, Average             | `AWS/Lambda` |
//! | `DurationP99`          | `Duration`, p99                 | `AWS/Lambda` |
//! | `ConcurrentExecutions` | `ConcurrentExecutions`, Maximum | `AWS/Lambda` |
//! | `MemoryUtilization`    | `MemoryUtilization`, Maximum    | [`TelemetrySettings::custom_namespace`] |
//!
//! # Scope and dimensions
//!
//! - No tenant: the named components, or when none are named every function with an
//!   `AWS/Lambda` `Invocations` metric (`ListMetrics`), by `FunctionName`.
//! - A tenant and named components: as without a tenant. `AWS/Lambda` metrics carry no tenant
//!   and there is no registry of which functions serve which tenant yet, so a caller naming a
//!   component vouches that it is the tenant's; the values are the whole function's.
//! - A tenant and no named components: tenant-scoped telemetry requires the services to
//!   publish their metrics in the custom namespace with the dimension set
//!   `[FunctionName, TenantId]` (EMF). The components are the functions with any such metric
//!   for the tenant, and every metric (same names as the table) is read from the custom
//!   namespace by `FunctionName` + `TenantId`.
//! - Versions ([`Telemetry::version_totals`]): `AWS/Lambda` by `FunctionName`, `Resource`
//!   (`<function>:live`) and `ExecutedVersion`, one period spanning the window so every
//!   statistic pools all its requests: `Invocations`, `Errors`, `Throttles` (Sum), `Duration`
//!   p50/p90/p99 and, with a threshold t, the percentile rank `PR(t:)` (the percentage slower
//!   than t), turned into a count with `Invocations`.
//!
//! - Successes ([`DurationQuery::success_percentiles`]): one Logs Insights query
//!   ([`success_query`]) over the function's log group: the JSON log format's
//!   `platform.report` records with `record.status = "success"`, the version from the log
//!   stream name (`…/[3]…`), by version the count and `pct(record.metrics.durationMs, …)`.
//!   Text-format logs do not say whether an invocation succeeded: no successes are then
//!   returned. The query is supplementary: when it fails or takes longer than 20 s the
//!   totals come without successes and a warning says why.
//!
//! - Agents ([`Telemetry::agent_series`], seed R10.2): each registered agent's declared
//!   metrics, in its own namespace by its own dimensions (default `Agent=<name>`), one
//!   metric-math-free `MetricStat` query per agent and metric, all agents in one request (and
//!   its pages) per 500 queries; percentile statistics only with percentiles on.
//!
//! Every series asked for is returned, empty when CloudWatch has no data, except `DurationP99`
//! (and agents' `pNN` statistics) when [`TelemetrySettings::percentiles`] is off (it is then
//! neither asked for nor returned).
//!
//! # Error rows and REPORT rows
//!
//! One Logs Insights query ([`error_query`], [`report_query`] for `REPORT` lines) per 50 log
//! groups `<log_group_prefix><component>` (`REPORT` lines only of named components: they
//! carry no tenant);
//! groups that do not exist are skipped (looked up with `DescribeLogGroups` first). `@log`
//! tells which component a row belongs to. Rows outside the window are dropped, the rest are
//! returned newest first. The queries run one after another within one
//! [`TelemetrySettings::query_timeout`]; one still running then is stopped (`StopQuery`) and
//! the call is `Unavailable`, as it is when a query ends `Cancelled` or `Timeout`; a `Failed`
//! query is `Invalid`.
//!
//! # Errors
//!
//! Throttling, 5xx and other transient SDK failures are [`TelemetryError::Unavailable`], the
//! rest [`TelemetryError::Invalid`]; the message starts with the operation (`GetMetricData: …`).
//!
//! The `GetMetricData` side (query plans, series, totals) is in `metrics`, the Logs Insights
//! side (queries, log groups, polling, rows) in `insights`; settings and the port are here.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDataResult, MetricStat, ScanBy,
    StatusCode,
};
use aws_sdk_cloudwatchlogs::types::{QueryStatus, ResultField};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::DateTime;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::deployment::LIVE_ALIAS;
use selfbuild_core::error::TelemetryError;
use selfbuild_core::ids::{ComponentId, TenantId};
use selfbuild_core::ports::Telemetry;
use selfbuild_core::telemetry::{
    AgentSeries, AgentSource, DataPoint, DurationQuery, LogRow, MetricName, MetricSeries,
    Quantiles, SuccessDurations, TelemetryQuery, VersionTotals,
};
use selfbuild_core::text::{Escaped, Excerpt};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::sdk_error::{ErrorChain, is_transient};

mod insights;
mod metrics;
#[cfg(test)]
mod tests;

use self::insights::*;
pub use self::insights::{error_query, parse_insights_timestamp, report_query, success_query};
use self::metrics::*;

/// The namespace of Lambda's own metrics.
const LAMBDA_NAMESPACE: &str = "AWS/Lambda";
/// The dimension naming the function.
const FUNCTION_NAME: &str = "FunctionName";
/// The dimension naming the alias-qualified function (`<function>:<alias>`).
const RESOURCE: &str = "Resource";
/// The dimension naming the version that ran.
const EXECUTED_VERSION: &str = "ExecutedVersion";
/// The dimension naming the tenant in custom-namespace metrics.
pub const TENANT_DIMENSION: &str = "TenantId";
/// The most queries one `GetMetricData` request may carry.
pub const MAX_QUERIES_PER_REQUEST: usize = 500;
/// The most log groups one Logs Insights query may search.
pub const MAX_LOG_GROUPS_PER_QUERY: usize = 50;
/// The largest `limit` Logs Insights accepts.
pub const MAX_INSIGHTS_LIMIT: usize = 10_000;
/// Up to this many named components, each log group is looked up by name; beyond it, every
/// group under the prefix is listed once.
const NAMED_LOOKUP_MAX: usize = 10;
/// The most log groups one `DescribeLogGroups` page may return.
const LOG_GROUP_PAGE_SIZE: i32 = 50;

/// The longest the success-latency query may run: it is supplementary, and the monitor
/// function's whole look must fit in its timeout.
const SUCCESS_QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where telemetry lives and how long to wait for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// The namespace of the services' own metrics (`MemoryUtilization`, tenant-scoped metrics).
    pub custom_namespace: String,
    /// Log groups are `<log_group_prefix><component>`.
    pub log_group_prefix: String,
    /// How long to wait between `GetQueryResults` calls.
    pub query_poll_interval: Duration,
    /// How long one `error_rows` call may wait for its Logs Insights queries in all.
    pub query_timeout: Duration,
    /// Whether to ask for percentile statistics (`DurationP99`). Off only where they cannot be
    /// computed (moto answers 500 to a `p99` query).
    pub percentiles: bool,
}

impl Default for TelemetrySettings {
    /// `Selfbuild/Services`, `/aws/lambda/`, polls every second for at most a minute,
    /// percentiles on.
    fn default() -> Self {
        Self {
            custom_namespace: "Selfbuild/Services".into(),
            log_group_prefix: "/aws/lambda/".into(),
            query_poll_interval: Duration::from_secs(1),
            query_timeout: Duration::from_secs(60),
            percentiles: true,
        }
    }
}

/// Metric series from CloudWatch `GetMetricData`, error rows from Logs Insights.
#[derive(Debug, Clone)]
pub struct CloudWatchTelemetry {
    cloudwatch: aws_sdk_cloudwatch::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    settings: TelemetrySettings,
}

impl CloudWatchTelemetry {
    /// A telemetry source with clients built from `config`.
    pub fn new(config: &aws_config::SdkConfig, settings: TelemetrySettings) -> Self {
        Self::from_clients(
            aws_sdk_cloudwatch::Client::new(config),
            aws_sdk_cloudwatchlogs::Client::new(config),
            settings,
        )
    }

    /// Telemetry as the cycle reads it: AWS/Lambda metrics, the services' own namespace
    /// (`CUSTOM_METRICS_NAMESPACE`), their logs (`LOG_GROUP_PREFIX`).
    pub fn for_cycle(sdk: &aws_config::SdkConfig, config: &selfbuild_core::Config) -> Self {
        Self::new(
            sdk,
            TelemetrySettings {
                custom_namespace: config.custom_metrics_namespace.clone(),
                log_group_prefix: config.log_group_prefix.clone(),
                ..TelemetrySettings::default()
            },
        )
    }

    /// A telemetry source using existing clients.
    pub fn from_clients(
        cloudwatch: aws_sdk_cloudwatch::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
        settings: TelemetrySettings,
    ) -> Self {
        Self {
            cloudwatch,
            logs,
            settings,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &TelemetrySettings {
        &self.settings
    }

    /// `metrics` of each named function by `FunctionName`, one point each pooling the whole
    /// window (widened to whole minutes): one `GetMetricData` request for up to
    /// [`MAX_QUERIES_PER_REQUEST`] queries. Used by the health pass for selfbuild's own
    /// functions.
    pub async fn function_totals(
        &self,
        functions: &[ComponentId],
        metrics: &[MetricName],
        window: &TimeWindow,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        let (whole, period) = whole_window(window)?;
        let targets: Vec<Target> = functions
            .iter()
            .map(|component| Target {
                component: component.clone(),
                scope: Scope::Function,
            })
            .collect();
        let period = u32::try_from(period).unwrap_or(u32::MAX);
        self.read_series(&targets, metrics, &whole, period).await
    }

    /// `metrics` of each named function by `FunctionName`, one point per `period_seconds`:
    /// one `GetMetricData` request for up to [`MAX_QUERIES_PER_REQUEST`] queries. Used by
    /// the health pass for the functions selfbuild changed.
    pub async fn function_series(
        &self,
        functions: &[ComponentId],
        metrics: &[MetricName],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        let targets: Vec<Target> = functions
            .iter()
            .map(|component| Target {
                component: component.clone(),
                scope: Scope::Function,
            })
            .collect();
        self.read_series(&targets, metrics, window, period_seconds)
            .await
    }
}

#[async_trait]
impl Telemetry for CloudWatchTelemetry {
    async fn metric_series(
        &self,
        query: &TelemetryQuery,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        let targets: Vec<Target> = if query.components.is_empty() {
            let scope = query
                .tenant
                .as_ref()
                .map_or(Scope::Function, |t| Scope::Tenant(t.clone()));
            self.discover_functions(query.tenant.as_ref())
                .await?
                .into_iter()
                .map(|component| Target {
                    component,
                    scope: scope.clone(),
                })
                .collect()
        } else {
            let mut seen = BTreeSet::new();
            query
                .components
                .iter()
                .filter(|c| seen.insert(*c))
                .map(|component| Target {
                    component: component.clone(),
                    scope: Scope::Function,
                })
                .collect()
        };
        self.read_series(
            &targets,
            &MetricName::ALL,
            &query.window,
            query.period_seconds,
        )
        .await
    }

    async fn version_totals(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        durations: &DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError> {
        let (whole, period) = whole_window(window)?;
        let plan = totals_plan(function, versions, &self.settings, durations, period);
        if plan.is_empty() || whole.start >= whole.end {
            return Ok(versions.iter().map(|v| VersionTotals::empty(v)).collect());
        }
        let queries: Vec<MetricDataQuery> = plan.iter().map(|(_, q)| q.clone()).collect();
        let results = self.metric_data(&queries, &whole).await?;
        let mut totals = collect_totals(versions, durations, &results)?;
        if let Some(levels) = &durations.success_percentiles {
            // Supplementary: without it the canary is judged on every request's durations.
            match self
                .success_durations(function, versions, window, levels)
                .await
            {
                Ok(mut found) => {
                    for t in &mut totals {
                        t.successes = found.remove(&t.version);
                    }
                }
                Err(e) => warn!(
                    error = %Escaped(&e.to_string()),
                    "success latency not read; the canary is judged on all requests"
                ),
            }
        }
        Ok(totals)
    }

    async fn error_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        let query_string = error_query(query.tenant.as_ref(), limit);
        self.rows(
            &query.components,
            &query.window,
            &query_string,
            limit,
            "error",
        )
        .await
    }

    async fn agent_series(
        &self,
        agents: &[AgentSource],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<AgentSeries>, TelemetryError> {
        self.read_agent_series(agents, window, period_seconds).await
    }

    async fn report_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        if query.components.is_empty() {
            return Ok(Vec::new());
        }
        let query_string = report_query(limit);
        self.rows(
            &query.components,
            &query.window,
            &query_string,
            limit,
            "REPORT",
        )
        .await
    }
}

impl CloudWatchTelemetry {
    /// The rows of one Logs Insights query over the log groups of `components` (every group
    /// under the prefix when none are named), run per 50 groups, inside `window`, newest
    /// first, at most `limit`; `what` names them in the logs.
    async fn rows(
        &self,
        components: &[ComponentId],
        window: &TimeWindow,
        query_string: &str,
        limit: usize,
        what: &str,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        if limit == 0 || window.start >= window.end {
            return Ok(Vec::new());
        }
        let groups = self.log_groups(components).await?;
        if groups.is_empty() {
            debug!("no log groups in scope");
            return Ok(Vec::new());
        }
        let range = query_range(window);
        let deadline = Instant::now() + self.settings.query_timeout;
        let mut rows = Vec::new();
        let mut skipped = 0_usize;
        for batch in groups.chunks(MAX_LOG_GROUPS_PER_QUERY) {
            let only = match batch {
                [group] => Some(group.as_str()),
                _ => None,
            };
            for fields in self
                .run_query(batch, query_string, range, limit, deadline)
                .await?
            {
                match log_row(&fields, &self.settings.log_group_prefix, only) {
                    Ok(row) if row.timestamp >= window.start && row.timestamp < window.end => {
                        rows.push(row);
                    }
                    Ok(_) => {}
                    Err(problem) => {
                        skipped += 1;
                        warn!(problem = %Escaped(&problem), "skipping a Logs Insights row");
                    }
                }
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.timestamp));
        rows.truncate(limit);
        debug!(
            rows = rows.len(),
            skipped,
            groups = groups.len(),
            what,
            "log rows read"
        );
        Ok(rows)
    }
}

/// `Unavailable` for throttling and transient failures, `Invalid` for the rest; the message
/// names the operation.
fn sdk_failure<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> TelemetryError
where
    E: ProvideErrorKind + std::error::Error + Send + Sync + 'static,
{
    let message = format!("{operation}: {}", ErrorChain(err));
    if is_transient(err) {
        debug!(operation, error = %DisplayErrorContext(err), "telemetry call failed");
        TelemetryError::Unavailable(message)
    } else {
        warn!(operation, error = %DisplayErrorContext(err), "telemetry call was refused");
        TelemetryError::Invalid(message)
    }
}
