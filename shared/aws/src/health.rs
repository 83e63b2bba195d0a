//! The self health pass on AWS (R20): what it observes besides the pass's own ports
//! (selfbuild's functions' `Errors` and `Throttles` from CloudWatch, the dead-letter queue's
//! depth), and one pass after each poll tick of alarm-intake.
//!
//! It also observes the functions selfbuild changed (targets of improvements with a live
//! change in the last [`CHANGE_LOOKBACK`]): whether each exists, its error rate, when its
//! errors began; the pass rolls back a change the errors began right after, by handing the
//! rollback to the rollback function ([`crate::rollback_heal`]).
//!
//! AWS calls of one pass: one DynamoDB read of the last report for the metric window, one
//! `GetMetricData` (two queries per own function), one `GetQueueAttributes`; for the changed
//! functions at most [`CHANGE_PAGES`] DynamoDB `Query` pages of improvement records, one
//! `GetMetricData` (two queries per function, at most [`MAX_COMPONENTS`] functions) and one
//! `GetFunctionConfiguration` per function; the pass's own (see
//! `selfbuild_core::health::pass` and [`crate::sfn`]: five `ListExecutions` listings and a
//! `DescribeExecution` per execution new to the container), and the heals.

use std::time::Duration;

use selfbuild_core::Config;
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::event::{EventJson, IntakeEvent, parse_event};
use selfbuild_core::health::observe::{component_fact, last_change};
use selfbuild_core::health::pass::{Observed, PassPorts, run_pass};
use selfbuild_core::health::{
    CheckStatus, ComponentFact, FunctionFact, HealthReport, SelfChange, Thresholds,
};
use selfbuild_core::ids::ComponentId;
use selfbuild_core::intake::{IntakeDeps, IntakeError, IntakeResponse, handle_delivery};
use selfbuild_core::ports::{
    AgentPeers, AlarmSource, DeadLetters, ImprovementStore, MinerStateStore, NoRollbackHeal,
    Registry,
};
use selfbuild_core::records::{ImprovementQuery, ImprovementRecord, TenantScope};
use selfbuild_core::telemetry::{MetricName, MetricSeries};
use selfbuild_core::text::Escaped;
use serde_json::Value;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::telemetry::{CloudWatchTelemetry, MAX_QUERIES_PER_REQUEST};

/// The shortest window the own functions' metrics are read over (the poll period).
pub const MIN_METRIC_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The longest (after a long gap, or on the first pass).
pub const MAX_METRIC_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The longest one pass after a poll may take: alarm-intake's timeout is 30 s and the poll
/// ran first.
pub const PASS_TIMEOUT: Duration = Duration::from_secs(20);

/// How far back improvement records are read for the functions selfbuild changed.
pub const CHANGE_LOOKBACK: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most pages of improvement records (newest first) one pass reads.
pub const CHANGE_PAGES: usize = 3;
/// The most changed functions one pass observes: two queries each in one `GetMetricData`.
pub const MAX_COMPONENTS: usize = MAX_QUERIES_PER_REQUEST / 2;
/// How far back a changed function's metrics are read (when its errors began).
pub const COMPONENT_LOOKBACK: Duration = Duration::from_secs(60 * 60);
/// The period of a changed function's metric points.
pub const COMPONENT_PERIOD_SECONDS: u32 = 60;

/// What the AWS pass reads besides [`PassPorts`].
pub struct HealthSources<'a> {
    /// CloudWatch metrics.
    pub telemetry: &'a CloudWatchTelemetry,
    /// selfbuild's own functions (`SELF_FUNCTION_NAMES`); none: not observed.
    pub own_functions: &'a [ComponentId],
    /// Intake's dead-letter queue, where there is one.
    pub dead_letters: Option<&'a dyn DeadLetters>,
    /// Where the functions selfbuild changed are found; none: components not observed.
    pub components: Option<ComponentSources<'a>>,
    /// The registered agents and the client that pings them; none: agents not observed.
    pub agents: Option<AgentSources<'a>>,
}

/// Where the pass finds the registered agents and how it calls them.
#[derive(Clone, Copy)]
pub struct AgentSources<'a> {
    /// The agents' records.
    pub registry: &'a dyn Registry,
    /// The MCP client (`ping`, bounded by its call timeout).
    pub peers: &'a dyn AgentPeers,
}

