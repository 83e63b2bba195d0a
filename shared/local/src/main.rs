//! The `selfbuild` command: runs selfbuild's handlers offline on embedded adapters.

use std::process::ExitCode;

use clap::Parser;

/// Threads for blocking work beside the workers (tokio's default is 512). Store statements
/// run one at a time (`selfbuild_local::store`), so two suffice; a burst of requests must
/// not become a burst of threads: with glibc each may take a malloc arena of its own that
/// keeps memory after the burst (measured by `scripts/bench-serve-soak`: with 8 the idle
/// RSS of `serve` still grew about 5 MiB a burst, with 2 it levels off).
const MAX_BLOCKING_THREADS: usize = 2;

fn main() -> ExitCode {
    selfbuild_local::cli::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error[Internal]: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(selfbuild_local::cli::run(selfbuild_local::cli::Cli::parse()))
}
