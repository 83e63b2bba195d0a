//! The `selfbuild` command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use selfbuild_core::Config;
use selfbuild_core::clock::{FixedClock, SystemClock};
use selfbuild_core::emf::TracingSink;
use selfbuild_core::ids::ImprovementId;
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::intake::{IntakeDeps, handle_event};
use selfbuild_core::ports::{Clock, HaltState, HaltSwitch};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alarms::FileAlarmSource;
use crate::inspect::{ListCommand, ShowCommand};
pub use crate::invoke::Function;
use crate::orchestrator::RecordingOrchestrator;
pub use crate::output::{CliError, cli_error};
use crate::output::{EXIT_FAILED, OutputFormat, read_error, render, utc};
use crate::serve::ServeLimits;
use crate::store::SqliteStore;

/// Prints a line on stdout, as `println!` does, without its panic on a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!($($arg)*))
    };
}

/// One line on stdout. A closed pipe (`selfbuild demo | head`) ends the process quietly with
/// the status a death by SIGPIPE gives (141), as other command-line tools end.
fn say_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error[Io]: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// The `selfbuild` command's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "selfbuild",
    version,
    about = "Run selfbuild's Lambda handlers offline, on embedded adapters"
)]
pub struct Cli {
    /// Directory of the embedded store.
    #[arg(
        long,
        global = true,
        env = "SELFBUILD_DATA_DIR",
        default_value = ".selfbuild"
    )]
    pub data_dir: PathBuf,
    /// Fix the clock at this RFC 3339 instant (e.g. 2026-11-22T05:00:01Z).
    #[arg(long, global = true, env = "SELFBUILD_NOW", value_parser = parse_now)]
    pub now: Option<OffsetDateTime>,
    /// How results print on stdout [default: table for status, list, show and report; json
    /// for the others].
    #[arg(long, global = true, env = "SELFBUILD_OUTPUT", value_enum)]
    pub output: Option<OutputFormat>,
    /// Print only the result: no progress lines (demo, cycle) and no summary on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a function's handler on a payload and print its JSON result: alarm-intake on an
    /// event (events/*.json), a step on its payload (events/steps/*.json) over a scenario's
    /// simulated fleet.
    Invoke {
        /// The function.
        function: Function,
        /// The event or payload file, or `-` for stdin.
        event: PathBuf,
        /// Saved `aws cloudwatch describe-alarms` output that the poller reads
        /// [default: DATA_DIR/alarms.json].
        #[arg(long, env = "SELFBUILD_ALARMS")]
        alarms: Option<PathBuf>,
        /// The fleet a step works on (not alarm-intake).
        #[arg(long, default_value = "events/scenarios/timeouts.json")]
        scenario: PathBuf,
    },
    /// Set the halt switch: no new cycles or deploys until `resume`.
    Halt {
        /// Why (recorded with the switch).
        #[arg(long)]
        reason: String,
        /// Who is halting.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Clear the halt switch.
    Resume,
    /// Run one self health pass over the data directory: executions failed since the last
    /// pass or running too long, the store, the LLM breakers; heal what it can, disable a
    /// component after 3 failed heals; store and print the report. Exit status 1 when it
    /// found problems.
    Health {
        /// A scenario whose fleet's functions are observed as the registered components
        /// (error rates, when errors began); a rollback heal acts on that fleet. Without it
        /// components are not observed.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Re-enable a component the health pass disabled (its failed heals back to 0); audited.
    EnableComponent {
        /// The component's name.
        name: String,
        /// Who is re-enabling it.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Print the halt switch, running cycles, approvals waiting, improvements by status and
    /// the latest cycles.
    Status,
    /// List cycles or improvements in the data directory, newest first.
    List {
        /// What to list.
        #[command(subcommand)]
        what: ListCommand,
    },
    /// Show one cycle or improvement with its audit trail.
    Show {
        /// What to show.
        #[command(subcommand)]
        what: ShowCommand,
    },
    /// Write one improvement as a self-contained HTML page (charts of canary vs stable at
    /// every look, the rule that fired, the change and its findings, the audit timeline) and
    /// print where it is.
    Report {
        /// The improvement id (`<cycle>-<rank>`).
        id: String,
        /// Where to write the page [default: DATA_DIR/reports/<id>.html].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a shell completion script (`selfbuild completions bash > …`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run one cycle from an intake event, over a scenario's fleet, on event-driven virtual
    /// time; a change that needs approval waits for a person (`approve`/`reject`).
    Cycle {
        /// The EventBridge event (alarm or schedule) intake receives.
        #[arg(long)]
        event: PathBuf,
        /// The scenario whose fleet the cycle works on.
        #[arg(long, default_value = "events/scenarios/timeouts.json")]
        scenario: PathBuf,
        /// Removed: virtual time is event-driven; accepted only to say so.
        #[arg(long, hide = true)]
        time_scale: Option<String>,
    },
    /// Approve a change that waits for approval (a CRITICAL one needs two approvers).
    Approve {
        /// The improvement id (`<cycle>-<rank>`), as the waiting cycle prints it.
        id: String,
        /// Who approves.
        #[arg(long, default_value = "cli")]
        actor: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a change that waits for approval.
    Reject {
        /// The improvement id.
        id: String,
        /// Who rejects.
        #[arg(long, default_value = "cli")]
        actor: String,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Serve the MCP endpoint on TCP over the embedded adapters (keys from
    /// SELFBUILD_API_KEYS or --api-keys-file).
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8787")]
        addr: std::net::SocketAddr,
        /// The fleet the tools read telemetry from and started cycles work on.
        #[arg(long, default_value = "events/scenarios/timeouts.json")]
        scenario: PathBuf,
        /// Removed: virtual time is event-driven; accepted only to say so.
        #[arg(long, hide = true)]
        time_scale: Option<String>,
        /// A file with the API key list (JSON); else SELFBUILD_API_KEYS.
        #[arg(long, env = "SELFBUILD_API_KEYS_FILE")]
        api_keys_file: Option<PathBuf>,
        /// Seconds a connection has to send a request's headers, from its opening or its
        /// previous response (so also the idle keep-alive timeout).
        #[arg(long, env = "SELFBUILD_SERVE_HEADER_TIMEOUT", value_name = "SECONDS",
              default_value_t = ServeLimits::default().header_timeout.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        header_timeout: u64,
        /// Seconds a request's body has to arrive once its headers have.
        #[arg(long, env = "SELFBUILD_SERVE_BODY_TIMEOUT", value_name = "SECONDS",
              default_value_t = ServeLimits::default().body_timeout.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_timeout: u64,
        /// Connections served at once; more wait until one closes.
        #[arg(long, env = "SELFBUILD_SERVE_MAX_CONNECTIONS",
              default_value_t = ServeLimits::default().max_connections,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
        max_connections: usize,
    },
    /// Serve the MCP tools to a local client over stdin/stdout (newline-delimited JSON-RPC),
    /// for desktop clients that start their servers as child processes (docs/mcp.md).
    Mcp {
        /// Speak MCP on stdin/stdout (the only transport of this command; `serve` speaks
        /// HTTP).
        #[arg(long, required = true)]
        stdio: bool,
        /// The fleet the tools read telemetry from and started cycles work on.
        #[arg(long, default_value = "events/scenarios/timeouts.json")]
        scenario: PathBuf,
        /// A file with the API key list (JSON); else SELFBUILD_API_KEYS. Read only with
        /// SELFBUILD_MCP_KEY.
        #[arg(long, env = "SELFBUILD_API_KEYS_FILE")]
        api_keys_file: Option<PathBuf>,
        /// The key this session acts with (its tenant and scopes apply); without one the
        /// session is the local administrator.
        #[arg(long = "key", env = "SELFBUILD_MCP_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// Validate one file's code patch (docs/validation.md) and print
    /// `{"decision", "risk", "findings"}`; exit 0 allow, 2 needs_approval or block, 1 error.
    ValidatePatch {
        /// The file's repository path (decides protected paths and the handler's file).
        #[arg(long)]
        path: String,
        /// The file as it is now; `/dev/null` for a new file.
        #[arg(long)]
        base: PathBuf,
        /// The unified diff (`--- a/<path>` / `+++ b/<path>`).
        #[arg(long)]
        diff: PathBuf,
        /// The language [default: from the path's extension].
        #[arg(long)]
        language: Option<PatchLanguage>,
        /// The tenant the patch is scoped to.
        #[arg(long)]
        tenant: Option<String>,
        /// The target's configured handler (`orders.handler`, `bootstrap`).
        #[arg(long)]
        handler: Option<String>,
    },
    /// Validate a whole proposal (the `propose_change` input: a `code_patch` against the files
    /// of a checkout, or a `lambda_config` against `--current`) as the validate step would and
    /// print `{"decision", "risk", "approvals_required", "findings"}`; exit 0 allow, 2
    /// needs_approval or block, 1 error.
    Validate {
        /// The proposal JSON file.
        proposal: PathBuf,
        /// The checkout a code patch's paths are relative to.
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The tenant the change is scoped to [default: system-wide, which always needs an
        /// approval].
        #[arg(long)]
        tenant: Option<String>,
        /// The function's current settings as JSON (`{"memory_mb", "timeout_seconds",
        /// "reserved_concurrency", "environment"}`), for a `lambda_config` proposal.
        #[arg(long)]
        current: Option<PathBuf>,
    },
    /// Run every scenario as a full improvement cycle offline, on event-driven virtual time,
    /// and print a summary table.
    Demo {
        /// A scenario file, or a folder of them.
        #[arg(long, default_value = "events/scenarios")]
        scenarios: PathBuf,
        /// Run each scenario on this many seeds (its own, then the next ones) and print the
        /// pass rate per safety group; progress lines are left out.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        seeds: u64,
        /// Removed: virtual time is event-driven; accepted only to say so.
        #[arg(long, hide = true)]
        time_scale: Option<String>,
    },
    /// Work on log lines (docs/logmine.md).
    Logs {
        /// What to do with them.
        #[command(subcommand)]
        command: LogsCommand,
    },
}

/// The `logs` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Group log lines into templates: one JSON object per input record on stdout,
    /// {"line": n, "template_id": id, "template": "…"} with each record's final template;
    /// a summary (templates, counts, lines/s) on stderr.
    Mine {
        /// The log file, or `-` for stdin.
        input: PathBuf,
        /// How the input is laid out.
        #[arg(long, value_enum, default_value_t = crate::logs::Format::Lines)]
        format: crate::logs::Format,
        /// The message column (csv).
        #[arg(long, default_value = "Content")]
        column: String,
        /// The message field, a dotted path (jsonl).
        #[arg(long, default_value = "message")]
        field: String,
    },
}

/// The languages `validate-patch --language` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatchLanguage {
    /// Python 3.
    Python,
    /// JavaScript (with JSX).
    Javascript,
    /// TypeScript (with TSX for `.tsx` paths).
    Typescript,
    /// Rust.
    Rust,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl PatchLanguage {
    fn language(self, path: &str) -> selfbuild_validate::Language {
        use selfbuild_validate::Language;
        match self {
            Self::Python => Language::Python,
            Self::Javascript => Language::JavaScript,
            Self::Typescript if Language::from_path(path) == Language::Tsx => Language::Tsx,
            Self::Typescript => Language::TypeScript,
            Self::Rust => Language::Rust,
            Self::Json => Language::Json,
            Self::Yaml => Language::Yaml,
        }
    }
}

fn parse_now(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-11-22T05:00:01Z: {e}"))
}

/// Logs to stderr; `RUST_LOG` sets the level (default `warn`).
pub fn init_tracing() {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    // Colours only on a terminal: escape codes in a file or a pipe are noise to a reader.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ =
        tracing::subscriber::set_global_default(log_subscriber(&directives, ansi, std::io::stderr));
}

/// `selfbuild`'s log format (text, one event a line, colours when `ansi`) at `directives`
/// (`RUST_LOG` syntax; unparsable means `warn`), written to `writer`.
pub fn log_subscriber<W>(
    directives: &str,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .finish()
}

/// Refuses flags that were removed, saying what replaced them (a usage error, exit 2).
fn refuse_removed_flags(command: &Command) -> Result<(), CliError> {
    match command {
        Command::Demo {
            time_scale: Some(_),
            ..
        }
        | Command::Cycle {
            time_scale: Some(_),
            ..
        }
        | Command::Serve {
            time_scale: Some(_),
            ..
        } => Err(cli_error(
            "InvalidInput",
            "--time-scale was removed: cycles now run on event-driven virtual time (waits \
             take no real time, and the same scenario always gives the same timeline; a \
             person's approval window runs at real pace)",
        )
        .usage()
        .hint("drop the flag")),
        _ => Ok(()),
    }
}

/// Prints `value` on stdout as `format` asks.
fn print_result(value: &Value, format: OutputFormat) -> ExitCode {
    say!("{}", render(value, format));
    ExitCode::SUCCESS
}

/// Runs the command: its result on stdout, progress and errors on stderr; the exit status
/// (docs/cli.md#exit-codes).
pub async fn run(cli: Cli) -> ExitCode {
    if let Err(e) = refuse_removed_flags(&cli.command) {
        return e.report();
    }
    match run_command(cli).await {
        Ok(code) => code,
        Err(e) => e.report(),
    }
}

async fn run_command(cli: Cli) -> Result<ExitCode, CliError> {
    // People read status, list, show and report; scripts read the rest.
    let human = matches!(
        cli.command,
        Command::Status
            | Command::List { .. }
            | Command::Show { .. }
            | Command::Report { .. }
            | Command::Health { .. }
    );
    let is_health = matches!(cli.command, Command::Health { .. });
    let format = cli.output.unwrap_or(if human {
        OutputFormat::Table
    } else {
        OutputFormat::Json
    });
    match &cli.command {
        Command::Logs {
            command:
                LogsCommand::Mine {
                    input,
                    format,
                    column,
                    field,
                },
        } => Ok(crate::logs::run_mine(input, *format, column, field)),
        Command::ValidatePatch {
            path,
            base,
            diff,
            language,
            tenant,
            handler,
        } => {
            let args = PatchArgs {
                path,
                base,
                diff,
                language: *language,
                tenant: tenant.as_deref(),
                handler: handler.as_deref(),
            };
            let (decision, json) = validate_patch(&args)?;
            say!("{json}");
            Ok(if decision == selfbuild_validate::CodeDecision::Allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::output::EXIT_USAGE)
            })
        }
        Command::Validate {
            proposal,
            repo,
            tenant,
            current,
        } => {
            let args = crate::proposal::ProposalArgs {
                proposal,
                repo,
                tenant: tenant.as_deref(),
                current: current.as_deref(),
            };
            let config = Config::from_env()?;
            let settings = selfbuild_validate::Settings::from_env()?;
            let (decision, json) =
                crate::proposal::validate_proposal(&args, &config, settings).await?;
            say!("{json}");
            Ok(
                if decision == selfbuild_core::improvement::ValidationDecision::AutoDeploy {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(crate::output::EXIT_USAGE)
                },
            )
        }
        Command::Demo {
            scenarios, seeds, ..
        } => demo(&cli.data_dir, scenarios, *seeds, cli.quiet).await,
        Command::Serve {
            addr,
            scenario,
            api_keys_file,
            header_timeout,
            body_timeout,
            max_connections,
            ..
        } => {
            let options = crate::serve::ServeOptions {
                addr: *addr,
                scenario: scenario.clone(),
                api_keys_file: api_keys_file.clone(),
                data_dir: cli.data_dir.clone(),
                now: cli.now,
                limits: ServeLimits {
                    header_timeout: std::time::Duration::from_secs(*header_timeout),
                    body_timeout: std::time::Duration::from_secs(*body_timeout),
                    max_connections: *max_connections,
                },
            };
            crate::serve::serve(options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp {
            scenario,
            api_keys_file,
            key,
            ..
        } => {
            let options = crate::serve::StdioOptions {
                scenario: scenario.clone(),
                api_keys_file: api_keys_file.clone(),
                key: key.clone(),
                data_dir: cli.data_dir.clone(),
                now: cli.now,
            };
            crate::serve::serve_stdio(options).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cycle {
            event, scenario, ..
        } => {
            let summary = cycle(&cli.data_dir, cli.now, event, scenario, cli.quiet).await?;
            Ok(print_result(&summary, format))
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "selfbuild", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let mut value = execute(cli).await?;
            // Health answers 1 when it found problems (docs/cli.md#exit-codes).
            let problems = is_health && value["healthy"] != Value::Bool(true);
            if human {
                crate::output::normalize_times(&mut value);
            }
            let code = print_result(&value, format);
            Ok(if problems {
                ExitCode::from(EXIT_FAILED)
            } else {
                code
            })
        }
    }
}

/// Runs a command whose result is one JSON value, and returns it.
pub async fn execute(cli: Cli) -> Result<Value, CliError> {
    let clock: Arc<dyn Clock> = match cli.now {
        Some(now) => Arc::new(FixedClock(now)),
        None => Arc::new(SystemClock),
    };
    match cli.command {
        Command::Invoke {
            function,
            event,
            alarms,
            scenario,
        } => {
            let payload = read_event(&event)?;
            let alarms = alarms.unwrap_or_else(|| cli.data_dir.join("alarms.json"));
            crate::invoke::invoke(crate::invoke::Invocation {
                function,
                payload,
                data_dir: &cli.data_dir,
                clock,
                alarms: &alarms,
                scenario: &scenario,
            })
            .await
        }
        Command::Halt { reason, actor } => {
            // The same rule as the MCP emergency_stop: one line, as it is shown and logged.
            let text = |field, value: &str, max| {
                selfbuild_core::text::single_line(field, value, max)
                    .map_err(|e| cli_error("InvalidInput", e.to_string()))
            };
            let reason = text("--reason", &reason, 1000)?;
            let actor = text("--actor", &actor, 200)?;
            let store = SqliteStore::open(&cli.data_dir)?;
            let halt = HaltState {
                reason,
                actor,
                since: clock.now(),
            };
            store.set_halt(&halt).await?;
            Ok(halt_json(Some(&halt)))
        }
        Command::Resume => {
            let store = SqliteStore::open(&cli.data_dir)?;
            let was_halted = store.clear_halt().await?;
            Ok(json!({"halted": false, "was_halted": was_halted}))
        }
        Command::Health { scenario } => {
            let config = Config::from_env()?;
            let store = SqliteStore::open(&cli.data_dir)?;
            let fleet = match scenario {
                Some(path) => Some(
                    crate::fleet::Fleet::new(&load_scenario(&path)?, Arc::clone(&clock))
                        .map_err(|e| cli_error("ExecutionFailed", e.to_string()))?,
                ),
                None => None,
            };
            let (report, metrics) =
                crate::health::health_pass(&store, clock, &config, fleet.as_ref()).await;
            Ok(crate::health::report_json(&report, &metrics))
        }
        Command::EnableComponent { name, actor } => {
            let text = |field, value: &str, max| {
                selfbuild_core::text::single_line(field, value, max)
                    .map_err(|e| cli_error("InvalidInput", e.to_string()))
            };
            let name = text("name", &name, 200)?;
            let actor = text("--actor", &actor, 200)?;
            let store = SqliteStore::open(&cli.data_dir)?;
            Ok(crate::health::enable_component(&store, &name, &actor, clock.now()).await?)
        }
        Command::Demo { .. }
        | Command::Cycle { .. }
        | Command::Serve { .. }
        | Command::Logs { .. }
        | Command::Completions { .. }
        | Command::ValidatePatch { .. }
        | Command::Validate { .. }
        | Command::Mcp { .. } => Err(cli_error(
            "InvalidInput",
            "demo, cycle, serve, mcp, logs, completions, validate and validate-patch print \
             their own output and exit codes; run them through `selfbuild`",
        )),
        Command::Approve { id, actor, comment } => {
            decide_cli(&cli.data_dir, clock.as_ref(), &id, &actor, true, comment).await
        }
        Command::Reject { id, actor, comment } => {
            decide_cli(&cli.data_dir, clock.as_ref(), &id, &actor, false, comment).await
        }
        Command::Status => {
            let config = Config::from_env()?;
            let store = SqliteStore::open(&cli.data_dir)?;
            crate::inspect::status(&store, &config).await
        }
        Command::List { what } => {
            let store = SqliteStore::open(&cli.data_dir)?;
            crate::inspect::list(&store, what).await
        }
        Command::Show { what } => {
            let store = SqliteStore::open(&cli.data_dir)?;
            crate::inspect::show(&store, what).await
        }
        Command::Report { id, out } => {
            // The threshold line is drawn where the environment's configuration puts it.
            let config = Config::from_env()?;
            let store = SqliteStore::open(&cli.data_dir)?;
            crate::inspect::report(
                &store,
                &cli.data_dir,
                &id,
                out.as_deref(),
                config.degradation_threshold,
            )
            .await
        }
    }
}

fn halt_json(halt: Option<&HaltState>) -> Value {
    match halt {
        Some(h) => json!({
            "halted": true,
            "reason": h.reason,
            "actor": h.actor,
            "since": utc(h.since),
        }),
        None => json!({"halted": false}),
    }
}

/// Reads an event from a file (or the bundled copy of that path), or stdin for `-`, through
/// intake's event reader (size bound, repeated keys); reads no more than that bound allows.
fn read_event(path: &Path) -> Result<Value, CliError> {
    let limit = selfbuild_core::event::MAX_EVENT_TEXT_BYTES as u64 + 1;
    let (name, read) = if path == Path::new("-") {
        let mut bytes = Vec::new();
        let read = std::io::stdin().take(limit).read_to_end(&mut bytes);
        ("stdin".to_owned(), read.map(|_| bytes))
    } else {
        let read = std::fs::File::open(path).and_then(|file| {
            let mut bytes = Vec::new();
            file.take(limit).read_to_end(&mut bytes).map(|_| bytes)
        });
        match (read, crate::bundled::file(path)) {
            (Err(e), Some(text)) if e.kind() == std::io::ErrorKind::NotFound => (
                format!("{} (bundled)", path.display()),
                Ok(text.as_bytes().to_vec()),
            ),
            (read, _) => (path.display().to_string(), read),
        }
    };
    let bytes = read.map_err(|e| read_error("InvalidEvent", path, format!("{name}: {e}"), &e))?;
    if bytes.len() as u64 == limit {
        return Err(cli_error(
            "InvalidEvent",
            format!(
                "{name}: event: more than the {} bytes of JSON intake reads (EventBridge events \
                 are at most {} bytes)",
                limit - 1,
                selfbuild_core::event::MAX_EVENT_BYTES
            ),
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| cli_error("InvalidEvent", format!("{name} is not UTF-8: {e}")))?;
    selfbuild_core::event::read_event(&text)
        .map_err(|e| cli_error("InvalidEvent", format!("{name}: {e}")))
}

/// Loads a scenario, with the bundled-files hint when the path is missing.
fn load_scenario(path: &Path) -> Result<crate::fleet::Scenario, CliError> {
    crate::fleet::Scenario::load(path).map_err(|e| match &e {
        crate::fleet::ScenarioError::Read { source, .. } => {
            read_error("InvalidInput", path, e.to_string(), source)
        }
        crate::fleet::ScenarioError::Invalid { .. } => cli_error("InvalidScenario", e.to_string()),
        // Loading runs no code; a fleet built from the scenario may fail so.
        crate::fleet::ScenarioError::Run { .. } => cli_error("ExecutionFailed", e.to_string()),
    })
}

/// Runs the demo scenarios on `seeds` seeds each; exit 0 only if every run ends as its file
/// expects.
async fn demo(
    data_dir: &Path,
    scenarios: &Path,
    seeds: u64,
    quiet: bool,
) -> Result<ExitCode, CliError> {
    let files = if scenarios.is_dir() || crate::bundled::dir(scenarios).is_some() {
        crate::demo::scenario_files(scenarios).map_err(|e| cli_error("InvalidInput", e))?
    } else if scenarios.is_file() || crate::bundled::file(scenarios).is_some() {
        vec![scenarios.to_path_buf()]
    } else {
        return Err(cli_error(
            "InvalidInput",
            format!(
                "--scenarios {}: no such file or folder",
                scenarios.display()
            ),
        )
        .hint(crate::bundled::missing_hint(scenarios)));
    };
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut failed = false;
    for file in &files {
        for seed_offset in 0..seeds {
            let options = crate::demo::DemoOptions {
                data_dir: data_dir.join("demo"),
                seed_offset,
            };
            let progress: Box<dyn std::io::Write + Send> = if seeds == 1 && !quiet {
                let bundled = if crate::bundled::is_bundled_only(file) {
                    " (bundled)"
                } else {
                    ""
                };
                say!("▶ {}{bundled}", file.display());
                Box::new(std::io::stdout())
            } else {
                Box::new(std::io::sink())
            };
            match crate::demo::run_scenario(file, &options, progress).await {
                Ok(row) => {
                    if seeds > 1 && !quiet {
                        say!(
                            "{} {} seed {}: {}",
                            if row.passed { "✔" } else { "✘" },
                            row.scenario,
                            row.seed,
                            row.outcome
                        );
                    }
                    failed |= !row.passed;
                    rows.push(row);
                }
                Err(e) => {
                    cli_error("InvalidScenario", e).report();
                    failed = true;
                }
            }
        }
    }
    if !quiet {
        say!("");
    }
    say!("{}", crate::demo::summary_table(&rows));
    for row in rows.iter().filter(|r| !r.passed) {
        for failure in &row.failures {
            say!("✘ {} (seed {}): {failure}", row.scenario, row.seed);
        }
    }
    if seeds > 1 || rows.iter().any(|r| r.group.is_some()) {
        say!("\n{}", crate::demo::safety_table(&rows));
    }
    let reports = rows.iter().map(|r| r.reports.len()).sum::<usize>();
    if reports > 0 && !quiet {
        say!(
            "\nreports: {reports} HTML pages, one per improvement, at {}",
            data_dir
                .join("demo")
                .join(if seeds > 1 {
                    "<scenario>[-s<seed>]"
                } else {
                    "<scenario>"
                })
                .join("reports")
                .join("<improvement-id>.html")
                .display()
        );
    }
    say!(
        "\n{} of {} runs as expected, in {:.1} s of real time",
        rows.iter().filter(|r| r.passed).count(),
        files.len() as u64 * seeds,
        started.elapsed().as_secs_f64()
    );
    Ok(if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `validate-patch`'s arguments.
struct PatchArgs<'a> {
    path: &'a str,
    base: &'a Path,
    diff: &'a Path,
    language: Option<PatchLanguage>,
    tenant: Option<&'a str>,
    handler: Option<&'a str>,
}

/// Reads a file for `validate-patch`, no more than the pipeline accepts.
fn read_patch_file(flag: &str, path: &Path, limit: usize) -> Result<String, CliError> {
    let name = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| cli_error("InvalidInput", format!("{flag} {name}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cli_error("InvalidInput", format!("{flag} {name}: {e}")))?;
    if bytes.len() > limit {
        return Err(cli_error(
            "InvalidInput",
            format!("{flag} {name}: more than the {limit} bytes the pipeline reads"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| cli_error("InvalidInput", format!("{flag} {name} is not UTF-8: {e}")))
}

/// Validates one file's patch: the decision and the JSON to print. The decision is the
/// patch's own under the R8 policy with autonomy on (SAFE/LOW allow; MEDIUM per
/// `MEDIUM_RISK_APPROVALS`); settings from `PROTECTED_PATHS`, `EGRESS_ALLOWED_HOSTS`,
/// `IMPORT_ALLOWED`, `KNOWN_TENANTS`.
fn validate_patch(
    args: &PatchArgs<'_>,
) -> Result<(selfbuild_validate::CodeDecision, Value), CliError> {
    use selfbuild_validate::{CodePolicy, FileInput, MAX_FILE_BYTES, PatchContext, Settings};
    let settings = Settings::from_env()?;
    let lookup = |name: &str| std::env::var(name).ok();
    let env = selfbuild_core::config::Env::new(&lookup);
    let policy = CodePolicy {
        autonomous: true,
        medium_risk_approvals: env.number("MEDIUM_RISK_APPROVALS", 1, 0, 1)?,
    };
    let base = if args.base == Path::new("/dev/null") {
        None
    } else {
        Some(read_patch_file("--base", args.base, MAX_FILE_BYTES)?)
    };
    let diff = read_patch_file("--diff", args.diff, 2 * MAX_FILE_BYTES)?;
    let input = FileInput {
        path: args.path,
        language: args.language.map(|l| l.language(args.path)),
        base: base.as_deref(),
        diff: &diff,
    };
    let context = PatchContext {
        handler: args.handler,
        tenant: args.tenant,
    };
    let report = selfbuild_validate::validate_patch(&[input], &context, &settings)
        .map_err(|e| cli_error("InvalidInput", e.to_string()))?;
    let verdict = report.verdict(&policy);
    Ok((verdict.decision, report.to_json(&verdict)))
}

async fn decide_cli(
    data_dir: &Path,
    clock: &dyn Clock,
    id: &str,
    actor: &str,
    approved: bool,
    comment: Option<String>,
) -> Result<Value, CliError> {
    let store = SqliteStore::open(data_dir)?;
    let tokens = crate::store::StoreTaskTokens(store.clone());
    let ports = selfbuild_core::approval::ApprovalPorts {
        store: &store,
        tokens: &tokens,
        audit: &store,
        improvements: &store,
        clock,
        halt: &store,
    };
    let id = ImprovementId::parse(id).map_err(|e| cli_error("InvalidInput", e.to_string()))?;
    let progress = selfbuild_core::approval::decide(ports, &id, actor, approved, comment).await?;
    serde_json::to_value(progress).map_err(|e| cli_error("Internal", e.to_string()))
}

/// Captures the cycle intake starts, and records it like the embedded orchestrator.
struct CapturingOrchestrator {
    inner: RecordingOrchestrator<SqliteStore, FixedClock>,
    started: std::sync::Mutex<Option<selfbuild_core::cycle::CycleRequest>>,
}

#[async_trait::async_trait]
impl selfbuild_core::ports::Orchestrator for CapturingOrchestrator {
    async fn start_cycle(
        &self,
        request: &selfbuild_core::cycle::CycleRequest,
    ) -> Result<selfbuild_core::ports::CycleHandle, selfbuild_core::error::OrchestratorError> {
        let handle = self.inner.start_cycle(request).await?;
        *self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(request.clone());
        Ok(handle)
    }
}

/// Intake on the event, then, if it started a cycle, that cycle over the scenario's fleet;
/// progress on stderr (none with `quiet`), the result returned for stdout: the cycle's
/// summary, or intake's answer when it started none.
/// Ctrl-C or SIGTERM during `cycle`: the cycle is recorded failed and its approvals closed
/// ([`crate::cycle::abandon`]), then the process exits 130 at once (the cycle's thread, which
/// may wait hours for a person, is not waited for).
async fn interrupted(
    store: &SqliteStore,
    clock: &FixedClock,
    request: &selfbuild_core::cycle::CycleRequest,
    quiet: bool,
) -> ! {
    let out: Box<dyn std::io::Write + Send> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    let id = &request.cycle_id;
    let error = match crate::cycle::abandon(store, clock, id, request.requested_at, out).await {
        Ok(()) => cli_error(
            "Interrupted",
            format!("cycle {id} interrupted: recorded failed, its pending approvals closed"),
        ),
        Err(e) => cli_error("Interrupted", format!("cycle {id} interrupted: {e}")),
    };
    error
        .hint("run `selfbuild cycle` again for a new cycle (a later --now past the 5-minute dedup window)")
        .report();
    std::process::exit(130)
}

async fn cycle(
    data_dir: &Path,
    now: Option<OffsetDateTime>,
    event: &Path,
    scenario: &Path,
    quiet: bool,
) -> Result<Value, CliError> {
    let scenario = load_scenario(scenario)?;
    // The environment's configuration, as `serve` and the functions read it: autonomy is off
    // unless ENABLE_AUTONOMOUS_IMPROVEMENTS says otherwise (only `demo` turns it on).
    let config = Config::from_env()?;
    let event = read_event(event)?;
    let store = SqliteStore::open(data_dir)?;
    // The fleet's "now" is the scenario's; intake decides at the same instant.
    let clock = FixedClock(now.unwrap_or(scenario.now));
    let orchestrator = CapturingOrchestrator {
        inner: RecordingOrchestrator::new(store.clone(), clock),
        started: std::sync::Mutex::new(None),
    };
    let alarms = FileAlarmSource::new(data_dir.join("alarms.json"));
    let metrics = TracingSink {
        namespace: config.metrics_namespace.clone(),
    };
    // Fresh ids on every run, as on AWS: a re-run never mixes its records with an earlier
    // run's (within the dedup window of the same clock, intake suppresses it instead).
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let response = handle_event(deps, &alarms, &config, &event).await?;
    let response = serde_json::to_value(&response).unwrap_or_default();
    let progress = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    progress(format!("intake: {response}"));
    let started = orchestrator
        .started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(request) = started else {
        let cycle = response.get("cycle_id").and_then(Value::as_str);
        if response.get("decision").and_then(Value::as_str) == Some("duplicate") {
            progress(format!(
                "no cycle started: cycle {} holds this dedup window (one cycle per tenant and \
                 component per 5 minutes of the clock, {}); another needs a later --now or a \
                 fresh --data-dir",
                cycle.unwrap_or("?"),
                utc(clock.0)
            ));
        } else {
            progress("no cycle started".to_owned());
        }
        return Ok(response);
    };
    progress(format!("▶ cycle {}", request.cycle_id));
    let out: Box<dyn std::io::Write + Send> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    // A person answers here, not the scenario's recorded approver.
    let run = crate::cycle::run_cycle(
        &scenario,
        &request,
        &store,
        &config,
        out,
        crate::cycle::Approvers::People,
    );
    let output = tokio::select! {
        output = run => output.map_err(|e| cli_error("ExecutionFailed", e))?,
        () = crate::serve::stop_signal() => interrupted(&store, &clock, &request, quiet).await,
    };
    let mut summary = output.get("summary").cloned().unwrap_or(Value::Null);
    crate::output::normalize_times(&mut summary);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_files(before: &str, diff: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("before.py");
        let patch = dir.path().join("patch.diff");
        std::fs::write(&base, before).expect("write");
        std::fs::write(&patch, diff).expect("write");
        (dir, base, patch)
    }

    fn args<'a>(base: &'a Path, diff: &'a Path) -> PatchArgs<'a> {
        PatchArgs {
            path: "src/orders.py",
            base,
            diff,
            language: None,
            tenant: None,
            handler: None,
        }
    }

    #[test]
    fn validate_patch_prints_the_decision_risk_and_located_findings() {
        use selfbuild_validate::CodeDecision;
        let before = "def handler(event, context):\n    return event\n";
        let diff = "--- a/src/orders.py\n+++ b/src/orders.py\n@@ -1,2 +1,2 @@\n def handler(event, context):\n-    return event\n+    return eval(event[\"q\"])\n";
        let (_dir, base, patch) = patch_files(before, diff);
        let (decision, json) = validate_patch(&args(&base, &patch)).expect("validates");
        assert_eq!(decision, CodeDecision::Block);
        assert_eq!(json["decision"], "block");
        assert_eq!(json["risk"], "CRITICAL");
        let f = &json["findings"][0];
        assert_eq!(
            (
                f["rule"].as_str(),
                f["path"].as_str(),
                f["line"].as_u64(),
                f["col"].as_u64()
            ),
            (
                Some("code_execution"),
                Some("src/orders.py"),
                Some(2),
                Some(12)
            )
        );
        let keys: Vec<&String> = f.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["rule", "risk", "path", "line", "col", "message"]);

        let benign = diff.replace("eval(event[\"q\"])", "{\"ok\": True}");
        let (_dir, base, patch) = patch_files(before, &benign);
        let (decision, json) = validate_patch(&args(&base, &patch)).expect("validates");
        assert_eq!(decision, CodeDecision::Allow, "{json}");
    }

    #[test]
    fn validate_patch_errors_name_the_file_or_the_diff_problem() {
        let (_dir, base, patch) = patch_files("x = 1\n", "not a diff\n");
        let e = validate_patch(&args(&base, &patch)).expect_err("malformed");
        assert!(e.message.contains("malformed diff"), "{}", e.message);
        let missing = Path::new("/nonexistent/before.py");
        let e = validate_patch(&args(missing, &patch)).expect_err("unreadable");
        assert!(
            e.message.starts_with("--base /nonexistent/before.py"),
            "{}",
            e.message
        );
    }

    #[test]
    fn validate_patch_parses_its_flags() {
        let cli = Cli::try_parse_from([
            "selfbuild",
            "validate-patch",
            "--path",
            "a.ts",
            "--base",
            "/dev/null",
            "--diff",
            "p.diff",
            "--language",
            "typescript",
            "--tenant",
            "acme",
            "--handler",
            "a.handler",
        ])
        .expect("parses");
        let Command::ValidatePatch {
            language, tenant, ..
        } = cli.command
        else {
            panic!("validate-patch")
        };
        assert_eq!(language, Some(PatchLanguage::Typescript));
        assert_eq!(tenant.as_deref(), Some("acme"));
        assert!(Cli::try_parse_from(["selfbuild", "validate-patch", "--path", "a"]).is_err());
    }

    #[test]
    fn the_removed_time_scale_flag_is_refused_with_the_reason() {
        for args in [
            &["selfbuild", "demo", "--time-scale", "3600"][..],
            &[
                "selfbuild",
                "cycle",
                "--event",
                "e.json",
                "--time-scale",
                "60",
            ],
            &["selfbuild", "serve", "--time-scale", "1"],
        ] {
            let cli = Cli::try_parse_from(args).expect("still parses");
            let e = refuse_removed_flags(&cli.command).expect_err("refused");
            assert_eq!(e.error_type, "InvalidInput");
            assert!(
                e.message.contains("event-driven virtual time"),
                "{}",
                e.message
            );
        }
        let cli = Cli::try_parse_from(["selfbuild", "demo"]).expect("parses");
        assert!(refuse_removed_flags(&cli.command).is_ok());
    }

    #[test]
    fn logs_mine_takes_the_documented_flags() {
        let cli = Cli::try_parse_from(["selfbuild", "logs", "mine", "-"]).expect("parses");
        let Command::Logs {
            command:
                LogsCommand::Mine {
                    input,
                    format,
                    column,
                    field,
                },
        } = cli.command
        else {
            panic!("not logs mine");
        };
        assert_eq!(input, PathBuf::from("-"));
        assert_eq!(format, crate::logs::Format::Lines);
        assert_eq!((column.as_str(), field.as_str()), ("Content", "message"));
        let cli = Cli::try_parse_from([
            "selfbuild",
            "logs",
            "mine",
            "x.csv",
            "--format",
            "csv",
            "--column",
            "Msg",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Logs {
                command: LogsCommand::Mine {
                    format: crate::logs::Format::Csv,
                    ..
                }
            }
        ));
        assert!(
            Cli::try_parse_from(["selfbuild", "logs", "mine", "x", "--format", "xml"]).is_err()
        );
    }
}
