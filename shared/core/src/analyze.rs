//! analyze (R5, R6): telemetry of the cycle's window → ranked improvement opportunities.
//!
//! Impact score = expected gain × affected requests, where
//! - *affected requests* are the invocations in the window that hit the problem (timed out,
//!   ran out of memory, were throttled, failed, or — for a latency regression — every
//!   invocation in the slow part of the window), and
//! - *expected gain* is the share of them a fix is expected to recover (0–1, per kind).
//!
//! Priority combines frequency (affected ÷ invocations) with the kind's severity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::change::LambdaSettings;
use crate::cycle::{CycleMode, CycleRequest, TimeWindow};
use crate::error::TelemetryError;
use crate::ids::{ComponentId, CycleId};
use crate::logmine::{LogLine, LogTemplate, MinerConfig, mine_templates, stratified_sample};
use crate::opportunity::{Evidence, Opportunity, OpportunityKind, Priority};
use crate::ports::{Deployer, Telemetry};
use crate::stats::percentile;
use crate::telemetry::{MetricName, MetricSeries, TelemetryQuery};
use time::OffsetDateTime;

/// The most error rows one analysis reads.
pub const ERROR_ROW_LIMIT: usize = 5_000;

/// The most rows mined into templates; above it a stratified sample is mined.
pub const MINING_CAPACITY: usize = 1_000;

/// Aggregates of one component over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSummary {
    /// The component.
    pub component: ComponentId,
    /// Invocations that ran.
    pub invocations: f64,
    /// Errors.
    pub errors: f64,
    /// Throttled invocations.
    pub throttles: f64,
    /// errors ÷ invocations.
    pub error_rate: f64,
    /// throttles ÷ (invocations + throttles).
    pub throttle_rate: f64,
    /// Median of the per-period p99 durations (ms).
    pub p99_ms: Option<f64>,
    /// Highest memory utilisation seen (percent).
    pub max_memory_pct: Option<f64>,
    /// Error rows that are timeouts, scaled to all errors.
    pub timeouts: f64,
    /// Error rows that are out-of-memory kills, scaled to all errors.
    pub out_of_memory: f64,
}

/// The analyze step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// The cycle.
    pub cycle_id: CycleId,
    /// The window analysed.
    pub window: TimeWindow,
    /// Per-component aggregates.
    pub components: Vec<ComponentSummary>,
    /// Error templates, most frequent first (at most 10).
    pub templates: Vec<LogTemplate>,
    /// Ranked opportunities, at most `max_improvements`.
    pub opportunities: Vec<Opportunity>,
    /// Whether there is anything to do (the state machine's Choice reads this).
    pub has_opportunities: bool,
}

