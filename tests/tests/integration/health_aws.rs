//! The self health pass's AWS adapters on moto: Step Functions executions listed and
//! stopped (moto runs the ASL), redrive against a recorded answer (moto 5.2.6 has no
//! `RedriveExecution`), the SQS dead-letter queue's depth and re-send (the Lambda `Invoke` of
//! intake against a recorded 202: moto would need Docker to run a function), the own
//! functions' `Errors` and `Throttles` from `PutMetricData` data, and the functions
//! selfbuild changed: a deleted one not found, one whose errors rose after the change rolled
//! back (alias on moto's control plane, record and audit in the store).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use selfbuild_aws::LambdaDeployer;
use selfbuild_aws::dlq::SqsDeadLetters;
use selfbuild_aws::health::{
    AgentSources, ComponentSources, HealthSources, NO_ROLLBACK_HERE, observe, pass,
};
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_aws::telemetry::{CloudWatchTelemetry, TelemetrySettings};
use selfbuild_core::Config;
use selfbuild_core::audit::AuditAction;
use selfbuild_core::canary::{RollBackHere, RollbackPorts};
use selfbuild_core::change::{DeploySpec, LambdaSettings};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::CycleRequest;
use selfbuild_core::emf::TracingSink;
use selfbuild_core::error::OrchestratorError;
use selfbuild_core::health::dlq::RESENT_MARKER;
use selfbuild_core::health::pass::{Observed, PassPorts, run_pass};
use selfbuild_core::health::{
    CheckName, CheckStatus, ExecutionFact, ExecutionStatus, HealAction, Thresholds,
};
use selfbuild_core::ids::{ComponentId, CycleId};
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::peers::Dependents;
use selfbuild_core::ports::{
    AuditLog, DeadLetters, Deployer, ExecutionMonitor, ImprovementStore, NoPeers, Registry,
};
use selfbuild_core::records::{AgentRecord, ImprovementRecord, ImprovementStatus};
use selfbuild_core::transition::Recorder;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::cloudwatch_fixture::{put_metric, recent_window};
use selfbuild_tests::lambda_fixture::MotoFunction;
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::recorded::RecordedServer;
use serde_json::{Value, json};
use time::OffsetDateTime;

fn recording(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/aws/tests/recorded")
        .join(name)
}

fn limits() -> Thresholds {
    Thresholds::from_config(&Config::from_lookup(|_| None).unwrap())
}

fn sink() -> TracingSink {
    TracingSink {
        namespace: "Selfbuild".into(),
    }
}

/// Lists and stops on moto, redrives through the recorded answer.
struct MotoWithRecordedRedrive {
    moto: StepFunctionsOrchestrator,
    recorded: StepFunctionsOrchestrator,
}

