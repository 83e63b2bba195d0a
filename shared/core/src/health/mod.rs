//! The self health pass (R20): observed facts → a [`HealthReport`] with a heal plan, and the
//! per-component rule that disables a component after [`MAX_FAILED_HEALS`] failed heals.
//! The rules are pure; [`pass`] runs one pass over the ports (observe, decide, heal, record);
//! [`skip`] says what a cycle leaves out while components are disabled; [`observe`] turns a
//! component's metric series into what the pass sees of it.

pub mod agents;
pub mod dlq;
pub mod observe;
pub mod pass;
pub mod skip;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::records::{CircuitState, ProviderHealth};

/// How long the approval task waits before the timeout rejects the change; the state
/// machine's `RequestApproval` `TimeoutSeconds` (a test keeps them equal).
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Added to the longest planned cycle before a running one counts as stuck: retries,
/// queueing and the steps around the waits.
pub const STUCK_SLACK: Duration = Duration::from_secs(30 * 60);

/// How far back the first pass (no earlier pass stored) looks for ended executions.
pub const FIRST_PASS_LOOKBACK: Duration = Duration::from_secs(60 * 60);

/// Failed heals of one component after which it is disabled.
pub const MAX_FAILED_HEALS: u32 = 3;

/// The metric emitted when a component is disabled after failed heals (the template's alarm
/// watches it).
pub const SELF_HEALING_EXHAUSTED_METRIC: &str = "SelfHealingExhausted";

/// The notification's detail type when a component is disabled.
pub const COMPONENT_DISABLED_DETAIL_TYPE: &str = "Component Disabled";

/// The component key of a fleet-wide cycle (no component in scope).
pub const FLEET: &str = "*";

/// One check of the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// Cycle executions: failed since the last pass, or running too long.
    Executions,
    /// selfbuild's own functions: `Errors` and `Throttles`.
    Functions,
    /// The EventBridge dead-letter queue.
    Dlq,
    /// The store answers.
    Store,
    /// The LLM providers' circuit breakers.
    LlmBreakers,
    /// Registered components and agents.
    Components,
}

/// A check's outcome, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Nothing wrong.
    Ok,
    /// Not observable on these adapters; says nothing about health.
    Skipped,
    /// Something wrong that healing may fix or a person should look at.
    Degraded,
    /// selfbuild cannot work (the store is unreachable).
    Failed,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its outcome.
    pub status: CheckStatus,
    /// In words.
    pub detail: String,
}

/// An execution's state, as Step Functions names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Not ended.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ran past its timeout.
    TimedOut,
    /// Stopped.
    Aborted,
}

impl ExecutionStatus {
    /// The Step Functions name (`FAILED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }
}

/// One cycle execution as the orchestrator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionFact {
    /// The orchestrator's reference (an execution ARN on AWS).
    pub execution_ref: String,
    /// The cycle (the execution name).
    pub cycle_id: String,
    /// The component the cycle works on ([`FLEET`] for the whole fleet).
    pub component: String,
    /// Its state.
    pub status: ExecutionStatus,
    /// When it started (or was last redriven).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended, when known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
}

/// One of selfbuild's own functions over the last pass interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionFact {
    /// The function's name.
    pub function: String,
    /// Its `Errors` sum.
    pub errors: f64,
    /// Its `Throttles` sum.
    pub throttles: f64,
}

/// A selfbuild change deployed to a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfChange {
    /// The improvement that made it.
    pub improvement_id: String,
    /// When it was deployed.
    #[serde(with = "time::serde::rfc3339")]
    pub deployed_at: OffsetDateTime,
}

/// A registered component or agent as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentFact {
    /// Its name.
    pub component: String,
    /// Whether it exists (a Lambda function found, an agent answering).
    pub exists: bool,
    /// Its error rate (0–1) over the pass interval, when observed.
    pub error_rate: Option<f64>,
    /// When its errors rose over the threshold, when known.
    #[serde(with = "time::serde::rfc3339::option")]
    pub errors_began_at: Option<OffsetDateTime>,
    /// selfbuild's latest change to it, if any.
    pub last_change: Option<SelfChange>,
}

