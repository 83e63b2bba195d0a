//! The offline main job: every bundled scenario as a full cycle on the embedded adapters
//! (the real ASL definition on the embedded interpreter, the fleet model, SQLite).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use selfbuild_core::ids::CycleId;
use selfbuild_core::ports::{AuditLog, ImprovementStore};
use selfbuild_core::records::{ImprovementQuery, TenantScope};
use selfbuild_local::demo::{
    DemoOptions, run_scenario, safety_table, scenario_files, summary_table,
};
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::events_dir;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_ends_as_its_file_expects() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        data_dir: dir.path().to_path_buf(),
        seed_offset: 0,
    };
    let mut rows = Vec::new();
    for file in scenario_files(&events_dir().join("scenarios")).unwrap() {
        let row = run_scenario(&file, &options, Box::new(std::io::sink()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        rows.push(row);
    }
    assert!(rows.len() >= 7, "at least the seven bundled scenarios");
    assert!(rows.iter().all(|r| r.passed), "\n{}", summary_table(&rows));

    // Every transition left an audit event, and deploys, rollbacks and reviews were announced.
    for row in &rows {
        let store = SqliteStore::open(&dir.path().join(&row.scenario)).unwrap();
        let cycle = CycleId::parse(&row.cycle_id).unwrap();
        let actions: Vec<String> = store
            .cycle_events(&cycle)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action.as_str().to_owned())
            .collect();
        let kinds: Vec<String> = store
            .notifications()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            actions.first().map(String::as_str),
            Some("validated"),
            "{}: {actions:?}",
            row.scenario
        );
        match row.outcome.as_str() {
            // A code patch selfbuild does not ship: stored for review, announced, never deployed.
            "held_for_review" => {
                assert_eq!(
                    actions,
                    ["validated", "held_for_review"],
                    "{}",
                    row.scenario
                );
                assert!(
                    kinds.contains(&"Code Patch Ready for Review".to_owned()),
                    "{}: {kinds:?}",
                    row.scenario
                );
                continue;
            }
            // Blocked by validation: nothing else happened.
            "rejected" => {
                assert_eq!(actions, ["validated"], "{}", row.scenario);
                assert!(!row.findings.is_empty(), "{}", row.scenario);
                continue;
            }
            _ => {}
        }
        assert!(
            actions.contains(&"deployed".to_owned()),
            "{}: {actions:?}",
            row.scenario
        );
        let last = if row.outcome == "promoted" {
            "promoted"
        } else {
            "rolled_back"
        };
        assert_eq!(
            actions.last().map(String::as_str),
            Some(last),
            "{}",
            row.scenario
        );
        if row.decision == "needs_approval" {
            assert!(
                actions.contains(&"approved".to_owned()),
                "{}: {actions:?}",
                row.scenario
            );
        }
        assert!(
            kinds.contains(&"Improvement Deployed".to_owned()),
            "{kinds:?}"
        );
    }
}

/// The safety sweep: every scenario in `events/scenarios/safety` on five seeds ends as its
/// file says a safe system must (degrading canaries rolled back within their exposure
/// bound, nothing unsafe deployed, clear improvements promoted, no-op changes never rolled
/// back), and inconclusive canaries are recorded as such, with stable restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_safety_scenario_holds_on_five_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let files = scenario_files(&events_dir().join("scenarios/safety")).unwrap();
    assert!(files.len() >= 15, "at least 15 safety scenarios");
    let mut rows = Vec::new();
    for file in &files {
        for seed_offset in 0..5 {
            let options = DemoOptions {
                data_dir: dir.path().to_path_buf(),
                seed_offset,
            };
            let row = run_scenario(file, &options, Box::new(std::io::sink()))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            rows.push(row);
        }
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.failures
                .iter()
                .map(move |f| format!("{} seed {}: {f}", r.scenario, r.seed))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{}\n{}\n{}",
        failures.join("\n"),
        summary_table(&rows),
        safety_table(&rows)
    );
    for group in [
        "must_roll_back",
        "must_not_deploy",
        "must_promote",
        "no_change",
    ] {
        assert!(
            rows.iter()
                .filter(|r| r.group.map(|g| g.as_str()) == Some(group))
                .count()
                >= 15,
            "{group}: at least three scenarios on five seeds"
        );
    }
    // An inconclusive end is recorded apart from a rollback.
    let inconclusive = rows
        .iter()
        .find(|r| r.outcome == "inconclusive")
        .expect("one inconclusive run");
    let seeded = dir
        .path()
        .join(format!("{}-s{}", inconclusive.scenario, inconclusive.seed));
    let data = if seeded.exists() {
        seeded
    } else {
        dir.path().join(&inconclusive.scenario)
    };
    let store = SqliteStore::open(&data).unwrap();
    let actions: Vec<String> = store
        .cycle_events(&CycleId::parse(&inconclusive.cycle_id).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action.as_str().to_owned())
        .collect();
    assert_eq!(
        actions.last().map(String::as_str),
        Some("inconclusive"),
        "{actions:?}"
    );
}

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

