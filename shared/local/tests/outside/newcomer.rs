//! A newcomer's first hour (issue 18): the CLI run from a directory that is not the
//! repository (bundled scenarios and events), approvals from a second process and their
//! edge cases, and the documented exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::support::{run, text};

/// `selfbuild --data-dir <dir>/data`, run from `dir` (not the repository), with none of the
/// caller's `SELFBUILD_*` settings.
fn elsewhere(dir: &Path) -> Command {
    in_store(dir, &dir.join("data"))
}

/// `selfbuild --data-dir <data_dir>`, run from `dir`.
fn in_store(dir: &Path, data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_selfbuild"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SELFBUILD_") || name == "ENABLE_AUTONOMOUS_IMPROVEMENTS" {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data_dir);
    command
}

#[test]
fn the_demo_runs_from_any_directory_on_the_bundled_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(elsewhere(dir.path()).args(["demo", "--quiet"]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("7 of 7 runs as expected"), "{stdout}");
    assert!(stdout.contains("timeouts-fixed-by-config"), "{stdout}");
    // The scenarios whose code runs carry it in the binary too.
    assert!(
        stdout.contains("code-fix-python-promoted") && stdout.contains("orders.py +4/-1"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("T+00:00:00"),
        "--quiet prints no progress: {stdout}"
    );
}

#[test]
fn a_missing_path_is_an_error_with_a_hint_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["demo", "--scenarios", "scenarios/timeouts.json"][..],
        &["cycle", "--event", "alarm-metric.json"],
        &["invoke", "alarm-intake", "nope.json"],
    ] {
        let output = run(elsewhere(dir.path()).args(args));
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        let mut lines = stderr.lines();
        assert!(
            lines.next().is_some_and(|l| l.starts_with("error[")),
            "{stderr}"
        );
        assert!(
            lines.next().is_some_and(|l| l.starts_with("  hint: ")),
            "{stderr}"
        );
    }
    // The hint names the bundled file of the same name.
    let output = run(elsewhere(dir.path()).args(["cycle", "--event", "alarm-metric.json"]));
    assert!(text(&output).1.contains("events/alarm-metric.json"));
}

#[test]
fn usage_errors_exit_2_on_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["demo", "--time-scale", "0"][..],
        &[
            "cycle",
            "--event",
            "events/alarm-metric.json",
            "--time-scale",
            "0",
        ],
        &["serve", "--time-scale", "0"],
        &["invoke", "alarm-intake", "x.json", "--time-scale", "0"],
        &["status", "--no-such-flag"],
        &["list", "improvements", "--status", "nonsense"],
    ] {
        let output = run(elsewhere(dir.path()).args(args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output).1
        );
    }
    let output = run(elsewhere(dir.path()).args(["completions", "bash"]));
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output).0.contains("selfbuild"));
}

#[test]
fn an_unknown_improvement_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for verb in ["approve", "reject"] {
        let output = run(elsewhere(dir.path()).args([verb, "nope-20261122T050000Z-1"]));
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error[NotFound]: no improvement"),
            "{stderr}"
        );
    }
}

#[test]
fn approve_after_the_window_closed_says_so_and_resumes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody answers in this scenario: its window passes in virtual time.
    let output = run(elsewhere(dir.path()).args([
        "demo",
        "--scenarios",
        "events/scenarios/safety/nd-nobody-approves.json",
    ]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("closed unanswered"), "{stdout}");
    let store_dir = dir.path().join("data/demo/nd-nobody-approves");
    let listed =
        run(in_store(dir.path(), &store_dir).args(["--output", "json", "list", "improvements"]));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = listed["improvements"][0]["improvement_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(listed["improvements"][0]["status"], "rejected");

    let output = run(in_store(dir.path(), &store_dir).args(["approve", &id, "--actor", "alice"]));
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("error[ApprovalClosed]: the approval window"),
        "{stderr}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = selfbuild_local::store::SqliteStore::open(&store_dir).unwrap();
    assert!(
        runtime
            .block_on(store.take_task_results())
            .unwrap()
            .is_empty()
    );
    assert!(
        runtime
            .block_on(store.pending_approvals())
            .unwrap()
            .is_empty()
    );
}

/// Reads `cycle`'s progress up to the wait line's approve command: the improvement id, and
/// everything read.
fn read_to_approve_line(progress: &mut impl BufRead) -> (String, String) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            progress.read_line(&mut line).unwrap() > 0,
            "no wait line: {seen}"
        );
        seen.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("approve: selfbuild") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "approve").unwrap();
            return (words[at + 1].to_owned(), seen);
        }
    }
}

