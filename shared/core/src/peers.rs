//! Dependent agents told of a change (seed R10), whoever made it: the cycle's deploy, promote
//! and rollback, MCP `rollback_improvement`, the health pass's rollback heal. Agents are read
//! from the registry at each call, never cached; a failing agent never fails the change.

use serde_json::json;

use crate::agents::{ChangeEvent, ChangeNotice, DEFAULT_NOTIFY_TOOL, PeerTarget};
use crate::agents::{dependents_of, owner_of};
use crate::audit::AuditAction;
use crate::improvement::ImprovementItem;
use crate::ports::{AgentPeers, Delivery, Registry};
use crate::records::{AgentRecord, TenantScope};
use crate::text::Escaped;
use crate::transition::{Recorder, Transition};

/// The registered agents, or none (logged) when the registry cannot be read.
pub async fn registered_agents(registry: &dyn Registry) -> Vec<AgentRecord> {
    match registry.list_agents(&TenantScope::All).await {
        Ok(agents) => agents,
        Err(e) => {
            tracing::warn!(error = %Escaped(&e), "agents unreadable: no agent is consulted");
            Vec::new()
        }
    }
}

/// Where the agents depending on a changed component are found and how they are called.
#[derive(Clone, Copy)]
pub struct Dependents<'a> {
    /// The registered agents.
    pub registry: &'a dyn Registry,
    /// Their MCP client.
    pub peers: &'a dyn AgentPeers,
}

/// A change to announce: what happened, who did it, in words.
#[derive(Debug, Clone, Copy)]
pub struct Announced<'a> {
    /// Deployed, promoted or rolled back.
    pub event: ChangeEvent,
    /// Who made the change; the deliveries' audit events name it.
    pub actor: &'a str,
    /// In words, for the notice.
    pub detail: &'a str,
}

impl Dependents<'_> {
    /// Notifies every agent depending on the owner of `item`'s component of `change`, and
    /// audits each delivery through `recorder` as `change.actor`'s; failures are audited (or,
    /// when even that fails, logged), never returned.
    pub async fn notify(
        &self,
        recorder: Recorder<'_>,
        item: &ImprovementItem,
        change: Announced<'_>,
    ) {
        let agents = registered_agents(self.registry).await;
        let component = item.opportunity.component.as_str();
        let Some(owner) = owner_of(&agents, item.tenant_id.as_ref(), component) else {
            return;
        };
        let deliveries: Vec<Delivery> = dependents_of(&agents, owner)
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
        let event = change.event;
        let notice = ChangeNotice {
            event,
            changed_agent: owner.name.clone(),
            component: component.to_owned(),
            improvement_id: item.improvement_id().to_string(),
            tenant_id: item.tenant_id.as_ref().map(|t| t.as_str().to_owned()),
            detail: change.detail.to_owned(),
            at: recorder.clock.now(),
        };
        let body = serde_json::to_value(&notice).unwrap_or_default();
        let outcomes = self.peers.notify(&deliveries, body.clone()).await;
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
                actor: change.actor.to_owned(),
                after: Some(json!({
                    "agent": outcome.agent,
                    "tool": delivery.tool,
                    "attempts": outcome.attempts,
                    "error": outcome.error.as_ref().map(ToString::to_string),
                    "notice": body,
                })),
                ..Transition::by_step(action, detail)
            };
            if let Err(e) = recorder.record(item, transition).await {
                tracing::warn!(agent = %outcome.agent, error = %Escaped(&e), "the delivery's audit event was not written");
            }
        }
    }
}
