//! The Deployer contract: one suite of checks written against the port, run on the embedded
//! fleet and on `LambdaDeployer` over moto's Lambda.
//!
//! Where the adapters differ by nature, the harness says so and the check asserts each side:
//!
//! - **Reserved concurrency** ([`DeployerHarness::FUNCTION_WIDE_RESERVATION`]): Lambda keeps
//!   one reservation per function, so from a deploy on it is the canary's, and
//!   `function_state` reports it beside the stable version's memory, timeout and environment;
//!   the fleet keeps one per version and reports the stable version's.
//! - **Partial deploys** ([`DeployerHarness::PARTIAL_DEPLOYS`]): the states a deploy that
//!   stopped part-way can leave. Lambda's deploy is several calls (update `$LATEST`, publish,
//!   reserve, route), each of which can be the last; the fleet applies a deploy under one
//!   lock, so a deploy it failed changed nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use selfbuild_aws::LambdaDeployer;
use selfbuild_aws::lambda_code::PackageFetcher;
use selfbuild_aws::lambda_code::rewrite::code_sha256;
use selfbuild_core::change::{CodeBase, CodeRelease, DeploySpec, FilePatch, LambdaSettings};
use selfbuild_core::clock::FixedClock;
use selfbuild_core::deployment::{FunctionState, LIVE_ALIAS};
use selfbuild_core::ids::{ComponentId, ImprovementId};
use selfbuild_core::ports::{DeployError, Deployer};
use selfbuild_local::fleet::{Fleet, Scenario};
use selfbuild_tests::improvement_id;
use selfbuild_tests::lambda_fixture::{MotoFunction, bootstrap_zip};
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::package_host;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::lambda_code::{ORDERS_PY, python_function};
use crate::lambda_code_deployer::{fix, other_fix};

const T0: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

/// A state a deploy that stopped part-way leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    /// The deploy call failed before changing anything.
    Refused,
    /// The unpublished configuration has the canary's settings; nothing is published.
    SettingsApplied,
    /// The canary version is published; the reservation and the routing are as before.
    PublishedNotRouted,
    /// The canary version is published and the reservation changed; the alias routes as before.
    ReservedNotRouted,
}

/// One adapter under the contract, with what it cannot do stated.
pub trait DeployerHarness {
    /// The adapter.
    type D: Deployer;
    /// Reserved concurrency is one value per function (Lambda), not one per version.
    const FUNCTION_WIDE_RESERVATION: bool;
    /// Every state a deploy of this adapter can stop in part-way.
    const PARTIAL_DEPLOYS: &'static [Partial];

    /// A new function with version 1 on `initial` behind the alias `live`.
    async fn function(&self, name: &str, initial: &LambdaSettings) -> (Self::D, ComponentId);

    /// A new function as [`DeployerHarness::function`] makes it, left as a deploy of
    /// `improvement` with `settings` and `weight` leaves it when it stops at `partial`.
    async fn interrupted(
        &self,
        name: &str,
        initial: &LambdaSettings,
        partial: Partial,
        improvement: &ImprovementId,
        settings: &LambdaSettings,
        weight: f64,
    ) -> (Self::D, ComponentId);

    /// How many versions of `function` are published.
    async fn published_versions(&self, deployer: &Self::D, function: &ComponentId) -> usize;

    /// The package hash `function_state` reports for a function [`DeployerHarness::function`]
    /// made (none where the function has no code).
    fn code_sha256(&self) -> Option<String>;

