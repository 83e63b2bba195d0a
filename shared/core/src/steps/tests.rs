//! The cycle's functions through [`run_step`], on in-memory ports.

use super::*;
use crate::agents::{OwnerWindow, PeerTarget, WindowAnswer};
use crate::change::{Change, LambdaConfigChange, LambdaSettings, Proposal, RiskLevel};
use crate::clock::FixedClock;
use crate::cycle::{CycleMode, CycleStatus};
use crate::deployment::{CanaryDeployment, FunctionState};
use crate::ids::{ComponentId, CycleId, ImprovementId, TenantId};
use crate::improvement::{DeployStatus, Generated, LlmUsage};
use crate::opportunity::{Opportunity, OpportunityKind, Priority};
use crate::ports::{AgentPeers, Delivery, DeliveryOutcome, PeerError, Registry};
use crate::ports::{DeployError, HaltState, HaltSwitch, ImprovementStore, Telemetry};
use crate::records::{AgentRecord, CircuitState, ProviderHealth, TenantScope};
use crate::testing::{FixedLlm, MemoryRecords, NoTelemetry, StaticDeployer};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::{date, datetime};

const NOW: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

fn proposal() -> Proposal {
    Proposal {
        change: Change::LambdaConfig {
            function: ComponentId::parse("orders-api").unwrap(),
            config: LambdaConfigChange {
                timeout_seconds: Some(10),
                ..Default::default()
            },
        },
        rationale: "timeouts at 3 s".into(),
        expected_gain: 0.5,
        claimed_risk: RiskLevel::Low,
    }
}

fn item() -> ImprovementItem {
    ImprovementItem {
        cycle_id: CycleId::parse("c1").unwrap(),
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        mode: CycleMode::Routine,
        dry_run: false,
        opportunity: Opportunity {
            id: "orders-api:timeouts".into(),
            rank: 1,
            component: ComponentId::parse("orders-api").unwrap(),
            tenant_id: None,
            kind: OpportunityKind::Timeouts,
            evidence: vec![],
            expected_gain: 0.9,
            affected_requests: 100.0,
            impact_score: 90.0,
            priority: Priority::High,
            current: Some(LambdaSettings {
                memory_mb: 128,
                timeout_seconds: 3,
                reserved_concurrency: None,
                environment: Default::default(),
            }),
            top_errors: vec![],
            stack_traces: vec![],
            agents: vec![],
        },
        generated: Some(Generated {
            improvement_id: "c1-1".parse().unwrap(),
            proposal: proposal(),
            provider: "test".into(),
            usage: LlmUsage::default(),
            repair_rounds: 0,
        }),
        validation: None,
        approval: None,
        deploy: None,
        monitor: None,
    }
}

struct World {
    records: MemoryRecords,
    telemetry: Box<dyn Telemetry>,
    llm: Box<dyn Llm>,
    deployer: Box<dyn Deployer>,
    code: Box<dyn CodeSource>,
    checker: Box<dyn CodeChecker>,
    clock: FixedClock,
    config: Config,
    agents: FixedAgents,
    peers: ScriptedPeers,
}

impl World {
    fn new() -> Self {
        Self {
            records: MemoryRecords::default(),
            telemetry: Box::new(NoTelemetry),
            llm: Box::new(FixedLlm {
                proposal: proposal(),
                usage: LlmUsage {
                    input_tokens: 1000,
                    output_tokens: 200,
                    cost_usd: 0.25,
                },
                health: vec![ProviderHealth {
                    provider: "bedrock:test".into(),
                    state: CircuitState::HalfOpen,
                }],
            }),
            deployer: Box::new(StaticDeployer(None)),
            code: Box::new(crate::ports::NoCodeSource),
            checker: Box::new(crate::ports::NoCodeChecker),
            clock: FixedClock(NOW),
            config: Config::default(),
            agents: FixedAgents::default(),
            peers: ScriptedPeers::default(),
        }
    }

    async fn run(&self, function: StepFunction, payload: Value) -> Result<Value, StepError> {
        let deps = StepDeps {
            telemetry: self.telemetry.as_ref(),
            deployer: self.deployer.as_ref(),
            code: self.code.as_ref(),
            checker: self.checker.as_ref(),
            llm: self.llm.as_ref(),
            store: &self.records,
            notifier: &self.records,
            registry: &self.agents,
            peers: &self.peers,
            metrics: &self.records,
            clock: &self.clock,
        };
        run_step(function, deps, &self.config, &payload).await
    }

    /// What the owner of `item`'s component decides, as the deploy step asks it.
    async fn owner_window(&self, item: &ImprovementItem) -> crate::agents::OwnerWindow {
        let deps = StepDeps {
            telemetry: self.telemetry.as_ref(),
            deployer: self.deployer.as_ref(),
            code: self.code.as_ref(),
            checker: self.checker.as_ref(),
            llm: self.llm.as_ref(),
            store: &self.records,
            notifier: &self.records,
            registry: &self.agents,
            peers: &self.peers,
            metrics: &self.records,
            clock: &self.clock,
        };
        super::peers::owner_window(&deps, &self.config, item).await
    }

    async fn halt(&self) {
        let halt = HaltState {
            reason: "incident 42".into(),
            actor: "oncall".into(),
            since: NOW,
        };
        self.records.set_halt(&halt).await.unwrap();
    }

    fn actions(&self) -> Vec<&'static str> {
        let events = self.records.events.lock().unwrap();
        events.iter().map(|e| e.action.as_str()).collect()
    }

    fn status(&self) -> Option<ImprovementStatus> {
        let records = self.records.improvements.lock().unwrap();
        records
            .get(&"c1-1".parse::<ImprovementId>().unwrap())
            .map(|r| r.status)
    }
}

/// A function whose live alias sends 10 % to version 2; records promote and rollback.
#[derive(Default)]
struct SplitDeployer {
    calls: Calls,
    /// Rollbacks and undos fail (Lambda throttles, with what was left).
    failing: bool,
}

impl SplitDeployer {
    fn outcome(&self) -> Result<(), DeployError> {
        if self.failing {
            return Err(DeployError::Unavailable(
                "UpdateFunctionConfiguration on orders-api: throttled; left: $LATEST still \
                 carries the canary's settings"
                    .into(),
            ));
        }
        Ok(())
    }
}

type Calls = std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>;

#[async_trait::async_trait]
impl Deployer for SplitDeployer {
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError> {
        let rolled_back = self.calls.lock().unwrap().contains(&"rollback");
        Ok(FunctionState {
            canary: (!rolled_back).then(|| ("2".to_owned(), 0.1)),
            ..baseline(function)
        })
    }
    async fn deploy_canary(
        &self,
        _: &ImprovementId,
        _: &ComponentId,
        _: &crate::change::DeploySpec,
        _: f64,
    ) -> Result<CanaryDeployment, DeployError> {
        Err(DeployError::Rejected("not in this test".into()))
    }
    async fn promote(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        self.calls.lock().unwrap().push("promote");
        Ok(())
    }
    async fn rollback(&self, _: &CanaryDeployment) -> Result<(), DeployError> {
        self.calls.lock().unwrap().push("rollback");
        self.outcome()
    }
    async fn undo_deploy(
        &self,
        _: &ImprovementId,
        function: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError> {
        self.calls.lock().unwrap().push("undo_deploy");
        self.outcome().map(|()| Some(baseline(function)))
    }
}

fn baseline(function: &ComponentId) -> FunctionState {
    FunctionState {
        code_sha256: None,
        function: function.clone(),
        settings: item().opportunity.current.unwrap(),
        alias: "live".into(),
        stable_version: "1".into(),
        canary: None,
    }
}

/// `item()` with its canary deployed ten minutes ago.
fn deployed() -> ImprovementItem {
    let function = ComponentId::parse("orders-api").unwrap();
    let mut item = item();
    item.deploy = Some(crate::improvement::DeployOutcome {
        status: DeployStatus::Deployed,
        deployment: Some(CanaryDeployment {
            code: None,
            improvement_id: "c1-1".parse().unwrap(),
            baseline: baseline(&function),
            settings: LambdaSettings {
                memory_mb: 512,
                timeout_seconds: 10,
                reserved_concurrency: None,
                environment: Default::default(),
            },
            canary_version: "2".into(),
            weight: 0.1,
            deployed_at: NOW - time::Duration::minutes(10),
        }),
        wait_until: None,
        reason: String::new(),
        monitor_interval_seconds: 300,
        deferred_since: None,
        deferrals: 0,
    });
    item
}

fn split_world() -> (World, Calls) {
    let deployer = SplitDeployer::default();
    let calls = deployer.calls.clone();
    let world = World {
        deployer: Box::new(deployer),
        ..World::new()
    };
    (world, calls)
}

#[tokio::test]
async fn a_failed_deploy_is_undone_and_audited_with_its_failure() {
    // GIVEN a deploy the state machine caught, as its Catch hands it on
    let (world, calls) = split_world();
    let cause = json!({
        "errorType": "Retryable",
        "errorMessage": "deployer unavailable: UpdateAlias on orders-api: 500; left: version 2 published"
    });
    let failure = json!({"Error": "Retryable", "Cause": cause.to_string()});
    // WHEN the undo runs
    let out = world
        .run(
            StepFunction::Rollback,
            json!({"action": "undo_deploy", "item": item(), "failure": failure}),
        )
        .await
        .unwrap();
    // THEN what the deploy left is undone, and the audit says why the deploy failed
    assert_eq!(out, json!({"restored": true, "outcome": "deploy_failed"}));
    assert_eq!(*calls.lock().unwrap(), ["undo_deploy"]);
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.action.as_str(), event.actor.as_str()),
        ("deploy_failed", "selfbuild:rollback")
    );
    assert!(
        event.detail.starts_with(
            "deploy failed (Retryable: deployer unavailable: UpdateAlias on orders-api: 500; \
             left: version 2 published); what it left was undone"
        ),
        "{}",
        event.detail
    );
    assert_eq!(world.status(), Some(ImprovementStatus::DeployFailed));
}

