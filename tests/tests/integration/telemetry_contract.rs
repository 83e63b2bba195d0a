//! The Telemetry contract: one suite of checks written against the port, run on the
//! embedded fleet (simulated telemetry) and on `CloudWatchTelemetry` over moto (metric data
//! and log events the harness puts there).
//!
//! Where the adapters' backends differ, the harness says so and the check asserts each side:
//!
//! - **Percentiles** ([`TelemetryHarness::PERCENTILES`]): moto 5.2.6 answers a `p99` query
//!   with HTTP 500, so on moto the adapter runs with percentiles off and the checks assert
//!   what the port promises then: no `DurationP99` series, and version totals without
//!   quantiles, slow counts or percentile values (never made-up zeros). The percentile
//!   requests are unit-tested in selfbuild-aws.
//! - **Success latency** (`DurationQuery::success_percentiles`) is not in the suite: on AWS
//!   it reads the JSON `platform.report` records with a Logs Insights `stats … by`, which
//!   moto's query engine does not run; selfbuild-aws unit-tests the query and its parsing.
//! - **Agents' own metrics**: the fleet answers from its scenario's `published_metrics`,
//!   CloudWatch from the agent's namespace; the same values are put in both.
//! - **REPORT lines**: moto's Logs Insights runs no `filter`, so `report_rows` there returns
//!   every line of the group; the check reads the reports among them, as analyze does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use selfbuild_aws::telemetry::{CloudWatchTelemetry, TelemetrySettings};
use selfbuild_core::change::LambdaSettings;
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::logfacts::{Report, ReportLine, parse_report, version_of_stream};
use selfbuild_core::ports::{Clock, Deployer, Telemetry};
use selfbuild_core::telemetry::{
    AgentSource, DurationQuery, LogRow, MetricName, MetricSeries, TelemetryQuery, VersionTotals,
};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_tests::cloudwatch_fixture::{log_group, put_metric};
use selfbuild_tests::improvement_id;
use selfbuild_tests::moto::MotoServer;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// One adapter under the contract, with telemetry of one busy function, and what its
/// backend cannot compute stated.
pub trait TelemetryHarness {
    /// The adapter.
    type T: Telemetry;
    /// The source computes percentile statistics.
    const PERCENTILES: bool;
    /// The adapter.
    fn telemetry(&self) -> &Self::T;
    /// The instant telemetry is read at.
    fn now(&self) -> OffsetDateTime;
    /// A window before [`TelemetryHarness::now`] in which [`busy`] had invocations on
    /// versions 1 and 2 and logged at least four errors.
    fn window(&self) -> TimeWindow;
}

/// The function with telemetry.
fn busy() -> ComponentId {
    ComponentId::parse("orders-api").unwrap()
}

/// A function nobody has telemetry of.
fn ghost() -> ComponentId {
    ComponentId::parse("no-such-function").unwrap()
}

fn query(window: TimeWindow, components: Vec<ComponentId>) -> TelemetryQuery {
    TelemetryQuery {
        tenant: None,
        components,
        window,
        period_seconds: 60,
    }
}

/// The metrics every component's series come in.
fn metrics<H: TelemetryHarness>() -> Vec<MetricName> {
    MetricName::ALL
        .into_iter()
        .filter(|m| H::PERCENTILES || *m != MetricName::DurationP99)
        .collect()
}

/// Each component's metrics, sorted; asserts each series is for all versions, with points in
/// time order inside `window`.
fn series_by_component(
    series: &[MetricSeries],
    window: &TimeWindow,
) -> Vec<(ComponentId, Vec<MetricName>)> {
    let mut by: std::collections::BTreeMap<ComponentId, Vec<MetricName>> = Default::default();
    for s in series {
        assert_eq!(s.version, None, "{s:?}");
        assert!(
            s.points.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
            "points in time order: {s:?}"
        );
        assert!(
            s.points
                .iter()
                .all(|p| p.timestamp >= window.start && p.timestamp < window.end),
            "points inside the window: {s:?}"
        );
        by.entry(s.component.clone()).or_default().push(s.metric);
    }
    by.into_iter()
        .map(|(c, mut m)| {
            m.sort();
            (c, m)
        })
        .collect()
}

