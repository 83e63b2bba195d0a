//! Agent telemetry (seed R10.2) on the embedded runner: a registered agent's own latency,
//! published in its namespace beside the simulated fleet, becomes an opportunity on the
//! component of its that spends the most time, naming the agent.

use selfbuild_core::Config;
use selfbuild_core::ids::TenantId;
use selfbuild_core::ports::Registry;
use selfbuild_core::records::AgentRecord;
use selfbuild_local::cycle::{Approvers, run_cycle};
use selfbuild_local::demo::scenario_request;
use selfbuild_local::fleet::Scenario;
use selfbuild_local::store::SqliteStore;
use serde_json::{Value, json};
use time::macros::datetime;

/// Two calm functions of acme (fast, almost no errors); the agent that owns them publishes
/// its request count, errors and latency, which rises from 120 to 400 ms six hours before
/// `now` (the last quarter of the day analysed).
fn scenario() -> Scenario {
    let function = |name: &str, per_minute: u32, work_ms: u32| {
        json!({
            "name": name,
            "tenant": "acme",
            "settings": {"memory_mb": 1024, "timeout_seconds": 10, "reserved_concurrency": null, "environment": {}},
            "workload": {
                "invocations_per_minute": per_minute, "work_ms_at_1024mb": work_ms, "io_ms": 20,
                "duration_jitter": 0.1, "memory_used_mb": 100, "base_error_rate": 0.0,
                "error_messages": []
            }
        })
    };
    let agent = json!({"Agent": "orders"});
    let text = json!({
        "name": "agent-latency",
        "description": "The orders agent's own p99 latency quadruples while its functions stay calm.",
        "now": "2026-11-22T05:00:00Z",
        "seed": 3,
        "functions": [function("orders-worker", 20, 30), function("orders-api", 120, 60)],
        "published_metrics": [
            {"namespace": "Acme/Agents", "metric": "Requests", "dimensions": agent, "value": 200},
            {"namespace": "Acme/Agents", "metric": "Errors", "dimensions": agent, "value": 0},
            {"namespace": "Acme/Agents", "metric": "Latency", "dimensions": agent, "value": 120,
             "changes": [{"at": "2026-11-21T23:00:00Z", "value": 400}]},
            {"namespace": "Acme/Agents", "metric": "Requests", "dimensions": {"Agent": "someone-else"}, "value": 5000}
        ],
        "expect": {}
    });
    Scenario::parse(&text.to_string(), "agent-latency").unwrap()
}

fn orders_agent() -> AgentRecord {
    AgentRecord {
        name: "orders".into(),
        url: "https://orders.acme.example".into(),
        capabilities: vec!["orders".into()],
        mcp_url: None,
        key_secret_id: None,
        components: vec!["orders-worker".into(), "orders-api".into()],
        depends_on: Vec::new(),
        low_traffic_windows: Vec::new(),
        window_tool: None,
        notify_tool: None,
        metrics: Some(serde_json::from_value(json!({"namespace": "Acme/Agents"})).unwrap()),
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        registered_by: "test".into(),
        registered_at: datetime!(2026-11-22 00:00 UTC),
    }
}

async fn analysis_of(store: &SqliteStore) -> Value {
    let scenario = scenario();
    let config = Config::from_lookup(|_| None).unwrap();
    let mut request = scenario_request(&scenario, &config);
    request.dry_run = true;
    let output = run_cycle(
        &scenario,
        &request,
        store,
        &config,
        Box::new(std::io::sink()),
        Approvers::Nobody,
    )
    .await
    .unwrap();
    output["analysis"].clone()
}

#[tokio::test]
async fn an_agents_latency_becomes_an_opportunity_on_its_busiest_component_naming_it() {
    // GIVEN the calm fleet and no agent: nothing to do
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let calm = analysis_of(&store).await;
    assert_eq!(calm["opportunities"], json!([]), "{calm:#}");
    assert!(calm.get("agents").is_none(), "{calm:#}");

    // WHEN the agent that owns both functions is registered with its metrics
    store.register_agent(&orders_agent()).await.unwrap();
    let analysis = analysis_of(&store).await;

    // THEN its latency regression is an opportunity on orders-api (120/min × 80 ms spends
    // more time than orders-worker's 20/min × 50 ms), naming the agent and its metric
    let opportunities = analysis["opportunities"].as_array().unwrap();
    assert_eq!(opportunities.len(), 1, "{analysis:#}");
    let o = &opportunities[0];
    assert_eq!(o["id"], "orders-api:latency_regression", "{o:#}");
    let finding = &o["agents"][0];
    assert_eq!(finding["agent"], "orders");
    assert_eq!(finding["metric"], "Acme/Agents Latency Average");
    let description = finding["description"].as_str().unwrap();
    assert!(
        description.starts_with("agent orders's mean latency in the window's last quarter (ms) was 400 (Acme/Agents Latency Average; threshold 180)"),
        "{description}"
    );
    assert!(
        finding["attribution"]
            .as_str()
            .unwrap()
            .starts_with("orders-api: the largest share of time spent"),
        "{finding}"
    );
    assert_eq!(
        o["evidence"][0]["measure"],
        "agent:orders:recent_mean_duration_ms"
    );
    // and the report says what the agent's metrics showed
    let agent = &analysis["agents"][0];
    assert_eq!(agent["agent"], "orders");
    assert_eq!(agent["requests"], json!(200.0 * 24.0 * 60.0));
    assert_eq!(agent["findings"][0]["component"], "orders-api");
}
