//! `code_patch`: a unified diff per file, read and applied to a tree of files.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One file of a code patch: where it is, what language, and its unified diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    /// Repository-relative path (`src/handlers/orders.py`).
    #[schemars(
        description = "The file's path inside the function's deployment package, as the prompt shows it (`app.py`, `src/handlers/orders.py`); no leading `/` or `/var/task/`."
    )]
    pub path: String,
    /// The language (`python`, `javascript`, `typescript`, `rust`, `json`, `yaml`); none:
    /// told from the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["python", "javascript", "typescript", "tsx", "rust", "json", "yaml", "text", null]))]
    pub language: Option<String>,
    /// A unified diff against the file as deployed now (`--- a/<path>` / `+++ b/<path>`;
    /// a new file from `/dev/null`).
    #[schemars(
        description = "A unified diff of this one file against its text as the prompt shows it (without the line-number prefixes): `--- a/<path>`, `+++ b/<path>`, then `@@ -l,n +l,n @@` hunks with 3 lines of context; `--- /dev/null` for a new file. Small and focused."
    )]
    pub diff: String,
}

/// The deployed code a patch was judged against: what delivery checks it still ships onto.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CodeBase {
    /// The platform's hash of the deployed package (Lambda's `CodeSha256`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// The runtime (`python3.12`, `nodejs22.x`, `provided.al2023`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

impl CodeBase {
    /// Whether selfbuild can ship a patch to this code itself: an interpreted runtime whose
    /// zip package holds the source (Python, Node.js). Compiled runtimes, container images
    /// and an unknown runtime get a reviewable artifact instead.
    pub fn is_deliverable(&self) -> bool {
        self.runtime
            .as_deref()
            .is_some_and(|r| r.starts_with("python") || r.starts_with("nodejs"))
    }
}

/// A code patch as delivery ships it: the files' diffs onto the code they were judged
/// against, with the function's settings unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRelease {
    /// The files and their diffs.
    pub files: Vec<FilePatch>,
    /// The deployed code validation read; delivery refuses when the live code is no longer it.
    pub base: CodeBase,
}

/// Why a diff cannot be read (an error, not a finding: there is nothing to judge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// The text is not a unified diff.
    #[error("malformed diff: {0}")]
    Malformed(String),
}

fn header_path(line: &str) -> Option<&str> {
    let rest = line.get(4..)?;
    let rest = rest.split('\t').next().unwrap_or(rest).trim_end();
    if rest == "/dev/null" {
        return None;
    }
    Some(
        rest.strip_prefix("a/")
            .or_else(|| rest.strip_prefix("b/"))
            .unwrap_or(rest),
    )
}

/// Checks that the diff is one file's unified diff: one `---`/`+++` header pair, a hunk, not
/// `/dev/null` on both sides.
fn check_shape(diff: &str) -> Result<(), DiffError> {
    let lines: Vec<&str> = diff.lines().collect();
    let minus: Vec<usize> = (0..lines.len())
        .filter(|&i| {
            lines[i].starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "))
        })
        .collect();
    match minus.len() {
        0 => {
            return Err(DiffError::Malformed(
                "no `--- a/<path>` / `+++ b/<path>` header".into(),
            ));
        }
        1 => {}
        n => {
            return Err(DiffError::Malformed(format!(
                "{n} file headers; give one file's diff at a time"
            )));
        }
    }
    let at = minus[0];
    if !lines[at + 2..].iter().any(|l| l.starts_with("@@ ")) {
        return Err(DiffError::Malformed("no hunk (`@@ -l,n +l,n @@`)".into()));
    }
    if header_path(lines[at]).is_none() && header_path(lines[at + 1]).is_none() {
        return Err(DiffError::Malformed("both headers are /dev/null".into()));
    }
    Ok(())
}

/// Parses `diff` (one file's unified diff). The header's names are not held against
/// `path`: `diff -u before.py after.py` names temporary files, and the caller knows which
/// file it validates.
pub fn parse<'a>(diff: &'a str, _path: &str) -> Result<diffy::Patch<'a, str>, DiffError> {
    check_shape(diff)?;
    // From the first header on: git's `diff --git`/`index` lines are not diffy's.
    let start = diff.find("--- ").unwrap_or(0);
    let body = &diff[start..];
    let patch = diffy::Patch::from_str(body).map_err(|e| DiffError::Malformed(e.to_string()))?;
    if patch.hunks().is_empty() {
        return Err(DiffError::Malformed("no hunk".into()));
    }
    Ok(patch)
}

