//! Agents as peers (seed R10) on the embedded runner, against real MCP servers from the
//! official Python SDK: the owner's deployment window honoured, dependents notified, a down
//! agent retried and audited without touching the cycle.

use std::sync::Arc;

use selfbuild_core::Config;
use selfbuild_core::agents::PeerTarget;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::ids::{CycleId, TenantId};
use selfbuild_core::ports::{AgentPeers, AuditLog, NoPeerKeys, PeerError, Registry};
use selfbuild_core::records::AgentRecord;
use selfbuild_local::cycle::{Approvers, run_cycle};
use selfbuild_local::demo::scenario_request;
use selfbuild_local::fleet::Scenario;
use selfbuild_local::store::SqliteStore;
use selfbuild_peers::{PeerSettings, RmcpPeers};
use selfbuild_tests::events::events_dir;
use selfbuild_tests::peer_agent::PeerAgent;
use serde_json::Value;
use time::macros::datetime;

fn agent(name: &str, mcp_url: &str) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        url: format!("https://{name}.example"),
        capabilities: vec!["orders".into()],
        mcp_url: Some(mcp_url.into()),
        key_secret_id: None,
        components: Vec::new(),
        depends_on: Vec::new(),
        low_traffic_windows: Vec::new(),
        window_tool: None,
        notify_tool: None,
        metrics: None,
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        registered_by: "test".into(),
        registered_at: datetime!(2026-11-22 00:00 UTC),
    }
}

/// A loopback URL nobody listens on.
fn down_url() -> String {
    format!(
        "http://127.0.0.1:{}/mcp",
        selfbuild_tests::moto::free_port()
    )
}

fn events_of<'a>(events: &'a [AuditEvent], action: &str) -> Vec<&'a AuditEvent> {
    events
        .iter()
        .filter(|e| e.action.as_str() == action)
        .collect()
}

