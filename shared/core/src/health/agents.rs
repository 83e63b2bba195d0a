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

/// One fact per agent with an MCP URL: whether it answered a ping. The pings go out at once,
/// so the pass waits about one call timeout however many agents are down.
pub async fn agent_facts(agents: &[AgentRecord], peers: &dyn AgentPeers) -> Vec<ComponentFact> {
    let pinged = agents.iter().filter_map(|agent| {
        let target = PeerTarget::of(agent)?;
        Some(async move {
            let answered = match peers.ping(&target).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::info!(agent = %agent.name, error = %crate::text::Escaped(&e), "agent did not answer its ping");
                    false
                }
            };
            ComponentFact {
                component: agent_component(agent),
                exists: answered,
                error_rate: None,
                errors_began_at: None,
                last_change: None,
            }
        })
    });
    futures_util::future::join_all(pinged).await
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

    /// Answers a ping only once every agent's ping has arrived.
    struct AllAtOnce(tokio::sync::Barrier);

    #[async_trait::async_trait]
    impl AgentPeers for AllAtOnce {
        async fn deployment_window(
            &self,
            target: &PeerTarget,
            tool: &str,
            arguments: serde_json::Value,
        ) -> Result<crate::agents::WindowAnswer, crate::ports::PeerError> {
            NoPeers.deployment_window(target, tool, arguments).await
        }
        async fn notify(
            &self,
            deliveries: &[crate::ports::Delivery],
            notice: serde_json::Value,
        ) -> Vec<crate::ports::DeliveryOutcome> {
            NoPeers.notify(deliveries, notice).await
        }
        async fn ping(&self, _: &PeerTarget) -> Result<(), crate::ports::PeerError> {
            self.0.wait().await;
            Ok(())
        }
    }

    // Paused time: if the pings went one after the other, the first would wait for the
    // others forever and the timeout would end the test.
    #[tokio::test(start_paused = true)]
    async fn agents_are_pinged_at_once() {
        let agent = |name: &str| {
            serde_json::from_value::<AgentRecord>(serde_json::json!({
                "name": name, "url": format!("https://{name}.example"), "capabilities": [],
                "mcp_url": format!("https://{name}.example/mcp"),
                "registered_by": "k", "registered_at": "2026-01-01T00:00:00Z"
            }))
            .expect("agent")
        };
        let agents = [agent("orders"), agent("billing"), agent("search")];
        let peers = AllAtOnce(tokio::sync::Barrier::new(agents.len()));
        let facts = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            agent_facts(&agents, &peers),
        )
        .await
        .expect("the pings went out at once");
        let names: Vec<_> = facts
            .iter()
            .map(|f| (f.component.as_str(), f.exists))
            .collect();
        assert_eq!(
            names,
            [
                ("agent:*/orders", true),
                ("agent:*/billing", true),
                ("agent:*/search", true)
            ]
        );
    }
}
