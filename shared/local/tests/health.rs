//! `selfbuild health` and `enable-component` on a data directory: a failed cycle is
//! redriven, a stuck one stopped and restarted, heals are counted, the third failed heal
//! disables the component, re-enabling starts it from 0; over the timeouts scenario's fleet a
//! failing component's change is rolled back, the component disabled after three failed
//! heals, a cycle on it skipped until it is re-enabled. Fixed clocks only (`--now`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use selfbuild_core::Config;
use selfbuild_core::audit::AuditAction;
use selfbuild_core::cycle::{
    CycleMode, CycleRecord, CycleRequest, CycleStatus, TimeWindow, Trigger,
};
use selfbuild_core::health::{HealthEventKind, SELF_HEALING_EXHAUSTED_METRIC, Thresholds};
use selfbuild_core::ids::{ComponentId, CycleId};
use selfbuild_core::ports::{AuditLog, CycleStore, HealthStore, ImprovementStore};
use selfbuild_core::records::{ImprovementRecord, ImprovementStatus};
use selfbuild_local::store::SqliteStore;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn cycle(id: &str, component: &str, started: OffsetDateTime) -> CycleRecord {
    CycleRecord {
        request: CycleRequest {
            cycle_id: CycleId::parse(id).expect("cycle id"),
            mode: CycleMode::Routine,
            tenant_id: None,
            components: vec![ComponentId::parse(component).expect("component")],
            analysis_window: TimeWindow {
                start: started - Duration::from_secs(3600),
                end: started,
            },
            max_improvements: 1,
            max_concurrency: 1,
            dry_run: false,
            trigger: Trigger::Schedule { rule: None },
            dedup_key: format!("*#{component}"),
            requested_at: started,
        },
        status: CycleStatus::Running,
        execution_ref: format!("local:{id}"),
        started_at: started,
    }
}

/// Runs `selfbuild` at `now` with the default configuration; exit code and JSON answer.
fn selfbuild(data: &Path, now: OffsetDateTime, args: &[&str]) -> (i32, Value) {
    let now = now
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let output = Command::new(env!("CARGO_BIN_EXE_selfbuild"))
        .arg("--data-dir")
        .arg(data)
        .args(["--now", &now, "--output", "json"])
        .args(args)
        .env_remove("MONITOR_WINDOW_SECONDS")
        .env_remove("DEPLOY_DEFER_SECONDS")
        .env_remove("DEPLOY_MAX_DEFER_SECONDS")
        .output()
        .expect("selfbuild runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (output.status.code().unwrap_or(-1), value)
}

fn plan<'a>(report: &'a Value, component: &str) -> &'a Value {
    report["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|p| p["component"] == component)
        .unwrap_or_else(|| panic!("no plan for {component}: {report:#}"))
}

