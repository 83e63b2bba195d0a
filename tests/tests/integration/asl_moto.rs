//! The real state machine definition on moto's Step Functions engine (a real ASL
//! interpreter), its Lambda tasks answered by our step functions through a router, over the
//! fleet model and a SQLite store.

use std::sync::Arc;
use std::time::Duration;

use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::approval::{ApprovalPorts, decide};
use selfbuild_core::config::HaltInFlight;
use selfbuild_core::error::StableError;
use selfbuild_core::ids::ImprovementId;
use selfbuild_core::ports::{ApprovalStore, Clock, HaltState, HaltSwitch};
use selfbuild_local::asl::{TaskCall, TaskHandler};
use selfbuild_local::cycle::{DEFINITION, LocalSteps, substitutions};
use selfbuild_local::demo::{demo_config, scenario_request};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::planner::{RecordedAnswer, RecordedLlm, RulePlanner};
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::events_dir;
use selfbuild_tests::lambda_router::{InvokeFn, LambdaRouter};
use selfbuild_tests::moto::MotoServer;
use serde_json::Value;
use time::OffsetDateTime;

/// Lambda ARNs as `DefinitionSubstitutions` would give them.
fn substituted_definition() -> String {
    substitutions("arn:aws:lambda:us-east-1:123456789012:function:")
        .into_iter()
        .fold(DEFINITION.to_owned(), |text, (key, arn)| {
            text.replace(&format!("${{{key}}}"), &arn)
        })
}

/// `start` plus real elapsed time × `scale`: moto's engine waits in real time, so the fleet's
/// telemetry must advance faster than that for a monitor look to see minutes of traffic.
struct ScaledClock {
    start: OffsetDateTime,
    started: std::time::Instant,
    scale: f64,
}

impl Clock for ScaledClock {
    fn now(&self) -> OffsetDateTime {
        let seconds = self.started.elapsed().as_secs_f64() * self.scale;
        self.start + time::Duration::seconds_f64(seconds)
    }
}

/// An injected failure: the first `times` calls of `function` fail with `error_type`.
struct Fault {
    function: &'static str,
    error_type: &'static str,
    times: usize,
}

/// An emergency stop set right before the first call of `function` with `action`.
struct HaltAt {
    function: &'static str,
    /// The payload's `action`; none for a function without actions (generate).
    action: Option<&'static str>,
    in_flight: HaltInFlight,
}

/// How an execution on moto ended.
struct Finished {
    status: String,
    output: Value,
    entered: Vec<String>,
    failures: Vec<String>,
}

