//! Registered agents as health facts: each agent with an MCP URL pinged (MCP `ping`, bounded
//! by the client's timeout); one that does not answer is reported as not found.

use super::ComponentFact;
use crate::agents::PeerTarget;
use crate::ports::AgentPeers;
use crate::records::AgentRecord;

/// The name an agent goes by in the health report: `agent:<tenant>/<name>` (`*` fleet-wide).
pub fn agent_component(agent: &AgentRecord) -> String {
    let tenant = agent.tenant_id.as_ref().map_or("*", |t| t.as_str());
    format!("agent:{tenant}/{}", agent.name)
}

/// One fact per agent with an MCP URL: whether it answered a ping (one at a time, so the
/// pass takes at most agents × the call timeout).
pub async fn agent_facts(agents: &[AgentRecord], peers: &dyn AgentPeers) -> Vec<ComponentFact> {
    let mut facts = Vec::new();
    for agent in agents {
        let Some(target) = PeerTarget::of(agent) else {
            continue;
        };
        let answered = match peers.ping(&target).await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(agent = %agent.name, error = %crate::text::Escaped(&e), "agent did not answer its ping");
                false
            }
        };
        facts.push(ComponentFact {
            component: agent_component(agent),
            exists: answered,
            error_rate: None,
            errors_began_at: None,
            last_change: None,
        });
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::NoPeers;

    #[tokio::test]
    async fn an_agent_that_does_not_answer_is_reported_missing_and_one_without_url_skipped() {
        let old = r#"{"name":"scout","url":"https://a.example","capabilities":["x"],
            "tenant_id":"acme","registered_by":"k","registered_at":"2026-01-01T00:00:00Z"}"#;
        let without: AgentRecord = serde_json::from_str(old).unwrap();
        let with = AgentRecord {
            name: "orders".into(),
            mcp_url: Some("http://127.0.0.1:9/mcp".into()),
            ..without.clone()
        };
        let facts = agent_facts(&[without, with], &NoPeers).await;
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].component, "agent:acme/orders");
        assert!(!facts[0].exists);
    }
}