/// Whether the diff creates the file (`--- /dev/null`).
pub fn creates_file(diff: &str) -> bool {
    diff.lines()
        .any(|l| l.starts_with("--- ") && header_path(l).is_none() && l.contains("/dev/null"))
}

/// The hunk `error` says did not apply (1-based) and the old-file line it says it starts at.
pub fn failed_hunk(patch: &diffy::Patch<'_, str>, error: &diffy::ApplyError) -> (usize, usize) {
    // diffy numbers hunks from 1 in its message: "error applying hunk #N".
    let hunk = error
        .to_string()
        .rsplit('#')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1usize);
    let old_line = patch
        .hunks()
        .get(hunk.saturating_sub(1))
        .map_or(1, |h| h.old_range().start().max(1));
    (hunk, old_line)
}

/// Whether the diff deletes the file (`+++ /dev/null`).
pub fn deletes_file(diff: &str) -> bool {
    diff.lines()
        .any(|l| l.starts_with("+++ ") && header_path(l).is_none() && l.contains("/dev/null"))
}

/// Why a patch cannot be applied to a package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A file's diff cannot be read.
    #[error("{path}: {source}")]
    Diff {
        /// The file.
        path: String,
        /// What is wrong with its diff.
        source: DiffError,
    },
    /// A hunk matches nowhere in the deployed file.
    #[error("{path}: hunk {hunk} (at line {old_line}) does not apply to the deployed file")]
    DoesNotApply {
        /// The file.
        path: String,
        /// The hunk's 1-based number.
        hunk: usize,
        /// Where the hunk says it starts.
        old_line: usize,
    },
    /// The diff changes or deletes a file the package does not have.
    #[error("{path}: not in the deployed package")]
    Missing {
        /// The file.
        path: String,
    },
    /// The diff creates a file the package already has.
    #[error("{path}: already in the deployed package; a new file's diff comes from /dev/null")]
    Exists {
        /// The file.
        path: String,
    },
    /// The deployed file is not UTF-8 text, so a text diff cannot change it.
    #[error("{path}: the deployed file is not UTF-8 text")]
    NotText {
        /// The file.
        path: String,
    },
    /// The path is absolute, climbs out with `..`, or names one file twice in the patch.
    #[error("{path}: {reason}")]
    BadPath {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What a patch does to one file of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEdit {
    /// The file's new text (changed or created).
    Write(String),
    /// The file is removed.
    Delete,
}

/// Lines a unified diff adds and removes; a `---`/`+++` pair is a file header, not a change.
pub fn diff_size(diff: &str) -> (usize, usize) {
    let lines: Vec<&str> = diff.lines().collect();
    let (mut added, mut removed) = (0, 0);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let header = line.starts_with("--- ")
            && lines
                .get(i + 1)
                .is_some_and(|next| next.starts_with("+++ "));
        if header {
            i += 2;
            continue;
        }
        if line.starts_with('+') {
            added += 1;
        } else if line.starts_with('-') {
            removed += 1;
        }
        i += 1;
    }
    (added, removed)
}

/// Checks that `path` is a relative path inside the package (no `..`, not absolute).
pub fn check_package_path(path: &str) -> Result<(), PatchError> {
    let bad = |reason| {
        Err(PatchError::BadPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("an empty path");
    }
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return bad("an absolute path; give it relative to the package root");
    }
    if path
        .split(['/', '\\'])
        .any(|part| part == ".." || part.is_empty())
    {
        return bad("a path with `..` or an empty part");
    }
    Ok(())
}

