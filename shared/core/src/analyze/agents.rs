//! Agents' own telemetry in analysis (seed R10.2): the agents a cycle reads, their series
//! through the component detectors, and each finding attributed to one of their components.
//!
//! - Scope ([`agents_in_scope`]): agents that declare metrics, of the cycle's tenant or
//!   fleet-wide (a fleet-wide cycle: every tenant's); with named components, only agents
//!   owning one of them.
//! - Detection: an agent's requests, errors, latency and memory are read as a component's
//!   `Invocations`, `Errors`, `DurationAvg`/`DurationP99` and `MemoryUtilization`, with no log
//!   rows and no function settings (its latency is not a function's duration, so there is
//!   no timeout finding): error bursts, latency regressions and memory pressure.
//! - Attribution ([`attribute`]): a change needs a Lambda function, so a finding goes to
//!   the agent's component (among those the cycle analysed and did not exclude) with the
//!   largest share of the same thing in its own metrics over the window: errors for an
//!   error burst, time spent (mean duration × invocations) for latency, peak memory
//!   utilisation for memory, throttles for throttling. A tie, or no data, goes to the first
//!   listed.
//! - Dedup ([`merge`]): one opportunity per component and kind. When the component's own
//!   metrics found the same kind, the two are merged: the component's opportunity is kept
//!   (its logs, traces and settings), the agent's evidence and finding are added, and the
//!   affected requests are the larger of the two.
//! - An agent with findings but no component to change is reported in its summary, and
//!   logged, with no opportunity.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Found, detect, metric, priority, summarize};
use crate::agents::metrics::agent_source;
use crate::change::LambdaSettings;
use crate::cycle::{CycleRequest, TimeWindow};
use crate::ids::{ComponentId, TenantId};
use crate::logfacts::{FailureCounts, TraceGroup};
use crate::opportunity::{AgentFinding, Evidence, Opportunity, OpportunityKind};
use crate::ports::Telemetry;
use crate::records::AgentRecord;
use crate::telemetry::{AgentSeries, AgentSource, MetricName, MetricSeries};
use crate::text::Escaped;

/// What one agent's own metrics showed over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The agent.
    pub agent: String,
    /// Its tenant, or none for a fleet-wide agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// Requests it handled.
    pub requests: f64,
    /// Requests that failed.
    pub errors: f64,
    /// errors ÷ requests.
    pub error_rate: f64,
    /// Median of the per-period p99 latencies (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Highest memory utilisation seen (percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_pct: Option<f64>,
    /// Each finding and where it went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<AgentOutcome>,
    /// Why its findings became no opportunity, or its metrics were not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One finding on an agent's metrics and the component it was put on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutcome {
    /// The problem.
    pub kind: OpportunityKind,
    /// The component it became an opportunity on; none when the agent has none to change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentId>,
}

/// What the component loop learnt of each component, for the opportunities agents put on it.
pub(super) struct ComponentContext {
    pub(super) current: Option<LambdaSettings>,
    pub(super) top_errors: Vec<String>,
    pub(super) stack_traces: Vec<TraceGroup>,
}

/// The cycle as the agents' analysis sees it.
pub(super) struct Cycle<'a> {
    pub(super) by_component: &'a BTreeMap<ComponentId, Vec<&'a MetricSeries>>,
    pub(super) contexts: &'a BTreeMap<&'a ComponentId, ComponentContext>,
    pub(super) excluded: &'a BTreeSet<ComponentId>,
    pub(super) window: TimeWindow,
    pub(super) period_seconds: u32,
}

/// The agents' part of a report.
#[derive(Default)]
pub(super) struct AgentAnalysis {
    pub(super) summaries: Vec<AgentSummary>,
    pub(super) opportunities: Vec<Opportunity>,
    pub(super) unavailable: Option<String>,
}

/// The agents whose own metrics a cycle reads: those declaring metrics, of the cycle's
/// tenant or fleet-wide (every agent for a cycle without a tenant), and, when the cycle
/// names components, owning at least one of them.
pub fn agents_in_scope<'a>(
    agents: &'a [AgentRecord],
    request: &CycleRequest,
) -> Vec<&'a AgentRecord> {
    agents
        .iter()
        .filter(|a| a.metrics.is_some())
        .filter(|a| {
            request.tenant_id.is_none() || a.tenant_id.is_none() || a.tenant_id == request.tenant_id
        })
        .filter(|a| {
            request.components.is_empty()
                || a.components
                    .iter()
                    .any(|c| request.components.iter().any(|r| r.as_str() == c))
        })
        .collect()
}

