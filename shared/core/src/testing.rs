//! Test doubles shared by the unit tests of several modules.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Date, OffsetDateTime};

use crate::audit::AuditEvent;
use crate::change::{LambdaSettings, Proposal};
use crate::cycle::{CycleRecord, CycleStatus, TimeWindow};
use crate::deployment::{CanaryDeployment, FunctionState};
use crate::error::{StoreError, TelemetryError};
use crate::health::{ComponentHealth, HealthEvent, HealthReport};
use crate::ids::{ComponentId, CycleId, ImprovementId};
use crate::improvement::LlmUsage;
use crate::ports::{
    ApprovalStore, AuditLog, CycleStore, DeployError, Deployer, HaltState, HaltSwitch, HealthStore,
    ImprovementStore, Llm, LlmAnswer, LlmError, LlmRequest, Notifier, Telemetry, UsageLedger,
};
use crate::records::{
    DailyUsage, ImprovementQuery, ImprovementRecord, Page, PendingApproval, ProviderHealth,
    TenantScope,
};
use crate::telemetry::{LogRow, MetricSeries, TelemetryQuery, VersionTotals};

/// A read-only Deployer: every function has `settings` (or none exists); deploys are refused.
pub(crate) struct StaticDeployer(pub Option<LambdaSettings>);