#[test]
fn failed_and_stuck_cycles_are_healed_counted_and_the_third_failed_heal_disables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open(data).unwrap();
    let limit = Thresholds::from_config(&Config::from_lookup(|_| None).unwrap()).max_cycle_age;

    // GIVEN a cycle of `orders` that failed a minute ago, one of `billing` running one
    // second longer than the limit, and one of `search` running exactly the limit.
    block(async {
        let failed = cycle("c-failed", "orders", NOW - Duration::from_secs(600));
        store.create_cycle(&failed).await.unwrap();
        store
            .finish_cycle(
                &failed.request.cycle_id,
                CycleStatus::Failed,
                NOW - Duration::from_secs(60),
            )
            .await
            .unwrap();
        let stuck = cycle("c-stuck", "billing", NOW - limit - Duration::from_secs(1));
        store.create_cycle(&stuck).await.unwrap();
        store
            .create_cycle(&cycle("c-at-limit", "search", NOW - limit))
            .await
            .unwrap();
    });

    // WHEN a pass runs
    let (code, report) = selfbuild(data, NOW, &["health"]);

    // THEN it reports both, redrives one, stops and restarts the other, and exits 1
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["healthy"], false);
    assert_eq!(report["checks"][0]["name"], "executions");
    assert_eq!(report["checks"][0]["status"], "degraded");
    let detail = report["checks"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("c-failed") && detail.contains("c-stuck"),
        "{detail}"
    );
    assert!(!detail.contains("c-at-limit"), "{detail}");
    assert_eq!(plan(&report, "orders")["heals"][0]["action"], "redrive");
    assert_eq!(plan(&report, "billing")["heals"][0]["action"], "restart");
    assert!(
        report["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["succeeded"] == true),
        "{report:#}"
    );
    let restarted = format!("c-stuck-r{}", NOW.unix_timestamp());
    block(async {
        let failed = store
            .get_cycle(&CycleId::parse("c-failed").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.status, CycleStatus::Running, "redriven");
        let stuck = store
            .get_cycle(&CycleId::parse("c-stuck").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stuck.status, CycleStatus::Failed, "stopped");
        let again = store
            .get_cycle(&CycleId::parse(&restarted).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.status, CycleStatus::Running);
        assert_eq!(again.request.components, stuck.request.components);
        let ledger = store.component_health().await.unwrap();
        assert_eq!(ledger.len(), 2, "{ledger:?}");
        assert!(ledger.iter().all(|l| l.heal_pending && l.failed_heals == 0));
        let attempts = store.health_events(None, 10).await.unwrap();
        assert_eq!(attempts.len(), 2);
        assert!(
            attempts
                .iter()
                .all(|e| e.kind == HealthEventKind::HealAttempted)
        );
    });

    // The next pass, five minutes on, after `search` succeeded: the stopped execution is
    // not redriven, nothing new failed, so all is well.
    block(async {
        store
            .finish_cycle(
                &CycleId::parse("c-at-limit").unwrap(),
                CycleStatus::Succeeded,
                NOW + Duration::from_secs(120),
            )
            .await
            .unwrap();
    });
    let mut at = NOW + Duration::from_secs(300);
    let (code, report) = selfbuild(data, at, &["health"]);
    assert_eq!(code, 0, "{report:#}");

    // WHEN `orders` fails again after each of three heals
    let fail_orders = |at: OffsetDateTime| {
        block(async {
            store
                .finish_cycle(
                    &CycleId::parse("c-failed").unwrap(),
                    CycleStatus::Failed,
                    at,
                )
                .await
                .unwrap();
        })
    };
    for expected_failed in 1..=2 {
        fail_orders(at + Duration::from_secs(60));
        at += Duration::from_secs(300);
        let (code, report) = selfbuild(data, at, &["health"]);
        assert_eq!(code, 1);
        let orders = plan(&report, "orders");
        assert_eq!(orders["step"], "heal", "{report:#}");
        assert_eq!(orders["failed_heals"], expected_failed);
        assert!(report["disabled"].as_array().unwrap().is_empty());
    }
    fail_orders(at + Duration::from_secs(60));
    at += Duration::from_secs(300);
    let (code, report) = selfbuild(data, at, &["health"]);

    // THEN the third failed heal disables it: no heal, the metric, a notification
    assert_eq!(code, 1);
    let orders = plan(&report, "orders");
    assert_eq!(orders["step"], "disable", "{report:#}");
    assert_eq!(orders["failed_heals"], 3);
    assert!(orders["heals"].as_array().unwrap().is_empty());
    assert_eq!(report["disabled"][0]["component"], "orders");
    assert_eq!(report["metrics_emitted"][0], SELF_HEALING_EXHAUSTED_METRIC);
    let notes = block(store.notifications()).unwrap();
    assert!(
        notes
            .iter()
            .any(|(kind, detail)| kind == "Component Disabled" && detail["component"] == "orders"),
        "{notes:?}"
    );
    block(async {
        let failed = store
            .get_cycle(&CycleId::parse("c-failed").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            failed.status,
            CycleStatus::Failed,
            "not redriven once disabled"
        );
    });

    // A later failure of a disabled component: left alone, still shown.
    block(async {
        store
            .create_cycle(&cycle("c-later", "orders", at))
            .await
            .unwrap();
        store
            .finish_cycle(
                &CycleId::parse("c-later").unwrap(),
                CycleStatus::Failed,
                at + Duration::from_secs(60),
            )
            .await
            .unwrap();
    });
    at += Duration::from_secs(300);
    let (_, report) = selfbuild(data, at, &["health"]);
    assert_eq!(plan(&report, "orders")["step"], "skip", "{report:#}");
    assert!(
        report["checks"][5]["detail"]
            .as_str()
            .unwrap()
            .contains("orders: disabled")
    );
    let last_pass = at;

    // WHEN an operator re-enables it
    let (code, answer) = selfbuild(
        data,
        at,
        &["enable-component", "orders", "--actor", "ops@example.com"],
    );
    assert_eq!(code, 0, "{answer:#}");
    assert_eq!(answer["was_disabled"], true);
    let events = block(store.health_events(Some("orders"), 1)).unwrap();
    assert_eq!(events[0].kind, HealthEventKind::Enabled);
    assert_eq!(events[0].actor, "ops@example.com");

    // THEN its next failure is healed again, from 0 failed heals
    block(async {
        store
            .create_cycle(&cycle("c-after", "orders", last_pass))
            .await
            .unwrap();
        store
            .finish_cycle(
                &CycleId::parse("c-after").unwrap(),
                CycleStatus::Failed,
                last_pass + Duration::from_secs(60),
            )
            .await
            .unwrap();
    });
    at += Duration::from_secs(300);
    let (_, report) = selfbuild(data, at, &["health"]);
    let orders = plan(&report, "orders");
    assert_eq!(orders["step"], "heal", "{report:#}");
    assert_eq!(orders["failed_heals"], 0);
    assert!(report["disabled"].as_array().unwrap().is_empty());
}

