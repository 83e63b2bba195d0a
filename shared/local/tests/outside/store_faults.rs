//! Store faults (issue 12, item 6): a read-only, corrupt or truncated database is a
//! permanent fault, named, never `Retryable`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{run, selfbuild, text, workspace};

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
