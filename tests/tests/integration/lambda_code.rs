//! The deployed code of a Lambda function as the validate function reads it: `GetFunction`
//! on moto (handler, `Code.Location`), the package fetched from a local listener standing in
//! for S3 (moto's presigned URL names a host that does not resolve here; the fetcher is
//! pointed at the listener with its base URL, as it would be at a VPC endpoint), and the
//! files a patch touches read from the zip.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use selfbuild_aws::lambda_code::{LambdaCodeSource, PackageFetcher};
use selfbuild_core::deployment::LIVE_ALIAS;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::{CodeSource, CodeSourceError};
use selfbuild_tests::lambda_fixture::{create_role, stored_zip};
use selfbuild_tests::moto::MotoServer;
use selfbuild_tests::package_host;

pub(crate) const ORDERS_PY: &str =
    "def handler(event, context):\n    return {\"statusCode\": 200}\n";

/// `orders-api-<suffix>` on moto: a Python zip with `orders.py`, version 1 behind `live`.
pub(crate) async fn python_function(moto: &MotoServer, suffix: &str) -> (ComponentId, Vec<u8>) {
    let name = format!("orders-api-{suffix}");
    let sdk = moto.sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let role = create_role(moto, &format!("{name}-role")).await;
    let zip = stored_zip("orders.py", ORDERS_PY.as_bytes());
    lambda
        .create_function()
        .function_name(&name)
        .runtime(Runtime::Python312)
        .handler("orders.handler")
        .role(role)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip.clone()))
                .build(),
        )
        .send()
        .await
        .expect("CreateFunction on moto");
    lambda
        .publish_version()
        .function_name(&name)
        .send()
        .await
        .expect("PublishVersion on moto");
    lambda
        .create_alias()
        .function_name(&name)
        .name(LIVE_ALIAS)
        .function_version("1")
        .send()
        .await
        .expect("CreateAlias on moto");
    (ComponentId::parse(&name).expect("a name"), zip)
}

#[tokio::test]
async fn the_live_package_is_read_from_the_location_getfunction_gives() {
    let moto = MotoServer::shared();
    let (function, zip) = python_function(&moto, "code-1").await;
    let (base, seen) = package_host::fixed(200, zip).await;
    let source = LambdaCodeSource::new(
        &moto.sdk_config().await,
        PackageFetcher::new().with_base_url(base.parse().expect("a URL")),
    );
    let deployed = source
        .deployed_files(&function, &["orders.py", "lib/new.py"])
        .await
        .expect("read");
    assert_eq!(deployed.handler.as_deref(), Some("orders.handler"));
    assert_eq!(deployed.files["orders.py"].as_deref(), Some(ORDERS_PY));
    assert_eq!(deployed.files["lib/new.py"], None);
    // The path and query of moto's Code.Location were kept, only the host moved.
    let paths = seen.lock().expect("paths").clone();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].len() > 1, "{paths:?}");
}

#[tokio::test]
async fn a_failing_package_host_or_a_missing_function_is_an_error_of_the_right_kind() {
    let moto = MotoServer::shared();
    let (function, _) = python_function(&moto, "code-2").await;
    let sdk = moto.sdk_config().await;
    for (status, unavailable) in [(503, true), (403, false)] {
        let (base, _) = package_host::fixed(status, b"nope".to_vec()).await;
        let source = LambdaCodeSource::new(
            &sdk,
            PackageFetcher::new().with_base_url(base.parse().expect("a URL")),
        );
        let err = source
            .deployed_files(&function, &["orders.py"])
            .await
            .expect_err("fails");
        assert_eq!(
            matches!(err, CodeSourceError::Unavailable(_)),
            unavailable,
            "{status}: {err}"
        );
        assert!(err.to_string().contains(&status.to_string()), "{err}");
    }
    // Not a zip: refused, naming the function.
    let (base, _) = package_host::fixed(200, b"not a zip".to_vec()).await;
    let source = LambdaCodeSource::new(
        &sdk,
        PackageFetcher::new().with_base_url(base.parse().expect("a URL")),
    );
    let err = source
        .deployed_files(&function, &["orders.py"])
        .await
        .expect_err("fails");
    assert!(
        matches!(&err, CodeSourceError::Rejected(m) if m.contains("not a zip")),
        "{err}"
    );
    let missing = ComponentId::parse("no-such-function").expect("a name");
    let err = source
        .deployed_files(&missing, &["orders.py"])
        .await
        .expect_err("no function");
    assert!(
        matches!(&err, CodeSourceError::Rejected(m) if m.contains("GetFunction")),
        "{err}"
    );
}
