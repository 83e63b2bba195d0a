//! The steps' side of agents as peers (seed R10): the owner asked for a deployment window
//! before a deploy (dependents are told of changes by [`crate::peers`]). Agents are read from
//! the registry at each call, never cached; a failing agent never fails the step.

use time::Duration;

use super::StepDeps;
use crate::agents::{
    DEFAULT_WINDOW_TOOL, MAX_WINDOW_WAIT_SECONDS, MIN_WINDOW_WAIT_SECONDS, OwnerWindow, PeerTarget,
    WindowRequest, next_window_open, owner_of,
};
use crate::config::Config;
use crate::improvement::ImprovementItem;
use crate::peers::registered_agents;
use crate::text::Escaped;

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
    let agents = registered_agents(deps.registry).await;
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