#[async_trait]
impl ExecutionMonitor for MotoWithRecordedRedrive {
    async fn executions(
        &self,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ExecutionFact>, OrchestratorError> {
        self.moto.executions(since, limit).await
    }
    async fn redrive(&self, execution_ref: &str) -> Result<(), OrchestratorError> {
        self.recorded.redrive(execution_ref).await
    }
    async fn stop(&self, execution_ref: &str, cause: &str) -> Result<(), OrchestratorError> {
        self.moto.stop(execution_ref, cause).await
    }
}

async fn state_machine(sfn: &aws_sdk_sfn::Client, name: &str, definition: &str) -> String {
    sfn.create_state_machine()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/selfbuild-state-machine")
        .definition(definition)
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

async fn start(sfn: &aws_sdk_sfn::Client, machine: &str, cycle: &str) -> String {
    let mut request: CycleRequest =
        serde_json::from_str(include_str!("../../../events/steps/analyze.json")).unwrap();
    request.cycle_id = CycleId::parse(cycle).unwrap();
    sfn.start_execution()
        .state_machine_arn(machine)
        .name(cycle)
        .input(serde_json::to_string(&request).unwrap())
        .send()
        .await
        .unwrap()
        .execution_arn
}

/// Waits (at most 60 s) for moto's engine to end the execution; its stop date.
async fn ended(sfn: &aws_sdk_sfn::Client, execution: &str) -> OffsetDateTime {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        if let Some(stopped) = out.stop_date() {
            return OffsetDateTime::from_unix_timestamp_nanos(stopped.as_nanos()).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "moto did not end {execution}: {:?}",
            out.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_pass_on_moto_sees_a_failed_execution_and_redrives_it() {
    let moto = MotoServer::start();
    moto.control(
        "/moto-api/config",
        r#"{"stepfunctions":{"execute_state_machine":true}}"#,
    );
    let sdk = moto.sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = state_machine(
        &sfn,
        "improvement-cycle",
        r#"{"StartAt":"AnalyzeTelemetry","States":{"AnalyzeTelemetry":{"Type":"Fail","Error":"Retryable","Cause":"telemetry unavailable"}}}"#,
    )
    .await;
    let failed = start(&sfn, &machine, "acme-orders-api-20261205T115500Z-0000aaaa").await;
    let stopped = ended(&sfn, &failed).await;
    let monitor = StepFunctionsOrchestrator::new(&sdk, machine.clone());

    // Listed with its component from the input, and only when it ended at or after `since`.
    let facts = monitor
        .executions(stopped - Duration::from_secs(1), 100)
        .await
        .unwrap();
    assert_eq!(facts.len(), 1, "{facts:#?}");
    assert_eq!(facts[0].execution_ref, failed);
    assert_eq!(
        facts[0].cycle_id,
        "acme-orders-api-20261205T115500Z-0000aaaa"
    );
    assert_eq!(facts[0].component, "orders-api");
    assert_eq!(facts[0].status, ExecutionStatus::Failed);
    assert_eq!(facts[0].stopped_at, Some(stopped));
    let later = monitor
        .executions(stopped + Duration::from_secs(1), 100)
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:#?}");
    assert!(monitor.executions(stopped, 0).await.unwrap().is_empty());

    // One pass: the failure is redriven (recorded answer), audited and counted.
    let recorded = RecordedServer::start(&recording("sfn-redrive-execution.json")).await;
    let recorded_sdk = sdk.to_builder().endpoint_url(&recorded.url).build();
    let executions = MotoWithRecordedRedrive {
        moto: monitor.clone(),
        recorded: StepFunctionsOrchestrator::new(&recorded_sdk, machine.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let metrics = sink();
    let ports = PassPorts {
        executions: &executions,
        orchestrator: &monitor,
        cycles: &store,
        health: &store,
        usage: &store,
        notifier: &store,
        metrics: &metrics,
        rollback: &NO_ROLLBACK_HERE,
        dead_letters: None,
    };
    let now = stopped + Duration::from_secs(30);
    let report = run_pass(&ports, now, &limits(), Observed::default()).await;
    assert!(!report.healthy);
    let executions_check = report
        .checks
        .iter()
        .find(|c| c.name == CheckName::Executions)
        .unwrap();
    assert_eq!(executions_check.status, CheckStatus::Degraded);
    assert_eq!(report.outcomes.len(), 1, "{report:#?}");
    let outcome = &report.outcomes[0];
    assert!(
        matches!(&outcome.heal, HealAction::Redrive { execution_ref, component, .. }
            if execution_ref == &failed && component == "orders-api"),
        "{outcome:?}"
    );
    assert!(outcome.succeeded, "{outcome:?}");
    let requests = recorded.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0]
            .head
            .to_ascii_lowercase()
            .contains("x-amz-target: awsstepfunctions.redriveexecution"),
        "{}",
        requests[0].head
    );
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["executionArn"], failed.as_str());
}

#[tokio::test]
async fn a_running_execution_is_stopped_on_moto_with_the_cause() {
    // moto's default mode: an execution runs until stopped (its engine may race a stop).
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config_in("eu-north-1").await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = state_machine(
        &sfn,
        "waiting-cycle",
        r#"{"StartAt":"WaitForApproval","States":{"WaitForApproval":{"Type":"Wait","Seconds":3600,"End":true}}}"#,
    )
    .await;
    let running = start(&sfn, &machine, "fleet-20261205T115500Z-0000bbbb").await;
    let monitor = StepFunctionsOrchestrator::new(&sdk, machine);
    let facts = monitor
        .executions(OffsetDateTime::UNIX_EPOCH, 100)
        .await
        .unwrap();
    assert_eq!(facts.len(), 1, "{facts:#?}");
    assert_eq!(facts[0].status, ExecutionStatus::Running);

    monitor.stop(&running, "running too long").await.unwrap();
    let out = sfn
        .describe_execution()
        .execution_arn(&running)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), &aws_sdk_sfn::types::ExecutionStatus::Aborted);
    let missing = running.replace("0000bbbb", "0000cccc");
    assert!(monitor.stop(&missing, "x").await.is_err());
}

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn dead_letters_on_moto_are_counted_and_each_resent_once() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = queue(&sqs, "intake-dlq-resend").await;
    let poll = include_str!("../../../events/scheduled-poll.json");
    let daily: Value =
        serde_json::from_str(include_str!("../../../events/scheduled-24h.json")).unwrap();
    let mut resent_before: Value = serde_json::from_str(poll).unwrap();
    resent_before[RESENT_MARKER] = json!("an-earlier-message");
    send(&sqs, &url, poll).await;
    send(
        &sqs,
        &url,
        &json!({"version": "1.0", "requestContext": {"condition": "RetriesExhausted"}, "requestPayload": daily, "responsePayload": {"errorType": "Retryable"}}).to_string(),
    )
    .await;
    send(
        &sqs,
        &url,
        &json!({"requestContext": {}, "requestPayload": resent_before}).to_string(),
    )
    .await;
    send(&sqs, &url, "not an event").await;

