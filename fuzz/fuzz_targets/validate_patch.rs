//! The code-patch pipeline on arbitrary files and diffs, as an LLM's `code_patch` hands them
//! over: `selfbuild_validate::validate_file` in every language.
//!
//! The first byte picks the language and the mode; the rest is two texts split at the first
//! NUL. Mode "diff": the second text is the diff, applied to the first (mostly malformed
//! diffs: errors, never panics). Mode "edit": a real unified diff from the first text to the
//! second (what parses, applies and reaches every rule).
//!
//! Properties: never panics; a finding is located at line ≥ 1, column ≥ 1, and inside the
//! file (except a hunk that does not apply, which names the line its header claims); a
//! finding that blocks is one of core's blocking rules; a diff made from the base applies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfbuild_core::code_policy::rule_blocks;
use selfbuild_validate::{FileInput, Language, PatchContext, Settings, validate_file};

const LANGUAGES: [(Language, &str); 8] = [
    (Language::Python, "src/app.py"),
    (Language::JavaScript, "src/app.js"),
    (Language::TypeScript, "src/app.ts"),
    (Language::Tsx, "src/app.tsx"),
    (Language::Rust, "src/main.rs"),
    (Language::Json, "config/app.json"),
    (Language::Yaml, "config/app.yaml"),
    (Language::Text, "README.md"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (language, path) = LANGUAGES[usize::from(pick) % LANGUAGES.len()];
    let text = String::from_utf8_lossy(rest);
    let (first, second) = text.split_once('\0').unwrap_or((&text, ""));
    let edit = pick & 0x80 != 0;
    let diff = if edit {
        diffy::create_patch(first, second).to_string()
    } else {
        second.to_owned()
    };
    let new_file = pick & 0x40 != 0 && !edit;
    let input = FileInput {
        path,
        language: Some(language),
        base: (!new_file).then_some(first),
        diff: &diff,
    };
    let context = PatchContext {
        handler: Some("app.handler"),
        tenant: Some("acme"),
    };
    let Ok(report) = validate_file(&input, &context, &Settings::defaults()) else {
        return;
    };
    let lines = |t: &str| t.lines().count().max(1);
    let new_lines = report
        .new_text
        .as_deref()
        .map_or(usize::MAX, lines)
        .saturating_add(1);
    let old_lines = lines(first) + 1;
    for f in &report.findings {
        assert!(f.line >= 1 && f.col >= 1, "{f:?}");
        if f.rule.id() != "patch_applies" {
            assert!(f.line <= new_lines.max(old_lines), "{f:?} beyond the file");
        }
        if f.summary().blocking {
            assert!(
                rule_blocks(f.rule.id()) || f.rule.id() == "patch_applies",
                "{f:?}"
            );
        }
    }
    if edit {
        // A diff made from the base always applies.
        assert!(
            report
                .findings
                .iter()
                .all(|f| f.rule.id() != "patch_applies"),
            "a diffy patch from the base did not apply"
        );
    }
});
