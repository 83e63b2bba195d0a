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
//! Every series asked for is returned, empty when CloudWatch has no data, except `DurationP99`
//! when [`TelemetrySettings::percentiles`] is off (it is then neither asked for nor returned).
//!
//! # Error rows
//!
//! One Logs Insights query ([`error_query`]) per 50 log groups `<log_group_prefix><component>`;
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
    DataPoint, DurationQuery, ErrorRow, MetricName, MetricSeries, Quantiles, SuccessDurations,
    TelemetryQuery, VersionTotals,
};
use selfbuild_core::text::{Escaped, Excerpt};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::sdk_error::{ErrorChain, is_transient};

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

    /// The functions with metrics in scope: `AWS/Lambda` `Invocations` by `FunctionName`, or
    /// for a tenant any custom-namespace metric with its `TenantId` and a `FunctionName`.
    async fn discover_functions(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ComponentId>, TelemetryError> {
        let function = DimensionFilter::builder().name(FUNCTION_NAME).build();
        let request = match tenant {
            None => self
                .cloudwatch
                .list_metrics()
                .namespace(LAMBDA_NAMESPACE)
                .metric_name("Invocations")
                .dimensions(function),
            Some(tenant) => self
                .cloudwatch
                .list_metrics()
                .namespace(&self.settings.custom_namespace)
                .dimensions(
                    DimensionFilter::builder()
                        .name(TENANT_DIMENSION)
                        .value(tenant.as_str())
                        .build(),
                )
                .dimensions(function),
        };
        let mut pages = request.into_paginator().send();
        let mut names = BTreeSet::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| sdk_failure("ListMetrics", &e))?
        {
            for metric in page.metrics() {
                names.extend(
                    metric
                        .dimensions()
                        .iter()
                        .filter(|d| d.name() == Some(FUNCTION_NAME))
                        .filter_map(|d| d.value())
                        .map(str::to_owned),
                );
            }
        }
        let components = names
            .iter()
            .filter_map(|name| match ComponentId::parse(name) {
                Ok(component) => Some(component),
                Err(problem) => {
                    warn!(problem = %Escaped(&problem), "skipping a FunctionName that is no component id");
                    None
                }
            })
            .collect::<Vec<_>>();
        debug!(
            functions = components.len(),
            tenant = tenant.map(TenantId::as_str),
            "functions discovered"
        );
        Ok(components)
    }

    /// `metrics` of every target, read with one `GetMetricData` request (and its pages) per
    /// [`MAX_QUERIES_PER_REQUEST`] queries.
    async fn read_series(
        &self,
        targets: &[Target],
        metrics: &[MetricName],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        let period = i32::try_from(period_seconds)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                TelemetryError::Invalid(format!(
                    "GetMetricData: period of {period_seconds} s is not a positive number of seconds"
                ))
            })?;
        let plan = plan(targets, metrics, &self.settings, period);
        if plan.is_empty() || window.start >= window.end {
            return collect_series(plan, &[]);
        }
        let queries: Vec<MetricDataQuery> = plan.iter().map(|p| p.query.clone()).collect();
        let results = self.metric_data(&queries, window).await?;
        collect_series(plan, &results)
    }

    /// The results of `queries` over `window`, one `GetMetricData` request (and its pages)
    /// per [`MAX_QUERIES_PER_REQUEST`] queries.
    async fn metric_data(
        &self,
        queries: &[MetricDataQuery],
        window: &TimeWindow,
    ) -> Result<Vec<MetricDataResult>, TelemetryError> {
        let start = smithy_time(window.start)?;
        let end = smithy_time(window.end)?;
        let mut results = Vec::new();
        let mut requests = 0_usize;
        for batch in queries.chunks(MAX_QUERIES_PER_REQUEST) {
            let queries = batch.to_vec();
            let mut pages = self
                .cloudwatch
                .get_metric_data()
                .set_metric_data_queries(Some(queries))
                .start_time(start)
                .end_time(end)
                .scan_by(ScanBy::TimestampAscending)
                .into_paginator()
                .send();
            requests += 1;
            while let Some(page) = pages
                .try_next()
                .await
                .map_err(|e| sdk_failure("GetMetricData", &e))?
            {
                results.extend_from_slice(page.metric_data_results());
            }
        }
        debug!(
            queries = queries.len(),
            requests,
            results = results.len(),
            "metric data read"
        );
        Ok(results)
    }

    /// The existing log groups of `components` (every group under the prefix when none are
    /// named), in name order.
    async fn log_groups(&self, components: &[ComponentId]) -> Result<Vec<String>, TelemetryError> {
        let prefix = &self.settings.log_group_prefix;
        let wanted: Vec<String> = components
            .iter()
            .map(|c| format!("{prefix}{}", c.as_str()))
            .filter(|name| {
                let ok = is_log_group_name(name);
                if !ok {
                    debug!(group = %name, "no log group can have this name; skipped");
                }
                ok
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !components.is_empty() && wanted.len() <= NAMED_LOOKUP_MAX {
            let mut found = Vec::new();
            for name in wanted {
                // Groups are listed in name order, so the group named exactly `name` (a prefix
                // of every other match) is the first if it exists.
                let page = self
                    .logs
                    .describe_log_groups()
                    .log_group_name_prefix(&name)
                    .limit(1)
                    .send()
                    .await
                    .map_err(|e| sdk_failure("DescribeLogGroups", &e))?;
                if page.log_groups().first().and_then(|g| g.log_group_name()) == Some(name.as_str())
                {
                    found.push(name);
                } else {
                    debug!(group = %name, "log group does not exist; skipped");
                }
            }
            return Ok(found);
        }
        let mut pages = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(prefix)
            .limit(LOG_GROUP_PAGE_SIZE)
            .into_paginator()
            .send();
        let mut all = BTreeSet::new();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| sdk_failure("DescribeLogGroups", &e))?
        {
            all.extend(
                page.log_groups()
                    .iter()
                    .filter_map(|g| g.log_group_name())
                    .map(str::to_owned),
            );
        }
        if components.is_empty() {
            Ok(all.into_iter().collect())
        } else {
            Ok(wanted.into_iter().filter(|n| all.contains(n)).collect())
        }
    }

    /// Runs one Logs Insights query to completion (or `deadline`) and returns its rows.
    async fn run_query(
        &self,
        groups: &[String],
        query_string: &str,
        (start, end): (i64, i64),
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<Vec<ResultField>>, TelemetryError> {
        let started = self
            .logs
            .start_query()
            .set_log_group_names(Some(groups.to_vec()))
            .start_time(start)
            .end_time(end)
            .query_string(query_string)
            .send()
            .await
            .map_err(|e| sdk_failure("StartQuery", &e))?;
        let query_id = started
            .query_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| TelemetryError::Invalid("StartQuery: no queryId in the answer".into()))?
            .to_owned();
        debug!(query = %query_id, groups = groups.len(), "Logs Insights query started");
        loop {
            let answer = self
                .logs
                .get_query_results()
                .query_id(&query_id)
                .send()
                .await
                .map_err(|e| sdk_failure("GetQueryResults", &e))?;
            match answer.status() {
                Some(QueryStatus::Complete) => {
                    let mut rows = answer.results().to_vec();
                    let mut next = answer.next_token().map(str::to_owned);
                    while let Some(token) = next.take().filter(|_| rows.len() < limit) {
                        let page = self
                            .logs
                            .get_query_results()
                            .query_id(&query_id)
                            .next_token(token)
                            .send()
                            .await
                            .map_err(|e| sdk_failure("GetQueryResults", &e))?;
                        rows.extend_from_slice(page.results());
                        next = page.next_token().map(str::to_owned);
                    }
                    return Ok(rows);
                }
                Some(QueryStatus::Failed) => {
                    return Err(TelemetryError::Invalid(format!(
                        "GetQueryResults: Logs Insights query {query_id} failed"
                    )));
                }
                Some(status @ (QueryStatus::Cancelled | QueryStatus::Timeout)) => {
                    return Err(TelemetryError::Unavailable(format!(
                        "GetQueryResults: Logs Insights query {query_id} ended {}",
                        status.as_str()
                    )));
                }
                // Scheduled, Running, Unknown, or a status added later: not finished yet.
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                self.stop_query(&query_id).await;
                return Err(TelemetryError::Unavailable(format!(
                    "GetQueryResults: Logs Insights query {query_id} did not finish within {:?}",
                    self.settings.query_timeout
                )));
            }
            tokio::time::sleep(self.settings.query_poll_interval.min(deadline - now)).await;
        }
    }

    /// Each version's successful invocations from the function's `platform.report` records
    /// ([`success_query`]); versions without any are left out. Needs the JSON log format:
    /// text-format `REPORT` lines do not say whether the invocation succeeded.
    async fn success_durations(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        levels: &[f64],
    ) -> Result<HashMap<String, SuccessDurations>, TelemetryError> {
        let groups = self.log_groups(std::slice::from_ref(function)).await?;
        let Some(query_string) = success_query(versions, levels) else {
            return Ok(HashMap::new());
        };
        if groups.is_empty() || window.start >= window.end {
            return Ok(HashMap::new());
        }
        let deadline = Instant::now() + self.settings.query_timeout.min(SUCCESS_QUERY_TIMEOUT);
        let rows = self
            .run_query(
                &groups,
                &query_string,
                query_range(window),
                versions.len(),
                deadline,
            )
            .await?;
        let mut found = HashMap::new();
        for fields in rows {
            match success_row(&fields, levels.len()) {
                Ok(Some((version, durations))) if versions.contains(&version) => {
                    found.insert(version, durations);
                }
                Ok(_) => {}
                Err(problem) => {
                    warn!(problem = %Escaped(&problem), "skipping a Logs Insights row");
                }
            }
        }
        Ok(found)
    }

    /// Stops a query given up on, so it stops counting against the concurrency quota.
    async fn stop_query(&self, query_id: &str) {
        if let Err(e) = self.logs.stop_query().query_id(query_id).send().await {
            debug!(query = %query_id, error = %DisplayErrorContext(&e), "StopQuery failed");
        }
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
    ) -> Result<Vec<ErrorRow>, TelemetryError> {
        let window = &query.window;
        if limit == 0 || window.start >= window.end {
            return Ok(Vec::new());
        }
        let groups = self.log_groups(&query.components).await?;
        if groups.is_empty() {
            debug!("no log groups in scope");
            return Ok(Vec::new());
        }
        let query_string = error_query(query.tenant.as_ref(), limit);
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
                .run_query(batch, &query_string, range, limit, deadline)
                .await?
            {
                match error_row(&fields, &self.settings.log_group_prefix, only) {
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
            "error rows read"
        );
        Ok(rows)
    }
}

/// Whose metrics a target reads.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// The whole function: `AWS/Lambda` (and the custom namespace) by `FunctionName`.
    Function,
    /// One tenant's share: the custom namespace by `FunctionName` + `TenantId`.
    Tenant(TenantId),
}

