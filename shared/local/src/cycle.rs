//! Runs improvement cycles offline: `statemachine/improvement-cycle.asl.json` on the
//! embedded ASL interpreter, whose Task states call the same step functions as the Lambda
//! binaries, over the fleet model, the SQLite store and the embedded Llm adapters.
//!
//! # Virtual time
//!
//! [`run_cycle`] runs the execution on a runtime of its own: one thread, tokio time paused.
//! Tokio's clock then stands still while any task of the run can go on and jumps to the
//! next timer (a Wait, a retry interval, a timeout) when every task waits, so virtual time
//! moves from event to event and never with the wall clock: an hour of canary monitoring
//! takes the milliseconds its steps compute, and a scenario always gives the same timeline
//! (states entered, monitor looks, verdicts, records) on any machine under any load. One
//! [`VirtualClock`] on that clock is the run's only clock: the interpreter's `$$`
//! timestamps, the fleet, the step functions and the store records all read it. Nothing
//! real orders the run's events either: store statements run in place, not on a thread
//! pool, and approvals are answered when a task starts waiting, not by polling.
//!
//! Approvals ([`Approvers`]): a scenario's recorded approver answers at a fixed virtual
//! time after the request; with nobody to answer, the 24-hour window passes in virtual
//! time and the change expires; while a person is awaited (`selfbuild cycle`, cycles that
//! `selfbuild serve` starts), virtual time runs at real pace, so the window is a real 24
//! hours, and the wait line says how to approve or reject, what and by when.
//!
//! A scenario's `halt` section ([`RecordedHalt`]) is an operator's emergency stop: the halt
//! switch is set in the store at a fixed virtual time, as `selfbuild halt` would set it.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use selfbuild_core::Config;
use selfbuild_core::approval::{ApprovalPorts, Expiry, decide};
use selfbuild_core::cycle::{CycleRequest, CycleStatus};
use selfbuild_core::error::StableError;
use selfbuild_core::improvement::{ImprovementItem, MonitorReport};
use selfbuild_core::ports::{AgentPeers, Clock, Llm, MetricSink, Notifier, Registry, StepStore};
use selfbuild_core::ports::{HaltState, HaltSwitch};
use selfbuild_core::records::{ImprovementRecord, ImprovementStatus, PendingApproval};
use selfbuild_core::steps::{StepDeps, StepFunction, run_step};
use selfbuild_core::text::Escaped;
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::asl::{
    ExecutionOptions, Iteration, Observer, PendingTask, StateMachine, StateRef, TaskCall,
    TaskError, TaskHandler, TaskTokens, VirtualClock, run_execution,
};
use crate::fleet::{Fleet, FunctionOutcome, Scenario};
use crate::planner::scenario_llm;
use crate::store::{SqliteStore, StoreTaskTokens};

/// The state machine definition, compiled in so the CLI runs from anywhere.
pub const DEFINITION: &str = include_str!("../../../statemachine/improvement-cycle.asl.json");

/// The region and account of the local function ARNs.
const LOCAL_ARN_PREFIX: &str = "arn:aws:lambda:local:000000000000:function:";

/// `DefinitionSubstitutions` with each `${XFunctionArn}` → `<arn_prefix><name>`.
pub fn substitutions(arn_prefix: &str) -> BTreeMap<String, String> {
    StepFunction::ALL
        .into_iter()
        .map(|f| {
            let name = f.name();
            let key = format!(
                "{}{}FunctionArn",
                name[..1].to_ascii_uppercase(),
                &name[1..]
            );
            (key, format!("{arn_prefix}{name}"))
        })
        .collect()
}

/// Loads the bundled definition with local substitutions.
pub fn load_state_machine() -> Result<StateMachine, crate::asl::AslError> {
    StateMachine::load(DEFINITION, &substitutions(LOCAL_ARN_PREFIX))
}

/// The Task states' resources, served by the core step functions.
pub struct LocalSteps {
    /// Telemetry, deployer and deployed code.
    pub fleet: Fleet,
    /// Checks code patches.
    pub checker: selfbuild_validate::PipelineChecker,
    /// Proposals.
    pub llm: Box<dyn Llm>,
    /// The halt switch, approvals, audit, improvement records, LLM spend and cycles.
    pub store: Arc<dyn StepStore>,
    /// Notifications.
    pub notifier: Arc<dyn Notifier>,
    /// The registered agents, read at each deploy, promote and rollback.
    pub registry: Arc<dyn Registry>,
    /// Registered agents called over MCP.
    pub peers: Arc<dyn AgentPeers>,
    /// Where the step metrics go.
    pub metrics: Arc<dyn MetricSink>,
    /// Virtual time.
    pub clock: Arc<dyn Clock>,
    /// Configuration.
    pub config: Config,
}

/// The function a Task resource names, and its payload.
fn resolve(task: &TaskCall) -> Result<(StepFunction, Value), TaskError> {
    let (arn, payload) = if task.resource.starts_with("arn:aws:states:::lambda:invoke") {
        let name = task
            .input
            .get("FunctionName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                TaskError::new("States.Runtime", "lambda:invoke without FunctionName")
            })?;
        let payload = task.input.get("Payload").cloned().unwrap_or(Value::Null);
        (name.to_owned(), payload)
    } else {
        (task.resource.clone(), task.input.clone())
    };
    let name = arn.rsplit(':').next().unwrap_or(&arn);
    let function = StepFunction::from_name(name).ok_or_else(|| {
        TaskError::new(
            "Lambda.ResourceNotFoundException",
            format!("no local function {name:?} for resource {arn}"),
        )
    })?;
    Ok((function, payload))
}

