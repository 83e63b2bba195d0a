//! Test harness for selfbuild's integration tests.
//!
//! - [`moto`]: starts `moto_server` on a free port and points the AWS SDK at it.
//! - [`lambda_router`]: answers Lambda `Invoke` calls with in-process handlers, forwards the rest.
//! - [`events`]: the sample events under `events/`.

pub mod events;
pub mod lambda_router;
pub mod moto;
