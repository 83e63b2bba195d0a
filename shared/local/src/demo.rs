//! `selfbuild demo`: every scenario in `events/scenarios/` as a full cycle on the embedded
//! adapters, with progress per state and a summary table; passes only if each scenario ends
//! as its file expects.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selfbuild_core::Config;
use selfbuild_core::approval::{ApprovalPorts, ApprovalStore, decide};
use selfbuild_core::clock::Clock;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::generate::Llm;
use selfbuild_core::ids::{CycleId, DedupKey};
use serde_json::Value;

use crate::asl::{ExecutionOptions, Observer, StateRef, TaskTokens, run_execution};
use crate::cycle::{LocalSteps, ScaledClock, load_state_machine};
use crate::fleet::{Fleet, Scenario};
use crate::planner::{RecordedAnswer, RecordedLlm, RulePlanner};
use crate::store::{SqliteStore, StoreTaskTokens};

/// One scenario's result, a row of the summary table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub scenario: String,
    /// The cycle that ran.
    pub cycle_id: String,
    /// The top opportunity, `<component>:<kind>`.
    pub opportunity: String,
    /// The change, in words.
    pub change: String,
    /// The risk validation found.
    pub risk: String,
    /// auto_deploy, needs_approval or rejected.
    pub decision: String,
    /// promoted, rolled_back, …
    pub outcome: String,
    /// Real seconds the cycle took.
    pub seconds: f64,
    /// What the scenario file expects, and whether it happened.
    pub expected: String,
    /// Whether the outcome matched.
    pub passed: bool,
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Virtual seconds per real second (3600: an hour of monitoring takes a second).
    pub time_scale: f64,
    /// Where each scenario's store goes (`<dir>/<scenario>/`).
    pub data_dir: PathBuf,
}

/// The scenario files in `dir`, sorted.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no scenario files (*.json)", dir.display()));
    }
    Ok(files)
}

/// Prints each state as it is entered, with the virtual time since the cycle began.
struct Progress {
    clock: Arc<dyn Clock>,
    start: time::OffsetDateTime,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Observer for Progress {
    fn on_state_entered(&self, state: StateRef<'_>, input: &Value) {
        let elapsed = (self.clock.now() - self.start).whole_seconds();
        let indent = "  ".repeat(state.iterations.len() + 1);
        let item = state
            .iterations
            .last()
            .map(|i| format!(" [item {}]", i.index + 1))
            .unwrap_or_default();
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "{indent}T+{:02}:{:02}:{:02} {}{item}",
            elapsed / 3600,
            elapsed / 60 % 60,
            elapsed % 60,
            state.name
        );
        if state.name == "AwaitApproval" {
            let id = format!(
                "{}-{}",
                text(input.get("cycle_id")),
                text(input.pointer("/opportunity/rank"))
            );
            let _ = writeln!(
                out,
                "{indent}  waiting for approval: selfbuild approve {id}   (or: selfbuild reject {id})"
            );
        }
    }
}

/// Runs one scenario as a cycle and checks it against its expectation.
pub async fn run_scenario(
    path: &Path,
    options: &DemoOptions,
    progress: Box<dyn Write + Send>,
) -> Result<ScenarioResult, String> {
    let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    let dir = options.data_dir.join(&scenario.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let store = SqliteStore::open(&dir).map_err(|e| e.to_string())?;
    let config = demo_config()?;
    let request = scenario_request(&scenario, &config);
    let started = Instant::now();
    let output = run_cycle(
        &scenario,
        &request,
        &store,
        &config,
        options.time_scale,
        progress,
        scenario.approval.clone(),
    )
    .await?;
    Ok(result_row(
        &scenario,
        &output,
        started.elapsed().as_secs_f64(),
    ))
}

/// The configuration cycles run with offline: the environment's, with autonomy on.
pub fn demo_config() -> Result<Config, String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    // The demo shows the autonomous loop; on AWS it is off until you turn it on.
    config.autonomous_improvements = true;
    Ok(config)
}

/// A routine cycle over every function of the scenario, as the daily schedule would start it.
pub fn scenario_request(scenario: &Scenario, config: &Config) -> CycleRequest {
    let tenants: Vec<_> = scenario
        .functions
        .iter()
        .map(|f| f.tenant.clone())
        .collect();
    let tenant = tenants
        .first()
        .cloned()
        .flatten()
        .filter(|t| tenants.iter().all(|x| x.as_ref() == Some(t)));
    let components: Vec<_> = scenario.functions.iter().map(|f| f.name.clone()).collect();
    let key = DedupKey::new(tenant.clone(), components.first().cloned());
    CycleRequest {
        cycle_id: CycleId::for_claim(&key, scenario.now),
        mode: CycleMode::Routine,
        tenant_id: tenant,
        components,
        analysis_window: TimeWindow {
            start: scenario.now - time::Duration::hours(i64::from(config.routine_window_hours)),
            end: scenario.now,
        },
        max_improvements: config.max_improvements,
        max_concurrency: config.max_concurrent_improvements,
        dry_run: false,
        trigger: Trigger::Schedule {
            rule: Some("selfbuild demo".into()),
        },
        dedup_key: key.as_str().to_owned(),
        requested_at: scenario.now,
    }
}

