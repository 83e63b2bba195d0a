//! Issue 12 (2, 7) through the CLI: intake refuses shapes, sizes and times AWS never sends,
//! naming the field and echoing no more than a prefix; operator text stays one line.

use clap::Parser;
use selfbuild_core::Config;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::event::EventJson;
use selfbuild_core::intake::{IntakeDeps, handle_delivered};
use selfbuild_core::ports::{MetricRecord, MetricSink};
use selfbuild_local::cli::{Cli, CliError, execute};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::{events_dir, load};
use serde_json::{Value, json};
use time::macros::datetime;

const NOW: &str = "2026-11-22T05:03:30Z";

fn cli(data_dir: &std::path::Path, args: &[&str]) -> Cli {
    let mut argv = vec!["selfbuild", "--data-dir", data_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    Cli::parse_from(argv)
}

/// `selfbuild --now NOW invoke alarm-intake <file with text>` in a fresh store.
async fn invoke_text(text: &str) -> Result<Value, CliError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, text).unwrap();
    execute(cli(
        dir.path(),
        &[
            "--now",
            NOW,
            "invoke",
            "alarm-intake",
            file.to_str().unwrap(),
        ],
    ))
    .await
}

/// A bundled event with the value at `pointer` replaced.
fn with(event: &str, pointer: &str, value: Value) -> String {
    let mut e = load(event);
    *e.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{event} has {pointer}")) = value;
    e.to_string()
}

/// Asserts an `InvalidEvent` whose message starts (after `invalid event: ` or the file
/// name) with `field`, and is short.
async fn refused(text: &str, field: &str) -> String {
    let err = match invoke_text(text).await {
        Ok(out) => panic!("{field}: accepted: {out}"),
        Err(e) => e,
    };
    assert_eq!(err.error_type, "InvalidEvent", "{field}: {}", err.message);
    assert!(
        err.message.len() < 400,
        "{field}: {} bytes of message",
        err.message.len()
    );
    let problem = err
        .message
        .strip_prefix("invalid event: ")
        .or_else(|| err.message.split_once("event.json: ").map(|(_, p)| p))
        .unwrap_or(&err.message);
    assert!(
        problem.starts_with(field),
        "expected {field}: …, got {}",
        err.message
    );
    err.message
}

#[tokio::test]
async fn objects_are_objects_and_strings_are_strings() {
    let alarm = "alarm-metric.json";
    refused(
        &with(alarm, "/detail/state", json!(["ALARM"])),
        "detail.state: must be an object, got an array",
    )
    .await;
    // Before: an empty array dropped the dimensions, and with them the tenant.
    refused(
        &with(
            "alarm-tenant-metric.json",
            "/detail/configuration",
            json!([]),
        ),
        "detail.configuration: must be an object, got an array",
    )
    .await;
    refused(
        &with(
            alarm,
            "/detail/configuration/metrics/0/metricStat/metric/dimensions",
            json!([{"name": "TenantId", "value": "acme"}]),
        ),
        "detail.configuration.metrics[0].metricStat.metric.dimensions: must be an object",
    )
    .await;
    refused(
        &with("scheduled-24h.json", "/detail", json!(5)),
        "detail: must be an object, got a number",
    )
    .await;
    // Before: a non-string action was read as no action, so "routine".
    refused(
        &with("scheduled-poll.json", "/detail", json!({"action": 5})),
        "detail.action: must be a string, got a number",
    )
    .await;
    refused(
        &with(alarm, "/resources", json!("arn:aws:cloudwatch:x")),
        "resources: must be an array",
    )
    .await;
}

#[tokio::test]
async fn a_repeated_key_is_refused_naming_its_path() {
    let text = std::fs::read_to_string(events_dir().join("alarm-metric.json")).unwrap();
    // OK first, ALARM last: serde_json alone would keep ALARM and start a cycle.
    let repeated = text.replacen(
        "\"value\": \"ALARM\",",
        "\"value\": \"OK\", \"value\": \"ALARM\",",
        1,
    );
    assert_ne!(repeated, text);
    refused(
        &repeated,
        "detail.state.value: the key appears more than once",
    )
    .await;
}

#[tokio::test]
async fn the_lambda_payload_refuses_a_repeated_key_as_an_invalid_event() {
    // As lambda_runtime deserializes the payload: from bytes into the handler's type.
    let text = r#"{"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-22T00:00:00Z", "detail": {"action": "routine", "action": "poll"}}"#;
    let payload: EventJson = serde_json::from_slice(text.as_bytes()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let clock = FixedClock(datetime!(2026-11-22 05:00:00 UTC));
    let orchestrator = RecordingOrchestrator::new(store.clone(), clock);
    struct NoMetrics;
    impl MetricSink for NoMetrics {
        fn record(&self, _: MetricRecord) {}
    }
    let alarms = selfbuild_local::alarms::FileAlarmSource::new(dir.path().join("alarms.json"));
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &selfbuild_core::idsource::OsRandom,
        metrics: &NoMetrics,
    };
    let err = handle_delivered(deps, &alarms, &Config::default(), payload)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("invalid event: detail.action: the key appears more than once"),
        "{message}"
    );
}

