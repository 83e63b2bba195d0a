//! The AlarmSource contract: one suite of checks written against the port, run on the
//! embedded `FileAlarmSource` (a saved `describe-alarms` file) and on `CloudWatchAlarms`
//! over moto.
//!
//! Where the adapters' backends differ, the harness says so and the check asserts each side:
//!
//! - **Composite alarms** ([`AlarmHarness::COMPOSITE_ALARMS`]): moto 5.2.6 has no
//!   `PutCompositeAlarm` (NotImplemented), so on moto the check asserts that it still cannot
//!   create one (when moto learns to, the check fails and the flag is flipped); the
//!   conversion of CloudWatch's composite alarms is unit-tested in selfbuild-aws on
//!   SDK-built `DescribeAlarms` output.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatch::types::{Metric, MetricDataQuery, MetricStat, StateValue};
use selfbuild_aws::cloudwatch::CloudWatchAlarms;
use selfbuild_core::alarm::{AlarmKind, AlarmSignal, AlarmState, MetricRef};
use selfbuild_core::ports::AlarmSource;
use selfbuild_local::alarms::FileAlarmSource;
use selfbuild_tests::cloudwatch_fixture::{put_metric_alarm, set_alarm_state};
use selfbuild_tests::moto::MotoServer;
use serde_json::{Value, json};