/// One component (in one scope) whose metrics are read.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    component: ComponentId,
    scope: Scope,
}

/// One query of a `GetMetricData` request and the series its result fills.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    query: MetricDataQuery,
    series: MetricSeries,
}

/// The CloudWatch metric and statistic of `metric`, and whether it is Lambda's own.
fn statistic(metric: MetricName) -> (&'static str, &'static str, bool) {
    match metric {
        MetricName::Invocations => ("Invocations", "Sum", true),
        MetricName::Errors => ("Errors", "Sum", true),
        MetricName::Throttles => ("Throttles", "Sum", true),
        MetricName::DurationAvg => ("Duration", "Average", true),
        MetricName::DurationP99 => ("Duration", "p99", true),
        MetricName::ConcurrentExecutions => ("ConcurrentExecutions", "Maximum", true),
        MetricName::MemoryUtilization => ("MemoryUtilization", "Maximum", false),
    }
}

/// The `GetMetricData` query id of `metric` for the target at `target`: `m<target>_<metric>`,
/// the metric numbered by its place in [`MetricName::ALL`]. Ids must start with a lowercase
/// letter and hold only letters, digits and `_`.
fn query_id(target: usize, metric: MetricName) -> String {
    let index = MetricName::ALL
        .iter()
        .position(|m| *m == metric)
        .unwrap_or(MetricName::ALL.len());
    format!("m{target}_{index}")
}

/// One query per target and metric, in target order; `DurationP99` only with percentiles on.
fn plan(
    targets: &[Target],
    metrics: &[MetricName],
    settings: &TelemetrySettings,
    period: i32,
) -> Vec<Planned> {
    let metrics: Vec<MetricName> = metrics
        .iter()
        .copied()
        .filter(|m| settings.percentiles || *m != MetricName::DurationP99)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut plan = Vec::with_capacity(targets.len() * metrics.len());
    for (i, target) in targets.iter().enumerate() {
        for metric in &metrics {
            let id = query_id(i, *metric);
            plan.push(Planned {
                query: metric_query(&id, target, *metric, settings, period),
                id,
                series: MetricSeries {
                    component: target.component.clone(),
                    metric: *metric,
                    version: None,
                    points: Vec::new(),
                },
            });
        }
    }
    plan
}

/// The `GetMetricData` query for one metric of one target.
fn metric_query(
    id: &str,
    target: &Target,
    metric: MetricName,
    settings: &TelemetrySettings,
    period: i32,
) -> MetricDataQuery {
    let (name, stat, lambda) = statistic(metric);
    let function = target.component.as_str();
    let (namespace, dimensions): (&str, Vec<(&str, String)>) = match &target.scope {
        Scope::Function if lambda => (LAMBDA_NAMESPACE, vec![(FUNCTION_NAME, function.into())]),
        Scope::Function => (
            &settings.custom_namespace,
            vec![(FUNCTION_NAME, function.into())],
        ),
        Scope::Tenant(tenant) => (
            &settings.custom_namespace,
            vec![
                (FUNCTION_NAME, function.into()),
                (TENANT_DIMENSION, tenant.as_str().into()),
            ],
        ),
    };
    let mut m = Metric::builder().namespace(namespace).metric_name(name);
    for (key, value) in dimensions {
        m = m.dimensions(Dimension::builder().name(key).value(value).build());
    }
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(m.build())
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

/// The planned series filled from `GetMetricData` results, which may come in any order and
/// split over pages; points in time order.
fn collect_series(
    plan: Vec<Planned>,
    results: &[MetricDataResult],
) -> Result<Vec<MetricSeries>, TelemetryError> {
    let index: HashMap<&str, usize> = plan
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut points: Vec<Vec<DataPoint>> = vec![Vec::new(); plan.len()];
    for result in results {
        let id = result.id().unwrap_or_default();
        let Some(slot) = index.get(id).and_then(|i| points.get_mut(*i)) else {
            warn!(id, "GetMetricData returned a result for no query of ours");
            continue;
        };
        let (timestamps, values) = usable(result)?;
        for (timestamp, value) in timestamps.iter().zip(values) {
            slot.push(DataPoint {
                timestamp: offset_time(timestamp)?,
                value: *value,
            });
        }
    }
    Ok(plan
        .into_iter()
        .zip(points)
        .map(|(planned, mut points)| {
            points.sort_by_key(|p| p.timestamp);
            MetricSeries {
                points,
                ..planned.series
            }
        })
        .collect())
}

/// A result's timestamps and values, or the error its status or shape calls for.
fn usable(result: &MetricDataResult) -> Result<(&[DateTime], &[f64]), TelemetryError> {
    let id = result.id().unwrap_or_default();
    match result.status_code() {
        Some(StatusCode::InternalError) => {
            return Err(TelemetryError::Unavailable(format!(
                "GetMetricData: query {id} ended InternalError"
            )));
        }
        Some(StatusCode::Forbidden) => {
            return Err(TelemetryError::Invalid(format!(
                "GetMetricData: query {id} ended Forbidden"
            )));
        }
        _ => {}
    }
    let (timestamps, values) = (result.timestamps(), result.values());
    if timestamps.len() != values.len() {
        return Err(TelemetryError::Invalid(format!(
            "GetMetricData: query {id} has {} timestamps and {} values",
            timestamps.len(),
            values.len()
        )));
    }
    Ok((timestamps, values))
}

/// The window widened to whole minutes, and one period (a multiple of 60 s) spanning it, so
/// each statistic pools every request of the window into one value.
fn whole_window(window: &TimeWindow) -> Result<(TimeWindow, i32), TelemetryError> {
    let start = window.start.unix_timestamp().div_euclid(60) * 60;
    let end = window.end.unix_timestamp() + i64::from(window.end.nanosecond() > 0);
    let minutes = (end - start + 59).div_euclid(60).max(1);
    let period = i32::try_from(minutes * 60).map_err(|_| {
        TelemetryError::Invalid(format!(
            "GetMetricData: a window of {minutes} minutes is too long for one period"
        ))
    })?;
    let start = OffsetDateTime::from_unix_timestamp(start)
        .map_err(|e| TelemetryError::Invalid(format!("window start out of range: {e}")))?;
    let whole = TimeWindow {
        start,
        end: start + time::Duration::seconds(i64::from(period)),
    };
    Ok((whole, period))
}

/// What one totals query reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TotalsStat {
    Invocations,
    Errors,
    Throttles,
    P50,
    P90,
    P99,
    /// `PR(t:)`: the percentage of invocations slower than the threshold of this index.
    Slower(usize),
    /// `pNN.NN`: the duration at the percentile level of this index.
    Percentile(usize),
}