    let recorded = RecordedServer::start(&recording("lambda-invoke-event-accepted.json")).await;
    let lambda_sdk = sdk.to_builder().endpoint_url(&recorded.url).build();
    let dlq = SqsDeadLetters::from_clients(
        sqs.clone(),
        aws_sdk_lambda::Client::new(&lambda_sdk),
        url.clone(),
        Some("selfbuild-alarm-intake".into()),
    );
    assert_eq!(dlq.depth().await.unwrap(), 4);

    let round = dlq.resend(100).await.unwrap();
    assert_eq!(
        (
            round.resent,
            round.already_resent,
            round.unreadable,
            round.failed,
            round.not_deleted
        ),
        (2, 1, 1, 0, 0),
        "{round:?}"
    );
    assert!(!round.all_done());
    let requests = recorded.requests();
    assert_eq!(requests.len(), 2);
    let mut kinds = Vec::new();
    for r in &requests {
        assert_eq!(
            r.path,
            "/2015-03-31/functions/selfbuild-alarm-intake/invocations"
        );
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("x-amz-invocation-type: event"),
            "{}",
            r.head
        );
        let event: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(event[RESENT_MARKER].is_string(), "{event}");
        kinds.push(
            event["detail"]["action"]
                .as_str()
                .unwrap_or("none")
                .to_owned(),
        );
    }
    kinds.sort();
    let mut expected: Vec<String> = [&serde_json::from_str::<Value>(poll).unwrap(), &daily]
        .iter()
        .map(|e| e["detail"]["action"].as_str().unwrap_or("none").to_owned())
        .collect();
    expected.sort();
    assert_eq!(kinds, expected);

    // The two re-sent were deleted; the two left wait (hidden for now) for an operator.
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        attributes.attributes().unwrap()[&name].parse().unwrap()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        2
    );
}