    /// A new Python function (`python3.12`, `orders.py` as [`ORDERS_PY`]) with version 1
    /// behind the alias `live`, and a deployer that can read and patch its code.
    async fn code_function(&self, name: &str) -> (Self::D, ComponentId);
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn initial(reserved: Option<u32>) -> LambdaSettings {
    LambdaSettings {
        memory_mb: 256,
        timeout_seconds: 10,
        reserved_concurrency: reserved,
        environment: env(&[("MODE", "safe"), ("REGION_HINT", "eu")]),
    }
}

/// Every setting differs from [`initial`]'s, the environment loses a variable and gains one.
fn canary(reserved: Option<u32>) -> LambdaSettings {
    LambdaSettings {
        memory_mb: 512,
        timeout_seconds: 20,
        reserved_concurrency: reserved,
        environment: env(&[("MODE", "fast"), ("NEW", "1")]),
    }
}

/// What a new function reports: version 1 on `settings`, alone behind the alias.
fn fresh<H: DeployerHarness>(
    h: &H,
    function: &ComponentId,
    settings: &LambdaSettings,
) -> FunctionState {
    FunctionState {
        code_sha256: h.code_sha256(),
        function: function.clone(),
        settings: settings.clone(),
        alias: LIVE_ALIAS.to_owned(),
        stable_version: "1".to_owned(),
        canary: None,
    }
}

fn rejected<T: std::fmt::Debug>(result: Result<T, DeployError>, what: &str) -> String {
    match result {
        Err(DeployError::Rejected(message)) => message,
        other => panic!("{what}: expected a rejection, got {other:?}"),
    }
}

/// The reservation `function_state` reports while a canary with `canary_reserved` runs
/// beside a stable version with `stable_reserved`.
fn reserved_during_canary<H: DeployerHarness>(
    stable_reserved: Option<u32>,
    canary_reserved: Option<u32>,
) -> Option<u32> {
    if H::FUNCTION_WIDE_RESERVATION {
        canary_reserved
    } else {
        stable_reserved
    }
}

pub async fn a_new_function_is_version_1_alone_behind_the_alias<H: DeployerHarness>(h: &H) {
    let settings = initial(Some(5));
    let (d, f) = h.function("state", &settings).await;
    assert_eq!(d.function_state(&f).await.unwrap(), fresh(h, &f, &settings));
}

pub async fn a_deploy_is_a_new_version_beside_the_stable_one_and_idempotent_per_improvement<
    H: DeployerHarness,
>(
    h: &H,
) {
    let (d, f) = h.function("idempotent", &initial(None)).await;
    let before = d.function_state(&f).await.unwrap();
    let next = canary(Some(7));
    let versions_before = h.published_versions(&d, &f).await;

    let first = d
        .deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(first.improvement_id, "imp-1");
    assert_eq!(first.baseline, before);
    assert_eq!(first.settings, next);
    assert_eq!(first.weight, 0.1);
    assert_ne!(first.canary_version, before.stable_version);
    assert_eq!(h.published_versions(&d, &f).await, versions_before + 1);

    // WHEN the same deploy is made again THEN the same deployment, nothing new published or routed
    let again = d
        .deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(h.published_versions(&d, &f).await, versions_before + 1);
    let state = d.function_state(&f).await.unwrap();
    assert_eq!(state.stable_version, before.stable_version);
    assert_eq!(state.canary, Some((first.canary_version.clone(), 0.1)));
    assert_eq!(
        state.settings,
        LambdaSettings {
            reserved_concurrency: reserved_during_canary::<H>(None, Some(7)),
            ..before.settings.clone()
        },
        "the stable version's settings (reservation: function-wide = {})",
        H::FUNCTION_WIDE_RESERVATION
    );
}

pub async fn a_deploy_of_the_same_improvement_with_other_settings_or_weight_is_refused<
    H: DeployerHarness,
>(
    h: &H,
) {
    let (d, f) = h.function("other-settings", &initial(None)).await;
    let next = canary(None);
    let deployed = d
        .deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.1,
        )
        .await
        .unwrap();
    let during = d.function_state(&f).await.unwrap();
    let versions = h.published_versions(&d, &f).await;

