//! The world the deploy, rollback and sweep tests run in: a function on moto behind `live`,
//! the adapters through a fault proxy, and the cycle's Task states run with the Retry and
//! Catch of the real state machine definition.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_lambda::types::AliasRoutingConfiguration;
use selfbuild_aws::DynamoStore;
use selfbuild_aws::LambdaDeployer;
use selfbuild_aws::telemetry::{CloudWatchTelemetry, TelemetrySettings};
use selfbuild_core::Config;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::change::{Change, LambdaConfigChange, LambdaSettings, Proposal, RiskLevel};
use selfbuild_core::cycle::CycleMode;
use selfbuild_core::deployment::{FunctionState, LIVE_ALIAS};
use selfbuild_core::error::{StableError, StoreError};
use selfbuild_core::ids::{ComponentId, CycleId, ImprovementId};
use selfbuild_core::improvement::{
    Generated, ImprovementItem, LlmUsage, Validation, ValidationDecision,
};
use selfbuild_core::opportunity::{Opportunity, OpportunityKind, Priority};
use selfbuild_core::ports::{AuditLog, Clock, Deployer, ImprovementStore, Notifier};
use selfbuild_core::steps::{StepDeps, StepFunction, run_step};
use selfbuild_local::planner::RulePlanner;
use selfbuild_tests::fault_proxy::FaultProxy;
use selfbuild_tests::lambda_fixture::MotoFunction;
use selfbuild_tests::moto::MotoServer;
use serde_json::{Value, json};

use super::{NOW, NoMetrics};
use time::OffsetDateTime;

/// The state machine definition the tests read the Task states from.
const DEFINITION: &str = include_str!("../../../../statemachine/improvement-cycle.asl.json");

/// A Map item Task state as the definition has it: its function, its `Parameters`, its
/// Retry and its Catch.
struct TaskState {
    function: StepFunction,
    parameters: Value,
    /// Where the result goes in the state's input.
    result_path: String,
    /// The state after success.
    next: String,
    /// (ErrorEquals, MaxAttempts) per retrier, in order.
    retry: Vec<(Vec<String>, u64)>,
    /// (ErrorEquals, ResultPath, Next) per catcher, in order.
    catch: Vec<(Vec<String>, String, String)>,
}

fn names(value: &Value) -> Vec<String> {
    value["ErrorEquals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn matches(errors: &[String], error: &str) -> bool {
    errors
        .iter()
        .any(|e| e == error || (e == "States.ALL" && !error.starts_with("States.Runtime")))
}

/// The Map item's state `name`.
fn item_state(name: &str) -> Value {
    let definition: Value = serde_json::from_str(DEFINITION).unwrap();
    let map = &definition["States"]["ImproveOpportunities"];
    let states = map
        .get("ItemProcessor")
        .unwrap_or_else(|| &map["Iterator"])
        .get("States")
        .unwrap();
    states
        .get(name)
        .unwrap_or_else(|| panic!("no state {name} in the Map item"))
        .clone()
}

/// A reference path `$` or `$.a.b` on `input`.
fn at_path(input: &Value, path: &str) -> Value {
    let pointer = path.trim_start_matches('$').replace('.', "/");
    input
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("{path} is not in the state input"))
        .clone()
}

