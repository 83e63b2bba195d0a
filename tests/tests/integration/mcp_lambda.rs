//! The MCP endpoint as the `mcp` function wires it (DynamoDB store, Secrets Manager keys,
//! CloudWatch telemetry, the access log as structured log records), on moto behind the
//! counting proxy: the AWS calls each tool makes on its path, and none of them a write for a
//! read-only tool (issue 19), the rate limiter's background increment set apart. Prints each tool's calls and handler time (median of 5, against
//! moto: for comparing tools, not a Lambda figure); `scripts/bench-mcp` copies the lines.
//! Also: disabled components and their re-enabling on DynamoDB.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use selfbuild_aws::dynamo::DynamoStore;
use selfbuild_aws::eventbridge::EventBridgeNotifier;
use selfbuild_aws::lambda_deployer::LambdaDeployer;
use selfbuild_aws::secrets::SecretsManagerKeys;
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_aws::telemetry::{CloudWatchTelemetry, TelemetrySettings};
use selfbuild_core::Config;
use selfbuild_core::apikeys::key_digest_hex;
use selfbuild_core::clock::SystemClock;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{MetricRecord, MetricSink};
use selfbuild_mcp::access_log::LogRecordAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings, app};
use selfbuild_tests::fault_proxy::FaultProxy;
use selfbuild_tests::moto::MotoServer;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "lambda-cost-key-0123";

struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _metric: MetricRecord) {}
}

/// What the access log wrote, shared with the test.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Operations that change something.
const WRITES: [&str; 6] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "PutLogEvents",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_tools_make_no_aws_write_on_their_path() {
    let moto = MotoServer::shared();
    let proxy = FaultProxy::start(&moto, 19).await;
    let sdk = proxy.sdk_config().await;
    let store = DynamoStore::new(&sdk, "mcp-lambda-cost");
    store.create_table().await.unwrap();
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("selfbuild/mcp-cost-keys")
        .secret_string(
            json!([{"id": "cost", "sha256": key_digest_hex(KEY), "tenant": "*", "scopes": ["read"]}])
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let config = Config::from_lookup(|_| None).unwrap();
    let lines = Lines::default();
    let settings = TelemetrySettings {
        query_poll_interval: Duration::from_millis(20),
        query_timeout: Duration::from_secs(10),
        percentiles: false,
        ..TelemetrySettings::default()
    };
    let sfn = Arc::new(StepFunctionsOrchestrator::new(
        &sdk,
        "arn:aws:states:us-east-1:123456789012:stateMachine:not-used",
    ));
    let router = app(McpDeps {
        store: Arc::new(store),
        access_log: Arc::new(LogRecordAccessLog::new(lines.clone())),
        orchestrator: sfn.clone(),
        task_tokens: sfn,
        telemetry: Arc::new(CloudWatchTelemetry::new(&sdk, settings)),
        deployer: Arc::new(LambdaDeployer::new(&sdk)),
        notifier: Arc::new(EventBridgeNotifier::new(&sdk, "default")),
        peers: Arc::new(selfbuild_core::ports::NoPeers),
        llm: Arc::new(selfbuild_local::planner::RulePlanner),
        checker: Arc::new(selfbuild_core::ports::NoCodeChecker),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(SecretsManagerKeys::new(
            &sdk,
            "selfbuild/mcp-cost-keys",
            Duration::from_secs(300),
        )),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        config: Arc::new(config),
        // The limit is on; its counts reach DynamoDB from a background task.
        settings: McpSettings {
            rate_limit_per_minute: 6000,
            ..McpSettings::default()
        },
    });
    let call = |method: &str, params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let request = Request::post("/mcp")
            .header("host", "abc.lambda-url.us-east-1.on.aws")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    let tool = |name: &str, arguments: Value| {
        ("tools/call", json!({"name": name, "arguments": arguments}))
    };
    let cases = [
        ("ping", ("ping", json!({}))),
        ("tools/list", ("tools/list", json!({}))),
        ("list_agents", tool("list_agents", json!({}))),
        ("list_improvements", tool("list_improvements", json!({}))),
        (
            "get_improvement (missing id)",
            tool("get_improvement", json!({"id": "c1-1"})),
        ),
        ("get_system_status", tool("get_system_status", json!({}))),
        (
            "query_telemetry_insights",
            tool("query_telemetry_insights", json!({"time_range_hours": 1})),
        ),
    ];
    // The key list is fetched once per container (and every API_KEYS_REFRESH_SECONDS).
    call("ping", json!({})).await;
    let mut calls_made = 0;
    let mut report = Vec::new();
    let mut background = Vec::new();
    for (label, (method, params)) in cases {
        // A first call fills the caches (the status answer); then five measured ones.
        let _ = call(method, params.clone()).await;
        let mut times = Vec::new();
        let mut operations = Vec::new();
        for _ in 0..5 {
            // The limiter's background increment of the previous call lands first.
            let waited = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let done: Vec<String> = proxy
                    .take_calls()
                    .into_iter()
                    .map(|c| c.operation)
                    .collect();
                let synced = done.iter().any(|op| op == "UpdateItem");
                background.extend(done);
                if method != "tools/call" || synced || waited.elapsed() > Duration::from_secs(3) {
                    break;
                }
            }
            let started = Instant::now();
            let answer = call(method, params.clone()).await;
            times.push(started.elapsed());
            // A slow tool overlaps the limiter's background increment of its own call
            // (UpdateItem of the key's counter): not on its path, which the store-gate test
            // (shared/mcp/tests/request_cost.rs) shows; set apart here.
            let (made, synced): (Vec<String>, Vec<String>) = proxy
                .take_calls()
                .into_iter()
                .map(|c| c.operation)
                .partition(|op| op != "UpdateItem");
            assert!(synced.len() <= 1, "{label}: {synced:?}");
            background.extend(synced);
            assert!(answer.get("result").is_some(), "{label}: {answer}");
            assert!(
                !made.iter().any(|op| WRITES.contains(&op.as_str())),
                "{label} wrote on its path: {made:?}"
            );
            operations = made;
        }
        if method == "tools/call" {
            calls_made += 6;
        }
        times.sort();
        let ops = if operations.is_empty() {
            "none".to_owned()
        } else {
            operations.join(", ")
        };
        report.push(format!(
            "| {label} | {} | {ops} | {:.1} ms |",
            operations.len(),
            times[2].as_secs_f64() * 1000.0
        ));
        match label {
            "ping" | "tools/list" => assert!(operations.is_empty(), "{label}: {operations:?}"),
            "list_agents" | "list_improvements" => assert_eq!(operations, ["Query"], "{label}"),
            "get_system_status" => assert_eq!(operations, ["GetItem"], "{label}"),
            _ => {}
        }
    }
    // The limiter's counts did reach DynamoDB, off the path.
    assert!(
        background.iter().any(|op| op == "UpdateItem"),
        "{background:?}"
    );
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), calls_made, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("{\"record\":\"mcp_tool_call\"")),
        "{text}"
    );
    println!(
        "| request | AWS calls on its path | operations | handler time on moto (median of 5) |"
    );
    println!("|---|---:|---|---:|");
    for line in report {
        println!("{line}");
    }
}