#[tokio::test]
async fn the_owner_defers_the_deploy_and_dependents_hear_of_it_while_a_down_one_is_audited() {
    // GIVEN orders owns orders-api and says "not now" once; billing (behind a key) and
    // ledger (down) depend on orders
    let owner = PeerAgent::start(None, &["later"]);
    let billing = PeerAgent::start(Some("billing-key"), &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let keys = dir.path().join("agent-keys.json");
    std::fs::write(&keys, r#"{"agents/billing": {"api_key": "billing-key"}}"#).unwrap();
    let peers = [
        AgentRecord {
            components: vec!["orders-api".into()],
            ..agent("orders", &owner.mcp_url)
        },
        AgentRecord {
            key_secret_id: Some("agents/billing".into()),
            depends_on: vec!["orders".into()],
            ..agent("billing", &billing.mcp_url)
        },
        AgentRecord {
            depends_on: vec!["orders".into()],
            ..agent("ledger", &down_url())
        },
    ];
    for a in &peers {
        store.register_agent(a).await.unwrap();
    }
    let path = events_dir().join("scenarios/timeouts.json");
    let scenario = Scenario::parse(&std::fs::read_to_string(path).unwrap(), "timeouts").unwrap();
    let mut config = Config::from_lookup(|_| None).unwrap();
    config.autonomous_improvements = true;
    config.agent_keys_file = Some(keys.display().to_string());
    let request = scenario_request(&scenario, &config);

    // WHEN the cycle runs on the embedded runner (virtual time)
    let output = run_cycle(
        &scenario,
        &request,
        &store,
        &config,
        Box::new(std::io::sink()),
        Approvers::for_scenario(&scenario).unwrap(),
    )
    .await
    .unwrap();

    // THEN the deploy waited for the owner, who was asked again after the wait it named
    let summary = &output["summary"]["improvements"][0];
    assert_eq!(summary["outcome"], "promoted", "{output:#}");
    let cycle = CycleId::parse(output["cycle_id"].as_str().unwrap()).unwrap();
    let events = store.cycle_events(&cycle).await.unwrap();
    let deferred = events_of(&events, "deploy_deferred");
    assert_eq!(deferred.len(), 1, "{events:#?}");
    assert!(
        deferred[0]
            .detail
            .starts_with("agent orders said not now: \"batch job running\"; asking again in 600 s"),
        "{}",
        deferred[0].detail
    );
    let deployed = events_of(&events, "deployed");
    assert_eq!(
        (deployed[0].at - deferred[0].at).whole_seconds(),
        600,
        "the deploy ran when the owner said, in virtual time"
    );
    assert!(
        deployed[0]
            .detail
            .starts_with("agent orders said deploy now"),
        "{}",
        deployed[0].detail
    );
    let asked: Vec<Value> = owner
        .calls()
        .into_iter()
        .map(|c| c["tool"].clone())
        .collect();
    assert_eq!(
        asked,
        ["request_deployment_window", "request_deployment_window"]
    );
    assert_eq!(owner.calls()[0]["arguments"]["component"], "orders-api");

    // AND billing heard of the deploy and the promotion, with the documented payload
    let heard = billing.calls();
    let heard_events: Vec<&Value> = heard.iter().map(|c| &c["arguments"]["event"]).collect();
    assert_eq!(heard_events, ["deployed", "promoted"], "{heard:#?}");
    let notice = &heard[1]["arguments"];
    assert_eq!(notice["changed_agent"], "orders");
    assert_eq!(notice["component"], "orders-api");
    assert_eq!(notice["tenant_id"], "acme");
    assert_eq!(notice["improvement_id"], summary["improvement_id"]);

    // AND ledger, down, was tried three times each time, audited, and changed nothing
    let failed = events_of(&events, "agent_notification_failed");
    assert_eq!(failed.len(), 2, "{events:#?}");
    for event in &failed {
        let after = event.after.as_ref().unwrap();
        assert_eq!(after["agent"], "ledger");
        assert_eq!(after["attempts"], 3);
        assert!(
            after["error"]
                .as_str()
                .unwrap()
                .contains("agent ledger unreachable"),
            "{after}"
        );
    }
    let notified: Vec<&Value> = events_of(&events, "agent_notified")
        .iter()
        .map(|e| &e.after.as_ref().unwrap()["agent"])
        .collect();
    assert_eq!(notified, ["billing", "billing"]);
}

#[tokio::test]
async fn an_agent_is_pinged_and_a_wrong_key_or_a_down_agent_is_an_error() {
    let agent = PeerAgent::start(Some("k1"), &[]);
    let keys: Arc<dyn selfbuild_core::ports::PeerKeys> = Arc::new(NoPeerKeys);
    let peers = RmcpPeers::new(keys, PeerSettings::default()).unwrap();
    let open = PeerTarget {
        name: "a".into(),
        mcp_url: agent.mcp_url.clone(),
        key_secret_id: None,
    };
    // Without its key the agent refuses: unreachable as far as selfbuild can tell.
    assert!(matches!(
        peers.ping(&open).await,
        Err(PeerError::Unreachable { .. })
    ));
    // A key that cannot be read is said as such, and never tried.
    let keyed = PeerTarget {
        key_secret_id: Some("agents/a".into()),
        ..open.clone()
    };
    let Err(PeerError::Key { message, .. }) = peers.ping(&keyed).await else {
        panic!("the missing key was not reported")
    };
    assert!(message.contains("agents/a"), "{message}");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), r#"{"agents/a": {"api_key": "k1"}}"#).unwrap();
    let keys = selfbuild_local::peers::FilePeerKeys::read(file.path()).unwrap();
    let peers = RmcpPeers::new(Arc::new(keys), PeerSettings::default()).unwrap();
    peers.ping(&keyed).await.unwrap();
    let down = PeerTarget {
        name: "down".into(),
        mcp_url: down_url(),
        key_secret_id: None,
    };
    assert!(matches!(
        peers.ping(&down).await,
        Err(PeerError::Unreachable { .. })
    ));
}

#[tokio::test]
async fn the_health_pass_pings_each_agent_and_reports_the_one_that_does_not_answer() {
    use selfbuild_core::health::{CheckName, CheckStatus};
    let up = PeerAgent::start(None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .register_agent(&agent("orders", &up.mcp_url))
        .await
        .unwrap();
    store
        .register_agent(&agent("ledger", &down_url()))
        .await
        .unwrap();
    let clock: Arc<dyn selfbuild_core::ports::Clock> = Arc::new(selfbuild_core::clock::FixedClock(
        datetime!(2026-11-22 05:00 UTC),
    ));
    let config = Config::from_lookup(|_| None).unwrap();
    let (report, _) = selfbuild_local::health::health_pass(&store, clock, &config, None).await;
    let components = report
        .checks
        .iter()
        .find(|c| c.name == CheckName::Components)
        .unwrap();
    assert_eq!(components.status, CheckStatus::Degraded, "{components:?}");
    assert_eq!(components.detail, "agent:acme/ledger: not found");
}
