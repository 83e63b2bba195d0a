//! `selfbuild serve`: the MCP endpoint's router on a TCP listener, over the embedded adapters.
//! Cycles it starts run in the background on the scenario's fleet, through the same
//! state machine definition as on AWS; approvals given through MCP resume them.
//!
//! Two kinds of time: the server (tools, rate limits, the fleet the tools read) runs at
//! real pace from `--now` (else the scenario's `now`), because its callers arrive in real
//! time. Each background cycle runs, like `selfbuild cycle`, on its own event-driven
//! virtual time from the instant it was started (`crate::cycle`): its waits take no real
//! time, so its records run ahead of the server's clock, except while it waits for a
//! person, when it runs at real pace.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::Request;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use selfbuild_core::Config;
use selfbuild_core::apikeys::{ApiKey, KeySet, Scope};
use selfbuild_core::cycle::{CycleRequest, CycleStatus};
use selfbuild_core::error::OrchestratorError;
use selfbuild_core::ids::CycleId;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{Clock, CycleHandle, CycleStore, Orchestrator, StaticKeys};
use selfbuild_core::records::TenantScope;
use selfbuild_core::text::Escaped;
use selfbuild_mcp::access_log::BatchedAccessLog;
use selfbuild_mcp::{McpDeps, McpSettings};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::asl::VirtualClock;
use crate::cli::{CliError, cli_error};
use crate::cycle::{Approvers, run_cycle_blocking};
use crate::fleet::{Fleet, Scenario};
use crate::orchestrator::RecordingOrchestrator;
use crate::store::{SqliteStore, StoreTaskTokens};

/// What `selfbuild serve` was asked.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The fleet the endpoint reads telemetry from and cycles work on.
    pub scenario: PathBuf,
    /// A file holding the key list (else `SELFBUILD_API_KEYS`).
    pub api_keys_file: Option<PathBuf>,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The clock's start (else the scenario's `now`).
    pub now: Option<OffsetDateTime>,
    /// Connection limits.
    pub limits: ServeLimits,
}

/// How long a client may take and how many may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time a connection has to send a request's headers, from its opening or from the end
    /// of its previous response: also the idle keep-alive timeout.
    pub header_timeout: Duration,
    /// Time a request's body has to arrive once its headers have.
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// The key list from `--api-keys-file`, else from `SELFBUILD_API_KEYS`.
pub fn load_keys(file: Option<&Path>, env_value: Option<String>) -> Result<KeySet, CliError> {
    let (source, text) = match (file, env_value) {
        (Some(path), _) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| cli_error("ConfigError", format!("{}: {e}", path.display())))?,
        ),
        (None, Some(text)) => ("SELFBUILD_API_KEYS".to_owned(), text),
        (None, None) => {
            return Err(cli_error(
                "ConfigError",
                "no API keys: set SELFBUILD_API_KEYS or --api-keys-file to a JSON list of \
{\"id\", \"sha256\", \"tenant\", \"scopes\"} (sha256 = `printf %s KEY | sha256sum`)",
            ));
        }
    };
    let keys =
        KeySet::parse_str(&text).map_err(|e| cli_error("ConfigError", format!("{source}: {e}")))?;
    if keys.is_empty() {
        return Err(cli_error(
            "ConfigError",
            format!("{source}: the key list is empty; nobody could call the endpoint"),
        ));
    }
    Ok(keys)
}

/// Starts each cycle in the background over the scenario's fleet.
struct BackgroundCycles {
    recorder: RecordingOrchestrator<SqliteStore, Arc<dyn Clock>>,
    /// The server's one clock, also the recorder's.
    clock: Arc<dyn Clock>,
    store: SqliteStore,
    scenario: Arc<Scenario>,
    config: Arc<Config>,
}

#[async_trait]
impl Orchestrator for BackgroundCycles {
    async fn start_cycle(&self, request: &CycleRequest) -> Result<CycleHandle, OrchestratorError> {
        let handle = self.recorder.start_cycle(request).await?;
        if handle.already_started {
            return Ok(handle);
        }
        let (store, clock, scenario, config) = (
            self.store.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.scenario),
            Arc::clone(&self.config),
        );
        let request = request.clone();
        let id = request.cycle_id.clone();
        // A thread of its own, not one of the runtime's bounded blocking pool: a cycle may
        // wait hours for a person, and the pool must stay free for short blocking work.
        let spawned = std::thread::Builder::new()
            .name(format!("cycle-{id}"))
            .spawn(move || {
                let id = request.cycle_id.clone();
                info!(cycle = %id, "cycle running in the background");
                let progress = Box::new(std::io::stderr());
                let Err(e) = run_cycle_blocking(
                    &scenario,
                    &request,
                    &store,
                    &config,
                    progress,
                    Approvers::People,
                ) else {
                    info!(cycle = %id, "cycle finished");
                    return;
                };
                warn!(cycle = %id, error = %Escaped(&e), "cycle failed");
                record_failure(&store, &id, clock.now());
            });
        if let Err(e) = spawned {
            let failed = self
                .store
                .finish_cycle(&id, CycleStatus::Failed, self.clock.now())
                .await;
            if let Err(e) = failed {
                warn!(cycle = %id, error = %Escaped(&e), "failed cycle not recorded");
            }
            return Err(OrchestratorError::Unavailable(format!(
                "cannot start a thread for cycle {id}: {e}"
            )));
        }
        Ok(handle)
    }
}

