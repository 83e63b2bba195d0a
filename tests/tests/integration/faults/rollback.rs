//! Rollback under faults between its steps (routing back, the reservation, `$LATEST`): the
//! state machine's retries converge to exactly the stable settings, or the rollback fails
//! visibly, each failed attempt audited with what it left, and a later rollback finishes it.

use selfbuild_core::change::LambdaSettings;
use selfbuild_tests::fault_proxy::{Fault, Lost, Rule};
use serde_json::{Value, json};

use super::world::{World, actions, canary_settings, stable_settings};

/// Deploys `next` without faults; the item as the state machine carries it afterwards.
async fn deployed(w: &World, cycle: &str, next: &LambdaSettings) -> Value {
    let path = w.path("DeployCanary", &json!(w.item(cycle, next))).await;
    assert_eq!(path.reached, "IsDeployed");
    path.input
}

/// The next `n` calls of `operation`, as [`Rule::nth`] counts them.
fn next_calls(w: &World, operation: &str, n: usize) -> Vec<usize> {
    let seen = w.proxy.seen(operation);
    (seen + 1..=seen + n).collect()
}

#[tokio::test]
async fn a_reservation_that_fails_after_the_routing_was_restored_converges_on_the_retry() {
    let stable = stable_settings(None);
    let w = World::new("rb-reserve", &stable, 21).await;
    let item = deployed(&w, "c-rb-reserve", &canary_settings(Some(7))).await;
    w.proxy.take_calls();
    // The first attempt restores the routing, then Lambda fails every
    // DeleteFunctionConcurrency it sends (three, with the SDK's retries).
    let calls = next_calls(&w, "DeleteFunctionConcurrency", 3);
    w.proxy.add(
        Rule::on("DeleteFunctionConcurrency")
            .nth(&calls)
            .fault(Fault::ServerError),
    );

    let path = w.path("RollbackChange", &item).await;

    assert_eq!(path.reached, "RolledBack", "{}", w.proxy.log());
    assert_eq!(path.tasks[0].1.attempts, 2, "{}", w.proxy.log());
    // The routing was restored once; the retry found it restored.
    assert_eq!(
        w.proxy.calls_of("UpdateAlias").len(),
        1,
        "{}",
        w.proxy.log()
    );
    let seen = w.observed().await;
    assert!(seen.is_stable(&stable), "{seen:?}");
    // The failed attempt is in the audit, with what it left; then the rollback.
    let events = w.audit("c-rb-reserve").await;
    assert_eq!(
        actions(&events),
        ["deployed", "rollback_failed", "rolled_back"]
    );
    let failed = &events[1];
    assert!(
        failed.detail.contains("DeleteFunctionConcurrency"),
        "{}",
        failed.detail
    );
    assert!(
        failed.detail.contains("reserved concurrency may still be"),
        "{}",
        failed.detail
    );
    assert_eq!(failed.before.as_ref().unwrap()["canary"], Value::Null);
    assert_eq!(
        w.status("c-rb-reserve-1").await.as_deref(),
        Some("rolled_back")
    );
}

#[tokio::test]
async fn lost_answers_in_every_rollback_step_still_end_exactly_stable() {
    let stable = stable_settings(Some(4));
    let w = World::new("rb-lost", &stable, 22).await;
    let item = deployed(&w, "c-rb-lost", &canary_settings(Some(12))).await;
    // Each step's first call takes effect and its answer is lost.
    for op in [
        "UpdateAlias",
        "PutFunctionConcurrency",
        "UpdateFunctionConfiguration",
    ] {
        let calls = next_calls(&w, op, 1);
        w.proxy.add(
            Rule::on(op)
                .nth(&calls)
                .fault(Fault::Lost(Lost::ServerError)),
        );
    }
    let path = w.path("RollbackChange", &item).await;
    assert_eq!(path.reached, "RolledBack", "{}", w.proxy.log());
    let seen = w.observed().await;
    assert!(seen.is_stable(&stable), "{seen:?}\n{}", w.proxy.log());
    assert_eq!(seen.versions, ["$LATEST", "1", "2"]);
}

