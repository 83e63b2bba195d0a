//! analyze (R5, R6): telemetry of the cycle's window → ranked improvement opportunities.
//!
//! Impact score = expected gain × affected requests, where
//! - *affected requests* are the invocations in the window that hit the problem (timed out,
//!   ran out of memory, were throttled, failed, or — for a latency regression — every
//!   invocation in the slow part of the window), and
//! - *expected gain* is the share of them a fix is expected to recover (0–1, per kind).
//!
//! Priority combines frequency (affected ÷ invocations) with the kind's severity.
//!
//! Log rows are read as records first ([`crate::logfacts`]): JSON lines by their fields,
//! failures counted once per request, stack traces grouped by exception type and top frame,
//! `REPORT` lines summed up per function version. The detectors and their thresholds:
//! `docs/cycle.md` (analyze).
//!
//! Registered agents that declare their own metrics are read too (module `agents`; the
//! rules: [`agents_in_scope`], [`attribute`]): their series go through the same detectors,
//! and a finding becomes an opportunity on one of the agent's components.

pub use agents::{AgentOutcome, AgentSummary, agents_in_scope, attribute};

mod agents;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

use crate::change::LambdaSettings;
use crate::cycle::{CycleMode, CycleRequest, TimeWindow};
use crate::error::TelemetryError;
use crate::health::skip::SkippedComponent;
use crate::ids::{ComponentId, CycleId};
use crate::logfacts::report::MEMORY_LIMIT_RATIO;
use crate::logfacts::timeouts::TIMEOUT_CLUSTER_SHARE;
use crate::logfacts::{
    FailureCounts, Failures, Format, LogRecord, Report, ReportFacts, ReportLine, StackTrace,
    TimeoutPattern, TraceGroup, group_traces, parse_report, parse_trace, record,
    report::facts_by_version, timeout_pattern, version_of_stream,
};
use crate::logmine::{LogLine, LogTemplate, MinerConfig, mine_sample, stratified_weights};
use crate::opportunity::{Evidence, Opportunity, OpportunityKind, Priority};
use crate::ports::{Deployer, Telemetry};
use crate::records::AgentRecord;
use crate::stats::percentile;
use crate::telemetry::{LogRow, MetricName, MetricSeries, TelemetryQuery};
use crate::text::Escaped;
use time::{Duration, OffsetDateTime};

/// The most error rows one analysis reads.
pub const ERROR_ROW_LIMIT: usize = 5_000;

/// The most rows mined into templates; above it a stratified sample is mined.
pub const MINING_CAPACITY: usize = 1_000;

/// The most `REPORT` lines one analysis reads: one Logs Insights result page.
pub const REPORT_ROW_LIMIT: usize = 10_000;

/// Trace groups an opportunity carries to the prompt: the few most frequent are what a fix
/// is about, and every group brings up to 20 frames.
pub const TRACES_PER_OPPORTUNITY: usize = 3;

/// Trace groups the report keeps, most rows first: each opportunity carries its own, so
/// these are for a reader; few keep the state machine's state small.
const REPORT_TRACES: usize = 5;

/// Memory pressure (max memory used ÷ memory size, in the `REPORT` lines at the function's
/// current memory size) from which a function is a memory opportunity: at 95 % a request
/// 5 % heavier than the heaviest seen is killed.
pub const MEMORY_PRESSURE_THRESHOLD: f64 = MEMORY_LIMIT_RATIO;

/// Runtime exits other than for memory (`Runtime.ExitError`) per invocation from which they
/// make an error burst on their own: an exit also loses the sandbox, so the next request
/// pays a cold start; one in a thousand is worth a fix.
pub const EXIT_ERROR_SHARE: f64 = 0.001;

/// The fewest runtime exits that make an error burst on their own: one or two are an
/// accident, three are a pattern.
pub const EXIT_ERROR_MIN: f64 = 3.0;

/// Downstream throttling errors per invocation from which they are named in the evidence of
/// an error burst or a throttling opportunity: where they are, more concurrency makes them
/// worse, which a proposal must know.
pub const DOWNSTREAM_THROTTLE_SHARE: f64 = 0.001;

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
    /// Failed requests that timed out, scaled to all errors.
    pub timeouts: f64,
    /// Failed requests that ran out of memory, scaled to all errors.
    pub out_of_memory: f64,
    /// Failed requests whose runtime exited other than for memory (`Runtime.ExitError`),
    /// scaled to all errors.
    #[serde(default)]
    pub exit_errors: f64,
    /// Failed requests a downstream service throttled, scaled to all errors.
    #[serde(default)]
    pub downstream_throttles: f64,
    /// How the timeouts lie in time: clustered or spread (none below 10 timeouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_pattern: Option<TimeoutPattern>,
    /// What the `REPORT` lines say, per version (`$LATEST` first, then by number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportFacts>,
}