/// Reads the window's telemetry and ranks what to improve.
#[instrument(skip_all, fields(cycle = %request.cycle_id))]
pub async fn analyze(
    telemetry: &dyn Telemetry,
    deployer: &dyn Deployer,
    request: &CycleRequest,
) -> Result<AnalysisReport, TelemetryError> {
    let window = request.analysis_window;
    let period_seconds = match request.mode {
        CycleMode::Emergency => 60,
        CycleMode::Routine => 300,
    };
    let query = TelemetryQuery {
        tenant: request.tenant_id.clone(),
        components: request.components.clone(),
        window,
        period_seconds,
    };
    let series = telemetry.metric_series(&query).await?;
    let rows = telemetry.error_rows(&query, ERROR_ROW_LIMIT).await?;

    let lines: Vec<LogLine> = rows
        .iter()
        .map(|r| LogLine {
            timestamp: r.timestamp,
            message: r.message.clone(),
            component: Some(r.component.as_str().to_owned()),
        })
        .collect();
    // Stratified sample (every component and hour kept) when there is more than the miner's
    // capacity; counts are scaled back to all rows.
    let mut templates = if lines.len() > MINING_CAPACITY {
        let sample: Vec<LogLine> = stratified_sample(&lines, MINING_CAPACITY)
            .into_iter()
            .cloned()
            .collect();
        let scale = lines.len() as f64 / sample.len().max(1) as f64;
        let mut mined = mine_templates(&sample, &MinerConfig::default());
        for t in &mut mined {
            t.count = (t.count as f64 * scale).round() as u64;
        }
        mined
    } else {
        mine_templates(&lines, &MinerConfig::default())
    };

    let mut by_component: BTreeMap<ComponentId, Vec<&MetricSeries>> = BTreeMap::new();
    for s in &series {
        by_component.entry(s.component.clone()).or_default().push(s);
    }
    let mut summaries = Vec::new();
    let mut opportunities = Vec::new();
    for (component, series) in &by_component {
        let component_rows: Vec<&str> = rows
            .iter()
            .filter(|r| &r.component == component)
            .map(|r| r.message.as_str())
            .collect();
        let summary = summarize(component, series, &component_rows);
        let current = deployer
            .function_state(component)
            .await
            .ok()
            .map(|s| s.settings);
        let top_errors: Vec<String> = templates
            .iter()
            .filter(|t| t.components.iter().any(|c| c == component.as_str()))
            .take(3)
            .map(|t| t.template.clone())
            .collect();
        for found in detect(&summary, series, current.as_ref(), window) {
            opportunities.push(Opportunity {
                id: format!("{component}:{}", found.kind.as_str()),
                rank: 0,
                component: component.clone(),
                tenant_id: request.tenant_id.clone(),
                kind: found.kind,
                evidence: found.evidence,
                expected_gain: found.kind.expected_gain(),
                affected_requests: found.affected,
                impact_score: found.kind.expected_gain() * found.affected,
                priority: priority(found.kind, found.affected, summary.invocations),
                current: current.clone(),
                top_errors: top_errors.clone(),
            });
        }
        summaries.push(summary);
    }
    opportunities.sort_by(|a, b| {
        b.impact_score
            .total_cmp(&a.impact_score)
            .then_with(|| a.id.cmp(&b.id))
    });
    // One change per component per cycle: two changes to one function would confound the canary.
    let mut seen = std::collections::BTreeSet::new();
    opportunities.retain(|o| seen.insert(o.component.clone()));
    opportunities.truncate(request.max_improvements as usize);
    for (i, o) in opportunities.iter_mut().enumerate() {
        o.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    templates.truncate(10);
    info!(
        components = summaries.len(),
        opportunities = opportunities.len(),
        "analysis done"
    );
    Ok(AnalysisReport {
        cycle_id: request.cycle_id.clone(),
        window,
        components: summaries,
        templates,
        has_opportunities: !opportunities.is_empty(),
        opportunities,
    })
}

fn metric<'a>(series: &[&'a MetricSeries], name: MetricName) -> Option<&'a MetricSeries> {
    series.iter().copied().find(|s| s.metric == name)
}