/// What an alarm watches.
#[derive(Debug, Clone)]
pub enum Watches {
    /// One metric.
    Metric(MetricRef),
    /// An expression over these metrics (`m0`, `m1`, …).
    Math(Vec<MetricRef>, &'static str),
    /// A rule over other alarms.
    Composite(&'static str),
}

/// An alarm to set up, in `state` for `reason`.
#[derive(Debug, Clone)]
pub struct AlarmSpec {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: AlarmState,
    /// Why it is in that state.
    pub reason: &'static str,
    /// What it watches.
    pub watches: Watches,
}

/// One adapter under the contract, with what its backend cannot hold stated.
pub trait AlarmHarness {
    /// The adapter.
    type A: AlarmSource;
    /// The backend can hold composite alarms.
    const COMPOSITE_ALARMS: bool;
    /// The adapter, reading the alarms set up so far (none at first).
    fn source(&self) -> &Self::A;
    /// Sets `alarm` up; Err says why the backend cannot hold it.
    async fn put(&self, alarm: &AlarmSpec) -> Result<(), String>;
}

fn lambda_metric(name: &str, function: &str) -> MetricRef {
    MetricRef {
        namespace: Some("AWS/Lambda".into()),
        name: Some(name.into()),
        dimensions: vec![
            ("FunctionName".into(), function.into()),
            ("TenantId".into(), "acme".into()),
        ],
    }
}

fn alarm(name: &str, state: AlarmState, watches: Watches) -> AlarmSpec {
    AlarmSpec {
        name: name.to_owned(),
        state,
        reason: "Threshold Crossed: 1 datapoint [7.0] was >= 5.0",
        watches,
    }
}

fn metric_alarm(name: &str, state: AlarmState, function: &str) -> AlarmSpec {
    alarm(
        name,
        state,
        Watches::Metric(lambda_metric("Errors", function)),
    )
}

async fn names<H: AlarmHarness>(h: &H) -> Vec<String> {
    let mut names: Vec<String> = h
        .source()
        .alarms_in_alarm()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    names.sort();
    names
}

async fn the_one<H: AlarmHarness>(h: &H, name: &str) -> AlarmSignal {
    let alarms = h.source().alarms_in_alarm().await.unwrap();
    let found: Vec<&AlarmSignal> = alarms.iter().filter(|a| a.name == name).collect();
    assert_eq!(found.len(), 1, "{name} once in {alarms:?}");
    found[0].clone()
}

pub async fn without_alarms_the_list_is_empty<H: AlarmHarness>(h: &H) {
    assert!(h.source().alarms_in_alarm().await.unwrap().is_empty());
}

pub async fn only_the_alarms_in_alarm_come_back<H: AlarmHarness>(h: &H) {
    for (name, state) in [
        ("orders-errors", AlarmState::Alarm),
        ("search-errors", AlarmState::Ok),
        ("billing-errors", AlarmState::InsufficientData),
        ("payments-HighErrorRate", AlarmState::Alarm),
    ] {
        h.put(&metric_alarm(name, state, name)).await.unwrap();
    }
    // An alarm that went back to OK is no longer in ALARM.
    h.put(&metric_alarm("recovered", AlarmState::Alarm, "recovered"))
        .await
        .unwrap();
    h.put(&metric_alarm("recovered", AlarmState::Ok, "recovered"))
        .await
        .unwrap();
    assert_eq!(names(h).await, ["orders-errors", "payments-HighErrorRate"]);
    let alarms = h.source().alarms_in_alarm().await.unwrap();
    assert!(alarms.iter().all(|a| a.state == AlarmState::Alarm));
}

pub async fn a_metric_alarm_comes_back_with_its_metric_and_dimensions_in_order<H: AlarmHarness>(
    h: &H,
) {
    let spec = metric_alarm("orders-api-HighErrorRate", AlarmState::Alarm, "orders-api");
    h.put(&spec).await.unwrap();
    let signal = the_one(h, "orders-api-HighErrorRate").await;
    assert_eq!(signal.kind, AlarmKind::Metric);
    assert_eq!(signal.state, AlarmState::Alarm);
    assert_eq!(signal.reason.as_deref(), Some(spec.reason));
    assert!(signal.state_changed_at.is_some(), "{signal:?}");
    assert_eq!(signal.metrics, [lambda_metric("Errors", "orders-api")]);
    assert_eq!(signal.alarm_rule, None);
    let scope = signal.scope(&[]).unwrap();
    assert_eq!(scope.component.unwrap().as_str(), "orders-api");
    assert_eq!(scope.tenant.unwrap().as_str(), "acme");
}

pub async fn a_metric_math_alarm_names_every_metric_it_reads<H: AlarmHarness>(h: &H) {
    let metrics = vec![
        lambda_metric("Errors", "orders-api"),
        lambda_metric("Invocations", "orders-api"),
    ];
    h.put(&alarm(
        "orders-api-error-rate",
        AlarmState::Alarm,
        Watches::Math(metrics.clone(), "100 * m0 / m1"),
    ))
    .await
    .unwrap();
    let signal = the_one(h, "orders-api-error-rate").await;
    assert_eq!(signal.kind, AlarmKind::MetricMath);
    assert_eq!(signal.metrics, metrics);
    assert_eq!(
        signal.scope(&[]).unwrap().component.unwrap().as_str(),
        "orders-api"
    );
}

pub async fn composite_alarms_in_alarm_come_back_with_their_rule<H: AlarmHarness>(h: &H) {
    h.put(&metric_alarm("orders-errors", AlarmState::Alarm, "orders"))
        .await
        .unwrap();
    let rule = r#"ALARM("orders-errors") OR ALARM("orders-latency")"#;
    let put = h
        .put(&alarm(
            "orders-health",
            AlarmState::Alarm,
            Watches::Composite(rule),
        ))
        .await;
    if !H::COMPOSITE_ALARMS {
        let err = put.expect_err("the backend now holds composite alarms: flip COMPOSITE_ALARMS");
        assert!(err.contains("PutCompositeAlarm"), "{err}");
        assert_eq!(names(h).await, ["orders-errors"]);
        return;
    }
    put.unwrap();
    h.put(&alarm(
        "search-health",
        AlarmState::Ok,
        Watches::Composite(r#"ALARM("search-errors")"#),
    ))
    .await
    .unwrap();
    assert_eq!(names(h).await, ["orders-errors", "orders-health"]);
    let signal = the_one(h, "orders-health").await;
    assert_eq!(signal.kind, AlarmKind::Composite);
    assert_eq!(signal.alarm_rule.as_deref(), Some(rule));
    assert!(signal.metrics.is_empty());
    assert!(signal.state_changed_at.is_some());
}

/// More than one `DescribeAlarms` page (100) of alarms.
pub async fn every_alarm_in_alarm_comes_back<H: AlarmHarness>(h: &H) {
    for i in 0..105 {
        let name = format!("fn{i:03}-errors");
        let state = if i % 7 == 0 {
            AlarmState::Ok
        } else {
            AlarmState::Alarm
        };
        h.put(&metric_alarm(&name, state, &format!("fn{i:03}")))
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..105)
        .filter(|i| i % 7 != 0)
        .map(|i| format!("fn{i:03}-errors"))
        .collect();
    assert_eq!(names(h).await, expected);
}

// ------------------------------------------------------------------------------------------
// The adapters

/// `FileAlarmSource` over a file this harness writes as `aws cloudwatch describe-alarms`
/// prints it.
pub struct FileHarness {
    _dir: tempfile::TempDir,
    source: FileAlarmSource,
    alarms: Mutex<Vec<AlarmSpec>>,
}

impl FileHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            source: FileAlarmSource::new(dir.path().join("describe-alarms.json")),
            _dir: dir,
            alarms: Mutex::new(Vec::new()),
        }
    }
}