/// Marks a cycle that stopped failed, from its own thread (outside any runtime).
fn record_failure(store: &SqliteStore, id: &CycleId, at: OffsetDateTime) {
    let recorded = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(store.finish_cycle(id, CycleStatus::Failed, at))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = recorded {
        warn!(cycle = %id, error = %Escaped(&e), "failed cycle not recorded");
    }
}

/// The endpoint's ports over the embedded adapters: the scenario's fleet, the store in
/// `data_dir` (its WAL checkpointed in the background, its access log batched), `keys`.
fn endpoint_deps(
    scenario: &Path,
    data_dir: &Path,
    now: Option<OffsetDateTime>,
    keys: KeySet,
) -> Result<McpDeps, CliError> {
    let config = Arc::new(Config::from_env()?);
    let settings = McpSettings::from_env()?;
    let scenario =
        Arc::new(Scenario::load(scenario).map_err(|e| cli_error("InvalidInput", e.to_string()))?);
    let store = SqliteStore::open(data_dir)?;
    // Checkpoint fsyncs happen on a thread of their own, not on a request's commit.
    store.checkpoint_in_background(CHECKPOINT_EVERY)?;
    // The access log's one writer, committing in batches; flushed on shutdown.
    let access_log = Arc::new(BatchedAccessLog::spawn(Arc::new(store.clone())));
    // This runtime's time is not paused: the clock runs at real pace.
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(now.unwrap_or(scenario.now)));
    let fleet = Arc::new(
        Fleet::new(&scenario, Arc::clone(&clock))
            .map_err(|e| cli_error("InvalidInput", e.to_string()))?,
    );
    // Offline there is no model: the scenario's recorded drafts, else a refusal that says so.
    let llm = Arc::new(
        crate::planner::scenario_llm(&scenario).map_err(|e| cli_error("InvalidInput", e))?,
    );
    let checker = Arc::new(selfbuild_validate::PipelineChecker::new(
        crate::demo::scenario_code_settings(&scenario).map_err(|e| cli_error("InvalidInput", e))?,
    ));
    let orchestrator = BackgroundCycles {
        recorder: RecordingOrchestrator::new(store.clone(), Arc::clone(&clock)),
        clock: Arc::clone(&clock),
        store: store.clone(),
        scenario,
        config: Arc::clone(&config),
    };
    Ok(McpDeps {
        store: Arc::new(store.clone()),
        access_log,
        orchestrator: Arc::new(orchestrator),
        task_tokens: Arc::new(StoreTaskTokens(store.clone())),
        telemetry: fleet.clone(),
        deployer: fleet,
        notifier: Arc::new(store),
        // Dependent agents told of a rollback, with keys from SELFBUILD_AGENT_KEYS_FILE.
        peers: Arc::new(
            crate::peers::LocalPeers::from_config(&config)
                .map_err(|e| cli_error("ConfigError", e))?,
        ),
        llm,
        checker,
        metrics: Arc::new(selfbuild_core::emf::TracingSink {
            namespace: config.metrics_namespace.clone(),
        }),
        keys: Arc::new(StaticKeys(Arc::new(keys))),
        clock,
        ids: Arc::new(OsRandom),
        config,
        settings,
    })
}