fn summarize(component: &ComponentId, series: &[&MetricSeries], rows: &[&str]) -> ComponentSummary {
    let sum = |name| metric(series, name).map_or(0.0, MetricSeries::sum);
    let invocations = sum(MetricName::Invocations);
    let errors = sum(MetricName::Errors);
    let throttles = sum(MetricName::Throttles);
    let p99_ms =
        metric(series, MetricName::DurationP99).and_then(|s| percentile(&s.values(), 50.0));
    let max_memory_pct = metric(series, MetricName::MemoryUtilization).and_then(|s| {
        s.values()
            .into_iter()
            .filter(|v| v.is_finite())
            .reduce(f64::max)
    });
    // Rows are a sample of the errors: scale their shares to the error count.
    let share = |needles: &[&str]| {
        if rows.is_empty() {
            return 0.0;
        }
        let hits = rows
            .iter()
            .filter(|m| needles.iter().any(|n| m.contains(n)))
            .count() as f64;
        hits / rows.len() as f64 * errors
    };
    ComponentSummary {
        component: component.clone(),
        invocations,
        errors,
        throttles,
        error_rate: ratio(errors, invocations),
        throttle_rate: ratio(throttles, invocations + throttles),
        p99_ms,
        max_memory_pct,
        timeouts: share(&["Task timed out"]),
        // The runtime killed for memory (`Runtime exited … signal: killed`), or the
        // runtime's own `Runtime.OutOfMemory` error type; a row with both counts once.
        out_of_memory: share(&["signal: killed", "Runtime.OutOfMemory"]),
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

struct Found {
    kind: OpportunityKind,
    affected: f64,
    evidence: Vec<Evidence>,
}

fn evidence(measure: &str, value: f64, threshold: f64) -> Evidence {
    Evidence {
        measure: measure.to_owned(),
        value,
        threshold,
    }
}

fn detect(
    s: &ComponentSummary,
    series: &[&MetricSeries],
    current: Option<&LambdaSettings>,
    window: TimeWindow,
) -> Vec<Found> {
    let mut found = Vec::new();
    if s.invocations <= 0.0 && s.throttles <= 0.0 {
        return found;
    }
    let timeout_ms = current.map(|c| f64::from(c.timeout_seconds) * 1000.0);
    let timeout_share = ratio(s.timeouts, s.invocations);
    let near_timeout = matches!((s.p99_ms, timeout_ms), (Some(p), Some(t)) if p >= 0.9 * t);
    if timeout_share >= 0.01 || near_timeout {
        let mut ev = vec![evidence("timeout_share", timeout_share, 0.01)];
        if let (Some(p), Some(t)) = (s.p99_ms, timeout_ms) {
            ev.push(evidence("p99_ms_vs_timeout_ms", p, 0.9 * t));
        }
        found.push(Found {
            kind: OpportunityKind::Timeouts,
            affected: s.timeouts.max(s.invocations * 0.01),
            evidence: ev,
        });
    }
    let oom_share = ratio(s.out_of_memory, s.invocations);
    let memory_high = s.max_memory_pct.is_some_and(|m| m >= 90.0);
    if oom_share >= 0.001 || memory_high {
        found.push(Found {
            kind: OpportunityKind::MemoryPressure,
            affected: s.out_of_memory.max(s.invocations * 0.01),
            evidence: vec![
                evidence("out_of_memory_share", oom_share, 0.001),
                evidence("max_memory_pct", s.max_memory_pct.unwrap_or(0.0), 90.0),
            ],
        });
    }
    if s.throttle_rate >= 0.01 {
        found.push(Found {
            kind: OpportunityKind::Throttling,
            affected: s.throttles,
            evidence: vec![evidence("throttle_rate", s.throttle_rate, 0.01)],
        });
    }
    let other_errors = (s.errors - s.timeouts - s.out_of_memory).max(0.0);
    let other_rate = ratio(other_errors, s.invocations);
    if other_rate >= 0.02 && other_errors >= 10.0 {
        found.push(Found {
            kind: OpportunityKind::ErrorBurst,
            affected: other_errors,
            evidence: vec![evidence("application_error_rate", other_rate, 0.02)],
        });
    }
    let split = window.end - (window.end - window.start) / 4;
    let recent_invocations = metric(series, MetricName::Invocations).map_or(0.0, |s| {
        s.points
            .iter()
            .filter(|p| p.timestamp >= split)
            .map(|p| p.value)
            .sum()
    });
    let invocations: BTreeMap<OffsetDateTime, f64> = metric(series, MetricName::Invocations)
        .map(|s| s.points.iter().map(|p| (p.timestamp, p.value)).collect())
        .unwrap_or_default();
    let mean = mean_duration_split(series, &invocations, split);
    let p99 = p99_split(series, &invocations, split);
    let regression = [("recent_mean_duration_ms", mean), ("recent_p99_ms", p99)]
        .into_iter()
        .find_map(|(name, split)| {
            let (before, after) = split?;
            (after >= 1.5 * before).then(|| evidence(name, after, 1.5 * before))
        });
    if let Some(ev) = regression {
        found.push(Found {
            kind: OpportunityKind::LatencyRegression,
            affected: recent_invocations,
            evidence: vec![ev],
        });
    }
    found
}

/// The fewest invocations a period needs before its p99 is read as one: below it, a
/// period's "p99" is about its largest value, which grows with the period's traffic.
const P99_MIN_INVOCATIONS: f64 = 100.0;

/// The invocation-weighted mean duration before and after `split`: a per-request measure,
/// unmoved by how many requests a period had.
fn mean_duration_split(
    series: &[&MetricSeries],
    invocations: &BTreeMap<OffsetDateTime, f64>,
    split: OffsetDateTime,
) -> Option<(f64, f64)> {
    let avg = metric(series, MetricName::DurationAvg)?;
    let weighted = |after: bool| {
        let (mut sum, mut n) = (0.0, 0.0);
        for p in avg
            .points
            .iter()
            .filter(|p| (p.timestamp >= split) == after)
        {
            let w = invocations.get(&p.timestamp).copied().unwrap_or(0.0);
            if p.value.is_finite() && w > 0.0 {
                sum += p.value * w;
                n += w;
            }
        }
        (n > 0.0).then(|| sum / n)
    };
    Some((weighted(false)?, weighted(true)?))
}

/// The median p99 before and after `split`, over periods with at least
/// [`P99_MIN_INVOCATIONS`] invocations only.
fn p99_split(
    series: &[&MetricSeries],
    invocations: &BTreeMap<OffsetDateTime, f64>,
    split: OffsetDateTime,
) -> Option<(f64, f64)> {
    let p99 = metric(series, MetricName::DurationP99)?;
    let busy = |after: bool| -> Vec<f64> {
        p99.points
            .iter()
            .filter(|p| (p.timestamp >= split) == after)
            .filter(|p| {
                invocations.get(&p.timestamp).copied().unwrap_or(0.0) >= P99_MIN_INVOCATIONS
            })
            .map(|p| p.value)
            .collect()
    };
    Some((
        percentile(&busy(false), 50.0)?,
        percentile(&busy(true), 50.0)?,
    ))
}

fn priority(kind: OpportunityKind, affected: f64, invocations: f64) -> Priority {
    let frequency = ratio(affected, invocations.max(affected));
    match (kind.severity(), frequency) {
        (3, f) if f >= 0.10 => Priority::Critical,
        (_, f) if f >= 0.01 => Priority::High,
        (_, f) if f >= 0.001 => Priority::Medium,
        _ => Priority::Low,
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::cycle::Trigger;
    use crate::telemetry::{DataPoint, ErrorRow, VersionTotals};
    use crate::testing::StaticDeployer;

    const END: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

    struct Fixture {
        series: Vec<MetricSeries>,
        rows: Vec<ErrorRow>,
    }

    #[async_trait]
    impl Telemetry for Fixture {
        async fn metric_series(
            &self,
            _: &TelemetryQuery,
        ) -> Result<Vec<MetricSeries>, TelemetryError> {
            Ok(self.series.clone())
        }
        async fn version_totals(
            &self,
            _: &ComponentId,
            _: &[String],
            _: &TimeWindow,
            _: &crate::telemetry::DurationQuery,
        ) -> Result<Vec<VersionTotals>, TelemetryError> {
            Ok(vec![])
        }
        async fn error_rows(
            &self,
            _: &TelemetryQuery,
            _: usize,
        ) -> Result<Vec<ErrorRow>, TelemetryError> {
            Ok(self.rows.clone())
        }
    }

    fn deployer() -> StaticDeployer {
        StaticDeployer(Some(LambdaSettings {
            memory_mb: 128,
            timeout_seconds: 3,
            reserved_concurrency: None,
            environment: Default::default(),
        }))
    }

    fn series(component: &str, metric: MetricName, per_hour: f64) -> MetricSeries {
        MetricSeries {
            component: ComponentId::parse(component).unwrap(),
            metric,
            version: None,
            points: (0..24)
                .map(|h| DataPoint {
                    timestamp: END - Duration::hours(24 - h),
                    value: per_hour,
                })
                .collect(),
        }
    }

    fn rows(component: &str, message: &str, n: usize) -> Vec<ErrorRow> {
        (0..n)
            .map(|i| ErrorRow {
                timestamp: END - Duration::minutes(i as i64),
                component: ComponentId::parse(component).unwrap(),
                message: message.to_owned(),
            })
            .collect()
    }

    fn request(max: u32) -> CycleRequest {
        CycleRequest {
            cycle_id: CycleId::parse("c1").unwrap(),
            mode: CycleMode::Routine,
            tenant_id: None,
            components: vec![],
            analysis_window: TimeWindow {
                start: END - Duration::hours(24),
                end: END,
            },
            max_improvements: max,
            max_concurrency: 3,
            dry_run: false,
            trigger: Trigger::Schedule { rule: None },
            dedup_key: "*#*".into(),
            requested_at: END,
        }
    }

    #[tokio::test]
    async fn opportunities_are_detected_scored_and_ranked_by_impact() {
        let mut fixture = Fixture {
            series: vec![
                // orders: 1000/h, 300 errors/h, all timeouts → impact 0.9 × 7200
                series("orders", MetricName::Invocations, 1000.0),
                series("orders", MetricName::Errors, 300.0),
                series("orders", MetricName::DurationP99, 3000.0),
                // search: 1000/h invocations, 100/h throttled → impact 0.9 × 2400
                series("search", MetricName::Invocations, 1000.0),
                series("search", MetricName::Throttles, 100.0),
                series("search", MetricName::DurationP99, 200.0),
                // quiet: healthy
                series("quiet", MetricName::Invocations, 1000.0),
                series("quiet", MetricName::DurationP99, 100.0),
            ],
            rows: rows(
                "orders",
                "2026-11-22T04:59:00Z abc Task timed out after 3.00 seconds",
                50,
            ),
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        let ids: Vec<&str> = report.opportunities.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["orders:timeouts", "search:throttling"]);
        let top = &report.opportunities[0];
        assert_eq!(top.rank, 1);
        assert!(
            (top.affected_requests - 7200.0).abs() < 1e-6,
            "{}",
            top.affected_requests
        );
        assert!((top.impact_score - 0.9 * 7200.0).abs() < 1e-6);
        assert_eq!(top.priority, Priority::Critical);
        assert!(
            top.top_errors.iter().any(|t| t.contains("Task timed out")),
            "{:?}",
            top.top_errors
        );
        assert!(report.has_opportunities);

        // The cap keeps the highest impact.
        let capped = analyze(&fixture, &deployer(), &request(1)).await.unwrap();
        assert_eq!(capped.opportunities.len(), 1);
        assert_eq!(capped.opportunities[0].id, "orders:timeouts");

        // Nothing wrong: nothing to do.
        fixture.series.retain(|s| s.component.as_str() == "quiet");
        fixture.rows.clear();
        let calm = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        assert!(!calm.has_opportunities);
        assert_eq!(calm.components.len(), 1);
    }

    #[tokio::test]
    async fn both_out_of_memory_markers_count_once_each_as_memory_pressure() {
        // GIVEN 100 errors/h of 1000 invocations/h, rows half killed for memory: one in
        // Runtime.OutOfMemory's JSON form, one as the runtime's exit line (the same row
        // never counts twice), the other half unrelated
        let mut rows_ = rows(
            "billing",
            r#"{"errorType":"Runtime.OutOfMemory","errorMessage":"RequestId: r1 Error: Runtime exited with error: signal: killed"}"#,
            10,
        );
        rows_.extend(rows("billing", "Runtime.OutOfMemory: heap exhausted", 10));
        rows_.extend(rows("billing", "ERROR payment declined", 20));
        let fixture = Fixture {
            series: vec![
                series("billing", MetricName::Invocations, 1000.0),
                series("billing", MetricName::Errors, 100.0),
                series("billing", MetricName::DurationP99, 100.0),
            ],
            rows: rows_,
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        // THEN half the 2400 errors are out of memory
        assert!((report.components[0].out_of_memory - 1200.0).abs() < 1e-6);
        let memory = report
            .opportunities
            .iter()
            .find(|o| o.kind == OpportunityKind::MemoryPressure)
            .expect("memory pressure found");
        assert_eq!(memory.evidence[0].measure, "out_of_memory_share");
        assert!((memory.evidence[0].value - 0.05).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_latency_regression_in_the_last_quarter_is_found() {
        let mut p99 = series("api", MetricName::DurationP99, 200.0);
        for p in p99.points.iter_mut().skip(19) {
            p.value = 450.0;
        }
        let fixture = Fixture {
            series: vec![series("api", MetricName::Invocations, 100.0), p99],
            rows: vec![],
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        assert_eq!(
            report.opportunities[0].kind,
            OpportunityKind::LatencyRegression
        );
    }

    #[tokio::test]
    async fn a_traffic_ramp_on_a_healthy_function_is_no_latency_regression() {
        // Traffic ×8 in the last quarter: per-period p99s of a few requests rise with volume
        // (the largest of 10 vs of 80), the per-request mean does not.
        let mut invocations = series("api", MetricName::Invocations, 10.0);
        let mut p99 = series("api", MetricName::DurationP99, 200.0);
        for (i, p) in p99.points.iter_mut().zip(&mut invocations.points).skip(18) {
            i.value = 320.0;
            p.value = 80.0;
        }
        let avg = series("api", MetricName::DurationAvg, 100.0);
        let fixture = Fixture {
            series: vec![invocations, p99, avg],
            rows: vec![],
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        assert!(
            report
                .opportunities
                .iter()
                .all(|o| o.kind != OpportunityKind::LatencyRegression),
            "{:?}",
            report.opportunities
        );
    }

    #[tokio::test]
    async fn a_slower_mean_is_a_latency_regression_at_any_volume() {
        let invocations = series("api", MetricName::Invocations, 10.0);
        let mut avg = series("api", MetricName::DurationAvg, 100.0);
        for p in avg.points.iter_mut().skip(19) {
            p.value = 180.0;
        }
        let fixture = Fixture {
            series: vec![invocations, avg],
            rows: vec![],
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        let found = &report.opportunities[0];
        assert_eq!(found.kind, OpportunityKind::LatencyRegression);
        assert_eq!(found.evidence[0].measure, "recent_mean_duration_ms");
    }

    #[tokio::test]
    async fn many_error_rows_are_mined_from_a_sample_with_counts_scaled() {
        let fixture = Fixture {
            series: vec![series("orders", MetricName::Invocations, 1000.0)],
            rows: rows("orders", "ValidationError: order has no items", 3000),
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        assert_eq!(report.templates[0].count, 3000);
    }
}