/// The component among `candidates` (the agent's, in its order) that a finding of `kind`
/// goes to, and why: the largest share of the same thing in the component's own series
/// (see the module docs); the first on a tie or without data. None without candidates.
pub fn attribute<'a>(
    kind: OpportunityKind,
    candidates: &[&'a ComponentId],
    by_component: &BTreeMap<ComponentId, Vec<&MetricSeries>>,
) -> Option<(&'a ComponentId, String)> {
    let first = *candidates.first()?;
    let (what, weight): (&str, fn(&[&MetricSeries]) -> f64) = match kind {
        OpportunityKind::ErrorBurst | OpportunityKind::Timeouts => ("Errors", |s| {
            metric(s, MetricName::Errors).map_or(0.0, MetricSeries::sum)
        }),
        OpportunityKind::Throttling => ("Throttles", |s| {
            metric(s, MetricName::Throttles).map_or(0.0, MetricSeries::sum)
        }),
        OpportunityKind::MemoryPressure => ("peak MemoryUtilization", |s| {
            metric(s, MetricName::MemoryUtilization).map_or(0.0, |m| {
                m.values()
                    .into_iter()
                    .filter(|v| v.is_finite())
                    .fold(0.0, f64::max)
            })
        }),
        OpportunityKind::LatencyRegression => {
            ("time spent (Duration × Invocations)", |s| total_time(s))
        }
    };
    let weights: Vec<f64> = candidates
        .iter()
        .map(|c| by_component.get(*c).map_or(0.0, |s| weight(s)))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut best = 0;
    for (i, w) in weights.iter().enumerate() {
        if *w > weights[best] {
            best = i;
        }
    }
    if weights[best] <= 0.0 || !total.is_finite() {
        let why = if candidates.len() == 1 {
            format!("{first}: the agent's only component in the cycle")
        } else {
            format!("{first}: listed first (no component has {what} in the window)")
        };
        return Some((first, why));
    }
    let chosen = candidates[best];
    Some((
        chosen,
        format!(
            "{chosen}: the largest share of {what} among the agent's components ({:.0} %)",
            100.0 * weights[best] / total
        ),
    ))
}

/// Σ mean duration × invocations over the periods: the time a function spent.
fn total_time(series: &[&MetricSeries]) -> f64 {
    let Some(avg) = metric(series, MetricName::DurationAvg) else {
        return 0.0;
    };
    let invocations: BTreeMap<_, f64> = metric(series, MetricName::Invocations)
        .map(|s| s.points.iter().map(|p| (p.timestamp, p.value)).collect())
        .unwrap_or_default();
    avg.points
        .iter()
        .filter(|p| p.value.is_finite())
        .map(|p| p.value * invocations.get(&p.timestamp).copied().unwrap_or(0.0))
        .sum()
}

/// Adds `found` to `opportunities`, merged into the one of the same component and kind if
/// there is one (kept, with the agent's evidence and finding added and the larger affected
/// count).
pub(super) fn merge(opportunities: &mut Vec<Opportunity>, found: Opportunity) {
    let Some(existing) = opportunities
        .iter_mut()
        .find(|o| o.component == found.component && o.kind == found.kind)
    else {
        opportunities.push(found);
        return;
    };
    existing.evidence.extend(found.evidence);
    existing.agents.extend(found.agents);
    if found.affected_requests > existing.affected_requests {
        existing.affected_requests = found.affected_requests;
        existing.impact_score = existing.expected_gain * found.affected_requests;
    }
    existing.priority = existing.priority.max(found.priority);
}

