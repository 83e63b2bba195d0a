//! The MCP router, called with `oneshot` on the embedded adapters: protocol, auth, tenancy,
//! rate limit, bad input and every tool.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use selfbuild_core::Config;
use selfbuild_core::agents::{PeerTarget, WindowAnswer};
use selfbuild_core::apikeys::{KeySet, key_digest_hex};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::ids::{CycleId, ImprovementId, TenantId};
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::ports::{
    AccessLog, AccessLogSink, AgentPeers, ApprovalStore, Clock, Delivery, DeliveryOutcome,
    ImprovementStore, Llm, LlmError, MetricRecord, MetricSink, PeerError, Registry, StaticKeys,
    ToolAnswer, ToolRequest, UsageLedger,
};
use selfbuild_core::records::{ImprovementRecord, ImprovementStatus, PendingApproval};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::{SqliteStore, StoreTaskTokens};
use selfbuild_mcp::access_log::BatchedAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings, app};
use selfbuild_validate::{PipelineChecker, Settings};
use serde_json::{Value, json};
use tower::ServiceExt;

const ADMIN: &str = "admin-key-0123456789";
const OPS2: &str = "ops2-key-0123456789";
const ACME_READ: &str = "acme-read-key-0123";
const ACME_ALL: &str = "acme-all-key-0123";
const GLOBEX: &str = "globex-key-0123456";

struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _metric: MetricRecord) {}
}

/// Agents that take every notice, kept as (agent, tool, notice).
#[derive(Default)]
struct RecordingPeers(std::sync::Mutex<Vec<(String, String, Value)>>);

#[async_trait::async_trait]
impl AgentPeers for RecordingPeers {
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        _: &str,
        _: Value,
    ) -> Result<WindowAnswer, PeerError> {
        Err(PeerError::Unreachable {
            agent: target.name.clone(),
            message: "not asked in these tests".into(),
        })
    }
    async fn notify(&self, deliveries: &[Delivery], notice: Value) -> Vec<DeliveryOutcome> {
        let mut sent = self.0.lock().expect("lock");
        deliveries
            .iter()
            .map(|d| {
                sent.push((d.target.name.clone(), d.tool.clone(), notice.clone()));
                DeliveryOutcome {
                    agent: d.target.name.clone(),
                    attempts: 1,
                    error: None,
                }
            })
            .collect()
    }
    async fn ping(&self, _: &PeerTarget) -> Result<(), PeerError> {
        Ok(())
    }
}

/// Drafts components from a fixed answer (or fails with it) and counts its calls.
struct DraftLlm {
    answer: Result<Value, String>,
    calls: AtomicUsize,
}

impl DraftLlm {
    fn answering(answer: Result<Value, String>) -> Arc<Self> {
        Arc::new(Self {
            answer,
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Llm for DraftLlm {
    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(request.tool.name, "draft_component");
        match &self.answer {
            Ok(input) => Ok(ToolAnswer {
                input: input.clone(),
                usage: selfbuild_core::improvement::LlmUsage {
                    input_tokens: 2000,
                    output_tokens: 800,
                    cost_usd: 0.018,
                },
                provider: "draft-llm".into(),
                truncated: false,
            }),
            Err(message) => Err(LlmError::Unavailable(message.clone())),
        }
    }
}

/// A draft the real checker passes: a Python handler and its SAM resource.
fn good_draft() -> Value {
    json!({
        "files": [{"path": "app.py", "content": "import json\n\n\ndef handler(event, context):\n    refunds = [r for r in event.get(\"Records\", []) if r.get(\"eventName\") == \"CANCELLED\"]\n    return {\"refunds\": len(refunds)}\n"}],
        "runtime": "python3.12",
        "handler": "app.handler",
        "sam_resource": "AcmeRefunds:\n  Type: AWS::Serverless::Function\n  Properties:\n    Handler: app.handler\n    Runtime: python3.12\n    MemorySize: 256\n    Timeout: 60\n    Policies:\n      - DynamoDBReadPolicy:\n          TableName: orders\n",
        "rationale": "Counts cancelled orders of each batch.",
        "claimed_risk": "MEDIUM",
    })
}

struct Harness {
    app: Router,
    llm: Arc<DraftLlm>,
    /// The notices sent to registered agents.
    peers: Arc<RecordingPeers>,
    store: SqliteStore,
    access_log: Arc<BatchedAccessLog>,
    /// The instant the endpoint's fixed clock reads.
    now: time::OffsetDateTime,
    _dir: tempfile::TempDir,
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn keys() -> KeySet {
    let entry = |id: &str, key: &str, tenant: &str, scopes: &[&str]| json!({"id": id, "sha256": key_digest_hex(key), "tenant": tenant, "scopes": scopes});
    KeySet::parse(&json!([
        entry("ops", ADMIN, "*", &["admin"]),
        entry("ops2", OPS2, "*", &["read", "approve"]),
        entry("acme-read", ACME_READ, "acme", &["read"]),
        entry(
            "acme-all",
            ACME_ALL,
            "acme",
            &["read", "trigger", "approve"]
        ),
        entry("globex", GLOBEX, "globex", &["read", "approve"]),
    ]))
    .expect("test keys")
}

fn harness_with(settings: McpSettings, config: Config) -> Harness {
    harness_drafting(settings, config, DraftLlm::answering(Ok(good_draft())))
}

fn harness_drafting(settings: McpSettings, config: Config, llm: Arc<DraftLlm>) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("store");
    let scenario = Scenario::load(repo_file("events/scenarios/timeouts.json")).expect("scenario");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(scenario.now));
    let fleet = Arc::new(Fleet::new(&scenario, Arc::clone(&clock)).expect("fleet"));
    let access_log = Arc::new(BatchedAccessLog::spawn(Arc::new(store.clone())));
    let peers = Arc::new(RecordingPeers::default());
    let deps = McpDeps {
        store: Arc::new(store.clone()),
        access_log: access_log.clone(),
        orchestrator: Arc::new(RecordingOrchestrator::new(
            store.clone(),
            FixedClock(scenario.now),
        )),
        task_tokens: Arc::new(StoreTaskTokens(store.clone())),
        telemetry: fleet.clone(),
        deployer: fleet,
        notifier: Arc::new(store.clone()),
        peers: peers.clone(),
        llm: llm.clone(),
        checker: Arc::new(PipelineChecker::new(Settings::defaults())),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(StaticKeys(Arc::new(keys()))),
        clock,
        ids: Arc::new(OsRandom),
        config: Arc::new(config),
        settings,
    };
    Harness {
        app: app(deps),
        llm,
        peers,
        store,
        access_log,
        now: scenario.now,
        _dir: dir,
    }
}

fn harness() -> Harness {
    let config = Config::from_lookup(|_| None).expect("default config");
    harness_with(McpSettings::default(), config)
}

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
}

fn call(tool: &str, arguments: Value) -> Value {
    rpc("tools/call", json!({"name": tool, "arguments": arguments}))
}

impl Harness {
    /// The access log as stored, newest first, once every entry handed over is written.
    async fn access_log(&self, limit: usize) -> Vec<selfbuild_core::records::ToolCallEvent> {
        self.access_log.flush().await.expect("flush");
        self.store
            .recent_tool_calls(self.now, limit)
            .await
            .expect("log")
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }

    async fn post_as(&self, key: Option<&str>, body: &Value) -> (StatusCode, HeaderMap, Value) {
        self.post_version(key, body, "2025-06-18").await
    }

