//! selfbuild's domain: types, ports and handler logic, with no AWS SDK.
//!
//! - [`ids`]: identifier newtypes (`TenantId`, `ComponentId`, `CycleId`, `DedupKey`).
//! - [`alarm`]: alarms as intake sees them; tenant/component extraction, critical names.
//! - [`event`]: parsing the EventBridge events intake accepts.
//! - [`cycle`]: the cycle request (state machine input) and cycle records.
//! - [`ports`]: the traits adapters implement (store, orchestrator, alarm source).
//! - [`intake`]: the alarm-intake handler (R1–R4).
//! - [`config`]: configuration from environment variables.
//! - [`clock`]: the Clock port.
//! - [`emf`]: metrics as CloudWatch Embedded Metric Format lines.
//! - [`error`]: port errors and the stable error type names.

pub mod alarm;
pub mod clock;
pub mod config;
pub mod cycle;
pub mod emf;
pub mod error;
pub mod event;
pub mod ids;
pub mod intake;
pub mod ports;

pub use config::Config;