/// Where the pass finds the functions selfbuild changed and whether each exists.
#[derive(Clone, Copy)]
pub struct ComponentSources<'a> {
    /// The improvement records.
    pub improvements: &'a dyn ImprovementStore,
    /// Lambda, asked whether each function exists.
    pub lambda: &'a aws_sdk_lambda::Client,
}

/// The functions with a live selfbuild change among `records` updated in the last
/// [`CHANGE_LOOKBACK`], newest change first, at most [`MAX_COMPONENTS`]; a component that
/// is no function name is left out.
pub fn changed_functions(
    records: &[ImprovementRecord],
    now: OffsetDateTime,
) -> Vec<(ComponentId, SelfChange)> {
    let since = now - CHANGE_LOOKBACK;
    let recent: Vec<ImprovementRecord> = records
        .iter()
        .filter(|r| r.updated_at >= since)
        .cloned()
        .collect();
    let mut names: Vec<&str> = recent.iter().map(|r| r.component.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut changed: Vec<(ComponentId, SelfChange)> = names
        .into_iter()
        .filter_map(|name| {
            let change = last_change(&recent, name)?;
            ComponentId::parse(name).ok().map(|id| (id, change))
        })
        .collect();
    changed.sort_by_key(|(_, change)| std::cmp::Reverse(change.deployed_at));
    changed.truncate(MAX_COMPONENTS);
    changed
}

/// The newest improvement records, at most [`CHANGE_PAGES`] pages, stopping at the first
/// page updated wholly before [`CHANGE_LOOKBACK`].
async fn recent_records(
    store: &dyn ImprovementStore,
    now: OffsetDateTime,
) -> Result<Vec<ImprovementRecord>, String> {
    let since = now - CHANGE_LOOKBACK;
    let mut records = Vec::new();
    let mut cursor = None;
    for _ in 0..CHANGE_PAGES {
        let page = store
            .list_improvements(&ImprovementQuery {
                scope: TenantScope::All,
                status: None,
                limit: ImprovementQuery::MAX_LIMIT,
                cursor: cursor.take(),
            })
            .await
            .map_err(|e| e.to_string())?;
        // Ids are newest first: a page all older than the lookback ends the read.
        let older = page.items.iter().all(|r| r.updated_at < since);
        records.extend(page.items);
        match page.next_cursor {
            Some(next) if !older => cursor = Some(next),
            _ => break,
        }
    }
    Ok(records)
}

/// Whether `function` exists (`GetFunctionConfiguration`); none when Lambda did not say.
async fn function_exists(lambda: &aws_sdk_lambda::Client, function: &ComponentId) -> Option<bool> {
    match lambda
        .get_function_configuration()
        .function_name(function.as_str())
        .send()
        .await
    {
        Ok(_) => Some(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Some(false)
        }
        Err(e) => {
            warn!(
                function = %function,
                error = %Escaped(&crate::sdk_error::ErrorChain(&e).to_string()),
                "whether the function exists not read"
            );
            None
        }
    }
}

/// The registered agents with an MCP URL, pinged at once; none when there are none or the
/// registry cannot be read (logged).
async fn observe_agents(sources: AgentSources<'_>) -> Option<Vec<ComponentFact>> {
    let agents = match sources.registry.list_agents(&TenantScope::All).await {
        Ok(agents) => agents,
        Err(e) => {
            warn!(error = %Escaped(&e.to_string()), "registered agents not read: not pinged");
            return None;
        }
    };
    if agents.iter().all(|a| a.mcp_url.is_none()) {
        return None;
    }
    Some(selfbuild_core::health::agents::agent_facts(&agents, sources.peers).await)
}

/// The functions selfbuild changed, as component facts: whether each exists, its error rate
/// over the pass interval `window`, when its errors began. None when the records or the
/// metrics cannot be read (logged).
pub async fn observe_components(
    telemetry: &CloudWatchTelemetry,
    sources: ComponentSources<'_>,
    window: &TimeWindow,
    limits: &Thresholds,
) -> Option<Vec<ComponentFact>> {
    let now = window.end;
    let records = match recent_records(sources.improvements, now).await {
        Ok(records) => records,
        Err(e) => {
            warn!(error = %Escaped(&e), "improvement records not read");
            return None;
        }
    };
    let changed = changed_functions(&records, now);
    if changed.is_empty() {
        return Some(Vec::new());
    }
    let functions: Vec<ComponentId> = changed.iter().map(|(f, _)| f.clone()).collect();
    let lookback = TimeWindow {
        start: now - COMPONENT_LOOKBACK,
        end: now,
    };
    let series = match telemetry
        .function_series(
            &functions,
            &[MetricName::Errors, MetricName::Invocations],
            &lookback,
            COMPONENT_PERIOD_SECONDS,
        )
        .await
    {
        Ok(series) => series,
        Err(e) => {
            warn!(error = %Escaped(&e.to_string()), "changed functions' metrics not read");
            return None;
        }
    };
    let recent: Duration = (window.end - window.start)
        .try_into()
        .unwrap_or(MIN_METRIC_WINDOW);
    let mut facts = Vec::with_capacity(changed.len());
    for (function, change) in changed {
        let mut fact = component_fact(
            function.as_str(),
            &series,
            now,
            recent,
            limits.component_error_rate,
            Some(change),
        );
        // Unknown (Lambda did not say) counts as there: its metrics still speak.
        fact.exists = function_exists(sources.lambda, &function)
            .await
            .unwrap_or(true);
        facts.push(fact);
    }
    Some(facts)
}

/// The window the own functions' metrics are read over: since the last pass, at least
/// [`MIN_METRIC_WINDOW`] and at most [`MAX_METRIC_WINDOW`].
pub fn metric_window(last_pass_at: Option<OffsetDateTime>, now: OffsetDateTime) -> TimeWindow {
    let longest = now - MAX_METRIC_WINDOW;
    let shortest = now - MIN_METRIC_WINDOW;
    let start = last_pass_at.map_or(longest, |at| at.clamp(longest, shortest));
    TimeWindow { start, end: now }
}

/// Each own function's `Errors` and `Throttles` summed over the series; a function without
/// data has zeros.
pub fn function_facts(functions: &[ComponentId], series: &[MetricSeries]) -> Vec<FunctionFact> {
    let sum = |f: &ComponentId, metric: MetricName| -> f64 {
        series
            .iter()
            .filter(|s| &s.component == f && s.metric == metric)
            .flat_map(|s| s.points.iter())
            .map(|p| p.value)
            .filter(|v| v.is_finite())
            .sum()
    };
    functions
        .iter()
        .map(|f| FunctionFact {
            function: f.as_str().to_owned(),
            errors: sum(f, MetricName::Errors),
            throttles: sum(f, MetricName::Throttles),
        })
        .collect()
}

/// What the pass cannot observe through its ports. A source that fails is reported in the
/// logs and left unobserved (`skipped`), never failing the pass.
pub async fn observe(
    sources: &HealthSources<'_>,
    window: &TimeWindow,
    limits: &Thresholds,
) -> Observed {
    let functions = if sources.own_functions.is_empty() {
        None
    } else {
        match sources
            .telemetry
            .function_totals(
                sources.own_functions,
                &[MetricName::Errors, MetricName::Throttles],
                window,
            )
            .await
        {
            Ok(series) => Some(function_facts(sources.own_functions, &series)),
            Err(e) => {
                warn!(error = %Escaped(&e.to_string()), "own functions' metrics not read");
                None
            }
        }
    };
    let dlq_depth = match sources.dead_letters {
        None => None,
        Some(dlq) => match dlq.depth().await {
            Ok(depth) => Some(depth),
            Err(e) => {
                warn!(error = %Escaped(&e.to_string()), "dead-letter queue depth not read");
                None
            }
        },
    };
    let functions_changed = match sources.components {
        None => None,
        Some(c) => observe_components(sources.telemetry, c, window, limits).await,
    };
    let agents = match sources.agents {
        None => None,
        Some(a) => observe_agents(a).await,
    };
    let components = match (functions_changed, agents) {
        (None, None) => None,
        (functions, agents) => Some(functions.into_iter().chain(agents).flatten().collect()),
    };
    Observed {
        functions,
        dlq_depth,
        components,
    }
}

/// One pass at `now`: observe, then [`run_pass`]; the report is logged (and stored by the
/// pass).
pub async fn pass(
    ports: &PassPorts<'_>,
    sources: &HealthSources<'_>,
    now: OffsetDateTime,
    limits: &Thresholds,
) -> HealthReport {
    let last = ports
        .health
        .last_health_report()
        .await
        .ok()
        .flatten()
        .map(|r| r.at)
        .filter(|at| *at < now);
    let observed = observe(sources, &metric_window(last, now), limits).await;
    let report = run_pass(ports, now, limits, observed).await;
    let problems: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, CheckStatus::Degraded | CheckStatus::Failed))
        .map(|c| c.detail.as_str())
        .collect();
    info!(
        healthy = report.healthy,
        heals = report.outcomes.len(),
        disabled = report.disabled.len(),
        problems = %Escaped(&problems.join("; ")),
        "health pass"
    );
    report
}

