//! The Telemetry port on CloudWatch `GetMetricData` and Logs Insights, against moto 5.2.6.
//!
//! moto checks: the requests are accepted (Query protocol for CloudWatch, awsJson1_1 for
//! Logs), Sum/Average/Maximum per period, the dimension sets each scope (and each agent's
//! own namespace and dimensions) asks for, function
//! discovery with `ListMetrics`, log group lookup with `DescribeLogGroups`, and the Logs
//! Insights `fields`, `sort @timestamp desc`, `limit` and time range.
//!
//! moto cannot check, so selfbuild-aws unit-tests the requests instead: percentiles (moto
//! answers 500 to a `p99` query, so these tests turn percentiles off), `GetMetricData` paging
//! and batching (moto answers in one page), the Logs Insights `filter` commands (moto's
//! query parser reads only `fields`, `sort` and `limit`, so the error and tenant filters are
//! accepted but not applied), the real `@timestamp` format (moto answers epoch milliseconds),
//! and queries that take time (moto completes them at once), and the namespace of a query
//! with dimensions (moto then matches metric name and dimensions only).

use std::collections::BTreeSet;
use std::time::Duration;

use selfbuild_aws::telemetry::{CloudWatchTelemetry, TelemetrySettings};
use selfbuild_core::agents::metrics::agent_source as agent_source_of;
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::error::TelemetryError;
use selfbuild_core::ids::{ComponentId, TenantId};
use selfbuild_core::ports::Telemetry;
use selfbuild_core::records::AgentRecord;
use selfbuild_core::telemetry::{
    AgentSource, DurationQuery, MetricName, MetricSeries, TelemetryQuery,
};
use selfbuild_tests::cloudwatch_fixture::{log_group, put_metric as put, recent_window as window};
use selfbuild_tests::moto::MotoServer;
use time::OffsetDateTime;

/// `window` start plus `seconds`.
fn at(window: &TimeWindow, seconds: i64) -> OffsetDateTime {
    window.start + time::Duration::seconds(seconds)
}

fn settings() -> TelemetrySettings {
    TelemetrySettings {
        query_poll_interval: Duration::from_millis(20),
        query_timeout: Duration::from_secs(10),
        // moto cannot compute percentiles; the p99 query is unit-tested in selfbuild-aws.
        percentiles: false,
        ..TelemetrySettings::default()
    }
}

fn query(window: &TimeWindow, tenant: Option<&str>, components: &[&str]) -> TelemetryQuery {
    TelemetryQuery {
        tenant: tenant.map(|t| TenantId::parse(t).unwrap()),
        components: components
            .iter()
            .map(|c| ComponentId::parse(c).unwrap())
            .collect(),
        window: *window,
        period_seconds: 60,
    }
}

/// The series of `metric` for `component` (and `version`), as (seconds into the window, value).
fn points(
    series: &[MetricSeries],
    window: &TimeWindow,
    component: &str,
    metric: MetricName,
    version: Option<&str>,
) -> Vec<(i64, f64)> {
    series
        .iter()
        .find(|s| {
            s.component.as_str() == component
                && s.metric == metric
                && s.version.as_deref() == version
        })
        .unwrap_or_else(|| panic!("no {metric:?} series for {component} {version:?}"))
        .points
        .iter()
        .map(|p| ((p.timestamp - window.start).whole_seconds(), p.value))
        .collect()
}