/// Reads the agents in scope and turns their findings into opportunities. A source that
/// cannot read them leaves the analysis without them (said in `unavailable`), never fails it.
pub(super) async fn analyze_agents(
    telemetry: &dyn Telemetry,
    request: &CycleRequest,
    agents: &[AgentRecord],
    cycle: &Cycle<'_>,
) -> AgentAnalysis {
    let mut out = AgentAnalysis::default();
    let in_scope = agents_in_scope(agents, request);
    if in_scope.is_empty() {
        return out;
    }
    let mut sources: Vec<(&AgentRecord, AgentSource)> = Vec::new();
    for agent in in_scope {
        match agent_source(agent) {
            Some(Ok(source)) => sources.push((agent, source)),
            Some(Err(problem)) => {
                warn!(agent = %Escaped(&agent.name), problem = %Escaped(&problem), "agent metrics declaration refused");
                out.summaries.push(AgentSummary {
                    note: Some(format!("metrics not read: {problem}")),
                    ..empty_summary(agent)
                });
            }
            None => {}
        }
    }
    let asked: Vec<AgentSource> = sources.iter().map(|(_, s)| s.clone()).collect();
    let series = match telemetry
        .agent_series(&asked, &cycle.window, cycle.period_seconds)
        .await
    {
        Ok(series) => series,
        Err(e) => {
            warn!(error = %Escaped(&e), "agent metrics not read; analysing without them");
            out.unavailable = Some(e.to_string());
            return out;
        }
    };
    for (agent, source) in &sources {
        let (summary, found) = analyze_agent(agent, source, &series, request, cycle);
        out.summaries.push(summary);
        out.opportunities.extend(found);
    }
    out
}

fn empty_summary(agent: &AgentRecord) -> AgentSummary {
    AgentSummary {
        agent: agent.name.clone(),
        tenant_id: agent.tenant_id.clone(),
        requests: 0.0,
        errors: 0.0,
        error_rate: 0.0,
        p99_ms: None,
        max_memory_pct: None,
        findings: Vec::new(),
        note: None,
    }
}

/// One agent: its series through the detectors, each finding attributed.
fn analyze_agent(
    agent: &AgentRecord,
    source: &AgentSource,
    series: &[AgentSeries],
    request: &CycleRequest,
    cycle: &Cycle<'_>,
) -> (AgentSummary, Vec<Opportunity>) {
    let mut summary = empty_summary(agent);
    // The detectors read component series; the agent's name stands in for the component.
    let Ok(stand_in) = ComponentId::parse(&agent.name) else {
        summary.note = Some("its name is no component id".into());
        return (summary, Vec::new());
    };
    let own: Vec<MetricSeries> = series
        .iter()
        .filter(|s| s.agent == agent.name && s.tenant_id == agent.tenant_id)
        .map(|s| MetricSeries {
            component: stand_in.clone(),
            metric: s.metric,
            version: None,
            points: s.points.clone(),
        })
        .collect();
    let refs: Vec<&MetricSeries> = own.iter().collect();
    let facts = summarize(
        &stand_in,
        &refs,
        &FailureCounts::default(),
        None,
        Vec::new(),
    );
    summary.requests = facts.invocations;
    summary.errors = facts.errors;
    summary.error_rate = facts.error_rate;
    summary.p99_ms = facts.p99_ms;
    summary.max_memory_pct = facts.max_memory_pct;
    let found = detect(&facts, &refs, None, cycle.window, None);
    if found.is_empty() {
        return (summary, Vec::new());
    }
    let candidates: Vec<&ComponentId> = agent
        .components
        .iter()
        .filter_map(|c| cycle.by_component.keys().find(|k| k.as_str() == c))
        .filter(|c| !cycle.excluded.contains(*c))
        .collect();
    let mut opportunities = Vec::new();
    for f in found {
        let Some((component, why)) = attribute(f.kind, &candidates, cycle.by_component) else {
            summary.findings.push(AgentOutcome {
                kind: f.kind,
                component: None,
            });
            continue;
        };
        summary.findings.push(AgentOutcome {
            kind: f.kind,
            component: Some(component.clone()),
        });
        opportunities.push(opportunity(
            agent, source, f, component, why, &facts, request, cycle,
        ));
    }
    if opportunities.is_empty() {
        let note = if agent.components.is_empty() {
            "it owns no component: nothing to change".to_owned()
        } else {
            "none of its components is in the cycle (analysed and not disabled)".to_owned()
        };
        info!(agent = %Escaped(&agent.name), note = %note, "agent findings without an opportunity");
        summary.note = Some(note);
    }
    (summary, opportunities)
}

