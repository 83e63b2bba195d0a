//! The `selfbuild` binary from the outside, as a separate process: store faults through the
//! CLI and `serve` (issue 12, item 6).

// Test helpers fail the test by unwrapping, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod store_faults;
mod support;