#[async_trait]
impl TaskHandler for LocalSteps {
    async fn invoke(&self, task: TaskCall) -> Result<Value, TaskError> {
        let (function, payload) = resolve(&task)?;
        let deps = StepDeps {
            telemetry: &self.fleet,
            deployer: &self.fleet,
            code: &self.fleet,
            checker: &self.checker,
            llm: self.llm.as_ref(),
            store: self.store.as_ref(),
            notifier: self.notifier.as_ref(),
            registry: self.registry.as_ref(),
            peers: self.peers.as_ref(),
            metrics: self.metrics.as_ref(),
            clock: self.clock.as_ref(),
        };
        run_step(function, deps, &self.config, &payload)
            .await
            .map_err(|e| TaskError::new(e.error_type().as_str(), e.to_string()))
    }
}

/// How long the run's thread sleeps, and its clock moves, per step while a person is awaited.
const HUMAN_PACE_STEP: Duration = Duration::from_millis(100);

/// Who answers the approvals a cycle waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Approvers {
    /// A scenario's recorded decision, given at a fixed virtual time after each request.
    Recorded(RecordedApproval),
    /// Nobody: each approval window passes in virtual time and the change expires.
    Nobody,
    /// People, through the store (`selfbuild approve`, MCP `approve_improvement`); while
    /// one is awaited, virtual time runs at real pace.
    People,
}

impl Approvers {
    /// The scenario's recorded approver, or nobody when it has none.
    pub fn for_scenario(scenario: &Scenario) -> Result<Self, String> {
        match &scenario.approval {
            Some(section) => RecordedApproval::parse(section)
                .map(Self::Recorded)
                .map_err(|e| format!("{}: {e}", scenario.name)),
            None => Ok(Self::Nobody),
        }
    }
}

/// A scenario's `approval` section: `{"decision": "approved"|"rejected", "actor": "…"
/// | "actors": ["…", "…"], "comment": "…", "after_seconds": 0}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedApproval {
    /// Approve (else reject).
    pub approved: bool,
    /// Who decides, in order (a CRITICAL change needs two different approvers).
    pub actors: Vec<String>,
    /// Why.
    pub comment: Option<String>,
    /// Virtual seconds from the request to the answer.
    pub after_seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalSection {
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    actors: Option<Vec<String>>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    after_seconds: u32,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Approved,
    Rejected,
}

/// The approval window of `AwaitApproval` (its `TimeoutSeconds`).
const APPROVAL_WINDOW_SECONDS: u32 = 86_400;

impl RecordedApproval {
    /// Reads an `approval` section; the error names the field at fault.
    pub fn parse(section: &Value) -> Result<Self, String> {
        let s: ApprovalSection = serde_path_to_error::deserialize(section).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => format!("approval: {}", e.inner()),
                _ => format!("approval.{path}: {}", e.inner()),
            }
        })?;
        let actors = match (s.actor, s.actors) {
            (Some(_), Some(_)) => {
                return Err("approval: give \"actor\" or \"actors\", not both".to_owned());
            }
            (Some(actor), None) => vec![actor],
            (None, Some(actors)) if actors.is_empty() => {
                return Err("approval.actors: name at least one approver".to_owned());
            }
            (None, Some(actors)) => actors,
            (None, None) => vec!["demo-approver".to_owned()],
        };
        if let Some(i) = actors.iter().position(|a| a.trim().is_empty()) {
            return Err(format!("approval.actors[{i}]: must not be empty"));
        }
        if s.after_seconds > APPROVAL_WINDOW_SECONDS {
            return Err(format!(
                "approval.after_seconds: {} is after the {APPROVAL_WINDOW_SECONDS}-second approval window",
                s.after_seconds
            ));
        }
        Ok(Self {
            approved: s.decision != Some(Decision::Rejected),
            actors,
            comment: s.comment,
            after_seconds: s.after_seconds,
        })
    }
}

/// A scenario's `halt` section: `{"after_seconds": 750, "actor": "…", "reason": "…"}`,
/// an emergency stop `after_seconds` of virtual time after the cycle starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedHalt {
    /// Virtual seconds from the cycle's start to the stop.
    pub after_seconds: u32,
    /// Who stops.
    #[serde(default = "RecordedHalt::default_actor")]
    pub actor: String,
    /// Why.
    pub reason: String,
}

impl RecordedHalt {
    fn default_actor() -> String {
        "scenario-operator".to_owned()
    }