#[tokio::test]
async fn metric_series_reads_each_statistic_per_period() {
    // GIVEN Lambda metrics of orders-api and search, and orders-api's memory in the custom namespace
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let w = window();
    let orders = [("FunctionName", "orders-api")];
    let lambda = "AWS/Lambda";
    put(&cw, lambda, "Invocations", &orders, at(&w, 10), 3.0).await;
    put(&cw, lambda, "Invocations", &orders, at(&w, 40), 4.0).await;
    put(&cw, lambda, "Invocations", &orders, at(&w, 65), 5.0).await;
    put(&cw, lambda, "Invocations", &orders, at(&w, -30), 100.0).await; // before the window
    put(&cw, lambda, "Invocations", &orders, at(&w, 300), 100.0).await; // at its (exclusive) end
    put(&cw, lambda, "Errors", &orders, at(&w, 20), 1.0).await;
    put(&cw, lambda, "Duration", &orders, at(&w, 10), 100.0).await;
    put(&cw, lambda, "Duration", &orders, at(&w, 40), 300.0).await;
    put(
        &cw,
        lambda,
        "ConcurrentExecutions",
        &orders,
        at(&w, 10),
        2.0,
    )
    .await;
    put(
        &cw,
        lambda,
        "ConcurrentExecutions",
        &orders,
        at(&w, 50),
        6.0,
    )
    .await;
    let custom = "Selfbuild/Services";
    put(&cw, custom, "MemoryUtilization", &orders, at(&w, 61), 40.0).await;
    put(&cw, custom, "MemoryUtilization", &orders, at(&w, 62), 71.5).await;
    let search = [("FunctionName", "search")];
    put(&cw, lambda, "Invocations", &search, at(&w, 130), 9.0).await;
    let telemetry = CloudWatchTelemetry::new(&sdk, settings());

    // WHEN orders-api is asked for by name
    let series = telemetry
        .metric_series(&query(&w, None, &["orders-api"]))
        .await
        .unwrap();

    // THEN each metric has its statistic per minute, in time order, and nothing else
    assert_eq!(series.len(), 6, "every metric but DurationP99");
    assert!(series.iter().all(|s| s.component.as_str() == "orders-api"));
    let of = |metric| points(&series, &w, "orders-api", metric, None);
    assert_eq!(of(MetricName::Invocations), [(0, 7.0), (60, 5.0)]);
    assert_eq!(of(MetricName::Errors), [(0, 1.0)]);
    assert_eq!(of(MetricName::Throttles), []);
    assert_eq!(of(MetricName::DurationAvg), [(0, 200.0)]);
    assert_eq!(of(MetricName::ConcurrentExecutions), [(0, 6.0)]);
    assert_eq!(of(MetricName::MemoryUtilization), [(60, 71.5)]);

    // WHEN no component is named
    let fleet = telemetry
        .metric_series(&query(&w, None, &[]))
        .await
        .unwrap();

    // THEN every function with Lambda Invocations is read
    let components: BTreeSet<&str> = fleet.iter().map(|s| s.component.as_str()).collect();
    assert_eq!(components, BTreeSet::from(["orders-api", "search"]));
    assert_eq!(fleet.len(), 12);
    assert_eq!(
        points(&fleet, &w, "search", MetricName::Invocations, None),
        [(120, 9.0)]
    );
    assert_eq!(
        points(&fleet, &w, "orders-api", MetricName::Invocations, None),
        [(0, 7.0), (60, 5.0)]
    );
}

#[tokio::test]
async fn a_tenant_reads_the_metrics_published_with_its_tenant_id() {
    // GIVEN per-tenant metrics in the custom namespace, and Lambda's own
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let w = window();
    let custom = "Selfbuild/Services";
    let acme = [("FunctionName", "orders-api"), ("TenantId", "acme")];
    let globex = [("FunctionName", "billing"), ("TenantId", "globex")];
    put(&cw, custom, "Invocations", &acme, at(&w, 5), 4.0).await;
    put(&cw, custom, "Invocations", &acme, at(&w, 6), 2.0).await;
    put(&cw, custom, "Errors", &acme, at(&w, 70), 1.0).await;
    put(&cw, custom, "Invocations", &globex, at(&w, 5), 50.0).await;
    let all = [("FunctionName", "orders-api")];
    put(&cw, "AWS/Lambda", "Invocations", &all, at(&w, 5), 1000.0).await;
    let telemetry = CloudWatchTelemetry::new(&sdk, settings());

    // WHEN acme's telemetry is asked for without naming components
    let series = telemetry
        .metric_series(&query(&w, Some("acme"), &[]))
        .await
        .unwrap();

    // THEN only acme's function, with acme's share of it
    let components: BTreeSet<&str> = series.iter().map(|s| s.component.as_str()).collect();
    assert_eq!(components, BTreeSet::from(["orders-api"]));
    let of = |metric| points(&series, &w, "orders-api", metric, None);
    assert_eq!(of(MetricName::Invocations), [(0, 6.0)]);
    assert_eq!(of(MetricName::Errors), [(60, 1.0)]);

    // WHEN the component is named: there is no tenant registry, so Lambda's own metrics
    let named = telemetry
        .metric_series(&query(&w, Some("acme"), &["orders-api"]))
        .await
        .unwrap();
    assert_eq!(
        points(&named, &w, "orders-api", MetricName::Invocations, None),
        [(0, 1000.0)]
    );
}

fn agent_source(name: &str, metrics: serde_json::Value) -> AgentSource {
    let agent = AgentRecord {
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
        metrics: Some(serde_json::from_value(metrics).unwrap()),
        tenant_id: None,
        registered_by: "test".into(),
        registered_at: OffsetDateTime::UNIX_EPOCH,
    };
    agent_source_of(&agent).unwrap().unwrap()
}