/// Why and since when a component is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    /// In words.
    pub reason: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// A component's heal ledger, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// The component.
    pub component: String,
    /// Heals that did not hold, since the last recovery or re-enable.
    pub failed_heals: u32,
    /// A heal was made and has not been judged yet.
    pub heal_pending: bool,
    /// Set when selfbuild stopped changing it.
    pub disabled: Option<Disabled>,
}

impl ComponentHealth {
    /// A component with no heal history.
    pub fn fresh(component: &str) -> Self {
        Self {
            component: component.to_owned(),
            failed_heals: 0,
            heal_pending: false,
            disabled: None,
        }
    }
}

/// Everything one pass observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    /// When the pass runs.
    pub now: OffsetDateTime,
    /// When the previous pass ran, if one did.
    pub last_pass_at: Option<OffsetDateTime>,
    /// Executions of the cycle state machine (running, and ended recently), or why they
    /// could not be listed.
    pub executions: Result<Vec<ExecutionFact>, String>,
    /// selfbuild's functions; none where not observable.
    pub functions: Option<Vec<FunctionFact>>,
    /// Messages in the DLQ; none where not observable.
    pub dlq_depth: Option<u64>,
    /// The store answered, or why not.
    pub store: Result<(), String>,
    /// The LLM breakers; none where not known.
    pub providers: Option<Vec<ProviderHealth>>,
    /// Registered components and agents; none where not observable.
    pub components: Option<Vec<ComponentFact>>,
    /// The heal ledgers the store keeps.
    pub ledger: Vec<ComponentHealth>,
}

/// The pass's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A running execution older than this is stuck.
    pub max_cycle_age: Duration,
    /// A function with more `Errors` than this in the interval is degraded.
    pub function_errors: f64,
    /// A function with more `Throttles` than this in the interval is degraded.
    pub function_throttles: f64,
    /// A component with a higher error rate is degraded.
    pub component_error_rate: f64,
    /// Errors beginning within this long after a selfbuild change blame the change.
    pub change_blame_window: Duration,
}

impl Thresholds {
    /// From the configuration: the longest cycle is the monitor window, its one extension,
    /// the approval timeout, the longest a deploy may be deferred and [`STUCK_SLACK`]; a change is blamed for
    /// errors beginning within one monitor window of it; components use the canary's
    /// guardrail error rate.
    pub fn from_config(config: &Config) -> Self {
        let monitor = Duration::from_secs(u64::from(config.monitor_window_seconds));
        let defer = Duration::from_secs(u64::from(config.deploy_max_defer_seconds));
        Self {
            max_cycle_age: monitor * 2 + APPROVAL_TIMEOUT + defer + STUCK_SLACK,
            function_errors: 0.0,
            function_throttles: 0.0,
            component_error_rate: config.guardrail_error_rate,
            change_blame_window: monitor,
        }
    }
}

/// One heal the pass makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HealAction {
    /// Redrive a failed, timed-out or aborted execution.
    Redrive {
        /// The execution.
        execution_ref: String,
        /// Its cycle.
        cycle_id: String,
        /// Its component.
        component: String,
    },
    /// Stop a stuck execution and start its cycle again under a new name.
    Restart {
        /// The execution.
        execution_ref: String,
        /// Its cycle.
        cycle_id: String,
        /// Its component.
        component: String,
    },
    /// Send the DLQ's messages to intake once.
    ResendDlq {
        /// How many.
        messages: u64,
    },
    /// Roll back the selfbuild change the component's errors began after.
    RollBack {
        /// The component.
        component: String,
        /// The improvement to roll back.
        improvement_id: String,
    },
}

impl HealAction {
    /// The component whose heal ledger counts it; none for the DLQ.
    pub fn component(&self) -> Option<&str> {
        match self {
            Self::Redrive { component, .. }
            | Self::Restart { component, .. }
            | Self::RollBack { component, .. } => Some(component),
            Self::ResendDlq { .. } => None,
        }
    }
}

