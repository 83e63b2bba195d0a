//! Deploy under faults: between `PublishVersion` and `UpdateAlias` (the alias update failing
//! for good, or taking effect with its answer lost), a lost `PublishVersion`, a throttled
//! configuration update, slow polls, and a deploy whose record cannot be written. The state
//! machine retries `Retryable` with the same input: a deploy converges to the routing a clean
//! one gives, with one published version, or fails saying what it left, and the state its
//! Catch leads to (`UndoPartialDeploy`) restores the stable state exactly and audits why.

use std::time::Duration;

use selfbuild_tests::fault_proxy::{Fault, Lost, Rule};
use serde_json::json;

use super::world::{World, actions, canary_settings, stable_settings};

#[tokio::test]
async fn an_alias_update_lost_after_it_took_effect_converges_on_the_retry() {
    let stable = stable_settings(Some(5));
    let w = World::new("lost-alias", &stable, 11).await;
    // Every UpdateAlias reaches Lambda, and every answer is lost.
    w.proxy
        .add(Rule::on("UpdateAlias").fault(Fault::Lost(Lost::ServerError)));
    let item = json!(w.item("c-lost-alias", &canary_settings(Some(8))));

    let deployed = w.path("DeployCanary", &item).await;

    assert_eq!(deployed.reached, "IsDeployed", "{}", w.proxy.log());
    assert_eq!(deployed.tasks[0].1.attempts, 2, "{}", w.proxy.log());
    assert_eq!(deployed.input["deploy"]["status"], "deployed");
    let deployment = &deployed.input["deploy"]["deployment"];
    assert_eq!(deployment["canary_version"], "2");
    assert_eq!(deployment["baseline"]["settings"], json!(stable));
    // The first attempt's three UpdateAlias calls all took effect; the retry found the
    // routing and sent none.
    assert_eq!(w.proxy.calls_of("UpdateAlias").len(), 3);
    assert_eq!(w.proxy.calls_of("PublishVersion").len(), 1);
    let seen = w.observed().await;
    assert_eq!(
        (seen.version.as_str(), seen.weights.as_slice()),
        ("1", [("2".to_owned(), 0.1)].as_slice())
    );
    assert_eq!(seen.versions, ["$LATEST", "1", "2"]);
    assert_eq!(actions(&w.audit("c-lost-alias").await), ["deployed"]);

    // The rollback restores exactly what was there.
    w.proxy.clear();
    let rolled = w.path("RollbackChange", &deployed.input).await;
    assert_eq!(rolled.reached, "RolledBack");
    assert!(
        w.observed().await.is_stable(&stable),
        "{:?}",
        w.observed().await
    );
}

#[tokio::test]
async fn an_alias_update_lost_then_refused_as_stale_converges_on_the_retry() {
    // Lambda takes the update, the answer is lost, and the SDK's retry carries a revision
    // id that is stale by now: Lambda refuses it (moto ignores revision ids; the proxy
    // answers as Lambda would).
    let stable = stable_settings(None);
    let w = World::new("stale-alias", &stable, 16).await;
    w.proxy.add(
        Rule::on("UpdateAlias")
            .nth(&[1])
            .fault(Fault::Lost(Lost::ServerError)),
    );
    w.proxy.add(
        Rule::on("UpdateAlias")
            .nth(&[2])
            .fault(Fault::Error(412, "PreconditionFailedException")),
    );
    let deployed = w
        .path(
            "DeployCanary",
            &json!(w.item("c-stale", &canary_settings(None))),
        )
        .await;
    assert_eq!(deployed.reached, "IsDeployed", "{}", w.proxy.log());
    assert_eq!(deployed.tasks[0].1.attempts, 2);
    assert_eq!(
        w.proxy.calls_of("UpdateAlias").len(),
        2,
        "no SDK retry of a 412"
    );
    assert_eq!(w.observed().await.weights, [("2".to_owned(), 0.1)]);
}

#[tokio::test]
async fn a_published_version_whose_answer_was_lost_is_not_published_twice() {
    let stable = stable_settings(None);
    let w = World::new("lost-publish", &stable, 12).await;
    // Every PublishVersion answer of the first attempt is lost; the SDK retries it twice.
    w.proxy.add(
        Rule::on("PublishVersion")
            .nth(&[1, 2, 3])
            .fault(Fault::Lost(Lost::Drop)),
    );
    let deployed = w
        .path(
            "DeployCanary",
            &json!(w.item("c-lost-publish", &canary_settings(None))),
        )
        .await;
    assert_eq!(deployed.reached, "IsDeployed");
    assert_eq!(deployed.tasks[0].1.attempts, 2, "{}", w.proxy.log());
    let seen = w.observed().await;
    assert_eq!(seen.versions, ["$LATEST", "1", "2"], "{}", w.proxy.log());
    assert_eq!(seen.weights, [("2".to_owned(), 0.1)]);
}

#[tokio::test]
async fn a_throttled_update_and_slow_polls_still_deploy() {
    let stable = stable_settings(None);
    let w = World::new("slow-update", &stable, 13).await;
    w.proxy.add(
        Rule::on("UpdateFunctionConfiguration")
            .nth(&[1, 2])
            .fault(Fault::Throttle),
    );
    w.proxy
        .add(Rule::on("GetFunctionConfiguration").fault(Fault::Delay(Duration::from_millis(30))));
    let deployed = w
        .path(
            "DeployCanary",
            &json!(w.item("c-slow", &canary_settings(Some(3)))),
        )
        .await;
    assert_eq!(deployed.reached, "IsDeployed");
    assert_eq!(deployed.tasks[0].1.attempts, 1);
    let updates = w.proxy.calls_of("UpdateFunctionConfiguration");
    assert_eq!(
        updates.iter().map(|c| c.status).collect::<Vec<_>>(),
        [Some(429), Some(429), Some(200)],
        "the SDK retried the throttled update: {}",
        w.proxy.log()
    );
    assert!(
        w.proxy
            .calls_of("GetFunctionConfiguration")
            .iter()
            .all(|c| c.fault.is_some() && c.status == Some(200))
    );
    assert_eq!(w.state().await.canary, Some(("2".to_owned(), 0.1)));
}