#[test]
fn enabling_a_component_that_was_never_disabled_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (code, answer) = selfbuild(dir.path(), NOW, &["enable-component", "orders"]);
    assert_eq!(code, 0);
    assert_eq!(answer["was_disabled"], false);
}

/// The bundled timeouts scenario: orders-api (acme) fails about 30 % of its invocations.
fn timeouts_scenario() -> String {
    format!(
        "{}/../../events/scenarios/timeouts.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The scenario's time: its fleet has telemetry up to it.
const SCENARIO_NOW: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

/// A promoted improvement of orders-api, last updated (deployed) at `at`.
fn promoted(at: OffsetDateTime) -> ImprovementRecord {
    serde_json::from_value(serde_json::json!({
        "improvement_id": "c0-1", "cycle_id": "c0", "tenant_id": "acme",
        "component": "orders-api", "status": "promoted", "risk": "LOW",
        "change": "timeout 3 s → 10 s",
        "updated_at": at.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339"),
        "item": {
            "cycle_id": "c0", "tenant_id": "acme", "mode": "routine",
            "opportunity": {
                "id": "orders-api:timeouts", "rank": 1, "component": "orders-api",
                "tenant_id": "acme", "kind": "timeouts", "evidence": [],
                "expected_gain": 0.5, "affected_requests": 10.0, "impact_score": 5.0,
                "priority": "high", "current": null, "top_errors": []
            }
        }
    }))
    .expect("an improvement record")
}

/// A failed cycle of `component` that ended at `ended`.
async fn failed_cycle(store: &SqliteStore, id: &str, component: &str, ended: OffsetDateTime) {
    let c = cycle(id, component, ended - Duration::from_secs(120));
    store.create_cycle(&c).await.expect("cycle created");
    store
        .finish_cycle(&c.request.cycle_id, CycleStatus::Failed, ended)
        .await
        .expect("cycle finished");
}

/// An analyze payload for a cycle of orders-api over the ten minutes before `at`.
fn analyze_payload(dir: &Path, id: &str, at: OffsetDateTime) -> std::path::PathBuf {
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    };
    let payload = serde_json::json!({
        "cycle_id": id, "mode": "routine", "tenant_id": "acme",
        "components": ["orders-api"],
        "analysis_window": {"start": rfc(at - Duration::from_secs(600)), "end": rfc(at)},
        "max_improvements": 3, "max_concurrency": 1, "dry_run": false,
        "trigger": {"kind": "schedule", "rule": null},
        "dedup_key": "acme#orders-api", "requested_at": rfc(at)
    });
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, payload.to_string()).expect("payload written");
    path
}