    /// The scenario's halt, if it has one; the error names the field at fault.
    pub fn for_scenario(scenario: &Scenario) -> Result<Option<Self>, String> {
        let Some(section) = &scenario.halt else {
            return Ok(None);
        };
        let halt: Self = serde_path_to_error::deserialize(section).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => format!("{}: halt: {}", scenario.name, e.inner()),
                _ => format!("{}: halt.{path}: {}", scenario.name, e.inner()),
            }
        })?;
        for (field, value) in [("actor", &halt.actor), ("reason", &halt.reason)] {
            if value.trim().is_empty() {
                return Err(format!(
                    "{}: halt.{field}: must not be empty",
                    scenario.name
                ));
            }
        }
        Ok(Some(halt))
    }

    /// Sets the halt switch in `store` at its virtual time, and says so on `out`.
    async fn run(self, store: SqliteStore, clock: VirtualClock, start: OffsetDateTime, out: Out) {
        let at = start + time::Duration::seconds(i64::from(self.after_seconds));
        clock.sleep(clock.seconds_until(at)).await;
        let halt = HaltState {
            reason: self.reason,
            actor: self.actor,
            since: clock.now(),
        };
        let line = match store.set_halt(&halt).await {
            Ok(()) => format!(
                "  {} halt switch set by {} (the scenario's operator): {}",
                since_start(start, halt.since),
                halt.actor,
                halt.reason
            ),
            Err(e) => format!("  the scenario's operator could not set the halt switch: {e}"),
        };
        print(&out, &[line]);
    }
}

/// Runs `request` as an execution over the scenario's fleet, with `store` for the halt
/// switch, approvals and records, on event-driven virtual time starting at
/// `request.requested_at` (see the module docs); prints each state as it is entered to
/// `progress`, and returns the execution's output.
pub async fn run_cycle(
    scenario: &Scenario,
    request: &CycleRequest,
    store: &SqliteStore,
    config: &Config,
    progress: Box<dyn Write + Send>,
    approvers: Approvers,
) -> Result<Value, String> {
    run_cycle_on_fleet(scenario, request, store, config, progress, approvers)
        .await
        .map(|run| run.output)
}

/// A cycle's output and what it did to the simulated fleet.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// The execution's output.
    pub output: Value,
    /// Each function's end state and canary exposure.
    pub functions: Vec<FunctionOutcome>,
}

/// [`run_cycle`], also reporting what happened to each function of the fleet.
pub async fn run_cycle_on_fleet(
    scenario: &Scenario,
    request: &CycleRequest,
    store: &SqliteStore,
    config: &Config,
    progress: Box<dyn Write + Send>,
    approvers: Approvers,
) -> Result<FleetRun, String> {
    let run = CycleRun {
        scenario: scenario.clone(),
        request: request.clone(),
        store: store.clone(),
        config: config.clone(),
        progress,
        approvers,
    };
    // A thread of its own: its runtime's paused clock must not be the caller's. The
    // blocking pool also keeps a paused caller's clock still while the cycle runs.
    tokio::task::spawn_blocking(move || run.execute_here())
        .await
        .map_err(|e| format!("{}: the cycle stopped: {e}", request.cycle_id))?
}

/// [`run_cycle`] on the calling thread, which it blocks until the cycle ends: for a caller
/// that gives each cycle a thread of its own rather than one of the blocking pool's
/// (`selfbuild serve`, whose cycles may wait hours for a person).
pub fn run_cycle_blocking(
    scenario: &Scenario,
    request: &CycleRequest,
    store: &SqliteStore,
    config: &Config,
    progress: Box<dyn Write + Send>,
    approvers: Approvers,
) -> Result<Value, String> {
    CycleRun {
        scenario: scenario.clone(),
        request: request.clone(),
        store: store.clone(),
        config: config.clone(),
        progress,
        approvers,
    }
    .execute_here()
    .map(|run| run.output)
}

/// What one cycle run needs, owned, so it can move to the run's thread.
struct CycleRun {
    scenario: Scenario,
    request: CycleRequest,
    store: SqliteStore,
    config: Config,
    progress: Box<dyn Write + Send>,
    approvers: Approvers,
}

