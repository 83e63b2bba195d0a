//! Unified diffs: parsed and applied with `diffy`; which lines of the new file the patch
//! adds, and where lines were removed.

use std::collections::{BTreeMap, BTreeSet};

use selfbuild_core::change::code_patch::failed_hunk;
pub use selfbuild_core::change::code_patch::{DiffError, creates_file, parse};

/// A diff applied to its base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The file after the patch.
    pub new_text: String,
    /// 0-based rows of the new file the patch adds or changes.
    pub added_rows: BTreeSet<usize>,
    /// 0-based rows of the new file where removed lines were (the row after the removal).
    pub removal_rows: BTreeSet<usize>,
    /// 0-based rows of the old file the patch removes.
    pub removed_old_rows: BTreeSet<usize>,
    /// Each removed old row → the new row where it was.
    pub removed_at: BTreeMap<usize, usize>,
}

/// The outcome of applying: the new text, or which hunk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Application {
    /// Every hunk applied.
    Applied(Applied),
    /// Hunk `hunk` (1-based) matches nowhere; `old_line` is where it says it starts.
    Failed {
        /// The hunk's number.
        hunk: usize,
        /// Its `-` start line.
        old_line: usize,
    },
}

/// Applies `patch` to `base` (empty for a new file) and locates what it changes.
pub fn apply(base: &str, patch: &diffy::Patch<'_, str>) -> Application {
    match diffy::apply(base, patch) {
        Ok(new_text) => Application::Applied(
            from_hunks(patch, new_text).unwrap_or_else(|new_text| locate(base, new_text)),
        ),
        Err(e) => {
            let (hunk, old_line) = failed_hunk(patch, &e);
            Application::Failed { hunk, old_line }
        }
    }
}

/// The rows the hunks add and remove, read from the hunks themselves when diffy applied each
/// where it says it starts (the usual case); the text back when one landed at an offset.
fn from_hunks(patch: &diffy::Patch<'_, str>, new_text: String) -> Result<Applied, String> {
    let Some(rows) = hunk_rows(patch, &new_text) else {
        return Err(new_text);
    };
    let (added_rows, removal_rows, removed_old_rows, removed_at) = rows;
    Ok(Applied {
        new_text,
        added_rows,
        removal_rows,
        removed_old_rows,
        removed_at,
    })
}

/// Rows added, rows where lines were removed, old rows removed, and each removed old row's
/// new row, as the hunks say; none when a hunk's lines are not where it says.
type HunkRows = (
    BTreeSet<usize>,
    BTreeSet<usize>,
    BTreeSet<usize>,
    BTreeMap<usize, usize>,
);

/// The rows of [`HunkRows`], read from the hunks and checked against `new_text`.
fn hunk_rows(patch: &diffy::Patch<'_, str>, new_text: &str) -> Option<HunkRows> {
    let new_lines: Vec<&str> = new_text.split_inclusive('\n').collect();
    let mut added_rows = BTreeSet::new();
    let mut removal_rows = BTreeSet::new();
    let mut removed_old_rows = BTreeSet::new();
    let mut removed_at = BTreeMap::new();
    for hunk in patch.hunks() {
        let mut old_row = hunk.old_range().start().saturating_sub(1);
        let mut new_row = hunk.new_range().start().saturating_sub(1);
        if hunk.old_range().is_empty() {
            old_row = hunk.old_range().start();
        }
        if hunk.new_range().is_empty() {
            new_row = hunk.new_range().start();
        }
        for line in hunk.lines() {
            match line {
                diffy::Line::Context(text) | diffy::Line::Insert(text) => {
                    if new_lines.get(new_row).map(|l| l.trim_end_matches('\n'))
                        != Some(text.trim_end_matches('\n'))
                    {
                        return None;
                    }
                    if matches!(line, diffy::Line::Insert(_)) {
                        added_rows.insert(new_row);
                    } else {
                        old_row += 1;
                    }
                    new_row += 1;
                }
                diffy::Line::Delete(_) => {
                    removed_old_rows.insert(old_row);
                    removal_rows.insert(new_row);
                    removed_at.insert(old_row, new_row);
                    old_row += 1;
                }
            }
        }
    }
    Some((added_rows, removal_rows, removed_old_rows, removed_at))
}

