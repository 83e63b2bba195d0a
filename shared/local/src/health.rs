//! `selfbuild health` and `selfbuild enable-component`: one self health pass over the data
//! directory on the embedded adapters, and re-enabling a component it disabled.
//!
//! Observed here: the embedded executions (cycle records), the store, the LLM breakers the
//! generate step last recorded, the heal ledgers, the registered agents (MCP `ping`), and
//! with a scenario's fleet its functions as the registered components. Not observable
//! offline (reported `skipped`): selfbuild's own functions' metrics, a DLQ, and components
//! when neither a fleet nor an agent with an MCP URL is there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfbuild_core::Config;
use selfbuild_core::canary::{RollBackHere, RollbackPorts};
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::error::StoreError;
use selfbuild_core::health::observe::{component_fact, last_change};
use selfbuild_core::health::pass::{Observed, PassPorts, run_pass};
use selfbuild_core::health::{ComponentFact, HealthReport, Thresholds};
use selfbuild_core::peers::Dependents;
use selfbuild_core::ports::{
    AgentPeers, Clock, ImprovementStore, MetricRecord, MetricSink, NoPeers, NoRollbackHeal,
    Registry, RollbackHeal, Telemetry,
};
use selfbuild_core::records::{ImprovementQuery, ImprovementRecord, TenantScope};
use selfbuild_core::telemetry::TelemetryQuery;
use selfbuild_core::transition::Recorder;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::fleet::Fleet;
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

/// How far back a pass reads a component's metrics: the unbroken run of periods over the
/// threshold is looked for in it (when its errors began).
const COMPONENT_LOOKBACK: Duration = Duration::from_secs(60 * 60);

/// The interval between passes (the 5-minute rule): a component's error rate is over it.
const PASS_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Runs one pass over `store` at the clock's time; the report and the metrics it emitted.
/// With a `fleet`, its functions are the registered components (observed through its
/// telemetry) and the rollback heal restores baselines on it here, telling the dependent
/// agents (keys from `SELFBUILD_AGENT_KEYS_FILE`); without one, components are not observed
/// and a rollback heal fails saying so.
pub async fn health_pass(
    store: &SqliteStore,
    clock: Arc<dyn Clock>,
    config: &Config,
    fleet: Option<&Fleet>,
) -> (HealthReport, Vec<String>) {
    let now = clock.now();
    let orchestrator = RecordingOrchestrator::new(store.clone(), Arc::clone(&clock));
    let metrics = Emitted {
        names: Mutex::default(),
        namespace: config.metrics_namespace.clone(),
    };
    let limits = Thresholds::from_config(config);
    let fleet_facts = match fleet {
        Some(fleet) => Some(observe_components(fleet, store, now, &limits).await),
        None => None,
    };
    let components = match (fleet_facts, agent_facts(store, config).await) {
        (None, None) => None,
        (fleet, agents) => Some(fleet.into_iter().chain(agents).flatten().collect()),
    };
    let observed = Observed {
        components,
        ..Observed::default()
    };
    let peers = rollback_peers(config, fleet.is_some());
    let here = fleet.map(|fleet| {
        RollBackHere(RollbackPorts {
            deployer: fleet,
            recorder: Recorder {
                audit: store,
                improvements: store,
                notifier: store,
                clock: clock.as_ref(),
            },
            metrics: &metrics,
            dependents: Dependents {
                registry: store,
                peers: peers.as_ref(),
            },
        })
    });
    let rollback: &dyn RollbackHeal = match &here {
        Some(here) => here,
        None => &NO_FLEET,
    };
    let ports = PassPorts {
        executions: &orchestrator,
        orchestrator: &orchestrator,
        cycles: store,
        health: store,
        usage: store,
        notifier: store,
        metrics: &metrics,
        rollback,
        dead_letters: None,
    };
    let report = run_pass(&ports, now, &limits, observed).await;
    let names = metrics
        .names
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (report, names)
}

/// Every fleet function as a component fact: its error rate over the last pass interval,
/// when its errors began, selfbuild's latest live change to it. A function whose metrics
/// cannot be read is left out (logged).
async fn observe_components(
    fleet: &Fleet,
    store: &SqliteStore,
    now: OffsetDateTime,
    limits: &Thresholds,
) -> Vec<ComponentFact> {
    let records = recent_improvements(store).await;
    let query = TelemetryQuery {
        tenant: None,
        components: fleet.functions(),
        window: TimeWindow {
            start: now - COMPONENT_LOOKBACK,
            end: now,
        },
        period_seconds: 60,
    };
    let series = match fleet.metric_series(&query).await {
        Ok(series) => series,
        Err(e) => {
            tracing::warn!(error = %e, "component metrics not read");
            return Vec::new();
        }
    };
    query
        .components
        .iter()
        .map(|c| {
            component_fact(
                c.as_str(),
                &series,
                now,
                PASS_INTERVAL,
                limits.component_error_rate,
                last_change(&records, c.as_str()),
            )
        })
        .collect()
}

/// The newest improvement records (a few pages: the live change of a component is recent).
async fn recent_improvements(store: &SqliteStore) -> Vec<ImprovementRecord> {
    let mut records = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = store
            .list_improvements(&ImprovementQuery {
                scope: TenantScope::All,
                status: None,
                limit: ImprovementQuery::MAX_LIMIT,
                cursor: cursor.take(),
            })
            .await;
        match page {
            Ok(page) => {
                records.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "improvement records not read");
                break;
            }
        }
    }
    records
}

/// No fleet: nothing to roll back on.
const NO_FLEET: NoRollbackHeal = NoRollbackHeal {
    why: "no fleet here (selfbuild health --scenario gives one)",
};

/// The client the rollback heal tells dependent agents with (only with a fleet to roll back
/// on); `NoPeers` when the key file is unusable (logged: the deliveries are audited failed).
fn rollback_peers(config: &Config, with_fleet: bool) -> Box<dyn AgentPeers> {
    if !with_fleet {
        return Box::new(NoPeers);
    }
    match crate::peers::LocalPeers::from_config(config) {
        Ok(peers) => Box::new(peers),
        Err(e) => {
            tracing::warn!(error = %e, "agents will not be told of a rollback");
            Box::new(NoPeers)
        }
    }
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
    let enabled =
        selfbuild_core::health::pass::enable_component(store, component, actor, now).await?;
    Ok(json!(enabled))
}
