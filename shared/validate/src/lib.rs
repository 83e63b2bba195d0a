//! selfbuild's code-patch validation pipeline (SPEC R8, issue 14).
//!
//! - [`language`]: the languages, told from extensions.
//! - [`settings`]: protected paths, egress and import allow-lists, known tenants.
//! - [`diff`]: unified diffs parsed and applied with `diffy`; the rows a patch changes.
//! - [`finding`]: rules, findings and their summary for core's policy.
//! - `source`: a parsed file and positions; `facts`: what a file says, across languages.
//! - `rules`: one module per rule family, reading the facts of the new (and old) file.
//! - [`validate_file`] / [`validate_patch`]: the pipeline; core's `code_policy` decides.
//! - [`PipelineChecker`]: the pipeline as core's `CodeChecker` port (the validate step).

mod checker;
mod facts;
mod pipeline;
mod rules;
mod source;

pub mod diff;
pub mod finding;
pub mod language;
pub mod settings;

pub use checker::{PipelineChecker, language_of};
pub use finding::{Finding, Rule};
pub use language::Language;
pub use pipeline::{
    FileInput, FileReport, MAX_FILE_BYTES, PatchContext, Report, ValidateError, validate_file,
    validate_patch,
};
pub use selfbuild_core::code_policy::{CodeDecision, CodePolicy, CodeVerdict};
pub use settings::Settings;
