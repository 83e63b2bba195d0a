//! Code patches shipped by the Deployer adapter over Lambda: `GetFunction` and
//! `UpdateFunctionCode` / `PublishVersion` / `UpdateAlias` on moto's control plane, the
//! package fetched from a local listener standing in for S3 (as in `lambda_code`).
//!
//! What moto 5.2.6 does not check, the unit tests in `selfbuild_aws::lambda_deployer` cover
//! with a mocked client: it ignores `RevisionId` on `UpdateFunctionCode` (and returns none
//! for a function), ignores `CodeSha256` on `PublishVersion`, and reports every update
//! `Successful` at once.

use std::sync::{Arc, Mutex};

use aws_sdk_lambda::primitives::Blob;
use selfbuild_aws::LambdaDeployer;
use selfbuild_aws::lambda_code::PackageFetcher;
use selfbuild_aws::lambda_code::rewrite::{code_sha256, patch_package};
use selfbuild_core::change::{CodeBase, CodeRelease, DeploySpec, FilePatch, LambdaSettings};
use selfbuild_core::deployment::CodeVersion;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::{DeployError, Deployer};
use selfbuild_tests::improvement_id;
use selfbuild_tests::lambda_fixture::{MotoFunction, stored_zip};
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::package_host;

use crate::lambda_code::python_function;

/// A patch of `orders.py` (as `lambda_code::python_function` deploys it) and a new module.
pub(crate) fn fix() -> Vec<FilePatch> {
    vec![
        FilePatch {
            path: "orders.py".into(),
            language: Some("python".into()),
            diff: "--- a/orders.py\n+++ b/orders.py\n@@ -1,2 +1,3 @@\n \
                   def handler(event, context):\n\
                   +    event.setdefault(\"id\", None)\n     \
                   return {\"statusCode\": 200}\n"
                .into(),
        },
        FilePatch {
            path: "lib/ids.py".into(),
            language: Some("python".into()),
            diff: "--- /dev/null\n+++ b/lib/ids.py\n@@ -0,0 +1 @@\n+PREFIX = \"o-\"\n".into(),
        },
    ]
}

/// Another patch of `orders.py`.
pub(crate) fn other_fix() -> Vec<FilePatch> {
    vec![FilePatch {
        path: "orders.py".into(),
        language: None,
        diff: "--- a/orders.py\n+++ b/orders.py\n@@ -1,2 +1,2 @@\n \
               def handler(event, context):\n\
               -    return {\"statusCode\": 200}\n\
               +    return {\"statusCode\": 204}\n"
            .into(),
    }]
}

/// A Python function on moto, its deployed zip served by a local listener, and a deployer
/// fetching from that listener.
struct CodeFixture {
    function: ComponentId,
    moto_function: MotoFunction,
    deployer: LambdaDeployer,
    zip: Vec<u8>,
    /// The paths the listener was asked for.
    fetched: Arc<Mutex<Vec<String>>>,
}

impl CodeFixture {
    async fn new(suffix: &str) -> Self {
        let moto = MotoServer::shared();
        let (function, zip) = python_function(&moto, suffix).await;
        let (base, fetched) = package_host::fixed(200, zip.clone()).await;
        let moto_function = MotoFunction::existing(&function).await;
        let deployer = LambdaDeployer::from_client(moto_function.lambda.clone())
            .with_packages(PackageFetcher::new().with_base_url(base.parse().unwrap()));
        Self {
            function,
            moto_function,
            deployer,
            zip,
            fetched,
        }
    }

    /// The patch `files` onto the deployed code, as validation hands it over.
    async fn release(&self, files: Vec<FilePatch>) -> DeploySpec {
        let state = self.deployer.function_state(&self.function).await.unwrap();
        DeploySpec::Code {
            settings: state.settings,
            release: CodeRelease {
                files,
                base: CodeBase {
                    code_sha256: state.code_sha256,
                    runtime: Some("python3.12".into()),
                },
            },
        }
    }

    /// A version's (or `$LATEST`'s) `CodeSha256` and description.
    async fn code(&self, version: &str) -> (String, String) {
        let config = self
            .moto_function
            .lambda
            .get_function_configuration()
            .function_name(self.function.as_str())
            .qualifier(version)
            .send()
            .await
            .unwrap();
        (
            config.code_sha256().unwrap_or_default().to_owned(),
            config.description().unwrap_or_default().to_owned(),
        )
    }

    fn fetches(&self) -> usize {
        self.fetched.lock().unwrap().len()
    }
}

