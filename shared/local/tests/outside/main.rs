//! The `selfbuild` binary from the outside, as a separate process: store faults through the
//! CLI and `serve`, and `serve`'s connection limits over raw TCP (issue 12, items 5 and 6);
//! two servers on one store holding a rate limit, and the access log kept on a graceful stop
//! (issue 19).

// Test helpers fail the test by unwrapping, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod newcomer;
mod serve_cost;
mod serve_limits;
mod store_faults;
mod support;