#[tokio::test]
async fn agents_metrics_come_back_per_agent_from_their_own_namespace_and_dimensions() {
    // GIVEN two agents publishing in a custom namespace: orders by the default Agent
    // dimension, billing by its own two; and data that is neither's
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let w = window();
    let ns = "Acme/Agents";
    let orders = [("Agent", "orders")];
    let billing = [("Service", "bill"), ("Env", "prod")];
    put(&cw, ns, "Requests", &orders, at(&w, 10), 40.0).await;
    put(&cw, ns, "Requests", &orders, at(&w, 70), 60.0).await;
    put(&cw, ns, "Errors", &orders, at(&w, 75), 3.0).await;
    put(&cw, ns, "Latency", &orders, at(&w, 10), 100.0).await;
    put(&cw, ns, "Latency", &orders, at(&w, 20), 300.0).await;
    put(&cw, ns, "MemoryUtilization", &orders, at(&w, 130), 91.0).await;
    put(&cw, ns, "Handled", &billing, at(&w, 5), 7.0).await;
    put(&cw, ns, "Failures", &billing, at(&w, 5), 1.0).await;
    put(
        &cw,
        ns,
        "Requests",
        &[("Agent", "other")],
        at(&w, 10),
        999.0,
    )
    .await;
    put(
        &cw,
        ns,
        "Handled",
        &[("Service", "bill"), ("Env", "dev")],
        at(&w, 5),
        999.0,
    )
    .await;
    // (no data of the same metric and dimensions in another namespace: moto 5.2.6 drops the
    // namespace filter when a query has dimensions; the namespace each query names is
    // unit-tested in selfbuild-aws)
    let telemetry = CloudWatchTelemetry::new(&sdk, settings());
    let agents = [
        agent_source("orders", serde_json::json!({"namespace": ns})),
        agent_source(
            "billing",
            serde_json::json!({"namespace": ns,
                "dimensions": [{"name": "Service", "value": "bill"}, {"name": "Env", "value": "prod"}],
                "requests": {"metric": "Handled"}, "errors": {"metric": "Failures"}}),
        ),
    ];

    // WHEN read (percentiles off: moto cannot compute p99)
    let series = telemetry.agent_series(&agents, &w, 60).await.unwrap();

    // THEN each agent's own values, per minute, and nothing of the others
    let of = |agent: &str, metric| -> Vec<(i64, f64)> {
        series
            .iter()
            .find(|s| s.agent == agent && s.metric == metric)
            .unwrap_or_else(|| panic!("no {metric:?} series for {agent}"))
            .points
            .iter()
            .map(|p| ((p.timestamp - w.start).whole_seconds(), p.value))
            .collect()
    };
    assert_eq!(series.len(), 8, "4 metrics each, p99 not asked for");
    assert_eq!(
        of("orders", MetricName::Invocations),
        [(0, 40.0), (60, 60.0)]
    );
    assert_eq!(of("orders", MetricName::Errors), [(60, 3.0)]);
    assert_eq!(of("orders", MetricName::DurationAvg), [(0, 200.0)]);
    assert_eq!(of("orders", MetricName::MemoryUtilization), [(120, 91.0)]);
    assert_eq!(of("billing", MetricName::Invocations), [(0, 7.0)]);
    assert_eq!(of("billing", MetricName::Errors), [(0, 1.0)]);
    assert_eq!(of("billing", MetricName::DurationAvg), []);
}

#[tokio::test]
async fn version_totals_split_by_executed_version_and_pool_the_window() {
    // GIVEN metrics of versions 1 and 2 behind the live alias
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let w = window();
    // Dimensions in the order the adapter asks for them: moto compares sorted lists with a
    // Dimension ordering that is not a total order.
    let v = |version| {
        [
            ("FunctionName", "orders-api"),
            ("Resource", "orders-api:live"),
            ("ExecutedVersion", version),
        ]
    };
    let lambda = "AWS/Lambda";
    put(&cw, lambda, "Invocations", &v("1"), at(&w, 10), 8.0).await;
    put(&cw, lambda, "Invocations", &v("1"), at(&w, 20), 2.0).await;
    put(&cw, lambda, "Invocations", &v("2"), at(&w, 15), 2.0).await;
    put(&cw, lambda, "Errors", &v("2"), at(&w, 75), 1.0).await;
    let telemetry = CloudWatchTelemetry::new(&sdk, settings());
    let function = ComponentId::parse("orders-api").unwrap();

    // WHEN both versions are read, pooled over the window
    let totals = telemetry
        .version_totals(
            &function,
            &["1".into(), "2".into(), "3".into()],
            &w,
            &DurationQuery {
                slower_than_ms: vec![500.0],
                percentiles: vec![0.5],
                success_percentiles: None,
            },
        )
        .await
        .unwrap();

    // THEN one total per version, in the order asked; without percentiles (moto) no
    // quantiles and no slow counts rather than made-up zeros
    assert_eq!(totals.len(), 3);
    assert_eq!(
        (
            totals[0].version.as_str(),
            totals[0].invocations,
            totals[0].errors
        ),
        ("1", 10.0, 0.0)
    );
    assert_eq!(
        (
            totals[1].version.as_str(),
            totals[1].invocations,
            totals[1].errors
        ),
        ("2", 2.0, 1.0)
    );
    assert!(totals[1].duration_ms.is_none() && totals[1].slower_than.is_empty());
    assert!(totals[1].percentiles.is_empty());
    assert_eq!(totals[2].invocations, 0.0);
}