#[tokio::test]
async fn a_bad_tenant_prefix_in_the_alarm_name_is_an_invalid_event_not_a_system_cycle() {
    let mut e = load("alarm-tenant-metric.json");
    e["detail"]["alarmName"] = json!("-acme/orders/HighErrorRate");
    e["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = json!({});
    let err = invoke_text(&e.to_string()).await.unwrap_err();
    assert_eq!(err.error_type, "InvalidEvent", "{}", err.message);
    assert!(
        err.message
            .contains("the alarm name gives an unusable id: tenant_id \"-acme\""),
        "{}",
        err.message
    );
    // The same name with a valid tenant still scopes the cycle to it.
    e["detail"]["alarmName"] = json!("acme/orders/HighErrorRate");
    let out = invoke_text(&e.to_string()).await.unwrap();
    assert_eq!(out["tenant_id"], "acme", "{out}");
    assert_eq!(out["component"], "orders", "{out}");
}

#[tokio::test]
async fn lengths_and_sizes_are_bounded_and_never_echoed_whole() {
    let ten_mb = "x".repeat(10 * 1024 * 1024);
    let alarm = "alarm-metric.json";
    // Before: accepted, 20 MB on stdout and 31 MB in the store.
    refused(
        &with(alarm, "/detail/alarmName", json!(ten_mb)),
        "event: more than the 1048576 bytes of JSON intake reads",
    )
    .await;
    // Before: echoed whole into the error.
    refused(
        &with(alarm, "/source", json!(ten_mb)),
        "event: more than the 1048576 bytes",
    )
    .await;
    // Within what is read but over EventBridge's 256 KB for one event.
    let mut e = load(alarm);
    e["detail"]["configuration"]["description"] = json!("d".repeat(300 * 1024));
    let message = refused(&e.to_string(), "event: ").await;
    assert!(
        message.contains("more than EventBridge's limit of 262144 bytes"),
        "{message}"
    );
    // Within 256 KB, CloudWatch's documented lengths.
    refused(
        &with(alarm, "/detail/alarmName", json!("n".repeat(256))),
        "detail.alarmName: 256 characters, more than the 255 allowed",
    )
    .await;
    refused(
        &with(
            alarm,
            "/detail/configuration/metrics/0/metricStat/metric/dimensions/FunctionName",
            json!("f".repeat(1025)),
        ),
        "detail.configuration.metrics[0].metricStat.metric.dimensions.FunctionName: 1025 characters",
    )
    .await;
    refused(
        &with(alarm, "/detail/alarmName", json!("orders\nHighErrorRate")),
        "detail.alarmName: \"orders\\nHighErrorRate\" contains control characters",
    )
    .await;
    let message = refused(
        &with(
            alarm,
            "/source",
            json!(format!("my.app.{}", "s".repeat(240))),
        ),
        "source: \"my.app.sss",
    )
    .await;
    assert!(message.contains("… (247 bytes)"), "{message}");
    // At the limit it is accepted.
    let out = invoke_text(&with(alarm, "/detail/alarmName", json!("n".repeat(255))))
        .await
        .unwrap();
    assert_eq!(out["decision"], "started", "{out}");
}

#[tokio::test]
async fn timestamps_are_rfc_3339_in_range_and_refused_at_intake() {
    let alarm = "alarm-metric.json";
    refused(
        &with(alarm, "/time", json!("0000-01-01T00:00:00Z")),
        "time: \"0000-01-01T00:00:00Z\" is not between 2000-01-01 and 2099-12-31",
    )
    .await;
    // Before: accepted, then failed as DependencyFailed naming no field.
    refused(
        &with(
            alarm,
            "/detail/state/timestamp",
            json!("0000-01-01T00:00:00.000+0000"),
        ),
        "detail.state.timestamp: \"0000-01-01T00:00:00.000+0000\" is not between",
    )
    .await;
    refused(
        &with(alarm, "/time", json!("2026-11-31T05:00:00Z")),
        "time: \"2026-11-31T05:00:00Z\" is not an RFC 3339 timestamp",
    )
    .await;
    refused(
        &with(alarm, "/time", json!(1_795_000_000)),
        "time: must be a string, got a number",
    )
    .await;
}

#[tokio::test]
async fn a_halt_reason_or_actor_with_control_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["halt", "--reason", "incident\nERROR forged"],
        ["halt", "--reason", "incident\u{0}"],
    ] {
        let err = execute(cli(dir.path(), &args)).await.unwrap_err();
        assert_eq!(err.error_type, "InvalidInput");
        assert!(
            err.message
                .starts_with("--reason: must not contain control characters"),
            "{}",
            err.message
        );
    }
    let err = execute(cli(
        dir.path(),
        &[
            "halt",
            "--reason",
            "incident 42",
            "--actor",
            "ops\r\nforged",
        ],
    ))
    .await
    .unwrap_err();
    assert!(err.message.starts_with("--actor: "), "{}", err.message);
    let status = execute(cli(dir.path(), &["status"])).await.unwrap();
    assert_eq!(status["halted"], false, "{status}");
}
