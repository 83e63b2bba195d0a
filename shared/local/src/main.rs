//! The `selfbuild` command: runs selfbuild's handlers offline on embedded adapters.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    selfbuild_local::cli::init_tracing();
    selfbuild_local::cli::run(selfbuild_local::cli::Cli::parse()).await
}
