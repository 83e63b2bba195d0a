use async_trait::async_trait;
use selfbuild_core::analyze::analyze;
use selfbuild_core::canary::{CanaryDeps, monitor};
use selfbuild_core::change::{Change, DeploySpec, Proposal};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::config::Config;
use selfbuild_core::cycle::{CycleMode, CycleRequest, Trigger};
use selfbuild_core::error::StoreError;
use selfbuild_core::ids::{CycleId, ImprovementId};
use selfbuild_core::improvement::{DeployOutcome, DeployStatus, ImprovementItem, Verdict};
use selfbuild_core::logfacts::{ReportLine, parse_report, version_of_stream};
use selfbuild_core::opportunity::OpportunityKind;
use selfbuild_core::ports::{HaltState, HaltSwitch, Llm, LlmRequest};

use crate::planner::RulePlanner;

use super::*;
use serde_json::json;
use std::sync::Mutex;
use time::macros::datetime;

const TIMEOUTS: &str = include_str!("../../../../events/scenarios/timeouts.json");
const MEMORY_CUT: &str = include_str!("../../../../events/scenarios/memory-cut-rolled-back.json");
const THROTTLING: &str =
    include_str!("../../../../events/scenarios/throttling-needs-approval.json");

/// A clock the test moves forward.
struct ManualClock(Mutex<OffsetDateTime>);

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

fn fleet(text: &str) -> (Scenario, Fleet, Arc<ManualClock>) {
    let scenario = Scenario::parse(text, "test.json").unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(scenario.now)));
    let fleet = Fleet::new(&scenario, clock.clone()).unwrap();
    (scenario, fleet, clock)
}

fn id(name: &str) -> ComponentId {
    ComponentId::parse(name).unwrap()
}

fn window(start: OffsetDateTime, minutes: i64) -> TimeWindow {
    TimeWindow {
        start,
        end: start + Duration::minutes(minutes),
    }
}

/// One version (or all, with `version` none) of one function over a whole window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    invocations: f64,
    errors: f64,
    throttles: f64,
    avg_ms: f64,
    p99_ms: f64,
    concurrency: f64,
    memory: f64,
}

impl Stats {
    fn error_rate(&self) -> f64 {
        self.errors / self.invocations
    }
    fn throttle_rate(&self) -> f64 {
        self.throttles / (self.invocations + self.throttles)
    }
}

fn stats_of(series: &[MetricSeries]) -> Stats {
    let get = |metric: MetricName| {
        series
            .iter()
            .find(|s| s.metric == metric)
            .and_then(|s| s.points.first())
            .map_or(f64::NAN, |p| p.value)
    };
    Stats {
        invocations: get(MetricName::Invocations),
        errors: get(MetricName::Errors),
        throttles: get(MetricName::Throttles),
        avg_ms: get(MetricName::DurationAvg),
        p99_ms: get(MetricName::DurationP99),
        concurrency: get(MetricName::ConcurrentExecutions),
        memory: get(MetricName::MemoryUtilization),
    }
}

/// One version's statistics over `w` as one period (the fleet's per-version series), checked
/// against what `version_totals` pools for the monitor.
async fn version_stats(fleet: &Fleet, function: &str, version: &str, w: TimeWindow) -> Stats {
    let minutes = (w.end - w.start).whole_minutes() as u32;
    let view = fleet.views(None, &[id(function)]).pop().unwrap();
    let number = parse_version(version).unwrap();
    let points = fleet
        .points(&view, Some(number), &MetricName::ALL, &w, minutes * 60)
        .unwrap();
    let series: Vec<MetricSeries> = MetricName::ALL
        .into_iter()
        .zip(points)
        .map(|(metric, points)| MetricSeries {
            component: id(function),
            metric,
            version: Some(version.to_owned()),
            points,
        })
        .collect();
    let stats = stats_of(&series);
    let totals = fleet
        .version_totals(
            &id(function),
            &[version.to_owned()],
            &w,
            &DurationQuery::default(),
        )
        .await
        .unwrap();
    let t = &totals[0];
    let same = |a: f64, b: f64| (a.is_nan() && b == 0.0) || (a - b).abs() < 1e-9;
    assert!(
        same(stats.invocations, t.invocations) && same(stats.errors, t.errors),
        "{stats:?} vs {t:?}"
    );
    assert!(
        t.duration_ms
            .is_none_or(|q| (q.p99 - stats.p99_ms).abs() < 1e-9),
        "{stats:?} vs {t:?}"
    );
    stats
}

async fn function_stats(fleet: &Fleet, function: &str, w: TimeWindow) -> Stats {
    let minutes = (w.end - w.start).whole_minutes() as u32;
    let series = fleet
        .metric_series(&query(None, &[function], w, minutes * 60))
        .await
        .unwrap();
    stats_of(&series)
}

fn query(
    tenant: Option<&str>,
    components: &[&str],
    window: TimeWindow,
    period_seconds: u32,
) -> TelemetryQuery {
    TelemetryQuery {
        tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
        components: components.iter().map(|c| id(c)).collect(),
        window,
        period_seconds,
    }
}

fn report(label: &str, s: &Stats) {
    eprintln!(
        "{label}: invocations {:.0}, error rate {:.4}, throttle rate {:.4}, avg {:.0} ms, p99 {:.0} ms, concurrency {:.1}, memory {:.1} %",
        s.invocations,
        s.error_rate(),
        s.throttle_rate(),
        s.avg_ms,
        s.p99_ms,
        s.concurrency,
        s.memory
    );
}

#[tokio::test]
async fn every_bundled_scenario_parses_and_builds_a_fleet() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        count += 1;
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            scenario.expect.get("outcome").is_some(),
            "{}",
            path.display()
        );
        let fleet = Fleet::new(&scenario, Arc::new(FixedClock(scenario.now))).unwrap();
        assert_eq!(fleet.functions().len(), scenario.functions.len());
        // Recorded proposals must be proposals the cycle can read.
        let recorded = scenario
            .llm
            .as_ref()
            .and_then(|l| l.get("recorded"))
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        for r in recorded {
            let proposal: Proposal = serde_json::from_value(r["proposal"].clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let component = r["component"].as_str().unwrap();
            assert_eq!(proposal.change.target().as_str(), component);
            assert!(scenario.function(&id(component)).is_some());
        }
    }
    assert!(count >= 3, "{count} scenarios in {}", dir.display());
}

#[tokio::test]
async fn a_bad_scenario_file_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, TIMEOUTS.replace("\"io_ms\"", "\"io_millis\"")).unwrap();
    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.json"), "{err}");
    assert!(err.contains("functions[0].workload.io_millis"), "{err}");
    let err = Scenario::load(dir.path().join("missing.json")).unwrap_err();
    assert!(matches!(err, ScenarioError::Read { .. }), "{err}");
}