fn dimensions_json(metric: &MetricRef) -> Value {
    metric
        .dimensions
        .iter()
        .map(|(k, v)| json!({"Name": k, "Value": v}))
        .collect()
}

/// One alarm as `describe-alarms` prints it.
fn describe_json(alarm: &AlarmSpec) -> Value {
    let arn = format!(
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:{}",
        alarm.name
    );
    let mut out = json!({
        "AlarmName": alarm.name,
        "AlarmArn": arn,
        "StateValue": alarm.state.as_str(),
        "StateReason": alarm.reason,
        "StateUpdatedTimestamp": "2026-11-22T05:00:00.250000+00:00",
        "StateTransitionedTimestamp": "2026-11-22T05:00:00.250000+00:00",
    });
    match &alarm.watches {
        Watches::Metric(metric) => {
            out["Namespace"] = json!(metric.namespace);
            out["MetricName"] = json!(metric.name);
            out["Dimensions"] = dimensions_json(metric);
            out["Statistic"] = json!("Sum");
        }
        Watches::Math(metrics, expression) => {
            let mut queries: Vec<Value> = metrics
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    json!({"Id": format!("m{i}"), "ReturnData": false, "MetricStat": {
                        "Metric": {"Namespace": m.namespace, "MetricName": m.name,
                                   "Dimensions": dimensions_json(m)},
                        "Period": 60, "Stat": "Sum"}})
                })
                .collect();
            queries.push(json!({"Id": "e1", "Expression": expression, "ReturnData": true}));
            out["Metrics"] = json!(queries);
        }
        Watches::Composite(rule) => out["AlarmRule"] = json!(rule),
    }
    out
}

impl AlarmHarness for FileHarness {
    type A = FileAlarmSource;
    const COMPOSITE_ALARMS: bool = true;

    fn source(&self) -> &FileAlarmSource {
        &self.source
    }

    async fn put(&self, alarm: &AlarmSpec) -> Result<(), String> {
        let mut alarms = self.alarms.lock().unwrap();
        alarms.retain(|a| a.name != alarm.name);
        alarms.push(alarm.clone());
        let (composite, metric): (Vec<&AlarmSpec>, Vec<&AlarmSpec>) = alarms
            .iter()
            .partition(|a| matches!(a.watches, Watches::Composite(_)));
        let file = json!({
            "MetricAlarms": metric.into_iter().map(describe_json).collect::<Vec<_>>(),
            "CompositeAlarms": composite.into_iter().map(describe_json).collect::<Vec<_>>(),
        });
        std::fs::write(self.source.path(), file.to_string()).map_err(|e| e.to_string())
    }
}

/// `CloudWatchAlarms` on the shared moto server, in a region of its own: `DescribeAlarms`
/// lists every alarm of the region, so checks running at the same time must not share one.
pub struct CloudWatchHarness {
    _moto: Arc<MotoServer>,
    client: aws_sdk_cloudwatch::Client,
    source: CloudWatchAlarms,
}