#[allow(clippy::too_many_arguments)]
fn opportunity(
    agent: &AgentRecord,
    source: &AgentSource,
    f: Found,
    component: &ComponentId,
    attribution: String,
    facts: &super::ComponentSummary,
    request: &CycleRequest,
    cycle: &Cycle<'_>,
) -> Opportunity {
    let (measure, stands_for, words) = main_measure(f.kind, &f.evidence);
    let metric = source
        .stats
        .iter()
        .find(|(m, _, _)| *m == stands_for)
        .map_or_else(String::new, |(_, name, stat)| {
            format!("{} {name} {stat}", source.namespace)
        });
    let description = match measure {
        Some(e) => format!(
            "agent {}'s {words} was {} ({metric}; threshold {})",
            agent.name,
            number(e.value),
            number(e.threshold)
        ),
        None => format!("agent {}'s {words} ({metric})", agent.name),
    };
    let context = cycle.contexts.get(component);
    let evidence: Vec<Evidence> = f
        .evidence
        .into_iter()
        .map(|e| Evidence {
            measure: format!("agent:{}:{}", agent.name, e.measure),
            ..e
        })
        .collect();
    Opportunity {
        id: format!("{component}:{}", f.kind.as_str()),
        rank: 0,
        component: component.clone(),
        tenant_id: request.tenant_id.clone(),
        kind: f.kind,
        evidence,
        expected_gain: f.kind.expected_gain(),
        affected_requests: f.affected,
        impact_score: f.kind.expected_gain() * f.affected,
        priority: priority(f.kind, f.affected, facts.invocations),
        current: context.and_then(|c| c.current.clone()),
        top_errors: context.map(|c| c.top_errors.clone()).unwrap_or_default(),
        stack_traces: context.map(|c| c.stack_traces.clone()).unwrap_or_default(),
        agents: vec![AgentFinding {
            agent: agent.name.clone(),
            metric,
            description,
            attribution,
        }],
    }
}

/// The evidence that says what a finding is about, the metric it comes from, and in words.
fn main_measure(
    kind: OpportunityKind,
    evidence: &[Evidence],
) -> (Option<&Evidence>, MetricName, &'static str) {
    let find = |m: &str| evidence.iter().find(|e| e.measure == m);
    match kind {
        OpportunityKind::ErrorBurst => (
            find("application_error_rate"),
            MetricName::Errors,
            "error rate",
        ),
        OpportunityKind::MemoryPressure => (
            find("max_memory_pct"),
            MetricName::MemoryUtilization,
            "peak memory utilisation (%)",
        ),
        OpportunityKind::Throttling => (
            find("throttle_rate"),
            MetricName::Throttles,
            "throttle rate",
        ),
        OpportunityKind::Timeouts => (find("timeout_share"), MetricName::Errors, "timeout share"),
        OpportunityKind::LatencyRegression => match find("recent_p99_ms") {
            Some(e) => (
                Some(e),
                MetricName::DurationP99,
                "p99 latency in the window's last quarter (ms)",
            ),
            None => (
                find("recent_mean_duration_ms"),
                MetricName::DurationAvg,
                "mean latency in the window's last quarter (ms)",
            ),
        },
    }
}

