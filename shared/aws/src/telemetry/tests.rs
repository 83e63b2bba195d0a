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
    let telemetry =
        CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), TelemetrySettings::default());
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
    let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());
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
    let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());

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
    let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());
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
    let error = |code: &str| StartQueryError::generic(ErrorMetadata::builder().code(code).build());
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
         | filter @message like /(?i)(error|exception|timed out|status.{0,3}timeout|signal: killed|outofmemory)/ \
         | sort @timestamp desc | limit 200"
    );
}

#[test]
fn a_tenant_filter_comes_before_sort_and_limit() {
    let q = error_query(Some(&tenant("acme.eu-1")), 50);
    assert_eq!(
        q,
        "fields @timestamp, @message, @logStream, @log \
         | filter @message like /(?i)(error|exception|timed out|status.{0,3}timeout|signal: killed|outofmemory)/ \
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
    let r = log_row(&aws, prefix, None).unwrap();
    assert_eq!(r.component.as_str(), "orders-api");
    assert_eq!(r.message, "ERROR boom");
    assert_eq!(r.timestamp, datetime!(2026-11-22 05:03 UTC));

    let moto = row(&[
        ("@timestamp", "1795323780000"),
        ("@message", "Task timed out"),
        ("@log", "/aws/lambda/search"),
    ]);
    assert_eq!(
        log_row(&moto, prefix, None).unwrap().component.as_str(),
        "search"
    );

    let no_log = row(&[("@timestamp", "1795323780000"), ("@message", "x")]);
    assert_eq!(
        log_row(&no_log, prefix, Some("/aws/lambda/one"))
            .unwrap()
            .component
            .as_str(),
        "one"
    );
    assert!(log_row(&no_log, prefix, None).is_err());
    let elsewhere = row(&[
        ("@timestamp", "1795323780000"),
        ("@message", "x"),
        ("@log", "/ecs/thing"),
    ]);
    assert!(log_row(&elsewhere, prefix, None).is_err());
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

#[test]
fn the_report_query_finds_text_and_json_reports_newest_first() {
    assert_eq!(
        report_query(10_000),
        "fields @timestamp, @message, @logStream, @log \
         | filter @message like /^REPORT RequestId:|\"type\":\\s*\"platform\\.report\"/ \
         | sort @timestamp desc | limit 10000"
    );
    assert!(report_query(1_000_000).ends_with("| limit 10000"));
}

#[tokio::test]
async fn report_rows_carry_their_log_stream_and_need_named_components() {
    let lookup = mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(|| {
        DescribeLogGroupsOutput::builder()
            .log_groups(group("/aws/lambda/orders-api"))
            .build()
    });
    let start = mock!(aws_sdk_cloudwatchlogs::Client::start_query)
        .match_requests(|r| {
            r.log_group_names() == ["/aws/lambda/orders-api"]
                && r.query_string() == Some(report_query(100).as_str())
        })
        .then_output(|| StartQueryOutput::builder().query_id("q-r").build());
    let report = "REPORT RequestId: 8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t\n";
    let results = mock!(aws_sdk_cloudwatchlogs::Client::get_query_results).then_output(move || {
        GetQueryResultsOutput::builder()
            .status(QueryStatus::Complete)
            .results(row(&[
                ("@timestamp", "2026-11-22 05:03:00.000"),
                ("@message", report),
                (
                    "@logStream",
                    "2026/11/22/[7]0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                ),
            ]))
            .build()
    });
    let logs = mock_client!(
        aws_sdk_cloudwatchlogs,
        RuleMode::MatchAny,
        [&lookup, &start, &results]
    );
    let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, Vec::<&Rule>::new());
    let telemetry =
        CloudWatchTelemetry::from_clients(cloudwatch, logs, TelemetrySettings::default());

    let rows = telemetry
        .report_rows(&query(None, &["orders-api"]), 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].component.as_str(), "orders-api");
    assert_eq!(
        rows[0].log_stream.as_deref(),
        Some("2026/11/22/[7]0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    );
    assert!(rows[0].message.contains("Max Memory Used: 70 MB"));
    // No named component: nothing asked (REPORT lines carry no tenant).
    assert!(
        telemetry
            .report_rows(&query(Some("acme"), &[]), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(start.num_calls(), 1);
}

fn agent_source(name: &str, json: serde_json::Value) -> AgentSource {
    let agent = selfbuild_core::records::AgentRecord {
        name: name.into(),
        url: "https://a.example".into(),
        capabilities: vec!["x".into()],
        mcp_url: None,
        key_secret_id: None,
        components: vec![],
        depends_on: vec![],
        low_traffic_windows: vec![],
        window_tool: None,
        notify_tool: None,
        metrics: Some(serde_json::from_value(json).unwrap()),
        tenant_id: None,
        registered_by: "k".into(),
        registered_at: datetime!(2026-11-22 00:00 UTC),
    };
    selfbuild_core::agents::metrics::agent_source(&agent)
        .unwrap()
        .unwrap()
}

#[test]
fn agents_are_read_in_their_namespace_by_their_dimensions() {
    let agents = [
        agent_source("orders", serde_json::json!({"namespace": "Acme/Agents"})),
        agent_source(
            "billing",
            serde_json::json!({"namespace": "Billing", "dimensions": [{"name": "Service", "value": "bill"}, {"name": "Env", "value": "prod"}],
                "errors": {"metric": "Failures", "stat": "SampleCount"}, "concurrency": {"metric": "InFlight"}}),
        ),
    ];
    let plan = agent_plan(&agents, &TelemetrySettings::default(), 300);
    let shapes: Vec<_> = plan
        .iter()
        .map(|p| (p.id.as_str(), shape(&p.query)))
        .collect();
    let orders = dims(&[("Agent", "orders")]);
    let billing = dims(&[("Service", "bill"), ("Env", "prod")]);
    let s = |ns: &str, m: &str, st: &str, d: &Vec<(String, String)>| {
        (ns.to_owned(), m.to_owned(), st.to_owned(), d.clone())
    };
    assert_eq!(
        shapes,
        [
            ("a0_0", s("Acme/Agents", "Requests", "Sum", &orders)),
            ("a0_1", s("Acme/Agents", "Errors", "Sum", &orders)),
            ("a0_2", s("Acme/Agents", "Latency", "Average", &orders)),
            ("a0_3", s("Acme/Agents", "Latency", "p99", &orders)),
            (
                "a0_4",
                s("Acme/Agents", "MemoryUtilization", "Maximum", &orders)
            ),
            ("a1_0", s("Billing", "Requests", "Sum", &billing)),
            ("a1_1", s("Billing", "Failures", "SampleCount", &billing)),
            ("a1_2", s("Billing", "Latency", "Average", &billing)),
            ("a1_3", s("Billing", "Latency", "p99", &billing)),
            (
                "a1_4",
                s("Billing", "MemoryUtilization", "Maximum", &billing)
            ),
            ("a1_5", s("Billing", "InFlight", "Maximum", &billing)),
        ]
    );
    assert!(
        plan.iter()
            .all(|p| p.query.metric_stat().unwrap().period() == Some(300))
    );
    assert!(plan.iter().all(|p| p.query.expression().is_none()));
    assert_eq!(plan[10].series.metric, MetricName::ConcurrentExecutions);
    assert_eq!(plan[6].series.agent, "billing");
    // without percentiles (moto) the p99 queries are left out
    let without = agent_plan(&agents, &no_percentiles(), 300);
    assert_eq!(without.len(), 9);
    assert!(
        without
            .iter()
            .all(|p| p.series.metric != MetricName::DurationP99)
    );
}

#[tokio::test]
async fn agent_series_come_from_one_request_with_its_pages_merged() {
    let first = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| r.next_token().is_none() && r.metric_data_queries().len() == 8)
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("a1_1", &[(1_795_323_660, 4.0)]))
                .metric_data_results(result("a0_0", &[(1_795_323_600, 3.0)]))
                .next_token("page-2")
                .build()
        });
    let second = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(result("a1_1", &[(1_795_323_600, 2.0)]))
                .build()
        });
    let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&first, &second]);
    let telemetry = CloudWatchTelemetry::from_clients(cloudwatch, logs_unused(), no_percentiles());
    let agents = [
        agent_source("orders", serde_json::json!({"namespace": "Acme/Agents"})),
        agent_source("billing", serde_json::json!({"namespace": "Billing"})),
    ];
    let series = telemetry
        .agent_series(&agents, &window(), 60)
        .await
        .unwrap();
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    assert_eq!(series.len(), 8);
    let of = |agent: &str, metric| {
        series
            .iter()
            .find(|s| s.agent == agent && s.metric == metric)
            .unwrap()
            .points
            .iter()
            .map(|p| p.value)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("orders", MetricName::Invocations), [3.0]);
    assert_eq!(
        of("billing", MetricName::Errors),
        [2.0, 4.0],
        "in time order"
    );
    assert!(of("billing", MetricName::Invocations).is_empty());
    // a bad period is refused before any call
    let e = telemetry
        .agent_series(&agents, &window(), 0)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("period of 0 s"), "{e}");
}