/// What the analysis read from the logs, and how much of it was sampled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogReading {
    /// Error rows read.
    pub error_rows: usize,
    /// Error rows mined into templates: every one, or above [`MINING_CAPACITY`] a sample
    /// stratified by (log group, level, hour).
    pub mined_rows: usize,
    /// mined_rows ÷ the rows that could be mined (1 when all were): the templates' counts
    /// are rescaled from the sample, stratum by stratum.
    pub sampling_fraction: f64,
    /// The strata the minable rows fell into.
    pub strata: usize,
    /// `REPORT` lines read.
    pub report_rows: usize,
    /// `REPORT` lines parsed.
    pub reports: usize,
    /// `REPORT` lines skipped as malformed, by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reports_skipped: BTreeMap<String, u64>,
    /// Why `REPORT` lines could not be read, if they could not (the analysis goes on
    /// without their facts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports_unavailable: Option<String>,
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
    /// Stack traces grouped by exception type and top frame, most rows first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<TraceGroup>,
    /// What was read from the logs.
    #[serde(default)]
    pub logs: LogReading,
    /// Ranked opportunities, at most `max_improvements`.
    pub opportunities: Vec<Opportunity>,
    /// Whether there is anything to do (the state machine's Choice reads this).
    pub has_opportunities: bool,
    /// Disabled components the cycle left out (the health pass disabled them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedComponent>,
    /// The agents in scope that declare their own metrics, and what those showed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentSummary>,
    /// Why the agents' metrics could not be read, if they could not (the analysis goes on
    /// without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_unavailable: Option<String>,
}

impl AnalysisReport {
    /// The report of a cycle with nothing left to analyse: no telemetry read, nothing to do.
    pub fn nothing_to_analyse(request: &CycleRequest, skipped: Vec<SkippedComponent>) -> Self {
        Self {
            cycle_id: request.cycle_id.clone(),
            window: request.analysis_window,
            components: Vec::new(),
            templates: Vec::new(),
            traces: Vec::new(),
            logs: LogReading::default(),
            opportunities: Vec::new(),
            has_opportunities: false,
            skipped,
            agents: Vec::new(),
            agents_unavailable: None,
        }
    }
}

/// One error row read.
struct ReadRow<'a> {
    row: &'a LogRow,
    record: LogRecord,
    failures: Failures,
    trace: Option<StackTrace>,
}

impl<'a> ReadRow<'a> {
    fn of(row: &'a LogRow) -> Self {
        let record = record::read(&row.message);
        let report = match parse_report(&row.message) {
            ReportLine::Report(r) => Some(r),
            _ => None,
        };
        let failures = Failures::of(&record, report.as_ref());
        let trace = parse_trace(record.trace_text(), record.error_type.as_deref());
        Self {
            row,
            record,
            failures,
            trace,
        }
    }
}

/// A `REPORT` line read, with the version it is of.
struct ReadReport<'a> {
    version: Option<&'a str>,
    report: Report,
}

/// Reads the window's telemetry and ranks what to improve.
pub async fn analyze(
    telemetry: &dyn Telemetry,
    deployer: &dyn Deployer,
    request: &CycleRequest,
) -> Result<AnalysisReport, TelemetryError> {
    analyze_excluding(telemetry, deployer, request, &BTreeSet::new()).await
}

/// [`analyze`], with no opportunity for the `excluded` components (disabled ones): they
/// take no place among the `max_improvements`.
pub async fn analyze_excluding(
    telemetry: &dyn Telemetry,
    deployer: &dyn Deployer,
    request: &CycleRequest,
    excluded: &BTreeSet<ComponentId>,
) -> Result<AnalysisReport, TelemetryError> {
    analyze_with_agents(telemetry, deployer, request, excluded, &[]).await
}

