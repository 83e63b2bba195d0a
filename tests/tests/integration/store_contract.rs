//! The Store contract: one suite, run against the embedded SQLite store and against
//! DynamoDB on moto.

use std::sync::Arc;

use selfbuild_core::approval::PendingApproval;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::cycle::{
    CycleMode, CycleRecord, CycleRequest, CycleStatus, TimeWindow, Trigger,
};
use selfbuild_core::ids::{ComponentId, CycleId, DedupKey, TenantId};
use selfbuild_core::intake::CLAIM_RETENTION;
use selfbuild_core::ports::{ClaimOutcome, DedupClaim, HaltState, Store};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);
const WINDOW: Duration = Duration::seconds(300);

fn key(component: &str) -> DedupKey {
    DedupKey::new(
        Some(TenantId::parse("acme").unwrap()),
        Some(ComponentId::parse(component).unwrap()),
    )
}

fn claim_at(key: &DedupKey, at: OffsetDateTime) -> DedupClaim {
    let window_end = at + WINDOW;
    DedupClaim {
        key: key.clone(),
        cycle_id: CycleId::for_claim(key, at),
        claimed_at: at,
        window_end,
        expires_at: window_end + CLAIM_RETENTION,
        cycle_input: format!("{{\"at\":\"{at}\"}}"),
    }
}

fn held(outcome: ClaimOutcome) -> selfbuild_core::ports::HeldClaim {
    match outcome {
        ClaimOutcome::Held(h) => h,
        ClaimOutcome::Won => panic!("expected the key to be held"),
    }
}

pub async fn first_claim_wins_and_later_ones_are_counted(store: &impl Store) {
    let k = key("orders");
    let first = claim_at(&k, T0);
    assert_eq!(store.claim(&first).await.unwrap(), ClaimOutcome::Won);
    let h = held(
        store
            .claim(&claim_at(&k, T0 + Duration::seconds(10)))
            .await
            .unwrap(),
    );
    assert_eq!(h.cycle_id, first.cycle_id);
    assert_eq!(h.suppressed_count, 1);
    assert_eq!(h.claimed_at, T0);
    assert_eq!(h.window_end, T0 + WINDOW);
    assert_eq!(h.cycle_input, first.cycle_input);
    assert!(!h.started);
    let h = held(
        store
            .claim(&claim_at(&k, T0 + Duration::seconds(20)))
            .await
            .unwrap(),
    );
    assert_eq!(h.suppressed_count, 2);
}

pub async fn keys_are_independent(store: &impl Store) {
    assert_eq!(
        store.claim(&claim_at(&key("a"), T0)).await.unwrap(),
        ClaimOutcome::Won
    );
    assert_eq!(
        store.claim(&claim_at(&key("b"), T0)).await.unwrap(),
        ClaimOutcome::Won
    );
    let fleet = DedupKey::new(None, None);
    assert_eq!(
        store.claim(&claim_at(&fleet, T0)).await.unwrap(),
        ClaimOutcome::Won
    );
}

pub async fn the_window_end_still_holds_and_after_it_a_new_claim_wins(store: &impl Store) {
    let k = key("boundary");
    store.claim(&claim_at(&k, T0)).await.unwrap();
    // window_end < now is the condition: at exactly window_end the claim still holds.
    let at_end = held(store.claim(&claim_at(&k, T0 + WINDOW)).await.unwrap());
    assert_eq!(at_end.suppressed_count, 1);
    let after = claim_at(&k, T0 + WINDOW + Duration::milliseconds(1));
    assert_eq!(store.claim(&after).await.unwrap(), ClaimOutcome::Won);
    // The new claim starts fresh: its own cycle and a zero count.
    let h = held(
        store
            .claim(&claim_at(&k, T0 + WINDOW + Duration::seconds(1)))
            .await
            .unwrap(),
    );
    assert_eq!(h.cycle_id, after.cycle_id);
    assert_eq!(h.suppressed_count, 1);
}

pub async fn started_claims_say_so(store: &impl Store) {
    let k = key("started");
    let c = claim_at(&k, T0);
    store.claim(&c).await.unwrap();
    store.mark_started(&k, &c.cycle_id, "exec-1").await.unwrap();
    assert!(held(store.claim(&claim_at(&k, T0)).await.unwrap()).started);
}