/// A value as people read it: up to three decimals, no trailing zeros.
fn number(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::agents::metrics::AgentMetrics;
    use crate::analyze::{AnalysisReport, analyze_with_agents};
    use crate::cycle::{CycleMode, Trigger};
    use crate::error::TelemetryError;
    use crate::ids::CycleId;
    use crate::telemetry::{DataPoint, DurationQuery, LogRow, TelemetryQuery, VersionTotals};
    use crate::testing::StaticDeployer;

    const END: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

    /// Component series, and agent series (or the message of an `Unavailable` error).
    struct Fixture {
        series: Vec<MetricSeries>,
        agents: Result<Vec<AgentSeries>, String>,
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
            _: &DurationQuery,
        ) -> Result<Vec<VersionTotals>, TelemetryError> {
            Ok(vec![])
        }
        async fn error_rows(
            &self,
            _: &TelemetryQuery,
            _: usize,
        ) -> Result<Vec<LogRow>, TelemetryError> {
            Ok(vec![])
        }
        async fn agent_series(
            &self,
            asked: &[AgentSource],
            _: &TimeWindow,
            period_seconds: u32,
        ) -> Result<Vec<AgentSeries>, TelemetryError> {
            assert_eq!(period_seconds, 300, "routine cycles read 5-minute periods");
            let names: Vec<&str> = asked.iter().map(|a| a.agent.as_str()).collect();
            // Only what was asked comes back, as a source would answer.
            self.agents
                .clone()
                .map(|all| {
                    all.into_iter()
                        .filter(|s| names.contains(&s.agent.as_str()))
                        .collect()
                })
                .map_err(TelemetryError::Unavailable)
        }
    }

    fn points(per_hour: f64) -> Vec<DataPoint> {
        (0..24)
            .map(|h| DataPoint {
                timestamp: END - Duration::hours(24 - h),
                value: per_hour,
            })
            .collect()
    }

    fn series(component: &str, metric: MetricName, per_hour: f64) -> MetricSeries {
        MetricSeries {
            component: ComponentId::parse(component).unwrap(),
            metric,
            version: None,
            points: points(per_hour),
        }
    }

    fn agent_series(agent: &str, metric: MetricName, per_hour: f64) -> AgentSeries {
        AgentSeries {
            agent: agent.into(),
            tenant_id: None,
            metric,
            points: points(per_hour),
        }
    }

    /// An agent p99 latency that rises from 200 to 450 ms in the window's last quarter.
    fn slow_p99(agent: &str) -> AgentSeries {
        let mut p99 = agent_series(agent, MetricName::DurationP99, 200.0);
        for p in p99.points.iter_mut().skip(19) {
            p.value = 450.0;
        }
        p99
    }

    fn agent(name: &str, tenant: Option<&str>, components: &[&str]) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            url: format!("https://{name}.example"),
            capabilities: vec!["x".into()],
            mcp_url: None,
            key_secret_id: None,
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            depends_on: vec![],
            low_traffic_windows: vec![],
            window_tool: None,
            notify_tool: None,
            metrics: Some(AgentMetrics {
                namespace: "Acme/Agents".into(),
                dimensions: vec![],
                requests: None,
                errors: None,
                latency_avg: None,
                latency_p99: None,
                memory_utilization: None,
                concurrency: None,
            }),
            tenant_id: tenant.map(|t| TenantId::parse(t).unwrap()),
            registered_by: "k".into(),
            registered_at: END,
        }
    }

    fn request(tenant: Option<&str>, components: &[&str]) -> CycleRequest {
        CycleRequest {
            cycle_id: CycleId::parse("c1").unwrap(),
            mode: CycleMode::Routine,
            tenant_id: tenant.map(|t| TenantId::parse(t).unwrap()),
            components: components
                .iter()
                .map(|c| ComponentId::parse(c).unwrap())
                .collect(),
            analysis_window: TimeWindow {
                start: END - Duration::hours(24),
                end: END,
            },
            max_improvements: 3,
            max_concurrency: 3,
            dry_run: false,
            trigger: Trigger::Schedule { rule: None },
            dedup_key: "*#*".into(),
            requested_at: END,
        }
    }

    async fn run(fixture: &Fixture, agents: &[AgentRecord]) -> AnalysisReport {
        analyze_with_agents(
            fixture,
            &StaticDeployer(None),
            &request(None, &[]),
            &BTreeSet::new(),
            agents,
        )
        .await
        .unwrap()
    }

    /// Two healthy functions of the agent: `api` spends `api_ms` × 1000/h, `worker` 100 ms × 100/h.
    fn two_functions(api_ms: f64) -> Vec<MetricSeries> {
        vec![
            series("api", MetricName::Invocations, 1000.0),
            series("api", MetricName::DurationAvg, api_ms),
            series("worker", MetricName::Invocations, 100.0),
            series("worker", MetricName::DurationAvg, 100.0),
        ]
    }

    #[tokio::test]
    async fn an_agents_latency_regression_goes_to_the_component_spending_most_time() {
        // GIVEN agent orders (api, worker) whose own p99 rose 200 → 450 ms, its functions calm
        let fixture = Fixture {
            series: two_functions(50.0),
            agents: Ok(vec![
                agent_series("orders", MetricName::Invocations, 1000.0),
                slow_p99("orders"),
            ]),
        };
        let orders = agent("orders", None, &["worker", "api"]);

        // WHEN analysed: api spends 50 000 ms/h, worker 10 000
        let report = run(&fixture, std::slice::from_ref(&orders)).await;

        // THEN one latency opportunity on api, naming the agent and its metric
        let ids: Vec<&str> = report.opportunities.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["api:latency_regression"]);
        let o = &report.opportunities[0];
        assert_eq!(o.agents.len(), 1);
        let finding = &o.agents[0];
        assert_eq!(finding.agent, "orders");
        assert_eq!(finding.metric, "Acme/Agents Latency p99");
        assert!(
            finding
                .description
                .starts_with("agent orders's p99 latency in the window's last quarter (ms) was 450 (Acme/Agents Latency p99; threshold 300)"),
            "{}",
            finding.description
        );
        assert!(
            finding
                .attribution
                .starts_with("api: the largest share of time spent"),
            "{}",
            finding.attribution
        );
        assert_eq!(o.evidence[0].measure, "agent:orders:recent_p99_ms");
        assert_eq!(
            report.agents[0].findings,
            [AgentOutcome {
                kind: OpportunityKind::LatencyRegression,
                component: Some(ComponentId::parse("api").unwrap()),
            }]
        );

        // WHEN worker is the one spending most (api 5 ms: 5 000 ms/h)
        let fixture = Fixture {
            series: two_functions(5.0),
            ..fixture
        };
        let report = run(&fixture, &[orders]).await;
        let ids: Vec<&str> = report.opportunities.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["worker:latency_regression"]);
    }

    #[test]
    fn a_tie_or_no_data_goes_to_the_first_listed_component() {
        let api = ComponentId::parse("api").unwrap();
        let worker = ComponentId::parse("worker").unwrap();
        let with = |s: &[MetricSeries]| -> BTreeMap<ComponentId, Vec<MetricSeries>> {
            let mut m: BTreeMap<ComponentId, Vec<MetricSeries>> = BTreeMap::new();
            for x in s {
                m.entry(x.component.clone()).or_default().push(x.clone());
            }
            m
        };
        fn refs(
            m: &BTreeMap<ComponentId, Vec<MetricSeries>>,
        ) -> BTreeMap<ComponentId, Vec<&MetricSeries>> {
            m.iter()
                .map(|(k, v)| (k.clone(), v.iter().collect()))
                .collect()
        }
        // no data at all: the first listed, whichever order the agent lists them in
        let none = with(&[]);
        let (c, why) =
            attribute(OpportunityKind::ErrorBurst, &[&worker, &api], &refs(&none)).unwrap();
        assert_eq!(
            (c, why.as_str()),
            (
                &worker,
                "worker: listed first (no component has Errors in the window)"
            )
        );
        // equal errors: the first listed
        let tie = with(&[
            series("api", MetricName::Errors, 5.0),
            series("worker", MetricName::Errors, 5.0),
        ]);
        let (c, _) = attribute(OpportunityKind::ErrorBurst, &[&api, &worker], &refs(&tie)).unwrap();
        assert_eq!(c, &api);
        // more errors in worker: worker, with its share
        let more = with(&[
            series("api", MetricName::Errors, 1.0),
            series("worker", MetricName::Errors, 3.0),
        ]);
        let (c, why) =
            attribute(OpportunityKind::ErrorBurst, &[&api, &worker], &refs(&more)).unwrap();
        assert_eq!(c, &worker);
        assert!(why.ends_with("(75 %)"), "{why}");
        // memory goes by peak utilisation, not errors
        let memory = with(&[
            series("api", MetricName::MemoryUtilization, 95.0),
            series("worker", MetricName::MemoryUtilization, 40.0),
            series("worker", MetricName::Errors, 3.0),
        ]);
        let (c, _) = attribute(
            OpportunityKind::MemoryPressure,
            &[&worker, &api],
            &refs(&memory),
        )
        .unwrap();
        assert_eq!(c, &api);
        assert!(attribute(OpportunityKind::ErrorBurst, &[], &refs(&memory)).is_none());
    }

    #[tokio::test]
    async fn the_same_kind_found_by_the_component_and_its_agent_is_one_merged_opportunity() {
        // GIVEN api's own error burst (100/h of 1000, no rows) and its agent's (60/h of 1000)
        let burst_of = |agent_errors: f64| Fixture {
            series: vec![
                series("api", MetricName::Invocations, 1000.0),
                series("api", MetricName::Errors, 100.0),
            ],
            agents: Ok(vec![
                agent_series("orders", MetricName::Invocations, 1000.0),
                agent_series("orders", MetricName::Errors, agent_errors),
            ]),
        };
        let orders = [agent("orders", None, &["api"])];
        let report = run(&burst_of(60.0), &orders).await;

        // THEN one error burst: the component's, with the agent's evidence and finding added
        let ids: Vec<&str> = report.opportunities.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["api:error_burst"]);
        let burst = &report.opportunities[0];
        let measures: Vec<&str> = burst.evidence.iter().map(|e| e.measure.as_str()).collect();
        assert_eq!(
            measures,
            [
                "application_error_rate",
                "agent:orders:application_error_rate"
            ]
        );
        assert!(
            (burst.affected_requests - 2400.0).abs() < 1e-9,
            "{}",
            burst.affected_requests
        );
        assert_eq!(burst.agents[0].agent, "orders");
        assert!(
            burst.agents[0].description.starts_with(
                "agent orders's error rate was 0.06 (Acme/Agents Errors Sum; threshold 0.02)"
            ),
            "{}",
            burst.agents[0].description
        );

        // WHEN the agent saw more failures than the function (200/h): the larger count is kept
        let report = run(&burst_of(200.0), &orders).await;
        assert_eq!(report.opportunities.len(), 1);
        let burst = &report.opportunities[0];
        assert!((burst.affected_requests - 4800.0).abs() < 1e-9);
        assert!((burst.impact_score - 0.5 * 4800.0).abs() < 1e-9);
        assert_eq!(burst.evidence[0].measure, "application_error_rate");
    }

    #[tokio::test]
    async fn an_agent_without_components_is_reported_with_no_opportunity() {
        let fixture = Fixture {
            series: two_functions(50.0),
            agents: Ok(vec![
                agent_series("scout", MetricName::Invocations, 1000.0),
                slow_p99("scout"),
            ]),
        };
        let report = run(&fixture, &[agent("scout", None, &[])]).await;
        assert!(
            report.opportunities.is_empty(),
            "{:?}",
            report.opportunities
        );
        let scout = &report.agents[0];
        assert_eq!(scout.agent, "scout");
        assert_eq!(scout.findings[0].component, None);
        assert_eq!(
            scout.note.as_deref(),
            Some("it owns no component: nothing to change")
        );
        // an agent whose components the cycle did not analyse is told apart
        let report = run(&fixture, &[agent("scout", None, &["elsewhere"])]).await;
        assert!(report.opportunities.is_empty());
        assert!(
            report.agents[0]
                .note
                .as_deref()
                .unwrap()
                .starts_with("none of its components")
        );
    }

    #[tokio::test]
    async fn unreadable_agent_metrics_leave_the_analysis_without_them() {
        let fixture = Fixture {
            series: two_functions(50.0),
            agents: Err("GetMetricData: throttled".into()),
        };
        let report = run(&fixture, &[agent("orders", None, &["api"])]).await;
        assert_eq!(
            report.agents_unavailable.as_deref(),
            Some("telemetry unavailable: GetMetricData: throttled")
        );
        assert_eq!(report.components.len(), 2);
    }

    #[test]
    fn a_cycle_reads_its_tenants_and_fleet_wide_agents_owning_its_components() {
        let mut quiet = agent("quiet", None, &["api"]);
        quiet.metrics = None;
        let agents = [
            agent("acme-orders", Some("acme"), &["api"]),
            agent("globex-orders", Some("globex"), &["api"]),
            agent("shared", None, &["worker"]),
            quiet,
        ];
        let names = |r: &CycleRequest| -> Vec<&str> {
            agents_in_scope(&agents, r)
                .iter()
                .map(|a| a.name.as_str())
                .collect()
        };
        assert_eq!(
            names(&request(None, &[])),
            ["acme-orders", "globex-orders", "shared"]
        );
        assert_eq!(
            names(&request(Some("acme"), &[])),
            ["acme-orders", "shared"]
        );
        assert_eq!(names(&request(Some("acme"), &["api"])), ["acme-orders"]);
        assert_eq!(names(&request(None, &["worker", "other"])), ["shared"]);
    }
}
