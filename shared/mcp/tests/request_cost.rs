//! What a tool call costs the store (issue 19): a read-only call answers while every store
//! write is held back (so none is on its path) and makes at most one store read; the rate
//! limit is decided in memory and its counts reach the store off the path; the access log
//! is stored once flushed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use selfbuild_core::Config;
use selfbuild_core::apikeys::{KeySet, key_digest_hex};
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::{CycleRecord, CycleStatus};
use selfbuild_core::error::StoreError;
use selfbuild_core::health::{ComponentHealth, HealthEvent, HealthReport};
use selfbuild_core::ids::{CycleId, DedupKey, ImprovementId};
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{
    AccessLog, AccessLogSink, ApprovalStore, AuditLog, ClaimOutcome, Clock, CycleStore, DedupClaim,
    DedupStore, HaltState, HaltSwitch, HealthStore, ImprovementStore, MetricRecord, MetricSink,
    MinerStateStore, Registry, SavedMinerState, StaticKeys, UsageLedger,
};
use selfbuild_core::records::{
    AgentRecord, ComponentRecord, DailyUsage, ImprovementQuery, ImprovementRecord,
    ImprovementStatus, Page, PendingApproval, ProviderHealth, TenantScope, ToolCallEvent,
};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::{SqliteStore, StoreTaskTokens};
use selfbuild_mcp::access_log::BatchedAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings, Shutdown, app_with_shutdown};
use serde_json::{Value, json};
use time::{Date, OffsetDateTime};
use tokio::sync::watch;
use tower::ServiceExt;

const KEY: &str = "cost-key-0123456789";

struct NoMetrics;

impl MetricSink for NoMetrics {
    fn record(&self, _metric: MetricRecord) {}
}

