//! The `selfbuild` command line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use selfbuild_core::Config;
use selfbuild_core::clock::{Clock, FixedClock, SystemClock};
use selfbuild_core::emf::{MetricRecord, MetricSink, emf_line};
use selfbuild_core::error::StableError;
use selfbuild_core::intake::{IntakeDeps, handle_event};
use selfbuild_core::ports::{HaltState, HaltSwitch};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alarms::FileAlarmSource;
use crate::orchestrator::RecordingOrchestrator;
use crate::store::SqliteStore;

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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a function's handler on an event and print its JSON result.
    Invoke {
        /// The function.
        function: Function,
        /// The event file, or `-` for stdin.
        event: PathBuf,
        /// Saved `aws cloudwatch describe-alarms` output that the poller reads
        /// [default: DATA_DIR/alarms.json].
        #[arg(long, env = "SELFBUILD_ALARMS")]
        alarms: Option<PathBuf>,
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
    /// Print the halt switch.
    Status,
    /// Run every scenario as a full improvement cycle offline and print a summary table.
    Demo {
        /// A scenario file, or a folder of them.
        #[arg(long, default_value = "events/scenarios")]
        scenarios: PathBuf,
        /// Virtual seconds per real second (3600: an hour of canary monitoring takes a second).
        #[arg(long, default_value_t = 3600.0)]
        time_scale: f64,
    },
}

/// The functions `invoke` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Function {
    /// CloudWatch alarm events, the daily schedule and the poll tick.
    AlarmIntake,
}

fn parse_now(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-11-22T05:00:01Z: {e}"))
}

/// A failed command: what to print and the error type.
#[derive(Debug)]
pub struct CliError {
    /// The stable error type, e.g. `InvalidEvent`.
    pub error_type: &'static str,
    /// What went wrong.
    pub message: String,
}

impl<E: StableError> From<E> for CliError {
    fn from(e: E) -> Self {
        Self {
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

fn cli_error(error_type: &'static str, message: impl Into<String>) -> CliError {
    CliError {
        error_type,
        message: message.into(),
    }
}

/// Logs to stderr; `RUST_LOG` sets the level (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the command, printing its JSON result on stdout or an error on stderr.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::Demo {
        scenarios,
        time_scale,
    } = &cli.command
    {
        return demo(&cli.data_dir, scenarios, *time_scale).await;
    }
    match execute(cli).await {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{text}").is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error[{}]: {}", e.error_type, e.message);
            ExitCode::from(1)
        }
    }
}

/// Runs the command and returns its JSON result.
pub async fn execute(cli: Cli) -> Result<Value, CliError> {
    let config = Config::from_env()?;
    let clock: Box<dyn Clock> = match cli.now {
        Some(now) => Box::new(FixedClock(now)),
        None => Box::new(SystemClock),
    };
    match cli.command {
        Command::Invoke {
            function: Function::AlarmIntake,
            event,
            alarms,
        } => {
            let event = read_event(&event)?;
            let store = SqliteStore::open(&cli.data_dir)?;
            let alarms =
                FileAlarmSource::new(alarms.unwrap_or_else(|| cli.data_dir.join("alarms.json")));
            let orchestrator = RecordingOrchestrator::new(store.clone(), clock.as_ref());
            let metrics = LogMetrics {
                namespace: config.metrics_namespace.clone(),
            };
            let deps = IntakeDeps {
                claims: &store,
                halt: &store,
                orchestrator: &orchestrator,
                alarms: &alarms,
                clock: clock.as_ref(),
                metrics: &metrics,
            };
            let response = handle_event(deps, &config, &event).await?;
            serde_json::to_value(response).map_err(|e| cli_error("Internal", e.to_string()))
        }
        Command::Halt { reason, actor } => {
            if reason.trim().is_empty() {
                return Err(cli_error("InvalidInput", "--reason must not be empty"));
            }
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
        Command::Demo { .. } => Err(cli_error(
            "InvalidInput",
            "demo prints a table, not JSON; run it through `selfbuild demo`",
        )),
        Command::Status => {
            let store = SqliteStore::open(&cli.data_dir)?;
            Ok(halt_json(store.halt_state().await?.as_ref()))
        }
    }
}

fn halt_json(halt: Option<&HaltState>) -> Value {
    match halt {
        Some(h) => json!({
            "halted": true,
            "reason": h.reason,
            "actor": h.actor,
            "since": h.since.format(&Rfc3339).ok(),
        }),
        None => json!({"halted": false}),
    }
}

/// Reads an event from a file, or stdin for `-`.
fn read_event(path: &Path) -> Result<Value, CliError> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| cli_error("InvalidEvent", format!("stdin: {e}")))?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cli_error("InvalidEvent", format!("{}: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    serde_json::from_str(&text)
        .map_err(|e| cli_error("InvalidEvent", format!("{name} is not JSON: {e}")))
}

/// Metrics as EMF lines in the debug log (stdout is for the result).
struct LogMetrics {
    namespace: String,
}

impl MetricSink for LogMetrics {
    fn record(&self, metric: MetricRecord) {
        tracing::debug!(emf = %emf_line(&self.namespace, &metric), "metric");
    }
}

/// Runs the demo scenarios; exit 0 only if every one ends as its file expects.
async fn demo(data_dir: &Path, scenarios: &Path, time_scale: f64) -> ExitCode {
    if !(time_scale.is_finite() && time_scale > 0.0) {
        eprintln!("error[InvalidInput]: --time-scale must be a positive number");
        return ExitCode::from(2);
    }
    let files = if scenarios.is_dir() {
        match crate::demo::scenario_files(scenarios) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error[InvalidInput]: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        vec![scenarios.to_path_buf()]
    };
    let options = crate::demo::DemoOptions {
        time_scale,
        data_dir: data_dir.join("demo"),
    };
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut failed = false;
    for file in &files {
        println!("▶ {}", file.display());
        match crate::demo::run_scenario(file, &options, Box::new(std::io::stdout())).await {
            Ok(row) => {
                failed |= !row.passed;
                rows.push(row);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    println!();
    println!("{}", crate::demo::summary_table(&rows));
    println!(
        "\n{} of {} scenarios as expected, {:.1} s",
        rows.iter().filter(|r| r.passed).count(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
