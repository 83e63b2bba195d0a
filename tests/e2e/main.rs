//! End to end on real tools: an alarm event goes into the real `alarm-intake` binary, which
//! starts an execution of the real state machine definition on moto's Step Functions engine;
//! its Lambda tasks reach the real step binaries under `cargo lambda watch` through the
//! router; the binaries use DynamoDB, CloudWatch, Logs, Lambda, Secrets Manager and
//! EventBridge on moto and Bedrock on a recorded listener. At the end: the execution, the audit
//! trail and improvement record in DynamoDB, the alias on moto's Lambda, and the `mcp`
//! function answering through cargo-lambda's function URL emulation.
//!
//! Not part of `cargo test --workspace` (the target has `test = false`): `scripts/e2e` builds
//! the function binaries and runs `cargo test -p selfbuild-tests --test e2e`. It needs
//! `moto_server` (moto[server] 5.2.1) and cargo-lambda 1.9.2, and fails naming the install
//! command when either is missing.
//!
//! What the cycle sees: `orders-api` (128 MB, 3 s, version 1 behind `live`) served 1,000
//! invocations a minute with 50 errors, all "Task timed out", for the last 8 minutes; the alarm
//! is acme's, so the cycle has a tenant and a LOW-risk change deploys itself. Bedrock answers
//! with the recorded `propose_change` (timeout 10 s, memory 512 MB). Once the canary (version 2)
//! is routed, the test publishes per-version metrics in three one-minute buckets, equally
//! healthy for both versions, so the monitor finds it healthy when its window ends and the
//! canary is promoted. moto cannot compute `p99` (it answers 500 when Duration data matches),
//! so no Duration metric is published and p99 stays empty.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode, Runtime};
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_core::apikeys::key_digest_hex;
use selfbuild_core::change::RiskLevel;
use selfbuild_core::ids::CycleId;
use selfbuild_core::ports::{AuditLog, ImprovementStore};
use selfbuild_core::records::ImprovementStatus;
use selfbuild_core::steps::StepFunction;
use selfbuild_local::cycle::{DEFINITION, substitutions};
use selfbuild_tests::cargo_lambda::{CargoLambdaWatch, require_cargo_lambda, workspace_root};
use selfbuild_tests::events::load;
use selfbuild_tests::lambda_fixture::{create_role, stored_zip};
use selfbuild_tests::lambda_router::{InvokeFn, InvokeResult, LambdaRouter, forward_invocations};
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::recorded::RecordedServer;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";
const TARGET: &str = "orders-api";
const TABLE: &str = "selfbuild-e2e";
const STATE_MACHINE: &str = "selfbuild-e2e-improvement-cycle";
const KEYS_SECRET: &str = "selfbuild-e2e/api-keys";
const API_KEY: &str = "e2e-key-not-secret";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// Long enough for three one-minute buckets of canary metrics (the monitor's minimum sample).
const MONITOR_WINDOW_SECONDS: i64 = 150;
/// The longest the execution may run.
const EXECUTION_DEADLINE: Duration = Duration::from_secs(300);

/// One invocation the router sent on.
struct Call {
    function: String,
    payload: Value,
    result: InvokeResult,
    took: Duration,
}