impl CycleRun {
    /// Runs the execution on a current-thread runtime with paused time, on this thread.
    fn execute_here(self) -> Result<FleetRun, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| {
                format!(
                    "{}: cannot start the cycle's runtime: {e}",
                    self.request.cycle_id
                )
            })?;
        runtime.block_on(self.execute())
    }

    /// Runs the execution; call it on a current-thread runtime with paused time.
    async fn execute(self) -> Result<FleetRun, String> {
        let Self {
            scenario,
            request,
            store,
            config,
            progress,
            approvers,
        } = self;
        let start = request.requested_at;
        let clock = VirtualClock::new(start);
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let fleet = Fleet::new(&scenario, Arc::clone(&shared_clock)).map_err(|e| e.to_string())?;
        let watched = fleet.clone();
        let llm: Box<dyn Llm> = Box::new(scenario_llm(&scenario)?);
        let input = serde_json::to_value(&request).map_err(|e| e.to_string())?;
        let machine = load_state_machine().map_err(|e| e.to_string())?;
        let tokens = TaskTokens::new();
        let shared = Arc::new(store.clone());
        let checker = selfbuild_validate::PipelineChecker::new(
            crate::demo::scenario_code_settings(&scenario)?,
        );
        let peers: Arc<dyn AgentPeers> = Arc::new(crate::peers::LocalPeers::from_config(&config)?);
        let steps = LocalSteps {
            fleet,
            checker,
            llm,
            store: shared.clone(),
            notifier: shared.clone(),
            registry: shared.clone(),
            peers,
            metrics: Arc::new(selfbuild_core::emf::TracingSink {
                namespace: config.metrics_namespace.clone(),
            }),
            clock: shared_clock,
            config,
        };
        let out = Arc::new(Mutex::new(progress));
        let observer = Progress {
            clock: clock.clone(),
            start,
            out: Arc::clone(&out),
        };
        let operator = RecordedHalt::for_scenario(&scenario)?.map(|halt| {
            tokio::spawn(halt.run(store.clone(), clock.clone(), start, Arc::clone(&out)))
        });
        let (closing_store, closing_out) = (store.clone(), Arc::clone(&out));
        let desk = tokio::spawn(
            Desk {
                approvers,
                tokens: tokens.clone(),
                store,
                clock: clock.clone(),
                start,
                out,
            }
            .run(),
        );
        let result = run_execution(
            &machine,
            request.cycle_id.as_str(),
            input,
            &steps,
            &tokens,
            &observer,
            &ExecutionOptions::on(clock.clone()),
        )
        .await;
        desk.abort();
        if let Some(operator) = operator {
            operator.abort();
        }
        close_unanswered(
            &closing_store,
            &clock,
            &request.cycle_id,
            start,
            &closing_out,
        )
        .await;
        let output = result.map_err(|f| {
            format!(
                "{}: execution failed: {}: {}",
                request.cycle_id, f.error, f.cause
            )
        })?;
        Ok(FleetRun {
            output,
            functions: watched.outcomes(),
        })
    }
}

