//! selfbuild offline: embedded adapters for every port and the `selfbuild` CLI.
//!
//! - [`store`]: the Store ports over a SQLite file in the data directory.
//! - [`orchestrator`]: an Orchestrator that records started cycles in the store.
//! - [`alarms`]: an AlarmSource over saved `describe-alarms` output.
//! - [`cli`]: the `selfbuild` command line (`invoke`, `halt`, `resume`, `status`).

pub mod alarms;
pub mod cli;
pub mod orchestrator;
pub mod store;