/// The SQLite store behind a gate: every write waits until the gate opens; reads are counted.
struct GatedStore {
    inner: SqliteStore,
    open: watch::Sender<bool>,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl GatedStore {
    async fn write(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

/// Implements a store trait for `GatedStore`: each method a read (counted) or a write
/// (gated) delegated to the SQLite store.
macro_rules! gated {
    ($trait:ident { $($kind:ident $name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* }) => {
        #[async_trait]
        impl $trait for GatedStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$out, StoreError> {
                    gated!(@$kind self);
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
    (@read $self:ident) => { $self.read() };
    (@write $self:ident) => { $self.write().await };
}

gated!(DedupStore {
    write claim(claim: &DedupClaim) -> ClaimOutcome;
    write mark_started(key: &DedupKey, cycle_id: &CycleId, execution_ref: &str) -> ();
    write release(key: &DedupKey, cycle_id: &CycleId) -> bool;
});

gated!(HaltSwitch {
    read halt_state() -> Option<HaltState>;
    write set_halt(halt: &HaltState) -> ();
    write clear_halt() -> bool;
});

gated!(CycleStore {
    write create_cycle(cycle: &CycleRecord) -> bool;
    read get_cycle(id: &CycleId) -> Option<CycleRecord>;
    write finish_cycle(id: &CycleId, status: CycleStatus, at: OffsetDateTime) -> bool;
    read running_cycles(scope: &TenantScope, limit: usize) -> Vec<CycleRecord>;
});

gated!(ImprovementStore {
    write put_improvement(record: &ImprovementRecord) -> ();
    read get_improvement(id: &ImprovementId) -> Option<ImprovementRecord>;
    read list_improvements(query: &ImprovementQuery) -> Page<ImprovementRecord>;
    read improvement_counts(scope: &TenantScope) -> std::collections::BTreeMap<ImprovementStatus, u64>;
});

gated!(UsageLedger {
    write record_llm_usage(at: OffsetDateTime, cost_usd: f64, providers: &[ProviderHealth]) -> ();
    read llm_usage(day: Date) -> DailyUsage;
});

gated!(Registry {
    write register_agent(agent: &AgentRecord) -> ();
    read list_agents(scope: &TenantScope) -> Vec<AgentRecord>;
    write put_component(component: &ComponentRecord) -> ();
    read list_components(scope: &TenantScope) -> Vec<ComponentRecord>;
});

gated!(AccessLog {
    write count_calls(key_id: &str, window_start: OffsetDateTime, calls: u64, expires_at: OffsetDateTime) -> u64;
    write record_tool_call(event: &ToolCallEvent) -> ();
    write record_tool_calls(events: &[ToolCallEvent]) -> ();
    read recent_tool_calls(now: OffsetDateTime, limit: usize) -> Vec<ToolCallEvent>;
});

gated!(ApprovalStore {
    write put_pending(pending: &PendingApproval) -> ();
    read get_pending(improvement_id: &ImprovementId) -> Option<PendingApproval>;
    write add_approver(improvement_id: &ImprovementId, approver: &str) -> Option<PendingApproval>;
    write remove_pending(improvement_id: &ImprovementId) -> bool;
});

gated!(AuditLog {
    write append(event: &AuditEvent) -> ();
    read cycle_events(cycle_id: &CycleId) -> Vec<AuditEvent>;
});

gated!(HealthStore {
    read component_health() -> Vec<ComponentHealth>;
    write put_component_health(ledger: &ComponentHealth) -> ();
    write enable_component(component: &str) -> bool;
    write append_health_event(event: &HealthEvent) -> ();
    read health_events(component: Option<&str>, limit: usize) -> Vec<HealthEvent>;
    write save_health_report(report: &HealthReport) -> ();
    read last_health_report() -> Option<HealthReport>;
});

gated!(MinerStateStore {
    read load_miner_state(scope: &str) -> Option<SavedMinerState>;
    write save_miner_state(scope: &str, body: &str, expected: u64) -> bool;
});

struct Harness {
    app: Router,
    store: Arc<GatedStore>,
    access_log: Arc<BatchedAccessLog>,
    shutdown: Shutdown,
    now: OffsetDateTime,
    _dir: tempfile::TempDir,
}

fn harness(rate_limit_per_minute: u32) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path()).expect("store");
    let store = Arc::new(GatedStore {
        inner: sqlite.clone(),
        open: watch::channel(false).0,
        reads: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let scenario = Scenario::load(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/scenarios/timeouts.json"),
    )
    .expect("scenario");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(scenario.now));
    let fleet = Arc::new(Fleet::new(&scenario, Arc::clone(&clock)).expect("fleet"));
    let access_log = Arc::new(BatchedAccessLog::spawn(store.clone()));
    let keys = KeySet::parse(&json!([
        {"id": "cost", "sha256": key_digest_hex(KEY), "tenant": "*", "scopes": ["read"]}
    ]))
    .expect("keys");
    let (app, shutdown) = app_with_shutdown(McpDeps {
        store: store.clone(),
        access_log: access_log.clone(),
        orchestrator: Arc::new(RecordingOrchestrator::new(
            sqlite.clone(),
            FixedClock(scenario.now),
        )),
        task_tokens: Arc::new(StoreTaskTokens(sqlite.clone())),
        telemetry: fleet.clone(),
        deployer: fleet,
        notifier: Arc::new(sqlite),
        peers: Arc::new(selfbuild_core::ports::NoPeers),
        llm: Arc::new(selfbuild_local::planner::RulePlanner),
        checker: Arc::new(selfbuild_core::ports::NoCodeChecker),
        metrics: Arc::new(NoMetrics),
        keys: Arc::new(StaticKeys(Arc::new(keys))),
        clock,
        ids: Arc::new(OsRandom),
        config: Arc::new(Config::from_lookup(|_| None).expect("config")),
        settings: McpSettings {
            rate_limit_per_minute,
            ..McpSettings::default()
        },
    });
    Harness {
        app,
        store,
        access_log,
        shutdown,
        now: scenario.now,
        _dir: dir,
    }
}

impl Harness {
    /// Calls `tool`; the structured result, or a panic when no answer comes within 10 s.
    async fn call(&self, tool: &str, arguments: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        let request = Request::post("/mcp")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body.to_string()))
            .expect("request");
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let response = self.app.clone().oneshot(request).await.expect("infallible");
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
        })
        .await
        .unwrap_or_else(|_| panic!("{tool} did not answer while store writes were held back"));
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        answer["result"]["structuredContent"].clone()
    }

    fn reads(&self) -> u64 {
        self.store.reads.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_tools_answer_with_every_store_write_held_back() {
    // GIVEN an endpoint with the rate limit on (60 calls, a share of 6 kept in memory) whose
    // store holds every write back
    let h = harness(600);
    let cases = [
        ("list_agents", json!({}), 1),
        ("list_improvements", json!({}), 1),
        // One listing of the tenant's components (here none: not_found).
        ("get_component", json!({"name": "orders-report"}), 1),
        // Its three reads (record, audit trail, pending approval) are made at once.
        ("get_improvement", json!({"id": "c1-1"}), 3),
        (
            "query_telemetry_insights",
            json!({"time_range_hours": 1}),
            0,
        ),
        // The first status call reads everything (halt, running cycles, counts, usage, the
        // last health report, the heal ledgers); later ones the halt switch only.
        ("get_system_status", json!({}), 6),
        ("get_system_status", json!({}), 1),
    ];
    for (tool, arguments, reads) in cases {
        // WHEN a read-only tool is called THEN it answers, within its reads
        let before = h.reads();
        let answer = h.call(tool, arguments).await;
        assert_ne!(answer, Value::Null, "{tool}");
        assert_eq!(h.reads() - before, reads, "{tool}: store reads on its path");
    }
    let status = h.call("get_system_status", json!({})).await;
    assert_eq!(status["halt"]["on"], false);
    assert_eq!(status["age_seconds"], 0.0, "{status}");
    assert!(status["as_of"].is_string(), "{status}");
    assert_eq!(h.store.writes.load(Ordering::SeqCst), 0);

    // AND once the writes may go on, the access log and the counts are stored
    h.store.open.send_replace(true);
    h.shutdown.run().await.expect("shutdown");
    let log = h
        .store
        .inner
        .recent_tool_calls(h.now, 100)
        .await
        .expect("log");
    assert_eq!(log.len(), 8, "{log:?}");
    let window = OffsetDateTime::from_unix_timestamp(
        h.now.unix_timestamp() - h.now.unix_timestamp().rem_euclid(60),
    )
    .expect("window");
    let counted = h
        .store
        .inner
        .count_calls("cost", window, 0, window + time::Duration::hours(1))
        .await
        .expect("count");
    assert_eq!(counted, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_with_its_counts_kept_in_memory() {
    // GIVEN a limit of 20 a minute: a share of 2 calls uncounted by the store
    let h = harness(20);
    h.store.open.send_replace(true);
    let mut outcomes = Vec::new();
    for _ in 0..25 {
        let answer = h.call("list_agents", json!({})).await;
        outcomes.push(
            answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("ok")
                .to_owned(),
        );
    }
    // THEN exactly the limit is admitted, then every call is refused
    let admitted = outcomes.iter().take_while(|o| *o == "ok").count();
    assert_eq!(admitted, 20, "{outcomes:?}");
    assert!(
        outcomes[20..].iter().all(|o| o == "rate_limited"),
        "{outcomes:?}"
    );
    h.shutdown.run().await.expect("shutdown");
    h.access_log.flush().await.expect("flush");
    let logged = h
        .store
        .inner
        .recent_tool_calls(h.now, 100)
        .await
        .expect("log");
    assert_eq!(logged.len(), 25);
}

#[tokio::test]
async fn a_flush_waits_for_every_entry_handed_over() {
    // GIVEN entries handed to the writer while the store holds writes back
    let h = harness(0);
    let event = |n: u32| ToolCallEvent {
        at: h.now,
        key_id: format!("k{n}"),
        tenant_id: None,
        tool: "list_agents".into(),
        outcome: "ok".into(),
        detail: String::new(),
    };
    for n in 0..10 {
        h.access_log.record(event(n));
    }
    // WHEN flushed THEN the flush does not return before they are stored
    let flush = h.access_log.flush();
    tokio::pin!(flush);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut flush)
            .await
            .is_err(),
        "flushed while the store held the writes back"
    );
    h.store.open.send_replace(true);
    flush.await.expect("flush");
    let log = h
        .store
        .inner
        .recent_tool_calls(h.now, 100)
        .await
        .expect("log");
    assert_eq!(log.len(), 10);
}
