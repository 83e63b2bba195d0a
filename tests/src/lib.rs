//! Test harness for selfbuild's integration tests.
//!
//! - [`moto`]: starts `moto_server` on a free port and points the AWS SDK at it.
//! - [`events`]: the sample events under `events/`.

pub mod events;
pub mod moto;