/// What the pass does about one component with (or without) problems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ComponentStep {
    /// Disabled: left alone until an operator re-enables it.
    Skip,
    /// Heal it; `failed_heals` counts the earlier heals that did not hold.
    Heal {
        /// Failed heals so far.
        failed_heals: u32,
    },
    /// Too many failed heals: disable it, emit the metric, notify.
    Disable {
        /// Failed heals so far.
        failed_heals: u32,
    },
    /// It recovered: its count goes back to 0.
    Reset,
    /// Nothing to do.
    Nothing,
}

/// The rule for one component: a problem while a heal is pending means that heal failed;
/// at [`MAX_FAILED_HEALS`] failed heals it is disabled instead of healed again; a recovery
/// (an execution that succeeded, an error rate back under the threshold) resets the count.
pub fn component_step(ledger: &ComponentHealth, problem: bool, recovered: bool) -> ComponentStep {
    if ledger.disabled.is_some() {
        return ComponentStep::Skip;
    }
    if problem {
        let failed_heals = ledger.failed_heals + u32::from(ledger.heal_pending);
        if failed_heals >= MAX_FAILED_HEALS {
            ComponentStep::Disable { failed_heals }
        } else {
            ComponentStep::Heal { failed_heals }
        }
    } else if recovered && (ledger.failed_heals > 0 || ledger.heal_pending) {
        ComponentStep::Reset
    } else {
        ComponentStep::Nothing
    }
}

/// The ledger after a heal attempt: a heal made is pending (judged at a later pass); one
/// whose call failed counts as failed at once.
pub fn after_attempt(component: &str, failed_heals: u32, succeeded: bool) -> ComponentHealth {
    ComponentHealth {
        component: component.to_owned(),
        failed_heals: failed_heals + u32::from(!succeeded),
        heal_pending: succeeded,
        disabled: None,
    }
}

/// Whether a ledger has reached the disable limit.
pub fn exhausted(ledger: &ComponentHealth) -> bool {
    ledger.failed_heals >= MAX_FAILED_HEALS
}

/// A component's planned step with the heals it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentPlan {
    /// The component.
    pub component: String,
    /// What to do.
    #[serde(flatten)]
    pub step: ComponentStep,
    /// The heals to make (only with `Heal`).
    pub heals: Vec<HealAction>,
}

/// One pass's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// When the pass ran.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// No check degraded or failed.
    pub healthy: bool,
    /// Every check, in [`CheckName`] order.
    pub checks: Vec<Check>,
    /// The heals not tied to a component (the DLQ).
    pub heal_plan: Vec<HealAction>,
    /// Per component with something to do.
    pub components: Vec<ComponentPlan>,
    /// Components disabled (before or by this pass).
    pub disabled: Vec<ComponentHealth>,
    /// What the heals did (filled in by the adapter that carries them out).
    #[serde(default)]
    pub outcomes: Vec<HealOutcome>,
}

/// What one heal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealOutcome {
    /// The heal.
    pub heal: HealAction,
    /// Whether its call succeeded.
    pub succeeded: bool,
    /// In words (the error when it failed).
    pub detail: String,
}

