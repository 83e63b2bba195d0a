//! Test harness for selfbuild's integration and end-to-end tests.
//!
//! - [`moto`]: starts `moto_server` on a free port and points the AWS SDK at it.
//! - [`lambda_router`]: answers Lambda `Invoke` calls with in-process handlers or forwards them
//!   to `cargo lambda watch`, and forwards the rest to moto.
//! - [`cargo_lambda`]: `cargo lambda watch` processes running the real function binaries.
//! - [`fault_proxy`]: a proxy in front of moto that throttles, fails, delays or drops a share
//!   of calls (or lets them take effect and fails the answer), and logs every call.
//! - [`recorded`]: a listener answering with recorded HTTP responses, routed by request
//!   body (Bedrock stand-in).
//! - [`package_host`]: listeners standing in for the host of `GetFunction`'s `Code.Location`
//!   (deployment packages).
//! - [`lambda_fixture`]: an IAM role and a ZIP archive for functions on moto's Lambda, and
//!   [`lambda_fixture::MotoFunction`], a function behind the alias `live`.
//! - [`cloudwatch_fixture`]: alarms, metric data and log events on moto.
//! - [`peer_agent`]: a registered agent played by the MCP Python SDK, recording its calls.
//! - [`http`]: minimal HTTP/1.1 over loopback TCP, shared by the above.
//! - [`child`]: waiting for a started server to answer, or failing with its log.
//! - [`events`]: the sample events under `events/`.

pub mod cargo_lambda;
pub mod child;
pub mod cloudwatch_fixture;
pub mod events;
pub mod fault_proxy;
pub mod http;
pub mod lambda_fixture;
pub mod lambda_router;
pub mod moto;
pub mod package_host;
pub mod peer_agent;
pub mod recorded;

/// An improvement id from a test's literal; panics on one that is not `<cycle>-<rank>`.
pub fn improvement_id(text: &str) -> selfbuild_core::ids::ImprovementId {
    selfbuild_core::ids::ImprovementId::parse(text).expect("a test improvement id")
}