#[tokio::test]
async fn a_pass_resends_the_dead_letters_it_finds() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = queue(&sqs, "intake-dlq-pass").await;
    send(
        &sqs,
        &url,
        include_str!("../../../events/scheduled-poll.json"),
    )
    .await;
    let recorded = RecordedServer::start(&recording("lambda-invoke-event-accepted.json")).await;
    let lambda_sdk = sdk.to_builder().endpoint_url(&recorded.url).build();
    let dlq = SqsDeadLetters::from_clients(
        sqs.clone(),
        aws_sdk_lambda::Client::new(&lambda_sdk),
        url,
        Some("selfbuild-alarm-intake".into()),
    );
    // No executions on this state machine: the pass looks at the DLQ only.
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = state_machine(
        &sfn,
        "dlq-pass-cycle",
        r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#,
    )
    .await;
    let monitor = StepFunctionsOrchestrator::new(&sdk, machine);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let metrics = sink();
    let telemetry = CloudWatchTelemetry::new(
        &sdk,
        TelemetrySettings {
            percentiles: false,
            ..TelemetrySettings::default()
        },
    );
    let ports = PassPorts {
        executions: &monitor,
        orchestrator: &monitor,
        cycles: &store,
        health: &store,
        usage: &store,
        notifier: &store,
        metrics: &metrics,
        rollback: &NO_ROLLBACK_HERE,
        dead_letters: Some(&dlq),
    };
    let sources = HealthSources {
        telemetry: &telemetry,
        own_functions: &[],
        dead_letters: Some(&dlq),
        components: None,
        agents: None,
    };
    let now = time::macros::datetime!(2026-12-05 12:00 UTC);
    let report = pass(&ports, &sources, now, &limits()).await;
    let dlq_check = report
        .checks
        .iter()
        .find(|c| c.name == CheckName::Dlq)
        .unwrap();
    assert_eq!(dlq_check.status, CheckStatus::Degraded, "{report:#?}");
    assert_eq!(report.outcomes.len(), 1, "{report:#?}");
    assert_eq!(
        report.outcomes[0].heal,
        HealAction::ResendDlq { messages: 1 }
    );
    assert!(report.outcomes[0].succeeded, "{:?}", report.outcomes[0]);
    assert_eq!(recorded.requests().len(), 1);
    assert_eq!(dlq.depth().await.unwrap(), 0);
    // The functions check is not observed without SELF_FUNCTION_NAMES.
    let functions = report
        .checks
        .iter()
        .find(|c| c.name == CheckName::Functions)
        .unwrap();
    assert_eq!(functions.status, CheckStatus::Skipped);
}

#[tokio::test]
async fn own_functions_errors_and_throttles_come_from_get_metric_data() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config_in("eu-west-3").await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let window = recent_window();
    let at = |minutes: i64| window.start + time::Duration::minutes(minutes);
    let analyze = ComponentId::parse("selfbuild-analyze").unwrap();
    let deploy = ComponentId::parse("selfbuild-deploy").unwrap();
    for (function, metric, minute, value) in [
        ("selfbuild-analyze", "Errors", 1, 2.0),
        ("selfbuild-analyze", "Errors", 2, 1.0),
        ("selfbuild-analyze", "Invocations", 2, 40.0),
        ("selfbuild-deploy", "Throttles", 3, 1.0),
        ("someone-elses", "Errors", 1, 50.0),
    ] {
        put_metric(
            &cloudwatch,
            "AWS/Lambda",
            metric,
            &[("FunctionName", function)],
            at(minute),
            value,
        )
        .await;
    }
    let telemetry = CloudWatchTelemetry::new(
        &sdk,
        TelemetrySettings {
            percentiles: false,
            ..TelemetrySettings::default()
        },
    );
    let sources = HealthSources {
        telemetry: &telemetry,
        own_functions: &[analyze, deploy],
        dead_letters: None,
        components: None,
        agents: None,
    };
    let observed = observe(&sources, &window, &limits()).await;
    let functions = observed.functions.expect("observed");
    assert_eq!(functions.len(), 2);
    assert_eq!(functions[0].function, "selfbuild-analyze");
    assert_eq!((functions[0].errors, functions[0].throttles), (3.0, 0.0));
    assert_eq!(functions[1].function, "selfbuild-deploy");
    assert_eq!((functions[1].errors, functions[1].throttles), (0.0, 1.0));
    assert_eq!(observed.dlq_depth, None);

    // Outside the window: nothing.
    let before = selfbuild_core::cycle::TimeWindow {
        start: window.start - time::Duration::hours(2),
        end: window.start - time::Duration::hours(1),
    };
    let quiet = observe(&sources, &before, &limits())
        .await
        .functions
        .unwrap();
    assert!(
        quiet.iter().all(|f| f.errors == 0.0 && f.throttles == 0.0),
        "{quiet:?}"
    );
}