/// Assesses the observations: the checks, and per component what to do.
pub fn assess(obs: &Observations, limits: &Thresholds) -> HealthReport {
    let mut problems: std::collections::BTreeMap<String, Vec<HealAction>> = Default::default();
    let mut recovered: std::collections::BTreeSet<String> = Default::default();
    let since = obs.last_pass_at.unwrap_or(obs.now - FIRST_PASS_LOOKBACK);
    let mut checks = Vec::new();

    // Executions.
    let (mut failed, mut stuck) = (Vec::new(), Vec::new());
    let executions = obs.executions.as_deref().unwrap_or_default();
    for e in executions {
        let ended = e.stopped_at.unwrap_or(e.started_at);
        match e.status {
            ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted
                if ended > since =>
            {
                failed.push(format!("{} {}", e.cycle_id, e.status.as_str()));
                problems
                    .entry(e.component.clone())
                    .or_default()
                    .push(HealAction::Redrive {
                        execution_ref: e.execution_ref.clone(),
                        cycle_id: e.cycle_id.clone(),
                        component: e.component.clone(),
                    });
            }
            ExecutionStatus::Running if obs.now - e.started_at > limits.max_cycle_age => {
                stuck.push(e.cycle_id.clone());
                problems
                    .entry(e.component.clone())
                    .or_default()
                    .push(HealAction::Restart {
                        execution_ref: e.execution_ref.clone(),
                        cycle_id: e.cycle_id.clone(),
                        component: e.component.clone(),
                    });
            }
            ExecutionStatus::Succeeded if ended > since => {
                recovered.insert(e.component.clone());
            }
            _ => {}
        }
    }
    let limit_text = format!("{} s", limits.max_cycle_age.as_secs());
    checks.push(if let Err(e) = &obs.executions {
        check(
            CheckName::Executions,
            CheckStatus::Failed,
            format!("cannot list executions: {e}"),
        )
    } else if failed.is_empty() && stuck.is_empty() {
        check(
            CheckName::Executions,
            CheckStatus::Ok,
            format!(
                "{} execution(s) seen; none failed since {}, none running longer than {limit_text}",
                executions.len(),
                rfc3339(since)
            ),
        )
    } else {
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!("ended badly: {}", failed.join(", ")));
        }
        if !stuck.is_empty() {
            parts.push(format!(
                "running longer than {limit_text}: {}",
                stuck.join(", ")
            ));
        }
        check(
            CheckName::Executions,
            CheckStatus::Degraded,
            parts.join("; "),
        )
    });

    // Own functions.
    checks.push(match &obs.functions {
        None => skipped(
            CheckName::Functions,
            "function metrics are not observed here",
        ),
        Some(functions) => {
            let over: Vec<String> = functions
                .iter()
                .filter(|f| {
                    f.errors > limits.function_errors || f.throttles > limits.function_throttles
                })
                .map(|f| {
                    format!(
                        "{}: {} errors, {} throttles",
                        f.function, f.errors, f.throttles
                    )
                })
                .collect();
            if over.is_empty() {
                check(
                    CheckName::Functions,
                    CheckStatus::Ok,
                    format!("{} function(s) within thresholds", functions.len()),
                )
            } else {
                check(CheckName::Functions, CheckStatus::Degraded, over.join("; "))
            }
        }
    });

    // DLQ.
    let mut heal_plan = Vec::new();
    checks.push(match obs.dlq_depth {
        None => skipped(CheckName::Dlq, "no dead-letter queue here"),
        Some(0) => check(CheckName::Dlq, CheckStatus::Ok, "empty".into()),
        Some(n) => {
            heal_plan.push(HealAction::ResendDlq { messages: n });
            check(
                CheckName::Dlq,
                CheckStatus::Degraded,
                format!("{n} message(s) waiting"),
            )
        }
    });

    // Store.
    checks.push(match &obs.store {
        Ok(()) => check(CheckName::Store, CheckStatus::Ok, "reachable".into()),
        Err(e) => check(
            CheckName::Store,
            CheckStatus::Failed,
            format!("unreachable: {e}"),
        ),
    });

    // LLM breakers.
    checks.push(match &obs.providers {
        None => skipped(CheckName::LlmBreakers, "no provider state recorded"),
        Some(providers) => {
            let open: Vec<&str> = providers
                .iter()
                .filter(|p| p.state == CircuitState::Open)
                .map(|p| p.provider.as_str())
                .collect();
            if open.is_empty() {
                check(
                    CheckName::LlmBreakers,
                    CheckStatus::Ok,
                    format!("{} provider(s), none open", providers.len()),
                )
            } else {
                check(
                    CheckName::LlmBreakers,
                    CheckStatus::Degraded,
                    format!("open: {}", open.join(", ")),
                )
            }
        }
    });

    // Components and agents.
    let mut component_notes = Vec::new();
    if let Some(components) = &obs.components {
        for c in components {
            if !c.exists {
                component_notes.push(format!("{}: not found", c.component));
                continue;
            }
            let Some(rate) = c.error_rate else { continue };
            if rate <= limits.component_error_rate {
                recovered.insert(c.component.clone());
                continue;
            }
            let blamed = c.last_change.as_ref().filter(|change| {
                c.errors_began_at.is_some_and(|began| {
                    began >= change.deployed_at
                        && began - change.deployed_at <= limits.change_blame_window
                })
            });
            match blamed {
                Some(change) => {
                    component_notes.push(format!(
                        "{}: error rate {rate:.3} since selfbuild's {}",
                        c.component, change.improvement_id
                    ));
                    problems
                        .entry(c.component.clone())
                        .or_default()
                        .push(HealAction::RollBack {
                            component: c.component.clone(),
                            improvement_id: change.improvement_id.clone(),
                        });
                }
                None => component_notes.push(format!(
                    "{}: error rate {rate:.3}, not after a selfbuild change",
                    c.component
                )),
            }
        }
    }

    // Per component: heal, disable or reset.
    let mut plans = Vec::new();
    let mut disabled = Vec::new();
    let ledger_of = |name: &str| {
        obs.ledger
            .iter()
            .find(|l| l.component == name)
            .cloned()
            .unwrap_or_else(|| ComponentHealth::fresh(name))
    };
    let mut names: std::collections::BTreeSet<String> = problems.keys().cloned().collect();
    names.extend(recovered.iter().cloned());
    for name in names {
        let ledger = ledger_of(&name);
        let heals = problems.remove(&name).unwrap_or_default();
        let step = component_step(&ledger, !heals.is_empty(), recovered.contains(&name));
        let heals = match step {
            ComponentStep::Heal { .. } => heals,
            _ => Vec::new(),
        };
        if let ComponentStep::Disable { failed_heals } = step {
            disabled.push(ComponentHealth {
                component: name.clone(),
                failed_heals,
                heal_pending: false,
                disabled: Some(Disabled {
                    reason: format!(
                        "{failed_heals} failed heals; selfbuild stops changing it until an \
                         operator re-enables it"
                    ),
                    since: obs.now,
                }),
            });
        }
        if step != ComponentStep::Nothing {
            plans.push(ComponentPlan {
                component: name,
                step,
                heals,
            });
        }
    }
    for l in &obs.ledger {
        if l.disabled.is_some() {
            component_notes.push(format!("{}: disabled", l.component));
            disabled.push(l.clone());
        }
    }
    for d in disabled.iter().filter(|d| {
        !obs.ledger
            .iter()
            .any(|l| l.component == d.component && l.disabled.is_some())
    }) {
        component_notes.push(format!("{}: disabled now", d.component));
    }
    checks.push(match (&obs.components, component_notes.is_empty()) {
        (_, false) => check(
            CheckName::Components,
            CheckStatus::Degraded,
            component_notes.join("; "),
        ),
        (None, true) => skipped(
            CheckName::Components,
            "component error rates are not observed here; none disabled",
        ),
        (Some(c), true) => check(
            CheckName::Components,
            CheckStatus::Ok,
            format!("{} component(s) within thresholds", c.len()),
        ),
    });

    let healthy = checks
        .iter()
        .all(|c| matches!(c.status, CheckStatus::Ok | CheckStatus::Skipped));
    HealthReport {
        at: obs.now,
        healthy,
        checks,
        heal_plan,
        components: plans,
        disabled,
        outcomes: Vec::new(),
    }
}