impl TotalsStat {
    const COUNTS: [Self; 3] = [Self::Invocations, Self::Errors, Self::Throttles];
    const QUANTILES: [Self; 3] = [Self::P50, Self::P90, Self::P99];

    fn id(self, version_index: usize) -> String {
        let name = match self {
            Self::Invocations => "inv",
            Self::Errors => "err",
            Self::Throttles => "thr",
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
            Self::Slower(k) => return format!("v{version_index}_slow{k}"),
            Self::Percentile(k) => return format!("v{version_index}_pct{k}"),
        };
        format!("v{version_index}_{name}")
    }

    fn metric_and_stat(self, durations: &DurationQuery) -> (&'static str, String) {
        match self {
            Self::Invocations => ("Invocations", "Sum".into()),
            Self::Errors => ("Errors", "Sum".into()),
            Self::Throttles => ("Throttles", "Sum".into()),
            Self::P50 => ("Duration", "p50".into()),
            Self::P90 => ("Duration", "p90".into()),
            Self::P99 => ("Duration", "p99".into()),
            // Percentile rank: the lower bound is exclusive, so `PR(t:)` is "slower than t".
            Self::Slower(k) => (
                "Duration",
                format!(
                    "PR({}:)",
                    durations.slower_than_ms.get(k).copied().unwrap_or(0.0)
                ),
            ),
            Self::Percentile(k) => {
                // Hundredths of a percent at most, as `pNN.NN` takes them: `p96.48`, `p100`.
                let level = durations.percentiles.get(k).copied().unwrap_or(0.5);
                let percent = (level * 10_000.0).round() / 100.0;
                ("Duration", format!("p{percent}"))
            }
        }
    }
}

/// The queries of [`Telemetry::version_totals`]: per version, by `FunctionName`, `Resource`
/// and `ExecutedVersion`, the three counts and, with percentiles on, the duration quantiles,
/// the percentile rank above each threshold and the duration at each asked level.
fn totals_plan(
    function: &ComponentId,
    versions: &[String],
    settings: &TelemetrySettings,
    durations: &DurationQuery,
    period: i32,
) -> Vec<((usize, TotalsStat), MetricDataQuery)> {
    let mut stats: Vec<TotalsStat> = TotalsStat::COUNTS.to_vec();
    if settings.percentiles {
        stats.extend(TotalsStat::QUANTILES);
        stats.extend((0..durations.slower_than_ms.len()).map(TotalsStat::Slower));
        stats.extend((0..durations.percentiles.len()).map(TotalsStat::Percentile));
    }
    let name = function.as_str();
    let mut plan = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        for stat in &stats {
            let (metric_name, statistic) = stat.metric_and_stat(durations);
            let dimensions = [
                (FUNCTION_NAME, name.to_owned()),
                (RESOURCE, format!("{name}:{LIVE_ALIAS}")),
                (EXECUTED_VERSION, version.clone()),
            ];
            let mut metric = Metric::builder()
                .namespace(LAMBDA_NAMESPACE)
                .metric_name(metric_name);
            for (key, value) in dimensions {
                metric = metric.dimensions(Dimension::builder().name(key).value(value).build());
            }
            let query = MetricDataQuery::builder()
                .id(stat.id(i))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric.build())
                        .period(period)
                        .stat(statistic)
                        .build(),
                )
                .return_data(true)
                .build();
            plan.push(((i, *stat), query));
        }
    }
    plan
}