    let more_memory = LambdaSettings {
        memory_mb: 1024,
        ..next.clone()
    };
    rejected(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(more_memory.clone()),
            0.1,
        )
        .await,
        "other settings",
    );
    let reserved = LambdaSettings {
        reserved_concurrency: Some(3),
        ..next.clone()
    };
    rejected(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(reserved.clone()),
            0.1,
        )
        .await,
        "another reservation",
    );
    rejected(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.2,
        )
        .await,
        "another weight",
    );
    // Nothing changed.
    assert_eq!(d.function_state(&f).await.unwrap(), during);
    assert_eq!(h.published_versions(&d, &f).await, versions);
    assert_eq!(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.1
        )
        .await
        .unwrap(),
        deployed
    );
}

pub async fn a_second_improvement_is_refused_while_a_canary_is_routed<H: DeployerHarness>(h: &H) {
    let (d, f) = h.function("busy", &initial(None)).await;
    let first = d
        .deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(canary(None).clone()),
            0.1,
        )
        .await
        .unwrap();
    let during = d.function_state(&f).await.unwrap();
    let versions = h.published_versions(&d, &f).await;
    let message = rejected(
        d.deploy_canary(
            &improvement_id("imp-2"),
            &f,
            &DeploySpec::Config(canary(Some(4)).clone()),
            0.1,
        )
        .await,
        "a second canary",
    );
    assert!(message.contains(&first.canary_version), "{message}");
    assert_eq!(d.function_state(&f).await.unwrap(), during);
    assert_eq!(h.published_versions(&d, &f).await, versions);
}

pub async fn promote_routes_everything_to_the_canary_and_is_idempotent<H: DeployerHarness>(h: &H) {
    let (d, f) = h.function("promote", &initial(Some(5))).await;
    let next = canary(Some(25));
    let deployed = d
        .deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.25,
        )
        .await
        .unwrap();

    d.promote(&deployed).await.unwrap();
    d.promote(&deployed).await.unwrap();

    assert_eq!(
        d.function_state(&f).await.unwrap(),
        FunctionState {
            stable_version: deployed.canary_version.clone(),
            settings: next.clone(),
            ..fresh(h, &f, &next)
        }
    );
    // A retried deploy of the promoted improvement changes nothing.
    assert_eq!(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.25
        )
        .await
        .unwrap(),
        deployed
    );
    assert_eq!(
        d.function_state(&f).await.unwrap().stable_version,
        deployed.canary_version
    );
}

pub async fn rollback_restores_the_exact_baseline_and_is_idempotent<H: DeployerHarness>(h: &H) {
    let start = initial(Some(5));
    let (d, f) = h.function("rollback", &start).await;
    let before = d.function_state(&f).await.unwrap();
    let deployed = d
        .deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(canary(Some(9)).clone()),
            0.1,
        )
        .await
        .unwrap();

    d.rollback(&deployed).await.unwrap();
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    d.rollback(&deployed).await.unwrap();
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    assert_eq!(before, fresh(h, &f, &start));
}

pub async fn rollback_after_promotion_restores_the_baseline_and_promote_is_then_refused<
    H: DeployerHarness,
>(
    h: &H,
) {
    let (d, f) = h.function("promoted-rollback", &initial(None)).await;
    let before = d.function_state(&f).await.unwrap();
    let deployed = d
        .deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(canary(Some(25)).clone()),
            0.25,
        )
        .await
        .unwrap();
    d.promote(&deployed).await.unwrap();

    d.rollback(&deployed).await.unwrap();
    d.rollback(&deployed).await.unwrap();
    assert_eq!(d.function_state(&f).await.unwrap(), before);

    let message = rejected(d.promote(&deployed).await, "promote after rollback");
    assert!(message.contains("rolled back"), "{message}");
    assert_eq!(d.function_state(&f).await.unwrap(), before);
}

pub async fn a_rolled_back_improvement_deployed_again_changes_nothing<H: DeployerHarness>(h: &H) {
    let (d, f) = h.function("redeploy", &initial(Some(2))).await;
    let before = d.function_state(&f).await.unwrap();
    let next = canary(Some(3));
    let deployed = d
        .deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.5,
        )
        .await
        .unwrap();
    d.rollback(&deployed).await.unwrap();
    let versions = h.published_versions(&d, &f).await;

    assert_eq!(
        d.deploy_canary(
            &improvement_id("imp-0"),
            &f,
            &DeploySpec::Config(next.clone()),
            0.5
        )
        .await
        .unwrap(),
        deployed
    );
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    assert_eq!(h.published_versions(&d, &f).await, versions);
}