#[tokio::test]
async fn a_configuration_update_throttled_for_good_fails_visibly_and_changes_nothing() {
    let stable = stable_settings(Some(4));
    let w = World::new("throttled-update", &stable, 14).await;
    w.proxy
        .add(Rule::on("UpdateFunctionConfiguration").fault(Fault::Throttle));
    let item = json!(w.item("c-throttled", &canary_settings(Some(6))));

    let path = w.path("DeployCanary", &item).await;

    assert_eq!(path.states(), ["DeployCanary", "UndoPartialDeploy"]);
    assert_eq!(path.reached, "DeployFailed", "{}", w.proxy.log());
    let caught = path.tasks[0].1.result.as_ref().unwrap_err();
    assert_eq!(
        (path.tasks[0].1.attempts, caught.error.as_str()),
        (4, "Retryable")
    );
    assert!(
        caught.cause.contains("UpdateFunctionConfiguration"),
        "{caught:?}"
    );
    assert_eq!(w.proxy.calls_of("UpdateFunctionConfiguration").len(), 12);
    assert_eq!(path.input["undo"]["restored"], false);
    let seen = w.observed().await;
    assert!(seen.is_stable(&stable), "{seen:?}");
    assert_eq!(seen.versions, ["$LATEST", "1"]);
    let events = w.audit("c-throttled").await;
    assert_eq!(actions(&events), ["deploy_failed"]);
    assert!(
        events[0].detail.contains("UpdateFunctionConfiguration"),
        "{}",
        events[0].detail
    );
    assert!(
        events[0].detail.contains("nothing to undo"),
        "{}",
        events[0].detail
    );
    assert_eq!(
        w.status("c-throttled-1").await.as_deref(),
        Some("deploy_failed")
    );
}

#[tokio::test]
async fn an_alias_update_failing_for_good_fails_saying_what_it_left_and_the_undo_restores_it() {
    let stable = stable_settings(Some(5));
    let w = World::new("broken-alias", &stable, 15).await;
    w.proxy
        .add(Rule::on("UpdateAlias").fault(Fault::ServerError));
    let item = json!(w.item("c-broken-alias", &canary_settings(Some(9))));

    let path = w.path("DeployCanary", &item).await;

    let caught = path.tasks[0].1.result.as_ref().unwrap_err();
    assert_eq!(path.tasks[0].1.attempts, 4, "{}", w.proxy.log());
    assert_eq!(caught.error, "Retryable");
    // One version published, by the first attempt; the retries reused it.
    assert_eq!(
        w.proxy.calls_of("PublishVersion").len(),
        1,
        "{}",
        w.proxy.log()
    );
    assert_eq!(w.proxy.calls_of("UpdateAlias").len(), 12);
    // The error says what the deploy left behind.
    for words in ["version 2", "published", "reserved concurrency is 9 (was 5"] {
        assert!(
            caught.cause.contains(words),
            "{words:?} in {}",
            caught.cause
        );
    }
    // The Catch's undo needs no alias update (the alias never moved), so it restores the
    // reservation and $LATEST while UpdateAlias still fails.
    assert_eq!(path.states(), ["DeployCanary", "UndoPartialDeploy"]);
    assert_eq!(path.reached, "DeployFailed", "{}", w.proxy.log());
    assert_eq!(path.input["undo"]["restored"], true);
    let seen = w.observed().await;
    assert!(seen.is_stable(&stable), "{seen:?}");
    assert_eq!(seen.versions, ["$LATEST", "1", "2"]);
    let events = w.audit("c-broken-alias").await;
    assert_eq!(actions(&events), ["deploy_failed"]);
    let event = &events[0];
    assert!(event.detail.contains("was undone"), "{}", event.detail);
    assert!(event.detail.contains("UpdateAlias"), "{}", event.detail);
    assert_eq!(
        event.before.as_ref().unwrap()["settings"]["reserved_concurrency"],
        9
    );
    assert_eq!(event.after.as_ref().unwrap()["settings"], json!(stable));
}

#[tokio::test]
async fn a_deploy_whose_record_cannot_be_written_leaves_no_canary_behind() {
    // Every attempt routes the canary (or finds it routed), then cannot write its audit
    // event: the deploy fails, and the canary must not stay unwatched.
    let stable = stable_settings(None);
    let w = World::new("unrecorded", &stable, 17).await;
    w.proxy.add(
        Rule::on("PutItem")
            .nth(&(1..=12).collect::<Vec<_>>())
            .fault(Fault::ServerError),
    );
    let path = w
        .path(
            "DeployCanary",
            &json!(w.item("c-unrecorded", &canary_settings(Some(2)))),
        )
        .await;
    let caught = path.tasks[0].1.result.as_ref().unwrap_err();
    assert_eq!(
        (path.tasks[0].1.attempts, caught.error.as_str()),
        (4, "Retryable")
    );
    assert!(caught.cause.contains("PutItem"), "{caught:?}");
    assert_eq!(
        w.proxy.calls_of("UpdateAlias").len(),
        2,
        "routed once, restored once"
    );
    assert_eq!(path.reached, "DeployFailed", "{}", w.proxy.log());
    assert!(
        w.observed().await.is_stable(&stable),
        "{:?}",
        w.observed().await
    );
    assert_eq!(actions(&w.audit("c-unrecorded").await), ["deploy_failed"]);
}
