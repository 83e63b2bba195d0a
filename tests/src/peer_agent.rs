//! A registered agent played by the official MCP Python SDK (`tests/agents/peer_agent.py`)
//! on a free loopback port, stopped when dropped; the calls it received are read back.
//!
//! Tests never skip when the SDK is missing: they fail with the command that installs it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How to get the Python tools, for the failure message.
pub fn install_hint() -> &'static str {
    "the MCP Python SDK is required: run scripts/test once (it creates \
     ~/.cache/selfbuild/python-tools with `pip install mcp==2.3.0`), or set PYTHON_TOOLS to a \
     python that has it"
}

/// The project's Python: `PYTHON_TOOLS`, else the virtualenv scripts/test creates.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PYTHON_TOOLS") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("SELFBUILD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("selfbuild")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/selfbuild")))
        .unwrap_or_else(|| panic!("neither PYTHON_TOOLS nor HOME is set; {}", install_hint()));
    cache.join("python-tools/bin/python")
}

/// A running peer agent.
pub struct PeerAgent {
    child: Child,
    /// `http://127.0.0.1:<port>/mcp`.
    pub mcp_url: String,
    record: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PeerAgent {
    /// Starts an agent; with `key`, it wants `Authorization: Bearer <key>`; `windows` are
    /// its deployment-window answers in turn (`later`/`now`).
    pub fn start(key: Option<&str>, windows: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let record = dir.path().join("calls.jsonl");
        let log = dir.path().join("agent.log");
        let port = crate::moto::free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("agents/peer_agent.py");
        let python = python();
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone {}: {e}", log.display()));
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--record")
            .arg(&record)
            .arg("--windows")
            .arg(windows.join(","));
        if let Some(key) = key {
            command.args(["--key", key]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); {}",
                    python.display(),
                    install_hint()
                )
            });
        let mut agent = Self {
            child,
            mcp_url: format!("http://127.0.0.1:{port}/mcp"),
            record,
            log,
            _dir: dir,
        };
        agent.wait_until_listening(port);
        agent
    }

    fn wait_until_listening(&mut self, port: u16) {
        let log = self.log.clone();
        crate::child::wait_until_ready(
            &mut self.child,
            &format!("the peer agent on port {port}"),
            Duration::from_secs(60),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            install_hint(),
        );
    }

    /// The calls received so far, in order: `{"tool", "arguments"}`.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("the agent recorded {line:?}: {e}"))
            })
            .collect()
    }
}

impl Drop for PeerAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
