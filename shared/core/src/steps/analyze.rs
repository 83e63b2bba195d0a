//! `analyze` (R4–R6): the cycle's telemetry read into ranked opportunities, leaving out the
//! components the health pass disabled (each audited as `component_skipped`); the registered
//! agents' own metrics are read too (seed R10.2), agents read from the registry each cycle.

use serde_json::{Value, json};

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::analyze::{AnalysisReport, analyze_with_agents};
use crate::audit::{AuditAction, AuditEvent};
use crate::config::Config;
use crate::cycle::CycleRequest;
use crate::health::skip::cycle_scope;

/// The actor of the skip audit events.
const ACTOR: &str = "selfbuild:analyze";

/// Runs the `analyze` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    _config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    let request: CycleRequest = parse_payload(payload)?;
    let ledgers = deps.store.component_health().await?;
    let scope = cycle_scope(&request, &ledgers);
    let report = if scope.nothing_left {
        AnalysisReport::nothing_to_analyse(&request, scope.skipped)
    } else {
        let narrowed = CycleRequest {
            components: scope.components.clone(),
            ..request.clone()
        };
        let agents = crate::peers::registered_agents(deps.registry).await;
        let mut report = analyze_with_agents(
            deps.telemetry,
            deps.deployer,
            &narrowed,
            &scope.excluded,
            &agents,
        )
        .await?;
        // A fleet-wide cycle names the disabled components its telemetry had: those it
        // would have looked at (a tenant's cycle never names another tenant's).
        report.skipped = scope
            .skipped
            .into_iter()
            .filter(|s| {
                !request.components.is_empty()
                    || report
                        .components
                        .iter()
                        .any(|c| c.component.as_str() == s.component)
            })
            .collect();
        report
    };
    for skipped in &report.skipped {
        tracing::info!(cycle = %request.cycle_id, component = %skipped.component, "disabled component skipped");
        deps.store
            .append(&AuditEvent {
                at: deps.clock.now(),
                tenant_id: request.tenant_id.clone(),
                cycle_id: request.cycle_id.clone(),
                improvement_id: None,
                actor: ACTOR.to_owned(),
                action: AuditAction::ComponentSkipped,
                before: None,
                after: Some(json!(skipped)),
                detail: skipped.reason.clone(),
            })
            .await?;
    }
    to_value(&report)
}
