//! Bad input never panics: any text validated as any language (as a new file and as an edit),
//! and any text given as a diff, ends in a report or an error.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use selfbuild_validate::{FileInput, Language, PatchContext, Settings, validate_file};

const LANGUAGES: [(Language, &str); 8] = [
    (Language::Python, "h.py"),
    (Language::JavaScript, "h.js"),
    (Language::TypeScript, "h.ts"),
    (Language::Tsx, "h.tsx"),
    (Language::Rust, "src/main.rs"),
    (Language::Json, "package.json"),
    (Language::Yaml, "template.yaml"),
    (Language::Text, "requirements.txt"),
];

/// A diff that creates `text` as a new file (every line added).
fn creating(path: &str, text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut d = format!(
        "--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in &lines {
        d.push('+');
        d.push_str(l);
        d.push('\n');
    }
    d
}

/// Source-like text: the characters code is made of, so the parsers go deep.
fn code() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("("),
            Just(")"),
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just("\n"),
            Just("    "),
            Just("\t"),
            Just("\""),
            Just("'"),
            Just("`"),
            Just("${"),
            Just("f\""),
            Just("eval("),
            Just("exec("),
            Just("os.system("),
            Just("def handler(event, context):"),
            Just("exports.handler = "),
            Just("fn main() "),
            Just("unsafe "),
            Just("+"),
            Just("%"),
            Just("import "),
            Just("from "),
            Just("require("),
            Just("SELECT * FROM t WHERE "),
            Just("AKIA"),
            Just("sk-ant-"),
            Just("://"),
            Just("tenant_id"),
            Just(":"),
            Just(","),
            Just("format!("),
            Just("Command::new("),
            Just("x"),
            Just("é"),
            Just("\r"),
            Just("#"),
            Just("\\"),
            Just("@"),
            Just("="),
            Just("return "),
            Just("await "),
            Just("print "),
        ],
        0..120,
    )
    .prop_map(|parts| parts.concat())
}

fn check(language: Language, path: &str, base: Option<&str>, diff: &str) {
    let input = FileInput {
        path,
        language: Some(language),
        base,
        diff,
    };
    let settings = Settings::defaults();
    let context = PatchContext {
        handler: Some("h.handler"),
        tenant: Some("acme"),
    };
    // A report or an error; a panic fails the property.
    let _ = validate_file(&input, &context, &settings);
}

proptest! {
    // A fixed seed: the same cases on every run and machine (the house rule for property tests).
    #![proptest_config(ProptestConfig {
        cases: 128,
        rng_seed: RngSeed::Fixed(0x7a1d_a7e5),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_as_any_language_never_panics(text in any::<String>(), code in code(), which in 0usize..8) {
        let (language, path) = LANGUAGES[which];
        for t in [&text, &code] {
            check(language, path, None, &creating(path, t));
            // As an edit of the other text.
            let other = if t == &text { &code } else { &text };
            let d = diffy::create_patch(other, t).to_string();
            let d = d.replacen("--- original", &format!("--- a/{path}"), 1).replacen("+++ modified", &format!("+++ b/{path}"), 1);
            check(language, path, Some(other), &d);
        }
    }

    #[test]
    fn any_text_as_a_diff_never_panics(diff in any::<String>(), code in code(), base in code(), which in 0usize..8) {
        let (language, path) = LANGUAGES[which];
        check(language, path, Some(&base), &diff);
        let headed = format!("--- a/{path}\n+++ b/{path}\n@@ -1,3 +1,4 @@\n{code}");
        check(language, path, Some(&base), &headed);
        check(language, path, None, &headed);
    }
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    for (language, path) in LANGUAGES {
        for text in [
            "(".repeat(20_000),
            "[".repeat(20_000),
            format!("x = {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
            format!("a{}", " + a".repeat(20_000)),
        ] {
            check(language, path, None, &creating(path, &text));
        }
    }
}