pub async fn a_deploy_that_stopped_part_way_is_finished_by_a_retry_and_rolled_back_exactly<
    H: DeployerHarness,
>(
    h: &H,
) {
    assert!(!H::PARTIAL_DEPLOYS.is_empty(), "every deploy can fail");
    let start = initial(Some(5));
    let next = canary(Some(9));
    for (i, partial) in H::PARTIAL_DEPLOYS.iter().enumerate() {
        // GIVEN a deploy that stopped at `partial`
        let (d, f) = h
            .interrupted(
                &format!("partial-{i}"),
                &start,
                *partial,
                &improvement_id("imp-0"),
                &next,
                0.2,
            )
            .await;
        let state = d.function_state(&f).await.unwrap();
        assert_eq!(
            (state.stable_version.as_str(), &state.canary),
            ("1", &None),
            "{partial:?}: no traffic moved"
        );

        // WHEN it is retried
        let deployed = d
            .deploy_canary(
                &improvement_id("imp-0"),
                &f,
                &DeploySpec::Config(next.clone()),
                0.2,
            )
            .await
            .unwrap();

        // THEN it routes the canary against the baseline from before the first attempt
        assert_eq!(deployed.baseline, fresh(h, &f, &start), "{partial:?}");
        assert_eq!(deployed.settings, next, "{partial:?}");
        assert_eq!(
            d.function_state(&f).await.unwrap().canary,
            Some((deployed.canary_version.clone(), 0.2)),
            "{partial:?}"
        );
        assert_eq!(
            h.published_versions(&d, &f).await,
            2,
            "{partial:?}: one canary version"
        );

        // AND a rollback restores that baseline exactly
        d.rollback(&deployed).await.unwrap();
        assert_eq!(
            d.function_state(&f).await.unwrap(),
            fresh(h, &f, &start),
            "{partial:?}"
        );
    }
}

pub async fn after_a_later_deploy_an_older_improvement_is_neither_rolled_back_nor_revived<
    H: DeployerHarness,
>(
    h: &H,
) {
    let (d, f) = h.function("later", &initial(None)).await;
    let before = d.function_state(&f).await.unwrap();
    let older = d
        .deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(canary(None).clone()),
            0.5,
        )
        .await
        .unwrap();
    d.rollback(&older).await.unwrap();
    let newer_settings = canary(Some(3));
    let newer = d
        .deploy_canary(
            &improvement_id("imp-2"),
            &f,
            &DeploySpec::Config(newer_settings.clone()),
            0.5,
        )
        .await
        .unwrap();
    assert_eq!(newer.baseline, before);
    assert_ne!(newer.canary_version, older.canary_version);
    let during = d.function_state(&f).await.unwrap();

    // WHEN the older improvement is rolled back, or its deploy retried, THEN both are refused
    let message = rejected(
        d.rollback(&older).await,
        "rollback of the older improvement",
    );
    assert!(message.contains("deployed again"), "{message}");
    rejected(
        d.deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(canary(None).clone()),
            0.5,
        )
        .await,
        "a retry of the older improvement",
    );
    assert_eq!(d.function_state(&f).await.unwrap(), during);

    d.rollback(&newer).await.unwrap();
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    rejected(
        d.deploy_canary(
            &improvement_id("imp-1"),
            &f,
            &DeploySpec::Config(canary(None).clone()),
            0.5,
        )
        .await,
        "a retry of the older improvement after the newer one's rollback",
    );
    assert_eq!(d.function_state(&f).await.unwrap(), before);
}

pub async fn a_code_patch_ships_onto_the_code_it_was_judged_against_and_rolls_back<
    H: DeployerHarness,
