//! The whole MCP endpoint: `selfbuild_mcp::app(deps)` called with `oneshot`, as the router
//! tests do, over the embedded adapters (a SQLite store in a scratch folder, the simulated
//! fleet of `events/scenarios/timeouts.json`, the rule planner). The first byte of the input
//! picks the caller's key and protocol version header; the rest is the POST body.
//!
//! Properties: the endpoint never answers 5xx; a request without a valid key is 401 whatever
//! its body; every body is JSON-RPC 2.0 JSON; a body `jsonrpc::check` refuses is a 400 with
//! the code and id the check gives; a `tools/call` answered 200 carries its id and a result
//! or an error.
//!
//! Slower than the other targets (a few thousand executions a second) and stateful: the
//! store keeps what earlier inputs did, so a crash may need the inputs before it.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use selfbuild_core::Config;
use selfbuild_core::apikeys::{KeySet, key_digest_hex};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{Clock, MetricRecord, MetricSink, NoCodeChecker, StaticKeys};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::planner::scenario_llm;
use selfbuild_local::store::{SqliteStore, StoreTaskTokens};
use selfbuild_mcp::access_log::LogRecordAccessLog;
use selfbuild_mcp::jsonrpc::check;
use selfbuild_mcp::{McpDeps, McpSettings, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const KEYS: [Option<&str>; 4] = [
    Some("admin-key-0123456789"),
    Some("acme-read-key-0123"),
    Some("acme-all-key-0123"),
    None,
];
const VERSIONS: [&str; 4] = ["2025-06-18", "2025-03-26", "2025-11-25", "2026-07-28"];

struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _metric: MetricRecord) {}
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
}

/// A scratch folder for this process's store; those of processes that ended are removed.
fn scratch() -> PathBuf {
    let base = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("selfbuild-fuzz-router-")
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("selfbuild-fuzz-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let store = SqliteStore::open(&scratch()).unwrap_or_else(|e| panic!("store: {e}"));
    let scenario = Scenario::load(root.join("events/scenarios/timeouts.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(scenario.now));
    let fleet =
        Arc::new(Fleet::new(&scenario, Arc::clone(&clock)).unwrap_or_else(|e| panic!("{e}")));
    let entry = |id: &str, key: &str, tenant: &str, scopes: &[&str]| json!({"id": id, "sha256": key_digest_hex(key), "tenant": tenant, "scopes": scopes});
    let keys = KeySet::parse(&json!([
        entry("ops", "admin-key-0123456789", "*", &["admin"]),
        entry("acme-read", "acme-read-key-0123", "acme", &["read"]),
        entry(
            "acme-all",
            "acme-all-key-0123",
            "acme",
            &["read", "trigger", "approve"]
        ),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = McpDeps {
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
        // The scenario's recorded drafts (none: generate_component says an LLM is needed);
        // no checker, so a draft's validation stays pending.
        llm: Arc::new(scenario_llm(&scenario).unwrap_or_else(|e| panic!("{e}"))),
        checker: Arc::new(NoCodeChecker),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(StaticKeys(Arc::new(keys))),
        clock,
        ids: Arc::new(OsRandom),
        config: Arc::new(Config::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"))),
        // No rate limit: the fuzzer calls far more often than a key may.
        settings: McpSettings {
            rate_limit_per_minute: 0,
            ..McpSettings::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    Harness {
        runtime,
        app: app(deps),
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let key = KEYS[usize::from(selector & 3)];
    let version = VERSIONS[usize::from((selector >> 2) & 3)];
    let mut request = Request::post("/mcp")
        .header("host", "127.0.0.1:8787")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .unwrap_or_else(|e| panic!("{e}"));
    let h = &*HARNESS;
    let (status, answer) = h.runtime.block_on(async {
        let response = h
            .app
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_bytes();
        (status, bytes)
    });
    assert!(
        !status.is_server_error(),
        "{status}: {}",
        String::from_utf8_lossy(&answer)
    );
    if key.is_none() {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    if answer.is_empty() {
        // 202 Accepted for a notification or a response has no body.
        return;
    }
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
        panic!(
            "{status}: the body is not JSON ({e}): {}",
            String::from_utf8_lossy(&answer)
        )
    });
    assert_eq!(answer["jsonrpc"], "2.0", "{status}: {answer}");
    if key.is_none() {
        return;
    }
    match check(body) {
        Err(refusal) => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            assert_eq!(answer["error"]["code"], refusal.code, "{answer}");
            assert_eq!(answer["id"], refusal.id, "{answer}");
        }
        Ok(message) => {
            let is_call = message.get("method").and_then(Value::as_str) == Some("tools/call")
                && message.get("id").is_some();
            if is_call && status == StatusCode::OK {
                assert_eq!(answer["id"], message["id"], "{answer}");
                assert!(
                    answer.get("result").is_some() || answer.get("error").is_some(),
                    "{answer}"
                );
            }
        }
    }
});