#[test]
fn a_cycle_from_elsewhere_waits_for_a_second_terminal_then_prints_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut cycle = elsewhere(dir.path())
        .args(["cycle", "--event", "events/alarm-metric.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Progress on stderr: read up to the wait line's approve command.
    let mut progress = BufReader::new(cycle.stderr.take().unwrap());
    let (id, seen) = read_to_approve_line(&mut progress);
    assert!(seen.contains("waiting for approval until"), "{seen}");
    assert!(
        seen.contains("risk: "),
        "the wait line names the risk: {seen}"
    );
    // Autonomy is off by default for `cycle`, as docs/configuration.md says.
    let status = run(elsewhere(dir.path()).args(["--output", "json", "status"]));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["autonomous_improvements"], false);
    assert_eq!(
        status["awaiting_approval"][0]["improvement_id"],
        id.as_str()
    );

    let approved = run(elsewhere(dir.path()).args(["approve", &id, "--actor", "alice"]));
    assert_eq!(approved.status.code(), Some(0), "{}", text(&approved).1);
    let answer: Value = serde_json::from_slice(&approved.stdout).unwrap();
    assert_eq!(answer["status"], "approved");

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut progress, &mut rest).unwrap();
    let output = cycle.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{seen}{rest}");
    // Only the result on stdout: one JSON document.
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["improvements"][0]["improvement_id"], id.as_str());
    assert!(rest.contains("T+"), "progress went to stderr: {rest}");

    // Decided already: not pending, and not "approved" again.
    let again = run(elsewhere(dir.path()).args(["approve", &id, "--actor", "bob"]));
    assert!(
        text(&again).1.starts_with("error[NotPending]"),
        "{}",
        text(&again).1
    );

    // A re-run on the same clock does not reuse the ids: intake suppresses it (dedup).
    let rerun = run(elsewhere(dir.path()).args(["cycle", "--event", "events/alarm-metric.json"]));
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun).1);
    let response: Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(response["decision"], "duplicate", "{response}");
    assert_ne!(response["cycle_id"], Value::Null);

    let listed = run(elsewhere(dir.path()).args(["--output", "json", "list", "cycles"]));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed["cycles"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let shown = run(elsewhere(dir.path()).args(["show", "improvement", &id]));
    assert_eq!(shown.status.code(), Some(0));
    assert!(text(&shown).0.contains("approved"), "{}", text(&shown).0);
}

#[cfg(unix)]
#[test]
fn an_interrupted_cycle_is_recorded_failed_and_its_approval_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cycle = elsewhere(dir.path())
        .args(["cycle", "--event", "events/alarm-metric.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(cycle.stderr.take().unwrap());
    let (id, seen) = read_to_approve_line(&mut progress);
    // Ctrl-C, as a person at the first terminal would.
    let killed = Command::new("kill")
        .args(["-INT", &cycle.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = cycle.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut progress, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("error[Interrupted]: cycle "), "{rest}");
    assert!(rest.contains("closed unanswered"), "{rest}");

    let status = run(elsewhere(dir.path()).args(["--output", "json", "status"]));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running_cycles"], serde_json::json!([]), "{status}");
    assert_eq!(
        status["awaiting_approval"],
        serde_json::json!([]),
        "{status}"
    );
    let late = run(elsewhere(dir.path()).args(["approve", &id, "--actor", "alice"]));
    let (_, stderr) = text(&late);
    assert_eq!(late.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error[ApprovalClosed]"), "{stderr}");
}

#[test]
fn every_step_payload_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    for (function, payload) in [
        ("analyze", "events/steps/analyze.json"),
        ("generate", "events/steps/generate.json"),
        ("validate", "events/steps/validate.json"),
        ("validate", "events/steps/validate-request-approval.json"),
        ("validate", "events/steps/validate-expire-approval.json"),
        ("deploy", "events/steps/deploy.json"),
        ("monitor", "events/steps/monitor-summarize.json"),
    ] {
        let output = run(elsewhere(dir.path()).args([
            "--now",
            "2026-11-22T09:08:20Z",
            "invoke",
            function,
            payload,
        ]));
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{function} {payload}: {stderr}"
        );
        assert!(serde_json::from_str::<Value>(&stdout).is_ok(), "{stdout}");
    }
}