/// An alarm source that cannot be read: the poll itself fails.
struct AlarmsDown;

#[async_trait]
impl selfbuild_core::ports::AlarmSource for AlarmsDown {
    async fn alarms_in_alarm(
        &self,
    ) -> Result<Vec<selfbuild_core::alarm::AlarmSignal>, selfbuild_core::error::TelemetryError>
    {
        Err(selfbuild_core::error::TelemetryError::Unavailable(
            "DescribeAlarms: down".into(),
        ))
    }
}

fn event(name: &str) -> selfbuild_core::event::EventJson {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_poll_tick_runs_a_pass_with_self_building_off_and_when_the_poll_fails() {
    use selfbuild_aws::cloudwatch::CloudWatchAlarms;
    use selfbuild_aws::dynamo::DynamoStore;
    use selfbuild_aws::eventbridge::EventBridgeNotifier;
    use selfbuild_aws::health::{PollHealth, handle_then_pass};
    use selfbuild_core::clock::FixedClock;
    use selfbuild_core::idsource::OsRandom;
    use selfbuild_core::intake::{Decision, IntakeDeps, IntakeResponse};
    use selfbuild_core::ports::HealthStore;

    let moto = MotoServer::shared();
    // A region of its own: no alarms in ALARM there.
    let sdk = moto.sdk_config_in("ap-south-2").await;
    let store = DynamoStore::new(&sdk, "poll-health");
    store.create_table().await.unwrap();
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = state_machine(
        &sfn,
        "poll-health-cycle",
        r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#,
    )
    .await;
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, machine);
    let notifier = EventBridgeNotifier::new(&sdk, "default");
    let telemetry = CloudWatchTelemetry::new(&sdk, TelemetrySettings::default());
    let metrics = sink();
    let config =
        Config::from_lookup(|k| (k == "ENABLE_SELF_BUILDING").then(|| "false".into())).unwrap();
    let health = PollHealth {
        ports: PassPorts {
            executions: &orchestrator,
            orchestrator: &orchestrator,
            cycles: &store,
            health: &store,
            usage: &store,
            notifier: &notifier,
            metrics: &metrics,
            rollback: &NO_ROLLBACK_HERE,
            dead_letters: None,
        },
        sources: HealthSources {
            telemetry: &telemetry,
            own_functions: &[],
            dead_letters: None,
            components: None,
            agents: None,
        },
        limits: limits(),
    };
    let alarms = CloudWatchAlarms::new(&sdk);
    let first = FixedClock(time::macros::datetime!(2026-12-05 12:00 UTC));
    let deps = |clock: &'static FixedClock| IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock,
        ids: &OsRandom,
        metrics: &metrics,
    };
    let first: &'static FixedClock = Box::leak(Box::new(first));

    // The daily tick: acknowledged (self-building off), no pass.
    let answer = handle_then_pass(
        deps(first),
        &store,
        &alarms,
        &config,
        event("scheduled-24h.json"),
        &health,
    )
    .await
    .unwrap();
    assert!(matches!(answer, IntakeResponse::One(ref o) if o.decision == Decision::Disabled));
    assert!(store.last_health_report().await.unwrap().is_none());

    // A poll tick: intake starts nothing, the pass runs and is stored.
    let answer = handle_then_pass(
        deps(first),
        &store,
        &alarms,
        &config,
        event("scheduled-poll.json"),
        &health,
    )
    .await
    .unwrap();
    assert!(matches!(answer, IntakeResponse::Many(ref v) if v.is_empty()));
    let report = store
        .last_health_report()
        .await
        .unwrap()
        .expect("a pass ran");
    assert_eq!(report.at, first.0);
    assert!(report.healthy, "{report:#?}");

    // A poll that fails: intake's error stands, and the pass still runs.
    let later: &'static FixedClock =
        Box::leak(Box::new(FixedClock(first.0 + time::Duration::minutes(5))));
    let failed = handle_then_pass(
        deps(later),
        &store,
        &AlarmsDown,
        &config,
        event("scheduled-poll.json"),
        &health,
    )
    .await;
    assert!(failed.is_err(), "{failed:?}");
    let report = store
        .last_health_report()
        .await
        .unwrap()
        .expect("a pass ran");
    assert_eq!(report.at, later.0);
}