/// Each version's totals from the results: counts summed over the points, quantiles and the
/// percentile rank weighted by each point's invocations (one point when the period spans
/// the window).
fn collect_totals(
    versions: &[String],
    durations: &DurationQuery,
    results: &[MetricDataResult],
) -> Result<Vec<VersionTotals>, TelemetryError> {
    let mut points: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    for result in results {
        let id = result.id().unwrap_or_default();
        let (timestamps, values) = usable(result)?;
        let slot = points.entry(id.to_owned()).or_default();
        for (t, v) in timestamps.iter().zip(values) {
            if !v.is_finite() {
                return Err(TelemetryError::Invalid(format!(
                    "GetMetricData: query {id} returned {v}"
                )));
            }
            slot.push((t.secs(), *v));
        }
    }
    let series = |i: usize, stat: TotalsStat| points.get(&stat.id(i)).cloned().unwrap_or_default();
    Ok(versions
        .iter()
        .enumerate()
        .map(|(i, version)| {
            let sum = |stat| series(i, stat).iter().map(|(_, v)| v).sum::<f64>();
            let invocations: HashMap<i64, f64> =
                series(i, TotalsStat::Invocations).into_iter().collect();
            let total: f64 = invocations.values().sum();
            // Weighted by the invocations of the point's period (equal weights without them).
            let weighted = |stat| -> Option<f64> {
                let pts = series(i, stat);
                if pts.is_empty() {
                    return None;
                }
                let weight = |t: &i64| invocations.get(t).copied().unwrap_or(0.0);
                let w: f64 = pts.iter().map(|(t, _)| weight(t)).sum();
                Some(if w > 0.0 {
                    pts.iter().map(|(t, v)| v * weight(t)).sum::<f64>() / w
                } else {
                    pts.iter().map(|(_, v)| v).sum::<f64>() / pts.len() as f64
                })
            };
            let duration_ms = match (
                weighted(TotalsStat::P50),
                weighted(TotalsStat::P90),
                weighted(TotalsStat::P99),
            ) {
                (Some(p50), Some(p90), Some(p99)) => Some(Quantiles { p50, p90, p99 }),
                _ => None,
            };
            let thresholds = durations.slower_than_ms.len();
            // No percentiles (e.g. moto): no slow counts either, rather than zeros.
            let known = (0..thresholds)
                .all(|k| points.contains_key(&TotalsStat::Slower(k).id(i)) || total == 0.0);
            let slower_than = if known {
                (0..thresholds)
                    .map(|k| {
                        series(i, TotalsStat::Slower(k))
                            .iter()
                            .map(|(t, pct)| {
                                pct / 100.0 * invocations.get(t).copied().unwrap_or(0.0)
                            })
                            .sum::<f64>()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            VersionTotals {
                version: version.clone(),
                invocations: total,
                errors: sum(TotalsStat::Errors),
                throttles: sum(TotalsStat::Throttles),
                duration_ms,
                slower_than,
                percentiles: (0..durations.percentiles.len())
                    .map(|k| weighted(TotalsStat::Percentile(k)))
                    .collect::<Option<Vec<f64>>>()
                    .unwrap_or_default(),
                successes: None,
            }
        })
        .collect())
}

fn smithy_time(t: OffsetDateTime) -> Result<DateTime, TelemetryError> {
    DateTime::from_nanos(t.unix_timestamp_nanos())
        .map_err(|e| TelemetryError::Invalid(format!("time {t} is out of range: {e}")))
}

fn offset_time(t: &DateTime) -> Result<OffsetDateTime, TelemetryError> {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).map_err(|e| {
        TelemetryError::Invalid(format!("GetMetricData: timestamp {t} is out of range: {e}"))
    })
}

/// The Logs Insights query for error lines, newest first, at most `limit` (capped at
/// [`MAX_INSIGHTS_LIMIT`]). With a tenant, only lines whose `tenant_id` field is the tenant or
/// whose message mentions it; that filter comes before `sort` and `limit`, so `limit` counts
/// the tenant's lines only.
pub fn error_query(tenant: Option<&TenantId>, limit: usize) -> String {
    let mut query = String::from(
        "fields @timestamp, @message, @logStream, @log \
         | filter @message like /(?i)(error|exception|timed out|signal: killed)/",
    );
    if let Some(tenant) = tenant {
        let value = insights_string(tenant.as_str());
        query.push_str(&format!(
            " | filter tenant_id = {value} or @message like {value}"
        ));
    }
    query.push_str(&format!(
        " | sort @timestamp desc | limit {}",
        limit.clamp(1, MAX_INSIGHTS_LIMIT)
    ));
    query
}

/// The Logs Insights query for the successful invocations of `versions`: the JSON log
/// format's `platform.report` records with `record.status = "success"`, the version taken
/// from the log stream name (`2026/11/22/[3]…`), by version the count and the duration at
/// p50, p90, p99 (`q0`–`q2`) and at each of `levels` (`l0`…). None when no version is a
/// published version number or `$LATEST`.
pub fn success_query(versions: &[String], levels: &[f64]) -> Option<String> {
    let names: Vec<String> = versions
        .iter()
        .filter(|v| v.as_str() == "$LATEST" || version_number_like(v))
        .map(|v| insights_string(v))
        .collect();
    if names.is_empty() {
        return None;
    }
    let duration = "record.metrics.durationMs";
    let mut stats = vec!["count(*) as requests".to_owned()];
    for (k, percent) in [50.0, 90.0, 99.0].iter().enumerate() {
        stats.push(format!("pct({duration}, {percent}) as q{k}"));
    }
    for (k, level) in levels.iter().enumerate() {
        let percent = (level.clamp(0.0, 1.0) * 100.0 * 1e4).round() / 1e4;
        stats.push(format!("pct({duration}, {percent}) as l{k}"));
    }
    Some(format!(
        "filter type = \"platform.report\" and record.status = \"success\" \
         | parse @logStream /\\[(?<version>[^\\]]+)\\]/ \
         | filter version in [{}] \
         | stats {} by version",
        names.join(", "),
        stats.join(", ")
    ))
}

/// True for a published version number (`1`…`18446744073709551615`).
fn version_number_like(version: &str) -> bool {
    !version.is_empty() && version.len() <= 20 && version.bytes().all(|b| b.is_ascii_digit())
}

/// One row of [`success_query`]: the version and its successes; none when it counted none.
fn success_row(
    fields: &[ResultField],
    levels: usize,
) -> Result<Option<(String, SuccessDurations)>, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.field() == Some(name))
            .and_then(|f| f.value())
    };
    let number = |name: &str| -> Result<f64, String> {
        let text = field(name).ok_or_else(|| format!("no `{name}` in the row"))?;
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{name}` is not a duration or count: {}", Excerpt(text)))
    };
    let version = field("version")
        .ok_or("no `version` in the row")?
        .to_owned();
    let requests = number("requests")?;
    if requests <= 0.0 {
        return Ok(None);
    }
    let duration_ms = Quantiles {
        p50: number("q0")?,
        p90: number("q1")?,
        p99: number("q2")?,
    };
    let percentiles = (0..levels)
        .map(|k| number(&format!("l{k}")))
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(Some((
        version,
        SuccessDurations {
            requests,
            duration_ms,
            percentiles,
        },
    )))
}

/// `value` as a double-quoted Logs Insights string literal.
fn insights_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `StartQuery`'s `startTime` and `endTime` in epoch seconds. Both are inclusive, so the
/// range covers the window's start second to the second after its end; rows outside the
/// window are dropped afterwards.
fn query_range(window: &TimeWindow) -> (i64, i64) {
    let start = window.start.unix_timestamp();
    let end = window.end.unix_timestamp();
    let end = if window.end.nanosecond() == 0 {
        end
    } else {
        end + 1
    };
    (start, end)
}

/// True if `name` could name a log group: 1–512 of `[A-Za-z0-9._/#-]`.
fn is_log_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '#'))
}

/// A Logs Insights `@timestamp`: `2026-11-22 05:00:00.123`, UTC. moto answers epoch
/// milliseconds (`1795323600123`) instead; those are read too.
pub fn parse_insights_timestamp(value: &str) -> Option<OffsetDateTime> {
    let format = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(value, format) {
        return Some(t.assume_utc());
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let millis: i128 = value.parse().ok()?;
        return OffsetDateTime::from_unix_timestamp_nanos(millis * 1_000_000).ok();
    }
    None
}

/// The component whose log group `@log` names. `@log` is `<account>:<group>` on AWS and
/// `<group>` on moto; either way the group is what follows the last `:` (group names have none).
fn component_of_log(log: &str, prefix: &str) -> Result<ComponentId, String> {
    let group = log.rsplit_once(':').map_or(log, |(_, group)| group);
    let name = group
        .strip_prefix(prefix)
        .ok_or_else(|| format!("log group {group:?} is not under {prefix:?}"))?;
    ComponentId::parse(name).map_err(|e| e.to_string())
}