/// [`analyze_excluding`], reading also the own metrics of the `agents` in the cycle's scope
/// ([`agents_in_scope`]) into opportunities on their components.
#[instrument(skip_all, fields(cycle = %request.cycle_id))]
pub async fn analyze_with_agents(
    telemetry: &dyn Telemetry,
    deployer: &dyn Deployer,
    request: &CycleRequest,
    excluded: &BTreeSet<ComponentId>,
    agents: &[AgentRecord],
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
    let read: Vec<ReadRow<'_>> = rows.iter().map(ReadRow::of).collect();

    let mut by_component: BTreeMap<ComponentId, Vec<&MetricSeries>> = BTreeMap::new();
    for s in &series {
        by_component.entry(s.component.clone()).or_default().push(s);
    }
    let mut logs = LogReading {
        error_rows: rows.len(),
        ..LogReading::default()
    };
    let report_rows = report_rows(
        telemetry,
        &TelemetryQuery {
            components: by_component.keys().cloned().collect(),
            ..query.clone()
        },
        &mut logs,
    )
    .await;
    let reports = read_reports(&report_rows, &mut logs);
    let mut templates = mine(&read, &mut logs);
    let mut traces = group_traces(
        read.iter()
            .filter_map(|r| Some((r.trace.as_ref()?, r.row.component.as_str(), r.row.timestamp))),
    );
    // Rows are newest first: at the limit, they cover only the window's end.
    let covered = TimeWindow {
        start: match rows.last() {
            Some(oldest) if rows.len() >= ERROR_ROW_LIMIT => oldest.timestamp.max(window.start),
            _ => window.start,
        },
        end: window.end,
    };

    let mut summaries = Vec::new();
    let mut opportunities = Vec::new();
    let mut contexts: BTreeMap<&ComponentId, agents::ComponentContext> = BTreeMap::new();
    for (component, series) in &by_component {
        let component_rows: Vec<&ReadRow<'_>> = read
            .iter()
            .filter(|r| &r.row.component == component)
            .collect();
        let component_reports: &[ReadReport<'_>] =
            reports.get(component).map_or(&[], Vec::as_slice);
        let counts = FailureCounts::count(
            component_rows
                .iter()
                .map(|r| (r.record.request_id.as_deref(), r.row.timestamp, r.failures)),
        );
        let traffic: Vec<(OffsetDateTime, f64)> = metric(series, MetricName::Invocations)
            .map(|s| s.points.iter().map(|p| (p.timestamp, p.value)).collect())
            .unwrap_or_default();
        let pattern = timeout_pattern(
            &counts.timeout_times,
            &traffic,
            covered,
            Duration::seconds(i64::from(period_seconds)),
        );
        let facts = facts_by_version(component_reports.iter().map(|r| (r.version, &r.report)));
        let summary = summarize(component, series, &counts, pattern, facts);
        let current = deployer
            .function_state(component)
            .await
            .ok()
            .map(|s| s.settings);
        let memory = memory_facts(component_reports, current.as_ref());
        let top_errors: Vec<String> = templates
            .iter()
            .filter(|t| t.components.iter().any(|c| c == component.as_str()))
            .take(3)
            .map(|t| t.template.clone())
            .collect();
        let stack_traces: Vec<TraceGroup> = traces
            .iter()
            .filter(|g| g.components.iter().any(|c| c == component.as_str()))
            .take(TRACES_PER_OPPORTUNITY)
            .cloned()
            .collect();
        for found in detect(&summary, series, current.as_ref(), window, memory.as_ref()) {
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
                stack_traces: stack_traces.clone(),
                agents: Vec::new(),
            });
        }
        contexts.insert(
            component,
            agents::ComponentContext {
                current,
                top_errors,
                stack_traces,
            },
        );
        summaries.push(summary);
    }
    let agent_analysis = agents::analyze_agents(
        telemetry,
        request,
        agents,
        &agents::Cycle {
            by_component: &by_component,
            contexts: &contexts,
            excluded,
            window,
            period_seconds,
        },
    )
    .await;
    for found in agent_analysis.opportunities {
        agents::merge(&mut opportunities, found);
    }
    opportunities.sort_by(|a, b| {
        b.impact_score
            .total_cmp(&a.impact_score)
            .then_with(|| a.id.cmp(&b.id))
    });
    opportunities.retain(|o| !excluded.contains(&o.component));
    // One change per component per cycle: two changes to one function would confound the canary.
    let mut seen = BTreeSet::new();
    opportunities.retain(|o| seen.insert(o.component.clone()));
    opportunities.truncate(request.max_improvements as usize);
    for (i, o) in opportunities.iter_mut().enumerate() {
        o.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    templates.truncate(10);
    traces.truncate(REPORT_TRACES);
    info!(
        components = summaries.len(),
        opportunities = opportunities.len(),
        error_rows = logs.error_rows,
        reports = logs.reports,
        "analysis done"
    );
    Ok(AnalysisReport {
        cycle_id: request.cycle_id.clone(),
        window,
        components: summaries,
        templates,
        traces,
        logs,
        has_opportunities: !opportunities.is_empty(),
        opportunities,
        skipped: Vec::new(),
        agents: agent_analysis.summaries,
        agents_unavailable: agent_analysis.unavailable,
    })
}

/// The `REPORT` lines of the components in `query`; a source that cannot give them leaves
/// the analysis without their facts (said in `logs`), never fails it.
async fn report_rows(
    telemetry: &dyn Telemetry,
    query: &TelemetryQuery,
    logs: &mut LogReading,
) -> Vec<LogRow> {
    if query.components.is_empty() {
        return Vec::new();
    }
    telemetry
        .report_rows(query, REPORT_ROW_LIMIT)
        .await
        .unwrap_or_else(|e| {
            warn!(error = %Escaped(&e), "REPORT lines not read; analysing without them");
            logs.reports_unavailable = Some(e.to_string());
            Vec::new()
        })
}

