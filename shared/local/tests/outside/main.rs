//! The `selfbuild` binary from the outside, as a separate process: store faults through the
//! CLI and `serve`, and `serve`'s connection limits over raw TCP (issue 12, items 5 and 6).

// Test helpers fail the test by unwrapping, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod newcomer;
mod serve_limits;
mod store_faults;
mod support;