/// Whether intake's event is a poll tick (after which a pass runs).
pub fn is_poll(event: &Value) -> bool {
    matches!(parse_event(event), Ok(IntakeEvent::Poll { .. }))
}

/// One pass after a poll tick, within [`PASS_TIMEOUT`]; whatever happens, the poll's answer
/// stands (a pass that fails or runs out of time is logged).
pub async fn pass_after_poll(
    ports: &PassPorts<'_>,
    sources: &HealthSources<'_>,
    now: OffsetDateTime,
    limits: &Thresholds,
) -> Option<HealthReport> {
    match tokio::time::timeout(PASS_TIMEOUT, pass(ports, sources, now, limits)).await {
        Ok(report) => Some(report),
        Err(_) => {
            warn!(
                timeout_s = PASS_TIMEOUT.as_secs(),
                "health pass ran out of time; the next poll runs another"
            );
            None
        }
    }
}

/// A rollback heal that refuses every order: for a pass that has no business rolling
/// anything back (alarm-intake hands its heals to the rollback function:
/// [`crate::rollback_heal::InvokeRollbackFunction`]).
pub const NO_ROLLBACK_HERE: NoRollbackHeal = NoRollbackHeal {
    why: "this health pass does not roll back; use MCP rollback_improvement",
};

/// alarm-intake's rollback heal without `ROLLBACK_FUNCTION_NAME`.
pub const NO_ROLLBACK_FUNCTION: NoRollbackHeal = NoRollbackHeal {
    why: "no rollback function to hand it to (ROLLBACK_FUNCTION_NAME is not set)",
};