#[test]
fn a_repeated_key_is_refused_naming_it() {
    // Found while fuzzing: `"CANARY_WEIGHT": 5, "CANARY_WEIGHT": 50` in `config` silently
    // kept 50 (and a repeated struct field was reported for the wrong reason).
    let text = TIMEOUTS.replacen(
        "\"functions\"",
        "\"config\": {\"CANARY_WEIGHT\": 5, \"CANARY_WEIGHT\": 50}, \"functions\"",
        1,
    );
    assert_ne!(text, TIMEOUTS);
    let err = Scenario::parse(&text, "t.json").unwrap_err().to_string();
    assert!(
        err.starts_with("t.json: config.CANARY_WEIGHT: the key appears more than once"),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_scenario_and_clock_give_the_same_telemetry() {
    let scenario = Scenario::parse(TIMEOUTS, "t.json").unwrap();
    let clock = Arc::new(FixedClock(scenario.now));
    let a = Fleet::new(&scenario, clock.clone()).unwrap();
    let b = Fleet::new(&scenario, clock).unwrap();
    let q = query(None, &[], window(scenario.now - Duration::HOUR, 60), 60);
    let series = a.metric_series(&q).await.unwrap();
    assert_eq!(series, b.metric_series(&q).await.unwrap());
    assert_eq!(series.len(), MetricName::ALL.len());
    assert!(series.iter().all(|s| s.points.len() == 60));
    assert_eq!(
        a.error_rows(&q, 100).await.unwrap(),
        b.error_rows(&q, 100).await.unwrap()
    );

    let mut other = scenario.clone();
    other.seed += 1;
    let c = Fleet::new(&other, Arc::new(FixedClock(scenario.now))).unwrap();
    assert_ne!(series, c.metric_series(&q).await.unwrap());
}

#[tokio::test]
async fn raising_timeout_and_memory_ends_the_timeouts() {
    let (scenario, fleet, clock) = fleet(TIMEOUTS);
    let f = id("orders-api");
    let before = version_stats(
        &fleet,
        "orders-api",
        "1",
        window(scenario.now - Duration::minutes(30), 30),
    )
    .await;
    report("timeouts v1 (128 MB, 3 s), 30 min before", &before);
    assert!((0.2..0.4).contains(&before.error_rate()), "{before:?}");
    assert_eq!(before.p99_ms, 3000.0);
    assert!((before.memory - 100.0 / 128.0 * 100.0).abs() < 1e-9);
    // The successes alone: the timeouts, capped at 3 s, are not among them.
    let totals = fleet
        .version_totals(
            &f,
            &["1".to_owned()],
            &window(scenario.now - Duration::minutes(30), 30),
            &DurationQuery {
                success_percentiles: Some(vec![0.5, 0.999]),
                ..DurationQuery::default()
            },
        )
        .await
        .unwrap();
    let successes = totals[0].successes.as_ref().unwrap();
    assert_eq!(successes.requests, totals[0].invocations - totals[0].errors);
    assert!(successes.duration_ms.p99 < 3000.0, "{successes:?}");
    assert_eq!(successes.percentiles[0], successes.duration_ms.p50);
    assert!(successes.percentiles[1] >= successes.duration_ms.p99);

    let current = fleet.function_state(&f).await.unwrap().settings;
    let fixed = LambdaSettings {
        memory_mb: 512,
        timeout_seconds: 10,
        ..current
    };
    let deployment = fleet
        .deploy_canary(
            &improvement("fix-timeouts-1"),
            &f,
            &DeploySpec::Config(fixed.clone()),
            1.0,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    let after = window(deployment.deployed_at, 30);
    let canary = version_stats(&fleet, "orders-api", &deployment.canary_version, after).await;
    report("timeouts v2 (512 MB, 10 s), 30 min after", &canary);
    assert!(canary.error_rate() < 0.01, "{canary:?}");
    assert!((1200.0..1900.0).contains(&canary.p99_ms), "{canary:?}");
    assert!((canary.invocations - 3600.0).abs() < 300.0, "{canary:?}");
    // The stable version served nothing once the canary took all the traffic.
    let stable = fleet
        .version_totals(
            &f,
            &["1".to_owned()],
            &after,
            &DurationQuery {
                slower_than_ms: vec![1000.0],
                percentiles: vec![0.5],
                success_percentiles: Some(vec![0.5]),
            },
        )
        .await
        .unwrap();
    assert_eq!(stable[0].invocations, 0.0, "{stable:?}");
    assert_eq!(stable[0].slower_than, [0.0]);
    assert!(stable[0].percentiles.is_empty());
    assert!(stable[0].duration_ms.is_none());
    assert_eq!(stable[0].successes, None);
    // All versions together: the function's error rate dropped.
    let all_after = function_stats(&fleet, "orders-api", after).await;
    assert!((all_after.error_rate() - canary.error_rate()).abs() < 1e-12);
}

#[tokio::test]
async fn cutting_memory_of_a_cpu_bound_function_degrades_its_canary() {
    let (scenario, fleet, clock) = fleet(MEMORY_CUT);
    let f = id("report-renderer");
    let hour_before = window(scenario.now - Duration::HOUR, 60);
    let healthy = version_stats(
        &fleet,
        "report-renderer",
        "1",
        window(scenario.now - Duration::HOUR * 7, 60),
    )
    .await;
    report("memory-cut v1 (1024 MB), before the I/O slowdown", &healthy);
    let before = version_stats(&fleet, "report-renderer", "1", hour_before).await;
    report("memory-cut v1 (1024 MB), 60 min before the deploy", &before);
    assert!(
        healthy.p99_ms < 3000.0 && before.p99_ms > 1.5 * healthy.p99_ms,
        "{healthy:?} → {before:?}"
    );
    assert!(
        before.error_rate() < 0.01 && before.p99_ms < 6000.0,
        "{before:?}"
    );
    assert!(before.memory < 25.0, "{before:?}");

    let recorded = &scenario.llm.as_ref().unwrap()["recorded"][0]["proposal"];
    let proposal: Proposal = serde_json::from_value(recorded.clone()).unwrap();
    let Change::LambdaConfig { config, .. } = &proposal.change else {
        panic!("expected a lambda_config change");
    };
    let current = fleet.function_state(&f).await.unwrap().settings;
    let d = fleet
        .deploy_canary(
            &improvement("cut-memory-1"),
            &f,
            &DeploySpec::Config(config.apply(&current).clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(60));
    let after = window(d.deployed_at, 60);
    let stable = version_stats(&fleet, "report-renderer", "1", after).await;
    let canary = version_stats(&fleet, "report-renderer", &d.canary_version, after).await;
    report("memory-cut v1 (1024 MB), 60 min after, 90 %", &stable);
    report("memory-cut v2 (256 MB), 60 min after, 10 %", &canary);
    assert!(
        canary.p99_ms >= 7500.0 && canary.p99_ms > 1.5 * stable.p99_ms,
        "{canary:?} vs {stable:?}"
    );
    assert!(
        canary.avg_ms > 1.8 * stable.avg_ms,
        "{canary:?} vs {stable:?}"
    );
    assert!(canary.error_rate() > 0.2, "{canary:?}");
    assert!(stable.error_rate() < 0.01, "{stable:?}");
    let rows = fleet
        .error_rows(&query(None, &["report-renderer"], after, 60), 500)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.message.contains("Task timed out after 8.00 seconds"))
    );
}

#[tokio::test]
async fn throttling_follows_the_reserved_concurrency() {
    let (scenario, fleet, clock) = fleet(THROTTLING);
    let f = id("payments-webhook");
    let before = version_stats(
        &fleet,
        "payments-webhook",
        "1",
        window(scenario.now - Duration::minutes(30), 30),
    )
    .await;
    report("throttling v1 (reserved 5), 30 min before", &before);
    assert!((0.45..0.57).contains(&before.throttle_rate()), "{before:?}");
    assert!(before.concurrency <= 5.0 + 1e-9, "{before:?}");

    let current = fleet.function_state(&f).await.unwrap().settings;
    let raised = LambdaSettings {
        reserved_concurrency: Some(25),
        ..current.clone()
    };
    let d = fleet
        .deploy_canary(
            &improvement("raise-reservation-1"),
            &f,
            &DeploySpec::Config(raised.clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    let during = window(d.deployed_at, 30);
    let stable = version_stats(&fleet, "payments-webhook", "1", during).await;
    let canary = version_stats(&fleet, "payments-webhook", &d.canary_version, during).await;
    report("throttling v1 (reserved 5), canary phase, 90 %", &stable);
    report("throttling v2 (reserved 25), canary phase, 10 %", &canary);
    assert_eq!(canary.throttles, 0.0, "{canary:?}");
    assert!((0.45..0.57).contains(&stable.throttle_rate()), "{stable:?}");

    fleet.promote(&d).await.unwrap();
    let promoted_at = clock.now();
    clock.advance(Duration::minutes(30));
    let all = function_stats(&fleet, "payments-webhook", window(promoted_at, 30)).await;
    report("throttling v2 (reserved 25), 30 min after promotion", &all);
    assert_eq!(all.throttles, 0.0, "{all:?}");
    assert!((9.0..13.0).contains(&all.concurrency), "{all:?}");

    // Lowering the reservation throttles more.
    let lowered = LambdaSettings {
        reserved_concurrency: Some(2),
        ..current
    };
    let d = fleet
        .deploy_canary(
            &improvement("lower-reservation-1"),
            &f,
            &DeploySpec::Config(lowered.clone()),
            0.5,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    let low = version_stats(
        &fleet,
        "payments-webhook",
        &d.canary_version,
        window(d.deployed_at, 30),
    )
    .await;
    assert!(low.throttle_rate() > 0.7, "{low:?}");
}

#[tokio::test]
async fn a_ten_percent_canary_gets_a_tenth_of_the_invocations() {
    let (_, fleet, clock) = fleet(TIMEOUTS);
    let f = id("orders-api");
    let settings = fleet.function_state(&f).await.unwrap().settings;
    let d = fleet
        .deploy_canary(
            &improvement("same-again-1"),
            &f,
            &DeploySpec::Config(settings.clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(60));
    let w = window(d.deployed_at, 60);
    let stable = version_stats(&fleet, "orders-api", "1", w).await;
    let canary = version_stats(&fleet, "orders-api", "2", w).await;
    let share = canary.invocations / (canary.invocations + stable.invocations);
    eprintln!(
        "canary share {share:.4} ({} of {})",
        canary.invocations,
        canary.invocations + stable.invocations
    );
    assert!((0.08..0.12).contains(&share), "{share}");
    // Same settings, same behaviour: both time out about as often.
    assert!(
        (canary.error_rate() - stable.error_rate()).abs() < 0.1,
        "{canary:?} vs {stable:?}"
    );
    let all = function_stats(&fleet, "orders-api", w).await;
    assert_eq!(all.invocations, canary.invocations + stable.invocations);
}

#[tokio::test]
async fn a_routing_change_mid_minute_splits_that_minute() {
    let (scenario, fleet, clock) = fleet(TIMEOUTS);
    let f = id("orders-api");
    clock.advance(Duration::seconds(30));
    let settings = fleet.function_state(&f).await.unwrap().settings;
    fleet
        .deploy_canary(
            &improvement("half-1"),
            &f,
            &DeploySpec::Config(settings.clone()),
            1.0,
        )
        .await
        .unwrap();
    let history = fleet.routing_history(&f).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        shares_in_minute(&history, scenario.now.unix_timestamp() / 60),
        vec![(1, 0.5), (2, 0.5)]
    );
    assert_eq!(
        shares_in_minute(&history, scenario.now.unix_timestamp() / 60 - 1),
        vec![(1, 1.0)]
    );
    assert_eq!(
        shares_in_minute(&history, scenario.now.unix_timestamp() / 60 + 1),
        vec![(2, 1.0)]
    );
}

#[tokio::test]
async fn past_windows_keep_the_routing_they_had() {
    let (scenario, fleet, clock) = fleet(TIMEOUTS);
    let f = id("orders-api");
    let past = query(None, &[], window(scenario.now - Duration::HOUR, 60), 300);
    let before = fleet.metric_series(&past).await.unwrap();
    let fixed = LambdaSettings {
        memory_mb: 512,
        timeout_seconds: 10,
        ..fleet.function_state(&f).await.unwrap().settings
    };
    let d = fleet
        .deploy_canary(
            &improvement("fix-1"),
            &f,
            &DeploySpec::Config(fixed.clone()),
            1.0,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(20));
    fleet.promote(&d).await.unwrap();
    clock.advance(Duration::minutes(20));
    assert_eq!(fleet.metric_series(&past).await.unwrap(), before);
}

#[tokio::test]
async fn periods_aggregate_minutes_and_the_future_has_no_data() {
    let (scenario, fleet, _) = fleet(THROTTLING);
    let w = TimeWindow {
        start: scenario.now - Duration::minutes(30),
        end: scenario.now + Duration::minutes(30),
    };
    let minutes = fleet.metric_series(&query(None, &[], w, 60)).await.unwrap();
    let fives = fleet
        .metric_series(&query(None, &[], w, 300))
        .await
        .unwrap();
    let get = |series: &[MetricSeries], m: MetricName| {
        series.iter().find(|s| s.metric == m).unwrap().clone()
    };
    let inv1 = get(&minutes, MetricName::Invocations);
    let inv5 = get(&fives, MetricName::Invocations);
    assert_eq!(inv1.points.len(), 30, "only ended minutes have data");
    assert_eq!(inv5.points.len(), 6);
    assert_eq!(inv5.points[1].timestamp, w.start + Duration::minutes(5));
    for p in 0..6 {
        let range = p * 5..p * 5 + 5;
        let inv: f64 = inv1.points[range.clone()].iter().map(|d| d.value).sum();
        assert_eq!(inv5.points[p].value, inv);
        let thr: f64 = get(&minutes, MetricName::Throttles).points[range.clone()]
            .iter()
            .map(|d| d.value)
            .sum();
        assert_eq!(get(&fives, MetricName::Throttles).points[p].value, thr);
        let weighted: f64 = inv1.points[range.clone()]
            .iter()
            .zip(&get(&minutes, MetricName::DurationAvg).points[range.clone()])
            .map(|(i, d)| i.value * d.value)
            .sum();
        let avg5 = get(&fives, MetricName::DurationAvg).points[p].value;
        assert!(
            (avg5 - weighted / inv).abs() < 1e-6,
            "{avg5} vs {}",
            weighted / inv
        );
        let peak = get(&minutes, MetricName::ConcurrentExecutions).points[range.clone()]
            .iter()
            .map(|d| d.value)
            .fold(0.0, f64::max);
        assert_eq!(
            get(&fives, MetricName::ConcurrentExecutions).points[p].value,
            peak
        );
        let p99_1 = get(&minutes, MetricName::DurationP99).points[range]
            .iter()
            .map(|d| d.value)
            .fold(0.0, f64::max);
        assert!(get(&fives, MetricName::DurationP99).points[p].value <= p99_1);
    }
    let err = fleet
        .metric_series(&query(None, &[], w, 90))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("period_seconds"), "{err}");
}

const TENANTS: &str = r#"{
    "name": "tenants", "now": "2026-11-22T05:00:00Z", "seed": 1,
    "functions": [
        {"name": "a-api", "tenant": "acme", "settings": {"memory_mb": 128, "timeout_seconds": 1},
         "workload": {"invocations_per_minute": 60, "work_ms_at_1024mb": 200, "memory_used_mb": 90, "duration_jitter": 0.2}},
        {"name": "g-api", "tenant": "globex", "settings": {"memory_mb": 256, "timeout_seconds": 1},
         "workload": {"invocations_per_minute": 60, "work_ms_at_1024mb": 100, "memory_used_mb": 300,
                      "base_error_rate": 0.5, "error_messages": ["E <id>"]}},
        {"name": "shared-cron", "settings": {"memory_mb": 128, "timeout_seconds": 1},
         "workload": {"invocations_per_minute": 1, "work_ms_at_1024mb": 10, "memory_used_mb": 50}}
    ],
    "expect": {}
}"#;

#[tokio::test]
async fn a_tenant_sees_only_its_functions() {
    let (scenario, fleet, _) = fleet(TENANTS);
    let w = window(scenario.now - Duration::minutes(10), 10);
    let components = |series: Vec<MetricSeries>| {
        let mut c: Vec<String> = series
            .into_iter()
            .map(|s| s.component.to_string())
            .collect();
        c.dedup();
        c
    };
    let all = fleet.metric_series(&query(None, &[], w, 60)).await.unwrap();
    assert_eq!(components(all), ["a-api", "g-api", "shared-cron"]);
    let acme = fleet
        .metric_series(&query(Some("acme"), &[], w, 60))
        .await
        .unwrap();
    assert_eq!(components(acme), ["a-api"]);
    // A named component without data for the query (another tenant's, or none of the
    // fleet's) gets every metric without points (the Telemetry contract).
    let no_points = |series: &[MetricSeries]| series.iter().all(|s| s.points.is_empty());
    let cross = fleet
        .metric_series(&query(Some("acme"), &["g-api"], w, 60))
        .await
        .unwrap();
    assert_eq!(cross.len(), MetricName::ALL.len());
    assert!(no_points(&cross));
    assert_eq!(components(cross), ["g-api"]);
    let unknown = fleet
        .metric_series(&query(None, &["nope"], w, 60))
        .await
        .unwrap();
    assert!(no_points(&unknown));
    assert_eq!(components(unknown), ["nope"]);
    let picked = fleet
        .metric_series(&query(None, &["g-api", "nope"], w, 60))
        .await
        .unwrap();
    assert!(no_points(
        &picked
            .iter()
            .filter(|s| s.component.as_str() == "nope")
            .cloned()
            .collect::<Vec<_>>()
    ));
    assert!(
        picked
            .iter()
            .any(|s| s.component.as_str() == "g-api" && !s.points.is_empty())
    );
    let mut picked = components(picked);
    picked.sort();
    assert_eq!(picked, ["g-api", "nope"]);

    let rows = fleet
        .error_rows(&query(None, &[], w, 60), 1000)
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.component.as_str() == "a-api"));
    assert!(rows.iter().any(|r| r.component.as_str() == "g-api"));
    let rows = fleet
        .error_rows(&query(Some("acme"), &[], w, 60), 1000)
        .await
        .unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.component.as_str() == "a-api"));
    let none = fleet
        .version_totals(&id("nope"), &["1".into()], &w, &DurationQuery::default())
        .await
        .unwrap();
    assert_eq!(none, [VersionTotals::empty("1")]);
}

