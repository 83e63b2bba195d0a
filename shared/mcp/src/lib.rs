//! selfbuild's MCP endpoint (R15–R18): Streamable HTTP, stateless, JSON responses, on an axum
//! [`Router`] that Lambda serves behind the function URL, `selfbuild serve` serves on TCP and
//! tests call with `oneshot`.
//!
//! - [`guard`]: host, method, Bearer key, body size and tool scope checks before the protocol.
//! - [`jsonrpc`]: the JSON-RPC message check before rmcp, and JSON-RPC errors for what fails.
//! - [`direct`]: read-only tool calls answered from the guard's read of the message, as rmcp
//!   would answer them.
//! - [`server`]: the MCP server handler: tool listing, rate limit, access log, dispatch.
//! - [`rate_limit`]: the per-key limit, decided in memory, counted in the store off the
//!   request path.
//! - [`access_log`]: the access log sinks: batches committed by one writer, or structured
//!   log records.
//! - [`tools`]: one file per tool.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use selfbuild_core::Config;
use selfbuild_core::apikeys::ApiKey;
use selfbuild_core::config::{ConfigError, Env};
use selfbuild_core::error::StoreError;
use selfbuild_core::ports::{
    AccessLogSink, AgentPeers, Clock, CodeChecker, Deployer, IdSource, KeySource, Llm, MetricSink,
    Notifier, Orchestrator, Store, TaskTokens, Telemetry,
};

pub mod access_log;
pub mod direct;
pub mod guard;
pub mod jsonrpc;
pub mod rate_limit;
pub mod server;
pub mod tools;

/// The endpoint's own settings (beside the shared [`Config`]).
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// `MCP_RATE_LIMIT_PER_MINUTE`: tool calls one key may make per minute (0: no limit).
    pub rate_limit_per_minute: u32,
    /// `MCP_ALLOWED_HOSTS`: `Host` header patterns accepted (`*` wildcards); empty: any host.
    pub allowed_hosts: Vec<String>,
    /// `MCP_MAX_BODY_BYTES`: the largest request body accepted.
    pub max_body_bytes: usize,
    /// `API_KEYS_REFRESH_SECONDS`: how long a fetched key list is used before it is read again.
    pub keys_refresh: Duration,
}

/// Default `MCP_ALLOWED_HOSTS`: loopback (for `selfbuild serve`) and Lambda function URLs.
pub const DEFAULT_ALLOWED_HOSTS: &str = "localhost,127.0.0.1,[::1],*.lambda-url.*.on.aws";

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 60,
            allowed_hosts: split_list(DEFAULT_ALLOWED_HOSTS),
            max_body_bytes: 1024 * 1024,
            keys_refresh: Duration::from_secs(300),
        }
    }
}

