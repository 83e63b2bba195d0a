//! generate Lambda: wiring only. The logic is `selfbuild_core::steps`; the code a stack
//! trace points at is read from Lambda for the prompt. Code patches are not checked here
//! (`selfbuild-validate` is linked into the validate function alone), so the repair round
//! runs where a checker is linked (the embedded runner).

use selfbuild_aws::lambda_code::{LambdaCodeSource, PackageFetcher};
use selfbuild_core::ports::NoCodeChecker;
use selfbuild_core::steps::StepFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let sdk = selfbuild_aws::sdk_config().await;
    let code = LambdaCodeSource::new(&sdk, PackageFetcher::from_env()?);
    selfbuild_aws::steps::run_checking(StepFunction::Generate, &code, &NoCodeChecker).await
}