/// Serves until Ctrl-C (or SIGTERM), then stores what is held in memory.
pub async fn serve(options: ServeOptions) -> Result<(), CliError> {
    let keys = load_keys(
        options.api_keys_file.as_deref(),
        std::env::var("SELFBUILD_API_KEYS").ok(),
    )?;
    let deps = endpoint_deps(&options.scenario, &options.data_dir, options.now, keys)?;
    let listener = listen(options.addr).map_err(|e| {
        cli_error(
            "ConfigError",
            format!("cannot listen on {}: {e}", options.addr),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| cli_error("ConfigError", e.to_string()))?;
    // The one line scripts wait for before connecting.
    eprintln!("selfbuild MCP endpoint listening on http://{local}/mcp");
    let (app, shutdown) = selfbuild_mcp::app_with_shutdown(deps);
    serve_connections(listener, app, options.limits).await;
    // Nothing held in memory is lost on a graceful stop: uncounted calls and access log
    // entries are stored before the process exits.
    shutdown.run().await?;
    info!("stopped; access log flushed");
    Ok(())
}

/// What `selfbuild mcp --stdio` was asked.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// The fleet the tools read telemetry from and started cycles work on.
    pub scenario: PathBuf,
    /// A file holding the key list (else `SELFBUILD_API_KEYS`); only read with a key.
    pub api_keys_file: Option<PathBuf>,
    /// The key the client presents (`SELFBUILD_MCP_KEY`); none: the local administrator.
    pub key: Option<String>,
    /// The embedded store's directory.
    pub data_dir: PathBuf,
    /// The clock's start (else the scenario's `now`).
    pub now: Option<OffsetDateTime>,
}

/// The id of the caller of a stdio session started without a key.
pub const LOCAL_CALLER: &str = "local-stdio";

/// Serves MCP over stdin/stdout until the client closes stdin. Without a key the caller is
/// the local administrator (whoever can start the process can read the store anyway);
/// with one, the key's tenant and scopes apply as over HTTP.
pub async fn serve_stdio(options: StdioOptions) -> Result<(), CliError> {
    let (keys, caller) = match &options.key {
        Some(presented) => {
            let keys = load_keys(
                options.api_keys_file.as_deref(),
                std::env::var("SELFBUILD_API_KEYS").ok(),
            )?;
            let caller = keys.authenticate(presented).cloned().ok_or_else(|| {
                cli_error(
                    "ConfigError",
                    "SELFBUILD_MCP_KEY matches no key of the key list",
                )
            })?;
            (keys, caller)
        }
        None => {
            let caller = ApiKey {
                id: LOCAL_CALLER.to_owned(),
                digest: [0; 32],
                tenant: TenantScope::All,
                scopes: vec![Scope::Admin],
            };
            (KeySet::default(), caller)
        }
    };
    let deps = endpoint_deps(&options.scenario, &options.data_dir, options.now, keys)?;
    selfbuild_mcp::serve_stdio(deps, caller)
        .await
        .map_err(|e| match e {
            selfbuild_mcp::StdioError::Store(e) => CliError::from(e),
            e @ selfbuild_mcp::StdioError::Transport(_) => cli_error("InvalidInput", e.to_string()),
        })?;
    info!("stdio session ended; access log flushed");
    Ok(())
}

/// How often `serve` checkpoints the store's WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Ctrl-C, or SIGTERM where there are signals (a service manager's stop).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Connections the kernel completes while `max_connections` are being served; std's and
/// tokio's 128 made a burst of 1,000 drop SYNs, which clients resend only after a second.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on each accepted connection, within `limits`, until Ctrl-C; then lets the
/// requests in progress finish.
async fn serve_connections(listener: TcpListener, app: Router, limits: ServeLimits) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop_signal());
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            continue;
        };
        let body_timeout = limits.body_timeout;
        let service = app.clone().map_request(move |request: Request<Incoming>| {
            request.map(|body| TimedBody::new(body, body_timeout))
        });
        let mut http = http1::Builder::new();
        // hyper's header timer also runs between requests, which makes it the idle timeout.
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in progress at shutdown were cut off");
    }
}

/// How long Ctrl-C waits for the requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The next connection, once fewer than the limit are open; `None` after an accept error.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(tokio::net::TcpStream, OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(e) => {
            // Out of descriptors or memory: accepting again at once would spin.
            warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// A request body that fails once its time is up, so a client that sends headers and then
/// trickles or withholds the body cannot hold a connection.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the request body did not arrive within {} s",
                        this.timeout.as_secs_f64()
                    ),
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_file_or_the_variable_and_must_exist() {
        let e = load_keys(None, None).expect_err("no keys");
        assert!(e.message.contains("SELFBUILD_API_KEYS"), "{}", e.message);
        let e = load_keys(None, Some("[]".into())).expect_err("empty");
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = load_keys(None, Some("[{\"id\": 1}]".into())).expect_err("bad");
        assert!(
            e.message
                .starts_with("SELFBUILD_API_KEYS: API key list: [0].id"),
            "{}",
            e.message
        );
        let text = format!(
            "[{{\"id\": \"dev\", \"sha256\": \"{}\", \"tenant\": \"*\", \"scopes\": [\"admin\"]}}]",
            selfbuild_core::apikeys::key_digest_hex("k")
        );
        assert_eq!(load_keys(None, Some(text)).expect("keys").len(), 1);
    }
}