/// One Logs Insights row as an error row. `only_group` is the group when the query searched
/// one, used if the row has no `@log`.
fn error_row(
    fields: &[ResultField],
    prefix: &str,
    only_group: Option<&str>,
) -> Result<ErrorRow, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.field() == Some(name))
            .and_then(ResultField::value)
    };
    let raw_time = field("@timestamp").ok_or("a row has no @timestamp")?;
    let timestamp = parse_insights_timestamp(raw_time)
        .ok_or_else(|| format!("@timestamp {raw_time:?} is not a Logs Insights timestamp"))?;
    let log = field("@log")
        .or(only_group)
        .ok_or("a row has no @log, and the query searched several groups")?;
    let message = field("@message").ok_or("a row has no @message")?;
    Ok(ErrorRow {
        timestamp,
        component: component_of_log(log, prefix)?,
        message: message.trim_end_matches(['\n', '\r']).to_owned(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk_error::test_support::service_error;
    use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataError, GetMetricDataOutput};
    use aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput;
    use aws_sdk_cloudwatchlogs::operation::get_query_results::GetQueryResultsOutput;
    use aws_sdk_cloudwatchlogs::operation::start_query::{StartQueryError, StartQueryOutput};
    use aws_sdk_cloudwatchlogs::operation::stop_query::StopQueryOutput;
    use aws_sdk_cloudwatchlogs::types::LogGroup;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;
    use time::macros::datetime;

    fn component(name: &str) -> ComponentId {
        ComponentId::parse(name).unwrap()
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn target(name: &str, scope: Scope) -> Target {
        Target {
            component: component(name),
            scope,
        }
    }

    fn window() -> TimeWindow {
        TimeWindow {
            start: datetime!(2026-11-22 05:00 UTC),
            end: datetime!(2026-11-22 05:10 UTC),
        }
    }

    fn query(tenant: Option<&str>, components: &[&str]) -> TelemetryQuery {
        TelemetryQuery {
            tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
            components: components.iter().map(|c| component(c)).collect(),
            window: window(),
            period_seconds: 60,
        }
    }

    fn no_percentiles() -> TelemetrySettings {
        TelemetrySettings {
            percentiles: false,
            ..TelemetrySettings::default()
        }
    }

    /// (namespace, metric, stat, dimensions) of a planned query.
    fn shape(q: &MetricDataQuery) -> (String, String, String, Vec<(String, String)>) {
        let stat = q.metric_stat().unwrap();
        let metric = stat.metric().unwrap();
        (
            metric.namespace().unwrap().to_owned(),
            metric.metric_name().unwrap().to_owned(),
            stat.stat().unwrap().to_owned(),
            metric
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap().to_owned(), d.value().unwrap().to_owned()))
                .collect(),
        )
    }

    fn dims(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn result(id: &str, points: &[(i64, f64)]) -> MetricDataResult {
        let mut r = MetricDataResult::builder()
            .id(id)
            .status_code(StatusCode::Complete);
        for (secs, value) in points {
            r = r.timestamps(DateTime::from_secs(*secs)).values(*value);
        }
        r.build()
    }

    fn row(fields: &[(&str, &str)]) -> Vec<ResultField> {
        fields
            .iter()
            .map(|(f, v)| ResultField::builder().field(*f).value(*v).build())
            .collect()
    }

    #[test]
    fn query_ids_name_the_target_and_the_metric() {
        assert_eq!(query_id(0, MetricName::Invocations), "m0_0");
        assert_eq!(query_id(0, MetricName::DurationAvg), "m0_3");
        assert_eq!(query_id(12, MetricName::MemoryUtilization), "m12_6");

        // GIVEN three targets and every metric
        let targets = [
            target("a", Scope::Function),
            target("b", Scope::Function),
            target("c", Scope::Function),
        ];
        let plan = plan(
            &targets,
            &MetricName::ALL,
            &TelemetrySettings::default(),
            60,
        );
        // THEN the ids are unique, valid GetMetricData ids, and each names its series
        assert_eq!(plan.len(), 21);
        let ids: BTreeSet<&str> = plan.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), 21);
        for p in &plan {
            assert!(
                p.id.starts_with(|c: char| c.is_ascii_lowercase()),
                "{}",
                p.id
            );
            assert!(
                p.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{}",
                p.id
            );
            assert_eq!(p.query.id(), Some(p.id.as_str()));
        }
        let m1_4 = plan.iter().find(|p| p.id == "m1_4").unwrap();
        assert_eq!(m1_4.series.component.as_str(), "b");
        assert_eq!(m1_4.series.metric, MetricName::DurationP99);
    }

    #[test]
    fn every_metric_has_its_namespace_statistic_and_dimensions() {
        let plan = plan(
            &[target("orders-api", Scope::Function)],
            &MetricName::ALL,
            &TelemetrySettings::default(),
            300,
        );
        let shapes: Vec<_> = plan.iter().map(|p| shape(&p.query)).collect();
        let by_fn = dims(&[("FunctionName", "orders-api")]);
        let lambda = |m: &str, s: &str| ("AWS/Lambda".into(), m.into(), s.into(), by_fn.clone());
        assert_eq!(
            shapes,
            [
                lambda("Invocations", "Sum"),
                lambda("Errors", "Sum"),
                lambda("Throttles", "Sum"),
                lambda("Duration", "Average"),
                lambda("Duration", "p99"),
                lambda("ConcurrentExecutions", "Maximum"),
                (
                    "Selfbuild/Services".into(),
                    "MemoryUtilization".into(),
                    "Maximum".into(),
                    by_fn.clone()
                ),
            ]
        );
        assert!(
            plan.iter()
                .all(|p| p.query.metric_stat().unwrap().period() == Some(300))
        );
    }

    #[test]
    fn percentiles_are_asked_for_unless_turned_off() {
        let targets = [target("orders-api", Scope::Function)];
        let stats = |settings: &TelemetrySettings| -> Vec<String> {
            plan(&targets, &MetricName::ALL, settings, 60)
                .iter()
                .map(|p| shape(&p.query).2)
                .collect()
        };
        assert!(stats(&TelemetrySettings::default()).contains(&"p99".to_owned()));
        let without = stats(&no_percentiles());
        assert_eq!(without.len(), 6);
        assert!(!without.contains(&"p99".to_owned()));
    }

    #[test]
    fn tenant_and_version_scopes_use_their_dimensions() {
        let settings = TelemetrySettings::default();
        let tenant_plan = plan(
            &[target("orders-api", Scope::Tenant(tenant("acme")))],
            &[MetricName::Errors],
            &settings,
            60,
        );
        assert_eq!(
            shape(&tenant_plan[0].query),
            (
                "Selfbuild/Services".into(),
                "Errors".into(),
                "Sum".into(),
                dims(&[("FunctionName", "orders-api"), ("TenantId", "acme")])
            )
        );
        assert_eq!(tenant_plan[0].series.version, None);

        let totals = totals_plan(
            &component("orders-api"),
            &["7".into()],
            &settings,
            &DurationQuery {
                slower_than_ms: vec![850.5, 120.0],
                percentiles: vec![0.9648, 1.0],
                success_percentiles: None,
            },
            3600,
        );
        let stats: Vec<String> = totals.iter().map(|(_, q)| shape(q).2).collect();
        assert_eq!(
            stats,
            [
                "Sum",
                "Sum",
                "Sum",
                "p50",
                "p90",
                "p99",
                "PR(850.5:)",
                "PR(120:)",
                "p96.48",
                "p100"
            ]
        );
        let ids: Vec<&str> = totals
            .iter()
            .map(|(_, q)| q.id().unwrap_or_default())
            .collect();
        assert_eq!(ids[6..], ["v0_slow0", "v0_slow1", "v0_pct0", "v0_pct1"]);
        for (_, q) in &totals {
            assert_eq!(
                shape(q).3,
                dims(&[
                    ("FunctionName", "orders-api"),
                    ("Resource", "orders-api:live"),
                    ("ExecutedVersion", "7")
                ])
            );
            assert_eq!(q.metric_stat().unwrap().period(), Some(3600));
        }
        // Without percentiles (moto): counts only.
        assert_eq!(
            totals_plan(
                &component("f"),
                &["1".into()],
                &no_percentiles(),
                &DurationQuery {
                    slower_than_ms: vec![1.0],
                    percentiles: vec![0.5],
                    success_percentiles: None,
                },
                60
            )
            .len(),
            3
        );
    }

    #[test]
    fn version_totals_pool_the_window_and_turn_the_percentile_rank_into_a_count() {
        let window = TimeWindow {
            start: datetime!(2026-11-22 05:00:30 UTC),
            end: datetime!(2026-11-22 05:35:10.5 UTC),
        };
        let (whole, period) = whole_window(&window).unwrap();
        assert_eq!(whole.start, datetime!(2026-11-22 05:00 UTC));
        assert_eq!(period, 36 * 60);
        assert_eq!(whole.end, datetime!(2026-11-22 05:36 UTC));
        let t = whole.start.unix_timestamp();
        let results = [
            result("v0_inv", &[(t, 9000.0)]),
            result("v0_err", &[(t, 90.0)]),
            result("v0_thr", &[(t, 0.0)]),
            result("v0_p50", &[(t, 100.0)]),
            result("v0_p90", &[(t, 180.0)]),
            result("v0_p99", &[(t, 400.0)]),
            result("v0_slow0", &[(t, 1.0)]),
            result("v0_slow1", &[(t, 50.0)]),
            result("v1_inv", &[(t, 1000.0)]),
            result("v1_err", &[(t, 30.0)]),
            result("v1_slow0", &[(t, 2.5)]),
            result("v1_slow1", &[(t, 60.0)]),
            result("v0_pct0", &[(t, 97.0)]),
            result("v0_pct1", &[(t, 104.0)]),
        ];
        let durations = DurationQuery {
            slower_than_ms: vec![400.0, 100.0],
            percentiles: vec![0.49, 0.51],
            success_percentiles: None,
        };
        let totals =
            collect_totals(&["1".into(), "2".into(), "3".into()], &durations, &results).unwrap();
        assert_eq!(totals[0].percentiles, [97.0, 104.0]);
        // A version without the percentile results gets none, rather than made-up values.
        assert!(totals[1].percentiles.is_empty());
        assert_eq!(totals[0].invocations, 9000.0);
        assert_eq!(totals[0].errors, 90.0);
        assert_eq!(totals[0].slower_than, [90.0, 4500.0]);
        assert_eq!(totals[0].duration_ms.unwrap().p99, 400.0);
        assert_eq!(totals[1].slower_than, [25.0, 600.0]);
        assert!(totals[1].duration_ms.is_none());
        assert_eq!(
            totals[2],
            VersionTotals {
                slower_than: vec![0.0, 0.0],
                ..VersionTotals::empty("3")
            }
        );
        let bad = result("v0_inv", &[(t, f64::NAN)]);
        assert!(matches!(
            collect_totals(&["1".into()], &DurationQuery::default(), &[bad]),
            Err(TelemetryError::Invalid(m)) if m.contains("v0_inv")
        ));
    }

    #[test]
    fn the_success_query_reads_platform_reports_by_version() {
        let query = success_query(
            &["3".into(), "$LATEST".into(), "live\"]".into()],
            &[0.4823, 0.99],
        )
        .unwrap();
        assert_eq!(
            query,
            "filter type = \"platform.report\" and record.status = \"success\" \
             | parse @logStream /\\[(?<version>[^\\]]+)\\]/ \
             | filter version in [\"3\", \"$LATEST\"] \
             | stats count(*) as requests, pct(record.metrics.durationMs, 50) as q0, \
             pct(record.metrics.durationMs, 90) as q1, pct(record.metrics.durationMs, 99) as q2, \
             pct(record.metrics.durationMs, 48.23) as l0, pct(record.metrics.durationMs, 99) as l1 \
             by version"
        );
        // Nothing that could be a version: no query at all.
        assert_eq!(success_query(&["live".into()], &[]), None);
    }

    fn success_row_of(version: &str, requests: &str, values: [&str; 4]) -> Vec<ResultField> {
        row(&[
            ("version", version),
            ("requests", requests),
            ("q0", values[0]),
            ("q1", values[1]),
            ("q2", values[2]),
            ("l0", values[3]),
        ])
    }

    #[tokio::test]
    async fn version_totals_read_the_successes_latency_from_the_logs_when_asked() {
        // GIVEN counts for versions 1 and 2, and platform.report records of both
        let data = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("v0_inv", &[(1_795_323_600, 900.0)]))
                .metric_data_results(result("v1_inv", &[(1_795_323_600, 100.0)]))
                .metric_data_results(result("v1_err", &[(1_795_323_600, 12.0)]))
                .build()
        });
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&data]);
        let lookup = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(|| {
            DescribeLogGroupsOutput::builder()
                .log_groups(group("/aws/lambda/orders-api"))
                .build()
        });
        let levels = vec![0.5];
        let expected = success_query(&["1".into(), "2".into()], &levels).unwrap();
        let start = mock!(aws_sdk_cloudwatchlogs::Client::start_query)
            .match_requests(move |r| {
                r.log_group_names() == ["/aws/lambda/orders-api"]
                    && r.query_string() == Some(expected.as_str())
            })
            .then_output(|| StartQueryOutput::builder().query_id("q-9").build());
        let results = mock!(aws_sdk_cloudwatchlogs::Client::get_query_results).then_output(|| {
            GetQueryResultsOutput::builder()
                .status(QueryStatus::Complete)
                .results(success_row_of("1", "890", ["120.5", "300", "800", "119"]))
                .results(success_row_of("2", "88", ["150", "310.25", "950", "140"]))
                // Not asked for, and unreadable: both left out.
                .results(success_row_of("7", "5", ["1", "1", "1", "1"]))
                .results(success_row_of("1", "x", ["1", "1", "1", "1"]))
                .build()
        });
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&lookup, &start, &results]
        );
        let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs, no_percentiles());
        let window = TimeWindow {
            start: datetime!(2026-11-22 05:00 UTC),
            end: datetime!(2026-11-22 05:10 UTC),
        };

        // WHEN both versions are read with success latency asked for
        let totals = telemetry
            .version_totals(
                &ComponentId::parse("orders-api").unwrap(),
                &["1".into(), "2".into()],
                &window,
                &DurationQuery {
                    success_percentiles: Some(levels),
                    ..DurationQuery::default()
                },
            )
            .await
            .unwrap();

        // THEN each version has its successes' quantiles and the level asked for
        assert_eq!(start.num_calls(), 1);
        let canary = totals[1].successes.as_ref().unwrap();
        assert_eq!(canary.requests, 88.0);
        assert_eq!(
            canary.duration_ms,
            Quantiles {
                p50: 150.0,
                p90: 310.25,
                p99: 950.0
            }
        );
        assert_eq!(canary.percentiles, [140.0]);
        assert_eq!(totals[0].successes.as_ref().unwrap().requests, 890.0);
        assert_eq!(totals[1].errors, 12.0);
    }

    #[tokio::test]
    async fn a_failed_success_query_leaves_the_counts_and_says_why() {
        let data = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("v0_inv", &[(1_795_323_600, 900.0)]))
                .build()
        });
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&data]);
        let lookup = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(|| {
            DescribeLogGroupsOutput::builder()
                .log_groups(group("/aws/lambda/orders-api"))
                .build()
        });
        let refused = mock!(aws_sdk_cloudwatchlogs::Client::start_query).then_error(|| {
            StartQueryError::generic(
                ErrorMetadata::builder()
                    .code("MalformedQueryException")
                    .build(),
            )
        });
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&lookup, &refused]
        );
        let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs, no_percentiles());
        let totals = telemetry
            .version_totals(
                &ComponentId::parse("orders-api").unwrap(),
                &["1".into()],
                &TimeWindow {
                    start: datetime!(2026-11-22 05:00 UTC),
                    end: datetime!(2026-11-22 05:10 UTC),
                },
                &DurationQuery {
                    success_percentiles: Some(vec![]),
                    ..DurationQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(refused.num_calls(), 1);
        assert_eq!(totals[0].invocations, 900.0);
        assert_eq!(totals[0].successes, None);
    }

    #[test]
    fn results_fill_their_series_in_time_order() {
        // GIVEN two targets, and results out of order, one split over two pages
        let targets = [
            target("a", Scope::Function),
            target("b", Scope::Tenant(tenant("acme"))),
        ];
        let metrics = [MetricName::Invocations, MetricName::Errors];
        let plan = plan(&targets, &metrics, &TelemetrySettings::default(), 60);
        let results = [
            result("m1_1", &[(120, 1.0)]),
            result("m0_0", &[(60, 5.0), (120, 6.0)]),
            result("m0_0", &[(0, 4.0)]),
            result("unknown", &[(0, 99.0)]),
        ];
        // WHEN converted
        let series = collect_series(plan, &results).unwrap();
        // THEN every planned series is there, points in time order; unknown ids are ignored
        assert_eq!(series.len(), 4);
        let a = &series[0];
        assert_eq!(
            (a.component.as_str(), a.metric),
            ("a", MetricName::Invocations)
        );
        assert_eq!(a.values(), [4.0, 5.0, 6.0]);
        assert_eq!(a.points[0].timestamp, datetime!(1970-01-01 00:00 UTC));
        assert!(series[1].points.is_empty(), "a's Errors had no data");
        let b_errors = &series[3];
        assert_eq!(b_errors.metric, MetricName::Errors);
        assert_eq!(b_errors.version, None);
        assert_eq!(b_errors.values(), [1.0]);
    }

    #[test]
    fn unusable_results_are_errors() {
        let targets = [target("a", Scope::Function)];
        let plan = || {
            plan(
                &targets,
                &[MetricName::Errors],
                &TelemetrySettings::default(),
                60,
            )
        };
        let failed = MetricDataResult::builder()
            .id("m0_1")
            .status_code(StatusCode::InternalError)
            .build();
        assert!(matches!(
            collect_series(plan(), &[failed]),
            Err(TelemetryError::Unavailable(_))
        ));
        let forbidden = MetricDataResult::builder()
            .id("m0_1")
            .status_code(StatusCode::Forbidden)
            .build();
        assert!(matches!(
            collect_series(plan(), &[forbidden]),
            Err(TelemetryError::Invalid(_))
        ));
        let ragged = MetricDataResult::builder()
            .id("m0_1")
            .timestamps(DateTime::from_secs(0))
            .build();
        assert!(matches!(
            collect_series(plan(), &[ragged]),
            Err(TelemetryError::Invalid(_))
        ));
    }

    /// Matches a request of `size` queries over the test window, and answers one datapoint
    /// per query.
    fn answer_every_query(size: usize) -> Rule {
        mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(move |r| {
                r.metric_data_queries().len() == size
                    && r.scan_by() == Some(&ScanBy::TimestampAscending)
                    && r.start_time() == Some(&DateTime::from_secs(1_795_323_600))
                    && r.end_time() == Some(&DateTime::from_secs(1_795_324_200))
            })
            .then_compute_output(|r| {
                let results = r
                    .metric_data_queries()
                    .iter()
                    .map(|q| result(q.id().unwrap(), &[(1_795_323_600, 1.0)]))
                    .collect();
                GetMetricDataOutput::builder()
                    .set_metric_data_results(Some(results))
                    .build()
            })
    }

    fn logs_unused() -> aws_sdk_cloudwatchlogs::Client {
        mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            Vec::<&Rule>::new()
        )
    }

    #[tokio::test]
    async fn more_than_500_queries_are_split_into_requests_of_at_most_500() {
        // GIVEN 100 named components: 700 queries
        let (full, rest) = (answer_every_query(500), answer_every_query(200));
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&full, &rest]);
        let telemetry = CloudWatchTelemetry::from_clients(
            cloudwatch,
            logs_unused(),
            TelemetrySettings::default(),
        );
        let names: Vec<String> = (0..100).map(|i| format!("fn-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();

        // WHEN read
        let series = telemetry.metric_series(&query(None, &names)).await.unwrap();

        // THEN two requests (500 + 200), and every series got its point back
        assert_eq!((full.num_calls(), rest.num_calls()), (1, 1));
        assert_eq!(series.len(), 700);
        assert!(series.iter().all(|s| s.values() == [1.0]));
        assert_eq!(series[699].component.as_str(), "fn-99");
        assert_eq!(series[699].metric, MetricName::MemoryUtilization);
    }

    #[tokio::test]
    async fn next_tokens_are_followed_and_pages_merged() {
        let first = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(result("m0_0", &[(1_795_323_600, 3.0)]))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(result("m0_0", &[(1_795_323_660, 4.0)]))
                    .build()
            });
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&first, &second]);
        let telemetry =
            CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());
        let series = telemetry
            .metric_series(&query(None, &["orders-api"]))
            .await
            .unwrap();
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
        let invocations = series
            .iter()
            .find(|s| s.metric == MetricName::Invocations)
            .unwrap();
        assert_eq!(invocations.values(), [3.0, 4.0]);
        assert_eq!(series.len(), 6, "p99 neither asked for nor returned");
    }

    #[tokio::test]
    async fn a_tenant_without_named_components_reads_the_functions_publishing_for_it() {
        use aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput;
        let list = mock!(aws_sdk_cloudwatch::Client::list_metrics)
            .match_requests(|r| {
                r.namespace() == Some("Selfbuild/Services")
                    && r.metric_name().is_none()
                    && r.dimensions()
                        == [
                            DimensionFilter::builder()
                                .name("TenantId")
                                .value("acme")
                                .build(),
                            DimensionFilter::builder().name("FunctionName").build(),
                        ]
            })
            .then_output(|| {
                let metric = |f: &str, m: &str| {
                    Metric::builder()
                        .namespace("Selfbuild/Services")
                        .metric_name(m)
                        .dimensions(Dimension::builder().name("FunctionName").value(f).build())
                        .dimensions(Dimension::builder().name("TenantId").value("acme").build())
                        .build()
                };
                ListMetricsOutput::builder()
                    .metrics(metric("orders-api", "Invocations"))
                    .metrics(metric("orders-api", "Errors"))
                    .metrics(metric("billing", "Invocations"))
                    .build()
            });
        let data = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .match_requests(|r| {
                r.metric_data_queries().iter().all(|q| {
                    let (namespace, _, _, dimensions) = shape(q);
                    namespace == "Selfbuild/Services"
                        && dimensions.contains(&("TenantId".into(), "acme".into()))
                })
            })
            .then_output(|| GetMetricDataOutput::builder().build());
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&list, &data]);
        let telemetry =
            CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());

        let series = telemetry
            .metric_series(&query(Some("acme"), &[]))
            .await
            .unwrap();

        assert_eq!(data.num_calls(), 1);
        let components: BTreeSet<&str> = series.iter().map(|s| s.component.as_str()).collect();
        assert_eq!(components, BTreeSet::from(["billing", "orders-api"]));
        assert_eq!(series.len(), 12);
    }

    #[tokio::test]
    async fn a_cloudwatch_failure_names_the_operation() {
        let throttled = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
            GetMetricDataError::generic(ErrorMetadata::builder().code("Throttling").build())
        });
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&throttled]);
        let telemetry =
            CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());
        let err = telemetry
            .metric_series(&query(None, &["orders-api"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TelemetryError::Unavailable(m) if m.starts_with("GetMetricData: ")),
            "{err}"
        );
    }

    #[test]
    fn failures_are_classified_by_code_and_status() {
        let error =
            |code: &str| StartQueryError::generic(ErrorMetadata::builder().code(code).build());
        assert!(matches!(
            sdk_failure(
                "StartQuery",
                &service_error(error("ThrottlingException"), 400)
            ),
            TelemetryError::Unavailable(_)
        ));
        assert!(matches!(
            sdk_failure(
                "StartQuery",
                &service_error(error("ServiceUnavailableException"), 503)
            ),
            TelemetryError::Unavailable(_)
        ));
        let invalid = sdk_failure(
            "StartQuery",
            &service_error(error("MalformedQueryException"), 400),
        );
        assert!(
            matches!(&invalid, TelemetryError::Invalid(m) if m.starts_with("StartQuery: ")),
            "{invalid}"
        );
    }

    #[test]
    fn the_error_query_finds_error_lines_newest_first() {
        assert_eq!(
            error_query(None, 200),
            "fields @timestamp, @message, @logStream, @log \
             | filter @message like /(?i)(error|exception|timed out|signal: killed)/ \
             | sort @timestamp desc | limit 200"
        );
    }

    #[test]
    fn a_tenant_filter_comes_before_sort_and_limit() {
        let q = error_query(Some(&tenant("acme.eu-1")), 50);
        assert_eq!(
            q,
            "fields @timestamp, @message, @logStream, @log \
             | filter @message like /(?i)(error|exception|timed out|signal: killed)/ \
             | filter tenant_id = \"acme.eu-1\" or @message like \"acme.eu-1\" \
             | sort @timestamp desc | limit 50"
        );
    }

    #[test]
    fn the_limit_is_capped_and_strings_escaped() {
        assert!(error_query(None, 1_000_000).ends_with("| limit 10000"));
        assert_eq!(insights_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(insights_string("acme"), "\"acme\"");
    }

    #[test]
    fn logs_insights_timestamps_are_utc() {
        assert_eq!(
            parse_insights_timestamp("2026-11-22 05:00:00.123"),
            Some(datetime!(2026-11-22 05:00:00.123 UTC))
        );
        assert_eq!(
            parse_insights_timestamp("2026-11-22 05:00:07"),
            Some(datetime!(2026-11-22 05:00:07 UTC))
        );
        // moto's answer: epoch milliseconds
        assert_eq!(
            parse_insights_timestamp("1795323600123"),
            Some(datetime!(2026-11-22 05:00:00.123 UTC))
        );
        assert_eq!(parse_insights_timestamp("2026-11-22T05:00:00Z"), None);
        assert_eq!(parse_insights_timestamp(""), None);
    }

    #[test]
    fn the_query_range_is_in_epoch_seconds_and_covers_the_window() {
        assert_eq!(query_range(&window()), (1_795_323_600, 1_795_324_200));
        let ragged = TimeWindow {
            start: datetime!(2026-11-22 05:00:00.5 UTC),
            end: datetime!(2026-11-22 05:10:00.5 UTC),
        };
        assert_eq!(query_range(&ragged), (1_795_323_600, 1_795_324_201));
    }

    #[test]
    fn rows_name_their_component_by_log_group() {
        let prefix = "/aws/lambda/";
        let aws = row(&[
            ("@timestamp", "2026-11-22 05:03:00.000"),
            ("@message", "ERROR boom\n"),
            ("@logStream", "2026/11/22/[$LATEST]abc"),
            ("@log", "123456789012:/aws/lambda/orders-api"),
            ("@ptr", "xyz"),
        ]);
        let r = error_row(&aws, prefix, None).unwrap();
        assert_eq!(r.component.as_str(), "orders-api");
        assert_eq!(r.message, "ERROR boom");
        assert_eq!(r.timestamp, datetime!(2026-11-22 05:03 UTC));

        let moto = row(&[
            ("@timestamp", "1795323780000"),
            ("@message", "Task timed out"),
            ("@log", "/aws/lambda/search"),
        ]);
        assert_eq!(
            error_row(&moto, prefix, None).unwrap().component.as_str(),
            "search"
        );

        let no_log = row(&[("@timestamp", "1795323780000"), ("@message", "x")]);
        assert_eq!(
            error_row(&no_log, prefix, Some("/aws/lambda/one"))
                .unwrap()
                .component
                .as_str(),
            "one"
        );
        assert!(error_row(&no_log, prefix, None).is_err());
        let elsewhere = row(&[
            ("@timestamp", "1795323780000"),
            ("@message", "x"),
            ("@log", "/ecs/thing"),
        ]);
        assert!(error_row(&elsewhere, prefix, None).is_err());
    }

    #[test]
    fn only_possible_log_group_names_are_looked_up() {
        assert!(is_log_group_name("/aws/lambda/orders-api_v2.1"));
        assert!(!is_log_group_name("/aws/lambda/orders api"));
        assert!(!is_log_group_name(""));
    }

    fn group(name: &str) -> LogGroup {
        LogGroup::builder().log_group_name(name).build()
    }

    fn results_row(at: &str, message: &str, log: &str) -> Vec<ResultField> {
        row(&[("@timestamp", at), ("@message", message), ("@log", log)])
    }

    #[tokio::test]
    async fn error_rows_query_existing_groups_and_poll_until_complete() {
        // GIVEN orders-api has a log group, ghost has none
        let lookup = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups)
            .match_requests(|r| r.limit() == Some(1))
            .then_compute_output(|r| {
                let prefix = r.log_group_name_prefix().unwrap_or_default();
                let mut out = DescribeLogGroupsOutput::builder();
                if "/aws/lambda/orders-api".starts_with(prefix) {
                    out = out.log_groups(group("/aws/lambda/orders-api"));
                }
                out.build()
            });
        let start = mock!(aws_sdk_cloudwatchlogs::Client::start_query)
            .match_requests(|r| {
                r.log_group_names() == ["/aws/lambda/orders-api"]
                    && r.start_time() == Some(1_795_323_600)
                    && r.end_time() == Some(1_795_324_200)
                    && r.query_string() == Some(error_query(Some(&tenant("acme")), 2).as_str())
            })
            .then_output(|| StartQueryOutput::builder().query_id("q-1").build());
        // and the query runs a while, then completes with rows in and out of the window
        let results = mock!(aws_sdk_cloudwatchlogs::Client::get_query_results)
            .match_requests(|r| r.query_id() == Some("q-1"))
            .sequence()
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Scheduled)
                    .build()
            })
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Running)
                    .build()
            })
            .output(|| {
                GetQueryResultsOutput::builder()
                    .status(QueryStatus::Complete)
                    .results(results_row(
                        "2026-11-22 05:10:00.000",
                        "ERROR at the end, outside",
                        "123456789012:/aws/lambda/orders-api",
                    ))
                    .results(results_row(
                        "2026-11-22 05:09:00.000",
                        "ERROR newest",
                        "123456789012:/aws/lambda/orders-api",
                    ))
                    .results(results_row(
                        "2026-11-22 05:01:00.000",
                        "ERROR older",
                        "123456789012:/aws/lambda/orders-api",
                    ))
                    .build()
            })
            .build();
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&lookup, &start, &results]
        );
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, Vec::<&Rule>::new());
        let settings = TelemetrySettings {
            query_poll_interval: Duration::from_millis(1),
            ..TelemetrySettings::default()
        };
        let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs, settings);

        // WHEN asked for two rows
        let rows = telemetry
            .error_rows(&query(Some("acme"), &["orders-api", "ghost"]), 2)
            .await
            .unwrap();

        // THEN one query over the existing group, polled three times; the window holds
        assert_eq!(lookup.num_calls(), 2);
        assert_eq!(start.num_calls(), 1);
        assert_eq!(results.num_calls(), 3);
        let messages: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages, ["ERROR newest", "ERROR older"]);
        assert!(rows.iter().all(|r| r.component.as_str() == "orders-api"));
    }

    #[tokio::test]
    async fn a_query_that_does_not_finish_in_time_is_stopped() {
        let list = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(|| {
            DescribeLogGroupsOutput::builder()
                .log_groups(group("/aws/lambda/a"))
                .log_groups(group("/aws/lambda/b"))
                .build()
        });
        let start = mock!(aws_sdk_cloudwatchlogs::Client::start_query)
            .match_requests(|r| r.log_group_names() == ["/aws/lambda/a", "/aws/lambda/b"])
            .then_output(|| StartQueryOutput::builder().query_id("q-slow").build());
        let running = mock!(aws_sdk_cloudwatchlogs::Client::get_query_results).then_output(|| {
            GetQueryResultsOutput::builder()
                .status(QueryStatus::Running)
                .build()
        });
        let stop = mock!(aws_sdk_cloudwatchlogs::Client::stop_query)
            .match_requests(|r| r.query_id() == Some("q-slow"))
            .then_output(|| StopQueryOutput::builder().success(true).build());
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&list, &start, &running, &stop]
        );
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, Vec::<&Rule>::new());
        let settings = TelemetrySettings {
            query_poll_interval: Duration::from_millis(1),
            query_timeout: Duration::from_millis(20),
            ..TelemetrySettings::default()
        };
        let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs, settings);

        let err = telemetry
            .error_rows(&query(None, &[]), 10)
            .await
            .unwrap_err();

        assert!(matches!(err, TelemetryError::Unavailable(_)), "{err}");
        assert_eq!(stop.num_calls(), 1);
        assert!(running.num_calls() >= 2);
    }

    #[tokio::test]
    async fn a_failed_query_is_invalid() {
        let list = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(|| {
            DescribeLogGroupsOutput::builder()
                .log_groups(group("/aws/lambda/a"))
                .build()
        });
        let start = mock!(aws_sdk_cloudwatchlogs::Client::start_query)
            .then_output(|| StartQueryOutput::builder().query_id("q").build());
        let failed = mock!(aws_sdk_cloudwatchlogs::Client::get_query_results).then_output(|| {
            GetQueryResultsOutput::builder()
                .status(QueryStatus::Failed)
                .build()
        });
        let logs = mock_client!(
            aws_sdk_cloudwatchlogs,
            RuleMode::MatchAny,
            [&list, &start, &failed]
        );
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, Vec::<&Rule>::new());
        let telemetry =
            CloudWatchTelemetry::from_clients(cloudwatch, logs, TelemetrySettings::default());
        let err = telemetry
            .error_rows(&query(None, &["a"]), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, TelemetryError::Invalid(_)), "{err}");
    }

    #[tokio::test]
    async fn nothing_is_asked_for_no_rows() {
        let logs = logs_unused();
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, Vec::<&Rule>::new());
        let telemetry =
            CloudWatchTelemetry::from_clients(cloudwatch, logs, TelemetrySettings::default());
        assert!(
            telemetry
                .error_rows(&query(None, &["a"]), 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