fn sorted(mut metrics: Vec<MetricName>) -> Vec<MetricName> {
    metrics.sort();
    metrics
}

fn of(series: &[MetricSeries], component: &ComponentId, metric: MetricName) -> MetricSeries {
    series
        .iter()
        .find(|s| &s.component == component && s.metric == metric)
        .unwrap_or_else(|| panic!("no {metric:?} of {component}"))
        .clone()
}

pub async fn every_metric_asked_for_comes_back_once_per_component<H: TelemetryHarness>(h: &H) {
    let window = h.window();
    let series = h
        .telemetry()
        .metric_series(&query(window, vec![busy(), ghost()]))
        .await
        .unwrap();
    let expected = sorted(metrics::<H>());
    assert_eq!(
        series_by_component(&series, &window),
        [(ghost(), expected.clone()), (busy(), expected)],
        "percentiles: {}",
        H::PERCENTILES
    );
    assert!(
        series
            .iter()
            .filter(|s| s.component == ghost())
            .all(|s| s.points.is_empty()),
        "no data is an empty series"
    );
    let invocations = of(&series, &busy(), MetricName::Invocations);
    assert!(invocations.sum() > 0.0, "{invocations:?}");
    let errors = of(&series, &busy(), MetricName::Errors);
    assert!(errors.sum() > 0.0 && errors.sum() <= invocations.sum());
}

pub async fn without_named_components_every_function_with_data_is_read<H: TelemetryHarness>(h: &H) {
    let window = h.window();
    let series = h
        .telemetry()
        .metric_series(&query(window, Vec::new()))
        .await
        .unwrap();
    let by = series_by_component(&series, &window);
    let expected = sorted(metrics::<H>());
    assert!(by.iter().all(|(_, m)| *m == expected), "{by:?}");
    assert!(by.iter().any(|(c, _)| *c == busy()), "{by:?}");
    assert!(of(&series, &busy(), MetricName::Invocations).sum() > 0.0);
}

pub async fn a_window_in_the_future_has_no_data<H: TelemetryHarness>(h: &H) {
    let future = TimeWindow {
        start: h.now() + Duration::hours(1),
        end: h.now() + Duration::hours(2),
    };
    let series = h
        .telemetry()
        .metric_series(&query(future, vec![busy()]))
        .await
        .unwrap();
    assert_eq!(
        series_by_component(&series, &future),
        [(busy(), sorted(metrics::<H>()))]
    );
    assert!(series.iter().all(|s| s.points.is_empty()), "{series:?}");
    let rows = h
        .telemetry()
        .error_rows(&query(future, vec![busy()]), 100)
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let totals = h
        .telemetry()
        .version_totals(
            &busy(),
            &["1".into(), "2".into()],
            &future,
            &DurationQuery::default(),
        )
        .await
        .unwrap();
    for t in &totals {
        assert_no_data(t);
    }
    assert_eq!(versions_of(&totals), ["1", "2"]);
}

/// The namespace the agent `orders` publishes its own metrics in (`Agent=orders`): 10
/// requests and 150 ms a minute wherever the harness has data.
const AGENT_NAMESPACE: &str = "Acme/Agents";

/// What analysis asks for an agent declaring only [`AGENT_NAMESPACE`].
fn agent(name: &str) -> AgentSource {
    let record = selfbuild_core::records::AgentRecord {
        name: name.into(),
        url: format!("https://{name}.example"),
        capabilities: vec!["x".into()],
        mcp_url: None,
        key_secret_id: None,
        components: vec![],
        depends_on: vec![],
        low_traffic_windows: vec![],
        window_tool: None,
        notify_tool: None,
        metrics: Some(
            serde_json::from_value(serde_json::json!({"namespace": AGENT_NAMESPACE})).unwrap(),
        ),
        tenant_id: None,
        registered_by: "test".into(),
        registered_at: T0,
    };
    selfbuild_core::agents::metrics::agent_source(&record)
        .unwrap()
        .unwrap()
}