/// On DynamoDB as the `mcp` function wires it: `get_system_status` lists the components the
/// health pass disabled and shows the last report; `enable_component` clears the ledger and
/// audits the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_components_show_and_are_enabled_on_dynamodb() {
    use selfbuild_core::apikeys::KeySet;
    use selfbuild_core::health::{ComponentHealth, Disabled, HealthEventKind, HealthReport};
    use selfbuild_core::ports::{HealthStore, StaticKeys};

    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let store = DynamoStore::new(&sdk, "mcp-lambda-health");
    store.create_table().await.unwrap();
    let now = time::macros::datetime!(2026-12-05 12:00 UTC);
    store
        .put_component_health(&ComponentHealth {
            component: "orders".into(),
            failed_heals: 3,
            heal_pending: false,
            disabled: Some(Disabled {
                reason: "3 failed heals (limit 3)".into(),
                since: now,
            }),
        })
        .await
        .unwrap();
    store
        .save_health_report(&HealthReport {
            at: now,
            healthy: false,
            checks: Vec::new(),
            heal_plan: Vec::new(),
            components: Vec::new(),
            disabled: Vec::new(),
            outcomes: Vec::new(),
        })
        .await
        .unwrap();
    let keys = KeySet::parse(&json!([{"id": "ops", "sha256": key_digest_hex(KEY), "tenant": "*", "scopes": ["read", "approve"]}]))
        .unwrap();
    let sfn = Arc::new(StepFunctionsOrchestrator::new(
        &sdk,
        "arn:aws:states:us-east-1:123456789012:stateMachine:not-used",
    ));
    let router = app(McpDeps {
        store: Arc::new(store.clone()),
        access_log: Arc::new(LogRecordAccessLog::new(std::io::sink())),
        orchestrator: sfn.clone(),
        task_tokens: sfn,
        telemetry: Arc::new(CloudWatchTelemetry::new(&sdk, TelemetrySettings::default())),
        deployer: Arc::new(LambdaDeployer::new(&sdk)),
        notifier: Arc::new(EventBridgeNotifier::new(&sdk, "default")),
        peers: Arc::new(selfbuild_core::ports::NoPeers),
        llm: Arc::new(selfbuild_local::planner::RulePlanner),
        checker: Arc::new(selfbuild_core::ports::NoCodeChecker),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(StaticKeys(Arc::new(keys))),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        config: Arc::new(Config::from_lookup(|_| None).unwrap()),
        settings: McpSettings::default(),
    });
    let call = |name: &str, arguments: Value| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}});
        let request = Request::post("/mcp")
            .header("host", "abc.lambda-url.us-east-1.on.aws")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            answer["result"]["structuredContent"].clone()
        }
    };
    let status = call("get_system_status", json!({"include_health": false})).await;
    assert_eq!(status["last_health"]["healthy"], false, "{status}");
    assert_eq!(
        status["disabled_components"][0]["component"], "orders",
        "{status}"
    );
    let enabled = call("enable_component", json!({"component": "orders"})).await;
    assert_eq!(enabled["was_disabled"], true, "{enabled}");
    let status = call("get_system_status", json!({"include_health": false})).await;
    assert_eq!(status["disabled_components"], json!([]), "{status}");
    let events = store.health_events(Some("orders"), 1).await.unwrap();
    assert_eq!(events[0].kind, HealthEventKind::Enabled);
    assert_eq!(events[0].actor, "key:ops");
}