/// Runs `scenario` as an execution of the real definition on moto's engine.
async fn run_on_moto(
    scenario_file: &str,
    approve: bool,
    fault: Option<Fault>,
    halt: Option<HaltAt>,
) -> Finished {
    let scenario = Scenario::load(events_dir().join("scenarios").join(scenario_file)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut config = demo_config().unwrap();
    // Real-time waits on moto: check every 10 s for 20 s; the fleet runs a minute per second.
    config.monitor_interval_seconds = 10;
    config.monitor_window_seconds = 20 * 60;
    if let Some(halt) = &halt {
        config.halt_in_flight = halt.in_flight;
    }
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock {
        start: scenario.now,
        started: std::time::Instant::now(),
        scale: 60.0,
    });
    let fleet = Fleet::new(&scenario, Arc::clone(&clock)).unwrap();
    let recorded: Vec<RecordedAnswer> = scenario
        .llm
        .as_ref()
        .map(|l| serde_json::from_value(l["recorded"].clone()).unwrap())
        .unwrap_or_default();
    let shared = Arc::new(store.clone());
    let checker = selfbuild_validate::PipelineChecker::new(
        selfbuild_local::demo::scenario_code_settings(&scenario).unwrap(),
    );
    let steps = Arc::new(LocalSteps {
        fleet,
        checker,
        llm: Box::new(RecordedLlm::new(recorded, RulePlanner)),
        store: shared.clone(),
        notifier: shared.clone(),
        registry: shared.clone(),
        peers: Arc::new(selfbuild_core::ports::NoPeers),
        metrics: Arc::new(selfbuild_core::emf::TracingSink {
            namespace: config.metrics_namespace.clone(),
        }),
        clock: Arc::clone(&clock),
        config: config.clone(),
    });
    let fault = Arc::new(std::sync::Mutex::new(fault));
    let halt = Arc::new(std::sync::Mutex::new(halt));
    let (halt_store, halt_clock) = (store.clone(), Arc::clone(&clock));
    let invoke: InvokeFn = Arc::new(move |name, payload| {
        let steps = Arc::clone(&steps);
        let fault = Arc::clone(&fault);
        let halt = Arc::clone(&halt);
        let (store, clock) = (halt_store.clone(), Arc::clone(&halt_clock));
        Box::pin(async move {
            let action = payload
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let due = {
                let mut halt = halt.lock().unwrap();
                halt.take_if(|h| h.function == name && h.action == action.as_deref())
                    .is_some()
            };
            if due {
                let state = HaltState {
                    reason: "incident 42".into(),
                    actor: "oncall".into(),
                    since: clock.now(),
                };
                store.set_halt(&state).await.unwrap();
            }
            {
                let mut fault = fault.lock().unwrap();
                if let Some(f) = fault.as_mut().filter(|f| f.function == name && f.times > 0) {
                    f.times -= 1;
                    return Err((f.error_type.to_owned(), "injected by the test".to_owned()));
                }
            }
            let call = TaskCall {
                resource: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
                wait_for_task_token: false,
                input: payload,
                state_name: String::new(),
                task_token: None,
                execution_name: String::new(),
                retry_count: 0,
            };
            steps.invoke(call).await.map_err(|e| (e.error, e.cause))
        })
    });
    let router = LambdaRouter::bind().await;
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", router.port.to_string())]);
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let serving = router.serve(upstream, invoke);
    moto.control(
        "/moto-api/config",
        r#"{"stepfunctions":{"execute_state_machine":true}}"#,
    );

    let sdk = moto.sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let arn = sfn
        .create_state_machine()
        .name("improvement-cycle")
        .role_arn("arn:aws:iam::123456789012:role/selfbuild-state-machine")
        .definition(substituted_definition())
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    let request = scenario_request(&scenario, &config);
    let execution = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .name(request.cycle_id.as_str())
        .input(serde_json::to_string(&request).unwrap())
        .send()
        .await
        .unwrap()
        .execution_arn;

    // An approver approves through SendTaskSuccess on moto.
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn.clone());
    let improvement = ImprovementId::new(&request.cycle_id, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let (status, output) = loop {
        if approve && matches!(store.get_pending(&improvement).await, Ok(Some(_))) {
            let ports = ApprovalPorts {
                store: &store,
                tokens: &orchestrator,
                audit: &store,
                improvements: &store,
                clock: clock.as_ref(),
                halt: &store,
            };
            decide(ports, &improvement, "approver@example.com", true, None)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", e.error_type()));
        }
        let described = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap();
        if described.status.as_str() != "RUNNING" {
            break (described.status.as_str().to_owned(), described.output);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the execution did not finish in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    serving.abort();
    let history = sfn
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let failures = history
        .events
        .iter()
        .filter_map(|e| {
            let task = e
                .task_failed_event_details
                .as_ref()
                .map(|d| (d.error.clone(), d.cause.clone()));
            let lambda = e
                .lambda_function_failed_event_details
                .as_ref()
                .map(|d| (d.error.clone(), d.cause.clone()));
            task.or(lambda)
                .map(|(error, cause)| format!("{error:?}: {cause:?}"))
        })
        .collect();
    let entered = history
        .events
        .iter()
        .filter_map(|e| {
            e.state_entered_event_details
                .as_ref()
                .map(|d| d.name.clone())
        })
        .collect();
    Finished {
        status,
        output: output
            .as_deref()
            .map(|o| serde_json::from_str(o).unwrap())
            .unwrap_or(Value::Null),
        entered,
        failures,
    }
}

fn outcome(finished: &Finished) -> &str {
    assert_eq!(
        finished.status, "SUCCEEDED",
        "task failures: {:#?}",
        finished.failures
    );
    finished.output["summary"]["improvements"][0]["outcome"]
        .as_str()
        .unwrap_or("none")
}

fn entered(finished: &Finished, states: &[&str]) {
    for state in states {
        assert!(
            finished.entered.iter().any(|s| s == state),
            "{state} not in {:?}",
            finished.entered
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_on_motos_engine() {
    let finished = run_on_moto("timeouts.json", false, None, None).await;
    assert_eq!(outcome(&finished), "promoted", "{:#}", finished.output);
    entered(
        &finished,
        &[
            "AnalyzeTelemetry",
            "ImproveOpportunities",
            "DeployCanary",
            "MonitorCanary",
            "IsWindowOver",
            "PromoteCanary",
            "WriteCycleSummary",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_but_degraded_canary_is_rolled_back_on_motos_engine() {
    let finished = run_on_moto("memory-cut-rolled-back.json", true, None, None).await;
    assert_eq!(outcome(&finished), "rolled_back", "{:#}", finished.output);
    assert_eq!(
        finished.output["summary"]["improvements"][0]["decision"],
        "needs_approval"
    );
    entered(
        &finished,
        &[
            "AwaitApproval",
            "IsApproved",
            "DeployCanary",
            "MonitorCanary",
            "RollbackChange",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_retried_then_succeeds_on_motos_engine() {
    let fault = Fault {
        function: "generate",
        error_type: "Retryable",
        times: 1,
    };
    let finished = run_on_moto("memory-cut-rolled-back.json", true, Some(fault), None).await;
    assert_eq!(outcome(&finished), "rolled_back");
    assert_eq!(finished.failures.len(), 1, "{:?}", finished.failures);
    assert!(finished.failures[0].contains("Retryable"));
    assert_eq!(
        finished
            .entered
            .iter()
            .filter(|s| *s == "GenerateChange")
            .count(),
        1,
        "a retry stays in the state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_failure_is_caught_to_its_named_path_on_motos_engine() {
    let fault = Fault {
        function: "deploy",
        error_type: "DeployRejected",
        times: 1,
    };
    let finished = run_on_moto("memory-cut-rolled-back.json", true, Some(fault), None).await;
    assert_eq!(outcome(&finished), "deploy_failed");
    entered(
        &finished,
        &[
            "DeployCanary",
            "UndoPartialDeploy",
            "DeployFailed",
            "WriteCycleSummary",
        ],
    );
    assert!(!finished.entered.iter().any(|s| s == "MonitorCanary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_refused_while_halted_ends_rolled_back_on_motos_engine() {
    let halt = HaltAt {
        function: "deploy",
        action: Some("promote"),
        in_flight: HaltInFlight::Rollback,
    };
    let finished = run_on_moto("timeouts.json", false, None, Some(halt)).await;
    assert_eq!(outcome(&finished), "rolled_back", "{:#}", finished.output);
    entered(
        &finished,
        &[
            "PromoteCanary",
            "IsPromoted",
            "RollbackChange",
            "RolledBack",
        ],
    );
    // The refusal sends the item back for one more look, which applies the halt.
    let after_promote = finished
        .entered
        .iter()
        .skip_while(|s| *s != "PromoteCanary")
        .collect::<Vec<_>>();
    assert_eq!(
        after_promote[..5],
        [
            "PromoteCanary",
            "IsPromoted",
            "MonitorCanary",
            "IsDegraded",
            "RollbackChange"
        ],
        "{:?}",
        finished.entered
    );
    assert!(!finished.entered.iter().any(|s| s == "Promoted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_frozen_by_the_halt_ends_frozen_on_motos_engine() {
    let halt = HaltAt {
        function: "monitor",
        action: Some("monitor"),
        in_flight: HaltInFlight::Freeze,
    };
    let finished = run_on_moto("timeouts.json", false, None, Some(halt)).await;
    assert_eq!(outcome(&finished), "frozen", "{:#}", finished.output);
    entered(&finished, &["MonitorCanary", "IsDegraded", "CanaryFrozen"]);
    assert!(!finished.entered.iter().any(|s| s == "PromoteCanary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_items_generate_is_caught_to_item_halted_on_motos_engine() {
    let halt = HaltAt {
        function: "generate",
        action: None,
        in_flight: HaltInFlight::Rollback,
    };
    let finished = run_on_moto("timeouts.json", false, None, Some(halt)).await;
    assert_eq!(outcome(&finished), "halted", "{:#}", finished.output);
    entered(
        &finished,
        &["GenerateChange", "ItemHalted", "WriteCycleSummary"],
    );
    assert!(!finished.entered.iter().any(|s| s == "DeployCanary"));
    assert!(
        finished.failures.iter().any(|f| f.contains("Halted")),
        "{:?}",
        finished.failures
    );
}