    async fn post_version(
        &self,
        key: Option<&str>,
        body: &Value,
        version: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::post("/mcp")
            .header("host", "127.0.0.1:8787")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    /// POSTs raw bytes as the admin key with this `Content-Type`.
    async fn post_bytes(
        &self,
        body: Vec<u8>,
        content_type: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let request = Request::post("/mcp")
            .header("host", "127.0.0.1:8787")
            .header("content-type", content_type)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// A tool call's result (`structuredContent`) and whether it is an error.
    async fn tool(&self, key: &str, tool: &str, arguments: Value) -> (Value, bool) {
        let (status, _, body) = self.post_as(Some(key), &call(tool, arguments)).await;
        assert_eq!(status, StatusCode::OK, "{tool}: {body}");
        let result = body
            .get("result")
            .unwrap_or_else(|| panic!("{tool}: no result: {body}"));
        let is_error = result
            .get("isError")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        (result["structuredContent"].clone(), is_error)
    }

    async fn ok(&self, key: &str, tool: &str, arguments: Value) -> Value {
        let (value, is_error) = self.tool(key, tool, arguments).await;
        assert!(!is_error, "{tool} failed: {value}");
        value
    }

    async fn err(&self, key: &str, tool: &str, arguments: Value) -> Value {
        let (value, is_error) = self.tool(key, tool, arguments).await;
        assert!(is_error, "{tool} should fail: {value}");
        value
    }
}

#[tokio::test]
async fn initialize_ping_and_notifications_follow_the_protocol() {
    let h = harness();
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let init = rpc(
            "initialize",
            json!({"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}}),
        );
        let (status, headers, body) = h.post_version(Some(ADMIN), &init, version).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            headers.get("mcp-session-id").is_none(),
            "stateless: no session id"
        );
        assert_eq!(body["result"]["protocolVersion"], version);
        assert_eq!(body["result"]["serverInfo"]["name"], "selfbuild");
        assert!(body["result"]["capabilities"]["tools"].is_object());
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = h.post_as(Some(ADMIN), &note).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = h.post_as(Some(ADMIN), &rpc("ping", json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], json!({}));
}

#[tokio::test]
async fn tools_list_has_every_tool_with_schemas_and_annotations() {
    let h = harness();
    let (status, _, body) = h
        .post_as(Some(ACME_READ), &rpc("tools/list", json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let tools = body["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "trigger_improvement_cycle",
            "get_system_status",
            "query_telemetry_insights",
            "generate_component",
            "get_component",
            "list_improvements",
            "get_improvement",
            "approve_improvement",
            "reject_improvement",
            "rollback_improvement",
            "emergency_stop",
            "resume",
            "enable_component",
            "register_agent",
            "list_agents",
        ]
    );
    for tool in tools {
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        assert!(tool["description"].as_str().is_some_and(|d| d.len() > 20));
    }
    let trigger = &tools[0];
    let window = &trigger["inputSchema"]["properties"]["analysis_window_hours"];
    assert_eq!(
        (window["minimum"].clone(), window["maximum"].clone()),
        (json!(1), json!(168))
    );
    assert_eq!(trigger["annotations"]["readOnlyHint"], false);
    let named = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    assert_eq!(
        named("get_system_status")["annotations"]["readOnlyHint"],
        true
    );
    assert_eq!(named("get_component")["annotations"]["readOnlyHint"], true);
    assert_eq!(
        named("generate_component")["annotations"]["readOnlyHint"],
        false
    );
    assert_eq!(
        named("rollback_improvement")["annotations"]["destructiveHint"],
        true
    );
}

#[tokio::test]
async fn get_is_405_and_missing_or_wrong_keys_are_401() {
    let h = harness();
    let get = Request::get("/mcp")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .expect("request");
    let (status, headers, _) = h.send(get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");

    let list = rpc("tools/list", json!({}));
    let (status, headers, body) = h.post_as(None, &list).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("missing API key")
    );

    let (status, headers, _) = h.post_as(Some("not-a-key"), &list).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn a_key_without_the_tools_scope_gets_403_naming_it() {
    let h = harness();
    let (status, _, body) = h
        .post_as(
            Some(ACME_READ),
            &call("trigger_improvement_cycle", json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("\"trigger\"") && message.contains("acme-read"),
        "{message}"
    );
    assert_eq!(body["id"], 7);

    let (status, _, _) = h
        .post_as(
            Some(ACME_ALL),
            &call("emergency_stop", json!({"reason": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let log = h.access_log(5).await;
    let denied: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.key_id.as_str(), e.tool.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        denied,
        [
            ("acme-all", "emergency_stop", "denied"),
            ("acme-read", "trigger_improvement_cycle", "denied")
        ]
    );
}

#[tokio::test]
async fn hosts_outside_the_allow_list_and_oversized_bodies_are_refused() {
    let h = harness();
    let request = Request::post("/mcp")
        .header("host", "evil.example.com")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(rpc("ping", json!({})).to_string()))
        .expect("request");
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("evil.example.com")
    );

    let big = call(
        "register_agent",
        json!({"name": "a", "url": "https://x", "capabilities": ["x".repeat(2 * 1024 * 1024)]}),
    );
    let (status, _, body) = h.post_as(Some(ADMIN), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("MCP_MAX_BODY_BYTES")
    );
}

#[tokio::test]
async fn unknown_tools_are_invalid_params_and_bad_arguments_name_the_field() {
    let h = harness();
    let (status, _, body) = h
        .post_as(Some(ADMIN), &call("no_such_tool", json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["error"]["code"], -32602, "{body}");

    let e = h
        .err(
            ADMIN,
            "trigger_improvement_cycle",
            json!({"analysis_window_hours": 500}),
        )
        .await;
    assert_eq!(e["error"], "invalid_arguments");
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("analysis_window_hours: 500 is out of range"),
        "{e}"
    );
    let e = h
        .err(
            ADMIN,
            "trigger_improvement_cycle",
            json!({"max_improvements": "three"}),
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("max_improvements"),
        "{e}"
    );
    let e = h
        .err(ADMIN, "trigger_improvement_cycle", json!({"mode": "panic"}))
        .await;
    assert!(e["message"].as_str().expect("m").contains("mode"), "{e}");
    let e = h
        .err(ADMIN, "list_improvements", json!({"colour": "red"}))
        .await;
    assert!(e["message"].as_str().expect("m").contains("colour"), "{e}");
    // A wrong value is quoted in part, never whole.
    let e = h
        .err(
            ADMIN,
            "list_improvements",
            json!({"status": "x".repeat(300_000)}),
        )
        .await;
    let message = e["message"].as_str().expect("m");
    assert!(
        message.starts_with("invalid arguments: status: \"xxx"),
        "{message}"
    );
    assert!(message.len() < 400, "{} bytes echoed", message.len());
    let e = h
        .err(
            ADMIN,
            "trigger_improvement_cycle",
            json!({"mode": "x".repeat(300_000)}),
        )
        .await;
    let message = e["message"].as_str().expect("m");
    assert!(
        message.starts_with("invalid arguments: mode: unknown variant"),
        "{message}"
    );
    assert!(message.len() < 400, "{} bytes echoed", message.len());
    let e = h
        .err(ADMIN, "list_improvements", json!({"status": "done"}))
        .await;
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("status: \"done\""),
        "{e}"
    );
    let e = h.err(ADMIN, "get_improvement", json!({})).await;
    assert!(e["message"].as_str().expect("m").contains("id"), "{e}");
    let e = h
        .err(
            ADMIN,
            "trigger_improvement_cycle",
            json!({"components": ["bad name!"]}),
        )
        .await;
    assert!(
        e["message"].as_str().expect("m").contains("components[0]"),
        "{e}"
    );
}

/// A JSON-RPC error as expected: HTTP status, code, id and a part of its message.
type Expected<'a> = (StatusCode, i64, Value, &'a str);

/// Asserts a JSON-RPC error in JSON: its HTTP status, code, id and a part of its message.
fn assert_rpc_error(
    what: &str,
    (status, headers, body): &(StatusCode, HeaderMap, Value),
    expected: Expected<'_>,
) {
    let (want_status, code, id, names) = expected;
    assert_eq!(*status, want_status, "{what}: {body}");
    assert_eq!(
        headers
            .get("content-type")
            .map(|v| v.to_str().expect("ascii")),
        Some("application/json"),
        "{what}: {body}"
    );
    assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    assert_eq!(body["id"], id, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(names), "{what}: {message}");
    assert!(
        message.len() < 400,
        "{what}: {} bytes echoed",
        message.len()
    );
}

#[tokio::test]
async fn malformed_messages_get_json_rpc_errors_that_say_what_is_wrong() {
    let h = harness();
    let bad = StatusCode::BAD_REQUEST;
    let huge = "x".repeat(500_000);
    let cases: Vec<(&str, Vec<u8>, Expected<'_>)> = vec![
        ("truncated JSON", br#"{"jsonrpc":"2.0","id":1,"method":"ping""#.to_vec(), (bad, -32700, Value::Null, "not JSON: EOF")),
        ("not UTF-8", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xff\xfeng\"}".to_vec(), (bad, -32700, Value::Null, "not UTF-8")),
        ("empty body", Vec::new(), (bad, -32700, Value::Null, "not JSON")),
        ("a batch", json!([rpc("ping", json!({}))]).to_string().into_bytes(), (bad, -32600, Value::Null, "batches are not supported")),
        ("a number", b"42".to_vec(), (bad, -32600, Value::Null, "JSON object")),
        ("no jsonrpc", br#"{"id":1,"method":"ping"}"#.to_vec(), (bad, -32600, json!(1), "jsonrpc is missing")),
        ("jsonrpc 1.0", br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.to_vec(), (bad, -32600, json!(1), "jsonrpc must be \"2.0\"")),
        ("no method", br#"{"jsonrpc":"2.0","id":1}"#.to_vec(), (bad, -32600, json!(1), "method is missing")),
        ("method 5", br#"{"jsonrpc":"2.0","id":1,"method":5}"#.to_vec(), (bad, -32600, json!(1), "method must be a string")),
        ("id null", br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.to_vec(), (bad, -32600, Value::Null, "id must be a string or an integer, got null")),
        ("id 1.5", br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.to_vec(), (bad, -32600, Value::Null, "id must be a string or an integer, got the number 1.5")),
        ("id {}", br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.to_vec(), (bad, -32600, Value::Null, "id must be a string or an integer, got an object")),
        ("a repeated key", br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"list_agents","name":"emergency_stop"}}"#.to_vec(), (bad, -32600, Value::Null, "params.name: the key appears more than once")),
        ("tools/call without params", rpc("tools/call", Value::Null).to_string().into_bytes(), (bad, -32602, json!(7), "tools/call needs params")),
        ("name 5", rpc("tools/call", json!({"name": 5})).to_string().into_bytes(), (bad, -32602, json!(7), "params.name must be a string (the tool to call), got the number 5")),
        ("arguments a string", rpc("tools/call", json!({"name": "list_agents", "arguments": "all"})).to_string().into_bytes(), (bad, -32602, json!(7), "params.arguments must be an object")),
        ("arguments an array", rpc("tools/call", json!({"name": "list_agents", "arguments": []})).to_string().into_bytes(), (bad, -32602, json!(7), "params.arguments must be an object (the tool's arguments by name), got an array")),
        ("arguments a huge string", rpc("tools/call", json!({"name": "list_agents", "arguments": huge})).to_string().into_bytes(), (bad, -32602, json!(7), "params.arguments must be an object")),
        ("params a number", rpc("tools/list", json!(3)).to_string().into_bytes(), (bad, -32602, json!(7), "params of \"tools/list\" must be an object, got a number")),
        ("cursor an object", rpc("tools/list", json!({"cursor": {"x": huge}})).to_string().into_bytes(), (bad, -32602, json!(7), "params.cursor")),
        ("initialize without clientInfo", rpc("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}})).to_string().into_bytes(), (bad, -32602, json!(7), "clientInfo")),
    ];
    for (what, body, expected) in cases {
        let answer = h.post_bytes(body, "application/json").await;
        assert_rpc_error(what, &answer, expected);
    }

    // Headers the transport refuses get JSON-RPC errors too.
    let ping = rpc("ping", json!({})).to_string().into_bytes();
    let answer = h.post_bytes(ping.clone(), "text/plain").await;
    assert_rpc_error(
        "text/plain",
        &answer,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            Value::Null,
            "Content-Type must be application/json, got \"text/plain\"",
        ),
    );
    let request = Request::post("/mcp")
        .header("host", "127.0.0.1:8787")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::from(ping))
        .expect("request");
    let answer = h.send(request).await;
    assert_rpc_error(
        "no text/event-stream in Accept",
        &answer,
        (
            StatusCode::NOT_ACCEPTABLE,
            -32600,
            Value::Null,
            "text/event-stream",
        ),
    );

    // What is well formed still works, and an unknown method is still -32601.
    let (status, _, body) = h
        .post_as(Some(ADMIN), &call("list_agents", Value::Null))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["isError"], false, "{body}");
    let (_, _, body) = h
        .post_as(Some(ADMIN), &rpc("no/such/method", json!({})))
        .await;
    assert_eq!(body["error"]["code"], -32601, "{body}");
    // A refused message is not a tool call: nothing in the access log.
    let log = h.access_log(50).await;
    assert_eq!(log.len(), 1, "{log:?}");
}

#[tokio::test]
async fn trigger_goes_through_dedup_and_the_halt_switch() {
    let h = harness();
    let first = h
        .ok(
            ACME_ALL,
            "trigger_improvement_cycle",
            json!({"components": ["orders-api"], "dry_run": true}),
        )
        .await;
    assert_eq!(first["status"], "started", "{first}");
    assert_eq!(
        first["tenant_id"], "acme",
        "a tenant key acts for its tenant"
    );
    assert_eq!(first["dedup_key"], "acme#orders-api");
    let again = h
        .ok(
            ACME_ALL,
            "trigger_improvement_cycle",
            json!({"components": ["orders-api"]}),
        )
        .await;
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["cycle_id"], first["cycle_id"]);
    assert_eq!(again["suppressed_count"], 1);

    let status = h
        .ok(
            ACME_READ,
            "get_system_status",
            json!({"include_health": false}),
        )
        .await;
    let running = status["running_cycles"].as_array().expect("running");
    assert_eq!(running.len(), 1, "{status}");
    assert_eq!(running[0]["cycle_id"], first["cycle_id"]);

    let stop = h
        .ok(ADMIN, "emergency_stop", json!({"reason": "incident 42"}))
        .await;
    assert_eq!(stop["halted"], true);
    let halted = h
        .ok(
            ADMIN,
            "trigger_improvement_cycle",
            json!({"tenant_id": "globex"}),
        )
        .await;
    assert_eq!(halted["status"], "halted");
    assert!(
        halted["reason"]
            .as_str()
            .expect("r")
            .contains("incident 42")
    );
    let status = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    assert_eq!(status["halt"]["on"], true);
    assert_eq!(status["halt"]["actor"], "key:ops");
    let resumed = h.ok(ADMIN, "resume", json!({})).await;
    assert_eq!(resumed["was_halted"], true);
}

#[tokio::test]
async fn a_tenant_key_never_sees_another_tenant() {
    let h = harness();
    let e = h
        .err(
            ACME_ALL,
            "trigger_improvement_cycle",
            json!({"tenant_id": "globex"}),
        )
        .await;
    assert_eq!(e["error"], "forbidden");
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("limited to tenant acme"),
        "{e}"
    );
    for (tool, args) in [
        ("list_improvements", json!({"tenant_id": "globex"})),
        ("query_telemetry_insights", json!({"tenant_id": "globex"})),
        ("list_agents", json!({"tenant_id": "globex"})),
    ] {
        let e = h.err(ACME_READ, tool, args).await;
        assert_eq!(e["error"], "forbidden", "{tool}: {e}");
    }
    h.ok(ADMIN, "register_agent", json!({"name": "globex-bot", "url": "https://bot.globex.example", "capabilities": ["triage"], "tenant_id": "globex"})).await;
    h.ok(ACME_ALL, "register_agent", json!({"name": "acme-bot", "url": "https://bot.acme.example/mcp", "capabilities": ["triage", "deploy"]})).await;
    let acme = h.ok(ACME_READ, "list_agents", json!({})).await;
    let names: Vec<&str> = acme["agents"]
        .as_array()
        .expect("a")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["acme-bot"]);
    let all = h.ok(ADMIN, "list_agents", json!({})).await;
    assert_eq!(all["agents"].as_array().expect("a").len(), 2);
    let e = h
        .err(
            ACME_ALL,
            "register_agent",
            json!({"name": "x", "url": "ftp://x", "capabilities": ["a"]}),
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .starts_with("invalid arguments: url"),
        "{e}"
    );
}

#[tokio::test]
async fn an_agent_registers_as_a_peer_and_bad_peer_fields_are_named() {
    let h = harness();
    let peer = json!({
        "name": "orders", "url": "https://orders.acme.example", "capabilities": ["orders"],
        "mcp_url": "https://orders.acme.example/mcp", "key_secret_id": "selfbuild/agents/orders",
        "components": ["orders-api", "orders-api"], "depends_on": ["catalog"],
        "low_traffic_windows": ["22:00-02:00", " 12:00-13:00 "],
        "window_tool": "when_can_i_deploy",
        "metrics": {"namespace": "Acme/Agents", "latency_p99": {"metric": "RespTime", "stat": "p99.9"}}
    });
    h.ok(ACME_ALL, "register_agent", peer).await;
    let listed = h.ok(ACME_READ, "list_agents", json!({})).await;
    let agent = &listed["agents"][0];
    assert_eq!(agent["mcp_url"], "https://orders.acme.example/mcp");
    assert_eq!(agent["key_secret_id"], "selfbuild/agents/orders");
    assert_eq!(agent["components"], json!(["orders-api"]));
    assert_eq!(agent["depends_on"], json!(["catalog"]));
    assert_eq!(
        agent["low_traffic_windows"],
        json!(["22:00-02:00", "12:00-13:00"])
    );
    assert_eq!(agent["window_tool"], "when_can_i_deploy");
    assert!(agent.get("notify_tool").is_none(), "{agent}");
    assert_eq!(
        agent["metrics"],
        json!({"namespace": "Acme/Agents", "latency_p99": {"metric": "RespTime", "stat": "p99.9"}})
    );

    let base = json!({"name": "x", "url": "https://x.example", "capabilities": ["a"]});
    for (field, value, says) in [
        ("mcp_url", json!("mailto:x"), "mcp_url: "),
        (
            "low_traffic_windows",
            json!(["25:00-01:00"]),
            "low_traffic_windows[0]: ",
        ),
        (
            "low_traffic_windows",
            json!(["01:00"]),
            "low_traffic_windows[0]: ",
        ),
        ("depends_on", json!(["ok", "bad name"]), "depends_on[1]: "),
        (
            "depends_on",
            json!(["x"]),
            "depends_on: \"x\" is the agent itself",
        ),
        ("components", json!(["no/slash"]), "components[0]"),
        ("window_tool", json!("a b"), "window_tool: "),
        ("notify_tool", json!(""), "notify_tool"),
        (
            "key_secret_id",
            json!("agents/x"),
            "key_secret_id: given without mcp_url",
        ),
        (
            "metrics",
            json!({"namespace": "AWS/Lambda"}),
            "metrics.namespace: \"AWS/Lambda\": AWS/ namespaces are AWS's own",
        ),
        (
            "metrics",
            json!({"namespace": "A", "dimensions": [{"name": "TenantId", "value": "globex"}]}),
            "metrics.dimensions[0].value: a TenantId dimension must be the agent's tenant (acme)",
        ),
        (
            "metrics",
            json!({"namespace": "Selfbuild/Services", "dimensions": [{"name": "FunctionName", "value": "globex-orders"}]}),
            "metrics.namespace: \"Selfbuild/Services\" holds every tenant's metrics",
        ),
        (
            "metrics",
            json!({"namespace": "A", "errors": {"metric": "E", "stat": "Most"}}),
            "metrics.errors.stat: ",
        ),
        (
            "metrics",
            json!({"namespace": "A", "latency": {"metric": "L"}}),
            "metrics.latency: unknown field `latency`",
        ),
    ] {
        let mut args = base.clone();
        args[field] = value;
        let e = h.err(ACME_ALL, "register_agent", args).await;
        let message = e["message"].as_str().expect("m");
        assert!(
            message.starts_with(&format!("invalid arguments: {says}")),
            "{field}: {message}"
        );
    }
}

/// Puts a deployed globex improvement, waiting for a second approval, in the store; its id.
async fn globex_improvement(h: &Harness, cycle: &str) -> ImprovementId {
    let step: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("events/steps/rollback.json")).expect("event"),
    )
    .expect("json");
    let mut item: ImprovementItem = serde_json::from_value(step["item"].clone()).expect("item");
    let globex = TenantId::parse("globex").expect("tenant");
    item.cycle_id = CycleId::parse(cycle).expect("cycle id");
    item.tenant_id = Some(globex.clone());
    item.opportunity.tenant_id = Some(globex.clone());
    let record = ImprovementRecord::of_item(&item, ImprovementStatus::Deployed, h.now);
    h.store.put_improvement(&record).await.expect("record");
    h.store
        .put_pending(&PendingApproval {
            improvement_id: record.improvement_id.clone(),
            cycle_id: item.cycle_id.clone(),
            tenant_id: Some(globex),
            task_token: "token-globex".into(),
            change: "timeout 3 → 6 s".into(),
            risk: "CRITICAL".into(),
            approvals_required: 2,
            approvers: Vec::new(),
            requested_at: h.now,
        })
        .await
        .expect("pending");
    record.improvement_id
}

#[tokio::test]
async fn another_tenants_improvement_is_answered_like_a_missing_one() {
    let h = harness();
    let real = globex_improvement(&h, "globex-orders-api-20261122T050000Z-5f3a9c1e").await;
    let real = real.to_string();
    let missing = real.replace("5f3a9c1e", "5f3a9c1f");
    // It is there: globex's own key sees it.
    let seen = h.ok(GLOBEX, "get_improvement", json!({"id": real})).await;
    assert_eq!(seen["improvement"]["tenant_id"], "globex", "{seen}");

    let calls = |id: &str| {
        [
            call("get_improvement", json!({"id": id})),
            call("approve_improvement", json!({"id": id})),
            call("reject_improvement", json!({"id": id, "comment": "no"})),
            call("rollback_improvement", json!({"id": id, "reason": "probe"})),
        ]
    };
    for key in [ACME_READ, ACME_ALL] {
        for (foreign, absent) in calls(&real).iter().zip(calls(&missing).iter()) {
            let tool = foreign["params"]["name"].as_str().expect("tool");
            let (status, _, body) = h.post_as(Some(key), foreign).await;
            let (absent_status, _, absent_body) = h.post_as(Some(key), absent).await;
            // The same answer, naming only the id sent.
            let foreign_text = body.to_string().replace(&real, "<id>");
            let absent_text = absent_body.to_string().replace(&missing, "<id>");
            assert_eq!(
                (status, &foreign_text),
                (absent_status, &absent_text),
                "{key} {tool}"
            );
            assert!(
                !foreign_text.contains("globex"),
                "{key} {tool}: {foreign_text}"
            );
            if key == ACME_ALL {
                assert_eq!(
                    body["result"]["structuredContent"]["error"], "not_found",
                    "{tool}: {body}"
                );
            }
        }
    }
    // Nothing was approved, rejected or rolled back on globex's behalf.
    let after = h.ok(GLOBEX, "get_improvement", json!({"id": real})).await;
    assert_eq!(after["improvement"]["status"], "deployed");
    assert_eq!(after["pending_approval"]["approvers"], json!([]));
}

#[tokio::test]
async fn cycle_ids_claimed_in_the_same_second_differ_in_their_random_part() {
    // Two endpoints (two stores, so no dedup between them) on the same fixed clock.
    let (a, b) = (harness(), harness());
    assert_eq!(a.now, b.now);
    let trigger = json!({"components": ["orders-api"], "dry_run": true});
    let first = a
        .ok(ACME_ALL, "trigger_improvement_cycle", trigger.clone())
        .await;
    let second = b.ok(ACME_ALL, "trigger_improvement_cycle", trigger).await;
    assert_eq!(
        (&first["status"], &second["status"]),
        (&json!("started"), &json!("started"))
    );
    let split = |v: &Value| {
        let id = v["cycle_id"].as_str().expect("cycle id").to_owned();
        let (prefix, suffix) = id.rsplit_once('-').expect("a suffix");
        (prefix.to_owned(), suffix.to_owned())
    };
    let (prefix_a, random_a) = split(&first);
    let (prefix_b, random_b) = split(&second);
    assert_eq!(prefix_a, prefix_b, "the readable part is the same");
    assert!(prefix_a.starts_with("acme-orders-api-20"), "{prefix_a}");
    assert_ne!(random_a, random_b, "the random part differs");
    for random in [&random_a, &random_b] {
        assert!(
            random.len() == 8 && random.chars().all(|c| c.is_ascii_hexdigit()),
            "{random}"
        );
    }
}

#[tokio::test]
async fn insights_and_health_come_from_telemetry() {
    let h = harness();
    let insights = h
        .ok(
            ADMIN,
            "query_telemetry_insights",
            json!({"time_range_hours": 24}),
        )
        .await;
    let opportunities = insights["opportunities"].as_array().expect("opportunities");
    assert!(!opportunities.is_empty(), "{insights}");
    assert!(
        insights["metric_summaries"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    let status = h.ok(ADMIN, "get_system_status", json!({})).await;
    let health = status["component_health"].as_array().expect("health");
    assert!(!health.is_empty(), "{status}");
    assert!(
        health
            .iter()
            .all(|c| c["health"] == "healthy" || c["health"] == "degraded")
    );
    assert_eq!(status["budget"]["per_request_limit_usd"], 5.0);
}

#[tokio::test]
async fn critical_changes_need_two_different_approvers() {
    let h = harness();
    let cycle_id = CycleId::parse("acme-orders-20261122T050000Z-0a0b0c0d").expect("id");
    h.store
        .put_pending(&PendingApproval {
            improvement_id: ImprovementId::new(&cycle_id, 1),
            cycle_id: cycle_id.clone(),
            tenant_id: Some(TenantId::parse("acme").expect("t")),
            task_token: "token-1".into(),
            change: "memory 1024 → 128 MB".into(),
            risk: "CRITICAL".into(),
            approvals_required: 2,
            approvers: Vec::new(),
            requested_at: time::OffsetDateTime::UNIX_EPOCH,
        })
        .await
        .expect("pending");
    let id = format!("{cycle_id}-1");
    let first = h
        .ok(ACME_ALL, "approve_improvement", json!({"id": id}))
        .await;
    assert_eq!(first["status"], "waiting");
    let same = h
        .ok(ACME_ALL, "approve_improvement", json!({"id": id}))
        .await;
    assert_eq!(
        same["status"], "waiting",
        "the same key twice is one approver"
    );
    let second = h
        .ok(
            OPS2,
            "approve_improvement",
            json!({"id": id, "comment": "ok"}),
        )
        .await;
    assert_eq!(second["status"], "approved");
    assert_eq!(second["approvers"], json!(["key:acme-all", "key:ops2"]));
    let results = h.store.take_task_results().await.expect("queued");
    assert_eq!(results.len(), 1, "the waiting execution is resumed once");
    assert_eq!(results[0].0, "token-1");
    let e = h.err(OPS2, "reject_improvement", json!({"id": id})).await;
    assert_eq!(e["error"], "not_found");
}

const REFUNDS: &str = r#"{"component_type": "event_consumer",
    "requirements": {"name": "acme-refunds", "description": "issues refunds for cancelled orders", "capabilities": ["read_dynamodb", "payment_refund"]},
    "context": {"traffic": "50/min"}}"#;

fn refunds() -> Value {
    serde_json::from_str(REFUNDS).expect("request")
}

#[tokio::test]
async fn generate_component_declines_or_registers() {
    let h = harness();
    let short = h
        .ok(ACME_ALL, "generate_component", json!({"component_type": "lambda_function",
            "requirements": {"name": "acme-report", "description": "reports", "capabilities": ["read_dynamodb"]}}))
        .await;
    assert_eq!(short["decision"], "declined");
    assert!(short["reason"].as_str().expect("r").contains("description"));
    assert!(
        short["suggested_alternatives"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    let critical = h
        .ok(ACME_ALL, "generate_component", json!({"component_type": "lambda_function",
            "requirements": {"name": "acme-admin", "description": "rotates every user's access keys nightly", "capabilities": ["iam_admin"]}}))
        .await;
    assert_eq!(critical["decision"], "declined");
    assert_eq!(critical["risk"], "CRITICAL");
    // Declined by the rules: nothing was asked of the LLM.
    assert_eq!(h.llm.calls(), 0);
    let high = h.ok(ACME_ALL, "generate_component", refunds()).await;
    assert_eq!(high["decision"], "accepted", "{high}");
    assert_eq!(high["component"]["status"], "awaiting_approval");
    assert_eq!(high["component"]["tenant_id"], "acme");
    assert_eq!(high["component"]["risk"], "HIGH");
    assert_eq!(high["validation"]["status"], "passed", "{high}");
    assert_eq!(h.llm.calls(), 1);
    // The code and the SAM resource are read back with get_component.
    let read = h
        .ok(ACME_READ, "get_component", json!({"name": "acme-refunds"}))
        .await;
    let component = &read["component"];
    assert_eq!(component["status"], "awaiting_approval");
    assert_eq!(component["detail"]["draft"], good_draft());
    assert_eq!(component["detail"]["provider"], "draft-llm");
    assert_eq!(component["detail"]["requested_by"], "acme-all");
    assert_eq!(component["detail"]["specification"]["memory_mb"], 256);
    // The call's cost is in the day's LLM spend.
    let usage = h.store.llm_usage(h.now.date()).await.expect("usage");
    assert_eq!((usage.calls, usage.cost_usd), (1, 0.018));
    let e = h
        .err(ACME_ALL, "generate_component", json!({"component_type": "mainframe", "requirements": {"name": "a", "description": "b", "capabilities": []}}))
        .await;
    assert!(
        e["message"].as_str().expect("m").contains("component_type"),
        "{e}"
    );
}

#[tokio::test]
async fn a_draft_with_a_leaked_key_or_tls_off_is_declined_with_its_findings() {
    for (code, rule) in [
        (
            "import json\n\nKEY = \"AKIA4QHZ7RMWTX2NV6YB\"\n\n\ndef handler(event, context):\n    return {\"key\": KEY}\n",
            "secret",
        ),
        (
            "import ssl\nimport urllib.request\n\n\ndef handler(event, context):\n    ctx = ssl.create_default_context()\n    ctx.check_hostname = False\n    ctx.verify_mode = ssl.CERT_NONE\n    return urllib.request.urlopen(\"https://refunds.example.com\", context=ctx).read().decode()\n",
            "tls",
        ),
        (
            "import requests\n\n\ndef handler(event, context):\n    return requests.get(\"https://refunds.example.com\", verify=False, timeout=5).json()\n",
            "tls",
        ),
    ] {
        let mut draft = good_draft();
        draft["files"][0]["content"] = json!(code);
        let h = harness_drafting(
            McpSettings::default(),
            Config::from_lookup(|_| None).expect("config"),
            DraftLlm::answering(Ok(draft)),
        );
        let answer = h.ok(ACME_ALL, "generate_component", refunds()).await;
        assert_eq!(answer["decision"], "declined", "{answer}");
        assert_eq!(answer["validation"]["status"], "blocked");
        let findings = answer["validation"]["findings"]
            .as_array()
            .expect("findings");
        assert!(
            findings.iter().any(|f| f["blocking"] == true
                && f["path"] == "app.py"
                && f["rule"].as_str().is_some_and(|r| r.contains(rule))),
            "{rule}: {answer}"
        );
        assert!(
            answer["reason"]
                .as_str()
                .expect("reason")
                .contains("blocking finding")
        );
        assert!(
            !answer["suggested_alternatives"]
                .as_array()
                .expect("alternatives")
                .is_empty()
        );
        // The declined draft and its findings are kept.
        let read = h
            .ok(ACME_ALL, "get_component", json!({"name": "acme-refunds"}))
            .await;
        assert_eq!(read["component"]["status"], "declined");
        assert_eq!(
            read["component"]["detail"]["validation"]["status"],
            "blocked"
        );
        assert_eq!(
            read["component"]["detail"]["draft"]["files"][0]["content"],
            code
        );
    }
}

#[tokio::test]
async fn an_llm_failure_is_recorded_with_the_reason_and_alternatives() {
    let h = harness_drafting(
        McpSettings::default(),
        Config::from_lookup(|_| None).expect("config"),
        DraftLlm::answering(Err("throttled by Bedrock".into())),
    );
    let answer = h.ok(ACME_ALL, "generate_component", refunds()).await;
    assert_eq!(answer["decision"], "failed", "{answer}");
    assert_eq!(answer["component"]["status"], "failed");
    let reason = answer["reason"].as_str().expect("reason");
    assert!(reason.contains("throttled by Bedrock"), "{reason}");
    assert!(
        answer["suggested_alternatives"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("retry later"))
    );
    let read = h
        .ok(ACME_ALL, "get_component", json!({"name": "acme-refunds"}))
        .await;
    assert_eq!(read["component"]["detail"]["reason"], reason);
    assert!(read["component"]["detail"].get("draft").is_none());
    // Nothing was spent: nothing is added to the day's usage.
    let usage = h.store.llm_usage(h.now.date()).await.expect("usage");
    assert_eq!(usage.calls, 0);
}

#[tokio::test]
async fn turned_off_component_generation_declines_without_asking_the_llm() {
    let config = Config::from_lookup(|name| {
        (name == "ENABLE_COMPONENT_GENERATION").then(|| "false".to_owned())
    })
    .expect("config");
    let h = harness_with(McpSettings::default(), config);
    let answer = h.ok(ACME_ALL, "generate_component", refunds()).await;
    assert_eq!(answer["decision"], "declined");
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ENABLE_COMPONENT_GENERATION")),
        "{answer}"
    );
    assert_eq!(h.llm.calls(), 0);
    let e = h
        .err(ACME_ALL, "get_component", json!({"name": "acme-refunds"}))
        .await;
    assert_eq!(e["error"], "not_found");
}

#[tokio::test]
async fn get_component_shows_a_tenant_only_its_own_components() {
    let h = harness();
    h.ok(ACME_ALL, "generate_component", refunds()).await;
    let e = h
        .err(GLOBEX, "get_component", json!({"name": "acme-refunds"}))
        .await;
    assert_eq!(e["error"], "not_found", "{e}");
    let e = h
        .err(
            GLOBEX,
            "get_component",
            json!({"name": "acme-refunds", "tenant_id": "acme"}),
        )
        .await;
    assert_eq!(e["error"], "forbidden", "{e}");
    let admin = h
        .ok(ADMIN, "get_component", json!({"name": "acme-refunds"}))
        .await;
    assert_eq!(admin["component"]["tenant_id"], "acme");
    let e = h
        .err(ADMIN, "get_component", json!({"name": "not a name"}))
        .await;
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .starts_with("invalid arguments: name:"),
        "{e}"
    );
}

#[tokio::test]
async fn the_rate_limit_says_when_to_retry_and_every_call_is_logged() {
    let config = Config::from_lookup(|_| None).expect("config");
    let h = harness_with(
        McpSettings {
            rate_limit_per_minute: 3,
            ..McpSettings::default()
        },
        config,
    );
    for _ in 0..3 {
        h.ok(ACME_READ, "list_agents", json!({})).await;
    }
    let e = h.err(ACME_READ, "list_agents", json!({})).await;
    assert_eq!(e["error"], "rate_limited");
    assert!(
        e["message"].as_str().expect("m").contains("retry after"),
        "{e}"
    );
    h.ok(ADMIN, "list_agents", json!({})).await;
    h.err(ACME_READ, "list_agents", json!({"tenant_id": "globex"}))
        .await;

    let log = h.access_log(10).await;
    let outcomes: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.key_id.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(outcomes[0], ("acme-read", "rate_limited"));
    assert_eq!(outcomes[1], ("ops", "ok"));
    assert_eq!(outcomes[2], ("acme-read", "rate_limited"));
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|e| e.tool == "list_agents"));
}

#[tokio::test]
async fn the_2026_stateless_form_answers_server_discover() {
    let h = harness();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}});
    let request = Request::post("/")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .body(Body::from(body.to_string()))
        .expect("request");
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = body["result"]["supportedVersions"].to_string();
    assert!(
        versions.contains("2026-07-28") && versions.contains("2025-03-26"),
        "{body}"
    );
}