#[async_trait]
impl Deployer for StaticDeployer {
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError> {
        let settings = self
            .0
            .clone()
            .ok_or_else(|| DeployError::Rejected(format!("{function} is not deployed")))?;
        Ok(FunctionState {
            code_sha256: None,
            function: function.clone(),
            settings,
            alias: "live".into(),
            stable_version: "1".into(),
            canary: None,
        })
    }
    async fn deploy_canary(
        &self,
        _: &ImprovementId,
        _: &ComponentId,
        _: &crate::change::DeploySpec,
        _: f64,
    ) -> Result<CanaryDeployment, DeployError> {
        Err(DeployError::Rejected("read-only test deployer".into()))
    }
    async fn promote(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        Ok(())
    }
    async fn rollback(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        Ok(())
    }
    async fn undo_deploy(
        &self,
        _: &ImprovementId,
        _: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError> {
        Ok(None)
    }
}

/// The store as the step functions write it, in memory: audit events, notifications,
/// improvement records, LLM usage, cycle completions, approvals and the halt switch.
#[derive(Default)]
pub(crate) struct MemoryRecords {
    pub halt: Mutex<Option<HaltState>>,
    pub events: Mutex<Vec<AuditEvent>>,
    pub notifications: Mutex<Vec<String>>,
    pub improvements: Mutex<BTreeMap<ImprovementId, ImprovementRecord>>,
    pub usage: Mutex<BTreeMap<Date, DailyUsage>>,
    pub cycles: Mutex<BTreeMap<CycleId, CycleRecord>>,
    pub finished: Mutex<Vec<(CycleId, CycleStatus)>>,
    pub pending: Mutex<BTreeMap<ImprovementId, PendingApproval>>,
    pub metrics: Mutex<Vec<crate::ports::MetricRecord>>,
    /// Every audit append fails (the store is unreachable).
    pub audit_down: Mutex<bool>,
    /// Heal ledgers by component.
    pub ledgers: Mutex<BTreeMap<String, ComponentHealth>>,
    /// Health events, oldest first.
    pub health_events: Mutex<Vec<HealthEvent>>,
    /// The last health report.
    pub health_report: Mutex<Option<HealthReport>>,
}

impl crate::ports::MetricSink for MemoryRecords {
    fn record(&self, metric: crate::ports::MetricRecord) {
        lock(&self.metrics).push(metric);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl AuditLog for MemoryRecords {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        if *lock(&self.audit_down) {
            return Err(StoreError::Unavailable(
                "audit store down in this test".into(),
            ));
        }
        lock(&self.events).push(event.clone());
        Ok(())
    }
    async fn cycle_events(&self, cycle_id: &CycleId) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(lock(&self.events)
            .iter()
            .filter(|e| &e.cycle_id == cycle_id)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Notifier for MemoryRecords {
    async fn notify(&self, detail_type: &str, _: &serde_json::Value) -> Result<(), StoreError> {
        lock(&self.notifications).push(detail_type.to_owned());
        Ok(())
    }
}

#[async_trait]
impl ImprovementStore for MemoryRecords {
    async fn put_improvement(&self, record: &ImprovementRecord) -> Result<(), StoreError> {
        lock(&self.improvements).insert(record.improvement_id.clone(), record.clone());
        Ok(())
    }
    async fn get_improvement(
        &self,
        id: &ImprovementId,
    ) -> Result<Option<ImprovementRecord>, StoreError> {
        Ok(lock(&self.improvements).get(id).cloned())
    }
    async fn list_improvements(
        &self,
        query: &ImprovementQuery,
    ) -> Result<Page<ImprovementRecord>, StoreError> {
        let cursor = query.checked_cursor()?;
        let size = query.page_size();
        let mut items: Vec<ImprovementRecord> = lock(&self.improvements)
            .values()
            .rev()
            .filter(|r| cursor.is_none_or(|c| r.improvement_id.as_str() < c))
            .filter(|r| query.scope.allows(r.tenant_id.as_ref()))
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .take(size + 1)
            .cloned()
            .collect();
        let next_cursor = (items.len() > size).then(|| {
            items.truncate(size);
            items[size - 1].improvement_id.to_string()
        });
        Ok(Page { items, next_cursor })
    }
}

#[async_trait]
impl UsageLedger for MemoryRecords {
    async fn record_llm_usage(
        &self,
        at: OffsetDateTime,
        cost_usd: f64,
        providers: &[ProviderHealth],
    ) -> Result<(), StoreError> {
        let mut usage = lock(&self.usage);
        let day = usage.entry(at.date()).or_default();
        day.cost_usd += cost_usd;
        day.calls += 1;
        day.providers = providers.to_vec();
        Ok(())
    }
    async fn llm_usage(&self, day: Date) -> Result<DailyUsage, StoreError> {
        Ok(lock(&self.usage).get(&day).cloned().unwrap_or_default())
    }
}

#[async_trait]
impl CycleStore for MemoryRecords {
    async fn create_cycle(&self, cycle: &CycleRecord) -> Result<bool, StoreError> {
        let mut cycles = lock(&self.cycles);
        if cycles.contains_key(&cycle.request.cycle_id) {
            return Ok(false);
        }
        cycles.insert(cycle.request.cycle_id.clone(), cycle.clone());
        Ok(true)
    }
    async fn get_cycle(&self, id: &CycleId) -> Result<Option<CycleRecord>, StoreError> {
        Ok(lock(&self.cycles).get(id).cloned())
    }
    async fn finish_cycle(
        &self,
        id: &CycleId,
        status: CycleStatus,
        _: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        lock(&self.finished).push((id.clone(), status));
        Ok(true)
    }
    async fn running_cycles(
        &self,
        _: &TenantScope,
        _: usize,
    ) -> Result<Vec<CycleRecord>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl HaltSwitch for MemoryRecords {
    async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
        Ok(lock(&self.halt).clone())
    }
    async fn set_halt(&self, halt: &HaltState) -> Result<(), StoreError> {
        *lock(&self.halt) = Some(halt.clone());
        Ok(())
    }
    async fn clear_halt(&self) -> Result<bool, StoreError> {
        Ok(lock(&self.halt).take().is_some())
    }
}

#[async_trait]
impl ApprovalStore for MemoryRecords {
    async fn put_pending(&self, pending: &PendingApproval) -> Result<(), StoreError> {
        lock(&self.pending).insert(pending.improvement_id.clone(), pending.clone());
        Ok(())
    }
    async fn get_pending(&self, id: &ImprovementId) -> Result<Option<PendingApproval>, StoreError> {
        Ok(lock(&self.pending).get(id).cloned())
    }
    async fn add_approver(
        &self,
        id: &ImprovementId,
        approver: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let mut pending = lock(&self.pending);
        Ok(pending.get_mut(id).map(|p| {
            if !p.approvers.iter().any(|a| a == approver) {
                p.approvers.push(approver.to_owned());
            }
            p.clone()
        }))
    }
    async fn remove_pending(&self, id: &ImprovementId) -> Result<bool, StoreError> {
        Ok(lock(&self.pending).remove(id).is_some())
    }
}

#[async_trait]
impl HealthStore for MemoryRecords {
    async fn component_health(&self) -> Result<Vec<ComponentHealth>, StoreError> {
        Ok(lock(&self.ledgers).values().cloned().collect())
    }
    async fn put_component_health(&self, ledger: &ComponentHealth) -> Result<(), StoreError> {
        lock(&self.ledgers).insert(ledger.component.clone(), ledger.clone());
        Ok(())
    }
    async fn enable_component(&self, component: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.ledgers)
            .remove(component)
            .is_some_and(|l| l.disabled.is_some()))
    }
    async fn append_health_event(&self, event: &HealthEvent) -> Result<(), StoreError> {
        lock(&self.health_events).push(event.clone());
        Ok(())
    }
    async fn health_events(
        &self,
        component: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        Ok(lock(&self.health_events)
            .iter()
            .rev()
            .filter(|e| component.is_none_or(|c| e.component.as_deref() == Some(c)))
            .take(limit)
            .cloned()
            .collect())
    }
    async fn save_health_report(&self, report: &HealthReport) -> Result<(), StoreError> {
        *lock(&self.health_report) = Some(report.clone());
        Ok(())
    }
    async fn last_health_report(&self) -> Result<Option<HealthReport>, StoreError> {
        Ok(lock(&self.health_report).clone())
    }
}

/// Telemetry that is never reachable.
pub(crate) struct NoTelemetry;

#[async_trait]
impl Telemetry for NoTelemetry {
    async fn metric_series(&self, _: &TelemetryQuery) -> Result<Vec<MetricSeries>, TelemetryError> {
        Err(TelemetryError::Unavailable(
            "no telemetry in this test".into(),
        ))
    }
    async fn version_totals(
        &self,
        _: &ComponentId,
        _: &[String],
        _: &TimeWindow,
        _: &crate::telemetry::DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError> {
        Err(TelemetryError::Unavailable(
            "no telemetry in this test".into(),
        ))
    }
    async fn error_rows(
        &self,
        _: &TelemetryQuery,
        _: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        Err(TelemetryError::Unavailable(
            "no telemetry in this test".into(),
        ))
    }
}

/// An Llm that answers every request with one proposal and reports fixed circuits.
pub(crate) struct FixedLlm {
    pub proposal: Proposal,
    pub usage: LlmUsage,
    pub health: Vec<ProviderHealth>,
}

#[async_trait]
impl Llm for FixedLlm {
    async fn propose(&self, _: &LlmRequest) -> Result<LlmAnswer, LlmError> {
        Ok(LlmAnswer {
            proposal: self.proposal.clone(),
            usage: self.usage,
            provider: "fixed".into(),
        })
    }

    fn provider_health(&self) -> Vec<ProviderHealth> {
        self.health.clone()
    }
}
