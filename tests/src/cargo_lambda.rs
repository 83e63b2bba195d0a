//! `cargo lambda watch` child processes: the real function binaries behind the Lambda Invoke
//! API (`POST /2015-03-31/functions/<name>/invocations`) and function URLs
//! (`/lambda-url/<name>/…`), one watch per function package on a free loopback port.
//!
//! One watch per function because the watch runs each function with `cargo run -p <package>
//! --bin <name>`, and `cargo run` takes one package: with several `-p` it refuses to start, and
//! without `-p` it finds only the workspace's default member (the CLI). Watches run with
//! `--ignore-changes`, so an edit elsewhere in the tree does not restart a function mid-test.
//!
//! Like moto, a missing or different cargo-lambda fails the test with the command that
//! installs it; nothing is skipped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The cargo-lambda version the e2e command installs.
pub const CARGO_LAMBDA_VERSION: &str = "1.9.2";

/// How to install cargo-lambda, for the failure message.
pub fn install_hint() -> String {
    format!(
        "install it with `pip install cargo-lambda=={CARGO_LAMBDA_VERSION}` (scripts/e2e does this)"
    )
}

/// The workspace root, where `cargo lambda` must run to see every function package.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Panics unless `cargo lambda --version` reports [`CARGO_LAMBDA_VERSION`].
pub fn require_cargo_lambda() {
    let output = Command::new("cargo")
        .args(["lambda", "--version"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `cargo lambda --version` ({e}); {}",
                install_hint()
            )
        });
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(CARGO_LAMBDA_VERSION),
        "`cargo lambda --version` answered {:?} {:?}: cargo-lambda {CARGO_LAMBDA_VERSION} is \
         required for this test; {}",
        text.trim(),
        String::from_utf8_lossy(&output.stderr).trim(),
        install_hint()
    );
}

/// A running `cargo lambda watch -p <package>`, stopped (with its function) when dropped.
pub struct CargoLambdaWatch {
    child: Child,
    /// The function package, which is also its binary's name.
    pub package: String,
    /// Where its Invoke API listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl CargoLambdaWatch {
    /// Starts the watch with `env` added to its environment, which it passes on to the
    /// function (as `--env-var` would). Returns once its port accepts connections; the
    /// function itself starts on the first invocation.
    pub fn start(package: &str, env: &[(String, String)]) -> Self {
        let port = crate::moto::free_port();
        let log = std::env::temp_dir().join(format!("selfbuild-cargo-lambda-{package}-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone {}: {e}", log.display()));
        let mut command = Command::new("cargo");
        command
            .args(["lambda", "watch", "-p", package, "-A", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .arg("--ignore-changes")
            .current_dir(workspace_root())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // `cargo test` gives the test the package's CARGO_* variables; they do not belong to
        // the `cargo run` the watch starts.
        for (name, _) in std::env::vars() {
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    name.as_str(),
                    "CARGO_MANIFEST_DIR" | "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE"
                )
            {
                command.env_remove(name);
            }
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `cargo lambda watch` ({e}); {}",
                install_hint()
            )
        });
        let mut watch = Self {
            child,
            package: package.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        watch.wait_until_listening(Duration::from_secs(60));
        watch
    }

    fn wait_until_listening(&mut self, timeout: Duration) {
        let addr = self.addr;
        let what = format!("`cargo lambda watch -p {}` on {addr}", self.package);
        let log_path = self.log.clone();
        crate::child::wait_until_ready(
            &mut self.child,
            &what,
            timeout,
            || TcpStream::connect(addr).is_ok(),
            || tail(&log_path, 40),
            &install_hint(),
        );
    }

    /// The last `lines` lines of its log (cargo's output, the function's logs).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Runs `cargo lambda invoke <function> -A 127.0.0.1 -P <port> --data-file <file> -o json`.
    pub fn invoke_cli(&self, data_file: &Path) -> Output {
        Command::new("cargo")
            .args(["lambda", "invoke", &self.package, "-A", "127.0.0.1", "-P"])
            .arg(self.addr.port().to_string())
            .arg("--data-file")
            .arg(data_file)
            .args(["-o", "json"])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `cargo lambda invoke` ({e}); {}", install_hint())
            })
    }
}

impl Drop for CargoLambdaWatch {
    /// SIGINT, on which the watch stops its function instances and exits; SIGKILL after 10 s.
    /// (The watch shares the test's process group, so a Ctrl-C reaches it the same way.)
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "`cargo lambda watch -p {}` (pid {pid}) ignored SIGINT; killed, its function may \
             outlive it; log kept at {}",
            self.package,
            self.log.display()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of the file at `path` (none when it cannot be read).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
