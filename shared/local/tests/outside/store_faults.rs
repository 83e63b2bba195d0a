//! Store faults (issue 12, item 6): a read-only, corrupt, truncated or full database is a
//! permanent fault, named, never `Retryable`; intake never answers "started" when its
//! records could not be written; a `serve` whose database file was deleted says so instead
//! of answering from the deleted file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rusqlite::OptionalExtension;
use serde_json::json;

use crate::support::{Server, run, selfbuild, text, workspace};

const NOW: &str = "2026-11-22T05:03:30Z";

/// A data directory whose store holds a started cycle (so it has every table and data).
fn store_with_records() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run(selfbuild(dir.path())
        .args(["--now", NOW, "invoke", "alarm-intake"])
        .arg(workspace().join("events/alarm-metric.json")));
    assert!(out.status.success(), "{:?}", text(&out));
    dir
}

/// Asserts `command` failed with a permanent store fault that names the file and `fault`.
fn assert_store_fault(command: &mut Command, fault: &str) {
    let out = run(command);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "succeeded: {stdout}");
    assert!(
        stderr.contains("error[StoreFault]: store fault: ") && stderr.contains("selfbuild.db"),
        "{stderr}"
    );
    assert!(stderr.contains(fault), "{stderr}");
}

/// Runs `command` without the power to ignore file permissions, as any user but root does.
fn without_root_override(command: &Command) -> Command {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut wrapped = if is_root {
        let mut setpriv = Command::new("setpriv");
        setpriv
            .args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
            .arg(command.get_program());
        setpriv
    } else {
        Command::new(command.get_program())
    };
    wrapped.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_read_only_database_is_a_permanent_store_fault() {
    let dir = store_with_records();
    let db = dir.path().join("selfbuild.db");
    set_mode(&db, 0o444);
    set_mode(dir.path(), 0o555);
    let mut halt = selfbuild(dir.path());
    halt.args(["halt", "--reason", "maintenance"]);
    assert_store_fault(&mut without_root_override(&halt), "readonly database");
    set_mode(dir.path(), 0o755);
}

#[test]
fn a_file_that_is_not_a_database_is_a_permanent_store_fault() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("selfbuild.db"),
        "not a database ".repeat(600),
    )
    .unwrap();
    assert_store_fault(
        selfbuild(dir.path()).arg("status"),
        "file is not a database",
    );
}

#[test]
fn a_truncated_database_is_a_permanent_store_fault() {
    for size in [3000, 8192] {
        let dir = store_with_records();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("selfbuild.db"))
            .unwrap()
            .set_len(size)
            .unwrap();
        assert_store_fault(
            selfbuild(dir.path()).arg("status"),
            "database disk image is malformed",
        );
    }
}

/// What one intake run under a file size limit left: its exit, output and records.
struct LimitedRun {
    succeeded: bool,
    stdout: String,
    stderr: String,
    /// The claim's `started` flag, if a claim was written.
    claim_started: Option<bool>,
    cycles: i64,
}

/// Intake on a copy of `base` with files limited to `bytes` (RLIMIT_FSIZE): a write past it
/// fails as on a full disk (EFBIG rather than ENOSPC; SIGXFSZ ignored, as `sh` passes on).
fn intake_limited_to(base: &Path, bytes: u64) -> LimitedRun {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(base.join("selfbuild.db"), dir.path().join("selfbuild.db")).unwrap();
    let intake = {
        let mut c = selfbuild(dir.path());
        c.args(["--now", NOW, "invoke", "alarm-intake"])
            .arg(workspace().join("events/alarm-metric.json"));
        c
    };
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\""])
        .arg(bytes.to_string())
        .arg(intake.get_program())
        .args(intake.get_args())
        .current_dir(workspace())
        .env("RUST_LOG", "warn");
    for (name, value) in intake.get_envs() {
        if value.is_none() {
            limited.env_remove(name);
        }
    }
    let out = run(&mut limited);
    let (stdout, stderr) = text(&out);
    let conn = rusqlite::Connection::open(dir.path().join("selfbuild.db")).unwrap();
    let claim_started = conn
        .query_row("SELECT started FROM dedup_claims", [], |row| row.get(0))
        .optional()
        .unwrap();
    let cycles = conn
        .query_row("SELECT COUNT(*) FROM cycles", [], |row| row.get(0))
        .unwrap();
    LimitedRun {
        succeeded: out.status.success(),
        stdout,
        stderr,
        claim_started,
        cycles,
    }
}

#[test]
fn intake_on_a_full_disk_fails_naming_the_fault_and_never_says_started() {
    // GIVEN an empty store, and limits from "nothing can be written" to "everything can"
    let base = tempfile::tempdir().unwrap();
    assert!(run(selfbuild(base.path()).arg("status")).status.success());
    let mut failed_after_claiming = 0;
    let mut started = 0;
    for bytes in (16 * 1024..=64 * 1024).step_by(512) {
        // WHEN intake starts a cycle with no room left at some write
        let r = intake_limited_to(base.path(), bytes);
        if r.succeeded {
            // THEN "started" means every record was written ...
            assert!(
                r.stdout.contains("\"decision\": \"started\""),
                "{}",
                r.stdout
            );
            assert_eq!(
                (r.claim_started, r.cycles),
                (Some(true), 1),
                "{bytes} bytes: started, but records incomplete; stderr: {}",
                r.stderr
            );
            started += 1;
        } else {
            // ... and otherwise intake fails, not to be retried, naming the store fault
            assert!(!r.stdout.contains("started"), "{bytes}: {}", r.stdout);
            assert!(
                r.stderr.contains("store fault: ") && !r.stderr.contains("error[Retryable]"),
                "{bytes} bytes: {}",
                r.stderr
            );
            if r.claim_started.is_some() {
                failed_after_claiming += 1;
            }
        }
    }
    // The limits reached the writes after the claim, and some left room for all of them.
    assert!(
        failed_after_claiming > 0,
        "no limit failed a write after the claim"
    );
    assert!(started > 0, "no limit left room to start");
}

#[test]
fn a_serve_whose_database_was_deleted_says_so_instead_of_answering_from_it() {
    // GIVEN a halted store and a server on it
    let dir = tempfile::tempdir().unwrap();
    let out = run(selfbuild(dir.path()).args(["halt", "--reason", "maintenance"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let server = Server::start(dir.path(), &[]);
    let (status, answer) = server.call_tool("get_system_status", json!({}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["halt"]["on"], true,
        "{answer}"
    );
    // WHEN the database is deleted
    for file in ["selfbuild.db", "selfbuild.db-wal", "selfbuild.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    // THEN the server does not answer from the deleted file: it names the fault
    assert_tool_fails(&server, "was deleted");
    // AND when a new CLI creates a fresh, unhalted one, the server does not take it silently
    let out = run(selfbuild(dir.path()).args(["--output", "json", "status"]));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("\"halted\": false"), "{stdout}");
    assert_tool_fails(&server, "was replaced");
}

/// Asserts `get_system_status` fails with a store fault whose message contains `fault`.
fn assert_tool_fails(server: &Server, fault: &str) {
    let (_, answer) = server.call_tool("get_system_status", json!({}));
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    let message = result["structuredContent"]["message"].as_str().unwrap();
    assert!(
        message.contains("store fault: ") && message.contains(fault),
        "{message}"
    );
}