#[test]
fn a_failing_component_is_rolled_back_healed_disabled_skipped_and_enabled_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(&data).unwrap();
    let scenario = timeouts_scenario();
    let health = |at| selfbuild(&data, at, &["health", "--scenario", &scenario]);

    // GIVEN orders-api failing for the whole last hour, one minute after selfbuild's
    // promoted change c0-1, and a cycle of it that failed a minute ago
    let mut at = SCENARIO_NOW;
    block(async {
        store
            .put_improvement(&promoted(at - Duration::from_secs(61 * 60)))
            .await
            .unwrap();
        failed_cycle(
            &store,
            "c-fail-0",
            "orders-api",
            at - Duration::from_secs(60),
        )
        .await;
    });

    // WHEN the first pass runs
    let (code, report) = health(at);
    // THEN it sees the component (over the threshold, after the change), redrives the
    // execution and rolls the change back, through the rollback machinery
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["checks"][5]["name"], "components");
    let components = report["checks"][5]["detail"].as_str().unwrap();
    assert!(
        components.contains("orders-api: error rate") && components.contains("c0-1"),
        "{components}"
    );
    let orders = plan(&report, "orders-api");
    assert_eq!(orders["step"], "heal", "{report:#}");
    let actions: Vec<&str> = orders["heals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["redrive", "roll_back"]);
    let outcomes = report["outcomes"].as_array().unwrap();
    assert!(
        outcomes.iter().all(|o| o["succeeded"] == true),
        "{report:#}"
    );
    assert!(
        outcomes[1]["detail"]
            .as_str()
            .unwrap()
            .starts_with("rolled back c0-1")
    );
    block(async {
        // The embedded redrive: the cycle record runs again (no execution to resume).
        let redriven = store
            .get_cycle(&CycleId::parse("c-fail-0").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(redriven.status, CycleStatus::Running);
        let record = store
            .get_improvement(&"c0-1".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, ImprovementStatus::RolledBack);
        let trail = store
            .cycle_events(&CycleId::parse("c0").unwrap())
            .await
            .unwrap();
        let rolled = trail.last().unwrap();
        assert_eq!(rolled.action, AuditAction::RolledBack);
        assert_eq!(rolled.actor, "selfbuild:health");
        let attempts = store.health_events(Some("orders-api"), 10).await.unwrap();
        assert_eq!(attempts.len(), 2, "one event per heal attempt");
    });

    // WHEN its cycles keep failing, pass after pass
    let mut steps = Vec::new();
    for pass in 1..=3 {
        block(failed_cycle(
            &store,
            &format!("c-fail-{pass}"),
            "orders-api",
            at + Duration::from_secs(60),
        ));
        at += Duration::from_secs(300);
        let (_, report) = health(at);
        let orders = plan(&report, "orders-api");
        steps.push((
            orders["step"].as_str().unwrap().to_owned(),
            orders["failed_heals"].as_u64().unwrap(),
        ));
        if pass == 3 {
            // THEN the third failed heal disables it: metric, notification, ledger
            assert!(
                report["metrics_emitted"]
                    .as_array()
                    .unwrap()
                    .contains(&SELF_HEALING_EXHAUSTED_METRIC.into()),
                "{report:#}"
            );
            assert_eq!(report["disabled"][0]["component"], "orders-api");
        }
    }
    assert_eq!(
        steps,
        [
            ("heal".to_owned(), 1),
            ("heal".to_owned(), 2),
            ("disable".to_owned(), 3)
        ]
    );
    block(async {
        let ledger = store.component_health().await.unwrap();
        let orders = ledger.iter().find(|l| l.component == "orders-api").unwrap();
        assert_eq!(orders.disabled.as_ref().unwrap().since, at);
        let notes = store.notifications().await.unwrap();
        let (kind, detail) = notes.last().unwrap();
        assert_eq!(kind, "Component Disabled");
        assert_eq!(detail["component"], "orders-api");
    });

    // WHEN a cycle on orders-api analyses
    let payload = analyze_payload(dir.path(), "c-next", at);
    let payload = payload.to_str().unwrap();
    let analyze = |at| {
        selfbuild(
            &data,
            at,
            &["invoke", "analyze", payload, "--scenario", &scenario],
        )
    };
    let (code, analysis) = analyze(at);
    // THEN it ends without a change, audited with the reason
    assert_eq!(code, 0, "{analysis:#}");
    assert_eq!(analysis["has_opportunities"], false);
    assert_eq!(analysis["skipped"][0]["component"], "orders-api");
    let events = block(store.cycle_events(&CycleId::parse("c-next").unwrap())).unwrap();
    assert_eq!(events[0].action, AuditAction::ComponentSkipped);
    assert!(
        events[0]
            .detail
            .contains("selfbuild enable-component orders-api"),
        "{}",
        events[0].detail
    );

    // WHEN an operator re-enables it, the next cycle runs and finds the timeouts again
    let (code, answer) = selfbuild(&data, at, &["enable-component", "orders-api"]);
    assert_eq!((code, answer["was_disabled"].clone()), (0, true.into()));
    let (code, analysis) = analyze(at);
    assert_eq!(code, 0, "{analysis:#}");
    assert!(analysis.get("skipped").is_none(), "{analysis:#}");
    assert_eq!(analysis["has_opportunities"], true, "{analysis:#}");
    assert_eq!(analysis["opportunities"][0]["component"], "orders-api");
}

#[test]
fn an_alarm_on_a_disabled_component_starts_no_cycle_and_says_why() {
    // GIVEN orders-api disabled by the health pass
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    block(
        store.put_component_health(&selfbuild_core::health::ComponentHealth {
            component: "orders-api".into(),
            failed_heals: 3,
            heal_pending: false,
            disabled: Some(selfbuild_core::health::Disabled {
                reason: "3 failed heals (limit 3)".into(),
                since: SCENARIO_NOW,
            }),
        }),
    )
    .unwrap();
    // WHEN its alarm reaches intake (the embedded runner)
    let event = format!(
        "{}/../../events/alarm-metric.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let scenario = timeouts_scenario();
    let (code, summary) = selfbuild(
        dir.path(),
        SCENARIO_NOW,
        &[
            "--quiet",
            "cycle",
            "--event",
            &event,
            "--scenario",
            &scenario,
        ],
    );
    // THEN intake starts nothing and says which component is disabled and how to re-enable it
    assert_eq!(code, 0, "{summary:#}");
    assert_eq!(summary["decision"], "component_disabled", "{summary:#}");
    assert_eq!(summary["cycle_id"], Value::Null);
    assert!(
        summary["reason"]
            .as_str()
            .unwrap()
            .contains("selfbuild enable-component orders-api"),
        "{summary:#}"
    );
}

#[test]
fn the_rollback_heal_tells_the_agents_depending_on_the_components_owner() {
    use selfbuild_core::ports::Registry;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(&data).unwrap();
    let scenario = timeouts_scenario();

    // GIVEN orders-api failing since one minute after selfbuild's promoted change c0-1, the
    // agent owning it, and billing depending on that agent (its MCP URL answers nothing)
    block(async {
        let deployed = SCENARIO_NOW - Duration::from_secs(61 * 60);
        let mut record = promoted(deployed);
        // The fleet is built fresh for each pass: the deployment names what it runs now, so
        // the heal has a baseline to restore.
        let fleet = selfbuild_local::fleet::Fleet::new(
            &selfbuild_local::fleet::Scenario::load(timeouts_scenario()).unwrap(),
            std::sync::Arc::new(selfbuild_core::clock::FixedClock(deployed)),
        )
        .unwrap();
        let orders = ComponentId::parse("orders-api").unwrap();
        let baseline = selfbuild_core::ports::Deployer::function_state(&fleet, &orders)
            .await
            .unwrap();
        record.item.deploy = Some(selfbuild_core::improvement::DeployOutcome {
            status: selfbuild_core::improvement::DeployStatus::Deployed,
            deployment: Some(selfbuild_core::deployment::CanaryDeployment {
                improvement_id: record.improvement_id.clone(),
                settings: baseline.settings.clone(),
                code: None,
                canary_version: baseline.stable_version.clone(),
                weight: 1.0,
                deployed_at: deployed,
                baseline,
            }),
            wait_until: None,
            reason: "promoted".into(),
            monitor_interval_seconds: 300,
            deferred_since: None,
            deferrals: 0,
        });
        store.put_improvement(&record).await.unwrap();
        for agent in [
            serde_json::json!({"name": "orders", "components": ["orders-api"]}),
            serde_json::json!({"name": "billing", "depends_on": ["orders"],
                "mcp_url": "http://127.0.0.1:9/mcp"}),
        ] {
            let mut agent = agent;
            agent["url"] = "https://agents.acme.example".into();
            agent["capabilities"] = serde_json::json!(["x"]);
            agent["tenant_id"] = "acme".into();
            agent["registered_by"] = "k".into();
            agent["registered_at"] = "2026-11-01T00:00:00Z".into();
            let agent = serde_json::from_value(agent).expect("an agent record");
            store.register_agent(&agent).await.unwrap();
        }
    });

    // WHEN a pass rolls the change back
    let (_, report) = selfbuild(&data, SCENARIO_NOW, &["health", "--scenario", &scenario]);
    let orders = plan(&report, "orders-api");
    assert_eq!(orders["heals"][0]["action"], "roll_back", "{report:#}");

    // THEN billing was called, and the delivery (failed: nothing answers) is audited as the
    // health pass's, with the notice
    block(async {
        let trail = store
            .cycle_events(&CycleId::parse("c0").unwrap())
            .await
            .unwrap();
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["rolled_back", "agent_notification_failed"],
            "{trail:#?}"
        );
        assert!(
            trail[0].detail.ends_with("baseline restored: true"),
            "{}",
            trail[0].detail
        );
        let delivery = &trail[1];
        assert_eq!(delivery.actor, "selfbuild:health");
        let after = delivery.after.as_ref().unwrap();
        assert_eq!(after["agent"], "billing");
        assert_eq!(after["tool"], "notify_dependency_changed");
        assert_eq!(after["notice"]["event"], "rolled_back");
        assert_eq!(after["notice"]["changed_agent"], "orders");
        assert!(
            after["error"].as_str().unwrap().contains("billing"),
            "{after}"
        );
    });
}