/// Where progress lines go; shared by the observer and the approval desk.
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Writes `lines` to `out` (progress is best effort: a closed pipe must not stop a cycle).
fn print(out: &Out, lines: &[String]) {
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

/// `T+hh:mm:ss`, the virtual time since the cycle began.
fn since_start(start: OffsetDateTime, now: OffsetDateTime) -> String {
    let elapsed = (now - start).whole_seconds();
    format!(
        "T+{:02}:{:02}:{:02}",
        elapsed / 3600,
        elapsed / 60 % 60,
        elapsed % 60
    )
}

/// ` [item N]` for a state in a Map iteration.
fn item_label(iterations: &[Iteration]) -> String {
    iterations
        .last()
        .map(|i| format!(" [item {}]", i.index + 1))
        .unwrap_or_default()
}

/// Prints each state as it is entered, with the virtual time since the cycle began.
struct Progress {
    clock: VirtualClock,
    start: OffsetDateTime,
    out: Out,
}

impl Observer for Progress {
    fn on_state_entered(&self, state: StateRef<'_>, _input: &Value) {
        let indent = "  ".repeat(state.iterations.len() + 1);
        let at = since_start(self.start, self.clock.now());
        let item = item_label(state.iterations);
        print(&self.out, &[format!("{indent}{at} {}{item}", state.name)]);
    }

    fn on_state_exited(&self, state: StateRef<'_>, output: &Value) {
        if state.name == "ApprovalTimedOut" {
            self.window_closed(state, output);
            return;
        }
        // Each look's verdict and the rates behind it, as the stored report has them.
        if state.name != "MonitorCanary" {
            return;
        }
        let Some(report) = output
            .get("monitor")
            .and_then(|m| serde_json::from_value::<MonitorReport>(m.clone()).ok())
        else {
            return;
        };
        let indent = "  ".repeat(state.iterations.len() + 2);
        print(&self.out, &[format!("{indent}↳ {}", look_line(&report))]);
    }
}

impl Progress {
    /// The state machine's timeout task closed an approval window: says so, as
    /// [`close_approval`] does when the runner closes it.
    fn window_closed(&self, state: StateRef<'_>, output: &Value) {
        if output
            .pointer("/approval_expiry/expiry")
            .and_then(Value::as_str)
            != Some("closed")
        {
            return;
        }
        let Ok(item) = serde_json::from_value::<ImprovementItem>(output.clone()) else {
            return;
        };
        let record =
            ImprovementRecord::of_item(&item, ImprovementStatus::Rejected, self.clock.now());
        let indent = "  ".repeat(state.iterations.len() + 2);
        let label = format!(
            "{}{}",
            since_start(self.start, self.clock.now()),
            item_label(state.iterations)
        );
        print(
            &self.out,
            &[window_closed_line(
                &format!("{indent}{label}"),
                &record.improvement_id,
                &record.change.unwrap_or_default(),
                record.risk.map_or("unknown", |r| r.as_str()),
            )],
        );
    }
}

/// One look in a line: verdict, reason, requests and each rate, canary vs stable.
fn look_line(report: &MonitorReport) -> String {
    let verdict = serde_json::to_value(report.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut line = format!(
        "{verdict}: {} · canary {:.0} req, stable {:.0}",
        report.reason, report.canary_requests, report.stable_requests
    );
    if let Some(latency) = &report.latency
        && let (Some(stable), Some(canary), Some(interval)) =
            (latency.stable, latency.canary, latency.canary_intervals)
    {
        line.push_str(&format!(
            " · p99 {:.0} ms ({:.0}–{:.0}) vs {:.0} ms",
            canary.p99, interval.p99.0, interval.p99.1, stable.p99
        ));
        if let (Some(stable), Some(canary)) = (latency.stable_successes, latency.canary_successes) {
            line.push_str(&format!(
                " (successes {:.0} vs {:.0} ms)",
                canary.quantiles.p99, stable.quantiles.p99
            ));
        }
    }
    for m in &report.metrics {
        line.push_str(&format!(
            " · {} {:.1} % vs {:.1} %{}",
            m.metric,
            // + 0.0 prints a negative zero as 0.0.
            m.canary * 100.0 + 0.0,
            m.baseline * 100.0 + 0.0,
            if m.degraded { " ✘" } else { "" }
        ));
    }
    line
}

/// The progress line of an approval window that closed unanswered.
fn window_closed_line(
    prefix: &str,
    id: &selfbuild_core::ids::ImprovementId,
    change: &str,
    risk: &str,
) -> String {
    format!(
        "{prefix} approval window of {id} closed unanswered: {change} (risk {risk}) not deployed"
    )
}

/// Closes `approval` (core `approval::expire`: its window ended unanswered) and says so.
async fn close_approval(
    store: &SqliteStore,
    clock: &dyn Clock,
    approval: &PendingApproval,
    indent: &str,
    label: &str,
    out: &Out,
) {
    let tokens = StoreTaskTokens(store.clone());
    let ports = ApprovalPorts {
        store,
        tokens: &tokens,
        audit: store,
        improvements: store,
        clock,
        halt: store,
    };
    let line =
        match selfbuild_core::approval::expire(ports.expiry(), &approval.improvement_id).await {
            // Closed by the state machine's ApprovalTimedOut task: its observer said so.
            Ok(Expiry::AlreadyClosed | Expiry::NotPending) => return,
            Ok(Expiry::Closed) => window_closed_line(
                &format!("{indent}{label}"),
                &approval.improvement_id,
                &approval.change,
                &approval.risk,
            ),
            Err(e) => format!(
                "{indent}cannot close the approval of {}: {e}",
                approval.improvement_id
            ),
        };
    print(out, &[line]);
}

/// Closes the approvals of `cycle` still pending once its execution ended: nothing can
/// resume them any more.
async fn close_unanswered(
    store: &SqliteStore,
    clock: &dyn Clock,
    cycle: &selfbuild_core::ids::CycleId,
    start: OffsetDateTime,
    out: &Out,
) {
    let Ok(pending) = store.pending_approvals().await else {
        return;
    };
    let label = since_start(start, clock.now());
    for approval in pending.iter().filter(|p| &p.cycle_id == cycle) {
        close_approval(store, clock, approval, "    ", &label, out).await;
        let _ = store.take_task_result(&approval.task_token).await;
    }
}

/// Ends a cycle whose process is stopping before its execution did (Ctrl-C, SIGTERM): the
/// cycle is recorded `failed` and its pending approvals are closed, since nothing can resume
/// them any more, so `status` shows no cycle running and a later `approve` says the window
/// closed. Returns what it could not record.
pub async fn abandon(
    store: &SqliteStore,
    clock: &dyn Clock,
    cycle: &selfbuild_core::ids::CycleId,
    start: OffsetDateTime,
    out: Box<dyn Write + Send>,
) -> Result<(), String> {
    use selfbuild_core::ports::CycleStore as _;
    let out: Out = Arc::new(Mutex::new(out));
    close_unanswered(store, clock, cycle, start, &out).await;
    store
        .finish_cycle(cycle, CycleStatus::Failed, clock.now())
        .await
        .map(drop)
        .map_err(|e| format!("cycle {cycle} stays recorded as running: {e}"))
}

/// Answers the tasks that wait for a token (approvals), as [`Approvers`] says.
struct Desk {
    approvers: Approvers,
    tokens: TaskTokens,
    store: SqliteStore,
    clock: VirtualClock,
    start: OffsetDateTime,
    out: Out,
}

impl Desk {
    /// Runs until aborted. Waiting on [`TaskTokens::changes`] sets no timer, so it never
    /// holds virtual time back, nor pushes it on.
    async fn run(self) {
        let mut changes = self.tokens.changes();
        let mut seen = HashSet::new();
        // The approvals being waited for, by token.
        let mut waiting = BTreeMap::new();
        loop {
            let pending = self.tokens.pending();
            for task in &pending {
                if seen.insert(task.token.clone())
                    && let Some(approval) = self.answer(task).await
                {
                    waiting.insert(task.token.clone(), (approval, task.iterations.clone()));
                }
            }
            // A token that stopped waiting was answered (its approval is gone from the
            // store) or its window closed: then the approval is closed in the store.
            let gone: Vec<String> = waiting
                .keys()
                .filter(|token| !pending.iter().any(|t| &t.token == *token))
                .cloned()
                .collect();
            for token in gone {
                if let Some((approval, iterations)) = waiting.remove(&token) {
                    self.close(&token, &approval, &iterations).await;
                }
            }
            if matches!(self.approvers, Approvers::People) && !self.tokens.pending().is_empty() {
                self.deliver_queued().await;
                // A person is awaited: hold virtual time to real pace. The thread sleeps,
                // so nothing can auto-advance the clock, then moves it by as much; timers
                // due by then fire as it moves.
                std::thread::sleep(HUMAN_PACE_STEP);
                tokio::time::advance(HUMAN_PACE_STEP).await;
            } else if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// After the task of `token` stopped waiting: if its approval is still pending, the
    /// window closed unanswered; closes it ([`close_approval`]) and drops any answer queued
    /// too late, so nothing is left for a late `approve`.
    async fn close(&self, token: &str, approval: &PendingApproval, iterations: &[Iteration]) {
        let indent = "  ".repeat(iterations.len() + 2);
        let label = format!(
            "{}{}",
            since_start(self.start, self.clock.now()),
            item_label(iterations)
        );
        close_approval(
            &self.store,
            &self.clock,
            approval,
            &indent,
            &label,
            &self.out,
        )
        .await;
        if let Ok(Some(_)) = self.store.take_task_result(token).await {
            tracing::warn!(improvement = %approval.improvement_id, "an answer came after the approval window closed; dropped");
        }
    }

    /// Handles a task that just started waiting; the approval it waits for, if any.
    async fn answer(&self, task: &PendingTask) -> Option<PendingApproval> {
        let indent = "  ".repeat(task.iterations.len() + 2);
        let pending = match self.store.pending_approvals().await {
            Ok(all) => all.into_iter().find(|p| p.task_token == task.token),
            Err(e) => {
                print(
                    &self.out,
                    &[format!("{indent}cannot read pending approvals: {e}")],
                );
                None
            }
        };
        let Some(pending) = pending else {
            print(
                &self.out,
                &[format!(
                    "{indent}waiting for the task token of {} until {}",
                    task.state,
                    self.deadline(task)
                )],
            );
            return None;
        };
        match &self.approvers {
            Approvers::Recorded(recorded) => self.decide(recorded, task, &pending, &indent).await,
            Approvers::Nobody => print(
                &self.out,
                &[format!(
                    "{indent}approval of {} ({}, risk {}) requested; the scenario has no approver, so the window ends unanswered at {}",
                    pending.improvement_id,
                    pending.change,
                    pending.risk,
                    task.deadline
                        .map_or_else(|| "no deadline".to_owned(), |d| since_start(self.start, d)),
                )],
            ),
            Approvers::People => print(&self.out, &self.wait_lines(task, &pending, &indent)),
        }
        Some(pending)
    }

    /// The scenario's recorded answer, `after_seconds` after the request.
    async fn decide(
        &self,
        recorded: &RecordedApproval,
        task: &PendingTask,
        pending: &PendingApproval,
        indent: &str,
    ) {
        let at = pending.requested_at + time::Duration::seconds(i64::from(recorded.after_seconds));
        self.clock.sleep(self.clock.seconds_until(at)).await;
        let tokens = StoreTaskTokens(self.store.clone());
        let ports = ApprovalPorts {
            store: &self.store,
            tokens: &tokens,
            audit: &self.store,
            improvements: &self.store,
            clock: &self.clock,
            halt: &self.store,
        };
        let verb = if recorded.approved {
            "approved"
        } else {
            "rejected"
        };
        for actor in &recorded.actors {
            let decided = decide(
                ports,
                &pending.improvement_id,
                actor,
                recorded.approved,
                recorded.comment.clone(),
            )
            .await;
            let line = match &decided {
                Ok(progress) => {
                    let count = if recorded.approved {
                        format!(
                            ", {} of {} approvals",
                            progress.approvers.len(),
                            progress.approvals_required
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "{indent}{}{} {verb} by {actor} (the scenario's approver{count}): {}, risk {}",
                        since_start(self.start, self.clock.now()),
                        item_label(&task.iterations),
                        pending.change,
                        pending.risk
                    )
                }
                Err(e) => format!("{indent}the scenario's approver {actor} could not answer: {e}"),
            };
            print(&self.out, &[line]);
            if !matches!(decided, Ok(p) if p.status == "waiting") {
                break;
            }
        }
        self.deliver(&task.token).await;
    }

    /// How to answer a person-awaited approval, what it is about, and by when.
    fn wait_lines(
        &self,
        task: &PendingTask,
        pending: &PendingApproval,
        indent: &str,
    ) -> Vec<String> {
        let id = &pending.improvement_id;
        let data_dir = self
            .store
            .path()
            .parent()
            .filter(|d| *d != std::path::Path::new(".selfbuild"))
            .map(|d| format!(" --data-dir {}", d.display()))
            .unwrap_or_default();
        vec![
            format!(
                "{indent}waiting for approval until {}; virtual time runs at real pace meanwhile",
                self.deadline(task)
            ),
            format!(
                "{indent}  change: {}  risk: {}  approvals: {} of {}",
                pending.change,
                pending.risk,
                pending.approvers.len(),
                pending.approvals_required
            ),
            format!(
                "{indent}  approve: selfbuild{data_dir} approve {id} --actor <name> [--comment \"…\"]"
            ),
            format!(
                "{indent}  reject:  selfbuild{data_dir} reject {id} --actor <name> --comment \"<why>\""
            ),
        ]
    }

    /// `2026-11-23T05:00:00Z (in 24 h 00 min)`, or `no deadline`.
    fn deadline(&self, task: &PendingTask) -> String {
        let Some(deadline) = task.deadline else {
            return "no deadline".to_owned();
        };
        let left = (deadline - self.clock.now()).whole_minutes().max(0);
        format!(
            "{} (in {} h {:02} min)",
            deadline.format(&Rfc3339).unwrap_or_default(),
            left / 60,
            left % 60
        )
    }

    /// Delivers the answers queued in the store (by this or another process) for the
    /// waiting tasks.
    async fn deliver_queued(&self) {
        for task in self.tokens.pending() {
            self.deliver(&task.token).await;
        }
    }

    /// Delivers the answer queued in the store for `token`, if any.
    async fn deliver(&self, token: &str) {
        match self.store.take_task_result(token).await {
            Ok(Some(output)) => {
                if let Err(e) = self.tokens.send_success(token, output) {
                    tracing::warn!(error = %Escaped(&e), "a queued task result came too late");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %Escaped(&e), "could not read a queued task result"),
        }
    }
}

#[cfg(test)]
mod tests {
    use selfbuild_core::clock::FixedClock;
    use selfbuild_core::ids::ImprovementId;
    use selfbuild_core::ports::AuditLog;
    use serde_json::json;

    use super::*;

    const TIMEOUTS: &str = include_str!("../../../events/scenarios/timeouts.json");
    const THROTTLING: &str =
        include_str!("../../../events/scenarios/throttling-needs-approval.json");

    /// Progress written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs the scenario's routine cycle; returns its output, progress and store (in `dir`).
    async fn cycle(
        dir: &std::path::Path,
        scenario: &Scenario,
        autonomous: bool,
        approvers: Approvers,
    ) -> (Value, String, SqliteStore) {
        let store = SqliteStore::open(dir).unwrap();
        let mut config = crate::demo::demo_config().unwrap();
        config.autonomous_improvements = autonomous;
        let request = crate::demo::scenario_request(scenario, &config);
        let progress = Captured::default();
        let output = run_cycle(
            scenario,
            &request,
            &store,
            &config,
            Box::new(progress.clone()),
            approvers,
        )
        .await
        .unwrap();
        (output, progress.text(), store)
    }

    /// How long after the scenario's start `action` was audited.
    async fn audited_at(store: &SqliteStore, output: &Value, action: &str) -> time::Duration {
        let cycle =
            selfbuild_core::ids::CycleId::parse(output["cycle_id"].as_str().unwrap()).unwrap();
        let events = store.cycle_events(&cycle).await.unwrap();
        let event = events.iter().find(|e| e.action.as_str() == action).unwrap();
        event.at - time::macros::datetime!(2026-11-22 05:00 UTC)
    }

    #[test]
    fn paused_time_stands_still_while_a_blocking_call_runs() {
        // Checks the tokio behaviour the design leans on, rather than assuming it: a
        // blocking call (real time on another thread) holds auto-advance back.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let start = tokio::time::Instant::now();
            let timer = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)))
                .await
                .unwrap();
            assert_eq!(start.elapsed(), Duration::ZERO);
            timer.await.unwrap();
            assert_eq!(start.elapsed(), Duration::from_secs(3600));
        });
    }

    #[test]
    fn recorded_approvals_parse_and_bad_ones_name_the_field() {
        let parsed = RecordedApproval::parse(&json!({
            "decision": "rejected", "actors": ["a", "b"], "comment": "no", "after_seconds": 60
        }))
        .unwrap();
        assert_eq!(
            parsed,
            RecordedApproval {
                approved: false,
                actors: vec!["a".into(), "b".into()],
                comment: Some("no".into()),
                after_seconds: 60,
            }
        );
        let default = RecordedApproval::parse(&json!({})).unwrap();
        assert!(default.approved);
        assert_eq!(default.actors, ["demo-approver"]);
        for (section, expected) in [
            (
                json!({"decision": "maybe"}),
                "approval.decision: unknown variant `maybe`",
            ),
            (json!({"actor": "a", "actors": ["b"]}), "not both"),
            (json!({"actors": []}), "approval.actors: name at least one"),
            (
                json!({"actors": ["a", " "]}),
                "approval.actors[1]: must not be empty",
            ),
            (
                json!({"after_seconds": 90_000}),
                "approval.after_seconds: 90000",
            ),
            (json!({"after_seconds": -1}), "approval.after_seconds:"),
            (json!({"approver": "a"}), "unknown field `approver`"),
            (json!("yes"), "approval: invalid type"),
        ] {
            let e = RecordedApproval::parse(&section).unwrap_err();
            assert!(e.contains(expected), "{section}: {e}");
        }
    }

    #[test]
    fn a_scenarios_halt_parses_and_a_bad_one_names_the_field() {
        let mut scenario = Scenario::parse(TIMEOUTS, "timeouts.json").unwrap();
        assert_eq!(RecordedHalt::for_scenario(&scenario), Ok(None));
        scenario.halt = Some(json!({"after_seconds": 750, "reason": "incident"}));
        let halt = RecordedHalt::for_scenario(&scenario).unwrap().unwrap();
        assert_eq!(
            (halt.after_seconds, halt.actor.as_str()),
            (750, "scenario-operator")
        );
        for (section, expected) in [
            (json!({"after_seconds": 1}), "halt: missing field `reason`"),
            (
                json!({"after_seconds": -1, "reason": "x"}),
                "halt.after_seconds:",
            ),
            (
                json!({"after_seconds": 1, "reason": " "}),
                "halt.reason: must not be empty",
            ),
            (
                json!({"after_seconds": 1, "reason": "x", "by": "y"}),
                "unknown field `by`",
            ),
        ] {
            scenario.halt = Some(section.clone());
            let e = RecordedHalt::for_scenario(&scenario).unwrap_err();
            assert!(e.contains(expected), "{section}: {e}");
        }
    }

    #[tokio::test]
    async fn a_recorded_approver_answers_at_its_virtual_time() {
        let mut scenario = Scenario::parse(THROTTLING, "throttling.json").unwrap();
        scenario.approval = Some(json!({"actor": "oncall", "after_seconds": 1800}));
        let approvers = Approvers::for_scenario(&scenario).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (output, progress, store) = cycle(dir.path(), &scenario, true, approvers).await;
        assert!(
            progress.contains(
                "      T+00:30:00 [item 1] approved by oncall (the scenario's approver, 1 of 1 approvals): \
                 payments-webhook: reserved concurrency 5→16, risk MEDIUM\n    T+00:30:00 IsApproved [item 1]"
            ),
            "{progress}"
        );
        let half_an_hour = time::Duration::minutes(30);
        assert_eq!(audited_at(&store, &output, "approved").await, half_an_hour);
        assert_eq!(audited_at(&store, &output, "deployed").await, half_an_hour);
    }

    #[tokio::test]
    async fn without_an_approver_the_window_passes_in_virtual_time() {
        let mut scenario = Scenario::parse(THROTTLING, "throttling.json").unwrap();
        scenario.approval = None;
        let real = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let (output, progress, _) = cycle(dir.path(), &scenario, true, Approvers::Nobody).await;
        assert_eq!(
            output["summary"]["improvements"][0]["outcome"],
            "approval_timed_out"
        );
        assert!(
            progress.contains("the window ends unanswered at T+24:00:00"),
            "{progress}"
        );
        assert!(
            progress.contains("  T+24:00:00 WriteCycleSummary"),
            "{progress}"
        );
        // Far below the day a wall-clock window takes, yet generous for a loaded machine.
        assert!(
            real.elapsed() < Duration::from_secs(600),
            "{:?}",
            real.elapsed()
        );
    }

    #[tokio::test]
    async fn a_person_is_told_how_to_answer_and_virtual_time_waits_for_them() {
        let scenario = Scenario::parse(TIMEOUTS, "timeouts.json").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut config = crate::demo::demo_config().unwrap();
        // Not autonomous: even this LOW-risk fix waits for a person.
        config.autonomous_improvements = false;
        let request = crate::demo::scenario_request(&scenario, &config);
        let progress = Captured::default();
        let running = tokio::spawn({
            let (scenario, request, store, config, progress) = (
                scenario.clone(),
                request.clone(),
                store.clone(),
                config.clone(),
                progress.clone(),
            );
            async move {
                run_cycle(
                    &scenario,
                    &request,
                    &store,
                    &config,
                    Box::new(progress),
                    Approvers::People,
                )
                .await
            }
        });
        let id = ImprovementId::new(&request.cycle_id, 1);
        let mut waited = 0;
        while !progress.text().contains("reject:") {
            assert!(
                waited < 1200,
                "no wait line after a minute:\n{}",
                progress.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        // The person takes a (real) moment; a day of virtual time must not pass meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tokens = StoreTaskTokens(store.clone());
        let clock = FixedClock(scenario.now);
        let ports = ApprovalPorts {
            store: &store,
            tokens: &tokens,
            audit: &store,
            improvements: &store,
            clock: &clock,
            halt: &store,
        };
        decide(ports, &id, "alice", true, None).await.unwrap();
        let output = running.await.unwrap().unwrap();
        assert_eq!(output["summary"]["improvements"][0]["outcome"], "promoted");

        let text = progress.text();
        let data_dir = dir.path().display();
        for line in [
            "      waiting for approval until 2026-11-23T05:00:00Z (in 24 h 00 min); virtual time runs at real pace meanwhile\n".to_owned(),
            "        change: orders-api: timeout 3→9 s, memory 128→512 MB  risk: LOW  approvals: 0 of 1\n".to_owned(),
            format!("        approve: selfbuild --data-dir {data_dir} approve {id} --actor <name> [--comment \"…\"]\n"),
            format!("        reject:  selfbuild --data-dir {data_dir} reject {id} --actor <name> --comment \"<why>\"\n"),
        ] {
            assert!(text.contains(&line), "{line}in\n{text}");
        }
        // Deployed after the real wait, at real pace: seconds, not the day the window allows.
        let deployed = audited_at(&store, &output, "deployed").await;
        assert!(deployed >= time::Duration::milliseconds(100), "{deployed}");
        assert!(deployed < time::Duration::minutes(10), "{deployed}");
    }
}
