//! A `moto_server` child process on a free loopback port, stopped when dropped.
//!
//! Tests never skip when moto is missing: they fail with the command that installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// The moto version the test command installs.
pub const MOTO_VERSION: &str = "5.2.6";

/// How to install moto, for the failure message.
pub fn install_hint() -> String {
    format!("install it with `pip install 'moto[server]=={MOTO_VERSION}'` (scripts/test does this)")
}

/// A running `moto_server`.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    log: PathBuf,
}

static SHARED: Mutex<Weak<MotoServer>> = Mutex::new(Weak::new());

impl MotoServer {
    /// A server shared by the tests running at the same time; stopped when the last drops it.
    pub fn shared() -> Arc<Self> {
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(Self::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// A server of its own (for tests that change moto's global configuration).
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// A server of its own with extra environment, e.g. `MOTO_PORT` (the port moto's own
    /// Step Functions engine calls Lambda on).
    pub fn start_with_env(env: &[(&str, String)]) -> Self {
        // MOTO_SERVER may be a command line, e.g. `python3 -m moto.server`.
        let command = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or("moto_server").to_owned();
        let leading: Vec<String> = words.map(str::to_owned).collect();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("selfbuild-moto-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone {}: {e}", log.display()));
        let child = Command::new(&program)
            .args(&leading)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{program}` ({e}): moto is required for this test; {}",
                    install_hint()
                )
            });
        let mut server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_ready(port);
        server
    }

    fn wait_until_ready(&mut self, port: u16) {
        let log = self.log.clone();
        crate::child::wait_until_ready(
            &mut self.child,
            &format!("moto_server on port {port}"),
            Duration::from_secs(60),
            || http_ok(port, "/moto-api/"),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            &install_hint(),
        );
    }

    /// SDK configuration pointing every service at this server, with dummy credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_in("us-east-1").await
    }

    /// As [`MotoServer::sdk_config`], in `region`: moto keeps each region's resources apart,
    /// so tests that list every resource of a kind can share one server.
    pub async fn sdk_config_in(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }

    /// POSTs JSON to moto's control API, e.g. `/moto-api/config`.
    pub fn control(&self, path: &str, body: &str) {
        let port = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("write to moto");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response.split_whitespace().nth(1).unwrap_or("");
        assert!(status.starts_with('2'), "moto {path} answered: {response}");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A free loopback port (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