pub async fn release_removes_only_the_named_claim(store: &impl Store) {
    let k = key("release");
    let c = claim_at(&k, T0);
    store.claim(&c).await.unwrap();
    let other = CycleId::parse("someone-else").unwrap();
    assert!(!store.release(&k, &other).await.unwrap());
    assert!(held(store.claim(&claim_at(&k, T0)).await.unwrap()).suppressed_count == 1);
    assert!(store.release(&k, &c.cycle_id).await.unwrap());
    assert_eq!(
        store.claim(&claim_at(&k, T0)).await.unwrap(),
        ClaimOutcome::Won
    );
}

pub async fn the_halt_switch_round_trips(store: &impl Store) {
    assert_eq!(store.halt_state().await.unwrap(), None);
    assert!(!store.clear_halt().await.unwrap());
    let halt = HaltState {
        reason: "rollbacks spiking".into(),
        actor: "ops@example.com".into(),
        since: T0,
    };
    store.set_halt(&halt).await.unwrap();
    assert_eq!(store.halt_state().await.unwrap(), Some(halt.clone()));
    let newer = HaltState {
        reason: "still bad".into(),
        ..halt
    };
    store.set_halt(&newer).await.unwrap();
    assert_eq!(store.halt_state().await.unwrap(), Some(newer));
    assert!(store.clear_halt().await.unwrap());
    assert_eq!(store.halt_state().await.unwrap(), None);
}

pub async fn cycles_are_created_once(store: &impl Store) {
    let k = key("cycles");
    let request = CycleRequest {
        cycle_id: CycleId::for_claim(&k, T0),
        mode: CycleMode::Emergency,
        tenant_id: k.tenant.clone(),
        components: k.component.iter().cloned().collect(),
        analysis_window: TimeWindow {
            start: T0 - Duration::hours(1),
            end: T0,
        },
        max_improvements: 3,
        max_concurrency: 3,
        dry_run: false,
        trigger: Trigger::Schedule { rule: None },
        dedup_key: k.as_str().to_owned(),
        requested_at: T0,
    };
    let record = CycleRecord {
        request: request.clone(),
        status: CycleStatus::Running,
        execution_ref: "exec".into(),
        started_at: T0,
    };
    assert_eq!(store.get_cycle(&request.cycle_id).await.unwrap(), None);
    assert!(store.create_cycle(&record).await.unwrap());
    let again = CycleRecord {
        execution_ref: "other".into(),
        ..record.clone()
    };
    assert!(!store.create_cycle(&again).await.unwrap());
    assert_eq!(
        store.get_cycle(&request.cycle_id).await.unwrap(),
        Some(record)
    );
}

pub async fn approvals_collect_distinct_approvers(store: &impl Store) {
    let cycle = CycleId::parse("acme-orders-20261122T050000Z-00000001").unwrap();
    let pending = PendingApproval {
        improvement_id: format!("{cycle}-1"),
        cycle_id: cycle.clone(),
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        task_token: "token-1".into(),
        change: "orders: memory 128→512 MB".into(),
        risk: "CRITICAL".into(),
        approvals_required: 2,
        approvers: vec![],
        requested_at: T0,
    };
    let id = pending.improvement_id.clone();
    assert_eq!(store.get_pending(&id).await.unwrap(), None);
    assert_eq!(
        store.add_approver(&id, "alice").await.unwrap(),
        None,
        "nothing pending yet"
    );
    store.put_pending(&pending).await.unwrap();
    assert_eq!(store.get_pending(&id).await.unwrap(), Some(pending.clone()));
    let once = store.add_approver(&id, "alice").await.unwrap().unwrap();
    assert_eq!(once.approvers, ["alice"]);
    let again = store.add_approver(&id, "alice").await.unwrap().unwrap();
    assert_eq!(again.approvers, ["alice"], "the same approver counts once");
    let twice = store.add_approver(&id, "bob").await.unwrap().unwrap();
    assert_eq!(twice.approvers.len(), 2);
    assert_eq!(twice.task_token, "token-1");
    assert!(store.remove_pending(&id).await.unwrap());
    assert!(!store.remove_pending(&id).await.unwrap());
}