/// The rollback step's item, made the improvement of `function` with `deployment` (none:
/// a record whose deployment is not read).
fn changed(
    function: &ComponentId,
    deployment: Option<selfbuild_core::deployment::CanaryDeployment>,
    cycle: &str,
) -> ImprovementItem {
    let event: Value =
        serde_json::from_str(include_str!("../../../events/steps/rollback.json")).unwrap();
    let mut item: ImprovementItem = serde_json::from_value(event["item"].clone()).unwrap();
    item.cycle_id = CycleId::parse(cycle).unwrap();
    item.opportunity.component = function.clone();
    if let Some(deploy) = item.deploy.as_mut() {
        deploy.deployment = deployment;
    }
    item
}

#[tokio::test]
async fn a_function_whose_errors_rose_after_selfbuilds_change_is_rolled_back_on_moto() {
    let moto = MotoServer::shared();
    // Metrics in a region of their own: other tests discover functions by their metrics.
    let metrics_sdk = moto.sdk_config_in("sa-east-1").await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&metrics_sdk);
    let settings = LambdaSettings {
        memory_mb: 128,
        timeout_seconds: 3,
        reserved_concurrency: None,
        environment: Default::default(),
    };
    let orders = MotoFunction::new("health-orders", &settings).await;
    let gone = MotoFunction::new("health-gone", &settings).await;

    // The change: promoted 20 minutes before the pass (minutes are whole for the metrics).
    let deployed = recent_window().start - time::Duration::minutes(10);
    let now = deployed + time::Duration::minutes(20);
    let deployer = LambdaDeployer::from_client(orders.lambda.clone())
        .with_clock(Arc::new(FixedClock(deployed)));
    let item = changed(
        &orders.function,
        None,
        "acme-health-orders-20261205T100000Z-aa11bb22",
    );
    let id =
        ImprovementRecord::of_item(&item, ImprovementStatus::Promoted, deployed).improvement_id;
    let next = LambdaSettings {
        memory_mb: 512,
        ..settings.clone()
    };
    let d = deployer
        .deploy_canary(&id, &orders.function, &DeploySpec::Config(next), 0.1)
        .await
        .unwrap();
    deployer.promote(&d).await.unwrap();
    assert_eq!(orders.routing().await, (d.canary_version.clone(), vec![]));

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let item = changed(
        &orders.function,
        Some(d),
        "acme-health-orders-20261205T100000Z-aa11bb22",
    );
    store
        .put_improvement(&ImprovementRecord::of_item(
            &item,
            ImprovementStatus::Promoted,
            deployed,
        ))
        .await
        .unwrap();
    let gone_item = changed(
        &gone.function,
        None,
        "acme-health-gone-20261205T100000Z-cc33dd44",
    );
    store
        .put_improvement(&ImprovementRecord::of_item(
            &gone_item,
            ImprovementStatus::Deployed,
            deployed,
        ))
        .await
        .unwrap();
    gone.lambda
        .delete_function()
        .function_name(gone.function.as_str())
        .send()
        .await
        .unwrap();

    // Fine for ten minutes before the change; from two minutes after it, 30 % errors.
    for minute in -10..20_i64 {
        let at = deployed + time::Duration::minutes(minute);
        let errors = if minute >= 2 { 30.0 } else { 0.0 };
        for (metric, value) in [("Invocations", 100.0), ("Errors", errors)] {
            put_metric(
                &cloudwatch,
                "AWS/Lambda",
                metric,
                &[("FunctionName", "health-orders")],
                at,
                value,
            )
            .await;
        }
    }

    let sdk = moto.sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = state_machine(
        &sfn,
        "components-pass-cycle",
        r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#,
    )
    .await;
    let monitor = StepFunctionsOrchestrator::new(&sdk, machine);
    let metrics = sink();
    let telemetry = CloudWatchTelemetry::new(
        &metrics_sdk,
        TelemetrySettings {
            percentiles: false,
            ..TelemetrySettings::default()
        },
    );
    // The rollback heal carried out in process (the rollback function's way), on moto.
    let clock = FixedClock(now);
    let here = RollBackHere(RollbackPorts {
        deployer: &deployer,
        recorder: Recorder {
            audit: &store,
            improvements: &store,
            notifier: &store,
            clock: &clock,
        },
        metrics: &metrics,
        dependents: Dependents {
            registry: &store,
            peers: &NoPeers,
        },
    });
    let ports = PassPorts {
        executions: &monitor,
        orchestrator: &monitor,
        cycles: &store,
        health: &store,
        usage: &store,
        notifier: &store,
        metrics: &metrics,
        rollback: &here,
        dead_letters: None,
    };
    let sources = HealthSources {
        telemetry: &telemetry,
        own_functions: &[],
        dead_letters: None,
        components: Some(ComponentSources {
            improvements: &store,
            lambda: &orders.lambda,
        }),
        agents: None,
    };
    let report = pass(&ports, &sources, now, &limits()).await;

    let components = report
        .checks
        .iter()
        .find(|c| c.name == CheckName::Components)
        .unwrap();
    assert_eq!(components.status, CheckStatus::Degraded, "{report:#?}");
    assert!(
        components.detail.contains("health-gone: not found"),
        "{components:?}"
    );
    let rollback = HealAction::RollBack {
        component: "health-orders".into(),
        improvement_id: id.to_string(),
    };
    let outcome = report
        .outcomes
        .iter()
        .find(|o| o.heal == rollback)
        .unwrap_or_else(|| panic!("no rollback heal: {report:#?}"));
    assert!(outcome.succeeded, "{outcome:?}");
    // The alias is back on the stable version, the record rolled back, the rollback audited.
    assert_eq!(orders.routing().await, ("1".to_owned(), vec![]));
    let record = store.get_improvement(&id).await.unwrap().unwrap();
    assert_eq!(record.status, ImprovementStatus::RolledBack);
    let events = store.cycle_events(&item.cycle_id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == AuditAction::RolledBack && e.improvement_id.as_ref() == Some(&id)),
        "{events:#?}"
    );
}

