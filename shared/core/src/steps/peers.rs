//! The steps' side of agents as peers (seed R10): the owner asked for a deployment window
//! before a deploy, dependents notified after a deploy, promote or rollback. Agents are read
//! from the registry at each call, never cached; a failing agent never fails the step.

use serde_json::json;
use time::Duration;

use super::StepDeps;
use crate::agents::{
    ChangeEvent, ChangeNotice, DEFAULT_NOTIFY_TOOL, DEFAULT_WINDOW_TOOL, MAX_WINDOW_WAIT_SECONDS,
    MIN_WINDOW_WAIT_SECONDS, OwnerWindow, PeerTarget, WindowRequest, dependents_of,
    next_window_open, owner_of,
};
use crate::audit::AuditAction;
use crate::config::Config;
use crate::improvement::ImprovementItem;
use crate::ports::Delivery;
use crate::records::{AgentRecord, TenantScope};
use crate::text::Escaped;
use crate::transition::Transition;

/// The registered agents, or none (logged) when the registry cannot be read.
async fn agents(deps: &StepDeps<'_>) -> Vec<AgentRecord> {
    match deps.registry.list_agents(&TenantScope::All).await {
        Ok(agents) => agents,
        Err(e) => {
            tracing::warn!(error = %Escaped(&e), "agents unreadable: no agent is consulted");
            Vec::new()
        }
    }
}

/// What the component's owner decides about deploying `item` now: its window tool's answer,
/// else its declared low-traffic windows, else selfbuild's own detection.
pub(super) async fn owner_window(
    deps: &StepDeps<'_>,
    config: &Config,
    item: &ImprovementItem,
) -> OwnerWindow {
    if item.dry_run {
        return OwnerWindow::Own(None);
    }
    let agents = agents(deps).await;
    let component = item.opportunity.component.as_str();
    let Some(owner) = owner_of(&agents, item.tenant_id.as_ref(), component) else {
        return OwnerWindow::Own(None);
    };
    let now = deps.clock.now();
    let mut note = None;
    if let Some(target) = PeerTarget::of(owner) {
        let tool = owner.window_tool.as_deref().unwrap_or(DEFAULT_WINDOW_TOOL);
        let request = WindowRequest {
            agent: owner.name.clone(),
            component: component.to_owned(),
            improvement_id: item.improvement_id().to_string(),
            tenant_id: item.tenant_id.as_ref().map(|t| t.as_str().to_owned()),
            canary_weight: config.canary_weight,
        };
        let arguments = serde_json::to_value(&request).unwrap_or_default();
        match deps.peers.deployment_window(&target, tool, arguments).await {
            Ok(answer) => {
                let said = answer
                    .reason
                    .as_deref()
                    .map(|r| format!(": {}", crate::text::Excerpt(r)))
                    .unwrap_or_default();
                if answer.deploy_now {
                    return OwnerWindow::Now(format!("agent {} said deploy now{said}", owner.name));
                }
                let wait = answer
                    .retry_after_seconds
                    .unwrap_or(config.deploy_defer_seconds)
                    .clamp(MIN_WINDOW_WAIT_SECONDS, MAX_WINDOW_WAIT_SECONDS);
                return OwnerWindow::Later {
                    wait_until: now + Duration::seconds(i64::from(wait)),
                    reason: format!(
                        "agent {} said not now{said}; asking again in {wait} s",
                        owner.name
                    ),
                };
            }
            Err(e) => {
                tracing::info!(agent = %owner.name, error = %Escaped(&e), "no deployment window from the agent");
                note = Some(format!(
                    "agent {} gave no deployment window ({})",
                    owner.name,
                    crate::text::Excerpt(&e.to_string())
                ));
            }
        }
    }
    if let Some(open) = next_window_open(&owner.low_traffic_windows, now) {
        let windows: Vec<String> = owner
            .low_traffic_windows
            .iter()
            .map(ToString::to_string)
            .collect();
        let outside = format!(
            "outside agent {}'s low-traffic windows ({} UTC)",
            owner.name,
            windows.join(", ")
        );
        return OwnerWindow::Later {
            wait_until: open,
            reason: match note {
                Some(note) => format!("{note}; {outside}"),
                None => outside,
            },
        };
    }
    OwnerWindow::Own(note)
}

/// Notifies every agent depending on the owner of `item`'s component of `event`, and audits
/// each delivery; failures are audited (or, when even that fails, logged), never returned.
pub(super) async fn notify_dependents(
    deps: &StepDeps<'_>,
    item: &ImprovementItem,
    event: ChangeEvent,
    detail: &str,
) {
    let agents = agents(deps).await;
    let component = item.opportunity.component.as_str();
    let Some(owner) = owner_of(&agents, item.tenant_id.as_ref(), component) else {
        return;
    };
    let dependents = dependents_of(&agents, owner);
    let deliveries: Vec<Delivery> = dependents
        .iter()
        .filter_map(|a| {
            Some(Delivery {
                target: PeerTarget::of(a)?,
                tool: a
                    .notify_tool
                    .clone()
                    .unwrap_or_else(|| DEFAULT_NOTIFY_TOOL.to_owned()),
            })
        })
        .collect();
    if deliveries.is_empty() {
        return;
    }
    let notice = ChangeNotice {
        event,
        changed_agent: owner.name.clone(),
        component: component.to_owned(),
        improvement_id: item.improvement_id().to_string(),
        tenant_id: item.tenant_id.as_ref().map(|t| t.as_str().to_owned()),
        detail: detail.to_owned(),
        at: deps.clock.now(),
    };
    let body = serde_json::to_value(&notice).unwrap_or_default();
    let outcomes = deps.peers.notify(&deliveries, body.clone()).await;
    let actor = match event {
        ChangeEvent::RolledBack => "selfbuild:rollback",
        ChangeEvent::Deployed | ChangeEvent::Promoted => "selfbuild:deploy",
    };
    for (delivery, outcome) in deliveries.iter().zip(outcomes) {
        let (action, detail) = match &outcome.error {
            None => (
                AuditAction::AgentNotified,
                format!(
                    "agent {} notified that {} was {} ({} attempt(s))",
                    outcome.agent,
                    component,
                    event.as_str(),
                    outcome.attempts
                ),
            ),
            Some(e) => (
                AuditAction::AgentNotificationFailed,
                format!(
                    "agent {} not notified that {} was {} after {} attempt(s): {e}",
                    outcome.agent,
                    component,
                    event.as_str(),
                    outcome.attempts
                ),
            ),
        };
        let transition = Transition {
            actor: actor.to_owned(),
            after: Some(json!({
                "agent": outcome.agent,
                "tool": delivery.tool,
                "attempts": outcome.attempts,
                "error": outcome.error.as_ref().map(ToString::to_string),
                "notice": body,
            })),
            ..Transition::by_step(action, detail)
        };
        if let Err(e) = deps.recorder().record(item, transition).await {
            tracing::warn!(agent = %outcome.agent, error = %Escaped(&e), "the delivery's audit event was not written");
        }
    }
}
