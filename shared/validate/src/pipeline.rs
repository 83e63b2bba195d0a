//! The pipeline: apply each file's diff, parse old and new, run the rules, sum up.

use std::collections::BTreeSet;

use selfbuild_core::change::RiskLevel;
use selfbuild_core::code_policy::{CodePolicy, CodeVerdict, FindingSummary, PatchScope, judge};
use serde_json::{Value, json};

use crate::diff::{self, Application, DiffError};
use crate::facts::Facts;
use crate::finding::{Finding, Rule};
use crate::language::Language;
use crate::rules::{self, Ctx, Out};
use crate::settings::Settings;
use crate::source::Source;

/// The largest file (base or new) the pipeline reads.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

/// Why a file could not be validated at all (a finding is something else: a problem in a
/// patch that could be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    /// The diff is not a unified diff for this file.
    #[error("{path}: {source}")]
    Diff {
        /// The file.
        path: String,
        /// What is wrong with the diff.
        #[source]
        source: DiffError,
    },
    /// The base or the patched file is larger than [`MAX_FILE_BYTES`].
    #[error("{path}: {bytes} bytes is more than the {MAX_FILE_BYTES} bytes the pipeline reads")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        bytes: usize,
    },
    /// The patch has no file.
    #[error("the patch has no file")]
    Empty,
}

/// One file of a patch.
#[derive(Debug, Clone, Copy)]
pub struct FileInput<'a> {
    /// Repository-relative path.
    pub path: &'a str,
    /// The language; none: from the extension.
    pub language: Option<Language>,
    /// The file as it is now; none for a new file.
    pub base: Option<&'a str>,
    /// Its unified diff (`--- a/<path>` / `+++ b/<path>`, or from `/dev/null`).
    pub diff: &'a str,
}

/// What the patch as a whole is for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchContext<'a> {
    /// The target's configured handler (`orders.handler`, `src/handlers/orders.lambda_handler`,
    /// `bootstrap`).
    pub handler: Option<&'a str>,
    /// The tenant the patch is scoped to.
    pub tenant: Option<&'a str>,
}

/// One file's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: String,
    /// Its language.
    pub language: Language,
    /// What the rules found.
    pub findings: Vec<Finding>,
    /// The patch changes a handler in this file.
    pub handler_changed: bool,
    /// The file is a manifest that gains a dependency.
    pub new_dependency: bool,
    /// The file after the patch (none when a hunk did not apply).
    pub new_text: Option<String>,
}

/// A whole patch's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every file's result.
    pub files: Vec<FileReport>,
}

impl Report {
    /// Every finding, file by file.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.files.iter().flat_map(|f| f.findings.iter())
    }

    /// What core's policy reads of the findings.
    pub fn summaries(&self) -> Vec<FindingSummary> {
        self.findings().map(Finding::summary).collect()
    }

    /// How far the patch reaches: files, handler change, new dependency.
    pub fn scope(&self) -> PatchScope {
        PatchScope {
            files: self.files.len(),
            handler_changed: self.files.iter().any(|f| f.handler_changed),
            new_dependency: self.files.iter().any(|f| f.new_dependency),
        }
    }

    /// Core's decision for this patch under `policy`.
    pub fn verdict(&self, policy: &CodePolicy) -> CodeVerdict {
        judge(&self.summaries(), &self.scope(), policy)
    }

    /// `{"decision", "risk", "findings": [{"rule", "risk", "path", "line", "col", "message"}]}`.
    pub fn to_json(&self, verdict: &CodeVerdict) -> Value {
        let findings: Vec<Value> = self
            .findings()
            .map(|f| {
                json!({
                    "rule": f.rule.id(),
                    "risk": f.risk.as_str(),
                    "path": f.path,
                    "line": f.line,
                    "col": f.col,
                    "message": f.message,
                })
            })
            .collect();
        json!({
            "decision": verdict.decision.as_str(),
            "risk": verdict.risk.as_str(),
            "findings": findings,
        })
    }
}