/// Everything one run of a scenario leaves, as text: its summary row, the progress it
/// printed, its audit trail and its improvement records (monitor verdicts included).
async fn run_once(file: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        data_dir: dir.path().to_path_buf(),
        seed_offset: 0,
    };
    let progress = Captured::default();
    let row = run_scenario(file, &options, Box::new(progress.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let store = SqliteStore::open(&dir.path().join(&row.scenario)).unwrap();
    let events = store
        .cycle_events(&CycleId::parse(&row.cycle_id).unwrap())
        .await
        .unwrap();
    let improvements = store
        .list_improvements(&ImprovementQuery {
            scope: TenantScope::All,
            status: None,
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap()
        .items;
    let progress = String::from_utf8(progress.0.lock().unwrap().clone()).unwrap();
    format!(
        "{row:?}\n{progress}\n{}\n{}",
        serde_json::to_string_pretty(&events).unwrap(),
        serde_json::to_string_pretty(&improvements).unwrap()
    )
}

/// Two functions of one tenant improved side by side (two Map items at once), approved by
/// the scenario: concurrent iterations must interleave the same way on every run.
fn two_functions(dir: &Path) -> std::path::PathBuf {
    let scenarios = events_dir().join("scenarios");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(scenarios.join(name)).unwrap()).unwrap()
    };
    let mut scenario = read("timeouts.json");
    let mut payments = read("throttling-needs-approval.json")["functions"][0].clone();
    payments["tenant"] = json!("acme");
    scenario["name"] = json!("two-functions");
    scenario["functions"].as_array_mut().unwrap().push(payments);
    scenario["approval"] = json!({"actor": "oncall@acme.example", "after_seconds": 600});
    let file = dir.join("two-functions.json");
    std::fs::write(&file, scenario.to_string()).unwrap();
    file
}

/// An operator's emergency stop while the canary is watched: the halt, too, must land at
/// the same point of every run.
fn halted(dir: &Path) -> std::path::PathBuf {
    let path = events_dir().join("scenarios").join("timeouts.json");
    let mut scenario: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    scenario["name"] = json!("halted-while-watched");
    scenario["halt"] = json!({"after_seconds": 750, "actor": "oncall", "reason": "incident 42"});
    scenario["expect"] = json!({"outcome": "rolled_back"});
    let file = dir.join("halted.json");
    std::fs::write(&file, scenario.to_string()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_gives_the_same_timeline_every_time_even_on_a_loaded_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = scenario_files(&events_dir().join("scenarios")).unwrap();
    files.push(halted(dir.path()));
    files.push(two_functions(dir.path()));
    let quiet = {
        let mut runs = Vec::new();
        for file in &files {
            runs.push(run_once(file).await);
        }
        runs
    };
    // The same again while two threads burn both cores: machine load must move nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut loaded = Vec::new();
    for file in &files {
        loaded.push(run_once(file).await);
    }
    stop.store(true, Ordering::Relaxed);
    for burner in burners {
        burner.join().unwrap();
    }
    for ((file, quiet), loaded) in files.iter().zip(&quiet).zip(&loaded) {
        assert!(
            quiet == loaded,
            "{}:\n{quiet}\n---\n{loaded}",
            file.display()
        );
    }
    let halted = &quiet[quiet.len() - 2];
    assert!(halted.contains("outcome: \"rolled_back\""), "{halted}");
    // The two-function cycle improved both, each at its own (virtual) times.
    let two = quiet.last().unwrap();
    assert!(two.contains("[item 2]"), "{two}");
    assert!(
        two.contains("T+00:10:00 [item 1] approved by oncall@acme.example"),
        "{two}"
    );
}