pub async fn audit_events_come_back_in_time_order(store: &impl Store) {
    let cycle = CycleId::parse("acme-orders-20261122T050000Z-00000002").unwrap();
    let event = |at: OffsetDateTime, action: &str| AuditEvent {
        at,
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        cycle_id: cycle.clone(),
        improvement_id: Some(format!("{cycle}-1")),
        actor: "selfbuild:deploy".into(),
        action: action.into(),
        before: Some(serde_json::json!({"memory_mb": 128})),
        after: Some(serde_json::json!({"memory_mb": 512})),
        detail: action.into(),
    };
    // Appended out of order, and two in the same millisecond.
    store
        .append(&event(T0 + Duration::seconds(5), "deployed"))
        .await
        .unwrap();
    store.append(&event(T0, "validated")).await.unwrap();
    store
        .append(&event(T0 + Duration::seconds(5), "deploy_note"))
        .await
        .unwrap();
    store
        .append(&event(T0 + Duration::hours(1), "promoted"))
        .await
        .unwrap();
    let events = store.cycle_events(&cycle).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.len(), 4);
    assert_eq!(actions[0], "validated");
    assert_eq!(actions[3], "promoted");
    assert_eq!(events[3].after, Some(serde_json::json!({"memory_mb": 512})));
    let other = CycleId::parse("someone-else").unwrap();
    assert!(store.cycle_events(&other).await.unwrap().is_empty());
}

/// 200 parallel claims of one key: exactly one winner, and 199 counted suppressions.
pub async fn concurrent_claims_have_exactly_one_winner<S: Store + 'static>(stores: Vec<Arc<S>>) {
    let k = key("contended");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let c = claim_at(&k, T0 + Duration::milliseconds(i as i64));
        tasks.push(tokio::spawn(async move { store.claim(&c).await }));
    }
    let mut winners = 0;
    let mut counts = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            ClaimOutcome::Won => winners += 1,
            ClaimOutcome::Held(h) => counts.push(h.suppressed_count),
        }
    }
    assert_eq!(winners, 1, "exactly one claim must win");
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=199).collect::<Vec<u64>>(),
        "each suppression counted once"
    );
}

macro_rules! contract_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            use selfbuild_local::store::SqliteStore;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqliteStore::open(dir.path()).unwrap();
                    super::$test(&store).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_have_exactly_one_winner() {
                let dir = tempfile::tempdir().unwrap();
                // Four connections to one file: SQLite's locking decides, not one mutex.
                let stores = (0..4)
                    .map(|_| Arc::new(SqliteStore::open(dir.path()).unwrap()))
                    .collect();
                super::concurrent_claims_have_exactly_one_winner(stores).await;
            }
        }

        mod dynamodb {
            use super::*;
            use selfbuild_aws::dynamo::DynamoStore;
            use selfbuild_tests::moto::MotoServer;

            async fn store(moto: &MotoServer, name: &str) -> DynamoStore {
                let store = DynamoStore::new(&moto.sdk_config().await, format!("contract-{name}"));
                store.create_table().await.unwrap();
                store
            }

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let moto = MotoServer::shared();
                    let store = store(&moto, stringify!($test)).await;
                    super::$test(&store).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_have_exactly_one_winner() {
                let moto = MotoServer::shared();
                let store = Arc::new(store(&moto, "concurrent").await);
                super::concurrent_claims_have_exactly_one_winner(vec![store]).await;
            }
        }
    };
}

contract_suite!(
    first_claim_wins_and_later_ones_are_counted,
    keys_are_independent,
    the_window_end_still_holds_and_after_it_a_new_claim_wins,
    started_claims_say_so,
    release_removes_only_the_named_claim,
    the_halt_switch_round_trips,
    cycles_are_created_once,
    approvals_collect_distinct_approvers,
    audit_events_come_back_in_time_order,
);

/// A missing table is a configuration error, not something to retry.
#[tokio::test]
async fn dynamodb_refusals_are_not_retryable() {
    use selfbuild_core::error::{StableError, StoreError};
    use selfbuild_core::ports::DedupStore;
    let moto = selfbuild_tests::moto::MotoServer::shared();
    let store = selfbuild_aws::dynamo::DynamoStore::new(&moto.sdk_config().await, "no-such-table");
    let err = store.claim(&claim_at(&key("x"), T0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(err.error_type(), "DependencyFailed");
    assert!(err.to_string().contains("no-such-table"), "{err}");
}
