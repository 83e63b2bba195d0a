//! alarm-intake end to end: on the AWS adapters against moto, and through the CLI on the
//! embedded adapters.

use std::sync::Mutex;

use clap::Parser;
use selfbuild_aws::cloudwatch::CloudWatchAlarms;
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::Config;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::Trigger;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::intake::{IntakeDeps, IntakeResponse, handle_delivery, handle_event};
use selfbuild_core::logstream::LogSignalKind;
use selfbuild_core::ports::{
    CycleStore, HaltState, HaltSwitch, MetricRecord, MetricSink, MinerStateStore, Orchestrator,
};
use selfbuild_local::cli::{Cli, execute};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::{events_dir, load};
use selfbuild_tests::moto::MotoServer;
use serde_json::{Value, json};
use time::macros::datetime;

use crate::orchestrator::create_state_machine;

#[derive(Default)]
struct Metrics(Mutex<Vec<MetricRecord>>);

impl MetricSink for Metrics {
    fn record(&self, metric: MetricRecord) {
        self.0.lock().unwrap().push(metric);
    }
}

fn outcome(response: IntakeResponse) -> Value {
    serde_json::to_value(response).unwrap()
}

#[tokio::test]
async fn an_alarm_event_starts_one_execution_and_repeats_are_suppressed_on_aws_adapters() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let store = DynamoStore::new(&sdk, "intake-e2e");
    store.create_table().await.unwrap();
    let arn = create_state_machine(&sdk, "intake-e2e").await;
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn.clone());
    let alarms = CloudWatchAlarms::new(&sdk);
    let clock = FixedClock(datetime!(2026-11-22 05:00:01 UTC));
    let metrics = Metrics::default();
    let config = Config::default();
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let event = load("alarm-metric.json");

    let first = outcome(handle_event(deps, &alarms, &config, &event).await.unwrap());
    assert_eq!(first["decision"], "started");
    assert_eq!(first["mode"], "emergency");
    let cycle_id = first["cycle_id"].as_str().unwrap().to_owned();

    let second = outcome(handle_event(deps, &alarms, &config, &event).await.unwrap());
    assert_eq!(second["decision"], "duplicate");
    assert_eq!(second["cycle_id"], cycle_id.as_str());
    assert_eq!(second["suppressed_count"], 1);

    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let executions = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap()
        .executions;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].name, cycle_id);

    // The claim item carries the count, the started flag and a TTL, as DynamoDB stores them.
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let item = ddb
        .get_item()
        .table_name("intake-e2e")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("DEDUP#*#orders-api".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("CLAIM".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the claim item exists");
    assert_eq!(item["suppressed_count"].as_n().unwrap(), "1");
    assert_eq!(item["started"].as_bool().unwrap(), &true);
    assert!(item["expires_at"].as_n().unwrap().parse::<i64>().unwrap() > clock.0.unix_timestamp());

    {
        let latencies = metrics.0.lock().unwrap();
        assert_eq!(latencies.len(), 2);
        assert_eq!(latencies[0].name, "IntakeLatency");
        assert_eq!(latencies[0].value, 1000.0);
    }

    // Halted: refuses without claiming.
    store
        .set_halt(&HaltState {
            reason: "incident".into(),
            actor: "ops".into(),
            since: clock.0,
        })
        .await
        .unwrap();
    let halted = outcome(
        handle_event(deps, &alarms, &config, &load("scheduled-24h.json"))
            .await
            .unwrap(),
    );
    assert_eq!(halted["decision"], "halted");
}

#[tokio::test]
async fn a_poll_starts_cycles_for_alarms_cloudwatch_reports_in_alarm() {
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    cw.put_metric_alarm()
        .alarm_name("billing-HighLatency")
        .namespace("AWS/Lambda")
        .metric_name("Duration")
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("FunctionName")
                .value("billing")
                .build(),
        )
        .statistic(aws_sdk_cloudwatch::types::Statistic::Average)
        .period(60)
        .evaluation_periods(1)
        .threshold(1000.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap();
    cw.set_alarm_state()
        .alarm_name("billing-HighLatency")
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .state_reason("test")
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(&sdk, "poll-e2e");
    store.create_table().await.unwrap();
    let arn = create_state_machine(&sdk, "poll-e2e").await;
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn);
    let alarms = CloudWatchAlarms::new(&sdk);
    // moto stamps the state change with the real time.
    let clock = selfbuild_core::clock::SystemClock;
    let metrics = Metrics::default();
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let out = outcome(
        handle_event(
            deps,
            &alarms,
            &Config::default(),
            &load("scheduled-poll.json"),
        )
        .await
        .unwrap(),
    );
    let list = out.as_array().expect("a poll answers with an array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["decision"], "started");
    assert_eq!(list[0]["component"], "billing");
    assert_eq!(list[0]["mode"], "emergency");
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> Cli {
    let mut argv = vec!["selfbuild", "--data-dir", data_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    Cli::parse_from(argv)
}

#[tokio::test]
async fn the_cli_runs_intake_on_every_bundled_event() {
    let dir = tempfile::tempdir().unwrap();
    let alarms = events_dir().join("describe-alarms.json");
    let expected = [
        ("alarm-metric.json", json!("started")),
        ("alarm-metric-math.json", json!("started")),
        ("alarm-anomaly-detection.json", json!("started")),
        ("alarm-composite.json", json!("started")),
        ("alarm-ok.json", json!("ignored")),
        ("alarm-insufficient-data.json", json!("ignored")),
        ("scheduled-24h.json", json!("started")),
    ];
    for (file, decision) in expected {
        let path = events_dir().join(file);
        let out = execute(cli(
            dir.path(),
            &[
                "--now",
                "2026-11-22T05:03:30Z",
                "invoke",
                "alarm-intake",
                path.to_str().unwrap(),
            ],
        ))
        .await
        .unwrap_or_else(|e| panic!("{file}: {}", e.message));
        assert_eq!(out["decision"], decision, "{file}: {out}");
    }
    // The poll reads the saved describe-alarms output.
    let poll = events_dir().join("scheduled-poll.json");
    let out = execute(cli(
        dir.path(),
        &[
            "--now",
            "2026-11-22T05:05:00Z",
            "invoke",
            "alarm-intake",
            "--alarms",
            alarms.to_str().unwrap(),
            poll.to_str().unwrap(),
        ],
    ))
    .await
    .unwrap();
    let decisions: Vec<&str> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["decision"].as_str().unwrap())
        .collect();
    // payments: new; acme#checkout: new; payments-service-health: claimed by the composite event.
    assert_eq!(decisions, ["started", "started", "duplicate"], "{out}");
}

#[tokio::test]
async fn the_cli_halts_resumes_and_reports_bad_events() {
    let dir = tempfile::tempdir().unwrap();
    let halted = execute(cli(dir.path(), &["halt", "--reason", "incident 42"]))
        .await
        .unwrap();
    assert_eq!(halted["halted"], true);
    let event = events_dir().join("alarm-metric.json");
    let out = execute(cli(
        dir.path(),
        &["invoke", "alarm-intake", event.to_str().unwrap()],
    ))
    .await
    .unwrap();
    assert_eq!(out["decision"], "halted");
    assert!(out["reason"].as_str().unwrap().contains("incident 42"));
    let resumed = execute(cli(dir.path(), &["resume"])).await.unwrap();
    assert_eq!(resumed["was_halted"], true);
    let out = execute(cli(
        dir.path(),
        &["invoke", "alarm-intake", event.to_str().unwrap()],
    ))
    .await
    .unwrap();
    assert_eq!(out["decision"], "started");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"detail-type":"CloudWatch Alarm State Change","source":"aws.cloudwatch","time":"2026-11-22T05:00:00Z","detail":{"alarmName":"x","state":{}}}"#).unwrap();
    let err = execute(cli(
        dir.path(),
        &["invoke", "alarm-intake", bad.to_str().unwrap()],
    ))
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "InvalidEvent");
    assert!(err.message.contains("detail.state"), "{}", err.message);
    let err = execute(cli(
        dir.path(),
        &["invoke", "alarm-intake", "/no/such/event.json"],
    ))
    .await
    .unwrap_err();
    assert!(
        err.message.contains("/no/such/event.json"),
        "{}",
        err.message
    );
}

