//! `selfbuild health` and `enable-component` on a data directory: a failed cycle is
//! redriven, a stuck one stopped and restarted, heals are counted, the third failed heal
//! disables the component, re-enabling starts it from 0. Fixed clocks only (`--now`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use selfbuild_core::Config;
use selfbuild_core::cycle::{
    CycleMode, CycleRecord, CycleRequest, CycleStatus, TimeWindow, Trigger,
};
use selfbuild_core::health::{HealthEventKind, SELF_HEALING_EXHAUSTED_METRIC, Thresholds};
use selfbuild_core::ids::{ComponentId, CycleId};
use selfbuild_core::ports::{CycleStore, HealthStore};
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