/// The `REPORT` lines among `rows` read, by component; malformed ones counted by reason,
/// other lines (a source may return them: moto runs no filter) passed over.
fn read_reports<'a>(
    rows: &'a [LogRow],
    logs: &mut LogReading,
) -> BTreeMap<&'a ComponentId, Vec<ReadReport<'a>>> {
    let mut reports: BTreeMap<&ComponentId, Vec<ReadReport<'_>>> = BTreeMap::new();
    for row in rows {
        match parse_report(&row.message) {
            ReportLine::Report(report) => {
                logs.report_rows += 1;
                logs.reports += 1;
                reports.entry(&row.component).or_default().push(ReadReport {
                    version: row.log_stream.as_deref().and_then(version_of_stream),
                    report,
                });
            }
            ReportLine::Malformed(reason) => {
                logs.report_rows += 1;
                *logs.reports_skipped.entry(reason.to_owned()).or_default() += 1;
            }
            ReportLine::NotReport => {}
        }
    }
    reports
}

/// Mines the error rows' templates (platform lines left out: what they say is read as
/// facts); above [`MINING_CAPACITY`] a sample stratified by (log group, level, hour),
/// counts rescaled stratum by stratum.
fn mine(read: &[ReadRow<'_>], logs: &mut LogReading) -> Vec<LogTemplate> {
    let minable: Vec<&ReadRow<'_>> = read
        .iter()
        .filter(|r| r.record.format != Format::Platform)
        .collect();
    let lines: Vec<LogLine> = minable
        .iter()
        .map(|r| LogLine {
            timestamp: r.row.timestamp,
            message: r.record.mined_text(),
            component: Some(r.row.component.as_str().to_owned()),
        })
        .collect();
    let stratum = |i: usize| {
        let r = minable[i];
        (
            r.row.component.as_str(),
            r.record.level,
            r.row.timestamp.unix_timestamp().div_euclid(3600),
        )
    };
    logs.strata = (0..lines.len()).map(stratum).collect::<BTreeSet<_>>().len();
    let config = MinerConfig::default();
    if lines.len() <= MINING_CAPACITY {
        logs.mined_rows = lines.len();
        logs.sampling_fraction = 1.0;
        return crate::logmine::mine_templates(&lines, &config);
    }
    let chosen = stratified_weights(&lines, MINING_CAPACITY, stratum);
    logs.mined_rows = chosen.len();
    logs.sampling_fraction = chosen.len() as f64 / lines.len() as f64;
    let (sample, weights): (Vec<LogLine>, Vec<f64>) = chosen
        .into_iter()
        .map(|(i, weight)| (lines[i].clone(), weight))
        .unzip();
    mine_sample(&sample, &weights, &config)
}

/// The facts of the `REPORT` lines at the function's current memory size (every line when
/// the settings are unknown): what its memory pressure is now.
fn memory_facts(
    reports: &[ReadReport<'_>],
    current: Option<&LambdaSettings>,
) -> Option<ReportFacts> {
    let at_size: Vec<&Report> = reports
        .iter()
        .map(|r| &r.report)
        .filter(|r| current.is_none_or(|c| (r.memory_size_mb - f64::from(c.memory_mb)).abs() < 0.5))
        .collect();
    ReportFacts::of(None, &at_size)
}

fn metric<'a>(series: &[&'a MetricSeries], name: MetricName) -> Option<&'a MetricSeries> {
    series.iter().copied().find(|s| s.metric == name)
}

