//! The Deployer adapter over Lambda, on moto's Lambda control plane (no Docker: nothing is
//! invoked). Each test creates its own function, publishes version 1 and points `live` at it.
//!
//! What moto 5.2.1 does not stage, the unit tests in `selfbuild_aws::lambda_deployer` cover
//! with a mocked client: an update still `InProgress`, `ResourceConflictException`, a
//! `Failed` update.

use std::collections::BTreeMap;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, Environment, FunctionCode, Runtime};
use selfbuild_aws::LambdaDeployer;
use selfbuild_core::change::LambdaSettings;
use selfbuild_core::deployment::{FunctionState, LIVE_ALIAS};
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::{DeployError, Deployer};
use selfbuild_tests::lambda_fixture::{create_role, stored_zip};
use selfbuild_tests::moto::MotoServer;

/// A function on moto with version 1 behind the alias `live`.
struct Fixture {
    _moto: std::sync::Arc<MotoServer>,
    lambda: aws_sdk_lambda::Client,
    deployer: LambdaDeployer,
    function: ComponentId,
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
    /// Creates `name` with `initial`, without publishing anything or creating the alias.
    async fn unpublished(name: &str, initial: &LambdaSettings) -> Self {
        let moto = MotoServer::shared();
        let sdk = moto.sdk_config().await;
        let lambda = aws_sdk_lambda::Client::new(&sdk);
        let role = create_role(&moto, &format!("{name}-role")).await;
        lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(stored_zip(
                        "bootstrap",
                        b"#!/bin/sh\necho '{}'\n",
                    )))
                    .build(),
            )
            .memory_size(i32::try_from(initial.memory_mb).unwrap())
            .timeout(i32::try_from(initial.timeout_seconds).unwrap())
            .environment(
                Environment::builder()
                    .set_variables(Some(initial.environment.clone().into_iter().collect()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        if let Some(n) = initial.reserved_concurrency {
            lambda
                .put_function_concurrency()
                .function_name(name)
                .reserved_concurrent_executions(i32::try_from(n).unwrap())
                .send()
                .await
                .unwrap();
        }
        Self {
            deployer: LambdaDeployer::from_client(lambda.clone()),
            lambda,
            function: ComponentId::parse(name).unwrap(),
            _moto: moto,
        }
    }

    /// Creates `name` with `initial`, publishes version 1 and points `live` at it.
    async fn new(name: &str, initial: &LambdaSettings) -> Self {
        let fixture = Self::unpublished(name, initial).await;
        let version = fixture
            .lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .unwrap();
        assert_eq!(version.version(), Some("1"));
        fixture.create_alias("1").await;
        fixture
    }

    async fn create_alias(&self, version: &str) {
        self.lambda
            .create_alias()
            .function_name(self.function.as_str())
            .name(LIVE_ALIAS)
            .function_version(version)
            .send()
            .await
            .unwrap();
    }

    /// The alias's version and additional weights.
    async fn routing(&self) -> (String, Vec<(String, f64)>) {
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
        (alias.function_version().unwrap().to_owned(), weights)
    }

    /// Memory, timeout and environment of a version (`$LATEST` included), as settings
    /// with the function's current reservation.
    async fn version_settings(&self, version: &str) -> LambdaSettings {
        let config = self
            .lambda
            .get_function_configuration()
            .function_name(self.function.as_str())
            .qualifier(version)
            .send()
            .await
            .unwrap();
        LambdaSettings {
            memory_mb: u32::try_from(config.memory_size().unwrap()).unwrap(),
            timeout_seconds: u32::try_from(config.timeout().unwrap()).unwrap(),
            reserved_concurrency: self.reserved().await,
            environment: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }

    async fn reserved(&self) -> Option<u32> {
        self.lambda
            .get_function_concurrency()
            .function_name(self.function.as_str())
            .send()
            .await
            .unwrap()
            .reserved_concurrent_executions()
            .map(|n| u32::try_from(n).unwrap())
    }

    /// Every version's name, `$LATEST` first.
    async fn versions(&self) -> Vec<String> {
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
        .deploy_canary("imp-1", &f.function, &next, 0.1)
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
        .deploy_canary("imp-1", &f.function, &next, 0.1)
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
        .deploy_canary("imp-1", &f.function, &other, 0.1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("other settings")),
        "{err}"
    );
    let err = f
        .deployer
        .deploy_canary("imp-1", &f.function, &next, 0.2)
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");
    let err = f
        .deployer
        .deploy_canary("imp-2", &f.function, &other, 0.1)
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
        .deploy_canary("imp", &f.function, &next, 0.25)
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
        .deploy_canary("imp", &f.function, &next, 0.25)
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
        .deploy_canary("imp", &f.function, &next, 0.1)
        .await
        .unwrap();
    // GIVEN an attempt that stopped after the reservation changed, before the alias routed:
    // the alias as it was, the version published, the reservation already 9
    f.lambda
        .update_alias()
        .function_name(f.function.as_str())
        .name(LIVE_ALIAS)
        .function_version("1")
        .routing_config(
            AliasRoutingConfiguration::builder()
                .set_additional_version_weights(Some(Default::default()))
                .build(),
        )
        .description("")
        .send()
        .await
        .unwrap();
    assert_eq!(f.reserved().await, Some(9));

    // WHEN it is retried
    let again = f
        .deployer
        .deploy_canary("imp", &f.function, &next, 0.1)
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
        .deploy_canary("imp-1", &f.function, &next, 0.5)
        .await
        .unwrap();
    f.deployer.rollback(&d1).await.unwrap();
    let d2 = f
        .deployer
        .deploy_canary("imp-2", &f.function, &next, 0.5)
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
        .deploy_canary("imp-1", &f.function, &next, 0.5)
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
        .deploy_canary("x", &ghost, &settings(256, 3, None), 0.1)
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
        .deploy_canary("x", &f.function, &next, 0.1)
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");

    f.create_alias("$LATEST").await;
    let err = f
        .deployer
        .deploy_canary("x", &f.function, &next, 0.1)
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