impl TaskState {
    fn of(state: &str) -> Self {
        let state = item_state(state);
        assert_eq!(state["Type"], "Task", "{state}");
        // `${DeployFunctionArn}` → deploy
        let resource = state["Resource"].as_str().unwrap();
        let name = resource
            .trim_start_matches("${")
            .trim_end_matches("FunctionArn}")
            .to_ascii_lowercase();
        let list = |key: &str| state[key].as_array().cloned().unwrap_or_default();
        Self {
            function: StepFunction::from_name(&name)
                .unwrap_or_else(|| panic!("no step function for {resource}")),
            parameters: state["Parameters"].clone(),
            result_path: state["ResultPath"].as_str().unwrap_or("$").to_owned(),
            next: state["Next"].as_str().unwrap_or_default().to_owned(),
            retry: list("Retry")
                .iter()
                .map(|r| (names(r), r["MaxAttempts"].as_u64().unwrap_or(3)))
                .collect(),
            catch: list("Catch")
                .iter()
                .map(|c| {
                    (
                        names(c),
                        c["ResultPath"].as_str().unwrap_or("$").to_owned(),
                        c["Next"].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// The payload for `input`: the `Parameters`, with `key.$` paths read from the input.
    fn payload(&self, input: &Value) -> Value {
        let mut payload = serde_json::Map::new();
        for (key, value) in self.parameters.as_object().unwrap() {
            match key.strip_suffix(".$") {
                Some(key) => {
                    payload.insert(key.to_owned(), at_path(input, value.as_str().unwrap()))
                }
                None => payload.insert(key.clone(), value.clone()),
            };
        }
        Value::Object(payload)
    }
}

/// Where an item's path stopped: the first state that is not a Task (a Choice the test
/// decides, or a Pass that ends the item), the input it got, and the Task states run.
#[derive(Debug)]
pub struct Path {
    /// The state reached.
    pub reached: String,
    /// Its input.
    pub input: Value,
    /// Each Task state run on the way, and how.
    pub tasks: Vec<(String, TaskRun)>,
}

impl Path {
    /// The Task states run, in order.
    pub fn states(&self) -> Vec<&str> {
        self.tasks.iter().map(|(s, _)| s.as_str()).collect()
    }
}

/// How the state machine ran one Task state.
#[derive(Debug)]
pub struct TaskRun {
    /// How many times the step was called.
    pub attempts: u64,
    /// The result, or the error caught.
    pub result: Result<Value, Caught>,
}

/// A step error the Task state caught.
#[derive(Debug, Clone)]
pub struct Caught {
    /// The `errorType`.
    pub error: String,
    /// The message.
    pub cause: String,
    /// Where the Catch puts the error in the state's input.
    pub result_path: String,
    /// The state the Catch goes to.
    pub next: String,
}

impl Caught {
    /// The next state's input: `input` with the error at the Catch's `ResultPath`, as Step
    /// Functions writes a Lambda function's error (`Cause` is its JSON error report).
    pub fn next_input(&self, input: &Value) -> Value {
        let mut next = input.clone();
        let key = self.result_path.strip_prefix("$.").unwrap();
        let cause = json!({"errorType": self.error, "errorMessage": self.cause}).to_string();
        next[key] = json!({"Error": self.error, "Cause": cause});
        next
    }
}

/// An audit trail that is never written (the intake tests do not audit).
struct NoNotifier;

#[async_trait::async_trait]
impl Notifier for NoNotifier {
    async fn notify(&self, _: &str, _: &Value) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The test's clock: fixed, moved on by a second before every call of a step, as time
/// passes between a state machine's tasks (audit events are ordered by their time).
#[derive(Clone)]
pub struct StepClock(Arc<Mutex<OffsetDateTime>>);

impl StepClock {
    fn at(now: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    fn tick(&self) {
        *self.0.lock().unwrap() += time::Duration::seconds(1);
    }
}

impl Clock for StepClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The settings every test function starts with.
pub fn stable_settings(reserved: Option<u32>) -> LambdaSettings {
    LambdaSettings {
        memory_mb: 256,
        timeout_seconds: 10,
        reserved_concurrency: reserved,
        environment: env(&[("MODE", "safe")]),
    }
}

/// The settings every test canary ships.
pub fn canary_settings(reserved: Option<u32>) -> LambdaSettings {
    LambdaSettings {
        memory_mb: 512,
        timeout_seconds: 20,
        reserved_concurrency: reserved,
        environment: env(&[("MODE", "fast"), ("NEW", "1")]),
    }
}

/// A function on moto with version 1 behind `live`, the adapters through a fault proxy, and
/// direct clients to moto for setting up and looking.
pub struct World {
    pub moto: Arc<MotoServer>,
    pub proxy: FaultProxy,
    /// Lambda straight to moto (no faults).
    pub lambda: aws_sdk_lambda::Client,
    pub function: ComponentId,
    /// The deployer through the proxy.
    pub deployer: LambdaDeployer,
    /// The store through the proxy.
    pub store: DynamoStore,
    /// The same table straight to moto.
    pub direct: DynamoStore,
    pub telemetry: CloudWatchTelemetry,
    pub clock: StepClock,
    pub config: Config,
    llm: RulePlanner,
}

impl World {
    /// `name` created with `initial`, published as version 1 behind `live`; a table of its own.
    pub async fn new(name: &str, initial: &LambdaSettings, seed: u64) -> Self {
        let MotoFunction {
            moto,
            lambda,
            function,
        } = MotoFunction::new(name, initial).await;
        let sdk = moto.sdk_config().await;
        let table = format!("faults-{name}");
        let direct = DynamoStore::new(&sdk, table.clone());
        direct.create_table().await.unwrap();

        let proxy = FaultProxy::start(&moto, seed).await;
        let clock = StepClock::at(NOW);
        let deployer =
            LambdaDeployer::from_client(proxy.lambda().await).with_clock(Arc::new(clock.clone()));
        let store = DynamoStore::from_client(proxy.dynamodb().await, table.clone());
        let (cloudwatch, logs) = proxy.cloudwatch().await;
        let telemetry = CloudWatchTelemetry::from_clients(
            cloudwatch,
            logs,
            TelemetrySettings {
                percentiles: false,
                ..TelemetrySettings::default()
            },
        );
        let config = Config {
            table_name: table,
            ..Config::default()
        };
        Self {
            moto,
            proxy,
            lambda,
            function,
            deployer,
            store,
            direct,
            telemetry,
            clock,
            config,
            llm: RulePlanner,
        }
    }

    /// The Map item of improvement `<cycle>-1`, validated to ship `after`.
    pub fn item(&self, cycle: &str, after: &LambdaSettings) -> ImprovementItem {
        let before = stable_settings(None);
        ImprovementItem {
            cycle_id: CycleId::parse(cycle).unwrap(),
            tenant_id: None,
            mode: CycleMode::Routine,
            dry_run: false,
            opportunity: Opportunity {
                id: format!("{}:timeouts", self.function),
                rank: 1,
                component: self.function.clone(),
                tenant_id: None,
                kind: OpportunityKind::Timeouts,
                evidence: vec![],
                expected_gain: 0.9,
                affected_requests: 100.0,
                impact_score: 90.0,
                priority: Priority::High,
                current: Some(before.clone()),
                top_errors: vec![],
                stack_traces: vec![],
                agents: vec![],
            },
            generated: Some(Generated {
                improvement_id: ImprovementId::new(&CycleId::parse(cycle).unwrap(), 1),
                proposal: Proposal {
                    change: Change::LambdaConfig {
                        function: self.function.clone(),
                        config: LambdaConfigChange {
                            memory_mb: Some(after.memory_mb),
                            timeout_seconds: Some(after.timeout_seconds),
                            ..Default::default()
                        },
                    },
                    rationale: "timeouts".into(),
                    expected_gain: 0.5,
                    claimed_risk: RiskLevel::Low,
                },
                provider: "test".into(),
                usage: LlmUsage::default(),
                repair_rounds: 0,
            }),
            validation: Some(Validation {
                code_base: None,
                risk: RiskLevel::Low,
                findings: vec![],
                approvals_required: 0,
                decision: ValidationDecision::AutoDeploy,
                before: Some(before),
                after: Some(after.clone()),
                held_for_review: false,
            }),
            approval: None,
            deploy: None,
            monitor: None,
        }
    }

    /// Runs the Map item's Task state `state` on its input `input` (the item, with what the
    /// states before added) as the state machine does: the payload built from `Parameters`,
    /// called again while its `Retry` names the error, then caught by its `Catch`.
    pub async fn task(&self, state: &str, input: &Value) -> TaskRun {
        let task = TaskState::of(state);
        let payload = task.payload(input);
        let mut retries: Vec<u64> = vec![0; task.retry.len()];
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.clock.tick();
            let error = match self.run(task.function, &payload).await {
                Ok(value) => {
                    return TaskRun {
                        attempts,
                        result: Ok(value),
                    };
                }
                Err(e) => e,
            };
            let retrier = task
                .retry
                .iter()
                .position(|(errors, _)| matches(errors, &error.0));
            if let Some(i) = retrier
                && retries[i] < task.retry[i].1
            {
                retries[i] += 1;
                continue;
            }
            let (result_path, next) = task
                .catch
                .iter()
                .find(|(errors, _, _)| matches(errors, &error.0))
                .map(|(_, path, next)| (path.clone(), next.clone()))
                .unwrap_or_else(|| ("$".into(), "(the execution fails)".into()));
            return TaskRun {
                attempts,
                result: Err(Caught {
                    error: error.0,
                    cause: error.1,
                    result_path,
                    next,
                }),
            };
        }
    }

    /// Runs the Task state `state` on `input` and the Task states after it (by `Next` on
    /// success, by the `Catch` on failure) until a state that is not a Task.
    pub async fn path(&self, state: &str, input: &Value) -> Path {
        let mut state = state.to_owned();
        let mut input = input.clone();
        let mut tasks = Vec::new();
        while item_state(&state)["Type"] == "Task" {
            let task = TaskState::of(&state);
            let run = self.task(&state, &input).await;
            let next = match &run.result {
                Ok(value) => {
                    let key = task.result_path.strip_prefix("$.").unwrap();
                    input[key] = value.clone();
                    task.next.clone()
                }
                Err(caught) => {
                    input = caught.next_input(&input);
                    caught.next.clone()
                }
            };
            tasks.push((state, run));
            state = next;
        }
        Path {
            reached: state,
            input,
            tasks,
        }
    }

    /// One call of a step function, its error as (errorType, message).
    async fn run(
        &self,
        function: StepFunction,
        payload: &Value,
    ) -> Result<Value, (String, String)> {
        let deps = StepDeps {
            telemetry: &self.telemetry,
            deployer: &self.deployer,
            code: &selfbuild_core::ports::NoCodeSource,
            checker: &selfbuild_core::ports::NoCodeChecker,
            llm: &self.llm,
            store: &self.store,
            notifier: &NoNotifier,
            registry: &self.store,
            peers: &selfbuild_core::ports::NoPeers,
            metrics: &NoMetrics,
            clock: &self.clock,
        };
        run_step(function, deps, &self.config, payload)
            .await
            .map_err(|e| (e.error_type().as_str().to_owned(), e.to_string()))
    }

    /// The function as it is: the alias's version and weights, that version's settings with
    /// the function's reservation, and the settings of `$LATEST`.
    pub async fn observed(&self) -> Observed {
        let alias = self
            .lambda
            .get_alias()
            .function_name(self.function.as_str())
            .name(LIVE_ALIAS)
            .send()
            .await
            .unwrap();
        let mut weights: Vec<(String, f64)> = alias
            .routing_config()
            .and_then(AliasRoutingConfiguration::additional_version_weights)
            .map(|w| w.iter().map(|(v, w)| (v.clone(), *w)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let version = alias.function_version().unwrap().to_owned();
        Observed {
            settings: self.settings_of(&version).await,
            latest: self.settings_of("$LATEST").await,
            version,
            weights,
            versions: self.versions().await,
        }
    }

    async fn settings_of(&self, version: &str) -> LambdaSettings {
        let config = self
            .lambda
            .get_function_configuration()
            .function_name(self.function.as_str())
            .qualifier(version)
            .send()
            .await
            .unwrap();
        let reserved = self
            .lambda
            .get_function_concurrency()
            .function_name(self.function.as_str())
            .send()
            .await
            .unwrap()
            .reserved_concurrent_executions()
            .map(|n| u32::try_from(n).unwrap());
        LambdaSettings {
            memory_mb: u32::try_from(config.memory_size().unwrap()).unwrap(),
            timeout_seconds: u32::try_from(config.timeout().unwrap()).unwrap(),
            reserved_concurrency: reserved,
            environment: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }

    /// Every version's name, `$LATEST` first.
    pub async fn versions(&self) -> Vec<String> {
        self.lambda
            .list_versions_by_function()
            .function_name(self.function.as_str())
            .send()
            .await
            .unwrap()
            .versions()
            .iter()
            .map(|v| v.version().unwrap().to_owned())
            .collect()
    }

    /// The function's state as the deployer reads it without faults.
    pub async fn state(&self) -> FunctionState {
        LambdaDeployer::new(&self.moto.sdk_config().await)
            .function_state(&self.function)
            .await
            .unwrap()
    }

    /// The improvement's audit actions, in order, read straight from moto.
    pub async fn audit(&self, cycle: &str) -> Vec<AuditEvent> {
        self.direct
            .cycle_events(&CycleId::parse(cycle).unwrap())
            .await
            .unwrap()
    }

    /// The improvement record's status, read straight from moto.
    pub async fn status(&self, improvement: &str) -> Option<String> {
        self.direct
            .get_improvement(&selfbuild_tests::improvement_id(improvement))
            .await
            .unwrap()
            .map(|r| r.status.as_str().to_owned())
    }
}

/// What a function looks like from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The version `live` points at.
    pub version: String,
    /// `live`'s additional versions and weights.
    pub weights: Vec<(String, f64)>,
    /// The settings of `version`, with the function's reservation.
    pub settings: LambdaSettings,
    /// `$LATEST`'s settings, with the function's reservation.
    pub latest: LambdaSettings,
    /// Every version, `$LATEST` first.
    pub versions: Vec<String>,
}

impl Observed {
    /// Exactly the stable state the world started in: version 1, no routing, its settings.
    pub fn is_stable(&self, stable: &LambdaSettings) -> bool {
        self.version == "1"
            && self.weights.is_empty()
            && &self.settings == stable
            && &self.latest == stable
    }
}

/// The actions of an audit trail.
pub fn actions(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}