/// Intake through the CLI at `now`, each call its own store handle as in separate processes.
async fn invoke_at(dir: &std::path::Path, now: &str, event: &str) -> Value {
    let path = events_dir().join(event);
    execute(cli(
        dir,
        &[
            "--now",
            now,
            "invoke",
            "alarm-intake",
            path.to_str().unwrap(),
        ],
    ))
    .await
    .unwrap_or_else(|e| panic!("{event} at {now}: {}", e.message))
}

#[tokio::test]
async fn dedup_holds_on_an_injected_clock_whatever_the_wall_clock_says() {
    // One clock long before any day this test runs on, one long after: the claims are judged
    // on the injected clock alone, never purged by the wall clock between processes.
    for day in ["2001-02-03", "2099-02-03"] {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for at in ["10:00:30", "10:01:40", "10:03:40", "10:06:00"] {
            let out = invoke_at(dir.path(), &format!("{day}T{at}Z"), "alarm-metric.json").await;
            seen.push((
                out["decision"].as_str().unwrap().to_owned(),
                out["suppressed_count"].as_u64().unwrap(),
            ));
        }
        let seen: Vec<(&str, u64)> = seen.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        // The window is five minutes from the first claim: the fourth event opens a new one.
        assert_eq!(
            seen,
            [
                ("started", 0),
                ("duplicate", 1),
                ("duplicate", 2),
                ("started", 0)
            ],
            "on {day}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invokes_on_a_past_clock_start_one_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let invokes = (0..50).map(|i| {
        let path = path.clone();
        tokio::spawn(async move {
            let at = format!("2001-02-03T10:00:{:02}Z", 10 + i % 40);
            invoke_at(&path, &at, "alarm-metric.json").await
        })
    });
    let mut started = 0;
    let mut suppressed = Vec::new();
    for invoke in invokes {
        let out = invoke.await.unwrap();
        match out["decision"].as_str().unwrap() {
            "started" => started += 1,
            "duplicate" => suppressed.push(out["suppressed_count"].as_u64().unwrap()),
            other => panic!("unexpected decision {other}: {out}"),
        }
    }
    assert_eq!(started, 1);
    suppressed.sort_unstable();
    assert_eq!(suppressed, (1..=49).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_claim_on_a_past_clock_survives_a_status_read_on_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let first = invoke_at(dir.path(), "2001-02-03T10:00:30Z", "alarm-metric.json").await;
    assert_eq!(first["decision"], "started");
    // `status` and `halt`/`resume` on the wall clock open the same store.
    execute(cli(dir.path(), &["status"])).await.unwrap();
    execute(cli(dir.path(), &["halt", "--reason", "x"]))
        .await
        .unwrap();
    execute(cli(dir.path(), &["resume"])).await.unwrap();
    let again = invoke_at(dir.path(), "2001-02-03T10:02:00Z", "alarm-metric.json").await;
    assert_eq!(again["decision"], "duplicate", "{again}");
    assert_eq!(again["cycle_id"], first["cycle_id"]);
}

/// A subscription delivery of `lines` from `/aws/lambda/orders-api`, as CloudWatch Logs
/// sends it (base64 of gzip of JSON).
fn logs_delivery(first_ms: i64, lines: &[&str]) -> Value {
    use base64::Engine;
    use std::io::Write;
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("{i:056}"), "timestamp": first_ms + i as i64, "message": m}))
        .collect();
    let body = json!({
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/lambda/orders-api",
        "logStream": "2026/11/22/[$LATEST]0123456789abcdef",
        "subscriptionFilters": ["selfbuild-errors"],
        "logEvents": events,
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    json!({"awslogs": {"data": data}})
}

fn delivered(event: Value) -> selfbuild_core::event::EventJson {
    serde_json::from_value(event).unwrap()
}

/// 2026-11-22T05:00:00Z in unix ms: the sample delivery's first event.
const LOGS_T0: i64 = 1_795_000_000_000;

/// The streaming story on any store and orchestrator: a new template starts one cycle, the
/// same template again and another new one within the dedup window start none, a control
/// message and a truncated payload start nothing.
async fn streamed_errors_start_one_cycle(
    store: &(
         impl CycleStore
         + HaltSwitch
         + MinerStateStore
         + selfbuild_core::ports::DedupStore
         + selfbuild_core::ports::HealthStore
     ),
    orchestrator: &dyn Orchestrator,
) -> Vec<String> {
    let clock = FixedClock(datetime!(2026-11-22 05:00:01 UTC));
    let metrics = Metrics::default();
    let alarms = selfbuild_local::alarms::FileAlarmSource::new("/no/alarms.json");
    let config = Config {
        cloudwatch_streaming: true,
        ..Config::default()
    };
    let deps = IntakeDeps {
        claims: store,
        halt: store,
        health: store,
        orchestrator,
        cycles: store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let run = |event: Value| handle_delivery(deps, store, &alarms, &config, delivered(event));

    // A control message starts nothing.
    let control = outcome(run(load("logs-control.json")).await.unwrap());
    assert_eq!(control["decision"], "ignored", "{control}");
    assert!(control["reason"].as_str().unwrap().contains("control"));

    // The sample: one new error template → one emergency cycle for orders-api.
    let first = outcome(run(load("logs-new-error.json")).await.unwrap());
    assert_eq!(first["decision"], "started", "{first}");
    assert_eq!(first["mode"], "emergency");
    assert_eq!(first["dedup_key"], "*#orders-api");
    let cycle_id = first["cycle_id"].as_str().unwrap().to_owned();
    let record = store
        .get_cycle(&selfbuild_core::ids::CycleId::parse(&cycle_id).unwrap())
        .await
        .unwrap()
        .expect("the cycle is recorded");
    match &record.request.trigger {
        Trigger::LogTemplate {
            log_group,
            signal,
            template,
            ..
        } => {
            assert_eq!(log_group, "/aws/lambda/orders-api");
            assert_eq!(*signal, LogSignalKind::New);
            assert!(template.contains("payment provider rejected"), "{template}");
        }
        other => panic!("expected a log trigger, got {other:?}"),
    }

    // The same template again (another order) is not new: nothing to start.
    let again = outcome(
        run(logs_delivery(
            LOGS_T0 + 20_000,
            &["2026-11-22T05:00:20.000Z\t0c5e\tERROR\tpayment provider rejected order 99120: card_declined"],
        ))
        .await
        .unwrap(),
    );
    assert_eq!(again["decision"], "ignored", "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap()
            .contains("no template new"),
        "{again}"
    );

    // Another new template within the window meets the claim: a duplicate, counted.
    let other = outcome(
        run(logs_delivery(
            LOGS_T0 + 30_000,
            &["Traceback (most recent call last):\n  File \"/var/task/app.py\", line 7, in handler\nKeyError: 'sku'"],
        ))
        .await
        .unwrap(),
    );
    assert_eq!(other["decision"], "duplicate", "{other}");
    assert_eq!(other["cycle_id"], cycle_id.as_str());
    assert_eq!(other["suppressed_count"], 1);

    // Lines that are no errors leave everything alone.
    let quiet = outcome(
        run(logs_delivery(
            LOGS_T0 + 40_000,
            &["START RequestId: abc Version: $LATEST"],
        ))
        .await
        .unwrap(),
    );
    assert_eq!(quiet["decision"], "ignored");

    // A truncated payload is an invalid event naming the problem.
    let err = run(load("logs-truncated.json")).await.unwrap_err();
    assert_eq!(
        selfbuild_core::error::StableError::error_type(&err).to_string(),
        "InvalidEvent"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    // The miner state is in the store, under the function's scope.
    let saved = store
        .load_miner_state("*#orders-api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.version, 3);
    vec![cycle_id]
}

#[tokio::test]
async fn a_streamed_new_error_template_starts_one_cycle_on_embedded_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let clock = FixedClock(datetime!(2026-11-22 05:00:01 UTC));
    let orchestrator = RecordingOrchestrator::new(store.clone(), clock);
    let started = streamed_errors_start_one_cycle(&store, &orchestrator).await;
    assert_eq!(started.len(), 1);
}

#[tokio::test]
async fn a_streamed_new_error_template_starts_one_execution_on_aws_adapters() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let store = DynamoStore::new(&sdk, "logs-e2e");
    store.create_table().await.unwrap();
    let arn = create_state_machine(&sdk, "logs-e2e").await;
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn.clone());
    let started = streamed_errors_start_one_cycle(&store, &orchestrator).await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let executions = sfn
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap()
        .executions;
    assert_eq!(executions.len(), 1);
    assert_eq!(executions[0].name, started[0]);
}

#[tokio::test]
async fn a_delivery_is_ignored_while_streaming_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let clock = FixedClock(datetime!(2026-11-22 05:00:01 UTC));
    let orchestrator = RecordingOrchestrator::new(store.clone(), clock);
    let alarms = selfbuild_local::alarms::FileAlarmSource::new("/no/alarms.json");
    let metrics = Metrics::default();
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let config = Config::default();
    assert!(!config.cloudwatch_streaming);
    // Even a truncated payload is acknowledged: nothing is decoded while the flag is off.
    for file in ["logs-new-error.json", "logs-truncated.json"] {
        let out = outcome(
            handle_delivery(deps, &store, &alarms, &config, delivered(load(file)))
                .await
                .unwrap(),
        );
        assert_eq!(out["decision"], "ignored", "{file}: {out}");
        assert!(
            out["reason"]
                .as_str()
                .unwrap()
                .contains("ENABLE_CLOUDWATCH_STREAMING")
        );
    }
    assert_eq!(store.load_miner_state("*#orders-api").await.unwrap(), None);
}
