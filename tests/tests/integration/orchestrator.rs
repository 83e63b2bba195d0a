//! The Orchestrator adapters: Step Functions StartExecution on moto, and the embedded one.

use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::{CycleMode, CycleRequest, CycleStatus, TimeWindow, Trigger};
use selfbuild_core::ids::{ComponentId, CycleId, DedupKey, TenantId};
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::ports::{CycleStore, IdSource, Orchestrator};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::moto::MotoServer;
use time::Duration;
use time::macros::datetime;

fn request() -> CycleRequest {
    let at = datetime!(2026-11-22 05:00:01 UTC);
    let key = DedupKey::new(
        Some(TenantId::parse("acme").unwrap()),
        Some(ComponentId::parse("orders-api").unwrap()),
    );
    CycleRequest {
        cycle_id: CycleId::for_claim(&key, at, OsRandom.suffix()),
        mode: CycleMode::Emergency,
        tenant_id: key.tenant.clone(),
        components: key.component.iter().cloned().collect(),
        analysis_window: TimeWindow {
            start: at - Duration::hours(1),
            end: at,
        },
        max_improvements: 3,
        max_concurrency: 3,
        dry_run: false,
        trigger: Trigger::Schedule { rule: None },
        dedup_key: key.as_str().to_owned(),
        requested_at: at,
    }
}

/// Creates a trivial state machine in moto and returns its ARN.
pub async fn create_state_machine(sdk: &aws_config::SdkConfig, name: &str) -> String {
    let client = aws_sdk_sfn::Client::new(sdk);
    client
        .create_state_machine()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/selfbuild-state-machine")
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#)
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

#[tokio::test]
async fn step_functions_start_execution_uses_the_cycle_id_as_name_and_the_request_as_input() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let arn = create_state_machine(&sdk, "start-execution").await;
    let orchestrator = StepFunctionsOrchestrator::new(&sdk, arn.clone());
    let request = request();

    let handle = orchestrator.start_cycle(&request).await.unwrap();
    assert!(!handle.already_started);
    assert!(
        handle
            .execution_ref
            .ends_with(&format!(":{}", request.cycle_id)),
        "{}",
        handle.execution_ref
    );

    let client = aws_sdk_sfn::Client::new(&sdk);
    let execution = client
        .describe_execution()
        .execution_arn(&handle.execution_ref)
        .send()
        .await
        .unwrap();
    assert_eq!(execution.name.as_deref(), Some(request.cycle_id.as_str()));
    assert_eq!(execution.state_machine_arn, arn);
    let input: CycleRequest = serde_json::from_str(execution.input.as_deref().unwrap()).unwrap();
    assert_eq!(input, request);

    // Starting the same cycle again is not an error and starts nothing new.
    let again = orchestrator.start_cycle(&request).await.unwrap();
    assert_eq!(again.execution_ref, handle.execution_ref);
    let executions = client
        .list_executions()
        .state_machine_arn(&arn)
        .send()
        .await
        .unwrap()
        .executions;
    assert_eq!(executions.len(), 1);
}

#[tokio::test]
async fn step_functions_errors_are_classified() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist";
    let err = StepFunctionsOrchestrator::new(&sdk, missing)
        .start_cycle(&request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, selfbuild_core::error::OrchestratorError::Rejected(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_embedded_orchestrator_records_each_cycle_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let orchestrator = RecordingOrchestrator::new(
        store.clone(),
        FixedClock(datetime!(2026-11-22 05:00:02 UTC)),
    );
    let request = request();
    let first = orchestrator.start_cycle(&request).await.unwrap();
    assert!(!first.already_started);
    let second = orchestrator.start_cycle(&request).await.unwrap();
    assert!(second.already_started);
    let record = store.get_cycle(&request.cycle_id).await.unwrap().unwrap();
    assert_eq!(record.status, CycleStatus::Running);
    assert_eq!(record.request, request);
}