pub async fn agent_series_come_back_one_per_agent_and_metric_asked<H: TelemetryHarness>(h: &H) {
    let asked = [agent("orders"), agent("nobody")];
    let series = h
        .telemetry()
        .agent_series(&asked, &h.window(), 60)
        .await
        .unwrap();
    // every metric of every agent once (p99 only where percentiles are computed)
    let expected: Vec<(&str, MetricName)> = asked
        .iter()
        .flat_map(|a| a.stats.iter().map(|(m, _, _)| (a.agent.as_str(), *m)))
        .filter(|(_, m)| H::PERCENTILES || *m != MetricName::DurationP99)
        .collect();
    let got: Vec<(&str, MetricName)> = series
        .iter()
        .map(|s| (s.agent.as_str(), s.metric))
        .collect();
    assert_eq!(got, expected);
    let values = |agent: &str, metric| -> Vec<f64> {
        series
            .iter()
            .find(|s| s.agent == agent && s.metric == metric)
            .unwrap()
            .points
            .iter()
            .map(|p| p.value)
            .collect()
    };
    let requests = values("orders", MetricName::Invocations);
    assert!(
        !requests.is_empty() && requests.iter().all(|v| *v == 10.0),
        "{requests:?}"
    );
    let latency = values("orders", MetricName::DurationAvg);
    assert!(
        !latency.is_empty() && latency.iter().all(|v| *v == 150.0),
        "{latency:?}"
    );
    assert!(values("orders", MetricName::Errors).is_empty());
    assert!(
        series
            .iter()
            .filter(|s| s.agent == "nobody")
            .all(|s| s.points.is_empty())
    );
    // and a window in the future has none
    let later = TimeWindow {
        start: h.now() + Duration::hours(1),
        end: h.now() + Duration::hours(2),
    };
    let future = h
        .telemetry()
        .agent_series(&asked, &later, 60)
        .await
        .unwrap();
    assert!(future.iter().all(|s| s.points.is_empty()));
}

fn timestamps(rows: &[LogRow]) -> Vec<OffsetDateTime> {
    rows.iter().map(|r| r.timestamp).collect()
}

pub async fn error_rows_come_newest_first_and_at_most_limit<H: TelemetryHarness>(h: &H) {
    let window = h.window();
    let q = query(window, vec![busy()]);
    let all = h.telemetry().error_rows(&q, 1000).await.unwrap();
    assert!(all.len() >= 4, "{all:?}");
    assert!(
        all.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "newest first: {:?}",
        timestamps(&all)
    );
    assert!(
        all.iter()
            .all(|r| r.timestamp >= window.start && r.timestamp < window.end),
        "inside the window"
    );
    assert!(all.iter().all(|r| r.component == busy()));
    assert!(all.iter().all(|r| !r.message.is_empty()));

    for limit in [3, 1] {
        let some = h.telemetry().error_rows(&q, limit).await.unwrap();
        assert_eq!(
            timestamps(&some),
            timestamps(&all[..limit]),
            "the newest {limit}"
        );
    }
    assert!(h.telemetry().error_rows(&q, 0).await.unwrap().is_empty());
    // A component without telemetry has no rows; naming it beside one with rows changes nothing.
    let none = h
        .telemetry()
        .error_rows(&query(window, vec![ghost()]), 1000)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    let both = h
        .telemetry()
        .error_rows(&query(window, vec![ghost(), busy()]), 1000)
        .await
        .unwrap();
    assert_eq!(timestamps(&both), timestamps(&all));
}