#[tokio::test]
async fn registered_agents_with_an_mcp_url_are_pinged_and_one_that_does_not_answer_is_missing() {
    // GIVEN two agents, one with an MCP URL, and no client that reaches it (NoPeers)
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config_in("eu-west-3").await;
    let telemetry = CloudWatchTelemetry::new(&sdk, TelemetrySettings::default());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let sources = |store| HealthSources {
        telemetry: &telemetry,
        own_functions: &[],
        dead_letters: None,
        components: None,
        agents: Some(AgentSources {
            registry: store,
            peers: &NoPeers,
        }),
    };
    // WITHOUT agents: not observed
    let window = recent_window();
    assert_eq!(
        observe(&sources(&store), &window, &limits())
            .await
            .components,
        None
    );
    for (name, mcp_url) in [("scout", None), ("ledger", Some("http://127.0.0.1:9/mcp"))] {
        let agent: AgentRecord = serde_json::from_value(json!({
            "name": name, "url": "https://agents.example", "capabilities": ["x"],
            "tenant_id": "acme", "mcp_url": mcp_url,
            "registered_by": "k", "registered_at": "2026-12-01T00:00:00Z"
        }))
        .unwrap();
        store.register_agent(&agent).await.unwrap();
    }

    // WHEN the pass observes
    let observed = observe(&sources(&store), &window, &limits()).await;

    // THEN only the agent with an MCP URL was pinged, and it did not answer
    let components = observed.components.expect("agents observed");
    assert_eq!(components.len(), 1, "{components:?}");
    assert_eq!(components[0].component, "agent:acme/ledger");
    assert!(!components[0].exists);
}

