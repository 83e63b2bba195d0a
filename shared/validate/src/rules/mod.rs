//! The rules: one module per family, each reading the facts of the new file (and of the old
//! one where a change matters), reporting findings only on what the patch adds or changes;
//! the same problem elsewhere in the file is reported once as pre-existing, at LOW.
//!
//! - `syntax`: tree-sitter ERROR/MISSING nodes; Python's gap (tabs, dedents, Python 2
//!   statements, misplaced return/break/await, argument order); JSON and YAML.
//! - `execution`: code execution from data, shell commands.
//! - `destructive`: recursive deletes, DROP/TRUNCATE, unbounded DELETE/UPDATE, deleting
//!   buckets and tables, Scan-then-delete loops.
//! - `sql`: SQL built from strings reaching an execute/query call.
//! - `deserialization`: pickle, marshal, unsafe YAML, node-serialize, merges of request data.
//! - `network`: TLS verification off, egress off the allow-list, exfiltration.
//! - `secrets`: credentials in the text, entropy-aware.
//! - `protected`: protected paths.
//! - `compat`: handler, exports, parameter counts, Rust `unsafe`.
//! - `tenant`: other tenants' ids, dropped tenant conditions, Query turned into Scan.
//! - `imports`: imports outside the allow-list, new manifest dependencies.

mod compat;
mod deserialization;
mod destructive;
mod execution;
mod imports;
mod network;
mod protected;
pub(crate) mod python_syntax;
mod secrets;
mod sql;
mod syntax;
mod tenant;

use std::collections::BTreeSet;

use selfbuild_core::change::RiskLevel;

use crate::facts::{Call, Facts};
use crate::finding::{Finding, Rule};
use crate::language::Language;
use crate::settings::Settings;
use crate::source::{Loc, Source};

/// Pre-existing findings reported per file, at most.
const MAX_PRE_EXISTING: usize = 10;

/// What every rule reads.
pub(crate) struct Ctx<'a, 't> {
    /// The file's repository path.
    pub path: &'a str,
    /// Its language.
    pub language: Language,
    /// The file after the patch.
    pub new: &'a Source<'t>,
    /// Its facts.
    pub facts: &'a Facts,
    /// The file before the patch (none for a new file).
    pub old: Option<&'a Source<'t>>,
    /// Its facts.
    pub old_facts: Option<&'a Facts>,
    /// Rows of the new file the patch adds or changes.
    pub added: &'a BTreeSet<usize>,
    /// Rows of the new file where lines were removed.
    pub removal_rows: &'a BTreeSet<usize>,
    /// Rows of the old file the patch removes.
    pub removed_old_rows: &'a BTreeSet<usize>,
    /// Each removed old row → the new row where it was.
    pub removed_at: &'a std::collections::BTreeMap<usize, usize>,
    /// The settings.
    pub settings: &'a Settings,
    /// The tenant the patch is scoped to.
    pub tenant: Option<&'a str>,
    /// The configured handler.
    pub handler: Option<&'a str>,
}

impl Ctx<'_, '_> {
    /// Whether any row from `loc.row` to `loc.end_row` is added or changed.
    pub fn changed(&self, loc: Loc) -> bool {
        self.added
            .range(loc.row..=loc.end_row.max(loc.row))
            .next()
            .is_some()
    }

    /// Where in the new file old rows `from..=to` went: the first removed row among them, else
    /// the first changed row.
    pub fn removal_loc(&self, from: usize, to: usize) -> Loc {
        let row = self
            .removed_at
            .range(from..=to.max(from))
            .next()
            .map(|(_, &new)| new)
            .or_else(|| self.added.first().copied())
            .or_else(|| self.removal_rows.first().copied())
            .unwrap_or(0);
        let row = row.min(self.new.line_count().saturating_sub(1));
        Loc {
            row,
            col: 1,
            end_row: row,
        }
    }

    /// Whether a call, or a binding its arguments were read through, is changed.
    pub fn call_changed(&self, call: &Call) -> bool {
        self.changed(call.loc) || call.dep_rows.iter().any(|r| self.added.contains(r))
    }
}

