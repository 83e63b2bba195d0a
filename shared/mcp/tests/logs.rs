//! What operators and agents send reaches the log as escaped fields, never as a line of its
//! own (issue 12, item 7). A test binary of its own: a thread-local subscriber sees every
//! event only when no other test registers callsites at the same time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use selfbuild_core::Config;
use selfbuild_core::apikeys::{KeySet, key_digest_hex};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{Clock, MetricRecord, MetricSink, StaticKeys};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::{SqliteStore, StoreTaskTokens};
use selfbuild_mcp::access_log::LogRecordAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-key-0123456789";

struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _metric: MetricRecord) {}
}

/// Log lines written in `selfbuild`'s own format, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `tools/call` of `tool` as the admin key; the JSON-RPC answer.
async fn call(router: &axum::Router, tool: &str, arguments: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}});
    let request = Request::post("/mcp")
        .header("host", "127.0.0.1:8787")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("a JSON-RPC answer")
}

#[tokio::test]
async fn operator_and_agent_text_never_breaks_a_log_line() {
    let logs = Logs::default();
    let writer = logs.clone();
    let _logging = tracing::subscriber::set_default(selfbuild_local::cli::log_subscriber(
        "info",
        false,
        move || writer.clone(),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("store");
    let scenario_file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios/timeouts.json");
    let scenario = Scenario::load(scenario_file).expect("scenario");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(scenario.now));
    let fleet = Arc::new(Fleet::new(&scenario, Arc::clone(&clock)).expect("fleet"));
    let keys = KeySet::parse(&json!([
        {"id": "ops", "sha256": key_digest_hex(ADMIN), "tenant": "*", "scopes": ["admin"]}
    ]))
    .expect("keys");
    let router = app(McpDeps {
        store: Arc::new(store.clone()),
        access_log: Arc::new(LogRecordAccessLog::new(std::io::sink())),
        orchestrator: Arc::new(RecordingOrchestrator::new(
            store.clone(),
            FixedClock(scenario.now),
        )),
        task_tokens: Arc::new(StoreTaskTokens(store.clone())),
        telemetry: fleet.clone(),
        deployer: fleet,
        notifier: Arc::new(store),
        peers: Arc::new(selfbuild_core::ports::NoPeers),
        llm: Arc::new(selfbuild_local::planner::RulePlanner),
        checker: Arc::new(selfbuild_core::ports::NoCodeChecker),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(StaticKeys(Arc::new(keys))),
        clock,
        ids: Arc::new(OsRandom),
        config: Arc::new(Config::from_lookup(|_| None).expect("config")),
        settings: McpSettings::default(),
    });
    let forged = "incident\n2026-11-22T05:00:00Z ERROR forged line\u{0}";

    // A reason with a newline or NUL is refused at the edge, naming the argument.
    let answer = call(&router, "emergency_stop", json!({"reason": forged})).await;
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    let message = result["structuredContent"]["message"]
        .as_str()
        .expect("a message");
    assert!(
        message.contains("reason: must not contain control characters"),
        "{message}"
    );
    let status = call(
        &router,
        "get_system_status",
        json!({"include_health": false}),
    )
    .await;
    assert_eq!(
        status["result"]["structuredContent"]["halt"]["on"], false,
        "{status}"
    );

    // A tool name is the caller's text until it matches a tool: logged escaped.
    call(&router, forged, json!({})).await;
    // A valid stop logs its reason as a field.
    let stop = call(&router, "emergency_stop", json!({"reason": "incident 42"})).await;
    assert_eq!(
        stop["result"]["structuredContent"]["halted"], true,
        "{stop}"
    );

    let text = logs.text();
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("2026-11-22T05:00:00Z")),
        "a forged line reached the log:\n{text}"
    );
    assert!(!text.contains('\0'), "{text}");
    assert!(
        text.contains(r#"tool="incident\n2026-11-22T05:00:00Z ERROR forged line\0""#),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line.contains("emergency stop")
            && line.contains(r#"reason="incident 42""#)),
        "{text}"
    );
}