#[tokio::test]
async fn a_code_patch_ships_as_a_canary_version_and_a_retry_uploads_nothing() {
    let f = CodeFixture::new("deliver-1").await;
    let base = code_sha256(&f.zip);
    assert_eq!(f.code("1").await.0, base);
    let spec = f.release(fix()).await;
    let expected = patch_package(&f.zip, &fix()).unwrap().code_sha256;

    // WHEN the patch is deployed as a canary
    let d = f
        .deployer
        .deploy_canary(&improvement_id("code-1"), &f.function, &spec, 0.1)
        .await
        .unwrap();

    // THEN version 2 runs the patched package beside version 1, which still runs the old one
    assert_eq!(d.canary_version, "2");
    assert_eq!(
        d.code,
        Some(CodeVersion {
            base_code_sha256: base.clone(),
            code_sha256: expected.clone(),
            files: vec!["orders.py".into(), "lib/ids.py".into()],
        })
    );
    assert_eq!(d.baseline.code_sha256.as_deref(), Some(base.as_str()));
    assert_eq!(&d.settings, spec.settings());
    assert_eq!(f.code("2").await.0, expected);
    assert_eq!(f.code("1").await.0, base);
    assert_eq!(
        f.moto_function.routing().await,
        ("1".to_owned(), vec![("2".to_owned(), 0.1)])
    );

    // WHEN it is retried THEN the same deployment comes back and nothing is published again
    let again = f
        .deployer
        .deploy_canary(&improvement_id("code-1"), &f.function, &spec, 0.1)
        .await
        .unwrap();
    assert_eq!(again, d);
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1", "2"]);

    // Another patch, or a configuration change, for the same improvement is refused.
    let other = f.release(other_fix()).await;
    let err = f
        .deployer
        .deploy_canary(&improvement_id("code-1"), &f.function, &other, 0.1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("other settings, code")),
        "{err}"
    );
    let config = DeploySpec::Config(spec.settings().clone());
    let err = f
        .deployer
        .deploy_canary(&improvement_id("code-1"), &f.function, &config, 0.1)
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Rejected(_)), "{err}");
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1", "2"]);
}

#[tokio::test]
async fn a_retry_after_publishing_reuses_the_version_and_another_patch_is_refused() {
    let f = CodeFixture::new("deliver-2").await;
    let spec = f.release(fix()).await;
    let first = f
        .deployer
        .deploy_canary(&improvement_id("code-2"), &f.function, &spec, 0.2)
        .await
        .unwrap();
    // GIVEN an attempt that stopped after publishing, before the alias routed
    f.moto_function.point_alias_at("1").await;

    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("code-2"),
            &f.function,
            &f.release(other_fix()).await,
            0.2,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("other settings, code")),
        "{err}"
    );
    let again = f
        .deployer
        .deploy_canary(&improvement_id("code-2"), &f.function, &spec, 0.2)
        .await
        .unwrap();
    assert_eq!(again.canary_version, first.canary_version);
    assert_eq!(again.code, first.code);
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1", "2"]);
    assert_eq!(
        f.moto_function.routing().await,
        ("1".to_owned(), vec![("2".to_owned(), 0.2)])
    );
}

#[tokio::test]
async fn a_patch_validated_against_other_code_is_refused_before_anything_changes() {
    let f = CodeFixture::new("deliver-3").await;
    let DeploySpec::Code { settings, release } = f.release(fix()).await else {
        unreachable!("a code release");
    };
    let latest_before = f.code("$LATEST").await;
    let stale = DeploySpec::Code {
        settings: settings.clone(),
        release: CodeRelease {
            base: CodeBase {
                code_sha256: Some(code_sha256(b"the code validation read")),
                ..release.base.clone()
            },
            ..release.clone()
        },
    };
    let err = f
        .deployer
        .deploy_canary(&improvement_id("code-3"), &f.function, &stale, 0.1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m)
            if m.contains("changed since validation") && m.contains("validate again")),
        "{err}"
    );
    // A patch that does not apply to the live code is refused too.
    let not_applying = DeploySpec::Code {
        settings,
        release: CodeRelease {
            files: vec![FilePatch {
                path: "orders.py".into(),
                language: None,
                diff: "--- a/orders.py\n+++ b/orders.py\n@@ -1 +1 @@\n-import os\n+import sys\n"
                    .into(),
            }],
            ..release
        },
    };
    let err = f
        .deployer
        .deploy_canary(&improvement_id("code-3"), &f.function, &not_applying, 0.1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m) if m.contains("does not apply")),
        "{err}"
    );
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1"]);
    assert_eq!(f.code("$LATEST").await, latest_before);
    assert_eq!(f.moto_function.routing().await, ("1".to_owned(), vec![]));
}

