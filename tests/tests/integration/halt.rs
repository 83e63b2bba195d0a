//! The emergency stop reaches what is in flight (SPEC R14, issue 12): cycles on the embedded
//! runner with a scenario's operator setting the halt switch at a virtual time, and the CLI.

use std::io::Write;
use std::sync::{Arc, Mutex};

use clap::Parser;
use selfbuild_core::Config;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::deployment::FunctionState;
use selfbuild_core::ids::{CycleId, ImprovementId};
use selfbuild_core::ports::{ApprovalStore, AuditLog, ImprovementStore};
use selfbuild_core::records::PendingApproval;
use selfbuild_local::cli::{Cli, execute};
use selfbuild_local::cycle::{Approvers, run_cycle};
use selfbuild_local::demo::scenario_request;
use selfbuild_local::fleet::Scenario;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::events_dir;
use selfbuild_tests::improvement_id;
use serde_json::{Value, json};

/// Progress written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn scenario(file: &str) -> Value {
    let path = events_dir().join("scenarios").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The demo's configuration (autonomy on) with `vars` set as environment variables would be.
fn config(vars: &[(&str, &str)]) -> Config {
    let mut config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    config.autonomous_improvements = true;
    config
}

/// What a cycle left: its output, printed progress, audit trail and store.
struct Run {
    output: Value,
    progress: String,
    events: Vec<AuditEvent>,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Run {
    fn outcome(&self, item: usize) -> &str {
        self.output["summary"]["improvements"][item]["outcome"]
            .as_str()
            .unwrap_or("-")
    }

    fn actions(&self, improvement: &ImprovementId) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.improvement_id.as_ref() == Some(improvement))
            .map(|e| e.action.as_str())
            .collect()
    }

    fn event(&self, action: &str) -> &AuditEvent {
        self.events
            .iter()
            .find(|e| e.action.as_str() == action)
            .unwrap_or_else(|| panic!("no {action} event in {:#?}", self.events))
    }

    fn improvement_id(&self, item: usize) -> ImprovementId {
        self.output["summary"]["improvements"][item]["improvement_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Runs the scenario's routine cycle as `selfbuild demo` would, with `config`.
async fn run(scenario: Value, config: &Config) -> Run {
    let scenario = Scenario::parse(&scenario.to_string(), "test scenario").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let approvers = Approvers::for_scenario(&scenario).unwrap();
    let request = scenario_request(&scenario, config);
    let progress = Captured::default();
    let output = run_cycle(
        &scenario,
        &request,
        &store,
        config,
        Box::new(progress.clone()),
        approvers,
    )
    .await
    .unwrap();
    let events = store
        .cycle_events(&CycleId::parse(output["cycle_id"].as_str().unwrap()).unwrap())
        .await
        .unwrap();
    let progress = String::from_utf8(progress.0.lock().unwrap().clone()).unwrap();
    Run {
        output,
        progress,
        events,
        store,
        _dir: dir,
    }
}

/// orders-api's canary is deployed at T+0 and looked at every 5 minutes; the operator stops
/// everything between two looks.
fn halted_while_watched() -> Value {
    let mut s = scenario("timeouts.json");
    s["halt"] = json!({"after_seconds": 750, "actor": "oncall", "reason": "incident 42"});
    s
}

fn state(value: Option<&Value>) -> FunctionState {
    serde_json::from_value(value.cloned().expect("a function state")).unwrap()
}

#[tokio::test]
async fn a_halt_while_a_canary_is_watched_rolls_it_back_to_stable() {
    let run = run(halted_while_watched(), &config(&[])).await;
    assert_eq!(run.outcome(0), "rolled_back", "{}", run.progress);
    let id = run.improvement_id(0);
    let actions = run.actions(&id);
    assert!(!actions.contains(&"promoted"), "{actions:?}");

    // The audit names who halted and why, and what the halt found.
    let halted = run.event("halted_in_flight");
    assert!(
        halted.detail.contains("oncall: incident 42"),
        "{}",
        halted.detail
    );
    assert!(halted.detail.contains("roll"), "{}", halted.detail);
    let found = state(halted.before.as_ref());
    assert!(found.canary.is_some(), "{found:?}");

    // Stable is back exactly: the baseline's settings, the alias at 100 % on version 1.
    let deployed = run.event("deployed");
    let baseline = state(deployed.before.as_ref());
    let rolled_back = run.event("rolled_back");
    assert!(
        rolled_back.detail.contains("incident 42"),
        "{}",
        rolled_back.detail
    );
    let restored = state(rolled_back.after.as_ref());
    assert_eq!(restored, baseline);
    assert_eq!(restored.canary, None);
    assert_eq!(restored.stable_version, "1");
    let scenario = Scenario::parse(&halted_while_watched().to_string(), "s").unwrap();
    assert_eq!(restored.settings, scenario.functions[0].settings);

    // The look after the halt rolled back; no look read telemetry afterwards. (Each look's
    // report line, `↳ …`, is left out.)
    let states: String = run
        .progress
        .lines()
        .filter(|l| !l.trim_start().starts_with('↳'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        states
            .contains("T+00:15:00 MonitorCanary [item 1]\n    T+00:15:00 IsDegraded [item 1]\n    T+00:15:00 RollbackChange [item 1]"),
        "{}",
        run.progress
    );
    let record = run.store.get_improvement(&id).await.unwrap().unwrap();
    assert_eq!(record.status.as_str(), "rolled_back");
}

#[tokio::test]
async fn with_halt_in_flight_freeze_the_split_stays_and_nothing_is_promoted() {
    let run = run(
        halted_while_watched(),
        &config(&[("HALT_IN_FLIGHT", "freeze")]),
    )
    .await;
    assert_eq!(run.outcome(0), "frozen", "{}", run.progress);
    let id = run.improvement_id(0);
    let actions = run.actions(&id);
    assert!(!actions.contains(&"promoted"), "{actions:?}");
    assert!(!actions.contains(&"rolled_back"), "{actions:?}");
    let frozen = run.event("halted_in_flight");
    assert!(
        frozen.detail.contains("oncall: incident 42"),
        "{}",
        frozen.detail
    );
    assert!(frozen.detail.contains("freeze"), "{}", frozen.detail);
    // The canary keeps its 10 % beside version 1.
    let split = state(frozen.after.as_ref());
    assert_eq!(split.stable_version, "1");
    assert_eq!(split.canary, Some(("2".to_owned(), 0.10)));
    assert!(
        run.progress.contains("T+00:15:00 CanaryFrozen [item 1]"),
        "{}",
        run.progress
    );
    let record = run.store.get_improvement(&id).await.unwrap().unwrap();
    assert_eq!(record.status.as_str(), "frozen");
}

#[tokio::test]
async fn a_halt_reaches_the_maps_later_items_before_they_generate_anything() {
    // Two functions improved one after the other; the halt lands while the first is watched.
    let mut s = halted_while_watched();
    let mut worker = s["functions"][0].clone();
    worker["name"] = json!("orders-worker");
    worker["workload"]["invocations_per_minute"] = json!(60);
    s["functions"].as_array_mut().unwrap().push(worker);
    let run = run(s, &config(&[("MAX_CONCURRENT_IMPROVEMENTS", "1")])).await;
    assert_eq!(run.outcome(0), "rolled_back", "{}", run.progress);
    assert_eq!(run.outcome(1), "halted", "{}", run.progress);
    let later = run.improvement_id(1);
    // Stopped before the LLM was asked: nothing generated, validated or deployed.
    assert_eq!(run.actions(&later), ["generate_halted"], "{}", run.progress);
    let halted = run
        .events
        .iter()
        .find(|e| e.improvement_id.as_ref() == Some(&later))
        .unwrap();
    assert!(
        halted.detail.contains("oncall: incident 42"),
        "{}",
        halted.detail
    );
    assert!(
        run.output["summary"]["improvements"][1]["change"].is_null(),
        "{}",
        run.output["summary"]
    );
}

#[tokio::test]
async fn an_approval_after_the_halt_is_refused_and_nothing_deploys() {
    let mut s = scenario("throttling-needs-approval.json");
    s["approval"] = json!({"actor": "oncall@globex.example", "after_seconds": 1800});
    s["halt"] = json!({"after_seconds": 900, "actor": "sre", "reason": "payments incident"});
    let run = run(s, &config(&[])).await;
    let id = run.improvement_id(0);
    let actions = run.actions(&id);
    assert!(!actions.contains(&"approved"), "{actions:?}");
    assert!(!actions.contains(&"deployed"), "{actions:?}");
    assert_eq!(run.outcome(0), "approval_timed_out", "{}", run.progress);
    assert!(
        run.progress.contains(
            "the scenario's approver oncall@globex.example could not answer: the halt switch is on (sre: payments incident)"
        ),
        "{}",
        run.progress
    );
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> Cli {
    let mut argv = vec!["selfbuild", "--data-dir", data_dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    Cli::parse_from(argv)
}

#[tokio::test]
async fn the_cli_refuses_an_approval_while_halted_but_takes_a_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let pending = |id: &str| PendingApproval {
        improvement_id: id.parse().unwrap(),
        cycle_id: CycleId::parse("c1").unwrap(),
        tenant_id: None,
        task_token: format!("token-{id}"),
        change: "orders-api: timeout 3→9 s".into(),
        risk: "HIGH".into(),
        approvals_required: 1,
        approvers: vec![],
        requested_at: time::macros::datetime!(2026-11-22 05:00 UTC),
    };
    store.put_pending(&pending("c1-1")).await.unwrap();
    store.put_pending(&pending("c1-2")).await.unwrap();
    execute(cli(
        dir.path(),
        &["halt", "--reason", "incident 42", "--actor", "ops"],
    ))
    .await
    .unwrap();

    let refused = execute(cli(dir.path(), &["approve", "c1-1", "--actor", "alice"]))
        .await
        .unwrap_err();
    assert_eq!(refused.error_type, "Halted");
    assert!(
        refused.message.contains("ops: incident 42") && refused.message.contains("resume"),
        "{}",
        refused.message
    );
    // Still waiting, with nobody's approval: after `resume` it can be approved.
    let still = store
        .get_pending(&improvement_id("c1-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(still.approvers.is_empty());

    let rejected = execute(cli(dir.path(), &["reject", "c1-2", "--actor", "alice"]))
        .await
        .unwrap();
    assert_eq!(rejected["status"], "rejected");

    execute(cli(dir.path(), &["resume"])).await.unwrap();
    let approved = execute(cli(dir.path(), &["approve", "c1-1", "--actor", "alice"]))
        .await
        .unwrap();
    assert_eq!(approved["status"], "approved");
}