#[tokio::test]
async fn a_failed_rollback_is_audited_and_stays_retryable() {
    // GIVEN Lambda failing the rollback
    let deployer = SplitDeployer {
        failing: true,
        ..SplitDeployer::default()
    };
    let world = World {
        deployer: Box::new(deployer),
        ..World::new()
    };
    // WHEN the rollback runs THEN it fails Retryable for the state machine to retry
    let err = world
        .run(
            StepFunction::Rollback,
            json!({"action": "rollback", "item": deployed()}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Retryable");
    // AND the audit says it failed and what it left, with the function as it is
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::RollbackFailed);
    assert!(
        events[0]
            .detail
            .starts_with("the rollback failed (Retryable): deployer unavailable")
            && events[0].detail.contains("$LATEST still carries"),
        "{}",
        events[0].detail
    );
    assert!(events[0].before.is_some());
    assert_eq!(world.status(), Some(ImprovementStatus::RollbackFailed));
}

#[tokio::test]
async fn while_halted_generate_stops_before_the_llm_and_says_why() {
    let world = World::new();
    world.halt().await;
    let mut ungenerated = item();
    ungenerated.generated = None;
    let err = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(&ungenerated).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Halted");
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::GenerateHalted);
    assert!(
        events[0].detail.contains("oncall: incident 42"),
        "{}",
        events[0].detail
    );
    assert_eq!(world.status(), Some(ImprovementStatus::Halted));
    // No LLM call: nothing spent, no provider metric.
    assert!(world.records.usage.lock().unwrap().is_empty());
    assert!(world.records.metrics.lock().unwrap().is_empty());
}

