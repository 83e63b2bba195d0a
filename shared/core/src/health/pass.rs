//! One health pass over the ports: observe, [`assess`], carry out the heals, keep each
//! component's ledger, disable after [`MAX_FAILED_HEALS`], store the report.

use serde_json::json;
use time::OffsetDateTime;

use super::{
    COMPONENT_DISABLED_DETAIL_TYPE, ComponentFact, ComponentHealth, ComponentStep, Disabled,
    FIRST_PASS_LOOKBACK, FunctionFact, HealAction, HealOutcome, HealthEvent, HealthEventKind,
    HealthReport, MAX_FAILED_HEALS, Observations, SELF_HEALING_EXHAUSTED_METRIC, Thresholds,
    after_attempt, assess, exhausted,
};
use crate::canary::RollbackOrder;
use crate::cycle::CycleRequest;
use crate::ids::{CycleId, ImprovementId};
use crate::ports::{
    CycleStore, DeadLetters, ExecutionMonitor, HealthStore, MetricRecord, MetricSink, Notifier,
    Orchestrator, RollbackHeal, Unit, UsageLedger,
};

/// The actor health events and notifications name.
pub const ACTOR: &str = "selfbuild:health";

/// The most executions one pass reads.
const EXECUTION_LIMIT: usize = 1000;

/// The ports a pass uses.
pub struct PassPorts<'a> {
    /// Lists, redrives and stops executions.
    pub executions: &'a dyn ExecutionMonitor,
    /// Starts a stuck cycle again.
    pub orchestrator: &'a dyn Orchestrator,
    /// Reads a stuck cycle's stored request.
    pub cycles: &'a dyn CycleStore,
    /// Heal ledgers, events, reports.
    pub health: &'a dyn HealthStore,
    /// The LLM breakers as the generate step last saw them.
    pub usage: &'a dyn UsageLedger,
    /// Tells operators a component was disabled.
    pub notifier: &'a dyn Notifier,
    /// Receives [`SELF_HEALING_EXHAUSTED_METRIC`].
    pub metrics: &'a dyn MetricSink,
    /// Rolls back a blamed change (the rollback heal): here, or handed to the rollback
    /// function on AWS.
    pub rollback: &'a dyn RollbackHeal,
    /// Re-sends intake's dead letters; none where there is no queue.
    pub dead_letters: Option<&'a dyn DeadLetters>,
}

/// What the caller observed with adapters the pass does not know; none where not observable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// selfbuild's own functions.
    pub functions: Option<Vec<FunctionFact>>,
    /// The DLQ's depth.
    pub dlq_depth: Option<u64>,
    /// Registered components and agents.
    pub components: Option<Vec<ComponentFact>>,
}

/// Runs one pass at `now` and returns its report (also stored as the last one, when the
/// store answers).
pub async fn run_pass(
    ports: &PassPorts<'_>,
    now: OffsetDateTime,
    limits: &Thresholds,
    observed: Observed,
) -> HealthReport {
    let mut store: Result<(), String> = Ok(());
    let last_pass_at = match ports.health.last_health_report().await {
        Ok(last) => last.map(|r| r.at).filter(|at| *at < now),
        Err(e) => {
            store = Err(e.to_string());
            None
        }
    };
    let ledger = match ports.health.component_health().await {
        Ok(ledger) => ledger,
        Err(e) => {
            store = Err(e.to_string());
            Vec::new()
        }
    };
    let since = last_pass_at.unwrap_or(now - FIRST_PASS_LOOKBACK);
    let executions = ports
        .executions
        .executions(since, EXECUTION_LIMIT)
        .await
        .map_err(|e| e.to_string());
    let providers = ports
        .usage
        .llm_usage(now.date())
        .await
        .ok()
        .map(|u| u.providers);
    let obs = Observations {
        now,
        last_pass_at,
        executions,
        functions: observed.functions,
        dlq_depth: observed.dlq_depth,
        store,
        providers,
        components: observed.components,
        ledger,
    };
    let mut report = assess(&obs, limits);
    if obs.store.is_err() {
        // Without the ledger no heal can be counted; report only.
        return report;
    }

    for action in report.heal_plan.clone() {
        let outcome = heal(ports, now, limits, &action).await;
        audit_attempt(ports, now, &outcome).await;
        report.outcomes.push(outcome);
    }
    for plan in report.components.clone() {
        match plan.step {
            ComponentStep::Heal { failed_heals } => {
                let mut all_ok = true;
                for action in &plan.heals {
                    let outcome = heal(ports, now, limits, action).await;
                    all_ok &= outcome.succeeded;
                    audit_attempt(ports, now, &outcome).await;
                    report.outcomes.push(outcome);
                }
                let ledger = after_attempt(&plan.component, failed_heals, all_ok);
                if exhausted(&ledger) {
                    let disabled = disable(ports, now, &plan.component, ledger.failed_heals).await;
                    report.disabled.push(disabled);
                } else {
                    put(ports, &ledger).await;
                }
            }
            ComponentStep::Disable { failed_heals } => {
                let disabled = disable(ports, now, &plan.component, failed_heals).await;
                // assess already listed it; keep the stored form.
                if let Some(slot) = report
                    .disabled
                    .iter_mut()
                    .find(|d| d.component == plan.component)
                {
                    *slot = disabled;
                }
            }
            ComponentStep::Reset => put(ports, &ComponentHealth::fresh(&plan.component)).await,
            ComponentStep::Skip | ComponentStep::Nothing => {}
        }
    }
    if let Err(e) = ports.health.save_health_report(&report).await {
        tracing::warn!(error = %e, "health report not stored");
    }
    report
}