/// Applies each file's diff to the package's current files, read through `current` (the
/// file's bytes, none when the package has no such file): the edit per path. All or
/// nothing: the first file that does not apply is the error.
pub fn apply_to_package(
    files: &[FilePatch],
    mut current: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Result<BTreeMap<String, FileEdit>, PatchError> {
    let mut edits = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let path = file.path.as_str();
        check_package_path(path)?;
        if !seen.insert(path) {
            return Err(PatchError::BadPath {
                path: path.to_owned(),
                reason: "patched twice; give one diff per file",
            });
        }
        let patch = parse(&file.diff, path).map_err(|source| PatchError::Diff {
            path: path.to_owned(),
            source,
        })?;
        let base = match (current(path), creates_file(&file.diff)) {
            (Some(_), true) => {
                return Err(PatchError::Exists {
                    path: path.to_owned(),
                });
            }
            (None, false) => {
                return Err(PatchError::Missing {
                    path: path.to_owned(),
                });
            }
            (None, true) => String::new(),
            (Some(bytes), false) => String::from_utf8(bytes).map_err(|_| PatchError::NotText {
                path: path.to_owned(),
            })?,
        };
        let new_text = diffy::apply(&base, &patch).map_err(|e| {
            let (hunk, old_line) = failed_hunk(&patch, &e);
            PatchError::DoesNotApply {
                path: path.to_owned(),
                hunk,
                old_line,
            }
        })?;
        let edit = if deletes_file(&file.diff) && new_text.is_empty() {
            FileEdit::Delete
        } else {
            FileEdit::Write(new_text)
        };
        edits.insert(path.to_owned(), edit);
    }
    Ok(edits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(path: &str, before: &str, after: &str) -> FilePatch {
        let diff = diffy::create_patch(before, after)
            .to_string()
            .replacen("--- original", &format!("--- a/{path}"), 1)
            .replacen("+++ modified", &format!("+++ b/{path}"), 1);
        FilePatch {
            path: path.into(),
            language: None,
            diff,
        }
    }

    fn package(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn changes_creates_and_deletes_files() {
        let pkg = package(&[("app.py", "a\nb\n"), ("old.py", "x\n")]);
        let mut new_file = patch("new.py", "", "n\n");
        new_file.diff = new_file.diff.replacen("--- a/new.py", "--- /dev/null", 1);
        let mut gone = patch("old.py", "x\n", "");
        gone.diff = gone.diff.replacen("+++ b/old.py", "+++ /dev/null", 1);
        let edits = apply_to_package(
            &[patch("app.py", "a\nb\n", "a\nc\n"), new_file, gone],
            |p| pkg.get(p).cloned(),
        )
        .unwrap();
        assert_eq!(edits["app.py"], FileEdit::Write("a\nc\n".into()));
        assert_eq!(edits["new.py"], FileEdit::Write("n\n".into()));
        assert_eq!(edits["old.py"], FileEdit::Delete);
    }

    #[test]
    fn a_hunk_against_other_text_names_the_file_and_hunk() {
        let pkg = package(&[("app.py", "q\nr\n")]);
        let err = apply_to_package(&[patch("app.py", "a\nb\n", "a\nc\n")], |p| {
            pkg.get(p).cloned()
        })
        .unwrap_err();
        assert!(
            matches!(&err, PatchError::DoesNotApply { path, hunk: 1, .. } if path == "app.py"),
            "{err}"
        );
    }

    #[test]
    fn missing_existing_binary_and_escaping_paths_are_refused() {
        let pkg = package(&[("app.py", "a\n")]);
        let get = |p: &str| pkg.get(p).cloned();
        let err = apply_to_package(&[patch("other.py", "a\n", "b\n")], get).unwrap_err();
        assert!(matches!(err, PatchError::Missing { .. }), "{err}");
        let mut create = patch("app.py", "", "b\n");
        create.diff = create.diff.replacen("--- a/app.py", "--- /dev/null", 1);
        let err = apply_to_package(&[create], get).unwrap_err();
        assert!(matches!(err, PatchError::Exists { .. }), "{err}");
        let err = apply_to_package(&[patch("../etc/passwd", "a\n", "b\n")], get).unwrap_err();
        assert!(matches!(err, PatchError::BadPath { .. }), "{err}");
        let err = apply_to_package(&[patch("/abs.py", "a\n", "b\n")], get).unwrap_err();
        assert!(matches!(err, PatchError::BadPath { .. }), "{err}");
        let err = apply_to_package(
            &[patch("app.py", "a\n", "b\n"), patch("app.py", "a\n", "c\n")],
            get,
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::BadPath { .. }), "{err}");
        let err = apply_to_package(&[patch("bin.so", "a\n", "b\n")], |_| Some(vec![0xff, 0xfe]))
            .unwrap_err();
        assert!(matches!(err, PatchError::NotText { .. }), "{err}");
    }
}