#[tokio::test]
async fn while_halted_a_look_rolls_back_without_reading_telemetry() {
    // NoTelemetry fails every read: the halted look must not need one.
    let (world, _) = split_world();
    world.halt().await;
    let report = world
        .run(
            StepFunction::Monitor,
            json!({"action": "monitor", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(report["verdict"], "halted");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("oncall: incident 42")
    );
    assert_eq!(world.actions(), ["halted_in_flight"]);
    let event = world.records.events.lock().unwrap()[0].clone();
    assert!(
        event.detail.contains("HALT_IN_FLIGHT=rollback"),
        "{}",
        event.detail
    );
    assert_eq!(event.before.unwrap()["canary"], json!(["2", 0.1]));
    assert_eq!(event.after, None);
    assert_eq!(world.status(), Some(ImprovementStatus::Halted));

    // The rollback that follows says why and what the function runs now.
    let mut item = deployed();
    item.monitor = Some(parse_payload(&report).unwrap());
    world
        .run(
            StepFunction::Rollback,
            json!({"action": "rollback", "item": item}),
        )
        .await
        .unwrap();
    let events = world.records.events.lock().unwrap().clone();
    let rolled_back = &events[1];
    assert_eq!(rolled_back.action, AuditAction::RolledBack);
    assert!(
        rolled_back.detail.contains("oncall: incident 42"),
        "{}",
        rolled_back.detail
    );
    let function = ComponentId::parse("orders-api").unwrap();
    assert_eq!(
        rolled_back.after,
        Some(serde_json::to_value(baseline(&function)).unwrap())
    );
}

/// Both versions with the same traffic shape: `stable` and `canary` requests, 1 % failing.
struct SteadyTelemetry;

#[async_trait::async_trait]
impl Telemetry for SteadyTelemetry {
    async fn metric_series(
        &self,
        query: &crate::telemetry::TelemetryQuery,
    ) -> Result<Vec<crate::telemetry::MetricSeries>, crate::error::TelemetryError> {
        NoTelemetry.metric_series(query).await
    }
    async fn version_totals(
        &self,
        _: &ComponentId,
        versions: &[String],
        _: &crate::cycle::TimeWindow,
        _: &crate::telemetry::DurationQuery,
    ) -> Result<Vec<crate::telemetry::VersionTotals>, crate::error::TelemetryError> {
        Ok(versions
            .iter()
            .zip([900.0, 100.0])
            .map(|(version, invocations)| crate::telemetry::VersionTotals {
                version: version.clone(),
                invocations,
                errors: invocations / 100.0,
                throttles: 0.0,
                duration_ms: None,
                slower_than: Vec::new(),
                percentiles: Vec::new(),
                successes: None,
            })
            .collect())
    }
    async fn error_rows(
        &self,
        query: &crate::telemetry::TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<crate::telemetry::LogRow>, crate::error::TelemetryError> {
        NoTelemetry.error_rows(query, limit).await
    }
}

#[tokio::test]
async fn every_look_is_audited_with_its_report_and_the_look_before_it() {
    let (mut world, calls) = split_world();
    world.telemetry = Box::new(SteadyTelemetry);
    let first = world
        .run(
            StepFunction::Monitor,
            json!({"action": "monitor", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(first["verdict"], "healthy", "{first}");
    let mut item = deployed();
    item.monitor = Some(parse_payload(&first).unwrap());
    world.clock = FixedClock(NOW + time::Duration::minutes(5));
    let second = world
        .run(
            StepFunction::Monitor,
            json!({"action": "monitor", "item": item}),
        )
        .await
        .unwrap();
    assert_eq!(world.actions(), ["canary_checked", "canary_checked"]);
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events[0].after.as_ref(), Some(&first));
    assert_eq!(events[0].before, None);
    assert_eq!(events[1].after.as_ref(), Some(&second));
    assert_eq!(
        events[1].before,
        Some(json!({"checked_at": "2026-11-22T05:00:00Z"}))
    );
    assert_eq!(events[1].actor, "selfbuild:monitor");
    assert!(
        events[1]
            .detail
            .starts_with("healthy after 100 canary and 900 stable requests: "),
        "{}",
        events[1].detail
    );
    // A look changes no status and touches nothing.
    assert_eq!(world.status(), None);
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_look_whose_audit_cannot_be_written_still_decides() {
    let (mut world, calls) = split_world();
    world.telemetry = Box::new(SteadyTelemetry);
    *world.records.audit_down.lock().unwrap() = true;
    let report = world
        .run(
            StepFunction::Monitor,
            json!({"action": "monitor", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(report["verdict"], "healthy", "{report}");
    assert!(world.actions().is_empty());
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn with_freeze_a_halted_look_leaves_the_split_and_records_it() {
    let (mut world, calls) = split_world();
    world.config.halt_in_flight = crate::config::HaltInFlight::Freeze;
    world.halt().await;
    let report = world
        .run(
            StepFunction::Monitor,
            json!({"action": "monitor", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(report["verdict"], "frozen");
    let event = world.records.events.lock().unwrap()[0].clone();
    assert_eq!(event.action, AuditAction::HaltedInFlight);
    assert!(
        event.detail.contains("HALT_IN_FLIGHT=freeze"),
        "{}",
        event.detail
    );
    assert_eq!(event.after.unwrap()["canary"], json!(["2", 0.1]));
    assert_eq!(world.status(), Some(ImprovementStatus::Frozen));
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn promote_refuses_while_halted_and_shifts_traffic_otherwise() {
    let (world, calls) = split_world();
    world.halt().await;
    let refused = world
        .run(
            StepFunction::Deploy,
            json!({"action": "promote", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(refused["status"], "halted");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("oncall: incident 42")
    );
    assert!(calls.lock().unwrap().is_empty());
    assert!(world.actions().is_empty());

    world.records.clear_halt().await.unwrap();
    let promoted = world
        .run(
            StepFunction::Deploy,
            json!({"action": "promote", "item": deployed()}),
        )
        .await
        .unwrap();
    assert_eq!(promoted["status"], "promoted");
    assert_eq!(*calls.lock().unwrap(), ["promote"]);
    assert_eq!(world.actions(), ["promoted"]);
}

#[tokio::test]
async fn validate_stores_the_improvement_record_with_its_validation() {
    // GIVEN a generated item WHEN validated
    let world = World::new();
    let validation = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": item()}),
        )
        .await
        .unwrap();
    // THEN the audit event and the record agree, and the record holds the validation
    assert_eq!(
        world.records.events.lock().unwrap()[0].action,
        AuditAction::Validated
    );
    let record = world
        .records
        .improvements
        .lock()
        .unwrap()
        .get(&"c1-1".parse::<ImprovementId>().unwrap())
        .cloned()
        .expect("an improvement record");
    assert_eq!(record.status, ImprovementStatus::Validated);
    assert_eq!(record.cycle_id.as_str(), "c1");
    assert_eq!(
        record.tenant_id.as_ref().map(TenantId::as_str),
        Some("acme")
    );
    assert_eq!(record.component, "orders-api");
    assert_eq!(record.updated_at, NOW);
    assert!(record.change.is_some_and(|c| c.contains("timeout")));
    let stored = record
        .item
        .validation
        .expect("the validation in the record");
    assert_eq!(record.risk, Some(stored.risk));
    assert_eq!(serde_json::to_value(&stored).unwrap(), validation);
}

/// Answers with something that is not a valid proposal.
struct InvalidLlm;

#[async_trait::async_trait]
impl Llm for InvalidLlm {
    async fn propose(
        &self,
        _: &crate::ports::LlmRequest,
    ) -> Result<crate::ports::LlmAnswer, LlmError> {
        Err(LlmError::InvalidAnswer(
            "change.reserved_concurrency: -1 is not a count".into(),
        ))
    }
}

#[tokio::test]
async fn a_proposal_refused_in_generate_is_audited_and_recorded() {
    let world = World {
        llm: Box::new(InvalidLlm),
        ..World::new()
    };
    let mut ungenerated = item();
    ungenerated.generated = None;
    let err = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(&ungenerated).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidProposal");
    let audit = world.records.events.lock().unwrap().clone();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, AuditAction::ProposalRefused);
    assert_eq!(audit[0].actor, "selfbuild:generate");
    assert!(
        audit[0].detail.contains("-1 is not a count"),
        "{}",
        audit[0].detail
    );
    let records = world.records.improvements.lock().unwrap().clone();
    let record = records.values().next().unwrap();
    assert_eq!(record.status, ImprovementStatus::Rejected);
}

#[tokio::test]
async fn generate_adds_its_cost_and_the_circuits_to_the_day() {
    let world = World::new();
    let mut ungenerated = item();
    ungenerated.generated = None;
    for _ in 0..2 {
        world
            .run(
                StepFunction::Generate,
                serde_json::to_value(&ungenerated).unwrap(),
            )
            .await
            .unwrap();
    }
    let usage = world.records.usage.lock().unwrap()[&date!(2026 - 11 - 22)].clone();
    assert_eq!((usage.cost_usd, usage.calls), (0.5, 2));
    assert_eq!(usage.providers[0].state, CircuitState::HalfOpen);
    let metrics = world.records.metrics.lock().unwrap().clone();
    let named = |n: &str| -> Vec<f64> {
        metrics
            .iter()
            .filter(|m| m.name == n)
            .map(|m| m.value)
            .collect()
    };
    assert_eq!(named("LlmCostUsd"), [0.25, 0.25]);
    assert_eq!(
        named("CircuitBreakerOpen"),
        [0.0, 0.0],
        "half-open is not open"
    );
    // No audited transition: no improvement record yet.
    assert!(world.records.improvements.lock().unwrap().is_empty());
}

#[tokio::test]
async fn summarize_finishes_the_cycle_as_failed_or_succeeded() {
    let world = World::new();
    world
        .run(
            StepFunction::Monitor,
            json!({"action": "summarize", "cycle": {"cycle_id": "c1"}}),
        )
        .await
        .unwrap();
    world
        .run(
            StepFunction::Monitor,
            json!({"action": "summarize", "cycle": {"cycle_id": "c2", "failure": {"Error": "Retryable"}}}),
        )
        .await
        .unwrap();
    let finished = world.records.finished.lock().unwrap().clone();
    assert_eq!(
        finished,
        [
            (CycleId::parse("c1").unwrap(), CycleStatus::Succeeded),
            (CycleId::parse("c2").unwrap(), CycleStatus::Failed),
        ]
    );
}

#[test]
fn every_outcome_the_state_machine_writes_is_known() {
    let asl: Value = serde_json::from_str(include_str!(
        "../../../../statemachine/improvement-cycle.asl.json"
    ))
    .unwrap();
    // The Map iteration's states that write `$.outcome`: a fixed `Result`, or a value
    // a step returned (the rollback's outcome, the deploy's status).
    let mut written = Vec::new();
    let mut stack = vec![&asl];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if map.get("ResultPath") == Some(&json!("$.outcome")) {
                    match (map.get("Result"), map.get("InputPath")) {
                        (Some(Value::String(result)), _) => written.push(result.clone()),
                        (_, Some(path)) => written.push(path.to_string()),
                        other => panic!("an outcome state writes {other:?}"),
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    let returned = |path: &str| -> Vec<String> {
        match path {
            "\"$.rollback.outcome\"" => [AuditAction::RolledBack, AuditAction::Inconclusive]
                .map(|a| a.as_str().to_owned())
                .to_vec(),
            "\"$.deploy.status\"" => [
                DeployStatus::Deployed,
                DeployStatus::Deferred,
                DeployStatus::Halted,
                DeployStatus::Skipped,
            ]
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .to_vec(),
            other => panic!("an outcome state reads {other}, which no test covers"),
        }
    };
    let names: Vec<String> = written
        .iter()
        .flat_map(|w| {
            if w.starts_with('"') {
                returned(w)
            } else {
                vec![w.clone()]
            }
        })
        .filter(|n| n != "deployed") // DeploySkipped is only reached when not deployed.
        .collect();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        assert!(ItemOutcome::parse(name).is_some(), "unknown outcome {name}");
    }
    for outcome in ItemOutcome::KNOWN {
        assert!(
            names.contains(&outcome.as_str().to_owned()),
            "{outcome:?} never written"
        );
    }
}

#[tokio::test]
async fn summarize_emits_the_metrics_the_operations_alarms_read() {
    let world = World::new();
    let mut promoted = serde_json::to_value(item()).unwrap();
    promoted["outcome"] = json!("promoted");
    let mut failed = serde_json::to_value(item()).unwrap();
    failed["opportunity"]["rank"] = json!(2);
    failed["outcome"] = json!("deploy_failed");
    let cycle = json!({"cycle_id": "c1", "requested_at": "2026-11-22T04:00:00Z",
                       "improvements": [promoted, failed]});
    world
        .run(
            StepFunction::Monitor,
            json!({"action": "summarize", "cycle": cycle}),
        )
        .await
        .unwrap();
    let metrics = world.records.metrics.lock().unwrap().clone();
    let value = |n: &str| metrics.iter().find(|m| m.name == n).map(|m| m.value);
    assert_eq!(value("ImprovementsAttempted"), Some(2.0));
    assert_eq!(value("ImprovementsFailed"), Some(1.0));
    assert_eq!(value("ImprovementsPromoted"), Some(1.0));
    assert_eq!(value("ImprovementsRolledBack"), Some(0.0));
    let since_request = NOW - time::macros::datetime!(2026-11-22 04:00 UTC);
    assert_eq!(
        value("CycleDuration"),
        Some(since_request.whole_milliseconds() as f64)
    );
    assert!(
        metrics.iter().all(|m| m.dimensions.is_empty()),
        "fleet-wide metrics"
    );
}

/// Deployed code from a map, or a fixed failure.
struct MapCode(Result<crate::ports::DeployedFiles, &'static str>);

#[async_trait::async_trait]
impl CodeSource for MapCode {
    async fn deployed_files(
        &self,
        _: &ComponentId,
        paths: &[&str],
    ) -> Result<crate::ports::DeployedFiles, CodeSourceError> {
        match &self.0 {
            Ok(d) => {
                let mut d = d.clone();
                d.files.retain(|path, _| paths.contains(&path.as_str()));
                Ok(d)
            }
            Err("unavailable") => Err(CodeSourceError::Unavailable("throttled".into())),
            Err(m) => Err(CodeSourceError::Rejected((*m).into())),
        }
    }
}

/// A checker that finds `eval` in a new line, blocking, and records what it was given.
#[derive(Default)]
struct EvalChecker(std::sync::Mutex<Vec<(Option<String>, Option<String>)>>);

impl CodeChecker for EvalChecker {
    fn check(
        &self,
        patch: &crate::ports::PatchUnderReview<'_>,
    ) -> Result<crate::ports::CodeCheck, crate::ports::CheckError> {
        let file = &patch.files[0];
        let base = patch.bases.get(&file.path).cloned().flatten();
        self.0
            .lock()
            .unwrap()
            .push((base, patch.handler.map(str::to_owned)));
        let findings = file
            .diff
            .lines()
            .position(|l| l.starts_with('+') && l.contains("eval("))
            .map(|line| crate::ports::CodeFinding {
                summary: crate::code_policy::FindingSummary {
                    rule: "code_execution".into(),
                    risk: RiskLevel::Critical,
                    blocking: true,
                },
                path: file.path.clone(),
                line,
                col: 1,
                message: "eval of request data".into(),
            })
            .into_iter()
            .collect();
        Ok(crate::ports::CodeCheck {
            base: Default::default(),
            findings,
            scope: crate::code_policy::PatchScope {
                files: patch.files.len(),
                ..Default::default()
            },
        })
    }
}

fn code_item(added_line: &str) -> ImprovementItem {
    let mut it = item();
    let generated = it.generated.as_mut().unwrap();
    generated.proposal.change = Change::CodePatch {
        component: ComponentId::parse("orders-api").unwrap(),
        files: vec![crate::change::FilePatch {
            path: "app.py".into(),
            language: None,
            diff: format!("--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+{added_line}\n"),
        }],
        handler: Some("app.proposed".into()),
    };
    it
}

fn deployed_code(handler: Option<&str>) -> crate::ports::DeployedFiles {
    crate::ports::DeployedFiles {
        base: Default::default(),
        handler: handler.map(str::to_owned),
        files: [("app.py".to_owned(), Some("x = 1\n".to_owned()))].into(),
    }
}

#[tokio::test]
async fn a_clean_code_patch_is_checked_on_the_deployed_file_and_held_for_review() {
    let checker = std::sync::Arc::new(EvalChecker::default());
    let mut world = World::new();
    world.code = Box::new(MapCode(Ok(deployed_code(Some("app.handler")))));
    world.checker = Box::new(ArcChecker(checker.clone()));
    world.config =
        Config::from_lookup(|k| (k == "ENABLE_AUTONOMOUS_IMPROVEMENTS").then(|| "true".into()))
            .unwrap();
    let out = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": code_item("x = 2")}),
        )
        .await
        .unwrap();
    assert_eq!(out["decision"], "auto_deploy");
    assert_eq!(out["held_for_review"], true);
    // The checker saw the deployed text and the deployed handler, not the proposer's.
    assert_eq!(
        checker.0.lock().unwrap()[0],
        (Some("x = 1\n".into()), Some("app.handler".into()))
    );
    assert_eq!(world.actions(), ["validated", "held_for_review"]);
    assert_eq!(world.status(), Some(ImprovementStatus::HeldForReview));
    let notes = world.records.notifications.lock().unwrap().clone();
    assert!(
        notes.iter().any(|n| n.contains(REVIEW_NOTIFICATION)),
        "{notes:?}"
    );
    let events = world.records.events.lock().unwrap();
    let review = events[1].after.as_ref().unwrap();
    assert_eq!(review["files"][0]["path"], "app.py");
    assert_eq!(review["files"][0]["lines_added"], 1);
    assert_eq!(review["files"][0]["lines_removed"], 1);
}

#[tokio::test]
async fn a_patch_with_a_blocking_finding_is_rejected_and_not_held() {
    let mut world = World::new();
    world.code = Box::new(MapCode(Ok(deployed_code(None))));
    world.checker = Box::new(EvalChecker::default());
    let out = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": code_item("x = eval(event['q'])")}),
        )
        .await
        .unwrap();
    assert_eq!(out["decision"], "rejected");
    assert!(out.get("held_for_review").is_none());
    assert_eq!(out["findings"][0]["rule"], "code_execution");
    assert_eq!(out["findings"][0]["location"], "app.py:4:1");
    assert_eq!(out["findings"][0]["blocking"], true);
    assert_eq!(world.actions(), ["validated"]);
}

#[tokio::test]
async fn unreadable_code_is_a_refusal_and_an_unavailable_source_a_retry() {
    let mut world = World::new();
    world.checker = Box::new(EvalChecker::default());
    world.code = Box::new(MapCode(Err("image package")));
    let payload = json!({"action": "validate", "item": code_item("x = 2")});
    let out = world
        .run(StepFunction::Validate, payload.clone())
        .await
        .unwrap();
    assert_eq!(out["decision"], "rejected");
    assert_eq!(out["findings"][0]["rule"], "code_source");
    world.code = Box::new(MapCode(Err("unavailable")));
    let err = world
        .run(StepFunction::Validate, payload)
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::Retryable);
    // Without a checker (any function but validate) the patch is refused, never passed.
    world.code = Box::new(MapCode(Ok(deployed_code(None))));
    world.checker = Box::new(crate::ports::NoCodeChecker);
    let out = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": code_item("x = 2")}),
        )
        .await
        .unwrap();
    assert_eq!(out["decision"], "rejected");
    assert_eq!(out["findings"][0]["rule"], "code_validation");
}

struct ArcChecker(std::sync::Arc<EvalChecker>);

impl CodeChecker for ArcChecker {
    fn check(
        &self,
        patch: &crate::ports::PatchUnderReview<'_>,
    ) -> Result<crate::ports::CodeCheck, crate::ports::CheckError> {
        self.0.check(patch)
    }
}

/// Answers from a script, in order, and keeps every request it was sent.
#[derive(Default)]
struct ScriptedLlm {
    answers: std::sync::Mutex<std::collections::VecDeque<(Proposal, f64)>>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<crate::ports::LlmRequest>>>,
}

impl ScriptedLlm {
    fn new(
        answers: impl IntoIterator<Item = (Proposal, f64)>,
    ) -> (
        Self,
        std::sync::Arc<std::sync::Mutex<Vec<crate::ports::LlmRequest>>>,
    ) {
        let llm = Self {
            answers: std::sync::Mutex::new(answers.into_iter().collect()),
            ..Self::default()
        };
        let requests = llm.requests.clone();
        (llm, requests)
    }
}

#[async_trait::async_trait]
impl Llm for ScriptedLlm {
    async fn propose(
        &self,
        request: &crate::ports::LlmRequest,
    ) -> Result<crate::ports::LlmAnswer, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        let (proposal, cost_usd) = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| LlmError::Unavailable("the script has no more answers".into()))?;
        Ok(crate::ports::LlmAnswer {
            proposal,
            usage: LlmUsage {
                input_tokens: 100,
                output_tokens: 10,
                cost_usd,
            },
            provider: "scripted".into(),
        })
    }
}

/// A code patch to `app.py` adding `added_line`.
fn patch(added_line: &str) -> Proposal {
    code_item(added_line).generated.unwrap().proposal
}

/// `item()` before generate, its error traced to `/var/task/app.py` line 1.
fn traced() -> ImprovementItem {
    let mut it = item();
    it.generated = None;
    it.opportunity.kind = crate::opportunity::OpportunityKind::ErrorBurst;
    it.opportunity.stack_traces = serde_json::from_value(json!([{
        "exception": "KeyError", "language": "python", "count": 12, "message": "'q'",
        "frames": [{"function": "handler", "file": "/var/task/app.py", "line": 1},
                   {"function": "run", "file": "/var/runtime/bootstrap.py", "line": 60}],
        "components": ["orders-api"],
        "first_seen": "2026-11-22T04:00:00Z", "last_seen": "2026-11-22T04:05:00Z"
    }]))
    .unwrap();
    it
}

/// A world whose LLM answers `answers` and whose orders-api runs `app.py` (`x = 1`).
fn code_world(
    answers: impl IntoIterator<Item = (Proposal, f64)>,
) -> (
    World,
    std::sync::Arc<std::sync::Mutex<Vec<crate::ports::LlmRequest>>>,
) {
    let (llm, requests) = ScriptedLlm::new(answers);
    let world = World {
        llm: Box::new(llm),
        code: Box::new(MapCode(Ok(deployed_code(Some("app.handler"))))),
        checker: Box::new(EvalChecker::default()),
        ..World::new()
    };
    (world, requests)
}

#[tokio::test]
async fn the_prompt_carries_the_traced_code_the_handler_and_the_history() {
    // GIVEN an earlier change of orders-api on record, and one of another component
    let (world, requests) = code_world([(proposal(), 0.1)]);
    let mut earlier = item();
    earlier.cycle_id = CycleId::parse("c0").unwrap();
    let record = crate::records::ImprovementRecord::of_item(
        &earlier,
        ImprovementStatus::RolledBack,
        NOW - time::Duration::days(1),
    );
    let mut other = record.clone();
    other.improvement_id = "c0-2".parse().unwrap();
    other.component = "billing".into();
    crate::ports::ImprovementStore::put_improvement(&world.records, &record)
        .await
        .unwrap();
    crate::ports::ImprovementStore::put_improvement(&world.records, &other)
        .await
        .unwrap();
    // WHEN generate runs on an error traced to app.py
    world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap();
    // THEN the prompt shows app.py numbered, the handler and the component's history
    let requests = requests.lock().unwrap();
    let prompt: Value = serde_json::from_str(&requests[0].prompt).unwrap();
    assert_eq!(prompt["code"]["language"], "python");
    assert_eq!(prompt["code"]["handler"], "app.handler");
    assert_eq!(prompt["code"]["files"][0]["path"], "app.py");
    assert_eq!(
        prompt["code"]["files"][0]["excerpts"][0]["text"],
        "1| x = 1\n"
    );
    let history = prompt["change_history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["improvement_id"], "c0-1");
    assert_eq!(history[0]["status"], "rolled_back");
    assert!(requests[0].system.contains("code_patch"));
}

#[tokio::test]
async fn unreadable_code_leaves_the_prompt_without_code_and_the_item_generated() {
    for failure in ["image package", "unavailable"] {
        let (mut world, requests) = code_world([(proposal(), 0.1)]);
        world.code = Box::new(MapCode(Err(failure)));
        let out = world
            .run(
                StepFunction::Generate,
                serde_json::to_value(traced()).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(out["proposal"]["change"]["type"], "lambda_config");
        let prompt: Value = serde_json::from_str(&requests.lock().unwrap()[0].prompt).unwrap();
        assert!(prompt.get("code").is_none(), "{failure}: {prompt}");
        assert!(prompt["opportunity"]["stack_traces"].is_array());
    }
}

#[tokio::test]
async fn a_patch_that_fails_the_checks_is_repaired_once_and_both_answers_are_paid() {
    // GIVEN a model whose first patch evals request data and whose second does not
    let (world, requests) = code_world([
        (patch("x = eval(event['q'])"), 0.5),
        (patch("x = event.get('q')"), 0.25),
    ]);
    // WHEN generate runs
    let out = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap();
    // THEN the second answer is kept, the round is counted, the costs are summed
    let generated: Generated = serde_json::from_value(out).unwrap();
    assert_eq!(generated.repair_rounds, 1);
    assert_eq!(generated.usage.cost_usd, 0.75);
    assert_eq!(generated.usage.input_tokens, 200);
    let Change::CodePatch { files, .. } = &generated.proposal.change else {
        panic!("expected the repaired patch");
    };
    assert!(files[0].diff.contains("event.get('q')"));
    // The follow-up carried the previous diff and the findings, within what was left.
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].budget_usd, world.config.llm_budget_usd - 0.5);
    let repair: Value = serde_json::from_str(&requests[1].prompt).unwrap();
    assert!(
        repair["previous_patch"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("eval(event['q'])")
    );
    assert_eq!(repair["findings"][0]["rule"], "code_execution");
    assert_eq!(repair["findings"][0]["location"], "app.py:4");
    assert_eq!(repair["findings"][0]["message"], "eval of request data");
    assert_eq!(
        repair["original_request"]["code"]["files"][0]["path"],
        "app.py"
    );
    let usage = world.records.usage.lock().unwrap()[&date!(2026 - 11 - 22)].clone();
    assert_eq!(usage.cost_usd, 0.75);
}

#[tokio::test]
async fn a_repair_that_still_fails_is_kept_for_validate_to_refuse_with_its_findings() {
    let (world, requests) = code_world([
        (patch("x = eval(event['q'])"), 0.5),
        (patch("x = eval(event['q'] or '1')"), 0.5),
    ]);
    let out = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(requests.lock().unwrap().len(), 2, "one repair round only");
    let generated: Generated = serde_json::from_value(out).unwrap();
    assert_eq!(generated.repair_rounds, 1);
    let mut item = traced();
    item.generated = Some(generated);
    let validation = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": item}),
        )
        .await
        .unwrap();
    assert_eq!(validation["decision"], "rejected");
    assert_eq!(validation["findings"][0]["rule"], "code_execution");
    // The record keeps the findings and that the patch had its repair round.
    let records = world.records.improvements.lock().unwrap();
    let stored = &records[&"c1-1".parse::<ImprovementId>().unwrap()].item;
    assert_eq!(stored.generated.as_ref().unwrap().repair_rounds, 1);
    assert_eq!(
        stored.validation.as_ref().unwrap().findings[0].rule,
        "code_execution"
    );
}

#[tokio::test]
async fn a_repair_over_the_budget_fails_the_item_and_its_spend_is_kept() {
    let (mut world, _) = code_world([
        (patch("x = eval(event['q'])"), 0.5),
        (patch("x = event.get('q')"), 0.6),
    ]);
    world.config.llm_budget_usd = 1.0;
    let err = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::BudgetExceeded);
    assert!(err.to_string().contains("$1.1000"), "{err}");
    let usage = world.records.usage.lock().unwrap()[&date!(2026 - 11 - 22)].clone();
    assert!((usage.cost_usd - 1.1).abs() < 1e-9, "{}", usage.cost_usd);
}

#[tokio::test]
async fn without_a_checker_or_with_a_clean_patch_there_is_no_repair_round() {
    // No checker in this process (every function but validate on AWS).
    let (mut world, requests) = code_world([(patch("x = eval(event['q'])"), 0.5)]);
    world.checker = Box::new(crate::ports::NoCodeChecker);
    let out = world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(requests.lock().unwrap().len(), 1);
    assert!(out.get("repair_rounds").is_none(), "{out}");
    // A patch the checker passes goes on as it is.
    let (world, requests) = code_world([(patch("x = 2"), 0.5)]);
    world
        .run(
            StepFunction::Generate,
            serde_json::to_value(traced()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_big_traced_file_and_the_handler_module_fit_the_code_budget() {
    // GIVEN a 4,000-line module failing at line 3,000 and a handler module in no frame
    let big: String = (1..=4000)
        .map(|i| format!("    total_{i} = order['items'][{i}]['price'] * order['qty']\n"))
        .collect();
    let deployed = crate::ports::DeployedFiles {
        base: Default::default(),
        handler: Some("orders.handler".into()),
        files: [
            ("lib/cart.py".to_owned(), Some(big)),
            (
                "orders.py".to_owned(),
                Some("from lib import cart\n\ndef handler(event, context):\n    return cart.total(event)\n".to_owned()),
            ),
        ]
        .into(),
    };
    let (mut world, requests) = code_world([(proposal(), 0.1)]);
    world.code = Box::new(MapCode(Ok(deployed)));
    let mut item = traced();
    item.opportunity.stack_traces[0].frames[0].file = Some("/var/task/lib/cart.py".into());
    item.opportunity.stack_traces[0].frames[0].line = Some(3000);
    // WHEN generate runs
    world
        .run(StepFunction::Generate, serde_json::to_value(item).unwrap())
        .await
        .unwrap();
    // THEN the traced file comes first as a window around line 3000, the handler's module
    // (read on a second call) after it, all within the budget
    let prompt: Value = serde_json::from_str(&requests.lock().unwrap()[0].prompt).unwrap();
    let files = prompt["code"]["files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "lib/cart.py");
    assert_eq!(files[0]["whole"], false);
    let window = &files[0]["excerpts"][0];
    assert!(window["first_line"].as_u64().unwrap() <= 3000);
    assert!(window["last_line"].as_u64().unwrap() >= 3000);
    assert!(
        window["text"]
            .as_str()
            .unwrap()
            .contains("3000|     total_3000 = ")
    );
    assert_eq!(files[1]["path"], "orders.py");
    assert_eq!(files[1]["whole"], true);
    let tokens: usize = files
        .iter()
        .flat_map(|f| f["excerpts"].as_array().unwrap())
        .map(|e| crate::generate::context::estimated_tokens(e["text"].as_str().unwrap()))
        .sum();
    assert!(
        tokens <= crate::generate::CODE_TOKEN_BUDGET,
        "{tokens} tokens"
    );
    assert!(
        tokens < 4000 * 15 / 4,
        "a window, not the file: {tokens} tokens"
    );
}

fn cycle_request(components: &[&str]) -> Value {
    json!({
        "cycle_id": "c1", "mode": "routine", "tenant_id": null,
        "components": components,
        "analysis_window": {"start": "2026-11-22T04:00:00Z", "end": "2026-11-22T05:00:00Z"},
        "max_improvements": 3, "max_concurrency": 1, "dry_run": false,
        "trigger": {"kind": "schedule", "rule": null},
        "dedup_key": "*#*", "requested_at": "2026-11-22T05:00:00Z"
    })
}

fn disable(world: &World, component: &str) {
    world.records.ledgers.lock().unwrap().insert(
        component.into(),
        crate::health::ComponentHealth {
            component: component.into(),
            failed_heals: 3,
            heal_pending: false,
            disabled: Some(crate::health::Disabled {
                reason: "3 failed heals (limit 3)".into(),
                since: datetime!(2026-11-22 04:30 UTC),
            }),
        },
    );
}

#[tokio::test]
async fn a_cycle_on_a_disabled_component_ends_without_reading_telemetry_and_says_why() {
    // GIVEN orders disabled by the health pass (and telemetry that fails if read)
    let world = World::new();
    disable(&world, "orders");
    // WHEN a cycle on orders analyses
    let analysis = world
        .run(StepFunction::Analyze, cycle_request(&["orders"]))
        .await
        .unwrap();
    // THEN nothing to do, the skip reported and audited with how to re-enable
    assert_eq!(analysis["has_opportunities"], false);
    assert_eq!(analysis["skipped"][0]["component"], "orders");
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::ComponentSkipped);
    assert_eq!(events[0].actor, "selfbuild:analyze");
    for part in [
        "orders is disabled since 2026-11-22T04:30:00Z",
        "3 failed heals",
        "selfbuild enable-component orders",
        "enable_component",
    ] {
        assert!(
            events[0].detail.contains(part),
            "{part:?}: {}",
            events[0].detail
        );
    }
    // AND the summary names it; the cycle ends without a change, succeeded
    let summary = world
        .run(
            StepFunction::Monitor,
            json!({"action": "summarize", "cycle": {"cycle_id": "c1", "analysis": analysis}}),
        )
        .await
        .unwrap();
    assert_eq!(summary["skipped"][0]["component"], "orders");
    assert_eq!(summary["improvements"], json!([]));
    assert_eq!(
        world.records.finished.lock().unwrap().clone(),
        [(CycleId::parse("c1").unwrap(), CycleStatus::Succeeded)]
    );
    // AND once re-enabled, the same cycle reads telemetry again (NoTelemetry fails it)
    world.records.ledgers.lock().unwrap().clear();
    let err = world
        .run(StepFunction::Analyze, cycle_request(&["orders"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StepError::Telemetry(_)), "{err:?}");
}

/// Invocations only, of `orders`: an analysis with a component and nothing to improve.
struct QuietOrders;

#[async_trait::async_trait]
impl Telemetry for QuietOrders {
    async fn metric_series(
        &self,
        _: &crate::telemetry::TelemetryQuery,
    ) -> Result<Vec<crate::telemetry::MetricSeries>, crate::error::TelemetryError> {
        Ok(vec![crate::telemetry::MetricSeries {
            component: ComponentId::parse("orders").unwrap(),
            metric: crate::telemetry::MetricName::Invocations,
            version: None,
            points: vec![crate::telemetry::DataPoint {
                timestamp: datetime!(2026-11-22 04:00 UTC),
                value: 100.0,
            }],
        }])
    }
    async fn version_totals(
        &self,
        c: &ComponentId,
        v: &[String],
        w: &crate::cycle::TimeWindow,
        d: &crate::telemetry::DurationQuery,
    ) -> Result<Vec<crate::telemetry::VersionTotals>, crate::error::TelemetryError> {
        NoTelemetry.version_totals(c, v, w, d).await
    }
    async fn error_rows(
        &self,
        _: &crate::telemetry::TelemetryQuery,
        _: usize,
    ) -> Result<Vec<crate::telemetry::LogRow>, crate::error::TelemetryError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_fleet_wide_cycle_names_the_disabled_components_it_had_in_scope() {
    // GIVEN orders and payments disabled; the telemetry knows orders only
    let mut world = World::new();
    world.telemetry = Box::new(QuietOrders);
    disable(&world, "orders");
    disable(&world, "payments");
    // WHEN a fleet-wide cycle analyses
    let analysis = world
        .run(StepFunction::Analyze, cycle_request(&[]))
        .await
        .unwrap();
    // THEN it analysed, and skipped (and audited) orders, not payments it never saw
    assert_eq!(analysis["components"][0]["component"], "orders");
    assert_eq!(analysis["skipped"].as_array().map(Vec::len), Some(1));
    assert_eq!(analysis["skipped"][0]["component"], "orders");
    let events = world.records.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert!(events[0].detail.starts_with("orders is disabled"));
}

/// A registry holding these agents.
#[derive(Default)]
struct FixedAgents(Vec<AgentRecord>);

#[async_trait::async_trait]
impl Registry for FixedAgents {
    async fn register_agent(&self, _: &AgentRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_agents(&self, _: &TenantScope) -> Result<Vec<AgentRecord>, StoreError> {
        Ok(self.0.clone())
    }
    async fn put_component(&self, _: &crate::records::ComponentRecord) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_components(
        &self,
        _: &TenantScope,
    ) -> Result<Vec<crate::records::ComponentRecord>, StoreError> {
        Ok(Vec::new())
    }
}

/// Agents answering as scripted, recording every call.
#[derive(Default)]
struct ScriptedPeers {
    /// The window answer; none: unreachable.
    window: Option<WindowAnswer>,
    /// Agents whose deliveries fail.
    down: Vec<String>,
    calls: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl AgentPeers for ScriptedPeers {
    async fn deployment_window(
        &self,
        target: &PeerTarget,
        tool: &str,
        _: Value,
    ) -> Result<WindowAnswer, PeerError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{}.{tool}", target.name));
        self.window.clone().ok_or_else(|| PeerError::Unreachable {
            agent: target.name.clone(),
            message: "connection refused".into(),
        })
    }
    async fn notify(&self, deliveries: &[Delivery], notice: Value) -> Vec<DeliveryOutcome> {
        deliveries
            .iter()
            .map(|d| {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("{}.{} {}", d.target.name, d.tool, notice["event"]));
                let down = self.down.contains(&d.target.name);
                DeliveryOutcome {
                    agent: d.target.name.clone(),
                    attempts: if down { 3 } else { 1 },
                    error: down.then(|| PeerError::Unreachable {
                        agent: d.target.name.clone(),
                        message: "connection refused".into(),
                    }),
                }
            })
            .collect()
    }
    async fn ping(&self, _: &PeerTarget) -> Result<(), PeerError> {
        Ok(())
    }
}

fn peer(name: &str, components: &[&str], depends_on: &[&str]) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        url: format!("https://{name}.example"),
        capabilities: vec!["x".into()],
        mcp_url: Some(format!("https://{name}.example/mcp")),
        key_secret_id: None,
        components: components.iter().map(|c| (*c).to_owned()).collect(),
        depends_on: depends_on.iter().map(|c| (*c).to_owned()).collect(),
        low_traffic_windows: Vec::new(),
        window_tool: None,
        notify_tool: None,
        metrics: None,
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        registered_by: "k".into(),
        registered_at: NOW,
    }
}

/// orders (owns orders-api), billing and audit depending on it, search depending on nobody.
fn agents() -> FixedAgents {
    FixedAgents(vec![
        peer("orders", &["orders-api"], &[]),
        AgentRecord {
            notify_tool: Some("on_change".into()),
            ..peer("billing", &[], &["orders"])
        },
        peer("audit", &[], &["orders", "search"]),
        peer("search", &[], &[]),
    ])
}

#[tokio::test]
async fn the_owner_saying_not_now_defers_and_saying_now_overrides_own_detection() {
    let mut world = World {
        agents: agents(),
        peers: ScriptedPeers {
            window: Some(WindowAnswer {
                deploy_now: false,
                retry_after_seconds: Some(900),
                reason: Some("batch run".into()),
            }),
            ..ScriptedPeers::default()
        },
        ..World::new()
    };
    let later = world.owner_window(&item()).await;
    assert_eq!(
        later,
        OwnerWindow::Later {
            wait_until: NOW + time::Duration::seconds(900),
            reason: "agent orders said not now: \"batch run\"; asking again in 900 s".into()
        }
    );
    assert_eq!(
        *world.peers.calls.lock().unwrap(),
        ["orders.request_deployment_window"]
    );
    // A wait beyond a day is cut to one; none means DEPLOY_DEFER_SECONDS.
    world.peers.window = Some(WindowAnswer {
        deploy_now: false,
        retry_after_seconds: Some(10_000_000),
        reason: None,
    });
    let OwnerWindow::Later { wait_until, .. } = world.owner_window(&item()).await else {
        panic!("not deferred")
    };
    assert_eq!(wait_until, NOW + time::Duration::days(1));
    world.peers.window = Some(WindowAnswer {
        deploy_now: true,
        retry_after_seconds: None,
        reason: None,
    });
    assert_eq!(
        world.owner_window(&item()).await,
        OwnerWindow::Now("agent orders said deploy now".into())
    );
}

#[tokio::test]
async fn an_owner_that_cannot_answer_falls_back_to_its_windows_then_to_own_detection() {
    // GIVEN the owner is down, and declares a window that opens at 22:00 (now is 05:00)
    let mut owner = peer("orders", &["orders-api"], &[]);
    owner.low_traffic_windows =
        vec![crate::agents::LowTrafficWindow::parse("22:00-02:00").unwrap()];
    let mut world = World {
        agents: FixedAgents(vec![owner.clone()]),
        ..World::new()
    };
    let OwnerWindow::Later { wait_until, reason } = world.owner_window(&item()).await else {
        panic!("not deferred to the window")
    };
    assert_eq!(wait_until, datetime!(2026-11-22 22:00:00 UTC));
    assert!(
        reason.starts_with("agent orders gave no deployment window (\"agent orders unreachable")
            && reason.ends_with("outside agent orders's low-traffic windows (22:00-02:00 UTC)"),
        "{reason}"
    );
    // WITHOUT windows: selfbuild's own detection decides, with the reason noted
    owner.low_traffic_windows.clear();
    world.agents = FixedAgents(vec![owner]);
    let OwnerWindow::Own(Some(note)) = world.owner_window(&item()).await else {
        panic!("not left to own detection")
    };
    assert!(
        note.starts_with("agent orders gave no deployment window"),
        "{note}"
    );
    // A component no agent owns, or a dry run: nobody is asked
    world.agents = FixedAgents(vec![peer("search", &["search-api"], &[])]);
    assert_eq!(world.owner_window(&item()).await, OwnerWindow::Own(None));
    let dry = ImprovementItem {
        dry_run: true,
        ..item()
    };
    world.agents = agents();
    assert_eq!(world.owner_window(&dry).await, OwnerWindow::Own(None));
    assert_eq!(
        *world.peers.calls.lock().unwrap(),
        [
            "orders.request_deployment_window",
            "orders.request_deployment_window"
        ],
        "only the two asks of the owner"
    );
}

#[tokio::test]
async fn promote_and_rollback_notify_the_dependents_and_audit_each_delivery() {
    // GIVEN billing and audit depend on orders, and audit is down
    let (world, _) = split_world();
    let world = World {
        agents: agents(),
        peers: ScriptedPeers {
            down: vec!["audit".into()],
            ..ScriptedPeers::default()
        },
        ..world
    };
    // WHEN the canary is promoted, then rolled back
    let promoted = world
        .run(
            StepFunction::Deploy,
            json!({"action": "promote", "item": deployed()}),
        )
        .await
        .unwrap();
    world
        .run(
            StepFunction::Rollback,
            json!({"action": "rollback", "item": deployed()}),
        )
        .await
        .unwrap();
    // THEN each dependent was called with its tool, the failure did not stop the step,
    // and every delivery is audited
    assert_eq!(promoted["status"], "promoted");
    assert_eq!(
        *world.peers.calls.lock().unwrap(),
        [
            "billing.on_change \"promoted\"",
            "audit.notify_dependency_changed \"promoted\"",
            "billing.on_change \"rolled_back\"",
            "audit.notify_dependency_changed \"rolled_back\"",
        ]
    );
    let events = world.records.events.lock().unwrap().clone();
    let deliveries: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e.action.as_str().starts_with("agent_"))
        .map(|e| {
            (
                e.action.as_str().to_owned(),
                e.actor.clone(),
                e.after.as_ref().unwrap()["agent"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let d = |a: &str, by: &str, agent: &str| (a.to_owned(), by.to_owned(), agent.to_owned());
    assert_eq!(
        deliveries,
        [
            d("agent_notified", "selfbuild:deploy", "billing"),
            d("agent_notification_failed", "selfbuild:deploy", "audit"),
            d("agent_notified", "selfbuild:rollback", "billing"),
            d("agent_notification_failed", "selfbuild:rollback", "audit"),
        ]
    );
    let failed = events
        .iter()
        .find(|e| e.action == AuditAction::AgentNotificationFailed)
        .unwrap();
    assert!(
        failed.detail.contains("after 3 attempt(s)"),
        "{}",
        failed.detail
    );
    assert_eq!(world.status(), Some(ImprovementStatus::RolledBack));
}

/// Runs the deploy step the way the state machine loops it (Wait until `wait_until`, then
/// DeployCanary again with the last outcome in the item) until it is not deferred; returns
/// the last outcome and how many deploys were asked.
async fn deploy_until_not_deferred(world: &mut World) -> (crate::improvement::DeployOutcome, u32) {
    let validation = world
        .run(
            StepFunction::Validate,
            json!({"action": "validate", "item": item()}),
        )
        .await
        .unwrap();
    let mut item = item();
    item.validation = Some(serde_json::from_value(validation).unwrap());
    for asked in 1..=1000 {
        let answer = world
            .run(
                StepFunction::Deploy,
                json!({"action": "deploy", "item": item}),
            )
            .await
            .unwrap();
        let outcome: crate::improvement::DeployOutcome = serde_json::from_value(answer).unwrap();
        if outcome.status != DeployStatus::Deferred {
            return (outcome, asked);
        }
        world.clock = FixedClock(
            outcome
                .wait_until
                .expect("a deferred deploy says until when"),
        );
        item.deploy = Some(outcome);
    }
    panic!("still deferred after 1000 deploys");
}

#[tokio::test]
async fn an_owner_that_always_says_not_now_is_given_up_on_at_the_deferral_limit() {
    // GIVEN the owner answers "not now, ask again in 900 s" every time, and a deploy may
    // wait an hour in all
    let mut world = World {
        agents: agents(),
        peers: ScriptedPeers {
            window: Some(WindowAnswer {
                deploy_now: false,
                retry_after_seconds: Some(900),
                reason: Some("batch run".into()),
            }),
            ..ScriptedPeers::default()
        },
        config: Config::from_lookup(|k| (k == "DEPLOY_MAX_DEFER_SECONDS").then(|| "3600".into()))
            .unwrap(),
        ..World::new()
    };
    // WHEN the state machine keeps asking
    let (outcome, asked) = deploy_until_not_deferred(&mut world).await;
    // THEN it is deferred at 0, 15, 30 and 45 minutes, asked a last time at the hour, and
    // then given up: nothing deployed, skipped with the reason
    assert_eq!(asked, 5);
    assert_eq!(world.clock.0, NOW + time::Duration::hours(1));
    assert_eq!(outcome.status, DeployStatus::Skipped);
    assert_eq!((outcome.deferrals, outcome.deferred_since), (4, Some(NOW)));
    assert!(outcome.deployment.is_none());
    assert!(
        outcome.reason.starts_with("deferred 4 time(s) since 2026-")
            && outcome.reason.contains("DEPLOY_MAX_DEFER_SECONDS")
            && outcome
                .reason
                .ends_with("agent orders said not now: \"batch run\"; asking again in 900 s"),
        "{}",
        outcome.reason
    );
    assert_eq!(world.actions().last(), Some(&"deploy_skipped"));
    assert_eq!(world.status(), Some(ImprovementStatus::Skipped));
}

#[tokio::test]
async fn a_deploy_is_deferred_at_most_max_deferrals_times() {
    // GIVEN an owner asking for a minute each time, and a week allowed in all
    let mut world = World {
        agents: agents(),
        peers: ScriptedPeers {
            window: Some(WindowAnswer {
                deploy_now: false,
                retry_after_seconds: Some(60),
                reason: None,
            }),
            ..ScriptedPeers::default()
        },
        config: Config::from_lookup(|k| (k == "DEPLOY_MAX_DEFER_SECONDS").then(|| "604800".into()))
            .unwrap(),
        ..World::new()
    };
    let (outcome, asked) = deploy_until_not_deferred(&mut world).await;
    // THEN the count, not the time, ends it: the history stays inside Step Functions' limit
    assert_eq!(asked, crate::canary::MAX_DEFERRALS + 1);
    assert_eq!(outcome.status, DeployStatus::Skipped);
    assert_eq!(outcome.deferrals, crate::canary::MAX_DEFERRALS);
    assert_eq!(
        world.clock.0,
        NOW + time::Duration::minutes(i64::from(crate::canary::MAX_DEFERRALS))
    );
}

/// The world with billing and audit depending on orders (audit down), and `deployed()`
/// recorded as `status`.
async fn world_with_dependents(status: ImprovementStatus) -> (World, Calls) {
    let (world, calls) = split_world();
    let world = World {
        agents: agents(),
        peers: ScriptedPeers {
            down: vec!["audit".into()],
            ..ScriptedPeers::default()
        },
        ..world
    };
    let record = crate::records::ImprovementRecord::of_item(&deployed(), status, NOW);
    world.records.put_improvement(&record).await.unwrap();
    (world, calls)
}

/// Each delivery's audit event as (action, actor, agent).
fn deliveries(world: &World) -> Vec<(String, String, String)> {
    let events = world.records.events.lock().unwrap().clone();
    events
        .iter()
        .filter(|e| e.action.as_str().starts_with("agent_"))
        .map(|e| {
            (
                e.action.as_str().to_owned(),
                e.actor.clone(),
                e.after.as_ref().unwrap()["agent"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_requested_rollback_tells_the_dependents_as_whoever_asked() {
    // GIVEN a promoted improvement whose component's owner has two dependents
    let (world, calls) = world_with_dependents(ImprovementStatus::Promoted).await;
    let record = world
        .records
        .get_improvement(&"c1-1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let deps = StepDeps {
        telemetry: world.telemetry.as_ref(),
        deployer: world.deployer.as_ref(),
        code: world.code.as_ref(),
        checker: world.checker.as_ref(),
        llm: world.llm.as_ref(),
        store: &world.records,
        notifier: &world.records,
        registry: &world.agents,
        peers: &world.peers,
        metrics: &world.records,
        clock: &world.clock,
    };
    // WHEN a person rolls it back on request (as MCP rollback_improvement does)
    let done = crate::canary::roll_back_requested(
        deps.rollback_ports(),
        &record,
        "key:ops",
        "pager at 3 am",
    )
    .await
    .unwrap();
    // THEN the baseline is back, and every dependent was told, audited as that person's
    assert!(matches!(
        done,
        crate::canary::RequestedRollback::Done { restored: true }
    ));
    assert!(calls.lock().unwrap().contains(&"rollback"));
    assert_eq!(
        *world.peers.calls.lock().unwrap(),
        [
            "billing.on_change \"rolled_back\"",
            "audit.notify_dependency_changed \"rolled_back\"",
        ]
    );
    let d = |a: &str, agent: &str| (a.to_owned(), "key:ops".to_owned(), agent.to_owned());
    assert_eq!(
        deliveries(&world),
        [
            d("agent_notified", "billing"),
            d("agent_notification_failed", "audit")
        ]
    );
    assert_eq!(world.status(), Some(ImprovementStatus::RolledBack));

    // AND asked again, nothing is rolled back and nobody is told twice
    let again = world
        .records
        .get_improvement(&"c1-1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let twice = crate::canary::roll_back_requested(deps.rollback_ports(), &again, "key:ops", "x")
        .await
        .unwrap();
    assert!(matches!(
        twice,
        crate::canary::RequestedRollback::AlreadyRolledBack
    ));
    assert_eq!(world.peers.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_rollback_function_carries_out_a_heal_handed_to_it_and_tells_the_dependents() {
    // GIVEN a deployed improvement and the health pass's order, as it invokes the function
    let (world, calls) = world_with_dependents(ImprovementStatus::Deployed).await;
    let order = crate::canary::RollbackOrder {
        improvement_id: "c1-1".parse().unwrap(),
        actor: crate::health::pass::ACTOR.into(),
        reason: "orders-api's errors began within one monitor window after it".into(),
    };
    let payload = serde_json::to_value(RollbackRequest::RequestedRollback(order)).unwrap();
    assert_eq!(payload["action"], "requested_rollback");
    // WHEN the rollback function runs on it
    let out = world.run(StepFunction::Rollback, payload).await.unwrap();
    // THEN the baseline is restored, recorded and announced as the health pass's
    assert_eq!(out["outcome"], "rolled_back", "{out}");
    assert_eq!(out["actor"], "selfbuild:health");
    assert!(calls.lock().unwrap().contains(&"rollback"));
    assert_eq!(world.status(), Some(ImprovementStatus::RolledBack));
    let events = world.records.events.lock().unwrap().clone();
    let rolled = events
        .iter()
        .find(|e| e.action == AuditAction::RolledBack)
        .unwrap();
    assert_eq!(rolled.actor, "selfbuild:health");
    assert!(rolled.detail.contains("errors began"), "{}", rolled.detail);
    let d = |a: &str, agent: &str| {
        (
            a.to_owned(),
            "selfbuild:health".to_owned(),
            agent.to_owned(),
        )
    };
    assert_eq!(
        deliveries(&world),
        [
            d("agent_notified", "billing"),
            d("agent_notification_failed", "audit")
        ]
    );
    assert!(
        world
            .records
            .notifications
            .lock()
            .unwrap()
            .contains(&"Improvement Rolled Back".to_owned())
    );

    // AND a second delivery of the same order (Lambda may retry) finds nothing to undo:
    // an answer, not an error to retry
    let again = json!({"action": "requested_rollback", "improvement_id": "c1-1",
        "actor": "selfbuild:health", "reason": "again"});
    let out = world.run(StepFunction::Rollback, again).await.unwrap();
    assert_eq!(out["outcome"], "nothing_to_undo", "{out}");
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .contains("already rolled back"),
        "{out}"
    );
    let unknown = json!({"action": "requested_rollback", "improvement_id": "c9-1",
        "actor": "selfbuild:health", "reason": "r"});
    let out = world.run(StepFunction::Rollback, unknown).await.unwrap();
    assert_eq!(out["detail"], "improvement c9-1 has no record", "{out}");
}

#[tokio::test]
async fn a_bad_heal_order_is_refused_naming_what_is_wrong() {
    let (world, calls) = world_with_dependents(ImprovementStatus::Deployed).await;
    let order = |changes: Value| {
        let mut o = json!({"action": "requested_rollback", "improvement_id": "c1-1",
            "actor": "selfbuild:health", "reason": "errors"});
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        o
    };
    for (payload, says) in [
        (order(json!({"improvement_id": null})), "improvement_id"),
        (
            order(json!({"improvement_id": "no rank"})),
            "improvement_id",
        ),
        (order(json!({"actor": 7})), "actor"),
        (order(json!({"actor": "  "})), "actor: must not be empty"),
        (order(json!({"reason": "two\nlines"})), "reason"),
        (order(json!({"item": deployed()})), "unknown field `item`"),
        (
            order(json!({"action": "roll_back"})),
            "unknown variant `roll_back`",
        ),
    ] {
        let e = world
            .run(StepFunction::Rollback, payload.clone())
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), ErrorType::InvalidInput, "{payload}: {e}");
        assert!(e.to_string().contains(says), "{payload}: {e}");
    }
    assert!(calls.lock().unwrap().is_empty(), "nothing was rolled back");
    assert_eq!(world.status(), Some(ImprovementStatus::Deployed));
}