pub async fn report_rows_read_as_reports_of_a_version<H: TelemetryHarness>(h: &H) {
    let window = h.window();
    let q = query(window, vec![busy()]);
    let rows = h.telemetry().report_rows(&q, 1000).await.unwrap();
    assert!(
        rows.windows(2).all(|w| w[0].timestamp >= w[1].timestamp),
        "newest first: {:?}",
        timestamps(&rows)
    );
    assert!(
        rows.iter().all(|r| r.timestamp >= window.start
            && r.timestamp < window.end
            && r.component == busy())
    );
    // A source may return other lines too (moto runs no filter): the reports among them
    // parse, and their log stream names a version.
    let reports: Vec<(Option<&str>, Report)> = rows
        .iter()
        .filter_map(|r| match parse_report(&r.message) {
            ReportLine::Report(report) => {
                Some((r.log_stream.as_deref().and_then(version_of_stream), report))
            }
            ReportLine::NotReport => None,
            ReportLine::Malformed(reason) => panic!("{reason}: {}", r.message),
        })
        .collect();
    assert!(reports.len() >= 4, "{rows:?}");
    assert!(
        reports.iter().all(|(version, _)| version.is_some()),
        "{rows:?}"
    );
    assert!(
        reports
            .iter()
            .all(|(_, r)| r.max_memory_used_mb <= r.memory_size_mb && r.duration_ms > 0.0)
    );
    assert_eq!(h.telemetry().report_rows(&q, 1).await.unwrap().len(), 1);
    // None of a component without logs; none without named components (no tenant in them).
    for components in [vec![ghost()], vec![]] {
        let none = h
            .telemetry()
            .report_rows(&query(window, components), 1000)
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
}

fn versions_of(totals: &[VersionTotals]) -> Vec<&str> {
    totals.iter().map(|t| t.version.as_str()).collect()
}

fn assert_no_data(t: &VersionTotals) {
    assert_eq!(
        (t.invocations, t.errors, t.throttles),
        (0.0, 0.0, 0.0),
        "{t:?}"
    );
    assert_eq!(t.duration_ms, None, "{t:?}");
    assert!(t.slower_than.iter().all(|n| *n == 0.0), "{t:?}");
    assert!(t.percentiles.is_empty(), "{t:?}");
    assert_eq!(t.successes, None, "{t:?}");
}

pub async fn version_totals_come_one_per_version_in_the_order_asked<H: TelemetryHarness>(h: &H) {
    let durations = DurationQuery {
        slower_than_ms: vec![1.0, 1e9],
        percentiles: vec![0.5, 0.99],
        success_percentiles: None,
    };
    let asked: Vec<String> = ["2", "1", "7"].map(str::to_owned).to_vec();
    let totals = h
        .telemetry()
        .version_totals(&busy(), &asked, &h.window(), &durations)
        .await
        .unwrap();
    assert_eq!(versions_of(&totals), ["2", "1", "7"]);
    for t in &totals[..2] {
        assert!(t.invocations > 0.0, "{t:?}");
        assert!(t.errors >= 0.0 && t.errors <= t.invocations, "{t:?}");
        assert!(t.throttles >= 0.0, "{t:?}");
        assert_eq!(t.successes, None, "not asked for: {t:?}");
        if H::PERCENTILES {
            let q = t.duration_ms.unwrap();
            assert!(q.p50 <= q.p90 && q.p90 <= q.p99, "{t:?}");
            assert_eq!(t.slower_than.len(), 2, "{t:?}");
            assert!(t.slower_than[0] >= t.slower_than[1], "{t:?}");
            assert!(t.slower_than[0] <= t.invocations + 1e-9, "{t:?}");
            assert_eq!(t.slower_than[1], 0.0, "nothing ran 11 days: {t:?}");
            assert_eq!(t.percentiles.len(), 2, "{t:?}");
            assert!(t.percentiles[0] <= t.percentiles[1], "{t:?}");
        } else {
            assert_eq!(t.duration_ms, None, "{t:?}");
            assert!(
                t.slower_than.is_empty() && t.percentiles.is_empty(),
                "{t:?}"
            );
        }
    }
    assert_no_data(&totals[2]);

    // Nothing asked, nothing answered; an unknown function's versions have no data.
    let none = h
        .telemetry()
        .version_totals(&busy(), &[], &h.window(), &durations)
        .await
        .unwrap();
    assert!(none.is_empty());
    let ghost_totals = h
        .telemetry()
        .version_totals(&ghost(), &["1".into()], &h.window(), &durations)
        .await
        .unwrap();
    assert_eq!(versions_of(&ghost_totals), ["1"]);
    assert_no_data(&ghost_totals[0]);
}

// ------------------------------------------------------------------------------------------
// The adapters

const T0: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

/// A clock the harness moves forward.
struct SteppedClock(Mutex<OffsetDateTime>);

impl Clock for SteppedClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// The fleet: `orders-api` at 60 requests a minute (5 % failing), a canary (version 2) at
/// half the traffic from [`T0`], read 30 minutes later.
pub struct FleetHarness {
    fleet: Fleet,
    now: OffsetDateTime,
}

impl FleetHarness {
    async fn new() -> Self {
        let scenario = serde_json::json!({
            "name": "telemetry-contract",
            "now": "2026-11-22T05:00:00Z",
            "seed": 11,
            "functions": [{
                "name": busy(),
                "settings": {"memory_mb": 512, "timeout_seconds": 3},
                "workload": {
                    "invocations_per_minute": 60, "work_ms_at_1024mb": 100, "io_ms": 50,
                    "duration_jitter": 0.3, "memory_used_mb": 100, "base_error_rate": 0.05,
                    "error_messages": ["ValidationError: order <id> has no items"]
                }
            }],
            "published_metrics": [
                {"namespace": AGENT_NAMESPACE, "metric": "Requests", "dimensions": {"Agent": "orders"}, "value": 10},
                {"namespace": AGENT_NAMESPACE, "metric": "Latency", "dimensions": {"Agent": "orders"}, "value": 150}
            ],
            "expect": {},
        });
        let scenario = Scenario::parse(&scenario.to_string(), "telemetry contract").unwrap();
        let clock = Arc::new(SteppedClock(Mutex::new(T0)));
        let fleet = Fleet::new(&scenario, clock.clone()).unwrap();
        let canary = LambdaSettings {
            memory_mb: 1024,
            ..fleet.function_state(&busy()).await.unwrap().settings
        };
        fleet
            .deploy_canary(
                &improvement_id("imp-0"),
                &busy(),
                &selfbuild_core::change::DeploySpec::Config(canary.clone()),
                0.5,
            )
            .await
            .unwrap();
        let now = T0 + Duration::minutes(30);
        *clock.0.lock().unwrap() = now;
        Self { fleet, now }
    }
}

impl TelemetryHarness for FleetHarness {
    type T = Fleet;
    const PERCENTILES: bool = true;

    fn telemetry(&self) -> &Fleet {
        &self.fleet
    }

    fn now(&self) -> OffsetDateTime {
        self.now
    }

    fn window(&self) -> TimeWindow {
        TimeWindow {
            start: T0,
            end: self.now,
        }
    }
}

/// `CloudWatchTelemetry` (percentiles off) on the shared moto server, in a region of its own
/// (function discovery and log group listing see the whole region), over five minutes of
/// `orders-api` metrics, by function and by version, and six error log lines; moto's Logs
/// keeps only recent events, so the window is on the wall clock: it ends ten minutes ago.
pub struct CloudWatchHarness {
    _moto: Arc<MotoServer>,
    telemetry: CloudWatchTelemetry,
    now: OffsetDateTime,
    window: TimeWindow,
}

/// One region per check (a region's log groups and metrics are the harness's alone).
const REGIONS: [&str; 8] = [
    "us-west-1",
    "us-west-2",
    "us-east-2",
    "eu-north-1",
    "ap-southeast-1",
    "ap-southeast-2",
    // (regions no other module uses: function discovery lists the whole region)
    "ap-northeast-2",
    "ap-northeast-3",
];

static NEXT_REGION: AtomicUsize = AtomicUsize::new(0);

impl CloudWatchHarness {
    async fn new() -> Self {
        let moto = MotoServer::shared();
        let region = REGIONS[NEXT_REGION.fetch_add(1, Ordering::Relaxed) % REGIONS.len()];
        let sdk = moto.sdk_config_in(region).await;
        let cw = aws_sdk_cloudwatch::Client::new(&sdk);
        let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
        let now = OffsetDateTime::now_utc();
        let start = now
            .replace_second(0)
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap()
            - Duration::minutes(40);
        let window = TimeWindow {
            start,
            end: start + Duration::minutes(30),
        };
        let function = busy();
        let by_function = [("FunctionName", function.as_str())];
        let resource = format!("{function}:live");
        let lambda = "AWS/Lambda";
        for minute in 0..5 {
            let at = start + Duration::minutes(minute) + Duration::seconds(10);
            for (metric, value) in [
                ("Invocations", 60.0),
                ("Errors", 3.0),
                ("Throttles", 0.0),
                ("Duration", 180.0),
                ("ConcurrentExecutions", 2.0),
            ] {
                put_metric(&cw, lambda, metric, &by_function, at, value).await;
            }
            let custom = "Selfbuild/Services";
            put_metric(&cw, custom, "MemoryUtilization", &by_function, at, 20.0).await;
            let agent = [("Agent", "orders")];
            put_metric(&cw, AGENT_NAMESPACE, "Requests", &agent, at, 10.0).await;
            put_metric(&cw, AGENT_NAMESPACE, "Latency", &agent, at, 150.0).await;
            for version in ["1", "2"] {
                // In the order the adapter asks for them (moto matches dimension lists in order).
                let dimensions = [
                    ("FunctionName", function.as_str()),
                    ("Resource", resource.as_str()),
                    ("ExecutedVersion", version),
                ];
                put_metric(&cw, lambda, "Invocations", &dimensions, at, 30.0).await;
                put_metric(&cw, lambda, "Errors", &dimensions, at, 1.0).await;
            }
        }
        let mut lines: Vec<(OffsetDateTime, String)> = (0..6)
            .map(|i| {
                (
                    start + Duration::seconds(30 + 45 * i),
                    format!("ERROR order {i} has no items"),
                )
            })
            .collect();
        lines.extend((0..5).map(|i| {
            (
                start + Duration::seconds(20 + 50 * i),
                format!(
                    "REPORT RequestId: {i:08x}-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tDuration: 1{i}2.25 ms\t\
                     Billed Duration: 1{i}3 ms\tMemory Size: 128 MB\tMax Memory Used: 7{i} MB\t"
                ),
            )
        }));
        lines.sort();
        let events: Vec<(OffsetDateTime, &str)> =
            lines.iter().map(|(at, m)| (*at, m.as_str())).collect();
        log_group(&logs, function.as_str(), &events).await;
        let settings = TelemetrySettings {
            query_poll_interval: StdDuration::from_millis(20),
            query_timeout: StdDuration::from_secs(10),
            percentiles: false,
            ..TelemetrySettings::default()
        };
        Self {
            telemetry: CloudWatchTelemetry::new(&sdk, settings),
            _moto: moto,
            now,
            window,
        }
    }
}

impl TelemetryHarness for CloudWatchHarness {
    type T = CloudWatchTelemetry;
    const PERCENTILES: bool = false;

    fn telemetry(&self) -> &CloudWatchTelemetry {
        &self.telemetry
    }

    fn now(&self) -> OffsetDateTime {
        self.now
    }

    fn window(&self) -> TimeWindow {
        self.window
    }
}

macro_rules! telemetry_contract {
    ($($check:ident),* $(,)?) => {
        mod fleet {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::FleetHarness::new().await).await;
                }
            )*
        }

        mod cloudwatch_on_moto {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::CloudWatchHarness::new().await).await;
                }
            )*
        }
    };
}

telemetry_contract!(
    every_metric_asked_for_comes_back_once_per_component,
    without_named_components_every_function_with_data_is_read,
    a_window_in_the_future_has_no_data,
    error_rows_come_newest_first_and_at_most_limit,
    report_rows_read_as_reports_of_a_version,
    version_totals_come_one_per_version_in_the_order_asked,
    agent_series_come_back_one_per_agent_and_metric_asked,
);
