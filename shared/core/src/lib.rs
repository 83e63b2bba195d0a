//! selfbuild's domain: types, ports and handler logic, with no AWS SDK.
//!
//! - [`ids`]: identifier newtypes (`TenantId`, `ComponentId`, `CycleId`, `DedupKey`).
//! - [`idsource`]: where the unguessable part of new cycle ids comes from.
//! - [`agents`]: registered agents as peers: windows, owners, dependents, notices, and
//!   the declaration of their own metrics.
//! - [`peers`]: dependent agents told of a deploy, promote or rollback, whoever made it.
//! - [`alarm`]: alarms as intake sees them; tenant/component extraction, critical names.
//! - [`event`]: parsing the EventBridge events intake accepts.
//! - [`change`]: proposals and the changes they carry; risk levels.
//! - [`telemetry`]: metric series and error rows.
//! - [`deployment`]: function state and canaries in flight.
//! - [`cycle`]: the cycle request (state machine input) and cycle records.
//! - [`ports`]: every trait adapters implement (store, orchestrator, telemetry, deployer, LLM,
//!   notifier, key source, metric sink, clock, id source), one file per outside system.
//! - [`analyze`]: telemetry → ranked opportunities (R5, R6), agents' own metrics included
//!   (R10.2).
//! - [`generate`]: prompts and proposals from the LLM (R7).
//! - [`validate`]: bounds, scope, risk and approval policy (R8).
//! - [`code_policy`]: the R8 policy for code patches: blocking rules, scope, decision.
//! - [`component`]: new components (R18): the rules' decision, the LLM's draft and its checks.
//! - [`canary`]: deploy, monitor, promote and rollback (R10–R12).
//! - [`audit`]: audit events and notifications (R13).
//! - [`apikeys`]: MCP API keys: digests, tenant and scopes, constant-time checks (R17).
//! - [`approval`]: pending approvals, approvers, resuming a waiting execution (R9).
//! - [`steps`]: each cycle function's request types and entry point.
//! - [`improvement`]: the Map item each step adds its result to.
//! - [`health`]: the self health pass: checks, heal plan, disabling after failed heals (R20).
//! - [`intake`]: the alarm-intake handler (R1–R4).
//! - [`logstream`]: CloudWatch Logs subscription deliveries: decoding, error lines, the
//!   per-function miner state and the new-template / rate-jump rule (R3 real time).
//! - [`records`]: improvement records, LLM usage, registered agents, tool-call accounting.
//! - [`config`]: configuration from environment variables.
//! - [`clock`]: the system clock and a fixed one.
//! - [`emf`]: metrics as CloudWatch Embedded Metric Format lines.
//! - [`stats`]: canary statistics (Mann–Whitney U, percentiles, mean, relative change).
//! - [`logfacts`]: Lambda facts in log lines: JSON and text records read by their fields,
//!   `REPORT` facts per function version, failures per request, stack traces grouped,
//!   timeouts clustered or spread.
//! - [`logmine`]: log lines grouped into templates (a streaming miner with a serialisable
//!   state, and its batch form); grouping accuracy; stratified log sampling.
//! - [`error`]: port errors and the stable error type names.
//! - [`text`]: untrusted text made safe to echo in errors and logs; operator text checks.

pub mod agents;
pub mod alarm;
pub mod analyze;
pub mod apikeys;
pub mod approval;
pub mod audit;
pub mod canary;
pub mod change;
pub mod clock;
pub mod code_policy;
pub mod component;
pub mod config;
pub mod cycle;
pub mod deployment;
pub mod emf;
pub mod error;
pub mod event;
pub mod generate;
pub mod health;
pub mod ids;
pub mod idsource;
pub mod improvement;
pub mod intake;
pub mod logfacts;
pub mod logmine;
pub mod logstream;
pub mod opportunity;
pub mod peers;
pub mod ports;
pub mod records;
pub mod stats;
pub mod steps;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod text;
pub mod transition;
pub mod validate;

pub use config::Config;