#[tokio::test]
async fn rollback_restores_latest_code_and_routing_and_a_config_deploy_then_ships_the_stable_code()
{
    let f = CodeFixture::new("deliver-4").await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    let latest_before = f.code("$LATEST").await;
    let d = f
        .deployer
        .deploy_canary(
            &improvement_id("code-4"),
            &f.function,
            &f.release(fix()).await,
            0.1,
        )
        .await
        .unwrap();
    let patched = d.code.clone().unwrap().code_sha256;
    assert_eq!(f.code("$LATEST").await.0, patched);
    let fetches = f.fetches();

    f.deployer.promote(&d).await.unwrap();
    assert_eq!(f.moto_function.routing().await, ("2".to_owned(), vec![]));

    // WHEN the code canary is rolled back (after its promotion), twice
    f.deployer.rollback(&d).await.unwrap();
    f.deployer.rollback(&d).await.unwrap();

    // THEN traffic, settings and $LATEST's code and description are as before
    assert_eq!(
        f.deployer.function_state(&f.function).await.unwrap(),
        before
    );
    assert_eq!(f.moto_function.routing().await, ("1".to_owned(), vec![]));
    assert_eq!(f.code("$LATEST").await, latest_before);
    // The stable package was fetched once to restore $LATEST, not again by the second call.
    assert_eq!(f.fetches(), fetches + 1);

    // A configuration change that follows publishes the stable code, not the patch.
    let next = LambdaSettings {
        memory_mb: 512,
        ..before.settings.clone()
    };
    let c = f
        .deployer
        .deploy_canary(
            &improvement_id("config-4"),
            &f.function,
            &DeploySpec::Config(next),
            0.1,
        )
        .await
        .unwrap();
    assert_eq!(c.code, None);
    assert_eq!(c.canary_version, "3");
    assert_eq!(f.code("3").await.0, latest_before.0);
}

#[tokio::test]
async fn a_config_change_is_never_published_with_stray_code_on_latest() {
    let f = CodeFixture::new("deliver-5").await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    // GIVEN $LATEST carries code no version has, uploaded by hand
    let stray = stored_zip("orders.py", b"def handler(event, context):\n    return 1\n");
    upload(&f, &stray).await;

    // WHEN a configuration change is deployed THEN it is refused before publishing
    let next = LambdaSettings {
        timeout_seconds: 30,
        ..before.settings.clone()
    };
    let err = f
        .deployer
        .deploy_canary(
            &improvement_id("config-5"),
            &f.function,
            &DeploySpec::Config(next),
            0.1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Rejected(m)
            if m.contains(&code_sha256(&stray)) && m.contains("left:")),
        "{err}"
    );
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1"]);
    assert_eq!(f.moto_function.routing().await, ("1".to_owned(), vec![]));

    // Undoing it restores $LATEST's settings and leaves the code it did not put there.
    let restored = f
        .deployer
        .undo_deploy(&improvement_id("config-5"), &f.function)
        .await
        .unwrap();
    assert_eq!(restored, Some(before.clone()));
    assert_eq!(f.code("$LATEST").await.0, code_sha256(&stray));
    assert_eq!(f.code("$LATEST").await.1, f.code("1").await.1);
}

#[tokio::test]
async fn undo_restores_latest_after_a_code_deploy_cut_short_after_its_upload() {
    let f = CodeFixture::new("deliver-6").await;
    let before = f.deployer.function_state(&f.function).await.unwrap();
    let latest_before = f.code("$LATEST").await;
    // GIVEN a code deploy that stopped after its upload: $LATEST carries the note it writes
    // first, then the patched code; nothing is published
    let patched = stored_zip("orders.py", b"def handler(event, context):\n    return 1\n");
    let note = format!(
        r#"{{"selfbuild":"code-6","stable":"1","reserved_before":null,"reserved":null,"code":"{}"}}"#,
        code_sha256(&patched)
    );
    f.moto_function
        .lambda
        .update_function_configuration()
        .function_name(f.function.as_str())
        .description(&note)
        .send()
        .await
        .unwrap();
    upload(&f, &patched).await;

    // WHEN it is undone THEN $LATEST has the stable version's code and settings again
    let restored = f
        .deployer
        .undo_deploy(&improvement_id("code-6"), &f.function)
        .await
        .unwrap();
    assert_eq!(restored, Some(before));
    assert_eq!(f.code("$LATEST").await, latest_before);
    assert_eq!(f.moto_function.versions().await, ["$LATEST", "1"]);
    // And once more: nothing is left to undo.
    let again = f
        .deployer
        .undo_deploy(&improvement_id("code-6"), &f.function)
        .await
        .unwrap();
    assert_eq!(again, None);
}

/// Uploads `zip` as `$LATEST`'s code by hand.
async fn upload(f: &CodeFixture, zip: &[u8]) {
    f.moto_function
        .lambda
        .update_function_code()
        .function_name(f.function.as_str())
        .zip_file(Blob::new(zip.to_vec()))
        .send()
        .await
        .unwrap();
}