/// The health pass a poll tick runs: its ports, what it reads besides them, its thresholds.
pub struct PollHealth<'a> {
    /// The pass's ports.
    pub ports: PassPorts<'a>,
    /// What it reads besides them.
    pub sources: HealthSources<'a>,
    /// Its thresholds.
    pub limits: Thresholds,
}

/// alarm-intake's handler: the delivery through intake, then for a poll tick one health pass,
/// whatever intake answered and whatever `ENABLE_SELF_BUILDING` says; intake's answer is
/// returned unchanged.
pub async fn handle_then_pass(
    deps: IntakeDeps<'_>,
    miners: &dyn MinerStateStore,
    alarms: &dyn AlarmSource,
    config: &Config,
    event: EventJson,
    health: &PollHealth<'_>,
) -> Result<IntakeResponse, IntakeError> {
    let poll = event.peek().is_some_and(is_poll);
    let answer = handle_delivery(deps, miners, alarms, config, event).await;
    if poll {
        // Boxed: the pass's futures nest too deep for the handler's layout.
        Box::pin(pass_after_poll(
            &health.ports,
            &health.sources,
            deps.clock.now(),
            &health.limits,
        ))
        .await;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfbuild_core::telemetry::DataPoint;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

    #[test]
    fn the_metric_window_runs_from_the_last_pass_within_five_minutes_and_an_hour() {
        assert_eq!(metric_window(None, NOW).start, NOW - MAX_METRIC_WINDOW);
        let last = NOW - Duration::from_secs(600);
        assert_eq!(metric_window(Some(last), NOW).start, last);
        assert_eq!(
            metric_window(Some(NOW - Duration::from_secs(60)), NOW).start,
            NOW - MIN_METRIC_WINDOW
        );
        assert_eq!(
            metric_window(Some(NOW - Duration::from_secs(86_400)), NOW).start,
            NOW - MAX_METRIC_WINDOW
        );
        assert_eq!(metric_window(None, NOW).end, NOW);
    }

    #[test]
    fn function_facts_sum_each_functions_errors_and_throttles() {
        let f = ComponentId::parse("selfbuild-analyze").unwrap();
        let g = ComponentId::parse("selfbuild-deploy").unwrap();
        let series = |c: &ComponentId, metric, values: &[f64]| MetricSeries {
            component: c.clone(),
            metric,
            version: None,
            points: values
                .iter()
                .map(|v| DataPoint {
                    timestamp: NOW,
                    value: *v,
                })
                .collect(),
        };
        let facts = function_facts(
            &[f.clone(), g.clone()],
            &[
                series(&f, MetricName::Errors, &[1.0, 2.0]),
                series(&f, MetricName::Throttles, &[f64::NAN, 4.0]),
                series(&g, MetricName::Invocations, &[9.0]),
            ],
        );
        assert_eq!(facts[0].errors, 3.0);
        assert_eq!(facts[0].throttles, 4.0);
        assert_eq!((facts[1].errors, facts[1].throttles), (0.0, 0.0));
    }

    fn record(
        component: &str,
        cycle: &str,
        status: selfbuild_core::records::ImprovementStatus,
        at: OffsetDateTime,
    ) -> ImprovementRecord {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/steps/rollback.json")).unwrap();
        let mut item: selfbuild_core::improvement::ImprovementItem =
            serde_json::from_value(event["item"].clone()).unwrap();
        item.cycle_id = selfbuild_core::ids::CycleId::parse(cycle).unwrap();
        item.opportunity.component = ComponentId::parse(component).unwrap();
        ImprovementRecord::of_item(&item, status, at)
    }

    #[test]
    fn changed_functions_are_the_live_changes_within_the_lookback_newest_first() {
        use selfbuild_core::records::ImprovementStatus::{Promoted, RolledBack, Validated};
        let hour = time::Duration::hours(1);
        let old = NOW - CHANGE_LOOKBACK - hour;
        let records = [
            record(
                "orders",
                "acme-orders-20261205T090000Z-aa11bb22",
                Promoted,
                NOW - 3 * hour,
            ),
            record(
                "orders",
                "acme-orders-20261205T100000Z-aa11bb23",
                Promoted,
                NOW - hour,
            ),
            record(
                "billing",
                "acme-billing-20261205T100000Z-aa11bb24",
                Promoted,
                NOW - 2 * hour,
            ),
            // Not live, or too old: not observed.
            record(
                "undone",
                "acme-undone-20261205T100000Z-aa11bb25",
                RolledBack,
                NOW,
            ),
            record(
                "idea",
                "acme-idea-20261205T100000Z-aa11bb26",
                Validated,
                NOW,
            ),
            record(
                "ancient",
                "acme-ancient-20261105T100000Z-aa11bb27",
                Promoted,
                old,
            ),
        ];
        let changed = changed_functions(&records, NOW);
        let names: Vec<(&str, OffsetDateTime)> = changed
            .iter()
            .map(|(f, c)| (f.as_str(), c.deployed_at))
            .collect();
        assert_eq!(
            names,
            vec![("orders", NOW - hour), ("billing", NOW - 2 * hour)]
        );
        assert_eq!(
            changed[0].1.improvement_id,
            records[1].improvement_id.to_string()
        );
    }

    #[test]
    fn at_most_max_components_are_observed() {
        use selfbuild_core::records::ImprovementStatus::Deployed;
        let records: Vec<ImprovementRecord> = (0..MAX_COMPONENTS + 5)
            .map(|i| {
                record(
                    &format!("fn-{i}"),
                    &format!("acme-fn-20261205T100000Z-{i:08x}"),
                    Deployed,
                    NOW - time::Duration::minutes(i as i64),
                )
            })
            .collect();
        let changed = changed_functions(&records, NOW);
        assert_eq!(changed.len(), MAX_COMPONENTS);
        // The newest kept.
        assert_eq!(changed[0].0.as_str(), "fn-0");
    }

    #[test]
    fn only_a_poll_tick_is_a_poll() {
        let poll: Value =
            serde_json::from_str(include_str!("../../../events/scheduled-poll.json")).unwrap();
        assert!(is_poll(&poll));
        let daily: Value =
            serde_json::from_str(include_str!("../../../events/scheduled-24h.json")).unwrap();
        assert!(!is_poll(&daily));
        assert!(!is_poll(&Value::Null));
    }
}
