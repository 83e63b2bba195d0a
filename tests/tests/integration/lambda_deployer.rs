//! The Deployer adapter over Lambda, on moto's Lambda control plane (no Docker: nothing is
//! invoked). Each test creates its own function, publishes version 1 and points `live` at it.
//!
//! What moto 5.2.6 does not stage, the unit tests in `selfbuild_aws::lambda_deployer` cover
//! with a mocked client: an update still `InProgress`, `ResourceConflictException`, a
//! `Failed` update.

use std::collections::BTreeMap;

use selfbuild_aws::LambdaDeployer;
use selfbuild_aws::lambda_code::rewrite::code_sha256;
use selfbuild_core::change::{DeploySpec, LambdaSettings};
use selfbuild_core::deployment::{FunctionState, LIVE_ALIAS};
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::{DeployError, Deployer};
use selfbuild_tests::improvement_id;
use selfbuild_tests::lambda_fixture::{MotoFunction, bootstrap_zip};

/// A function on moto with version 1 behind the alias `live`, and a deployer for it.
struct Fixture {
    moto_function: MotoFunction,
    deployer: LambdaDeployer,
}

impl std::ops::Deref for Fixture {
    type Target = MotoFunction;
    fn deref(&self) -> &MotoFunction {
        &self.moto_function
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn settings(memory_mb: u32, timeout_seconds: u32, reserved: Option<u32>) -> LambdaSettings {
    LambdaSettings {
        memory_mb,
        timeout_seconds,
        reserved_concurrency: reserved,
        environment: env(&[("MODE", "safe"), ("REGION_HINT", "eu")]),
    }
}

impl Fixture {
    fn of(moto_function: MotoFunction) -> Self {
        Self {
            deployer: LambdaDeployer::from_client(moto_function.lambda.clone()),
            moto_function,
        }
    }

    /// Creates `name` with `initial`, without publishing anything or creating the alias.
    async fn unpublished(name: &str, initial: &LambdaSettings) -> Self {
        Self::of(MotoFunction::unpublished(name, initial).await)
    }

    /// Creates `name` with `initial`, publishes version 1 and points `live` at it.
    async fn new(name: &str, initial: &LambdaSettings) -> Self {
        Self::of(MotoFunction::new(name, initial).await)
    }
}

#[tokio::test]
async fn function_state_reads_the_version_behind_the_alias_and_the_reservation() {
    let initial = settings(256, 10, Some(5));
    let f = Fixture::new("state-reader", &initial).await;
    // $LATEST moves on; the alias still serves version 1.
    f.lambda
        .update_function_configuration()
        .function_name(f.function.as_str())
        .memory_size(1024)
        .send()
        .await
        .unwrap();

    let state = f.deployer.function_state(&f.function).await.unwrap();
    assert_eq!(
        state,
        FunctionState {
            code_sha256: Some(code_sha256(&bootstrap_zip())),
            function: f.function.clone(),
            settings: initial,
            alias: LIVE_ALIAS.to_owned(),
            stable_version: "1".to_owned(),
            canary: None,
        }
    );
}

#[tokio::test]
async fn a_canary_is_a_new_version_weighted_beside_the_stable_one_and_a_retry_changes_nothing() {
    let f = Fixture::new("canary-retry", &settings(256, 10, None)).await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    let next = LambdaSettings {
        memory_mb: 512,
        timeout_seconds: 20,
        reserved_concurrency: Some(7),
        environment: env(&[("MODE", "fast"), ("NEW", "1")]),
    };

    let first = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(first.baseline, before);
    assert_eq!(
        (first.canary_version.as_str(), first.weight, &first.settings),
        ("2", 0.1, &next)
    );
    assert_eq!(
        f.routing().await,
        ("1".to_owned(), vec![("2".to_owned(), 0.1)])
    );
    assert_eq!(f.version_settings("2").await, next);
    assert_eq!(f.reserved().await, Some(7));

    // WHEN the deploy is retried THEN nothing is published or routed again
    let again = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(f.versions().await, ["$LATEST", "1", "2"]);
    let state = f.deployer.function_state(&f.function).await.unwrap();
    assert_eq!(state.stable_version, "1");
    assert_eq!(state.canary, Some(("2".to_owned(), 0.1)));
    // The reservation is function-wide: the stable version runs under the canary's.
    assert_eq!(
        state.settings,
        LambdaSettings {
            reserved_concurrency: Some(7),
            ..before.settings.clone()
        }
    );

    let other = LambdaSettings {
        memory_mb: 1024,
        ..next.clone()
    };
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(other.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("other settings")),
        "{err}"
    );
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.2,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-2"),
            &f.function,
            &DeploySpec::Config(other.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("already routes to canary version 2"),
        "{err}"
    );
    assert_eq!(f.versions().await, ["$LATEST", "1", "2"]);
}

#[tokio::test]
async fn promote_then_rollback_restores_the_exact_baseline() {
    let f = Fixture::new("promote-rollback", &settings(256, 10, None)).await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    let next = LambdaSettings {
        memory_mb: 1024,
        timeout_seconds: 30,
        reserved_concurrency: Some(25),
        environment: env(&[("MODE", "fast")]),
    };
    let d = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-0"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.25,
        )
        .await
        .unwrap();