/// What a health event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthEventKind {
    /// A heal was attempted.
    HealAttempted,
    /// A component was disabled after failed heals.
    Disabled,
    /// An operator re-enabled a component.
    Enabled,
}

/// One audited health action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The component, none for the DLQ.
    pub component: Option<String>,
    /// What happened.
    pub kind: HealthEventKind,
    /// `selfbuild:health` or the operator.
    pub actor: String,
    /// The heal, for an attempt.
    pub heal: Option<HealAction>,
    /// Whether the attempt's call succeeded, for an attempt.
    pub succeeded: Option<bool>,
    /// In words.
    pub detail: String,
}

fn check(name: CheckName, status: CheckStatus, detail: String) -> Check {
    Check {
        name,
        status,
        detail,
    }
}

fn skipped(name: CheckName, detail: &str) -> Check {
    check(name, CheckStatus::Skipped, detail.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

    fn config() -> Config {
        Config::from_lookup(|_| None).unwrap()
    }

    fn limits() -> Thresholds {
        Thresholds::from_config(&config())
    }

    fn obs() -> Observations {
        Observations {
            now: NOW,
            last_pass_at: Some(NOW - Duration::from_secs(300)),
            executions: Ok(Vec::new()),
            functions: Some(Vec::new()),
            dlq_depth: Some(0),
            store: Ok(()),
            providers: Some(Vec::new()),
            components: Some(Vec::new()),
            ledger: Vec::new(),
        }
    }

    fn execution(
        id: &str,
        status: ExecutionStatus,
        started: OffsetDateTime,
        stopped: Option<OffsetDateTime>,
    ) -> ExecutionFact {
        ExecutionFact {
            execution_ref: format!("arn:{id}"),
            cycle_id: id.into(),
            component: "orders".into(),
            status,
            started_at: started,
            stopped_at: stopped,
        }
    }

    fn status_of(report: &HealthReport, name: CheckName) -> CheckStatus {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .status
    }

    #[test]
    fn the_age_limit_comes_from_the_config() {
        let c = Config::from_lookup(|k| match k {
            "MONITOR_WINDOW_SECONDS" => Some("600".into()),
            "DEPLOY_DEFER_SECONDS" => Some("120".into()),
            "DEPLOY_MAX_DEFER_SECONDS" => Some("7200".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.monitor_window_seconds, 600);
        assert_eq!(c.deploy_max_defer_seconds, 7200);
        let t = Thresholds::from_config(&c);
        // A deploy waits at most DEPLOY_MAX_DEFER_SECONDS in all, whatever each wait is.
        assert_eq!(
            t.max_cycle_age,
            Duration::from_secs(1200 + 86_400 + 7200 + 1800)
        );
        assert_eq!(t.change_blame_window, Duration::from_secs(600));
    }

    #[test]
    fn the_approval_timeout_matches_the_state_machine() {
        let asl: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../statemachine/improvement-cycle.asl.json"
        ))
        .unwrap();
        let text = asl.to_string();
        let needle = format!("\"TimeoutSeconds\":{}", APPROVAL_TIMEOUT.as_secs());
        assert!(text.contains(&needle), "no {needle} in the state machine");
    }

    #[test]
    fn all_clear_is_healthy() {
        let report = assess(&obs(), &limits());
        assert!(report.healthy, "{report:#?}");
        assert_eq!(report.checks.len(), 6);
        assert!(report.components.is_empty() && report.heal_plan.is_empty());
    }

    #[test]
    fn a_running_execution_exactly_at_the_limit_is_not_stuck_one_second_more_is() {
        let limit = limits().max_cycle_age;
        let mut o = obs();
        o.executions = Ok(vec![execution(
            "c1",
            ExecutionStatus::Running,
            NOW - limit,
            None,
        )]);
        let report = assess(&o, &limits());
        assert!(report.healthy, "{report:#?}");

        o.executions.as_mut().unwrap()[0].started_at = NOW - limit - Duration::from_secs(1);
        let report = assess(&o, &limits());
        assert!(!report.healthy);
        assert_eq!(
            status_of(&report, CheckName::Executions),
            CheckStatus::Degraded
        );
        assert_eq!(
            report.components[0].heals,
            vec![HealAction::Restart {
                execution_ref: "arn:c1".into(),
                cycle_id: "c1".into(),
                component: "orders".into()
            }]
        );
    }

    #[test]
    fn failures_since_the_last_pass_are_redriven_older_ones_are_not() {
        let last = NOW - Duration::from_secs(300);
        let mut o = obs();
        for status in [
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
        ] {
            o.executions = Ok(vec![execution(
                "c2",
                status,
                NOW - Duration::from_secs(900),
                Some(last),
            )]);
            let report = assess(&o, &limits());
            assert!(report.healthy, "ended at the last pass: seen then");
            o.executions.as_mut().unwrap()[0].stopped_at = Some(last + Duration::from_secs(1));
            let report = assess(&o, &limits());
            assert!(matches!(
                report.components[0].heals[0],
                HealAction::Redrive { .. }
            ));
        }
    }

    #[test]
    fn the_first_pass_looks_back_one_hour() {
        let mut o = obs();
        o.last_pass_at = None;
        o.executions = Ok(vec![execution(
            "c3",
            ExecutionStatus::Failed,
            NOW - Duration::from_secs(7200),
            Some(NOW - FIRST_PASS_LOOKBACK),
        )]);
        assert!(assess(&o, &limits()).healthy);
        o.executions.as_mut().unwrap()[0].stopped_at =
            Some(NOW - FIRST_PASS_LOOKBACK + Duration::from_secs(1));
        assert!(!assess(&o, &limits()).healthy);
    }

    #[test]
    fn own_function_errors_throttles_dlq_store_and_breakers() {
        let mut o = obs();
        o.functions = Some(vec![FunctionFact {
            function: "selfbuild-analyze".into(),
            errors: 0.0,
            throttles: 0.0,
        }]);
        assert!(assess(&o, &limits()).healthy);
        o.functions.as_mut().unwrap()[0].throttles = 1.0;
        let r = assess(&o, &limits());
        assert_eq!(status_of(&r, CheckName::Functions), CheckStatus::Degraded);

        let mut o = obs();
        o.dlq_depth = Some(4);
        let r = assess(&o, &limits());
        assert_eq!(r.heal_plan, vec![HealAction::ResendDlq { messages: 4 }]);

        let mut o = obs();
        o.store = Err("disk gone".into());
        let r = assess(&o, &limits());
        assert_eq!(status_of(&r, CheckName::Store), CheckStatus::Failed);

        let mut o = obs();
        o.providers = Some(vec![
            ProviderHealth {
                provider: "bedrock:x".into(),
                state: CircuitState::HalfOpen,
            },
            ProviderHealth {
                provider: "openai:y".into(),
                state: CircuitState::Open,
            },
        ]);
        let r = assess(&o, &limits());
        assert_eq!(status_of(&r, CheckName::LlmBreakers), CheckStatus::Degraded);
        assert!(r.checks[4].detail.contains("openai:y") && !r.checks[4].detail.contains("bedrock"));
    }

    #[test]
    fn unobservable_checks_are_skipped_not_failed() {
        let mut o = obs();
        o.functions = None;
        o.dlq_depth = None;
        o.providers = None;
        o.components = None;
        let r = assess(&o, &limits());
        assert!(r.healthy);
        assert_eq!(status_of(&r, CheckName::Dlq), CheckStatus::Skipped);
    }

    fn component(
        rate: f64,
        began: Option<OffsetDateTime>,
        deployed: OffsetDateTime,
    ) -> ComponentFact {
        ComponentFact {
            component: "orders".into(),
            exists: true,
            error_rate: Some(rate),
            errors_began_at: began,
            last_change: Some(SelfChange {
                improvement_id: "cyc-1".into(),
                deployed_at: deployed,
            }),
        }
    }

    #[test]
    fn errors_beginning_within_a_monitor_window_of_a_change_roll_it_back() {
        let window = limits().change_blame_window;
        let deployed = NOW - Duration::from_secs(7200);
        let threshold = limits().component_error_rate;
        let mut o = obs();
        o.components = Some(vec![component(
            threshold * 2.0,
            Some(deployed + window),
            deployed,
        )]);
        let r = assess(&o, &limits());
        assert_eq!(
            r.components[0].heals,
            vec![HealAction::RollBack {
                component: "orders".into(),
                improvement_id: "cyc-1".into()
            }]
        );
        // One second later, or before the change: not selfbuild's doing.
        for began in [
            deployed + window + Duration::from_secs(1),
            deployed - Duration::from_secs(1),
        ] {
            o.components = Some(vec![component(threshold * 2.0, Some(began), deployed)]);
            let r = assess(&o, &limits());
            assert!(r.components.is_empty(), "{r:#?}");
            assert_eq!(status_of(&r, CheckName::Components), CheckStatus::Degraded);
        }
        // At the threshold: fine.
        o.components = Some(vec![component(threshold, Some(deployed), deployed)]);
        assert!(assess(&o, &limits()).healthy);
        // A missing component is reported.
        let mut missing = component(0.0, None, deployed);
        missing.exists = false;
        o.components = Some(vec![missing]);
        assert!(!assess(&o, &limits()).healthy);
    }

    #[test]
    fn two_failed_heals_heal_again_three_disable() {
        let mut ledger = ComponentHealth::fresh("orders");
        assert_eq!(
            component_step(&ledger, true, false),
            ComponentStep::Heal { failed_heals: 0 }
        );
        ledger = after_attempt("orders", 0, true);
        // The problem is back: that heal failed.
        assert_eq!(
            component_step(&ledger, true, false),
            ComponentStep::Heal { failed_heals: 1 }
        );
        ledger = after_attempt("orders", 1, true);
        assert_eq!(
            component_step(&ledger, true, false),
            ComponentStep::Heal { failed_heals: 2 }
        );
        ledger = after_attempt("orders", 2, true);
        assert_eq!(
            component_step(&ledger, true, false),
            ComponentStep::Disable { failed_heals: 3 }
        );
    }

    #[test]
    fn a_heal_call_that_fails_counts_at_once() {
        let ledger = after_attempt("orders", 2, false);
        assert_eq!(ledger.failed_heals, 3);
        assert!(!ledger.heal_pending && exhausted(&ledger));
        assert!(!exhausted(&after_attempt("orders", 1, false)));
    }

    #[test]
    fn a_disabled_component_is_left_alone_and_a_reenabled_one_starts_from_zero() {
        let mut ledger = after_attempt("orders", 2, true);
        ledger.disabled = Some(Disabled {
            reason: "x".into(),
            since: NOW,
        });
        assert_eq!(component_step(&ledger, true, false), ComponentStep::Skip);
        let reenabled = ComponentHealth::fresh("orders");
        assert_eq!(
            component_step(&reenabled, true, false),
            ComponentStep::Heal { failed_heals: 0 }
        );
    }

    #[test]
    fn a_recovery_resets_and_a_quiet_pass_does_not() {
        let ledger = after_attempt("orders", 1, true);
        assert_eq!(
            component_step(&ledger, false, false),
            ComponentStep::Nothing
        );
        assert_eq!(component_step(&ledger, false, true), ComponentStep::Reset);
        assert_eq!(
            component_step(&ComponentHealth::fresh("orders"), false, true),
            ComponentStep::Nothing
        );
    }

    #[test]
    fn the_report_disables_after_three_and_says_so() {
        let mut o = obs();
        o.executions = Ok(vec![execution(
            "c4",
            ExecutionStatus::Failed,
            NOW - Duration::from_secs(600),
            Some(NOW - Duration::from_secs(60)),
        )]);
        o.ledger = vec![after_attempt("orders", 2, true)];
        let r = assess(&o, &limits());
        assert_eq!(
            r.components[0].step,
            ComponentStep::Disable { failed_heals: 3 }
        );
        assert!(r.components[0].heals.is_empty(), "no heal once disabled");
        assert_eq!(r.disabled.len(), 1);
        assert!(r.checks[5].detail.contains("orders: disabled now"));

        // The next pass: already disabled, skipped, still shown.
        o.ledger = r.disabled.clone();
        let r = assess(&o, &limits());
        assert_eq!(r.components[0].step, ComponentStep::Skip);
        assert!(r.checks[5].detail.contains("orders: disabled"));
    }

    #[test]
    fn execution_status_names_are_the_step_functions_ones() {
        for status in [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn the_report_has_stable_field_names() {
        let mut o = obs();
        o.executions = Ok(vec![execution(
            "c5",
            ExecutionStatus::Failed,
            NOW - Duration::from_secs(600),
            Some(NOW - Duration::from_secs(60)),
        )]);
        let json = serde_json::to_value(assess(&o, &limits())).unwrap();
        assert_eq!(json["healthy"], false);
        assert_eq!(json["checks"][0]["name"], "executions");
        assert_eq!(json["checks"][0]["status"], "degraded");
        assert_eq!(json["components"][0]["step"], "heal");
        assert_eq!(json["components"][0]["heals"][0]["action"], "redrive");
        let back: HealthReport = serde_json::from_value(json).unwrap();
        assert!(!back.healthy);
    }
}