>(
    h: &H,
) {
    let (d, f) = h.code_function("code").await;
    let before = d.function_state(&f).await.unwrap();
    let base = CodeBase {
        code_sha256: before.code_sha256.clone(),
        runtime: Some("python3.12".into()),
    };
    let spec = |files: Vec<FilePatch>, base: CodeBase| DeploySpec::Code {
        settings: before.settings.clone(),
        release: CodeRelease { files, base },
    };
    // Judged against other code: refused, nothing published.
    let stale = CodeBase {
        code_sha256: Some("not-the-live-code".into()),
        ..base.clone()
    };
    rejected(
        d.deploy_canary(&improvement_id("code-0"), &f, &spec(fix(), stale), 0.1)
            .await,
        "a patch judged against other code",
    );
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    assert_eq!(h.published_versions(&d, &f).await, 1);

    let patch = spec(fix(), base.clone());
    let deployed = d
        .deploy_canary(&improvement_id("code-1"), &f, &patch, 0.1)
        .await
        .unwrap();
    let code = deployed.code.clone().expect("a code version");
    assert_eq!(Some(&code.base_code_sha256), before.code_sha256.as_ref());
    assert_ne!(code.code_sha256, code.base_code_sha256);
    assert_eq!(code.files, ["orders.py", "lib/ids.py"]);
    assert_eq!(deployed.baseline, before);
    assert_eq!(
        d.function_state(&f).await.unwrap().canary,
        Some((deployed.canary_version.clone(), 0.1))
    );
    // A retry is the same deployment; another patch for the improvement is refused.
    assert_eq!(
        d.deploy_canary(&improvement_id("code-1"), &f, &patch, 0.1)
            .await
            .unwrap(),
        deployed
    );
    rejected(
        d.deploy_canary(
            &improvement_id("code-1"),
            &f,
            &spec(other_fix(), base.clone()),
            0.1,
        )
        .await,
        "another patch for the same improvement",
    );
    assert_eq!(h.published_versions(&d, &f).await, 2);
    // Promoted, the patched code is the stable code; rolled back, the code before.
    d.promote(&deployed).await.unwrap();
    assert_eq!(
        d.function_state(&f).await.unwrap().code_sha256,
        Some(code.code_sha256.clone())
    );
    d.rollback(&deployed).await.unwrap();
    assert_eq!(d.function_state(&f).await.unwrap(), before);
}

pub async fn unknown_functions_and_weights_outside_zero_to_one_are_refused<H: DeployerHarness>(
    h: &H,
) {
    let (d, f) = h.function("known", &initial(None)).await;
    let ghost = ComponentId::parse("ghost-function-of-the-contract").unwrap();
    let message = rejected(
        d.function_state(&ghost).await,
        "state of an unknown function",
    );
    assert!(message.contains(ghost.as_str()), "{message}");
    let message = rejected(
        d.deploy_canary(
            &improvement_id("x-1"),
            &ghost,
            &DeploySpec::Config(canary(None).clone()),
            0.1,
        )
        .await,
        "deploy to an unknown function",
    );
    assert!(message.contains(ghost.as_str()), "{message}");
    let before = d.function_state(&f).await.unwrap();
    for weight in [0.0, -0.1, 1.5, f64::NAN] {
        rejected(
            d.deploy_canary(
                &improvement_id("x-1"),
                &f,
                &DeploySpec::Config(canary(None).clone()),
                weight,
            )
            .await,
            &format!("weight {weight}"),
        );
    }
    assert_eq!(d.function_state(&f).await.unwrap(), before);
    assert_eq!(h.published_versions(&d, &f).await, 1);
}

// ------------------------------------------------------------------------------------------
// The adapters

/// The fleet: one fleet per function, its clock stopped at [`T0`].
pub struct FleetHarness;

impl FleetHarness {
    fn fleet(name: &str, initial: &LambdaSettings, fails_first_deploy: bool) -> Fleet {
        Self::fleet_with_code(name, initial, fails_first_deploy, None)
    }

