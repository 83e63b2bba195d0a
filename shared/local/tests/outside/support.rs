//! Running `selfbuild` and talking HTTP to `selfbuild serve`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The API key the tests' servers accept (read scope, every tenant).
pub const KEY: &str = "outside-test-key";

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

/// A `selfbuild serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Server {
    /// Starts `selfbuild serve` on a free port over `data_dir` with `flags`, and waits for it
    /// to listen.
    pub fn start(data_dir: &Path, flags: &[&str]) -> Self {
        Self::start_with_env(data_dir, flags, &[])
    }

    /// [`Server::start`] with extra environment, e.g. `MCP_RATE_LIMIT_PER_MINUTE`.
    pub fn start_with_env(data_dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Self {
        let keys = json!([{
            "id": "outside",
            "sha256": selfbuild_core::apikeys::key_digest_hex(KEY),
            "tenant": "*",
            "scopes": ["read"],
        }]);
        let mut child = selfbuild(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(flags)
            .env("SELFBUILD_API_KEYS", keys.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("selfbuild serve ended ({status}) before listening");
            };
            if let Some(url) = line.split("http://127.0.0.1:").nth(1) {
                break url.trim_end_matches("/mcp").parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, port }
    }

    /// A connection to the server.
    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap()
    }

    /// One `tools/call` on its own connection: the HTTP status and the JSON-RPC answer.
    pub fn call_tool(&self, tool: &str, arguments: Value) -> (u16, Value) {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        });
        let mut stream = self.connect();
        stream
            .write_all(request(&body.to_string(), "close").as_bytes())
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }
}

impl Server {
    /// Stops the server as Ctrl-C does (SIGINT) and waits for it: whether it exited cleanly.
    pub fn stop_gracefully(&mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -INT failed");
        self.child.wait().unwrap().success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MCP POST of `body` with the test key and `Connection: <connection>`.
pub fn request(body: &str, connection: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n\
         Authorization: Bearer {KEY}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
}

/// Whether the server closes `stream` within `within` (reading and dropping whatever it
/// sends first).
pub fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