async fn put(ports: &PassPorts<'_>, ledger: &ComponentHealth) {
    if let Err(e) = ports.health.put_component_health(ledger).await {
        tracing::warn!(component = %ledger.component, error = %e, "heal ledger not stored");
    }
}

/// Disables the component: ledger, event, notification and metric.
async fn disable(
    ports: &PassPorts<'_>,
    now: OffsetDateTime,
    component: &str,
    failed_heals: u32,
) -> ComponentHealth {
    let reason = format!(
        "{failed_heals} failed heals (limit {MAX_FAILED_HEALS}); selfbuild stops changing it \
         until an operator re-enables it"
    );
    let ledger = ComponentHealth {
        component: component.to_owned(),
        failed_heals,
        heal_pending: false,
        disabled: Some(Disabled {
            reason: reason.clone(),
            since: now,
        }),
    };
    put(ports, &ledger).await;
    let event = HealthEvent {
        at: now,
        component: Some(component.to_owned()),
        kind: HealthEventKind::Disabled,
        actor: ACTOR.to_owned(),
        heal: None,
        succeeded: None,
        detail: reason.clone(),
    };
    if let Err(e) = ports.health.append_health_event(&event).await {
        tracing::warn!(component, error = %e, "disable not audited");
    }
    let detail = json!({"component": component, "failed_heals": failed_heals, "reason": reason});
    if let Err(e) = ports
        .notifier
        .notify(COMPONENT_DISABLED_DETAIL_TYPE, &detail)
        .await
    {
        tracing::warn!(component, error = %e, "disable not notified");
    }
    ports.metrics.record(MetricRecord {
        name: SELF_HEALING_EXHAUSTED_METRIC,
        unit: Unit::Count,
        value: 1.0,
        dimensions: vec![("Component", component.to_owned())],
        timestamp: now,
    });
    ledger
}

async fn audit_attempt(ports: &PassPorts<'_>, now: OffsetDateTime, outcome: &HealOutcome) {
    let event = HealthEvent {
        at: now,
        component: outcome.heal.component().map(str::to_owned),
        kind: HealthEventKind::HealAttempted,
        actor: ACTOR.to_owned(),
        heal: Some(outcome.heal.clone()),
        succeeded: Some(outcome.succeeded),
        detail: outcome.detail.clone(),
    };
    if let Err(e) = ports.health.append_health_event(&event).await {
        tracing::warn!(error = %e, "heal attempt not audited");
    }
}

/// Carries out one heal.
async fn heal(
    ports: &PassPorts<'_>,
    now: OffsetDateTime,
    limits: &Thresholds,
    action: &HealAction,
) -> HealOutcome {
    let result = match action {
        HealAction::Redrive { execution_ref, .. } => ports
            .executions
            .redrive(execution_ref)
            .await
            .map(|()| format!("redrove {execution_ref}"))
            .map_err(|e| e.to_string()),
        HealAction::Restart {
            execution_ref,
            cycle_id,
            ..
        } => restart(ports, now, limits, execution_ref, cycle_id).await,
        HealAction::ResendDlq { .. } => resend_dlq(ports).await,
        HealAction::RollBack {
            component,
            improvement_id,
        } => roll_back(ports, component, improvement_id).await,
    };
    match result {
        Ok(detail) => HealOutcome {
            heal: action.clone(),
            succeeded: true,
            detail,
        },
        Err(detail) => HealOutcome {
            heal: action.clone(),
            succeeded: false,
            detail,
        },
    }
}

