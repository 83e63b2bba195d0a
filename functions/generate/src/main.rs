//! generate Lambda: wiring only. The logic is `selfbuild_core::steps`.

use selfbuild_core::steps::StepFunction;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    selfbuild_aws::steps::run(StepFunction::Generate).await
}