/// Runs `request` as an execution over the scenario's fleet, with `store` for the halt
/// switch and approvals; task results other processes queue in the store (`selfbuild
/// approve`) reach the execution. `approver`, if given, approves or rejects each change
/// that waits (`{"decision": "approved"|"rejected", "actor"|"actors", "comment"}`).
pub async fn run_cycle(
    scenario: &Scenario,
    request: &CycleRequest,
    store: &SqliteStore,
    config: &Config,
    time_scale: f64,
    progress: Box<dyn Write + Send>,
    approver: Option<Value>,
) -> Result<Value, String> {
    let start = request.requested_at;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(start, time_scale));
    let fleet = Fleet::new(scenario, Arc::clone(&clock)).map_err(|e| e.to_string())?;
    let llm: Box<dyn Llm> = match recorded_answers(scenario)? {
        Some(answers) => Box::new(RecordedLlm::new(answers, RulePlanner)),
        None => Box::new(RulePlanner),
    };
    let input = serde_json::to_value(request).map_err(|e| e.to_string())?;
    let machine = load_state_machine().map_err(|e| e.to_string())?;
    let tokens = TaskTokens::new();
    let shared = Arc::new(store.clone());
    let steps = LocalSteps {
        fleet,
        llm,
        halt: shared.clone(),
        approvals: shared.clone(),
        audit: shared.clone(),
        notifier: shared.clone(),
        improvements: shared.clone(),
        usage: shared.clone(),
        cycles: shared.clone(),
        metrics: Arc::new(selfbuild_core::emf::TracingSink {
            namespace: config.metrics_namespace.clone(),
        }),
        clock: Arc::clone(&clock),
        config: config.clone(),
    };
    let observer = Progress {
        clock: Arc::clone(&clock),
        start,
        out: Mutex::new(progress),
    };
    let forwarder = spawn_forwarder(store.clone(), tokens.clone());
    let approver = approver.map(|a| {
        spawn_approver(
            a,
            Arc::clone(&clock),
            store.clone(),
            request.cycle_id.clone(),
            config.max_improvements,
        )
    });
    let result = run_execution(
        &machine,
        request.cycle_id.as_str(),
        input,
        &steps,
        &tokens,
        &observer,
        &ExecutionOptions {
            time_scale,
            ..ExecutionOptions::starting_at(start)
        },
    )
    .await;
    forwarder.abort();
    if let Some(task) = approver {
        task.abort();
    }
    result.map_err(|f| {
        format!(
            "{}: execution failed: {}: {}",
            request.cycle_id, f.error, f.cause
        )
    })
}

/// Delivers task results queued in the store (by this or another process) to the execution.
fn spawn_forwarder(store: SqliteStore, tokens: TaskTokens) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.take_task_results().await {
                Ok(results) => {
                    for (token, output) in results {
                        if let Err(e) = tokens.send_success(&token, output) {
                            tracing::warn!(error = %e, "a queued task result matched no waiting task");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read queued task results"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn recorded_answers(scenario: &Scenario) -> Result<Option<Vec<RecordedAnswer>>, String> {
    let Some(recorded) = scenario.llm.as_ref().and_then(|l| l.get("recorded")) else {
        return Ok(None);
    };
    serde_path_to_error::deserialize(recorded)
        .map(Some)
        .map_err(|e| {
            format!(
                "{}: llm.recorded.{}: {}",
                scenario.name,
                e.path(),
                e.inner()
            )
        })
}

/// Plays the scenario's approver: approves (or rejects) each change that waits, through the
/// same path as `selfbuild approve`.
fn spawn_approver(
    approval: Value,
    clock: Arc<dyn Clock>,
    store: SqliteStore,
    cycle_id: CycleId,
    max_improvements: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let approved = approval.get("decision").and_then(Value::as_str) != Some("rejected");
        let actors: Vec<String> = match (approval.get("actors"), approval.get("actor")) {
            (Some(Value::Array(list)), _) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            (_, Some(Value::String(a))) => vec![a.clone()],
            _ => vec!["demo-approver".to_owned()],
        };
        let comment = approval
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let sink = StoreTaskTokens(store.clone());
        loop {
            for rank in 1..=max_improvements {
                let id = format!("{cycle_id}-{rank}");
                if let Ok(Some(_)) = store.get_pending(&id).await {
                    for actor in &actors {
                        let ports = ApprovalPorts {
                            store: &store,
                            tokens: &sink,
                            audit: &store,
                            improvements: &store,
                            clock: clock.as_ref(),
                        };
                        let _ = decide(ports, &id, actor, approved, comment.clone()).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

fn result_row(scenario: &Scenario, output: &Value, seconds: f64) -> ScenarioResult {
    let first = output
        .pointer("/summary/improvements/0")
        .cloned()
        .unwrap_or(Value::Null);
    let outcome = text(first.get("outcome"));
    let decision = text(first.get("decision"));
    let expected_outcome = text(scenario.expect.get("outcome"));
    let expected_approval = scenario.expect.get("approval").and_then(Value::as_str);
    let approval_ok = match expected_approval {
        Some("required") => decision == "needs_approval",
        Some("none") => decision == "auto_deploy",
        _ => true,
    };
    ScenarioResult {
        scenario: scenario.name.clone(),
        cycle_id: text(output.get("cycle_id")),
        opportunity: text(first.get("opportunity")),
        change: text(first.get("change")),
        risk: text(first.get("risk")),
        decision,
        passed: outcome == expected_outcome && approval_ok,
        expected: match expected_approval {
            Some(a) => format!("{expected_outcome} (approval {a})"),
            None => expected_outcome,
        },
        outcome,
        seconds,
    }
}

/// Renders the summary table.
pub fn summary_table(rows: &[ScenarioResult]) -> String {
    let header = [
        "scenario",
        "opportunity",
        "change",
        "risk",
        "decision",
        "outcome",
        "duration",
        "expected",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.opportunity.clone(),
                r.change.clone(),
                r.risk.clone(),
                r.decision.clone(),
                r.outcome.clone(),
                format!("{:.1} s", r.seconds),
                format!("{} {}", if r.passed { "✔" } else { "✘" }, r.expected),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for c in cells {
        out.push('\n');
        out.push_str(&line(c));
    }
    out
}