/// Findings of one file, with pre-existing ones capped.
pub(crate) struct Out<'a> {
    path: &'a str,
    /// The findings.
    pub findings: Vec<Finding>,
    pre_existing: usize,
    /// The patch changes the handler (or a conventional entry point).
    pub handler_changed: bool,
    /// A package manifest gains a dependency.
    pub new_dependency: bool,
}

impl<'a> Out<'a> {
    /// No findings yet.
    pub fn new(path: &'a str) -> Self {
        Self {
            path,
            findings: Vec::new(),
            pre_existing: 0,
            handler_changed: false,
            new_dependency: false,
        }
    }

    /// A finding on what the patch changes.
    pub fn add(&mut self, rule: Rule, risk: RiskLevel, loc: Loc, message: impl Into<String>) {
        self.at(rule, risk, loc.row + 1, loc.col, message.into(), false);
    }

    /// A finding at a 1-based line and column.
    pub fn at(
        &mut self,
        rule: Rule,
        risk: RiskLevel,
        line: usize,
        col: usize,
        message: String,
        pre_existing: bool,
    ) {
        if self
            .findings
            .iter()
            .any(|f| f.rule == rule && f.line == line && f.col == col)
        {
            return;
        }
        self.findings.push(Finding {
            rule,
            risk,
            path: self.path.to_owned(),
            line: line.max(1),
            col: col.max(1),
            message,
            pre_existing,
        });
    }

    /// A finding: on a changed line as is; elsewhere as pre-existing, at LOW, not blocking.
    pub fn report(
        &mut self,
        changed: bool,
        rule: Rule,
        risk: RiskLevel,
        loc: Loc,
        message: impl Into<String>,
    ) {
        let message = message.into();
        if changed {
            self.add(rule, risk, loc, message);
        } else if self.pre_existing < MAX_PRE_EXISTING {
            self.pre_existing += 1;
            self.at(
                rule,
                RiskLevel::Low,
                loc.row + 1,
                loc.col,
                format!(
                    "pre-existing, not changed by this patch (would be {}): {message}",
                    risk.as_str()
                ),
                true,
            );
        }
    }
}

/// The rules that need no new text (a hunk did not apply).
pub(crate) fn protected_only(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    protected::check(ctx, out);
}

/// Runs every rule on one file.
pub(crate) fn run(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    protected::check(ctx, out);
    syntax::check(ctx, out);
    secrets::check(ctx, out);
    if ctx.new.tree.is_some() {
        execution::check(ctx, out);
        destructive::check(ctx, out);
        sql::check(ctx, out);
        deserialization::check(ctx, out);
        network::check(ctx, out);
        compat::check(ctx, out);
        tenant::check(ctx, out);
    }
    imports::check(ctx, out);
}

/// The first `n` characters of `text`, on one line, for a message.
pub(crate) fn excerpt(text: &str, n: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(n)
        .collect();
    if text.chars().count() > n {
        format!("{one_line}…")
    } else {
        one_line
    }
}

/// A callee without Node's `node:` prefix (`node:child_process.exec` → `child_process.exec`).
pub(crate) fn norm(callee: &str) -> &str {
    callee.strip_prefix("node:").unwrap_or(callee)
}

/// Shells that run their `-c` argument as a command line.
pub(crate) const SHELLS: [&str; 12] = [
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "/bin/sh",
    "/bin/bash",
    "/usr/bin/bash",
    "/usr/bin/sh",
    "cmd",
    "cmd.exe",
    "powershell",
];

/// Whether an argument list runs a shell on a command line with a dynamic part.
pub(crate) fn shell_c_with_data(items: &[crate::facts::Val]) -> Option<bool> {
    // `.args(["-c", cmd])` passes a list: its elements are arguments like the others.
    let flat: Vec<crate::facts::Val> = items
        .iter()
        .flat_map(|v| match v {
            crate::facts::Val::List(inner) => inner.clone(),
            other => vec![other.clone()],
        })
        .collect();
    let items = flat.as_slice();
    let program = items.first()?.as_str()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    if !SHELLS.iter().any(|s| s.rsplit('/').next() == Some(program)) {
        return None;
    }
    let c = items
        .iter()
        .position(|v| matches!(v.as_str(), Some("-c" | "/c" | "/C" | "-Command")))?;
    Some(items[c + 1..].iter().any(|v| !v.is_constant()))
}

#[cfg(test)]
mod tests;
