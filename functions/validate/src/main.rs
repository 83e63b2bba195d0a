//! validate Lambda: wiring only. The logic is `selfbuild_core::steps`; code patches are
//! read from Lambda and checked by `selfbuild-validate`, linked into this function alone.

use selfbuild_aws::lambda_code::{LambdaCodeSource, PackageFetcher};
use selfbuild_core::steps::StepFunction;
use selfbuild_validate::{PipelineChecker, Settings};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let checker = PipelineChecker::new(Settings::from_env()?);
    let sdk = selfbuild_aws::sdk_config().await;
    let code = LambdaCodeSource::new(&sdk, PackageFetcher::from_env()?);
    selfbuild_aws::steps::run_checking(StepFunction::Validate, &code, &checker).await
}