#[tokio::test]
async fn a_rollback_that_cannot_restore_latest_fails_visibly_and_a_later_one_finishes_it() {
    let stable = stable_settings(Some(2));
    let w = World::new("rb-latest", &stable, 23).await;
    let item = deployed(&w, "c-rb-latest", &canary_settings(Some(6))).await;
    w.proxy
        .add(Rule::on("UpdateFunctionConfiguration").fault(Fault::ServerError));

    let path = w.path("RollbackChange", &item).await;

    assert_eq!(path.reached, "RollbackFailed");
    let caught = path.tasks[0].1.result.as_ref().unwrap_err();
    assert_eq!(
        (path.tasks[0].1.attempts, caught.error.as_str()),
        (4, "Retryable")
    );
    // Traffic and the reservation are back; `$LATEST`, which serves no alias traffic, is not.
    let seen = w.observed().await;
    assert_eq!((seen.version.as_str(), seen.weights.len()), ("1", 0));
    assert_eq!(seen.settings, stable);
    assert_eq!(seen.latest.memory_mb, 512);
    // Each failed attempt is audited, saying what it left.
    let events = w.audit("c-rb-latest").await;
    assert_eq!(
        actions(&events),
        [
            "deployed",
            "rollback_failed",
            "rollback_failed",
            "rollback_failed",
            "rollback_failed"
        ]
    );
    let failed = &events[4];
    assert!(
        failed.detail.contains("UpdateFunctionConfiguration"),
        "{}",
        failed.detail
    );
    assert!(
        failed.detail.contains("$LATEST still carries"),
        "{}",
        failed.detail
    );
    assert_eq!(failed.before.as_ref().unwrap()["settings"], json!(stable));
    assert_eq!(
        w.status("c-rb-latest-1").await.as_deref(),
        Some("rollback_failed")
    );

    // Once Lambda answers again, a second rollback (what `rollback_improvement` runs)
    // finishes the job.
    w.proxy.clear();
    let again = w.path("RollbackChange", &item).await;
    assert_eq!(again.reached, "RolledBack");
    assert!(w.observed().await.is_stable(&stable));
    assert_eq!(
        w.status("c-rb-latest-1").await.as_deref(),
        Some("rolled_back")
    );
}

#[tokio::test]
async fn an_undo_that_fails_is_audited_and_a_later_one_finishes_it() {
    // The deploy cannot route, and the undo cannot give the reservation back.
    let stable = stable_settings(None);
    let w = World::new("undo-fails", &stable, 24).await;
    w.proxy
        .add(Rule::on("UpdateAlias").fault(Fault::ServerError));
    w.proxy
        .add(Rule::on("DeleteFunctionConcurrency").fault(Fault::Throttle));
    let item = json!(w.item("c-undo-fails", &canary_settings(Some(3))));

    let path = w.path("DeployCanary", &item).await;

    assert_eq!(path.states(), ["DeployCanary", "UndoPartialDeploy"]);
    assert_eq!(path.reached, "RollbackFailed", "{}", w.proxy.log());
    let seen = w.observed().await;
    assert_eq!(
        seen.settings.reserved_concurrency,
        Some(3),
        "the reservation is left"
    );
    let events = w.audit("c-undo-fails").await;
    assert_eq!(actions(&events).len(), 4, "{:?}", actions(&events));
    assert!(actions(&events).iter().all(|a| *a == "rollback_failed"));
    assert!(
        events[0]
            .detail
            .contains("undoing the failed deploy failed"),
        "{}",
        events[0].detail
    );
    assert_eq!(
        w.status("c-undo-fails-1").await.as_deref(),
        Some("rollback_failed")
    );

    // Lambda answers again: the undo, run again, restores the stable state.
    w.proxy.clear();
    let caught = path.tasks[0].1.result.as_ref().unwrap_err();
    let again = w.path("UndoPartialDeploy", &caught.next_input(&item)).await;
    assert_eq!(again.reached, "DeployFailed");
    assert!(w.observed().await.is_stable(&stable));
    assert_eq!(
        w.status("c-undo-fails-1").await.as_deref(),
        Some("deploy_failed")
    );
}
