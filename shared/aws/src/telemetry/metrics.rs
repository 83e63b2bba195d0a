//! Metric series and per-version totals from CloudWatch `GetMetricData`: the queries each
//! read plans, and the series and totals their results fill.

use super::*;
use selfbuild_core::agents::metrics::shared_namespace_problem;

impl CloudWatchTelemetry {
    /// The functions with metrics in scope: `AWS/Lambda` `Invocations` by `FunctionName`, or
    /// for a tenant any custom-namespace metric with its `TenantId` and a `FunctionName`.
    pub(super) async fn discover_functions(
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
    pub(super) async fn read_series(
        &self,
        targets: &[Target],
        metrics: &[MetricName],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        let period = positive_period(period_seconds)?;
        let plan = plan(targets, metrics, &self.settings, period);
        if plan.is_empty() || window.start >= window.end {
            return collect_series(plan, &[]);
        }
        let queries: Vec<MetricDataQuery> = plan.iter().map(|p| p.query.clone()).collect();
        let results = self.metric_data(&queries, window).await?;
        collect_series(plan, &results)
    }

    /// Every agent's declared metrics, one `GetMetricData` request (and its pages) per
    /// [`MAX_QUERIES_PER_REQUEST`] queries for all of them.
    pub(super) async fn read_agent_series(
        &self,
        agents: &[AgentSource],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<AgentSeries>, TelemetryError> {
        let period = positive_period(period_seconds)?;
        // Registration refuses these; a record written otherwise is still never read.
        let shared = [self.settings.custom_namespace.as_str()];
        let agents: Vec<AgentSource> = agents
            .iter()
            .filter(|a| {
                let problem = shared_namespace_problem(
                    &a.namespace,
                    &a.dimensions,
                    a.tenant_id.as_ref(),
                    &shared,
                );
                if let Some(problem) = &problem {
                    tracing::warn!(agent = %a.agent, problem = %problem, "agent metrics not read");
                }
                problem.is_none()
            })
            .cloned()
            .collect();
        let plan = agent_plan(&agents, &self.settings, period);
        if plan.is_empty() || window.start >= window.end {
            return collect_agent_series(plan, &[]);
        }
        let queries: Vec<MetricDataQuery> = plan.iter().map(|p| p.query.clone()).collect();
        let results = self.metric_data(&queries, window).await?;
        collect_agent_series(plan, &results)
    }

    /// The results of `queries` over `window`, one `GetMetricData` request (and its pages)
    /// per [`MAX_QUERIES_PER_REQUEST`] queries.
    pub(super) async fn metric_data(
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
}

/// `period_seconds` as `GetMetricData` takes it, if it is a positive number of seconds.
fn positive_period(period_seconds: u32) -> Result<i32, TelemetryError> {
    i32::try_from(period_seconds)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            TelemetryError::Invalid(format!(
                "GetMetricData: period of {period_seconds} s is not a positive number of seconds"
            ))
        })
}

/// Whose metrics a target reads.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scope {
    /// The whole function: `AWS/Lambda` (and the custom namespace) by `FunctionName`.
    Function,
    /// One tenant's share: the custom namespace by `FunctionName` + `TenantId`.
    Tenant(TenantId),
}

/// One component (in one scope) whose metrics are read.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) component: ComponentId,
    pub(super) scope: Scope,
}

/// One query of a `GetMetricData` request and the series its result fills.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) id: String,
    pub(super) query: MetricDataQuery,
    pub(super) series: MetricSeries,
}

/// The CloudWatch metric and statistic of `metric`, and whether it is Lambda's own.
pub(super) fn statistic(metric: MetricName) -> (&'static str, &'static str, bool) {
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
pub(super) fn query_id(target: usize, metric: MetricName) -> String {
    let index = MetricName::ALL
        .iter()
        .position(|m| *m == metric)
        .unwrap_or(MetricName::ALL.len());
    format!("m{target}_{index}")
}

/// One query per target and metric, in target order; `DurationP99` only with percentiles on.
pub(super) fn plan(
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
    stat_query(id, namespace, name, dimensions, period, stat)
}

/// A `MetricStat` query returning data: `stat` of `name` in `namespace` by `dimensions`.
fn stat_query<K: Into<String>, V: Into<String>>(
    id: &str,
    namespace: &str,
    name: &str,
    dimensions: impl IntoIterator<Item = (K, V)>,
    period: i32,
    stat: &str,
) -> MetricDataQuery {
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
pub(super) fn collect_series(
    plan: Vec<Planned>,
    results: &[MetricDataResult],
) -> Result<Vec<MetricSeries>, TelemetryError> {
    let ids: Vec<&str> = plan.iter().map(|p| p.id.as_str()).collect();
    let points = points_by_query(&ids, results)?;
    Ok(plan
        .into_iter()
        .zip(points)
        .map(|(planned, points)| MetricSeries {
            points,
            ..planned.series
        })
        .collect())
}

/// The points of each query of `ids`, in that order, from results in any order and split
/// over pages; each in time order.
fn points_by_query(
    ids: &[&str],
    results: &[MetricDataResult],
) -> Result<Vec<Vec<DataPoint>>, TelemetryError> {
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut points: Vec<Vec<DataPoint>> = vec![Vec::new(); ids.len()];
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
    for p in &mut points {
        p.sort_by_key(|p| p.timestamp);
    }
    Ok(points)
}

/// One query of an agents' `GetMetricData` request and the series its result fills.
#[derive(Debug, Clone)]
pub(super) struct AgentPlanned {
    pub(super) id: String,
    pub(super) query: MetricDataQuery,
    pub(super) series: AgentSeries,
}

/// One `MetricStat` query per agent and declared metric, in the agent's namespace by its
/// dimensions, id `a<agent>_<metric>`; percentile statistics only with percentiles on.
pub(super) fn agent_plan(
    agents: &[AgentSource],
    settings: &TelemetrySettings,
    period: i32,
) -> Vec<AgentPlanned> {
    let mut plan = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        for (j, (metric, name, stat)) in agent.stats.iter().enumerate() {
            if !settings.percentiles && stat.starts_with('p') {
                continue;
            }
            let id = format!("a{i}_{j}");
            let dimensions = agent
                .dimensions
                .iter()
                .map(|d| (d.name.as_str(), d.value.as_str()));
            let query = stat_query(&id, &agent.namespace, name, dimensions, period, stat);
            plan.push(AgentPlanned {
                id,
                query,
                series: AgentSeries {
                    agent: agent.agent.clone(),
                    tenant_id: agent.tenant_id.clone(),
                    metric: *metric,
                    points: Vec::new(),
                },
            });
        }
    }
    plan
}

/// The planned agent series filled from `GetMetricData` results.
pub(super) fn collect_agent_series(
    plan: Vec<AgentPlanned>,
    results: &[MetricDataResult],
) -> Result<Vec<AgentSeries>, TelemetryError> {
    let ids: Vec<&str> = plan.iter().map(|p| p.id.as_str()).collect();
    let points = points_by_query(&ids, results)?;
    Ok(plan
        .into_iter()
        .zip(points)
        .map(|(planned, points)| AgentSeries {
            points,
            ..planned.series
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
pub(super) fn whole_window(window: &TimeWindow) -> Result<(TimeWindow, i32), TelemetryError> {
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
pub(super) enum TotalsStat {
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
pub(super) fn totals_plan(
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
pub(super) fn collect_totals(
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