/// Keeps every invocation (for the failure report and `SELFBUILD_E2E_CAPTURE`).
fn recording(inner: InvokeFn, calls: Arc<Mutex<Vec<Call>>>) -> InvokeFn {
    Arc::new(move |function, payload| {
        let (inner, calls) = (Arc::clone(&inner), Arc::clone(&calls));
        Box::pin(async move {
            let started = Instant::now();
            let result = inner(function.clone(), payload.clone()).await;
            calls.lock().unwrap().push(Call {
                function,
                payload,
                result: result.clone(),
                took: started.elapsed(),
            });
            result
        })
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn smithy_time(at: OffsetDateTime) -> DateTime {
    DateTime::from_millis(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap())
}

/// Everything the test started, for the failure report.
struct World {
    watches: Vec<CargoLambdaWatch>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl World {
    fn watch(&self, package: &str) -> &CargoLambdaWatch {
        self.watches.iter().find(|w| w.package == package).unwrap()
    }

    /// The invocations so far and every watch's log tail.
    fn report(&self) -> String {
        let mut text = String::from("invocations through the router:\n");
        for c in self.calls.lock().unwrap().iter() {
            let outcome = match &c.result {
                Ok(_) => "ok".to_owned(),
                Err((t, m)) => format!("{t}: {m}"),
            };
            let action = c.payload["action"].as_str().unwrap_or("-");
            text.push_str(&format!(
                "  {} ({action}) {:?}: {outcome}\n",
                c.function, c.took
            ));
        }
        for w in &self.watches {
            text.push_str(&format!(
                "\n--- cargo lambda watch -p {} ---\n{}\n",
                w.package,
                w.log_tail(25)
            ));
        }
        text
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_runs_a_whole_cycle_through_the_real_binaries_on_moto() {
    let started = Instant::now();
    require_cargo_lambda();

    // moto, with its Step Functions engine calling Lambda through the router.
    let router = LambdaRouter::bind().await;
    let router_port = router.port;
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", router_port.to_string())]);
    moto.control(
        "/moto-api/config",
        r#"{"stepfunctions":{"execute_state_machine":true}}"#,
    );
    let sdk = moto.sdk_config().await;
    let store = DynamoStore::new(&sdk, TABLE);
    store.create_table().await.unwrap();
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let now = OffsetDateTime::now_utc();
    create_target(&moto, &lambda).await;
    publish_incident(&sdk, now).await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(KEYS_SECRET)
        .secret_string(
            json!({"keys": [{"id": "e2e", "sha256": key_digest_hex(API_KEY), "tenant": "*",
                             "scopes": ["read"]}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let definition = substitutions(ARN_PREFIX)
        .into_iter()
        .fold(DEFINITION.to_owned(), |text, (key, arn)| {
            text.replace(&format!("${{{key}}}"), &arn)
        });
    let state_machine = sfn
        .create_state_machine()
        .name(STATE_MACHINE)
        .role_arn("arn:aws:iam::123456789012:role/selfbuild-state-machine")
        .definition(definition)
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let bedrock = RecordedServer::start(
        &workspace_root().join("shared/aws/tests/recorded/bedrock-converse-tool-use.json"),
    )
    .await;

    // The real binaries, one `cargo lambda watch` each, configured like the template does.
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("TABLE_NAME", TABLE),
        ("STATE_MACHINE_ARN", state_machine.as_str()),
        ("EVENT_BUS_NAME", "default"),
        ("BEDROCK_MODEL_ID", MODEL),
        ("ENABLE_AUTONOMOUS_IMPROVEMENTS", "true"),
        ("EMERGENCY_WINDOW_MINUTES", "10"),
        (
            "MONITOR_WINDOW_SECONDS",
            &MONITOR_WINDOW_SECONDS.to_string(),
        ),
        ("MONITOR_INTERVAL_SECONDS", "10"),
        ("LOW_TRAFFIC_INVOCATIONS_PER_MINUTE", "1000000"),
        ("API_KEYS_SECRET_ID", KEYS_SECRET),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let packages: Vec<&str> = ["alarm-intake", "mcp"]
        .into_iter()
        .chain(StepFunction::ALL.iter().map(|f| f.name()))
        .collect();
    let world = World {
        watches: packages
            .iter()
            .map(|p| CargoLambdaWatch::start(p, &env))
            .collect(),
        calls: Arc::new(Mutex::new(Vec::new())),
    };
    let targets: BTreeMap<String, std::net::SocketAddr> = world
        .watches
        .iter()
        .map(|w| (w.package.clone(), w.addr))
        .collect();
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let serving = router.serve(
        upstream,
        recording(forward_invocations(targets), Arc::clone(&world.calls)),
    );

    // Every function starts (a build if the binary is stale) and its errors come back the way
    // Lambda reports them: through the router, as the SDK (and moto's engine) read them.
    let router_sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{router_port}"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("testing", "testing", None, None, "e2e"),
            ),
        )
        .build();
    let via_router = aws_sdk_lambda::Client::new(&router_sdk);
    for package in packages.iter().filter(|p| **p != "mcp") {
        let answer = via_router
            .invoke()
            .function_name(format!("{ARN_PREFIX}{package}"))
            .payload(Blob::new("{}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoking {package}: {e:?}\n{}", world.report()));
        let payload: Value = serde_json::from_slice(answer.payload().unwrap().as_ref()).unwrap();
        let expected = if *package == "alarm-intake" {
            "InvalidEvent"
        } else {
            "InvalidInput"
        };
        assert_eq!(
            (answer.function_error(), payload["errorType"].as_str()),
            (Some("Unhandled"), Some(expected)),
            "{package} on an empty payload: {payload}\n{}",
            world.report()
        );
    }
    let warmed = started.elapsed();

    // The alarm, as of now, into alarm-intake with `cargo lambda invoke`.
    let mut event = load("alarm-tenant-metric.json");
    let at = OffsetDateTime::now_utc();
    event["time"] = json!(rfc3339(at.replace_nanosecond(0).unwrap()));
    event["detail"]["state"]["timestamp"] = json!(rfc3339(at));
    let dir = tempfile::tempdir().unwrap();
    let event_file = dir.path().join("alarm.json");
    std::fs::write(&event_file, event.to_string()).unwrap();
    let output = world.watch("alarm-intake").invoke_cli(&event_file);
    assert!(
        output.status.success(),
        "cargo lambda invoke alarm-intake failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        world.report()
    );
    let intake: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("intake printed no JSON ({e}): {output:?}"));
    assert_eq!(
        (intake["decision"].as_str(), intake["mode"].as_str()),
        (Some("started"), Some("emergency")),
        "{intake:#}"
    );
    assert_eq!(intake["tenant_id"], "acme", "{intake:#}");
    let cycle_id = intake["cycle_id"].as_str().unwrap().to_owned();
    let execution = format!(
        "{}:{cycle_id}",
        state_machine.replace(":stateMachine:", ":execution:")
    );

    // Wait for the execution; once the canary is routed, publish its minutes.
    let deadline = Instant::now() + EXECUTION_DEADLINE;
    let mut canary_fed = false;
    let (status, output) = loop {
        let described = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeExecution {execution}: {e:?}\n{}", world.report()));
        if described.status.as_str() != "RUNNING" {
            break (described.status.as_str().to_owned(), described.output);
        }
        if !canary_fed && let Some(canary) = routed_canary(&lambda).await {
            publish_version_minutes(&sdk, &canary, OffsetDateTime::now_utc()).await;
            canary_fed = true;
        }
        assert!(
            Instant::now() < deadline,
            "the execution still runs after {EXECUTION_DEADLINE:?}\n{}",
            world.report()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let cycle_took = started.elapsed() - warmed;
    let history = sfn
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let entered: Vec<String> = history
        .events()
        .iter()
        .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
        .collect();
    let output: Value = output
        .as_deref()
        .map(|o| serde_json::from_str(o).unwrap())
        .unwrap_or(Value::Null);
    assert_eq!(
        status,
        "SUCCEEDED",
        "output {output:#}\nstates {entered:?}\n{}",
        world.report()
    );
    let summary = &output["summary"]["improvements"][0];
    assert_eq!(
        (
            summary["opportunity"].as_str(),
            summary["decision"].as_str(),
            summary["outcome"].as_str()
        ),
        (
            Some("orders-api:timeouts"),
            Some("auto_deploy"),
            Some("promoted")
        ),
        "{output:#}\nstates {entered:?}\n{}",
        world.report()
    );
    for state in [
        "AnalyzeTelemetry",
        "GenerateChange",
        "ValidateChange",
        "DeployCanary",
        "WaitMonitorInterval",
        "MonitorCanary",
        "PromoteCanary",
        "WriteCycleSummary",
    ] {
        assert!(
            entered.iter().any(|s| s == state),
            "{state} not in {entered:?}"
        );
    }
    assert!(
        !entered.iter().any(|s| s == "RollbackChange"),
        "{entered:?}"
    );

    // The audit trail and the improvement record, in DynamoDB.
    let cycle = CycleId::parse(&cycle_id).unwrap();
    let actions: Vec<String> = store
        .cycle_events(&cycle)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action.as_str().to_owned())
        .collect();
    let position = |action: &str| {
        actions
            .iter()
            .position(|a| a == action)
            .unwrap_or_else(|| panic!("no `{action}` in the audit trail {actions:?}"))
    };
    assert!(
        position("validated") < position("deployed") && position("deployed") < position("promoted"),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| a == "rolled_back"), "{actions:?}");
    let improvement_id = selfbuild_tests::improvement_id(&format!("{cycle_id}-1"));
    let record = store
        .get_improvement(&improvement_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no improvement record {improvement_id}"));
    assert_eq!(record.status, ImprovementStatus::Promoted);
    assert_eq!(record.risk, Some(RiskLevel::Low));
    assert_eq!(
        record.change.as_deref(),
        Some("orders-api: timeout 3→10 s, memory 128→512 MB")
    );

    // The alias on moto's Lambda: all traffic on version 2, which has the new settings.
    let alias = lambda
        .get_alias()
        .function_name(TARGET)
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(alias.function_version(), Some("2"));
    assert!(
        alias
            .routing_config()
            .and_then(AliasRoutingConfiguration::additional_version_weights)
            .is_none_or(|w| w.is_empty()),
        "{alias:?}"
    );
    let version = lambda
        .get_function_configuration()
        .function_name(TARGET)
        .qualifier("2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (version.memory_size(), version.timeout()),
        (Some(512), Some(10))
    );

    // Bedrock was asked once, for the configured model.
    let asked = bedrock.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].path.contains("/converse"), "{}", asked[0].path);
    assert!(
        asked[0].path.contains("claude-3-5-sonnet"),
        "{}",
        asked[0].path
    );

    // The mcp function through cargo-lambda's function URL emulation sees the same records.
    let mcp = world.watch("mcp").addr;
    let listed = mcp_post(
        mcp,
        true,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(listed.status, 200, "{}\n{}", listed.text(), world.report());
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    let tools: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(tools.contains(&"get_improvement"), "{tools:?}");
    let got = mcp_post(
        mcp,
        true,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "get_improvement", "arguments": {"id": improvement_id}}}),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let got: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        got["result"]["structuredContent"]["improvement"]["status"], "promoted",
        "{got:#}"
    );
    let anonymous = mcp_post(
        mcp,
        false,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    )
    .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());

    capture(&world);
    serving.abort();
    let checks = entered.iter().filter(|s| *s == "MonitorCanary").count();
    eprintln!(
        "e2e: cycle {cycle_id} promoted after {checks} monitor checks ({} states); audit \
         {actions:?}; set-up and warm-up {warmed:.1?}, cycle {cycle_took:.1?}, total {:.1?}",
        entered.len(),
        started.elapsed()
    );
}

/// One MCP request through cargo-lambda's function URL emulation, with or without the key.
async fn mcp_post(
    addr: std::net::SocketAddr,
    with_key: bool,
    body: Value,
) -> selfbuild_tests::http::Response {
    let bearer = format!("Bearer {API_KEY}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if with_key {
        headers.push(("Authorization", bearer.as_str()));
    }
    selfbuild_tests::http::send(
        addr,
        "POST",
        "/lambda-url/mcp/mcp",
        &headers,
        body.to_string().as_bytes(),
    )
    .await
    .unwrap()
}

/// `orders-api` on moto's Lambda: 128 MB, 3 s, version 1 behind the alias `live`.
async fn create_target(moto: &MotoServer, lambda: &aws_sdk_lambda::Client) {
    let role = create_role(moto, "orders-api-role").await;
    lambda
        .create_function()
        .function_name(TARGET)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(stored_zip(
                    "bootstrap",
                    b"#!/bin/sh\necho '{}'\n",
                )))
                .build(),
        )
        .memory_size(128)
        .timeout(3)
        .send()
        .await
        .unwrap();
    let version = lambda
        .publish_version()
        .function_name(TARGET)
        .send()
        .await
        .unwrap();
    lambda
        .create_alias()
        .function_name(TARGET)
        .name("live")
        .function_version(version.version().unwrap())
        .send()
        .await
        .unwrap();
}

async fn put_metric(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
    dimensions: &[(&str, &str)],
    at: OffsetDateTime,
    value: f64,
) {
    let mut datum = MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .timestamp(smithy_time(at));
    for (k, v) in dimensions {
        datum = datum.dimensions(Dimension::builder().name(*k).value(*v).build());
    }
    cloudwatch
        .put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(datum.build())
        .send()
        .await
        .unwrap();
}

/// The last 8 minutes of orders-api: 1,000 invocations and 50 errors a minute, and the
/// errors' log lines, all timeouts.
async fn publish_incident(sdk: &aws_config::SdkConfig, now: OffsetDateTime) {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let function = [("FunctionName", TARGET)];
    let group = format!("/aws/lambda/{TARGET}");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/11/22/[1]e2e")
        .send()
        .await
        .unwrap();
    let mut lines = Vec::new();
    for minute in (1..=8).rev() {
        let at = now - time::Duration::minutes(minute);
        put_metric(&cloudwatch, "Invocations", &function, at, 1000.0).await;
        put_metric(&cloudwatch, "Errors", &function, at, 50.0).await;
        for second in [5, 25, 45] {
            let when = at + time::Duration::seconds(second);
            lines.push(
                InputLogEvent::builder()
                    .timestamp(i64::try_from(when.unix_timestamp_nanos() / 1_000_000).unwrap())
                    .message(format!(
                        "{} e2e-{minute}-{second} Task timed out after 3.00 seconds",
                        rfc3339(when)
                    ))
                    .build()
                    .unwrap(),
            );
        }
    }
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/11/22/[1]e2e")
        .set_log_events(Some(lines))
        .send()
        .await
        .unwrap();
}

/// The canary version the alias routes to, once the deploy step has routed it.
async fn routed_canary(lambda: &aws_sdk_lambda::Client) -> Option<String> {
    let alias = lambda
        .get_alias()
        .function_name(TARGET)
        .name("live")
        .send()
        .await
        .ok()?;
    alias
        .routing_config()
        .and_then(AliasRoutingConfiguration::additional_version_weights)
        .and_then(|w| w.keys().next().cloned())
}

/// Per-version minutes behind `live` from `from` on: three one-minute buckets for the stable
/// version 1 and the canary, 100 invocations and 1 error each (published ahead; moto shows a
/// point once its time has come).
async fn publish_version_minutes(sdk: &aws_config::SdkConfig, canary: &str, from: OffsetDateTime) {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let resource = format!("{TARGET}:live");
    for version in ["1", canary] {
        let dims = [
            ("FunctionName", TARGET),
            ("Resource", resource.as_str()),
            ("ExecutedVersion", version),
        ];
        for minute in 0..3 {
            let at = from + time::Duration::seconds(1 + 60 * minute);
            put_metric(&cloudwatch, "Invocations", &dims, at, 100.0).await;
            put_metric(&cloudwatch, "Errors", &dims, at, 1.0).await;
        }
    }
}

/// With `SELFBUILD_E2E_CAPTURE=<dir>`, writes each step's payload as the state machine sent
/// it (`<n>-<function>[-<action>].json`): the source of `events/steps/`.
fn capture(world: &World) {
    let Ok(dir) = std::env::var("SELFBUILD_E2E_CAPTURE") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    for (n, call) in world.calls.lock().unwrap().iter().enumerate() {
        let action = call.payload["action"]
            .as_str()
            .map(|a| format!("-{a}"))
            .unwrap_or_default();
        let path =
            std::path::Path::new(&dir).join(format!("{n:02}-{}{action}.json", call.function));
        std::fs::write(path, serde_json::to_string_pretty(&call.payload).unwrap()).unwrap();
    }
}
