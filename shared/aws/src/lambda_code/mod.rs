//! A Lambda function's deployed code: `GetFunction` on the `live` alias gives the handler
//! and a presigned URL of the deployment package, which [`PackageFetcher`] fetches and
//! [`files_in_package`] reads; [`rewrite`] applies a code patch to a package and writes the
//! new zip the deployer ships.

mod package;
pub mod rewrite;

use async_trait::async_trait;
use aws_sdk_lambda::types::PackageType;
use selfbuild_core::change::CodeBase;
use selfbuild_core::deployment::LIVE_ALIAS;
use selfbuild_core::ids::ComponentId;
use selfbuild_core::ports::{CodeSource, CodeSourceError, DeployedFiles};
use tracing::instrument;

pub use package::{MAX_FILE_BYTES, MAX_PACKAGE_BYTES, PackageFetcher, files_in_package};

use crate::sdk_error::{ErrorChain, is_transient};

/// Reads deployed code from Lambda.
#[derive(Debug, Clone)]
pub struct LambdaCodeSource {
    lambda: aws_sdk_lambda::Client,
    packages: PackageFetcher,
}

impl LambdaCodeSource {
    /// A source on `sdk`'s Lambda endpoint, fetching packages with `packages`.
    pub fn new(sdk: &aws_config::SdkConfig, packages: PackageFetcher) -> Self {
        Self {
            lambda: aws_sdk_lambda::Client::new(sdk),
            packages,
        }
    }
}

#[async_trait]
impl CodeSource for LambdaCodeSource {
    #[instrument(skip(self, paths), fields(files = paths.len()))]
    async fn deployed_files(
        &self,
        component: &ComponentId,
        paths: &[&str],
    ) -> Result<DeployedFiles, CodeSourceError> {
        let function = self
            .lambda
            .get_function()
            .function_name(component.as_str())
            .qualifier(LIVE_ALIAS)
            .send()
            .await
            .map_err(|e| {
                let message = format!(
                    "GetFunction on {component}:{LIVE_ALIAS}: {}",
                    ErrorChain(&e)
                );
                if is_transient(&e) {
                    CodeSourceError::Unavailable(message)
                } else {
                    CodeSourceError::Rejected(message)
                }
            })?;
        let configuration = function.configuration();
        if configuration.and_then(|c| c.package_type()) == Some(&PackageType::Image) {
            return Err(CodeSourceError::Rejected(format!(
                "{component} is a container image; only zip packages are read"
            )));
        }
        let handler = configuration.and_then(|c| c.handler()).map(str::to_owned);
        let base = CodeBase {
            code_sha256: configuration
                .and_then(|c| c.code_sha256())
                .map(str::to_owned),
            runtime: configuration
                .and_then(|c| c.runtime())
                .map(|r| r.as_str().to_owned()),
        };
        let location = function.code().and_then(|c| c.location()).ok_or_else(|| {
            CodeSourceError::Rejected(format!("GetFunction on {component} has no Code.Location"))
        })?;
        let package = self.packages.fetch(component, location).await?;
        let files = files_in_package(&package, paths)
            .map_err(|e| CodeSourceError::Rejected(format!("{component}: {e}")))?;
        Ok(DeployedFiles {
            handler,
            files,
            base,
        })
    }
}