/// Runs a scenario's routine cycle on the harness store in the background.
fn spawn_cycle(
    h: &Harness,
    scenario: &str,
    autonomous: bool,
) -> tokio::task::JoinHandle<Result<Value, String>> {
    let scenario = Scenario::load(repo_file(scenario)).expect("scenario");
    let mut config = selfbuild_local::demo::demo_config().expect("config");
    config.autonomous_improvements = autonomous;
    let request = selfbuild_local::demo::scenario_request(&scenario, &config);
    let store = h.store.clone();
    tokio::spawn(async move {
        selfbuild_local::cycle::run_cycle(
            &scenario,
            &request,
            &store,
            &config,
            Box::new(std::io::sink()),
            selfbuild_local::cycle::Approvers::People,
        )
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_through_mcp_resumes_the_waiting_cycle() {
    let h = harness();
    // Not autonomous: even the LOW-risk timeout fix waits for a human.
    let cycle = spawn_cycle(&h, "events/scenarios/timeouts.json", false);
    let mut waiting = Value::Null;
    for _ in 0..200 {
        let page = h
            .ok(
                OPS2,
                "list_improvements",
                json!({"status": "awaiting_approval"}),
            )
            .await;
        if let Some(first) = page["improvements"].as_array().and_then(|a| a.first()) {
            waiting = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = waiting["improvement_id"]
        .as_str()
        .expect("an improvement waits")
        .to_owned();
    assert_eq!(waiting["tenant_id"], "acme");
    assert_eq!(waiting["risk"], "LOW");

    // globex's key cannot see or approve acme's change.
    let e = h
        .err(GLOBEX, "approve_improvement", json!({"id": id}))
        .await;
    assert_eq!(e["error"], "not_found");
    let listed = h.ok(GLOBEX, "list_improvements", json!({})).await;
    assert_eq!(listed["improvements"], json!([]));

    let detail = h.ok(OPS2, "get_improvement", json!({"id": id})).await;
    assert_eq!(detail["pending_approval"]["approvals_required"], 1);
    assert!(detail["proposal"]["rationale"].is_string(), "{detail}");

    let approved = h
        .ok(
            OPS2,
            "approve_improvement",
            json!({"id": id, "comment": "raise it"}),
        )
        .await;
    assert_eq!(approved["status"], "approved");
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), cycle)
        .await
        .expect("the cycle finishes once approved")
        .expect("task")
        .expect("cycle");
    assert_eq!(output["summary"]["promoted"], 1, "{}", output["summary"]);

    let detail = h.ok(ADMIN, "get_improvement", json!({"id": id})).await;
    assert_eq!(detail["improvement"]["status"], "promoted");
    // The cycle runs on a scaled clock (an hour a second), the endpoint on the scenario's
    // fixed one, so only the set of transitions is compared, not their order.
    let trail = detail["audit_trail"].as_array().expect("trail");
    let mut actions: Vec<&str> = trail.iter().filter_map(|e| e["action"].as_str()).collect();
    actions.sort_unstable();
    // Every look at the canary is kept (`canary_checked`), as many as the window took.
    actions.dedup();
    assert_eq!(
        actions,
        [
            "approval_requested",
            "approved",
            "canary_checked",
            "deployed",
            "promoted",
            "validated"
        ]
    );
    let approval = trail
        .iter()
        .find(|e| e["action"] == "approved")
        .expect("approved");
    assert_eq!(approval["actor"], "key:ops2");
    // Looks come compact: the verdict and each rate, not the whole report.
    let look = trail
        .iter()
        .find(|e| e["action"] == "canary_checked")
        .expect("a look");
    assert!(look["look"]["verdict"].is_string(), "{look}");
    assert!(look["look"]["metrics"][0]["canary"].is_number(), "{look}");
    assert!(look.get("after").is_none(), "{look}");

    let status = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    assert_eq!(status["evolution_level"], 1);
    assert_eq!(status["improvements_by_status"]["promoted"], 1);
    assert_eq!(
        status["running_cycles"],
        json!([]),
        "the summary step finished the cycle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_improvement_can_be_rolled_back_by_hand() {
    let h = harness();
    let output = spawn_cycle(&h, "events/scenarios/timeouts.json", true)
        .await
        .expect("task")
        .expect("cycle");
    assert_eq!(output["summary"]["promoted"], 1, "{}", output["summary"]);
    let page = h
        .ok(
            ADMIN,
            "list_improvements",
            json!({"status": "promoted", "limit": 1}),
        )
        .await;
    let id: ImprovementId = page["improvements"][0]["improvement_id"]
        .as_str()
        .expect("promoted")
        .parse()
        .expect("an improvement id");

    let e = h
        .err(
            ADMIN,
            "rollback_improvement",
            json!({"id": id, "reason": " "}),
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("reason: must not be empty")
    );

    // The improvement is acme's: acme's own key may roll it back.
    let rolled = h
        .ok(
            ACME_ALL,
            "rollback_improvement",
            json!({"id": id, "reason": "p99 doubled for checkout"}),
        )
        .await;
    assert_eq!(rolled["status"], "rolled_back", "{rolled}");
    let detail = h.ok(ADMIN, "get_improvement", json!({"id": id})).await;
    assert_eq!(detail["improvement"]["status"], "rolled_back");
    let trail = detail["audit_trail"].as_array().expect("trail");
    let by_hand = trail
        .iter()
        .find(|e| e["action"] == "rolled_back")
        .expect("audited");
    assert_eq!(by_hand["actor"], "key:acme-all");
    assert!(
        by_hand["detail"]
            .as_str()
            .expect("d")
            .contains("p99 doubled")
    );
    let again = h
        .ok(
            ADMIN,
            "rollback_improvement",
            json!({"id": id, "reason": "again"}),
        )
        .await;
    assert_eq!(again["restored"], false, "idempotent");
    let notes = h.store.notifications().await.expect("notifications");
    assert!(notes.iter().any(|(t, _)| t == "Improvement Rolled Back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_by_hand_tells_the_agents_depending_on_the_components_owner() {
    // GIVEN a promoted improvement of acme's, and after its cycle, an agent owning its
    // component and one depending on that agent
    let h = harness();
    spawn_cycle(&h, "events/scenarios/timeouts.json", true)
        .await
        .expect("task")
        .expect("cycle");
    let page = h
        .ok(
            ADMIN,
            "list_improvements",
            json!({"status": "promoted", "limit": 1}),
        )
        .await;
    let id: ImprovementId = page["improvements"][0]["improvement_id"]
        .as_str()
        .expect("promoted")
        .parse()
        .expect("an improvement id");
    let record = h
        .store
        .get_improvement(&id)
        .await
        .expect("read")
        .expect("record");
    let component = record.item.opportunity.component.to_string();
    for agent in [
        json!({"name": "orders-owner", "components": [component], "depends_on": []}),
        json!({"name": "billing", "components": [], "depends_on": ["orders-owner"],
            "mcp_url": "https://billing.acme.example/mcp"}),
    ] {
        let mut agent = agent;
        for (k, v) in [
            ("url", json!("https://agents.acme.example")),
            ("capabilities", json!(["x"])),
            ("tenant_id", json!("acme")),
            ("registered_by", json!("acme-all")),
            ("registered_at", json!("2026-12-01T00:00:00Z")),
        ] {
            agent[k] = v;
        }
        let agent = serde_json::from_value(agent).expect("an agent record");
        h.store.register_agent(&agent).await.expect("registered");
    }
    assert!(
        h.peers.0.lock().expect("lock").is_empty(),
        "the cycle ran before"
    );

    // WHEN acme's key rolls it back
    let rolled = h
        .ok(
            ACME_ALL,
            "rollback_improvement",
            json!({"id": id, "reason": "p99 doubled for checkout"}),
        )
        .await;
    assert_eq!(rolled["restored"], true, "{rolled}");

    // THEN billing was sent the notice, and the delivery is audited as the key's
    let sent = h.peers.0.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (agent, tool, notice) = &sent[0];
    assert_eq!(
        (agent.as_str(), tool.as_str()),
        ("billing", "notify_dependency_changed")
    );
    assert_eq!(notice["event"], "rolled_back");
    assert_eq!(notice["changed_agent"], "orders-owner");
    assert_eq!(notice["component"], component.as_str());
    assert_eq!(notice["improvement_id"], id.as_str());
    assert!(
        notice["detail"]
            .as_str()
            .expect("detail")
            .contains("rolled back by key:acme-all: p99 doubled"),
        "{notice}"
    );
    let detail = h.ok(ADMIN, "get_improvement", json!({"id": id})).await;
    let trail = detail["audit_trail"].as_array().expect("trail");
    let notified = trail
        .iter()
        .find(|e| e["action"] == "agent_notified")
        .unwrap_or_else(|| panic!("no delivery audited: {trail:#?}"));
    assert_eq!(notified["actor"], "key:acme-all");

    // AND a second rollback restores nothing and tells nobody again
    h.ok(
        ACME_ALL,
        "rollback_improvement",
        json!({"id": id, "reason": "again"}),
    )
    .await;
    assert_eq!(h.peers.0.lock().expect("lock").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_improvement_whose_rollback_failed_can_be_rolled_back_by_hand() {
    // GIVEN a promoted improvement whose rollback then failed (RollbackFailed)
    let h = harness();
    spawn_cycle(&h, "events/scenarios/timeouts.json", true)
        .await
        .expect("task")
        .expect("cycle");
    let page = h
        .ok(
            ADMIN,
            "list_improvements",
            json!({"status": "promoted", "limit": 1}),
        )
        .await;
    let id: ImprovementId = page["improvements"][0]["improvement_id"]
        .as_str()
        .expect("promoted")
        .parse()
        .expect("an improvement id");
    let mut record = h
        .store
        .get_improvement(&id)
        .await
        .expect("read")
        .expect("record");
    record.status = ImprovementStatus::RollbackFailed;
    h.store.put_improvement(&record).await.expect("record");
    // WHEN a person rolls it back THEN the baseline is restored and the status says so
    let rolled = h
        .ok(
            ADMIN,
            "rollback_improvement",
            json!({"id": id, "reason": "the automatic rollback failed"}),
        )
        .await;
    assert_eq!(
        (rolled["status"].as_str(), rolled["restored"].as_bool()),
        (Some("rolled_back"), Some(true)),
        "{rolled}"
    );
    let detail = h.ok(ADMIN, "get_improvement", json!({"id": id})).await;
    assert_eq!(detail["improvement"]["status"], "rolled_back");
}

#[tokio::test]
async fn get_system_status_shows_the_last_health_report_whole_only_to_a_star_key() {
    use selfbuild_core::health::{Check, CheckName, CheckStatus, HealthReport};
    use selfbuild_core::ports::HealthStore;
    let h = harness();
    let report = HealthReport {
        at: h.now,
        healthy: false,
        checks: vec![Check {
            name: CheckName::Executions,
            status: CheckStatus::Degraded,
            detail: "ended badly: globex-orders-1 Failed".into(),
        }],
        heal_plan: Vec::new(),
        components: Vec::new(),
        disabled: Vec::new(),
        outcomes: Vec::new(),
    };
    h.store.save_health_report(&report).await.expect("saved");

    let admin = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    assert_eq!(admin["last_health"]["healthy"], false);
    assert_eq!(
        admin["last_health"]["checks"][0]["detail"],
        "ended badly: globex-orders-1 Failed"
    );
    let acme = h
        .ok(
            ACME_READ,
            "get_system_status",
            json!({"include_health": false}),
        )
        .await;
    assert_eq!(acme["last_health"]["healthy"], false);
    assert_eq!(acme["last_health"]["checks"][0]["status"], "degraded");
    assert!(
        acme["last_health"]["checks"][0].get("detail").is_none(),
        "{acme}"
    );
}

#[tokio::test]
async fn get_system_status_says_null_before_any_health_pass() {
    let h = harness();
    let status = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    assert_eq!(status["last_health"], Value::Null, "{status}");
}

#[tokio::test]
async fn enable_component_reenables_a_disabled_component_audited_and_scoped() {
    use selfbuild_core::health::{ComponentHealth, Disabled, HealthEventKind};
    use selfbuild_core::ports::{HealthStore, Registry};
    use selfbuild_core::records::{ComponentRecord, ComponentStatus};
    // GIVEN orders (acme's) and payments (globex's) disabled by the health pass
    let h = harness();
    for (name, tenant) in [("orders", "acme"), ("payments", "globex")] {
        h.store
            .put_component(&ComponentRecord {
                name: name.into(),
                component_type: "lambda_function".into(),
                tenant_id: Some(TenantId::parse(tenant).expect("tenant")),
                status: ComponentStatus::Registered,
                detail: json!({}),
                created_at: h.now,
            })
            .await
            .expect("registered");
        h.store
            .put_component_health(&ComponentHealth {
                component: name.into(),
                failed_heals: 3,
                heal_pending: false,
                disabled: Some(Disabled {
                    reason: "3 failed heals (limit 3)".into(),
                    since: h.now,
                }),
            })
            .await
            .expect("ledger");
    }
    // THEN status lists them: all for a `*` key, its own for a tenant key
    let status = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    let names = |s: &Value| -> Vec<String> {
        s["disabled_components"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| d["component"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(names(&status), ["orders", "payments"], "{status}");
    let reason = status["disabled_components"][0]["reason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("enable_component"), "{reason}");
    let acme = h
        .ok(
            ACME_ALL,
            "get_system_status",
            json!({"include_health": false}),
        )
        .await;
    assert_eq!(names(&acme), ["orders"], "{acme}");

    // WHEN a read key tries: it lacks the approve scope
    let (code, _, body) = h
        .post_as(
            Some(ACME_READ),
            &call("enable_component", json!({"component": "orders"})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"approve\""))
    );
    // A tenant key cannot see another tenant's component
    let e = h
        .err(
            ACME_ALL,
            "enable_component",
            json!({"component": "payments"}),
        )
        .await;
    assert_eq!(e["error"], "not_found", "{e}");
    // A blank name is refused by name
    let e = h
        .err(ACME_ALL, "enable_component", json!({"component": " "}))
        .await;
    assert_eq!(e["error"], "invalid_arguments", "{e}");

    // WHEN acme's key re-enables orders
    let enabled = h
        .ok(ACME_ALL, "enable_component", json!({"component": "orders"}))
        .await;
    assert_eq!(
        enabled,
        json!({"component": "orders", "enabled": true, "was_disabled": true})
    );
    // THEN it is audited with the key as actor, and status shows it at once (no stale cache)
    let events = h
        .store
        .health_events(Some("orders"), 5)
        .await
        .expect("events");
    assert_eq!(events[0].kind, HealthEventKind::Enabled);
    assert_eq!(events[0].actor, "key:acme-all");
    let status = h
        .ok(ADMIN, "get_system_status", json!({"include_health": false}))
        .await;
    assert_eq!(names(&status), ["payments"], "{status}");
    // Again: idempotent, says it was not disabled
    let again = h
        .ok(ACME_ALL, "enable_component", json!({"component": "orders"}))
        .await;
    assert_eq!(again["was_disabled"], false);
}

#[tokio::test]
async fn read_only_calls_answered_directly_are_answered_as_rmcp_answers_them() {
    // GIVEN an endpoint with an agent, a component and an improvement to show (no rate
    // limit: both ways count the same calls, and a limit would end the comparison)
    let config = Config::from_lookup(|_| None).expect("config");
    let h = harness_with(
        McpSettings {
            rate_limit_per_minute: 0,
            ..McpSettings::default()
        },
        config,
    );
    let peer = json!({"name": "orders", "url": "https://orders.acme.example",
                      "capabilities": ["orders"], "components": ["orders-api"]});
    h.ok(ACME_ALL, "register_agent", peer).await;
    h.ok(ACME_ALL, "generate_component", refunds()).await;
    let improvement = globex_improvement(&h, "globex-orders-api-20261122T050000Z-5f3a9c1e")
        .await
        .to_string();
    let cases: Vec<(&str, Value)> = vec![
        ("list_agents", json!({})),
        ("list_agents", json!({"tenant_id": "acme"})),
        ("list_agents", json!({"tenant_id": "bad tenant"})),
        ("list_agents", json!({"unknown": 1})),
        ("get_system_status", json!({})),
        ("query_telemetry_insights", json!({"time_range_hours": 2})),
        ("query_telemetry_insights", json!({"time_range_hours": 0})),
        ("get_component", json!({"name": "acme-refunds"})),
        ("get_component", json!({"name": "not a name"})),
        ("list_improvements", json!({"limit": 1})),
        ("list_improvements", json!({"status": "nonsense"})),
        ("get_improvement", json!({"id": improvement})),
        ("get_improvement", json!({"id": "x"})),
    ];
    let read_only: Vec<&str> = cases.iter().map(|(tool, _)| *tool).collect();
    for tool in selfbuild_mcp::tools::ToolName::ALL {
        assert_eq!(
            read_only.contains(&tool.name()),
            tool.spec().read_only,
            "{} is read-only but not compared (or compared but not read-only)",
            tool.name()
        );
    }
    for (tool, arguments) in cases {
        for key in [ADMIN, ACME_READ, GLOBEX] {
            for (version, id) in [
                (None, json!(7)),
                (Some("2025-03-26"), json!("call-1")),
                (Some("2025-06-18"), json!(-3)),
                (Some("2025-11-25"), json!("")),
            ] {
                let mut body = call(tool, arguments.clone());
                body["id"] = id;
                // WHEN it is sent plainly (answered directly) and with an Accept whose
                // parameters only rmcp reads (answered by rmcp)
                let direct = h
                    .raw(key, &body, version, "application/json, text/event-stream")
                    .await;
                let rmcp = h
                    .raw(
                        key,
                        &body,
                        version,
                        "application/json;q=1, text/event-stream;q=0.9",
                    )
                    .await;
                // THEN the answers are the same bytes
                assert_eq!(
                    direct,
                    rmcp,
                    "{tool} {arguments} as {key} ({version:?}): direct {} rmcp {}",
                    String::from_utf8_lossy(&direct.2),
                    String::from_utf8_lossy(&rmcp.2)
                );
                assert_eq!(direct.0, StatusCode::OK);
            }
        }
    }
}

impl Harness {
    /// Status, content type and body bytes of a POST with this `Accept` and version header.
    async fn raw(
        &self,
        key: &str,
        body: &Value,
        version: Option<&str>,
        accept: &str,
    ) -> (StatusCode, Option<String>, Vec<u8>) {
        let mut request = Request::post("/mcp")
            .header("host", "127.0.0.1:8787")
            .header("content-type", "application/json")
            .header("accept", accept)
            .header("authorization", format!("Bearer {key}"));
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, content_type, bytes)
    }
}
