//! The offline main job: every bundled scenario as a full cycle on the embedded adapters
//! (the real ASL definition on the embedded interpreter, the fleet model, SQLite).

use selfbuild_core::audit::AuditLog;
use selfbuild_core::ids::CycleId;
use selfbuild_local::demo::{DemoOptions, run_scenario, scenario_files, summary_table};
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::events_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_ends_as_its_file_expects() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        time_scale: 3600.0,
        data_dir: dir.path().to_path_buf(),
    };
    let mut rows = Vec::new();
    for file in scenario_files(&events_dir().join("scenarios")).unwrap() {
        let row = run_scenario(&file, &options, Box::new(std::io::sink()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        rows.push(row);
    }
    assert!(rows.len() >= 3, "at least the three bundled scenarios");
    assert!(rows.iter().all(|r| r.passed), "\n{}", summary_table(&rows));

    // Every transition left an audit event, and deploys and rollbacks were announced.
    for row in &rows {
        let store = SqliteStore::open(&dir.path().join(&row.scenario)).unwrap();
        let cycle = CycleId::parse(&row.cycle_id).unwrap();
        let actions: Vec<String> = store
            .cycle_events(&cycle)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(
            actions.contains(&"validated".to_owned()),
            "{}: {actions:?}",
            row.scenario
        );
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
        let kinds: Vec<String> = store
            .notifications()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(
            kinds.contains(&"Improvement Deployed".to_owned()),
            "{kinds:?}"
        );
    }
}
