//! `selfbuild health` and `selfbuild enable-component`: one self health pass over the data
//! directory on the embedded adapters, and re-enabling a component it disabled.
//!
//! Observed here: the embedded executions (cycle records), the store, the LLM breakers the
//! generate step last recorded, the heal ledgers, the registered agents (MCP `ping`). Not
//! observable offline (reported `skipped`): selfbuild's own functions' metrics, a DLQ,
//! registered components' error rates.

use std::sync::{Arc, Mutex};

use selfbuild_core::Config;
use selfbuild_core::error::StoreError;
use selfbuild_core::health::pass::{Observed, PassPorts, run_pass};
use selfbuild_core::health::{
    ComponentFact, HealthEvent, HealthEventKind, HealthReport, Thresholds,
};
use selfbuild_core::ports::{Clock, HealthStore, MetricRecord, MetricSink, Registry};
use selfbuild_core::records::TenantScope;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::orchestrator::RecordingOrchestrator;
use crate::store::SqliteStore;

/// Keeps the names of the metrics a pass emits (shown in the CLI's answer) and logs them as
/// EMF lines.
#[derive(Default)]
struct Emitted {
    names: Mutex<Vec<String>>,
    namespace: String,
}

impl MetricSink for Emitted {
    fn record(&self, metric: MetricRecord) {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(metric.name.to_owned());
        selfbuild_core::emf::TracingSink {
            namespace: self.namespace.clone(),
        }
        .record(metric);
    }
}

/// Runs one pass over `store` at the clock's time; the report and the metrics it emitted.
pub async fn health_pass(
    store: &SqliteStore,
    clock: Arc<dyn Clock>,
    config: &Config,
) -> (HealthReport, Vec<String>) {
    let now = clock.now();
    let orchestrator = RecordingOrchestrator::new(store.clone(), clock);
    let metrics = Emitted {
        names: Mutex::default(),
        namespace: config.metrics_namespace.clone(),
    };
    let ports = PassPorts {
        executions: &orchestrator,
        orchestrator: &orchestrator,
        cycles: store,
        health: store,
        usage: store,
        notifier: store,
        metrics: &metrics,
    };
    let observed = Observed {
        components: agent_facts(store, config).await,
        ..Observed::default()
    };
    let report = run_pass(&ports, now, &Thresholds::from_config(config), observed).await;
    let names = metrics
        .names
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (report, names)
}

/// The registered agents with an MCP URL, pinged; none when there are none (or the
/// registry or the client is unavailable: logged, the check then reads as not observed).
async fn agent_facts(store: &SqliteStore, config: &Config) -> Option<Vec<ComponentFact>> {
    let agents = store
        .list_agents(&TenantScope::All)
        .await
        .map_err(|e| tracing::warn!(error = %e, "agents unreadable: not pinged"))
        .ok()?;
    if agents.iter().all(|a| a.mcp_url.is_none()) {
        return None;
    }
    let peers = crate::peers::LocalPeers::from_config(config)
        .map_err(|e| tracing::warn!(error = %e, "agents not pinged"))
        .ok()?;
    Some(selfbuild_core::health::agents::agent_facts(&agents, &peers).await)
}

/// The CLI's answer: the report with the metrics emitted.
pub fn report_json(report: &HealthReport, metrics: &[String]) -> Value {
    let mut value =
        serde_json::to_value(report).unwrap_or_else(|e| json!({"error": e.to_string()}));
    if let Some(map) = value.as_object_mut() {
        map.insert("metrics_emitted".into(), json!(metrics));
    }
    value
}

/// Re-enables `component` (its failed heals back to 0) and audits who did it.
pub async fn enable_component(
    store: &SqliteStore,
    component: &str,
    actor: &str,
    now: OffsetDateTime,
) -> Result<Value, StoreError> {
    let was_disabled = store.enable_component(component).await?;
    store
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
    Ok(json!({"component": component, "enabled": true, "was_disabled": was_disabled}))
}
