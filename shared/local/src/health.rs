//! `selfbuild health` and `selfbuild enable-component`: one self health pass over the data
//! directory on the embedded adapters, and re-enabling a component it disabled.
//!
//! Observed here: the embedded executions (cycle records), the store, the LLM breakers the
//! generate step last recorded, the heal ledgers. Not observable offline (reported
//! `skipped`): selfbuild's own functions' metrics, a DLQ, registered components' error rates.

use std::sync::{Arc, Mutex};

use selfbuild_core::Config;
use selfbuild_core::error::StoreError;
use selfbuild_core::health::pass::{Observed, PassPorts, run_pass};
use selfbuild_core::health::{HealthEvent, HealthEventKind, HealthReport, Thresholds};
use selfbuild_core::ports::{Clock, HealthStore, MetricRecord, MetricSink};
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
        dead_letters: None,
    };
    let report = run_pass(
        &ports,
        now,
        &Thresholds::from_config(config),
        Observed::default(),
    )
    .await;
    let names = metrics
        .names
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (report, names)
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