#[tokio::test]
async fn the_rollback_heal_is_handed_to_the_rollback_function_and_judged_at_the_next_pass() {
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use selfbuild_aws::rollback_heal::InvokeRollbackFunction;
    use selfbuild_core::health::{ComponentFact, SelfChange};
    use selfbuild_core::ports::HealthStore;
    use selfbuild_core::steps::RollbackRequest;
    use selfbuild_local::orchestrator::RecordingOrchestrator;

    // GIVEN Lambda accepting asynchronous invocations (a recorded 202: moto would need Docker
    // to run a function), and a component whose errors began right after selfbuild's change
    let recorded = RecordedServer::start(&recording("lambda-invoke-event-accepted.json")).await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&recorded.url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let heal = InvokeRollbackFunction::new(aws_sdk_lambda::Client::new(&sdk), "selfbuild-rollback");
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let now = time::macros::datetime!(2026-12-05 12:00 UTC);
    let orchestrator = RecordingOrchestrator::new(store.clone(), FixedClock(now));
    let metrics = sink();
    let ports = PassPorts {
        executions: &orchestrator,
        orchestrator: &orchestrator,
        cycles: &store,
        health: &store,
        usage: &store,
        notifier: &store,
        metrics: &metrics,
        rollback: &heal,
        dead_letters: None,
    };
    let id = "acme-orders-api-20261205T113000Z-cab242e8-1";
    let deployed = now - time::Duration::minutes(20);
    let failing = || Observed {
        components: Some(vec![ComponentFact {
            component: "orders-api".into(),
            exists: true,
            error_rate: Some(0.3),
            errors_began_at: Some(deployed + time::Duration::minutes(2)),
            last_change: Some(SelfChange {
                improvement_id: id.into(),
                deployed_at: deployed,
            }),
        }]),
        ..Observed::default()
    };

    // WHEN a pass runs
    let report = run_pass(&ports, now, &limits(), failing()).await;

    // THEN the order was handed to the rollback function, and the heal counts as made
    let rollback = HealAction::RollBack {
        component: "orders-api".into(),
        improvement_id: id.into(),
    };
    let outcome = report
        .outcomes
        .iter()
        .find(|o| o.heal == rollback)
        .unwrap_or_else(|| panic!("no rollback heal: {report:#?}"));
    assert!(outcome.succeeded, "{outcome:?}");
    assert!(
        outcome.detail.contains("handed to selfbuild-rollback"),
        "{outcome:?}"
    );
    let requests = recorded.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        "/2015-03-31/functions/selfbuild-rollback/invocations"
    );
    assert!(
        requests[0]
            .head
            .to_ascii_lowercase()
            .contains("x-amz-invocation-type: event"),
        "{}",
        requests[0].head
    );
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent["action"], "requested_rollback", "{sent}");
    // What the rollback function reads it as.
    let RollbackRequest::RequestedRollback(order) =
        selfbuild_core::steps::parse_payload(&sent).unwrap()
    else {
        panic!("not a requested rollback: {sent}")
    };
    assert_eq!(order.improvement_id.as_str(), id);
    assert_eq!(order.actor, "selfbuild:health");
    assert!(
        order.reason.contains("orders-api's errors began"),
        "{order:?}"
    );
    let ledger = |store: &SqliteStore| {
        let store = store.clone();
        async move {
            store
                .component_health()
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.component == "orders-api")
                .unwrap()
        }
    };
    let after = ledger(&store).await;
    assert_eq!((after.failed_heals, after.heal_pending), (0, true));

    // WHEN the next pass still sees the errors THEN the handed-over heal counts as failed,
    // and the rollback is handed over again
    let later = now + time::Duration::minutes(5);
    run_pass(&ports, later, &limits(), failing()).await;
    let after = ledger(&store).await;
    assert_eq!((after.failed_heals, after.heal_pending), (1, true));
    assert_eq!(recorded.requests().len(), 2);
}