    /// [`FleetHarness::fleet`], the function running `code` (a scenario's `functions[].code`).
    fn fleet_with_code(
        name: &str,
        initial: &LambdaSettings,
        fails_first_deploy: bool,
        code: Option<serde_json::Value>,
    ) -> Fleet {
        let faults = if fails_first_deploy {
            serde_json::json!([{"operation": "deploy_canary", "function": name, "failures": 1}])
        } else {
            serde_json::json!([])
        };
        let scenario = serde_json::json!({
            "name": format!("deployer-contract-{name}"),
            "now": "2026-11-22T05:00:00Z",
            "functions": [{
                "name": name,
                "settings": initial,
                "workload": {"invocations_per_minute": 10, "work_ms_at_1024mb": 50, "memory_used_mb": 64}
            }],
            "expect": {},
            "faults": faults,
        });
        let mut scenario = scenario;
        if let Some(code) = code {
            scenario["functions"][0]["code"] = code;
        }
        let scenario = Scenario::parse(&scenario.to_string(), "deployer contract").unwrap();
        Fleet::new(&scenario, Arc::new(FixedClock(T0))).unwrap()
    }
}

impl DeployerHarness for FleetHarness {
    type D = Fleet;
    const FUNCTION_WIDE_RESERVATION: bool = false;
    const PARTIAL_DEPLOYS: &'static [Partial] = &[Partial::Refused];

    async fn function(&self, name: &str, initial: &LambdaSettings) -> (Fleet, ComponentId) {
        (
            Self::fleet(name, initial, false),
            ComponentId::parse(name).unwrap(),
        )
    }

    async fn interrupted(
        &self,
        name: &str,
        initial: &LambdaSettings,
        partial: Partial,
        improvement: &ImprovementId,
        settings: &LambdaSettings,
        weight: f64,
    ) -> (Fleet, ComponentId) {
        assert_eq!(
            partial,
            Partial::Refused,
            "the fleet cannot stop in {partial:?}"
        );
        let fleet = Self::fleet(name, initial, true);
        let function = ComponentId::parse(name).unwrap();
        let err = fleet
            .deploy_canary(
                improvement,
                &function,
                &DeploySpec::Config((settings).clone()),
                weight,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DeployError::Unavailable(_)), "{err}");
        (fleet, function)
    }

    async fn published_versions(&self, fleet: &Fleet, function: &ComponentId) -> usize {
        (1..)
            .take_while(|v: &usize| fleet.version_settings(function, &v.to_string()).is_some())
            .count()
    }

    fn code_sha256(&self) -> Option<String> {
        None
    }

    async fn code_function(&self, name: &str) -> (Fleet, ComponentId) {
        let code = serde_json::json!({
            "handler": "orders.handler",
            "runtime": "python3.12",
            "files": {"orders.py": ORDERS_PY},
        });
        (
            Self::fleet_with_code(name, &initial(None), false, Some(code)),
            ComponentId::parse(name).unwrap(),
        )
    }
}

/// `LambdaDeployer` on the shared moto server, kept up while the check runs; function
/// names are numbered so that checks running at the same time never share one.
pub struct LambdaHarness {
    _moto: Arc<MotoServer>,
}

impl LambdaHarness {
    fn new() -> Self {
        Self {
            _moto: MotoServer::shared(),
        }
    }
}

static NEXT_FUNCTION: AtomicUsize = AtomicUsize::new(0);

impl LambdaHarness {
    async fn moto_function(name: &str, initial: &LambdaSettings) -> MotoFunction {
        let n = NEXT_FUNCTION.fetch_add(1, Ordering::Relaxed);
        MotoFunction::new(&format!("contract-{n}-{name}"), initial).await
    }

    fn deployer(function: &MotoFunction) -> LambdaDeployer {
        LambdaDeployer::from_client(function.lambda.clone()).with_clock(Arc::new(FixedClock(T0)))
    }
}