/// Re-sends the dead letters once; a failure when any was left (see [`super::dlq`]).
async fn resend_dlq(ports: &PassPorts<'_>) -> Result<String, String> {
    let dead_letters = ports
        .dead_letters
        .ok_or_else(|| "no dead-letter queue adapter here to re-send from".to_owned())?;
    let resent = dead_letters
        .resend(super::dlq::RESEND_LIMIT)
        .await
        .map_err(|e| e.to_string())?;
    if resent.all_done() {
        Ok(resent.describe())
    } else {
        Err(resent.describe())
    }
}

/// Rolls back the selfbuild change a component's errors began after, through the same
/// requested rollback as MCP `rollback_improvement` (audited `rolled_back` with the health
/// pass as actor, notified, counted, dependent agents told), here or handed over: a hand-over
/// accepted is a heal made, judged at a later pass like any other.
async fn roll_back(
    ports: &PassPorts<'_>,
    component: &str,
    improvement_id: &str,
) -> Result<String, String> {
    let order = RollbackOrder {
        improvement_id: ImprovementId::parse(improvement_id).map_err(|e| e.to_string())?,
        actor: ACTOR.to_owned(),
        reason: format!("{component}'s errors began within one monitor window after it"),
    };
    ports
        .rollback
        .roll_back(&order)
        .await
        .map_err(|e| e.to_string())
}

/// Stops a stuck execution and starts its cycle again from the stored request, under a new
/// cycle id (execution names cannot be reused).
async fn restart(
    ports: &PassPorts<'_>,
    now: OffsetDateTime,
    limits: &Thresholds,
    execution_ref: &str,
    cycle_id: &str,
) -> Result<String, String> {
    let id = CycleId::parse(cycle_id).map_err(|e| e.to_string())?;
    let cycle = ports
        .cycles
        .get_cycle(&id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("cycle {cycle_id} has no stored request"))?;
    let cause = format!(
        "running longer than {} s; restarted by the health pass",
        limits.max_cycle_age.as_secs()
    );
    ports
        .executions
        .stop(execution_ref, &cause)
        .await
        .map_err(|e| e.to_string())?;
    let request = CycleRequest {
        cycle_id: restart_id(&id, now)?,
        requested_at: now,
        ..cycle.request
    };
    let handle = ports
        .orchestrator
        .start_cycle(&request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "stopped {execution_ref}; started {} as {}",
        request.cycle_id, handle.execution_ref
    ))
}

/// A component re-enabled by an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Enabled {
    /// The component.
    pub component: String,
    /// Always true: it is enabled now.
    pub enabled: bool,
    /// Whether it was disabled before.
    pub was_disabled: bool,
}

/// Re-enables `component` (its ledger cleared, so it starts again from 0 failed heals) and
/// audits who did it as a health event `enabled`; the CLI and the MCP tool both call this.
pub async fn enable_component(
    health: &dyn HealthStore,
    component: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Enabled, crate::error::StoreError> {
    let was_disabled = health.enable_component(component).await?;
    health
        .append_health_event(&HealthEvent {
            at: now,
            component: Some(component.to_owned()),
            kind: HealthEventKind::Enabled,
            actor: actor.to_owned(),
            heal: None,
            succeeded: None,
            detail: if was_disabled {
                "re-enabled; failed heals back to 0".to_owned()
            } else {
                "was not disabled; failed heals back to 0".to_owned()
            },
        })
        .await?;
    Ok(Enabled {
        component: component.to_owned(),
        enabled: true,
        was_disabled,
    })
}

/// `<cycle>-r<unix seconds>`, the cycle part cut so the id stays within 80 characters.
pub fn restart_id(cycle: &CycleId, now: OffsetDateTime) -> Result<CycleId, String> {
    let stem: String = cycle.as_str().chars().take(64).collect();
    CycleId::parse(&format!("{stem}-r{}", now.unix_timestamp())).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn restart_ids_are_new_and_valid() {
        let now = datetime!(2026-12-05 12:00 UTC);
        let long = CycleId::parse(&"a".repeat(80)).unwrap();
        let id = restart_id(&long, now).unwrap();
        assert!(id.as_str().len() <= 80 && id.as_str().ends_with("-r1796472000"));
        let short = CycleId::parse("c1").unwrap();
        assert_eq!(restart_id(&short, now).unwrap().as_str(), "c1-r1796472000");
    }
}
