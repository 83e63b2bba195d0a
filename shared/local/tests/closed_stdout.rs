//! The `selfbuild` process when its reader goes away (`selfbuild demo | head`): it ends
//! quietly with the status a death by SIGPIPE gives, never with a panic.

use std::process::Command;

#[test]
fn a_closed_stdout_ends_the_demo_quietly() {
    let data = tempfile::tempdir().expect("temp dir");
    let (reader, writer) = std::io::pipe().expect("pipe");
    // Closed before the process starts: its first line already meets a broken pipe.
    drop(reader);
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/scenarios/timeouts.json"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_selfbuild"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["demo", "--scenarios", scenario])
        .stdout(writer)
        .output()
        .expect("selfbuild runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