impl DeployerHarness for LambdaHarness {
    type D = LambdaDeployer;
    const FUNCTION_WIDE_RESERVATION: bool = true;
    const PARTIAL_DEPLOYS: &'static [Partial] = &[
        Partial::SettingsApplied,
        Partial::PublishedNotRouted,
        Partial::ReservedNotRouted,
    ];

    async fn function(
        &self,
        name: &str,
        initial: &LambdaSettings,
    ) -> (LambdaDeployer, ComponentId) {
        let function = Self::moto_function(name, initial).await;
        (Self::deployer(&function), function.function.clone())
    }

    /// A deploy is undone from its end (the routing, then the reservation) to stage the
    /// states after publishing; the state before it is staged by changing `$LATEST` alone.
    async fn interrupted(
        &self,
        name: &str,
        initial: &LambdaSettings,
        partial: Partial,
        improvement: &ImprovementId,
        settings: &LambdaSettings,
        weight: f64,
    ) -> (LambdaDeployer, ComponentId) {
        let function = Self::moto_function(name, initial).await;
        let deployer = Self::deployer(&function);
        match partial {
            Partial::SettingsApplied => function.update_latest(settings).await,
            Partial::PublishedNotRouted | Partial::ReservedNotRouted => {
                deployer
                    .deploy_canary(
                        improvement,
                        &function.function,
                        &DeploySpec::Config((settings).clone()),
                        weight,
                    )
                    .await
                    .unwrap();
                function.point_alias_at("1").await;
                if partial == Partial::PublishedNotRouted {
                    function.set_reserved(initial.reserved_concurrency).await;
                }
            }
            Partial::Refused => panic!("a refused Lambda call is unit-tested with a mocked client"),
        }
        (deployer, function.function.clone())
    }

    async fn published_versions(&self, _: &LambdaDeployer, function: &ComponentId) -> usize {
        MotoFunction::existing(function)
            .await
            .versions()
            .await
            .iter()
            .filter(|v| *v != "$LATEST")
            .count()
    }

    fn code_sha256(&self) -> Option<String> {
        Some(code_sha256(&bootstrap_zip()))
    }

    /// The package is served by a local listener standing in for S3 (see `lambda_code`).
    async fn code_function(&self, name: &str) -> (LambdaDeployer, ComponentId) {
        let n = NEXT_FUNCTION.fetch_add(1, Ordering::Relaxed);
        let (function, zip) = python_function(&self._moto, &format!("contract-{n}-{name}")).await;
        let (base, _) = package_host::fixed(200, zip).await;
        let lambda = MotoFunction::existing(&function).await.lambda;
        let deployer = LambdaDeployer::from_client(lambda)
            .with_clock(Arc::new(FixedClock(T0)))
            .with_packages(PackageFetcher::new().with_base_url(base.parse().unwrap()));
        (deployer, function)
    }
}

macro_rules! deployer_contract {
    ($($check:ident),* $(,)?) => {
        mod fleet {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::FleetHarness).await;
                }
            )*
        }

        mod lambda_on_moto {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&super::LambdaHarness::new()).await;
                }
            )*
        }
    };
}

deployer_contract!(
    a_new_function_is_version_1_alone_behind_the_alias,
    a_deploy_is_a_new_version_beside_the_stable_one_and_idempotent_per_improvement,
    a_deploy_of_the_same_improvement_with_other_settings_or_weight_is_refused,
    a_second_improvement_is_refused_while_a_canary_is_routed,
    promote_routes_everything_to_the_canary_and_is_idempotent,
    rollback_restores_the_exact_baseline_and_is_idempotent,
    rollback_after_promotion_restores_the_baseline_and_promote_is_then_refused,
    a_rolled_back_improvement_deployed_again_changes_nothing,
    a_deploy_that_stopped_part_way_is_finished_by_a_retry_and_rolled_back_exactly,
    after_a_later_deploy_an_older_improvement_is_neither_rolled_back_nor_revived,
    unknown_functions_and_weights_outside_zero_to_one_are_refused,
    a_code_patch_ships_onto_the_code_it_was_judged_against_and_rolls_back,
);