#[tokio::test]
async fn out_of_memory_shows_in_metrics_and_logs_and_more_memory_fixes_it() {
    let (scenario, fleet, clock) = fleet(TENANTS);
    let f = id("g-api");
    let w = window(scenario.now - Duration::minutes(10), 10);
    let before = function_stats(&fleet, "g-api", w).await;
    assert_eq!(before.error_rate(), 1.0, "{before:?}");
    assert_eq!(before.memory, 100.0);
    let rows = fleet
        .error_rows(&query(None, &["g-api"], w, 60), 5)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.message.contains("Runtime.ExitError")
        && r.message.contains("Max Memory Used: 256 MB")));

    let settings = LambdaSettings {
        memory_mb: 512,
        ..fleet.function_state(&f).await.unwrap().settings
    };
    let d = fleet
        .deploy_canary(
            &improvement("more-memory-1"),
            &f,
            &DeploySpec::Config(settings.clone()),
            1.0,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    let after = version_stats(
        &fleet,
        "g-api",
        &d.canary_version,
        window(d.deployed_at, 30),
    )
    .await;
    assert!(
        (0.4..0.6).contains(&after.error_rate()),
        "base_error_rate remains: {after:?}"
    );
    assert!(
        (after.memory - 300.0 / 512.0 * 100.0).abs() < 1e-9,
        "{after:?}"
    );
    let rows = fleet
        .error_rows(&query(None, &["g-api"], window(d.deployed_at, 30), 60), 50)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.message.contains("\tERROR\tE ") && !r.message.contains("<id>")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn report_rows_say_what_each_sampled_invocation_used() {
    // GIVEN g-api killed for memory at 256 MB
    let (scenario, killed, _) = fleet(TENANTS);
    let w = window(scenario.now - Duration::minutes(10), 10);
    let rows = killed
        .report_rows(&query(None, &["g-api"], w, 60), 200)
        .await
        .unwrap();
    // THEN its REPORT lines, newest first, read as reports of version 1 at the limit
    assert_eq!(rows.len(), 200);
    assert!(rows.windows(2).all(|p| p[0].timestamp >= p[1].timestamp));
    for row in &rows {
        let ReportLine::Report(r) = parse_report(&row.message) else {
            panic!("{}", row.message);
        };
        assert_eq!(
            row.log_stream.as_deref().and_then(version_of_stream),
            Some("1")
        );
        assert_eq!((r.memory_size_mb, r.max_memory_used_mb), (256.0, 256.0));
        assert_eq!(r.error_type.as_deref(), Some("Runtime.OutOfMemory"));
    }
    // and the timeouts scenario's say timeout; none without a named component
    let (scenario, timeouts, _) = fleet(TIMEOUTS);
    let w = window(scenario.now - Duration::minutes(10), 10);
    let rows = timeouts
        .report_rows(&query(None, &["orders-api"], w, 60), 100_000)
        .await
        .unwrap();
    let invocations = function_stats(&timeouts, "orders-api", w).await.invocations;
    assert!(rows.len() as f64 <= invocations && !rows.is_empty());
    assert!(rows.iter().any(|r| r.message.contains("\tStatus: timeout")));
    assert!(
        timeouts
            .report_rows(&query(None, &[], w, 60), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn error_rows_are_newest_first_limited_and_match_the_error_count() {
    let (scenario, fleet, clock) = fleet(TIMEOUTS);
    clock.advance(Duration::seconds(20));
    let now = clock.now();
    let w = window(scenario.now - Duration::minutes(10), 20);
    let rows = fleet
        .error_rows(&query(None, &[], w, 60), 50)
        .await
        .unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.windows(2).all(|p| p[0].timestamp >= p[1].timestamp));
    assert!(
        rows.iter()
            .all(|r| r.timestamp >= w.start && r.timestamp < now)
    );
    assert!(
        rows[0].timestamp >= scenario.now,
        "the current minute's rows are visible"
    );
    assert!(
        rows.iter()
            .any(|r| r.message.ends_with("Task timed out after 3.00 seconds"))
    );
    assert!(
        fleet
            .error_rows(&query(None, &[], w, 60), 0)
            .await
            .unwrap()
            .is_empty()
    );

    let ended = window(scenario.now - Duration::minutes(10), 10);
    let all = fleet
        .error_rows(&query(None, &[], ended, 60), 100_000)
        .await
        .unwrap();
    let errors = function_stats(&fleet, "orders-api", ended).await.errors;
    assert_eq!(all.len() as f64, errors);
    // A longer window has application errors too, some of them with a stack trace.
    let day = fleet
        .error_rows(
            &query(
                None,
                &[],
                window(scenario.now - Duration::HOUR * 24, 24 * 60),
                60,
            ),
            100_000,
        )
        .await
        .unwrap();
    let app: Vec<&LogRow> = day
        .iter()
        .filter(|r| r.message.contains("\tERROR\t"))
        .collect();
    assert!(!app.is_empty());
    assert!(app.iter().any(|r| r.message.lines().count() > 1));
    assert!(app.iter().all(|r| !r.message.contains("<id>")));
}

#[tokio::test]
async fn deploys_are_idempotent_per_improvement() {
    let (_, fleet, clock) = fleet(TIMEOUTS);
    let f = id("orders-api");
    let settings = LambdaSettings {
        memory_mb: 512,
        ..fleet.function_state(&f).await.unwrap().settings
    };
    let first = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(settings.clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(1));
    let again = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(settings.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(fleet.routing_history(&f).unwrap().len(), 1);
    assert_eq!(fleet.version_settings(&f, "3"), None);
    let state = fleet.function_state(&f).await.unwrap();
    assert_eq!(state.canary, Some(("2".to_owned(), 0.1)));
    assert_eq!(state.alias, LIVE_ALIAS);

    let other = LambdaSettings {
        memory_mb: 1024,
        ..settings.clone()
    };
    let err = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(other.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");
    let err = fleet
        .deploy_canary(
            &improvement("imp-2"),
            &f,
            &DeploySpec::Config(other.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already routes to canary version 2"),
        "{err}"
    );

    fleet.promote(&first).await.unwrap();
    fleet.promote(&first).await.unwrap();
    assert_eq!(fleet.routing_history(&f).unwrap().len(), 2);
    let promoted = fleet.function_state(&f).await.unwrap();
    assert_eq!(
        (promoted.stable_version.as_str(), promoted.canary.clone()),
        ("2", None)
    );
    assert_eq!(promoted.settings, settings);

    // Rollback works after a promotion too, and twice is once.
    fleet.rollback(&first).await.unwrap();
    fleet.rollback(&first).await.unwrap();
    assert_eq!(fleet.routing_history(&f).unwrap().len(), 3);
    assert_eq!(fleet.function_state(&f).await.unwrap(), first.baseline);
    let err = fleet.promote(&first).await.unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    // A retried deploy of the rolled-back improvement changes nothing either.
    assert_eq!(
        fleet
            .deploy_canary(
                &improvement("imp-1"),
                &f,
                &DeploySpec::Config(settings.clone()),
                0.1
            )
            .await
            .unwrap(),
        first
    );
    assert_eq!(fleet.function_state(&f).await.unwrap(), first.baseline);
}

#[tokio::test]
async fn rollback_restores_the_exact_baseline() {
    let (_, fleet, clock) = fleet(THROTTLING);
    let f = id("payments-webhook");
    let before = fleet.function_state(&f).await.unwrap();
    let changed = LambdaSettings {
        reserved_concurrency: Some(25),
        environment: [("MODE".to_owned(), "fast".to_owned())].into(),
        ..before.settings.clone()
    };
    let d = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(changed.clone()),
            0.25,
        )
        .await
        .unwrap();
    assert_eq!(d.baseline, before);
    assert_eq!(d.deployed_at, clock.now());
    clock.advance(Duration::minutes(10));
    fleet.rollback(&d).await.unwrap();
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
    let history = fleet.routing_history(&f).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].at, d.deployed_at + Duration::minutes(10));
    assert_eq!(history[1].routing, Routing::INITIAL);
    // The next deploy publishes a new version; rolling back the older one is refused now.
    let d2 = fleet
        .deploy_canary(
            &improvement("imp-2"),
            &f,
            &DeploySpec::Config(changed.clone()),
            0.25,
        )
        .await
        .unwrap();
    assert_eq!(d2.canary_version, "3");
    let err = fleet.rollback(&d).await.unwrap_err();
    assert!(err.to_string().contains("deployed again"), "{err}");
    fleet.rollback(&d2).await.unwrap();
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
}

#[tokio::test]
async fn undoing_a_deploy_rolls_back_what_it_did_and_nothing_else() {
    let (_, fleet, _) = fleet(THROTTLING);
    let f = id("payments-webhook");
    let before = fleet.function_state(&f).await.unwrap();
    // A deploy that never happened left nothing.
    assert_eq!(
        fleet.undo_deploy(&improvement("imp-1"), &f).await.unwrap(),
        None
    );
    let changed = LambdaSettings {
        reserved_concurrency: Some(25),
        ..before.settings.clone()
    };
    fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(changed.clone()),
            0.25,
        )
        .await
        .unwrap();
    // Another function's undo of the same id touches nothing here.
    assert_eq!(
        fleet
            .undo_deploy(&improvement("imp-1"), &id("orders-api"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        fleet.undo_deploy(&improvement("imp-1"), &f).await.unwrap(),
        Some(before.clone())
    );
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
    // Twice is once.
    assert_eq!(
        fleet.undo_deploy(&improvement("imp-1"), &f).await.unwrap(),
        Some(before.clone())
    );
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
}

#[tokio::test]
async fn bad_deploys_are_rejected() {
    let (_, fleet, _) = fleet(TIMEOUTS);
    let f = id("orders-api");
    let settings = fleet.function_state(&f).await.unwrap().settings;
    let err = fleet
        .deploy_canary(
            &improvement("x-1"),
            &id("ghost"),
            &DeploySpec::Config(settings.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("ghost")),
        "{err}"
    );
    let err = fleet.function_state(&id("ghost")).await.unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    for weight in [0.0, -0.1, 1.5, f64::NAN] {
        let err = fleet
            .deploy_canary(
                &improvement("x-1"),
                &f,
                &DeploySpec::Config(settings.clone()),
                weight,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DeployError::Rejected(_)), "{weight}: {err}");
    }
    assert!(fleet.routing_history(&f).unwrap().is_empty());
}

struct NeverHalted;

#[async_trait]
impl HaltSwitch for NeverHalted {
    async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
        Ok(None)
    }
    async fn set_halt(&self, _: &HaltState) -> Result<(), StoreError> {
        Ok(())
    }
    async fn clear_halt(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// Runs a scenario the way a routine cycle would, with core's own steps: analyze the last
/// 24 h, take the recorded proposal (or the rule planner's), deploy it as a canary at the
/// configured weight, and monitor it for the configured window.
async fn run_scenario(text: &str) -> (OpportunityKind, Verdict, Vec<String>) {
    let (scenario, fleet, clock) = fleet(text);
    let config = Config::from_lookup(|_| None).unwrap();
    let request = CycleRequest {
        cycle_id: CycleId::parse("scenario").unwrap(),
        mode: CycleMode::Routine,
        tenant_id: None,
        components: Vec::new(),
        analysis_window: window(scenario.now - Duration::HOUR * 24, 24 * 60),
        max_improvements: 3,
        max_concurrency: 3,
        dry_run: false,
        trigger: Trigger::Schedule { rule: None },
        dedup_key: "*#*".into(),
        requested_at: scenario.now,
    };
    let analysis = analyze(&fleet, &fleet, &request).await.unwrap();
    let [opportunity] = analysis.opportunities.as_slice() else {
        panic!(
            "{}: expected one opportunity, got {:?}",
            scenario.name, analysis.opportunities
        );
    };
    let mut item = ImprovementItem {
        cycle_id: request.cycle_id.clone(),
        tenant_id: None,
        mode: request.mode,
        dry_run: false,
        opportunity: opportunity.clone(),
        generated: None,
        validation: None,
        approval: None,
        deploy: None,
        monitor: None,
    };
    let recorded = scenario
        .llm
        .as_ref()
        .and_then(|l| l["recorded"].as_array())
        .and_then(|r| {
            r.iter()
                .find(|a| a["component"] == opportunity.component.as_str())
        });
    let proposal: Proposal = match recorded {
        Some(answer) => serde_json::from_value(answer["proposal"].clone()).unwrap(),
        None => {
            let ask = LlmRequest {
                system: String::new(),
                prompt: String::new(),
                proposal_schema: serde_json::json!({}),
                item: item.clone(),
                budget_usd: 1.0,
            };
            RulePlanner.propose(&ask).await.unwrap().proposal
        }
    };
    let Change::LambdaConfig {
        function,
        config: change,
    } = &proposal.change
    else {
        panic!("expected a lambda_config change");
    };
    let before = fleet.function_state(function).await.unwrap();
    let after = change.apply(&before.settings);
    let deployment = fleet
        .deploy_canary(
            &item.improvement_id(),
            function,
            &DeploySpec::Config(after.clone()),
            config.canary_weight,
        )
        .await
        .unwrap();
    item.deploy = Some(DeployOutcome {
        status: DeployStatus::Deployed,
        deployment: Some(deployment),
        wait_until: None,
        reason: String::new(),
        monitor_interval_seconds: config.monitor_interval_seconds,
        deferred_since: None,
        deferrals: 0,
    });
    clock.advance(Duration::seconds(i64::from(config.monitor_window_seconds)));
    let deps = CanaryDeps {
        deployer: &fleet,
        telemetry: &fleet,
        halt: &NeverHalted,
        clock: clock.as_ref(),
    };
    let report = monitor(deps, &config, &item).await.unwrap();
    assert!(report.window_over);
    // Each version's p50 and p99 lie in their intervals.
    let latency = report.latency.as_ref().unwrap();
    for (quantiles, intervals) in [
        (latency.stable, latency.stable_intervals),
        (latency.canary, latency.canary_intervals),
    ] {
        let (q, i) = (quantiles.unwrap(), intervals.unwrap());
        assert!(i.p50.0 <= q.p50 && q.p50 <= i.p50.1, "{q:?} {i:?}");
        assert!(i.p99.0 <= q.p99 && q.p99 <= i.p99.1, "{q:?} {i:?}");
        assert!(i.p50.0 < i.p50.1, "{i:?}");
    }
    // And so do their successes', read apart from the failures.
    for successes in [latency.stable_successes, latency.canary_successes] {
        let s = successes.unwrap();
        let (q, i) = (s.quantiles, s.intervals.unwrap());
        assert!(i.p50.0 <= q.p50 && q.p50 <= i.p50.1, "{q:?} {i:?}");
        assert!(i.p99.0 <= q.p99 && q.p99 <= i.p99.1, "{q:?} {i:?}");
        assert!(s.requests > 0.0);
    }
    let metrics = report
        .metrics
        .iter()
        .map(|m| {
            format!(
                "{} stable {:.4} canary {:.4} p={:?} degraded={}",
                m.metric, m.baseline, m.canary, m.p_value, m.degraded
            )
        })
        .collect();
    eprintln!(
        "{}: {:?} on {} → {} → {:?} {:#?}",
        scenario.name,
        opportunity.kind,
        opportunity.component,
        proposal.change.describe(Some(&before.settings)),
        report.verdict,
        metrics
    );
    (opportunity.kind, report.verdict, metrics)
}

#[tokio::test]
async fn the_timeouts_scenario_is_found_and_its_fix_is_healthy() {
    let (kind, verdict, metrics) = run_scenario(TIMEOUTS).await;
    assert_eq!(kind, OpportunityKind::Timeouts);
    assert_eq!(verdict, Verdict::Healthy, "{metrics:#?}");
}

#[tokio::test]
async fn the_memory_cut_scenario_is_found_and_its_canary_degrades() {
    let (kind, verdict, metrics) = run_scenario(MEMORY_CUT).await;
    assert_eq!(kind, OpportunityKind::LatencyRegression);
    assert_eq!(verdict, Verdict::Degraded, "{metrics:#?}");
}

#[tokio::test]
async fn the_throttling_scenario_is_found_and_its_fix_is_healthy() {
    let (kind, verdict, metrics) = run_scenario(THROTTLING).await;
    assert_eq!(kind, OpportunityKind::Throttling);
    assert_eq!(verdict, Verdict::Healthy, "{metrics:#?}");
}

#[tokio::test]
async fn faults_fail_the_calls_they_name_then_let_them_through() {
    let text = THROTTLING.replacen(
        "\"expect\"",
        r#""faults": [
            {"operation": "deploy_canary", "failures": 2},
            {"operation": "rollback", "after_calls": 1, "failures": 1, "error": "rejected"}
        ],
        "expect""#,
        1,
    );
    let (_, fleet, clock) = fleet(&text);
    let f = id("payments-webhook");
    let before = fleet.function_state(&f).await.unwrap();
    let changed = LambdaSettings {
        reserved_concurrency: Some(25),
        ..before.settings.clone()
    };
    for _ in 0..2 {
        let err = fleet
            .deploy_canary(
                &improvement("imp-1"),
                &f,
                &DeploySpec::Config(changed.clone()),
                0.1,
            )
            .await;
        assert!(
            matches!(err, Err(DeployError::Unavailable(ref m)) if m.contains("injected")),
            "{err:?}"
        );
    }
    // Nothing changed while the calls failed; the third goes through.
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
    let d = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(changed.clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(5));
    fleet.rollback(&d).await.unwrap();
    let d2 = fleet
        .deploy_canary(
            &improvement("imp-2"),
            &f,
            &DeploySpec::Config(changed.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert!(matches!(
        fleet.rollback(&d2).await,
        Err(DeployError::Rejected(_))
    ));
    fleet.rollback(&d2).await.unwrap();
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
}

#[tokio::test]
async fn late_telemetry_hides_the_newest_minutes() {
    let late = TIMEOUTS.replacen(
        "\"expect\"",
        "\"telemetry_delay_minutes\": 3, \"expect\"",
        1,
    );
    let (scenario, on_time, _) = fleet(TIMEOUTS);
    let (_, delayed, _) = fleet(&late);
    let w = window(scenario.now - Duration::minutes(10), 10);
    let all = function_stats(&on_time, "orders-api", w).await;
    let seen = function_stats(&delayed, "orders-api", w).await;
    let older = function_stats(&on_time, "orders-api", window(w.start, 7)).await;
    assert!(seen.invocations < all.invocations);
    assert_eq!(seen.invocations, older.invocations);
}

#[tokio::test]
async fn outcomes_report_each_canary_span_and_its_failures() {
    let (_, fleet, clock) = fleet(MEMORY_CUT);
    let f = id("report-renderer");
    let before = fleet.function_state(&f).await.unwrap();
    let cut = LambdaSettings {
        memory_mb: 256,
        ..before.settings.clone()
    };
    let d = fleet
        .deploy_canary(
            &improvement("imp-1"),
            &f,
            &DeploySpec::Config(cut.clone()),
            0.1,
        )
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    fleet.rollback(&d).await.unwrap();
    clock.advance(Duration::minutes(30));
    let outcomes = fleet.outcomes();
    let [outcome] = outcomes.as_slice() else {
        panic!("{outcomes:?}")
    };
    assert_eq!(outcome.end_state, before);
    assert_eq!(outcome.routing_changes, 2);
    let [canary] = outcome.canaries.as_slice() else {
        panic!("{outcome:?}")
    };
    assert_eq!(canary.version, "2");
    assert_eq!(canary.ended_at - canary.deployed_at, Duration::minutes(30));
    assert!(!canary.promoted);
    // A tenth of 60 requests/min for 30 minutes, about a third of them timing out.
    assert!((120.0..240.0).contains(&canary.invocations), "{canary:?}");
    assert!(
        canary.errors > 20.0 && canary.errors < canary.invocations,
        "{canary:?}"
    );
}

fn improvement(text: &str) -> ImprovementId {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_code_patch_ships_onto_the_code_it_was_judged_against_and_rolls_back() {
    use selfbuild_core::change::{CodeBase, CodeRelease, FilePatch};
    use selfbuild_core::ports::CodeSource;
    let (_, fleet, _) = fleet(include_str!(
        "../../../../events/scenarios/safety/nd-code-patch-held-for-review.json"
    ));
    let f = id("orders-api");
    let before = fleet.function_state(&f).await.unwrap();
    let deployed = fleet.deployed_files(&f, &["src/orders.py"]).await.unwrap();
    assert_eq!(deployed.base.code_sha256, before.code_sha256);
    let old = deployed.files["src/orders.py"].clone().unwrap();
    let new = old.replace("item[\"lines\"]", "item.get(\"lines\", [])");
    let diff = format!(
        "--- a/src/orders.py\n+++ b/src/orders.py\n{}",
        diffy::create_patch(&old, &new)
            .to_string()
            .split_once("@@")
            .map(|(_, hunks)| format!("@@{hunks}"))
            .unwrap()
    );
    let release = |base: CodeBase| DeploySpec::Code {
        settings: before.settings.clone(),
        release: CodeRelease {
            files: vec![FilePatch {
                path: "src/orders.py".into(),
                language: None,
                diff: diff.clone(),
            }],
            base,
        },
    };
    // Judged against other code: refused, nothing published.
    let stale = release(CodeBase {
        code_sha256: Some("not-the-live-code".into()),
        runtime: Some("python3.12".into()),
    });
    let err = fleet
        .deploy_canary(&improvement("imp-1"), &f, &stale, 0.1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("validate it again"), "{err}");
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);

    let spec = release(deployed.base.clone());
    let d = fleet
        .deploy_canary(&improvement("imp-1"), &f, &spec, 0.1)
        .await
        .unwrap();
    let code = d.code.clone().expect("a code version");
    assert_eq!(Some(code.base_code_sha256.clone()), before.code_sha256);
    assert_ne!(code.code_sha256, code.base_code_sha256);
    assert_eq!(code.files, ["src/orders.py"]);
    // A retry is the same deployment; the stable version still serves the old code.
    assert_eq!(
        fleet
            .deploy_canary(&improvement("imp-1"), &f, &spec, 0.1)
            .await
            .unwrap(),
        d
    );
    let served = fleet.deployed_files(&f, &["src/orders.py"]).await.unwrap();
    assert_eq!(served.files["src/orders.py"].as_deref(), Some(old.as_str()));
    // Promoted, the patched code is what the next patch is cut on; rolled back, the old.
    fleet.promote(&d).await.unwrap();
    let served = fleet.deployed_files(&f, &["src/orders.py"]).await.unwrap();
    assert_eq!(served.files["src/orders.py"].as_deref(), Some(new.as_str()));
    assert_eq!(
        served.base.code_sha256.as_deref(),
        Some(code.code_sha256.as_str())
    );
    fleet.rollback(&d).await.unwrap();
    assert_eq!(fleet.function_state(&f).await.unwrap(), before);
    let served = fleet.deployed_files(&f, &["src/orders.py"]).await.unwrap();
    assert_eq!(served.files["src/orders.py"].as_deref(), Some(old.as_str()));
}

const PYTHON_FIX: &str = include_str!("../../../../events/scenarios/code-fix-python-promoted.json");
const NODE_FIX: &str = include_str!("../../../../events/scenarios/code-fix-node-rolled-back.json");

/// The scenario's recorded code patch, as deploy would ship it onto the live code.
async fn recorded_patch(scenario: &Scenario, fleet: &Fleet, function: &str) -> DeploySpec {
    use selfbuild_core::change::{CodeRelease, FilePatch};
    let answer = &scenario.llm.as_ref().unwrap()["recorded"][0]["proposal"]["change"];
    let files: Vec<FilePatch> = serde_json::from_value(answer["files"].clone()).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let deployed = fleet.deployed_files(&id(function), &paths).await.unwrap();
    let state = fleet.function_state(&id(function)).await.unwrap();
    DeploySpec::Code {
        settings: state.settings,
        release: CodeRelease {
            files,
            base: deployed.base,
        },
    }
}

/// Each error row of `function` over `w`, read as a record and its stack trace.
async fn traces(
    fleet: &Fleet,
    function: &str,
    w: TimeWindow,
) -> Vec<selfbuild_core::logfacts::StackTrace> {
    use selfbuild_core::logfacts::{parse_trace, record};
    let rows = fleet
        .error_rows(&query(None, &[function], w, 60), 500)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    rows.iter()
        .map(|row| {
            let read = record::read(&row.message);
            parse_trace(read.trace_text(), read.error_type.as_deref())
                .unwrap_or_else(|| panic!("no trace in {}", row.message))
        })
        .collect()
}

#[tokio::test]
async fn a_python_functions_errors_are_its_code_failing_and_a_patch_that_fixes_it_has_none() {
    let (scenario, fleet, clock) = fleet(PYTHON_FIX);
    let f = "checkout-api";
    let hours = window(scenario.now - Duration::HOUR * 2, 120);
    // 8 % of the events are store pickups, which the handler fails on.
    let before = function_stats(&fleet, f, hours).await;
    assert!((before.error_rate() - 0.08).abs() < 0.015, "{before:?}");
    for trace in traces(&fleet, f, hours).await {
        assert_eq!(
            (trace.exception.as_str(), trace.message.as_deref()),
            ("KeyError", Some("'shipping'"))
        );
        let top = trace.top_frame().unwrap();
        assert_eq!(top.file.as_deref(), Some("/var/task/orders.py"));
        assert_eq!(top.function.as_deref(), Some("shipping_cost"));
        assert_eq!(trace.frames[1].function.as_deref(), Some("handler"));
    }
    // Half the traffic on the patched code for an hour: it fails on nothing, stable as before.
    let spec = recorded_patch(&scenario, &fleet, f).await;
    fleet
        .deploy_canary(&improvement("imp-1"), &id(f), &spec, 0.5)
        .await
        .unwrap();
    clock.advance(Duration::HOUR);
    let hour = window(scenario.now, 60);
    let canary = version_stats(&fleet, f, "2", hour).await;
    let stable = version_stats(&fleet, f, "1", hour).await;
    assert!(canary.invocations > 2000.0, "{canary:?}");
    assert_eq!(canary.errors, 0.0, "{canary:?}");
    assert!((stable.error_rate() - 0.08).abs() < 0.025, "{stable:?}");
}

#[tokio::test]
async fn a_node_patch_that_breaks_another_event_class_fails_on_it() {
    let (scenario, fleet, clock) = fleet(NODE_FIX);
    let f = "cart-quote";
    let spec = recorded_patch(&scenario, &fleet, f).await;
    fleet
        .deploy_canary(&improvement("imp-1"), &id(f), &spec, 0.5)
        .await
        .unwrap();
    clock.advance(Duration::HOUR);
    let hour = window(scenario.now, 60);
    let stable = version_stats(&fleet, f, "1", hour).await;
    let canary = version_stats(&fleet, f, "2", hour).await;
    // Stable fails on the 5 % empty carts; the canary fixes those and fails on the 40 %
    // of quotes without a query string.
    assert!((stable.error_rate() - 0.05).abs() < 0.02, "{stable:?}");
    assert!((canary.error_rate() - 0.40).abs() < 0.04, "{canary:?}");
    let messages: std::collections::BTreeSet<(String, Option<String>, Option<u32>)> =
        traces(&fleet, f, hour)
            .await
            .into_iter()
            .map(|t| {
                let line = t.top_frame().and_then(|f| f.line);
                assert_eq!(
                    t.top_frame().and_then(|f| f.file.as_deref()),
                    Some("file:///var/task/src/cart.mjs")
                );
                (t.exception, t.message, line)
            })
            .collect();
    assert_eq!(
        messages,
        [
            (
                "TypeError".to_owned(),
                Some("Cannot read properties of undefined (reading 'reduce')".to_owned()),
                Some(9)
            ),
            (
                "TypeError".to_owned(),
                Some("Cannot read properties of null (reading 'currency')".to_owned()),
                Some(11)
            ),
        ]
        .into_iter()
        .collect(),
    );
}

#[tokio::test]
async fn a_fleet_whose_interpreter_is_missing_is_refused_naming_the_install_command() {
    let scenario = Scenario::parse(PYTHON_FIX, "py.json").unwrap();
    let runner = Arc::new(CodeRunner::with_programs("python3-not-installed", "node"));
    let err =
        Fleet::with_runner(&scenario, Arc::new(FixedClock(scenario.now)), runner).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("checkout-api") && text.contains("apt-get install python3"),
        "{text}"
    );
}

#[tokio::test]
async fn published_metrics_answer_agents_per_period_by_statistic_and_whole_dimension_set() {
    // GIVEN the timeouts fleet with an agent's metrics published beside it: 10 requests a
    // minute, latency 100 ms then 300 ms from 04:03
    let mut doc: serde_json::Value = serde_json::from_str(TIMEOUTS).unwrap();
    doc["telemetry_delay_minutes"] = json!(0);
    doc["published_metrics"] = json!([
        {"namespace": "Acme/Agents", "metric": "Requests", "dimensions": {"Agent": "orders"}, "value": 10},
        {"namespace": "Acme/Agents", "metric": "Latency", "dimensions": {"Agent": "orders"}, "value": 100,
         "changes": [{"at": "2026-11-22T04:03:30Z", "value": 300}]},
        {"namespace": "Acme/Agents", "metric": "Requests", "dimensions": {"Agent": "orders", "Env": "dev"}, "value": 999}
    ]);
    let (_, fleet, _) = fleet(&doc.to_string());
    let source = |stats: &[(MetricName, &str, &str)]| AgentSource {
        agent: "orders".into(),
        tenant_id: None,
        namespace: "Acme/Agents".into(),
        dimensions: vec![selfbuild_core::agents::metrics::MetricDimension {
            name: "Agent".into(),
            value: "orders".into(),
        }],
        stats: stats
            .iter()
            .map(|(m, n, s)| (*m, (*n).to_owned(), (*s).to_owned()))
            .collect(),
    };
    let asked = [source(&[
        (MetricName::Invocations, "Requests", "Sum"),
        (MetricName::DurationAvg, "Latency", "Average"),
        (MetricName::DurationP99, "Latency", "Maximum"),
        (MetricName::Errors, "Errors", "Sum"),
    ])];
    // WHEN the 10 minutes before now (05:00) are read… from 04:00, in 5-minute periods
    let start = datetime!(2026-11-22 04:00 UTC);
    let series = fleet
        .agent_series(&asked, &window(start, 10), 300)
        .await
        .unwrap();
    // THEN sums add the minutes, averages are means, maxima the largest; unpublished is empty
    let values = |metric| -> Vec<f64> {
        series
            .iter()
            .find(|s| s.metric == metric)
            .unwrap()
            .points
            .iter()
            .map(|p| p.value)
            .collect()
    };
    assert_eq!(values(MetricName::Invocations), [50.0, 50.0]);
    assert_eq!(
        values(MetricName::DurationAvg),
        [(3.0 * 100.0 + 2.0 * 300.0) / 5.0, 300.0]
    );
    assert_eq!(values(MetricName::DurationP99), [300.0, 300.0]);
    assert!(values(MetricName::Errors).is_empty());
    assert_eq!(
        series[0].points[1].timestamp,
        datetime!(2026-11-22 04:05 UTC)
    );
    // and minutes not yet ended have no data
    let late = fleet
        .agent_series(&asked, &window(datetime!(2026-11-22 04:58 UTC), 10), 60)
        .await
        .unwrap();
    assert_eq!(late[0].points.len(), 2);

    // a published metric out of time order is refused, naming it
    doc["published_metrics"][1]["changes"] = json!([
        {"at": "2026-11-22T04:03:30Z", "value": 300}, {"at": "2026-11-22T04:00:00Z", "value": 1}
    ]);
    let e = Scenario::parse(&doc.to_string(), "t.json").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.json: published_metrics[1].changes: must be in time order"
    );
}
