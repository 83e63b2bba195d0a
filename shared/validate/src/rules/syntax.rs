//! `syntax`: the new file parses. Tree-sitter's ERROR and MISSING nodes for Python,
//! JavaScript, TypeScript and Rust (plus the Python checks tree-sitter is too lenient for);
//! serde_json and serde_yaml_ng for JSON and YAML.

use selfbuild_core::change::RiskLevel;
use serde::Deserialize;

use super::{Ctx, Out, excerpt, python_syntax};
use crate::finding::Rule;
use crate::language::Language;
use crate::source::{Loc, Source, descendants};

/// Syntax errors reported per file, at most.
const MAX_ERRORS: usize = 3;

pub(crate) use crate::source::SyntaxError;

pub(super) fn check(ctx: &Ctx<'_, '_>, out: &mut Out<'_>) {
    let errors = match &ctx.facts.python_errors {
        // The Python checks that need the tree ran in the facts walk.
        Some(tree_errors) if ctx.language == Language::Python => {
            python(ctx.new, python_syntax::indentation(ctx.new), tree_errors)
        }
        _ => errors(ctx.new),
    };
    if errors.is_empty() {
        return;
    }
    let base_clean = ctx.old.is_none_or(|old| errors_of_tree(old).is_empty());
    for e in errors.into_iter().take(MAX_ERRORS) {
        let loc = Loc {
            row: e.row,
            col: e.col,
            end_row: e.end_row,
        };
        let changed = base_clean || ctx.changed(loc);
        out.report(changed, Rule::Syntax, RiskLevel::Critical, loc, e.message);
    }
}

/// Every syntax problem of a file, in order.
pub(super) fn errors(src: &Source<'_>) -> Vec<SyntaxError> {
    match src.language {
        Language::Json => json(src),
        Language::Yaml => yaml(src),
        Language::Text => Vec::new(),
        Language::Python => python(src, python_syntax::errors(src), &[]),
        _ => errors_of_tree(src),
    }
}

/// Tree-sitter's errors, then the CPython checks' on other lines.
fn python(src: &Source<'_>, checks: Vec<SyntaxError>, more: &[SyntaxError]) -> Vec<SyntaxError> {
    let mut all = errors_of_tree(src);
    for extra in checks.into_iter().chain(more.iter().cloned()) {
        if !all.iter().any(|e| e.row == extra.row) {
            all.push(extra);
        }
    }
    all.sort_by_key(|e| (e.row, e.col));
    all
}

fn errors_of_tree(src: &Source<'_>) -> Vec<SyntaxError> {
    let Some(root) = src.root() else {
        return if src.language.grammar().is_some() {
            vec![SyntaxError {
                row: 0,
                col: 1,
                end_row: 0,
                message: "the parser could not read the file".into(),
            }]
        } else {
            Vec::new()
        };
    };
    if !root.has_error() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut last_end = 0;
    for node in descendants(root) {
        if out.len() >= 20 {
            break;
        }
        if node.start_byte() < last_end && node.is_error() {
            continue;
        }
        if node.is_missing() {
            let loc = src.loc(node);
            out.push(SyntaxError {
                row: loc.row,
                col: loc.col,
                end_row: loc.row,
                message: format!(
                    "{} syntax error: missing `{}`",
                    src.language.as_str(),
                    node.kind()
                ),
            });
        } else if node.is_error() {
            last_end = node.end_byte();
            let loc = src.loc(node);
            let text = src.text_of(node);
            let first = text.split_whitespace().next().unwrap_or("");
            out.push(SyntaxError {
                row: loc.row,
                col: loc.col,
                end_row: node.end_position().row,
                message: format!(
                    "{} syntax error: unexpected `{}`",
                    src.language.as_str(),
                    excerpt(first, 40)
                ),
            });
        }
    }
    out
}

fn json(src: &Source<'_>) -> Vec<SyntaxError> {
    match serde_json::from_str::<serde::de::IgnoredAny>(src.text) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let row = e.line().saturating_sub(1);
            vec![SyntaxError {
                row,
                col: e.column().max(1),
                end_row: row,
                message: format!("JSON syntax error: {e}"),
            }]
        }
    }
}

fn yaml(src: &Source<'_>) -> Vec<SyntaxError> {
    for document in serde_yaml_ng::Deserializer::from_str(src.text) {
        if let Err(e) = serde_yaml_ng::Value::deserialize(document) {
            let (row, col) = e
                .location()
                .map_or((0, 1), |l| (l.line().saturating_sub(1), l.column().max(1)));
            return vec![SyntaxError {
                row,
                col,
                end_row: row,
                message: format!("YAML syntax error: {e}"),
            }];
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str, language: Language) -> Option<(usize, usize, String)> {
        let src = Source::parse(text, language);
        errors(&src)
            .into_iter()
            .next()
            .map(|e| (e.row + 1, e.col, e.message))
    }

    #[test]
    fn tree_sitter_errors_are_located() {
        let (line, _, msg) = first(
            "def handler(event, context):\n    return {\"ok\": True\n\nx = 1\n",
            Language::Python,
        )
        .expect("an error");
        assert!(line >= 2, "{line}: {msg}");
        let (line, col, msg) = first(
            "export const handler = async (event) => {\n  return [1, 2;\n};\n",
            Language::JavaScript,
        )
        .expect("an error");
        assert_eq!(line, 2, "{msg}");
        assert!(col >= 3, "{col} {msg}");
        let (line, _, msg) =
            first("fn main() {\n    let x = ;\n}\n", Language::Rust).expect("an error");
        assert_eq!(line, 2, "{msg}");
        let (line, _, _) = first("const x: number = ;\n", Language::TypeScript).expect("an error");
        assert_eq!(line, 1);
    }

    #[test]
    fn valid_files_have_no_errors() {
        for (text, language) in [
            (
                "def f(a, b=1, *args, **kw):\n    return a\n",
                Language::Python,
            ),
            (
                "export async function handler(e) { return e?.x ?? 1; }\n",
                Language::JavaScript,
            ),
            (
                "export const h = async (e: Event): Promise<void> => {};\n",
                Language::TypeScript,
            ),
            (
                "pub fn f(a: &str) -> String { format!(\"{a}\") }\n",
                Language::Rust,
            ),
            ("{\"a\": [1, 2]}", Language::Json),
            ("a: 1\nb: !Ref X\n---\nc: [1]\n", Language::Yaml),
        ] {
            assert!(first(text, language).is_none(), "{text}");
        }
    }

    #[test]
    fn the_python_checks_in_the_facts_walk_match_a_walk_of_their_own() {
        for text in [
            "print \"x\"\ndef f(a=1, b):\n    await g()\n\treturn 1\n",
            "x = 1\nreturn x\nfor i in y:\n    break\nbreak\n",
            "def ok(event, context):\n    return [y for y in event]\n",
        ] {
            let src = Source::parse(text, Language::Python);
            let facts = crate::facts::Facts::of(&src);
            let folded = python(
                &src,
                python_syntax::indentation(&src),
                facts.python_errors.as_deref().unwrap_or_default(),
            );
            assert_eq!(folded, errors(&src), "{text:?}");
        }
    }

    #[test]
    fn json_and_yaml_errors_are_located() {
        let (line, col, _) = first("{\n  \"a\": 1,\n  \"b\": }\n", Language::Json).expect("error");
        assert_eq!((line, col), (3, 8));
        let (line, _, _) = first("a: 1\nb: [1, 2\nc: 3\n", Language::Yaml).expect("error");
        assert!(line >= 2);
    }
}