/// Validates every file of a patch.
pub fn validate_patch(
    files: &[FileInput<'_>],
    context: &PatchContext<'_>,
    settings: &Settings,
) -> Result<Report, ValidateError> {
    if files.is_empty() {
        return Err(ValidateError::Empty);
    }
    let files = files
        .iter()
        .map(|f| validate_file(f, context, settings))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report { files })
}

/// Validates one file: applies its diff, parses both versions, runs every rule.
pub fn validate_file(
    input: &FileInput<'_>,
    context: &PatchContext<'_>,
    settings: &Settings,
) -> Result<FileReport, ValidateError> {
    let path = input.path.trim_start_matches("./");
    let language = input.language.unwrap_or_else(|| Language::from_path(path));
    let too_large = |bytes: usize| ValidateError::TooLarge {
        path: path.to_owned(),
        bytes,
    };
    let base = input.base.unwrap_or("");
    if base.len() > MAX_FILE_BYTES {
        return Err(too_large(base.len()));
    }
    if input.diff.len() > 2 * MAX_FILE_BYTES {
        return Err(too_large(input.diff.len()));
    }
    let patch = diff::parse(input.diff, path).map_err(|source| ValidateError::Diff {
        path: path.to_owned(),
        source,
    })?;
    let is_new_file = input.base.is_none() || diff::creates_file(input.diff) && base.is_empty();
    let mut out = Out::new(path);
    let applied = match diff::apply(base, &patch) {
        Application::Applied(a) => a,
        Application::Failed { hunk, old_line } => {
            out.at(
                Rule::PatchApplies,
                RiskLevel::Critical,
                old_line,
                1,
                format!(
                    "hunk #{hunk} (at old line {old_line}) does not match the file as it is; the patch was made against another version"
                ),
                false,
            );
            // The protected-path rule needs no new text.
            let empty = BTreeSet::new();
            let src = Source::parse("", Language::Text);
            let facts = Facts::default();
            let ctx = Ctx {
                path,
                language,
                new: &src,
                facts: &facts,
                old: None,
                old_facts: None,
                added: &empty,
                removal_rows: &empty,
                removed_old_rows: &empty,
                removed_at: &std::collections::BTreeMap::new(),
                settings,
                tenant: context.tenant,
                handler: context.handler,
            };
            rules::protected_only(&ctx, &mut out);
            return Ok(FileReport {
                path: path.to_owned(),
                language,
                findings: out.findings,
                handler_changed: false,
                new_dependency: false,
                new_text: None,
            });
        }
    };
    if applied.new_text.len() > MAX_FILE_BYTES {
        return Err(too_large(applied.new_text.len()));
    }
    // The old file first: the new one is parsed incrementally from its tree.
    let old = (!is_new_file).then(|| Source::parse(base, language));
    let new = match &old {
        Some(old) => Source::parse_edited(&applied.new_text, old),
        None => Source::parse(&applied.new_text, language),
    };
    let facts = Facts::of(&new);
    let old_facts = old.as_ref().map(Facts::of);
    let ctx = Ctx {
        path,
        language,
        new: &new,
        facts: &facts,
        old: old.as_ref(),
        old_facts: old_facts.as_ref(),
        added: &applied.added_rows,
        removal_rows: &applied.removal_rows,
        removed_old_rows: &applied.removed_old_rows,
        removed_at: &applied.removed_at,
        settings,
        tenant: context.tenant,
        handler: context.handler,
    };
    rules::run(&ctx, &mut out);
    let mut findings = out.findings;
    findings.sort_by(|a, b| {
        (
            a.pre_existing,
            std::cmp::Reverse(a.risk),
            a.line,
            a.col,
            a.rule,
        )
            .cmp(&(
                b.pre_existing,
                std::cmp::Reverse(b.risk),
                b.line,
                b.col,
                b.rule,
            ))
    });
    Ok(FileReport {
        path: path.to_owned(),
        language,
        findings,
        handler_changed: out.handler_changed,
        new_dependency: out.new_dependency,
        new_text: Some(applied.new_text),
    })
}