impl McpSettings {
    /// Reads the settings from the environment; a bad value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let env = Env::new(&lookup);
        Ok(Self {
            rate_limit_per_minute: env.number(
                "MCP_RATE_LIMIT_PER_MINUTE",
                defaults.rate_limit_per_minute,
                0,
                u32::MAX,
            )?,
            allowed_hosts: env
                .list("MCP_ALLOWED_HOSTS")
                .unwrap_or(defaults.allowed_hosts),
            max_body_bytes: env.number(
                "MCP_MAX_BODY_BYTES",
                defaults.max_body_bytes,
                1024,
                usize::MAX,
            )?,
            keys_refresh: Duration::from_secs(env.number(
                "API_KEYS_REFRESH_SECONDS",
                defaults.keys_refresh.as_secs(),
                0,
                u64::MAX,
            )?),
        })
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Everything the endpoint uses.
#[derive(Clone)]
pub struct McpDeps {
    /// Every store port (the self health pass's ledgers and reports included).
    pub store: Arc<dyn Store>,
    /// Where access log entries go (handed over; a call never waits for its entry).
    pub access_log: Arc<dyn AccessLogSink>,
    /// Starts cycles.
    pub orchestrator: Arc<dyn Orchestrator>,
    /// Resumes executions waiting for approval.
    pub task_tokens: Arc<dyn TaskTokens>,
    /// Metrics and logs, for insights and component health.
    pub telemetry: Arc<dyn Telemetry>,
    /// Lambda, for rollbacks and current settings.
    pub deployer: Arc<dyn Deployer>,
    /// Events for other agents.
    pub notifier: Arc<dyn Notifier>,
    /// Registered agents called over MCP: the dependents told of a rollback.
    pub peers: Arc<dyn AgentPeers>,
    /// Drafts new components (`generate_component`).
    pub llm: Arc<dyn Llm>,
    /// Checks a drafted component's code; [`NoCodeChecker`](selfbuild_core::ports::NoCodeChecker)
    /// leaves its validation pending.
    pub checker: Arc<dyn CodeChecker>,
    /// Where intake latency goes (EMF on Lambda).
    pub metrics: Arc<dyn MetricSink>,
    /// The API keys.
    pub keys: Arc<dyn KeySource>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The random part of new cycle ids.
    pub ids: Arc<dyn IdSource>,
    /// The shared configuration.
    pub config: Arc<Config>,
    /// The endpoint's settings.
    pub settings: McpSettings,
}

/// The endpoint: POST `/` and `/mcp` speak MCP; everything passes [`guard`] first.
pub fn app(deps: McpDeps) -> Router {
    app_with_shutdown(deps).0
}

/// What a server calls when it stops, after the last request: the rate limit's uncounted
/// calls are added to the store and the access log is flushed.
#[derive(Clone)]
pub struct Shutdown {
    limiter: rate_limit::RateLimiter,
    access_log: Arc<dyn AccessLogSink>,
}

impl Shutdown {
    /// Counts and stores what is still held in memory; the first error, if any.
    pub async fn run(&self) -> Result<(), StoreError> {
        let counted = self.limiter.flush().await;
        let logged = self.access_log.flush().await;
        counted.and(logged)
    }
}

/// Serves MCP over stdin/stdout (newline-delimited JSON-RPC, for desktop clients that start
/// the server as a child process) until the client closes stdin; every request is
/// `caller`'s. Stores what is held in memory before returning.
pub async fn serve_stdio(deps: McpDeps, caller: ApiKey) -> Result<(), StdioError> {
    use rmcp::ServiceExt;
    let limiter = rate_limit::RateLimiter::new(
        deps.store.clone(),
        Arc::clone(&deps.clock),
        deps.settings.rate_limit_per_minute,
    );
    let shutdown = Shutdown {
        limiter: limiter.clone(),
        access_log: Arc::clone(&deps.access_log),
    };
    let handler = server::SelfbuildMcp::new(Arc::new(deps), limiter).for_local_caller(caller);
    let running = handler
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| StdioError::Transport(e.to_string()))?;
    let ended = running
        .waiting()
        .await
        .map_err(|e| StdioError::Transport(e.to_string()));
    shutdown.run().await?;
    ended.map(|_| ())
}

/// Why serving over stdio stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The stdio transport failed (the client sent no valid `initialize`, a pipe broke).
    #[error("MCP over stdio: {0}")]
    Transport(String),
    /// What was held in memory could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// [`app`], and what to call when the server stops.
pub fn app_with_shutdown(deps: McpDeps) -> (Router, Shutdown) {
    let limiter = rate_limit::RateLimiter::new(
        deps.store.clone(),
        Arc::clone(&deps.clock),
        deps.settings.rate_limit_per_minute,
    );
    let shutdown = Shutdown {
        limiter: limiter.clone(),
        access_log: Arc::clone(&deps.access_log),
    };
    let deps = Arc::new(deps);
    let handler = server::SelfbuildMcp::new(Arc::clone(&deps), limiter);
    // Host checks are done by the guard (with wildcards, which rmcp's exact list lacks).
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(deps.settings.max_body_bytes)
        .disable_allowed_hosts();
    let service_handler = handler.clone();
    let endpoint = direct::Endpoint {
        rmcp: StreamableHttpService::new(
            move || Ok(service_handler.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        ),
        handler,
    };
    let router = Router::new()
        .route("/", any(direct::endpoint))
        .route("/mcp", any(direct::endpoint))
        .with_state(Arc::new(endpoint))
        .layer(axum::middleware::from_fn_with_state(deps, guard::guard));
    (router, shutdown)
}