fn summarize(
    component: &ComponentId,
    series: &[&MetricSeries],
    counts: &FailureCounts,
    timeout_pattern: Option<TimeoutPattern>,
    reports: Vec<ReportFacts>,
) -> ComponentSummary {
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
    // The rows are a sample of the errors: scale each kind's share of the failed requests
    // seen to the error count.
    let share = |n: usize| ratio(n as f64, counts.events as f64) * errors;
    ComponentSummary {
        component: component.clone(),
        invocations,
        errors,
        throttles,
        error_rate: ratio(errors, invocations),
        throttle_rate: ratio(throttles, invocations + throttles),
        p99_ms,
        max_memory_pct,
        timeouts: share(counts.timeouts),
        out_of_memory: share(counts.out_of_memory),
        exit_errors: share(counts.exit_errors),
        downstream_throttles: share(counts.throttled),
        timeout_pattern,
        reports,
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
    memory: Option<&ReportFacts>,
) -> Vec<Found> {
    let mut found = Vec::new();
    if s.invocations <= 0.0 && s.throttles <= 0.0 {
        return found;
    }
    let downstream_share = ratio(s.downstream_throttles, s.invocations);
    let downstream = (downstream_share >= DOWNSTREAM_THROTTLE_SHARE).then(|| {
        evidence(
            "downstream_throttle_share",
            downstream_share,
            DOWNSTREAM_THROTTLE_SHARE,
        )
    });
    let timeout_ms = current.map(|c| f64::from(c.timeout_seconds) * 1000.0);
    let timeout_share = ratio(s.timeouts, s.invocations);
    let near_timeout = matches!((s.p99_ms, timeout_ms), (Some(p), Some(t)) if p >= 0.9 * t);
    let clustered = s.timeout_pattern.as_ref().is_some_and(|p| p.clustered);
    if timeout_share >= 0.01 || near_timeout || clustered {
        let mut ev = vec![evidence("timeout_share", timeout_share, 0.01)];
        if let (Some(p), Some(t)) = (s.p99_ms, timeout_ms) {
            ev.push(evidence("p99_ms_vs_timeout_ms", p, 0.9 * t));
        }
        if let Some(p) = &s.timeout_pattern {
            ev.push(evidence(
                "timeout_clustered_share",
                p.clustered_share,
                TIMEOUT_CLUSTER_SHARE,
            ));
        }
        found.push(Found {
            kind: OpportunityKind::Timeouts,
            affected: s.timeouts.max(s.invocations * 0.01),
            evidence: ev,
        });
    }
    let oom_share = ratio(s.out_of_memory, s.invocations);
    let memory_high = s.max_memory_pct.is_some_and(|m| m >= 90.0);
    let pressure = memory.is_some_and(|f| f.memory_pressure >= MEMORY_PRESSURE_THRESHOLD);
    if oom_share >= 0.001 || memory_high || pressure {
        let mut ev = vec![
            evidence("out_of_memory_share", oom_share, 0.001),
            evidence("max_memory_pct", s.max_memory_pct.unwrap_or(0.0), 90.0),
        ];
        let mut at_limit = 0.0;
        if let Some(f) = memory {
            let limit_mb = MEMORY_PRESSURE_THRESHOLD * f.memory_size_mb;
            ev.extend([
                evidence(
                    "memory_pressure",
                    f.memory_pressure,
                    MEMORY_PRESSURE_THRESHOLD,
                ),
                evidence("max_memory_used_mb", f.max_memory_used_mb.max, limit_mb),
                evidence("p95_memory_used_mb", f.max_memory_used_mb.p95, limit_mb),
            ]);
            at_limit = ratio(f.at_memory_limit as f64, f.invocations as f64);
        }
        found.push(Found {
            kind: OpportunityKind::MemoryPressure,
            affected: s
                .out_of_memory
                .max(s.invocations * at_limit)
                .max(s.invocations * 0.01),
            evidence: ev,
        });
    }
    if s.throttle_rate >= 0.01 {
        let mut ev = vec![evidence("throttle_rate", s.throttle_rate, 0.01)];
        ev.extend(downstream.clone());
        found.push(Found {
            kind: OpportunityKind::Throttling,
            affected: s.throttles,
            evidence: ev,
        });
    }
    let other_errors = (s.errors - s.timeouts - s.out_of_memory).max(0.0);
    let other_rate = ratio(other_errors, s.invocations);
    let exit_share = ratio(s.exit_errors, s.invocations);
    let crashes = exit_share >= EXIT_ERROR_SHARE && s.exit_errors >= EXIT_ERROR_MIN;
    if (other_rate >= 0.02 && other_errors >= 10.0) || crashes {
        let mut ev = vec![evidence("application_error_rate", other_rate, 0.02)];
        if s.exit_errors > 0.0 {
            ev.push(evidence("runtime_exit_share", exit_share, EXIT_ERROR_SHARE));
        }
        ev.extend(downstream);
        found.push(Found {
            kind: OpportunityKind::ErrorBurst,
            affected: other_errors,
            evidence: ev,
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
    use crate::telemetry::{DataPoint, LogRow, VersionTotals};
    use crate::testing::StaticDeployer;

    const END: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

    struct Fixture {
        series: Vec<MetricSeries>,
        rows: Vec<LogRow>,
    }

    /// A fixture with `REPORT` lines too (or a failure to read them).
    struct WithReports {
        inner: Fixture,
        /// The rows, or the message of an `Unavailable` error.
        reports: Result<Vec<LogRow>, String>,
    }

    #[async_trait]
    impl Telemetry for WithReports {
        async fn metric_series(
            &self,
            q: &TelemetryQuery,
        ) -> Result<Vec<MetricSeries>, TelemetryError> {
            self.inner.metric_series(q).await
        }
        async fn version_totals(
            &self,
            f: &ComponentId,
            v: &[String],
            w: &TimeWindow,
            d: &crate::telemetry::DurationQuery,
        ) -> Result<Vec<VersionTotals>, TelemetryError> {
            self.inner.version_totals(f, v, w, d).await
        }
        async fn error_rows(
            &self,
            q: &TelemetryQuery,
            limit: usize,
        ) -> Result<Vec<LogRow>, TelemetryError> {
            self.inner.error_rows(q, limit).await
        }
        async fn report_rows(
            &self,
            q: &TelemetryQuery,
            _: usize,
        ) -> Result<Vec<LogRow>, TelemetryError> {
            assert!(!q.components.is_empty(), "REPORT lines of named components");
            self.reports.clone().map_err(TelemetryError::Unavailable)
        }
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
        ) -> Result<Vec<LogRow>, TelemetryError> {
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

    fn rows(component: &str, message: &str, n: usize) -> Vec<LogRow> {
        (0..n)
            .map(|i| LogRow {
                timestamp: END - Duration::minutes(i as i64),
                component: ComponentId::parse(component).unwrap(),
                message: message.to_owned(),
                log_stream: None,
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

    /// A request id that differs per `n`.
    fn uuid(n: usize) -> String {
        format!("{n:08x}-3b9d-4c1e-9a7f-0d2e4b6c8a1f")
    }

    /// A `REPORT` row of `component`, version `version`.
    fn report_row(component: &str, version: &str, at: OffsetDateTime, line: String) -> LogRow {
        LogRow {
            timestamp: at,
            component: ComponentId::parse(component).unwrap(),
            message: line,
            log_stream: Some(format!(
                "2026/11/22/[{version}]0f1e2d3c4b5a69788796a5b4c3d2e1f0"
            )),
        }
    }

    fn report_line(n: usize, size: u32, used: u32, init: Option<f64>) -> String {
        let init = init.map_or(String::new(), |i| format!("\tInit Duration: {i:.2} ms"));
        format!(
            "REPORT RequestId: {}\tDuration: {}.25 ms\tBilled Duration: {} ms\tMemory Size: {size} MB\tMax Memory Used: {used} MB{init}\t",
            uuid(n),
            100 + n % 50,
            101 + n % 50
        )
    }

    #[tokio::test]
    async fn report_lines_give_facts_per_version_and_memory_at_95_percent_is_an_opportunity() {
        // GIVEN two healthy functions (no errors, no memory metric), 128 MB each:
        // `full` used 100-123 MB of it in version 3 (96 %), `roomy` at most 90 MB, and an
        // older version 2 of `roomy` at 64 MB that was at its limit.
        let mut reports = Vec::new();
        for n in 0..200 {
            let at = END - Duration::minutes(n as i64);
            let cold = (n % 5 == 0).then_some(300.0 + n as f64);
            reports.push(report_row(
                "full",
                "3",
                at,
                report_line(n, 128, 100 + (n % 24) as u32, cold),
            ));
            reports.push(report_row(
                "roomy",
                "3",
                at,
                report_line(n, 128, 60 + (n % 31) as u32, None),
            ));
        }
        for n in 0..50 {
            let at = END - Duration::hours(20) - Duration::minutes(n as i64);
            reports.push(report_row("roomy", "2", at, report_line(n, 64, 64, None)));
        }
        // and lines a reader must skip: one cut short, one not a report at all
        reports.push(report_row(
            "full",
            "3",
            END,
            format!("REPORT RequestId: {}\tDuration: 10", uuid(9)),
        ));
        reports.push(report_row(
            "full",
            "3",
            END,
            "START RequestId: x Version: 3".into(),
        ));
        let telemetry = WithReports {
            inner: Fixture {
                series: vec![
                    series("full", MetricName::Invocations, 1000.0),
                    series("roomy", MetricName::Invocations, 1000.0),
                ],
                rows: vec![],
            },
            reports: Ok(reports),
        };

        let report = analyze(&telemetry, &deployer(), &request(3)).await.unwrap();

        // THEN the facts per version
        assert_eq!(report.logs.report_rows, 451);
        assert_eq!(report.logs.reports, 450);
        assert_eq!(
            report.logs.reports_skipped,
            BTreeMap::from([("cut short: a number without its unit".to_owned(), 1)])
        );
        let full = &report.components[0];
        assert_eq!(full.component.as_str(), "full");
        assert_eq!(full.reports.len(), 1);
        let v3 = &full.reports[0];
        assert_eq!(v3.version.as_deref(), Some("3"));
        assert_eq!(v3.invocations, 200);
        assert_eq!(v3.cold_starts, 40);
        assert!((v3.cold_start_share - 0.2).abs() < 1e-12);
        assert!(v3.init_duration_mean_ms.unwrap() > 300.0);
        assert_eq!(v3.max_memory_used_mb.max, 123.0);
        assert_eq!(v3.duration_ms.max, 149.25);
        let roomy = &report.components[1];
        let versions: Vec<Option<&str>> =
            roomy.reports.iter().map(|f| f.version.as_deref()).collect();
        assert_eq!(versions, [Some("2"), Some("3")]);
        assert_eq!(roomy.reports[0].memory_pressure, 1.0);
        // and only `full` is a memory opportunity: `roomy`'s old version is not its current size
        let ids: Vec<&str> = report.opportunities.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["full:memory_pressure"]);
        let ev: BTreeMap<&str, (f64, f64)> = report.opportunities[0]
            .evidence
            .iter()
            .map(|e| (e.measure.as_str(), (e.value, e.threshold)))
            .collect();
        assert_eq!(ev["memory_pressure"], (123.0 / 128.0, 0.95));
        assert_eq!(ev["max_memory_used_mb"], (123.0, 0.95 * 128.0));
        // 17 of every 24 lines used ≥ 121.6 MB → at least 1 % of invocations affected
        assert!(report.opportunities[0].affected_requests >= 24_000.0 * 0.01);
    }

    #[tokio::test]
    async fn unreadable_report_lines_leave_the_analysis_without_their_facts() {
        let telemetry = WithReports {
            inner: Fixture {
                series: vec![series("orders", MetricName::Invocations, 10.0)],
                rows: vec![],
            },
            reports: Err("StartQuery: throttled".into()),
        };
        let report = analyze(&telemetry, &deployer(), &request(3)).await.unwrap();
        assert_eq!(
            report.logs.reports_unavailable.as_deref(),
            Some("telemetry unavailable: StartQuery: throttled")
        );
        assert!(report.components[0].reports.is_empty());
    }

    #[tokio::test]
    async fn runtime_exits_are_an_error_burst_of_their_own_and_a_kill_is_memory() {
        // GIVEN 10 errors/h of 1000 invocations/h (1 %: no burst by rate), the rows: 30
        // runtime exits, 5 kills for memory that also say Runtime.ExitError, 25 others
        let mut rows_ = Vec::new();
        for n in 0..30 {
            rows_.extend(rows(
                "worker",
                &format!("RequestId: {} Error: Runtime exited with error: exit status 1\nRuntime.ExitError", uuid(n)),
                1,
            ));
        }
        for n in 30..35 {
            rows_.extend(rows(
                "worker",
                &format!("RequestId: {} Error: Runtime exited with error: signal: killed\nRuntime.ExitError", uuid(n)),
                1,
            ));
        }
        rows_.extend(rows("worker", "ERROR upstream said 502", 25));
        let fixture = Fixture {
            series: vec![
                series("worker", MetricName::Invocations, 1000.0),
                series("worker", MetricName::Errors, 10.0),
            ],
            rows: rows_,
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        let worker = &report.components[0];
        // THEN half the 240 errors are exits, a twelfth out of memory (too few to matter)
        assert!(
            (worker.exit_errors - 120.0).abs() < 1e-9,
            "{}",
            worker.exit_errors
        );
        assert!((worker.out_of_memory - 20.0).abs() < 1e-9);
        let burst = report
            .opportunities
            .iter()
            .find(|o| o.kind == OpportunityKind::ErrorBurst)
            .expect("runtime exits make an error burst");
        let exit = burst
            .evidence
            .iter()
            .find(|e| e.measure == "runtime_exit_share")
            .unwrap();
        assert!((exit.value - 0.005).abs() < 1e-12);
        assert_eq!(exit.threshold, EXIT_ERROR_SHARE);
    }

    #[tokio::test]
    async fn timeouts_in_one_window_cluster_and_are_an_opportunity_below_one_percent() {
        // GIVEN 5 errors/h of 1000 invocations/h, all 40 of the rows timeouts (0.5 %)
        let timeout_rows = |spacing: Duration| -> Vec<LogRow> {
            (0..40)
                .map(|n| LogRow {
                    timestamp: END - Duration::hours(6) + spacing * n as i32,
                    component: ComponentId::parse("orders").unwrap(),
                    message: format!(
                        "2026-11-21T23:00:00.000Z {} Task timed out after 3.00 seconds",
                        uuid(n)
                    ),
                    log_stream: None,
                })
                .collect()
        };
        let fixture = |spacing| Fixture {
            series: vec![
                series("orders", MetricName::Invocations, 1000.0),
                series("orders", MetricName::Errors, 5.0),
                series("orders", MetricName::DurationP99, 200.0),
            ],
            rows: timeout_rows(spacing),
        };
        // WHEN they came within 10 minutes
        let report = analyze(&fixture(Duration::seconds(15)), &deployer(), &request(3))
            .await
            .unwrap();
        // THEN they cluster, and that is a timeout opportunity with its evidence
        let pattern = report.components[0].timeout_pattern.as_ref().unwrap();
        assert!(pattern.clustered);
        assert_eq!(pattern.windows.len(), 1);
        assert_eq!(pattern.windows[0].timeouts, 40);
        let o = &report.opportunities[0];
        assert_eq!(o.kind, OpportunityKind::Timeouts);
        assert_eq!(o.evidence[0].measure, "timeout_share");
        assert!((o.evidence[0].value - 0.005).abs() < 1e-12);
        let clustered = o
            .evidence
            .iter()
            .find(|e| e.measure == "timeout_clustered_share")
            .unwrap();
        assert_eq!((clustered.value, clustered.threshold), (1.0, 0.5));

        // WHEN the same 40 came every 30 minutes: spread, and no opportunity at 0.5 %
        let back = Duration::minutes(-30);
        let report = analyze(&fixture(back), &deployer(), &request(3))
            .await
            .unwrap();
        assert!(
            !report.components[0]
                .timeout_pattern
                .as_ref()
                .unwrap()
                .clustered
        );
        assert!(
            report.opportunities.is_empty(),
            "{:?}",
            report.opportunities
        );
    }

    #[tokio::test]
    async fn stack_traces_and_json_fields_reach_the_opportunity() {
        // GIVEN an error burst whose rows are a Node.js stack (text) and Powertools JSON
        let mut rows_ = rows(
            "checkout",
            "2026-11-22T04:00:00.000Z\t8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tERROR\tTypeError: Cannot read properties of undefined (reading 'id')\n    at loadCart (/var/task/cart.js:27:19)\n    at async Runtime.handler (file:///var/task/index.mjs:12:31)",
            30,
        );
        rows_.extend(rows(
            "checkout",
            r#"{"level":"ERROR","message":"Payment failed","service":"checkout","exception":"Traceback (most recent call last):\n  File \"/var/task/pay.py\", line 41, in charge\n    raise ValueError(\"card declined\")\nValueError: card declined","exception_name":"ValueError","xray_trace_id":"1-6740a1b3-4c2d9e8f7a6b5c4d3e2f1a0b"}"#,
            20,
        ));
        let fixture = Fixture {
            series: vec![
                series("checkout", MetricName::Invocations, 100.0),
                series("checkout", MetricName::Errors, 20.0),
            ],
            rows: rows_,
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        let o = &report.opportunities[0];
        assert_eq!(o.kind, OpportunityKind::ErrorBurst);
        // THEN the traces, most rows first, with their frames
        let traces: Vec<(&str, u64)> = o
            .stack_traces
            .iter()
            .map(|t| (t.exception.as_str(), t.count))
            .collect();
        assert_eq!(traces, [("TypeError", 30), ("ValueError", 20)]);
        let top = o.stack_traces[0].top_frame().unwrap();
        assert_eq!(top.file.as_deref(), Some("/var/task/cart.js"));
        assert_eq!(
            (top.line, top.function.as_deref()),
            (Some(27), Some("loadCart"))
        );
        assert_eq!(
            o.stack_traces[1].frames[0].file.as_deref(),
            Some("/var/task/pay.py")
        );
        assert_eq!(report.traces.len(), 2);
        // and the JSON rows were mined by their fields, not their text
        let templates: Vec<&str> = report
            .templates
            .iter()
            .map(|t| t.template.as_str())
            .collect();
        assert!(
            templates.contains(&"ValueError: Payment failed"),
            "{templates:?}"
        );
        assert!(
            templates.iter().all(|t| !t.contains("xray")),
            "{templates:?}"
        );
    }

    #[tokio::test]
    async fn a_sample_rescales_each_stratum_by_its_own_fraction() {
        // GIVEN 2,990 rows of one error in the last hour, and 10 rare warnings, one per hour
        let mut rows_ = rows("orders", "ERROR ValidationError: order has no items", 2990)
            .into_iter()
            .map(|mut r| {
                r.timestamp = END - Duration::seconds(1 + (r.timestamp.unix_timestamp() % 3000));
                r
            })
            .collect::<Vec<_>>();
        for h in 0..10 {
            let mut rare = rows("orders", "[WARNING] ThrottlingException: slow down", 1);
            rare[0].timestamp = END - Duration::hours(2 + h) - Duration::minutes(1);
            rows_.extend(rare);
        }
        let fixture = Fixture {
            series: vec![series("orders", MetricName::Invocations, 1000.0)],
            rows: rows_,
        };
        let report = analyze(&fixture, &deployer(), &request(3)).await.unwrap();
        // THEN 1,000 rows mined, every stratum kept, and each template counted at its
        // stratum's rate: the rare rows were all taken, so they count 10, not 10 × 3
        assert_eq!(report.logs.error_rows, 3000);
        assert_eq!(report.logs.mined_rows, 1000);
        assert!((report.logs.sampling_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.logs.strata, 11);
        let counts: Vec<(u64, u64)> = report
            .templates
            .iter()
            .map(|t| (t.count, t.sample.unwrap().lines))
            .collect();
        assert_eq!(counts, [(2990, 990), (10, 10)]);
        assert_eq!(report.templates[1].sample.unwrap().fraction, 1.0);
    }
}