/// Regions moto serves; one per check, so at most this many checks in the suite.
const REGIONS: [&str; 8] = [
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
];

static NEXT_REGION: AtomicUsize = AtomicUsize::new(0);

impl CloudWatchHarness {
    async fn new() -> Self {
        let moto = MotoServer::shared();
        let region = REGIONS[NEXT_REGION.fetch_add(1, Ordering::Relaxed) % REGIONS.len()];
        let sdk = moto.sdk_config_in(region).await;
        Self {
            client: aws_sdk_cloudwatch::Client::new(&sdk),
            source: CloudWatchAlarms::new(&sdk),
            _moto: moto,
        }
    }
}

fn sdk_metric(metric: &MetricRef) -> Metric {
    let mut m = Metric::builder()
        .set_namespace(metric.namespace.clone())
        .set_metric_name(metric.name.clone());
    for (k, v) in &metric.dimensions {
        m = m.dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name(k)
                .value(v)
                .build(),
        );
    }
    m.build()
}

fn state_value(state: AlarmState) -> StateValue {
    match state {
        AlarmState::Alarm => StateValue::Alarm,
        AlarmState::Ok => StateValue::Ok,
        AlarmState::InsufficientData => StateValue::InsufficientData,
    }
}

impl AlarmHarness for CloudWatchHarness {
    type A = CloudWatchAlarms;
    const COMPOSITE_ALARMS: bool = false;

    fn source(&self) -> &CloudWatchAlarms {
        &self.source
    }

    async fn put(&self, alarm: &AlarmSpec) -> Result<(), String> {
        match &alarm.watches {
            Watches::Metric(metric) => {
                let dimensions: Vec<(&str, &str)> = metric
                    .dimensions
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                put_metric_alarm(
                    &self.client,
                    &alarm.name,
                    metric.namespace.as_deref().unwrap_or_default(),
                    metric.name.as_deref().unwrap_or_default(),
                    &dimensions,
                )
                .await;
            }
            Watches::Math(metrics, expression) => {
                let mut put = self
                    .client
                    .put_metric_alarm()
                    .alarm_name(&alarm.name)
                    .evaluation_periods(1)
                    .threshold(5.0)
                    .comparison_operator(
                        aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
                    );
                for (i, m) in metrics.iter().enumerate() {
                    put = put.metrics(
                        MetricDataQuery::builder()
                            .id(format!("m{i}"))
                            .return_data(false)
                            .metric_stat(
                                MetricStat::builder()
                                    .metric(sdk_metric(m))
                                    .period(60)
                                    .stat("Sum")
                                    .build(),
                            )
                            .build(),
                    );
                }
                put = put.metrics(
                    MetricDataQuery::builder()
                        .id("e1")
                        .expression(*expression)
                        .return_data(true)
                        .build(),
                );
                put.send().await.map_err(|e| {
                    format!(
                        "PutMetricAlarm: {}",
                        aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                    )
                })?;
            }
            Watches::Composite(rule) => {
                self.client
                    .put_composite_alarm()
                    .alarm_name(&alarm.name)
                    .alarm_rule(*rule)
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "PutCompositeAlarm: {}",
                            aws_sdk_cloudwatch::error::DisplayErrorContext(&e)
                        )
                    })?;
            }
        }
        set_alarm_state(
            &self.client,
            &alarm.name,
            state_value(alarm.state),
            alarm.reason,
        )
        .await;
        Ok(())
    }
}

macro_rules! alarm_source_contract {
    ($($check:ident),* $(,)?) => {
        mod file {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::FileHarness::new()).await;
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

alarm_source_contract!(
    without_alarms_the_list_is_empty,
    only_the_alarms_in_alarm_come_back,
    a_metric_alarm_comes_back_with_its_metric_and_dimensions_in_order,
    a_metric_math_alarm_names_every_metric_it_reads,
    composite_alarms_in_alarm_come_back_with_their_rule,
    every_alarm_in_alarm_comes_back,
);