    f.deployer.promote(&d).await.unwrap();
    f.deployer.promote(&d).await.unwrap();
    assert_eq!(f.routing().await, ("2".to_owned(), vec![]));
    let promoted = f.deployer.function_state(&f.function).await.unwrap();
    assert_eq!(
        (
            promoted.stable_version.as_str(),
            &promoted.canary,
            &promoted.settings
        ),
        ("2", &None, &next)
    );

    // Rollback works after a promotion too, and twice is once.
    f.deployer.rollback(&d).await.unwrap();
    f.deployer.rollback(&d).await.unwrap();
    assert_eq!(
        f.deployer.function_state(&f.function).await.unwrap(),
        before
    );
    assert_eq!(f.routing().await, ("1".to_owned(), vec![]));
    assert_eq!(f.reserved().await, None);
    assert_eq!(f.version_settings("$LATEST").await, before.settings);

    let err = f.deployer.promote(&d).await.unwrap_err();
    assert!(err.to_string().contains("rolled back"), "{err}");
    // A retried deploy of the rolled-back improvement changes nothing either.
    let again = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-0"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.25,
        )
        .await
        .unwrap();
    assert_eq!(again, d);
    assert_eq!(
        f.deployer.function_state(&f.function).await.unwrap(),
        before
    );
    assert_eq!(f.versions().await, ["$LATEST", "1", "2"]);
}

#[tokio::test]
async fn a_retry_before_routing_reuses_the_version_and_the_reservation_it_recorded() {
    let f = Fixture::new("partial-retry", &settings(256, 10, Some(5))).await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    let next = LambdaSettings {
        reserved_concurrency: Some(9),
        ..settings(512, 10, None)
    };
    let first = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-0"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    // GIVEN an attempt that stopped after the reservation changed, before the alias routed:
    // the alias as it was, the version published, the reservation already 9
    f.point_alias_at("1").await;
    assert_eq!(f.reserved().await, Some(9));

    // WHEN it is retried
    let again = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-0"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();

    // THEN the same version is routed, and the baseline has the reservation from before
    assert_eq!(again.canary_version, first.canary_version);
    assert_eq!(again.baseline, before);
    assert_eq!(again.baseline.settings.reserved_concurrency, Some(5));
    assert_eq!(f.versions().await, ["$LATEST", "1", "2"]);
    assert_eq!(
        f.routing().await,
        ("1".to_owned(), vec![("2".to_owned(), 0.1)])
    );
    f.deployer.rollback(&again).await.unwrap();
    assert_eq!(
        f.deployer.function_state(&f.function).await.unwrap(),
        before
    );
}

#[tokio::test]
async fn a_later_deploy_must_be_rolled_back_first() {
    let f = Fixture::new("deployed-again", &settings(128, 3, None)).await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    // Only the reservation changes: still a new version, told apart by its description.
    let next = LambdaSettings {
        reserved_concurrency: Some(3),
        ..before.settings.clone()
    };
    let d1 = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.5,
        )
        .await
        .unwrap();
    f.deployer.rollback(&d1).await.unwrap();
    let d2 = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-2"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.5,
        )
        .await
        .unwrap();
    assert_eq!(
        (d1.canary_version.as_str(), d2.canary_version.as_str()),
        ("2", "3")
    );
    assert_eq!(d2.baseline, before);

    let err = f.deployer.rollback(&d1).await.unwrap_err();
    assert!(err.to_string().contains("deployed again"), "{err}");
    f.deployer.rollback(&d2).await.unwrap();
    assert_eq!(
        f.deployer.function_state(&f.function).await.unwrap(),
        before
    );
    // The alias now records imp-2; a stray retry of imp-1 does not revive version 2.
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("imp-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.5,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("later versions"), "{err}");
    assert_eq!(f.routing().await, ("1".to_owned(), vec![]));
}

#[tokio::test]
async fn unknown_functions_and_functions_without_a_published_alias_are_rejected() {
    let known = Fixture::new("known", &settings(128, 3, None)).await;
    let deployer = &known.deployer;
    let ghost = ComponentId::parse("ghost-function").unwrap();
    let err = deployer.function_state(&ghost).await.unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("ghost-function")),
        "{err}"
    );
    let err = deployer
        .deploy_canary(
            &improvement_id("x-1"),
            &ghost,
            &DeploySpec::Config(settings(256, 3, None).clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("ghost-function")),
        "{err}"
    );

    let initial = settings(128, 3, None);
    let f = Fixture::unpublished("no-alias", &initial).await;
    let err = f.deployer.function_state(&f.function).await.unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("no alias `live`")),
        "{err}"
    );
    let next = settings(512, 3, None);
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("x-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");

    f.create_alias("$LATEST").await;
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("x-1"),
            &f.function,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("$LATEST")),
        "{err}"
    );
    // Nothing was changed or published.
    assert_eq!(f.versions().await, ["$LATEST"]);
    assert_eq!(f.version_settings("$LATEST").await, initial);
}
