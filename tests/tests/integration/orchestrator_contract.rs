//! The Orchestrator contract: one suite of checks written against the port, run on the
//! embedded `RecordingOrchestrator` (SQLite) and on `StepFunctionsOrchestrator` over moto.
//! The adapters differ in nothing the port promises.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::ids::{ComponentId, CycleId, DedupKey, TenantId};
use selfbuild_core::idsource::SeededIds;
use selfbuild_core::ports::{CycleStore, IdSource, Orchestrator};
use selfbuild_local::orchestrator::RecordingOrchestrator;
use selfbuild_local::store::SqliteStore;
use selfbuild_tests::moto::MotoServer;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::orchestrator::create_state_machine;

const T0: OffsetDateTime = datetime!(2026-11-22 05:00:01 UTC);

/// One adapter under the contract.
pub trait OrchestratorHarness {
    /// The adapter.
    type O: Orchestrator;
    /// The adapter, starting cycles on a fresh orchestrator (no executions yet).
    fn orchestrator(&self) -> &Self::O;
    /// The executions of `cycle`, each as the request it runs on.
    async fn executions(&self, cycle: &CycleId) -> Vec<CycleRequest>;
}

fn request(component: &str, seed: u64) -> CycleRequest {
    let key = DedupKey::new(
        Some(TenantId::parse("acme").unwrap()),
        Some(ComponentId::parse(component).unwrap()),
    );
    CycleRequest {
        cycle_id: CycleId::for_claim(
            &key,
            T0,
            SeededIds::new(seed, "orchestrator contract").suffix(),
        ),
        mode: CycleMode::Emergency,
        tenant_id: key.tenant.clone(),
        components: key.component.iter().cloned().collect(),
        analysis_window: TimeWindow {
            start: T0 - Duration::hours(1),
            end: T0,
        },
        max_improvements: 3,
        max_concurrency: 3,
        dry_run: false,
        trigger: Trigger::Schedule { rule: None },
        dedup_key: key.as_str().to_owned(),
        requested_at: T0,
    }
}

pub async fn a_start_runs_one_execution_on_the_request<H: OrchestratorHarness>(h: &H) {
    let request = request("orders-api", 1);
    let handle = h.orchestrator().start_cycle(&request).await.unwrap();
    assert!(!handle.already_started);
    assert!(!handle.execution_ref.is_empty());
    assert_eq!(h.executions(&request.cycle_id).await, [request]);
}

pub async fn starting_the_same_cycle_twice_starts_one<H: OrchestratorHarness>(h: &H) {
    let request = request("orders-api", 2);
    let first = h.orchestrator().start_cycle(&request).await.unwrap();
    let again = h.orchestrator().start_cycle(&request).await.unwrap();
    assert!(!first.already_started);
    assert!(again.already_started, "the second start found the first");
    assert_eq!(again.execution_ref, first.execution_ref);
    assert_eq!(h.executions(&request.cycle_id).await, [request]);
}

pub async fn a_start_of_a_started_cycle_with_other_input_keeps_the_first<H: OrchestratorHarness>(
    h: &H,
) {
    let request = request("orders-api", 3);
    let first = h.orchestrator().start_cycle(&request).await.unwrap();
    let other = CycleRequest {
        max_improvements: 1,
        dry_run: true,
        ..request.clone()
    };
    let again = h.orchestrator().start_cycle(&other).await.unwrap();
    assert!(again.already_started);
    assert_eq!(again.execution_ref, first.execution_ref);
    assert_eq!(h.executions(&request.cycle_id).await, [request]);
}

pub async fn distinct_cycles_are_distinct_executions<H: OrchestratorHarness>(h: &H) {
    let a = request("orders-api", 4);
    let b = request("search", 4);
    let c = request("orders-api", 5);
    let mut refs = Vec::new();
    for r in [&a, &b, &c] {
        let handle = h.orchestrator().start_cycle(r).await.unwrap();
        assert!(!handle.already_started, "{}", r.cycle_id);
        refs.push(handle.execution_ref);
    }
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), 3);
    for r in [a, b, c] {
        assert_eq!(h.executions(&r.cycle_id).await, [r]);
    }
}

// ------------------------------------------------------------------------------------------
// The adapters

/// `RecordingOrchestrator` over a fresh SQLite store.
pub struct RecordingHarness {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    orchestrator: RecordingOrchestrator<SqliteStore, FixedClock>,
}

impl RecordingHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        Self {
            orchestrator: RecordingOrchestrator::new(store.clone(), FixedClock(T0)),
            store,
            _dir: dir,
        }
    }
}

impl OrchestratorHarness for RecordingHarness {
    type O = RecordingOrchestrator<SqliteStore, FixedClock>;

    fn orchestrator(&self) -> &Self::O {
        &self.orchestrator
    }

    async fn executions(&self, cycle: &CycleId) -> Vec<CycleRequest> {
        self.store
            .get_cycle(cycle)
            .await
            .unwrap()
            .map(|record| record.request)
            .into_iter()
            .collect()
    }
}

/// `StepFunctionsOrchestrator` on a state machine of its own on the shared moto server.
pub struct StepFunctionsHarness {
    _moto: Arc<MotoServer>,
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    orchestrator: StepFunctionsOrchestrator,
}

static NEXT_MACHINE: AtomicUsize = AtomicUsize::new(0);

impl StepFunctionsHarness {
    async fn new() -> Self {
        let moto = MotoServer::shared();
        let sdk = moto.sdk_config().await;
        let n = NEXT_MACHINE.fetch_add(1, Ordering::Relaxed);
        let state_machine_arn = create_state_machine(&sdk, &format!("contract-{n}")).await;
        Self {
            sfn: aws_sdk_sfn::Client::new(&sdk),
            orchestrator: StepFunctionsOrchestrator::new(&sdk, state_machine_arn.clone()),
            state_machine_arn,
            _moto: moto,
        }
    }
}

impl OrchestratorHarness for StepFunctionsHarness {
    type O = StepFunctionsOrchestrator;

    fn orchestrator(&self) -> &Self::O {
        &self.orchestrator
    }

    async fn executions(&self, cycle: &CycleId) -> Vec<CycleRequest> {
        let listed = self
            .sfn
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .send()
            .await
            .unwrap();
        let mut requests = Vec::new();
        for execution in listed
            .executions()
            .iter()
            .filter(|e| e.name() == cycle.as_str())
        {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(execution.execution_arn())
                .send()
                .await
                .unwrap();
            requests.push(serde_json::from_str(described.input().unwrap()).unwrap());
        }
        requests
    }
}

macro_rules! orchestrator_contract {
    ($($check:ident),* $(,)?) => {
        mod recording {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::RecordingHarness::new()).await;
                }
            )*
        }

        mod step_functions_on_moto {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::StepFunctionsHarness::new().await).await;
                }
            )*
        }
    };
}

orchestrator_contract!(
    a_start_runs_one_execution_on_the_request,
    starting_the_same_cycle_twice_starts_one,
    a_start_of_a_started_cycle_with_other_input_keeps_the_first,
    distinct_cycles_are_distinct_executions,
);
