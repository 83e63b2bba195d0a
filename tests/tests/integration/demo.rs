//! The offline main job: every bundled scenario as a full cycle on the embedded adapters
//! (the real ASL definition on the embedded interpreter, the fleet model, SQLite).

use selfbuild_local::demo::{DemoOptions, run_scenario, scenario_files, summary_table};
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
}
