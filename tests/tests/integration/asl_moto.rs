//! The real state machine definition on moto's Step Functions engine (a real ASL
//! interpreter), its Lambda tasks answered by our step functions through a router, over the
//! fleet model and a SQLite store.

use std::sync::Arc;
use std::time::Duration;

use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::approval::{ApprovalPorts, ApprovalStore, decide};
use selfbuild_core::clock::Clock;
use selfbuild_core::error::StableError;
use selfbuild_local::asl::{TaskCall, TaskHandler};
use selfbuild_local::cycle::{DEFINITION, LocalSteps, ScaledClock};
use selfbuild_local::demo::{demo_config, scenario_request};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_local::planner::{RecordedAnswer, RecordedLlm, RulePlanner};
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::events::events_dir;
use selfbuild_tests::lambda_router::{InvokeFn, LambdaRouter};
use selfbuild_tests::moto::MotoServer;
use serde_json::Value;

/// Lambda ARNs as `DefinitionSubstitutions` would give them.
fn substituted_definition() -> String {
    let mut text = DEFINITION.to_owned();
    for name in [
        "analyze", "generate", "validate", "deploy", "monitor", "rollback",
    ] {
        let key = format!(
            "${{{}{}FunctionArn}}",
            name[..1].to_ascii_uppercase(),
            &name[1..]
        );
        text = text.replace(
            &key,
            &format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_canary_is_rolled_back_on_motos_step_functions_engine() {
    // GIVEN the memory-cut scenario: an approved change that makes the canary worse
    let scenario =
        Scenario::load(events_dir().join("scenarios/memory-cut-rolled-back.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut config = demo_config().unwrap();
    // Real-time waits on moto: check every 10 s, a minute of fleet time per second.
    config.monitor_interval_seconds = 10;
    config.monitor_window_seconds = 600;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(scenario.now, 60.0));
    let fleet = Fleet::new(&scenario, Arc::clone(&clock)).unwrap();
    let recorded: Vec<RecordedAnswer> =
        serde_json::from_value(scenario.llm.as_ref().unwrap()["recorded"].clone()).unwrap();
    let shared = Arc::new(store.clone());
    let steps = Arc::new(LocalSteps {
        fleet,
        llm: Box::new(RecordedLlm::new(recorded, RulePlanner)),
        halt: shared.clone(),
        approvals: shared.clone(),
        audit: shared.clone(),
        notifier: shared.clone(),
        clock: Arc::clone(&clock),
        config: config.clone(),
    });
    let invoke: InvokeFn = Arc::new(move |name, payload| {
        let steps = Arc::clone(&steps);
        Box::pin(async move {
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

    // WHEN an approver approves through SendTaskSuccess on moto
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn.clone());
    let improvement = format!("{}-1", request.cycle_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Ok(Some(_)) = store.get_pending(&improvement).await {
            let ports = ApprovalPorts {
                store: &store,
                tokens: &orchestrator,
                audit: &store,
                clock: clock.as_ref(),
            };
            decide(ports, &improvement, "finops@example.com", true, None)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", e.error_type()));
        }
        let described = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap();
        let status = described.status.as_str().to_owned();
        if status != "RUNNING" {
            break (status, described.output, described.error, described.cause);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the execution did not finish in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    serving.abort();

    // THEN the execution succeeded on moto's engine and the canary was rolled back
    let history = sfn
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    let failures: Vec<String> = history
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
                .map(|(error, cause)| format!("{:?} {error:?}: {cause:?}", e.r#type))
        })
        .collect();
    assert_eq!(
        status.0, "SUCCEEDED",
        "error {:?}: {:?}; task failures: {failures:#?}",
        status.2, status.3
    );
    let output: Value = serde_json::from_str(status.1.as_deref().unwrap()).unwrap();
    let first = &output["summary"]["improvements"][0];
    assert_eq!(first["outcome"], "rolled_back", "{output:#}");
    assert_eq!(first["decision"], "needs_approval");
    let entered: Vec<String> = history
        .events
        .iter()
        .filter_map(|e| {
            e.state_entered_event_details
                .as_ref()
                .map(|d| d.name.clone())
        })
        .collect();
    for state in [
        "AnalyzeTelemetry",
        "AwaitApproval",
        "DeployCanary",
        "MonitorCanary",
        "RollbackChange",
        "WriteCycleSummary",
    ] {
        assert!(
            entered.iter().any(|s| s == state),
            "{state} not in {entered:?}"
        );
    }
}
