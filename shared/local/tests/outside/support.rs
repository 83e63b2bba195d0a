//! Running `selfbuild`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root: bundled events and scenarios are found from there.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `selfbuild --data-dir <data_dir>`, run from the workspace, with none of the caller's
/// `SELFBUILD_*` settings.
pub fn selfbuild(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_selfbuild"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SELFBUILD_") || name.starts_with("MCP_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(workspace())
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data_dir);
    command
}

/// Runs `command` to its end.
pub fn run(command: &mut Command) -> Output {
    command.output().unwrap()
}

/// A finished command's stdout and stderr, for assertion messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