/// moto 5.2.6 cannot compute percentiles and answers a `p99` query with HTTP 500: a 5xx is
/// `Unavailable`. (The request carrying `p99` is unit-tested in selfbuild-aws.)
#[tokio::test]
async fn moto_refuses_percentiles_and_a_5xx_is_unavailable() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let w = window();
    let orders = [("FunctionName", "orders-api")];
    put(&cw, "AWS/Lambda", "Duration", &orders, at(&w, 10), 100.0).await;
    let with_percentiles = TelemetrySettings {
        percentiles: true,
        ..settings()
    };
    let telemetry = CloudWatchTelemetry::new(&sdk, with_percentiles);
    let err = telemetry
        .metric_series(&query(&w, None, &["orders-api"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TelemetryError::Unavailable(m) if m.starts_with("GetMetricData: ")),
        "{err}"
    );
}

/// (component, seconds into the window, message) of each row.
fn rows(rows: &[selfbuild_core::telemetry::LogRow], w: &TimeWindow) -> Vec<(String, i64, String)> {
    rows.iter()
        .map(|r| {
            (
                r.component.as_str().to_owned(),
                i64::try_from((r.timestamp - w.start).whole_milliseconds()).unwrap(),
                r.message.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn error_rows_come_from_logs_insights_newest_first() {
    // GIVEN error lines of orders-api and search, some outside the window
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let w = window();
    log_group(
        &logs,
        "orders-api",
        &[
            (at(&w, -60), "ERROR before the window"),
            (at(&w, 30), "ERROR db connection refused"),
            (
                at(&w, 120) + time::Duration::milliseconds(250),
                "Task timed out after 3.00 seconds",
            ),
            (at(&w, 420), "ERROR after the window"),
        ],
    )
    .await;
    log_group(&logs, "search", &[(at(&w, 60), "Exception in thread main")]).await;
    let telemetry = CloudWatchTelemetry::new(&sdk, settings());

    // WHEN orders-api and a function without a log group are asked for
    let named = telemetry
        .error_rows(&query(&w, None, &["orders-api", "ghost"]), 10)
        .await
        .unwrap();

    // THEN the missing group is skipped, and the window's rows come newest first
    assert_eq!(
        rows(&named, &w),
        [
            (
                "orders-api".into(),
                120_250,
                "Task timed out after 3.00 seconds".into()
            ),
            (
                "orders-api".into(),
                30_000,
                "ERROR db connection refused".into()
            ),
        ]
    );

    // WHEN no component is named: one query over both groups, rows told apart by @log
    let fleet = telemetry
        .error_rows(&query(&w, None, &[]), 10)
        .await
        .unwrap();
    assert_eq!(
        rows(&fleet, &w),
        [
            (
                "orders-api".into(),
                120_250,
                "Task timed out after 3.00 seconds".into()
            ),
            ("search".into(), 60_000, "Exception in thread main".into()),
            (
                "orders-api".into(),
                30_000,
                "ERROR db connection refused".into()
            ),
        ]
    );

    // WHEN fewer rows are wanted: the newest
    let newest = telemetry
        .error_rows(&query(&w, None, &[]), 1)
        .await
        .unwrap();
    assert_eq!(rows(&newest, &w), rows(&fleet[..1], &w));

    // WHEN a tenant is set: moto accepts the query with the tenant filter (it applies no filter)
    let tenant = telemetry
        .error_rows(&query(&w, Some("acme"), &["orders-api"]), 10)
        .await
        .unwrap();
    assert!(tenant.iter().all(|r| r.component.as_str() == "orders-api"));

    // WHEN nothing in scope has a log group
    let none = telemetry
        .error_rows(&query(&w, None, &["ghost"]), 10)
        .await
        .unwrap();
    assert!(none.is_empty());
}
