//! selfbuild offline: embedded adapters for every port and the `selfbuild` CLI.
//!
//! - [`store`]: the Store ports over a SQLite file in the data directory.
//! - [`orchestrator`]: an Orchestrator that records started cycles in the store.
//! - [`asl`]: an in-process Amazon States Language interpreter that runs the state machine.
//! - [`alarms`]: an AlarmSource over saved `describe-alarms` output.
//! - [`bundled`]: the files of `events/` shipped in the binary, so the CLI runs from anywhere.
//! - [`fleet`]: simulated Lambda functions (Telemetry and Deployer) whose metrics respond to their configuration.
//! - [`planner`]: embedded Llm adapters: the rule planner and recorded answers.
//! - [`cycle`]: runs cycles offline: the ASL on the embedded interpreter over the core step
//!   functions, on event-driven virtual time; approvals by a scenario, nobody or a person.
//! - [`demo`]: `selfbuild demo`: every scenario as a cycle, with a summary table.
//! - [`serve`]: `selfbuild serve`: the MCP endpoint on TCP over the embedded adapters.
//! - [`logs`]: `selfbuild logs mine`: log records grouped into templates by the core miner.
//! - [`health`]: `selfbuild health` (one self health pass) and `enable-component`.
//! - [`inspect`]: `selfbuild status`, `list` and `show` over the store.
//! - [`report`]: `selfbuild report`: one improvement as a self-contained HTML page with charts.
//! - [`invoke`]: `selfbuild invoke`: one function's handler on a payload, on embedded adapters.
//! - [`peers`]: registered agents called over MCP offline (own runtime, keys from a file).
//! - [`output`]: `--output json|table`, timestamps, `error[Type]` lines with hints, exit codes.
//! - [`cli`]: the `selfbuild` command line (`invoke`, `halt`, `resume`, `status`, `serve`,
//!   `logs mine`, …).

pub mod alarms;
pub mod asl;
pub mod bundled;
pub mod cli;
pub mod cycle;
pub mod demo;
pub mod fleet;
pub mod health;
pub mod inspect;
pub mod invoke;
pub mod logs;
pub mod orchestrator;
pub mod output;
pub mod peers;
pub mod planner;
pub mod proposal;
pub mod report;
pub mod serve;
pub mod store;