/// Which rows the change from `base` to `new_text` adds and removes: a fresh diff of the two,
/// so the rows are where diffy actually put the hunks (it may apply one at an offset).
fn locate(base: &str, new_text: String) -> Applied {
    let mut added_rows = BTreeSet::new();
    let mut removal_rows = BTreeSet::new();
    let mut removed_old_rows = BTreeSet::new();
    let mut removed_at = BTreeMap::new();
    let fresh = diffy::create_patch(base, &new_text);
    for hunk in fresh.hunks() {
        let mut old_row = hunk.old_range().start().saturating_sub(1);
        let mut new_row = hunk.new_range().start().saturating_sub(1);
        // An empty range's start is the line before it.
        if hunk.old_range().is_empty() {
            old_row = hunk.old_range().start();
        }
        if hunk.new_range().is_empty() {
            new_row = hunk.new_range().start();
        }
        for line in hunk.lines() {
            match line {
                diffy::Line::Context(_) => {
                    old_row += 1;
                    new_row += 1;
                }
                diffy::Line::Insert(_) => {
                    added_rows.insert(new_row);
                    new_row += 1;
                }
                diffy::Line::Delete(_) => {
                    removed_old_rows.insert(old_row);
                    removal_rows.insert(new_row);
                    removed_at.insert(old_row, new_row);
                    old_row += 1;
                }
            }
        }
    }
    Applied {
        new_text,
        added_rows,
        removal_rows,
        removed_old_rows,
        removed_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "a\nb\nc\nd\n";

    #[test]
    fn applies_and_locates_added_and_removed_rows() {
        let diff = "--- a/f.py\n+++ b/f.py\n@@ -1,4 +1,4 @@\n a\n-b\n+B\n+B2\n c\n-d\n";
        let patch = parse(diff, "f.py").unwrap();
        let Application::Applied(a) = apply(BASE, &patch) else {
            panic!("applies")
        };
        assert_eq!(a.new_text, "a\nB\nB2\nc\n");
        assert_eq!(a.added_rows.iter().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            a.removed_old_rows.iter().copied().collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(a.removal_rows.contains(&4));
    }

    #[test]
    fn a_hunk_applied_at_an_offset_is_located_where_it_landed() {
        // The hunk says line 1, but the matching lines are at 3: diffy applies it there.
        let base = "x\ny\na\nb\n";
        let diff = "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n";
        let patch = parse(diff, "f.py").unwrap();
        let Application::Applied(a) = apply(base, &patch) else {
            panic!("applies")
        };
        assert_eq!(a.new_text, "x\ny\na\nB\n");
        assert_eq!(a.added_rows.iter().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(a.removed_old_rows.iter().copied().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn a_new_file_comes_from_dev_null() {
        let diff = "--- /dev/null\n+++ b/new.js\n@@ -0,0 +1,2 @@\n+x\n+y\n";
        assert!(creates_file(diff));
        let patch = parse(diff, "new.js").unwrap();
        let Application::Applied(a) = apply("", &patch) else {
            panic!("applies")
        };
        assert_eq!(a.new_text, "x\ny\n");
        assert_eq!(a.added_rows.len(), 2);
    }

    #[test]
    fn a_hunk_that_does_not_match_fails_with_its_number() {
        let diff = "--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n a\n-zzz\n+y\n";
        let patch = parse(diff, "f.py").unwrap();
        assert_eq!(
            apply(BASE, &patch),
            Application::Failed {
                hunk: 1,
                old_line: 1
            }
        );
    }

    #[test]
    fn malformed_diffs_say_what_is_wrong() {
        for (diff, says) in [
            ("hello", "header"),
            ("--- a/f\n+++ b/f\n", "hunk"),
            ("--- a/f\n+++ b/f\n@@ nonsense @@\n", "malformed"),
            (
                "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-a\n+b\n",
                "2 file headers",
            ),
        ] {
            let e = parse(diff, "f").unwrap_err().to_string();
            assert!(e.contains(says), "{diff:?}: {e}");
        }
    }

    #[test]
    fn a_plain_diff_u_of_two_files_is_read() {
        // `diff -u before.py after.py`: the headers name the files, with their times.
        let diff = "--- before.py\t2026-12-05 03:50:01.000000000 +0000\n+++ after.py\t2026-12-05 03:51:09.000000000 +0000\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n";
        let patch = parse(diff, "src/orders.py").unwrap();
        let Application::Applied(a) = apply("a\nb\n", &patch) else {
            panic!("applies")
        };
        assert_eq!(a.new_text, "a\nB\n");
    }

    #[test]
    fn git_headers_before_the_file_header_are_skipped() {
        let diff = "diff --git a/f.py b/f.py\nindex 1..2 100644\n--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n";
        let patch = parse(diff, "f.py").unwrap();
        assert!(matches!(apply("a\n", &patch), Application::Applied(_)));
    }
}
