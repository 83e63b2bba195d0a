//! What tree-sitter-python accepts and CPython refuses: inconsistent tabs and spaces
//! (TabError), a dedent to no outer level (IndentationError), Python 2 `print`/`exec`
//! statements, `return`/`yield` outside a function, `break`/`continue` outside a loop,
//! `await` outside an async function, `nonlocal` at module level, repeated or misordered
//! parameters and arguments.

use std::collections::HashSet;

use tree_sitter::Node;

use crate::source::SyntaxError;
use crate::source::{Source, named_children, walk};

pub(super) fn errors(src: &Source<'_>) -> Vec<SyntaxError> {
    let mut out = indentation(src);
    if let Some(root) = src.root() {
        tree_checks(src, root, &mut out);
    }
    out
}

fn err(row: usize, col: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        row,
        col,
        end_row: row,
        message: message.into(),
    }
}

/// CPython's tokenizer rule: each logical line's indentation, counted with tabs to the next
/// multiple of 8 and with tabs as 1, must compare the same way to the enclosing levels.
pub(crate) fn indentation(src: &Source<'_>) -> Vec<SyntaxError> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    let mut depth = 0usize; // brackets
    let mut string: Option<(char, bool)> = None; // quote, triple
    let mut continued = false;
    for row in 0..src.line_count() {
        let line = src.line(row);
        let logical_start = depth == 0 && string.is_none() && !continued;
        continued = false;
        if logical_start {
            let trimmed = line.trim_start_matches([' ', '\t', '\x0c']);
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                let (mut col, mut alt) = (0usize, 0usize);
                for c in line.chars() {
                    match c {
                        ' ' => {
                            col += 1;
                            alt += 1;
                        }
                        '\t' => {
                            col = (col / 8 + 1) * 8;
                            alt += 1;
                        }
                        '\x0c' => {
                            col = 0;
                            alt = 0;
                        }
                        _ => break,
                    }
                }
                let &(top, top_alt) = stack.last().unwrap_or(&(0, 0));
                if col == top {
                    if alt != top_alt {
                        out.push(err(
                            row,
                            1,
                            "TabError: inconsistent use of tabs and spaces in indentation",
                        ));
                    }
                } else if col > top {
                    if alt <= top_alt {
                        out.push(err(
                            row,
                            1,
                            "TabError: inconsistent use of tabs and spaces in indentation",
                        ));
                    }
                    stack.push((col, alt));
                } else {
                    while stack.len() > 1 && col < stack.last().map_or(0, |s| s.0) {
                        stack.pop();
                    }
                    let &(top, top_alt) = stack.last().unwrap_or(&(0, 0));
                    if col != top {
                        out.push(err(
                            row,
                            1,
                            "IndentationError: unindent does not match any outer indentation level",
                        ));
                    } else if alt != top_alt {
                        out.push(err(
                            row,
                            1,
                            "TabError: inconsistent use of tabs and spaces in indentation",
                        ));
                    }
                }
            }
        }
        // Scan the line for strings, brackets, comments and a trailing backslash.
        // Every character that matters here is ASCII: scan bytes.
        let chars = line.as_bytes();
        let mut i = 0;
        while i < chars.len() {
            let c = char::from(chars[i]);
            if let Some((q, triple)) = string {
                if c == '\\' {
                    i += 2;
                    continue;
                }
                if c == q {
                    if !triple {
                        string = None;
                    } else if chars.get(i + 1).map(|&b| char::from(b)) == Some(q)
                        && chars.get(i + 2).map(|&b| char::from(b)) == Some(q)
                    {
                        string = None;
                        i += 3;
                        continue;
                    }
                }
                i += 1;
                continue;
            }
            match c {
                '#' => break,
                '\'' | '"' => {
                    let triple = chars.get(i + 1).map(|&b| char::from(b)) == Some(c)
                        && chars.get(i + 2).map(|&b| char::from(b)) == Some(c);
                    string = Some((c, triple));
                    i += if triple { 3 } else { 1 };
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                '\\' if i + 1 == chars.len() => continued = true,
                _ => {}
            }
            i += 1;
        }
        // A one-quote string ends with its line unless the line ends in a backslash.
        if let Some((_, false)) = string
            && !line.ends_with('\\')
        {
            string = None;
        }
    }
    out
}

/// Where a node is, for the statements CPython allows only in some places.
#[derive(Clone, Copy, Default)]
pub(crate) struct Place {
    /// Inside a function: `Some(is_async)`.
    function: Option<bool>,
    /// Inside a lambda (its body is an expression: `yield`/`await` are checked by function).
    lambda: bool,
    /// Inside a loop of the current function.
    in_loop: bool,
    /// Inside a comprehension of the current function.
    comprehension: bool,
}

fn tree_checks(src: &Source<'_>, root: Node<'_>, out: &mut Vec<SyntaxError>) {
    walk(root, Place::default(), |node, place, _| {
        check_node(src, node, place, out)
    });
}

/// The checks of one node in its place; returns its children's place. Also run by the
/// Python facts walk, so the tree is walked once.
pub(crate) fn check_node(
    src: &Source<'_>,
    node: Node<'_>,
    place: Place,
    out: &mut Vec<SyntaxError>,
) -> Place {
    if out.len() >= 20 {
        return place;
    }
    let kind = src.kind(node);
    let mut inner = place;
    let message: Option<String> = match kind {
        "function_definition" => {
            let is_async = src.text_of(node).trim_start().starts_with("async");
            inner = Place {
                function: Some(is_async),
                ..Place::default()
            };
            None
        }
        "class_definition" => {
            inner = Place::default();
            None
        }
        "lambda" => {
            inner.lambda = true;
            None
        }
        "for_statement" | "while_statement" => {
            inner.in_loop = true;
            None
        }
        "list_comprehension"
        | "generator_expression"
        | "set_comprehension"
        | "dictionary_comprehension" => {
            inner.comprehension = true;
            None
        }
        "print_statement" => Some("SyntaxError: Python 2 print statement; call print(...)".into()),
        "exec_statement" => Some("SyntaxError: Python 2 exec statement".into()),
        "return_statement" | "yield" if place.function.is_none() && !place.lambda => {
            let what = if kind == "yield" { "yield" } else { "return" };
            Some(format!("SyntaxError: '{what}' outside function"))
        }
        "break_statement" | "continue_statement" if !place.in_loop => {
            let what = if kind == "break_statement" {
                "break"
            } else {
                "continue"
            };
            Some(format!("SyntaxError: '{what}' outside loop"))
        }
        "await" if !place.lambda && !place.comprehension => match place.function {
            Some(true) => None,
            Some(false) => Some("SyntaxError: 'await' outside async function".into()),
            None => Some("SyntaxError: 'await' outside function".into()),
        },
        "nonlocal_statement" if place.function.is_none() => {
            Some("SyntaxError: nonlocal declaration not allowed at module level".into())
        }
        "parameters" | "lambda_parameters" => {
            parameters(src, node, out);
            None
        }
        "argument_list" => {
            arguments(src, node, out);
            None
        }
        _ => None,
    };
    if let Some(message) = message {
        let loc = src.loc(node);
        out.push(err(loc.row, loc.col, message));
    }
    inner
}

fn parameters(src: &Source<'_>, node: Node<'_>, out: &mut Vec<SyntaxError>) {
    let mut seen = HashSet::new();
    let mut default_seen = false;
    let mut star = false;
    for p in named_children(node) {
        let name_node = match p.kind() {
            "identifier" => Some(p),
            "default_parameter" | "typed_default_parameter" => p.child_by_field_name("name"),
            "typed_parameter" => named_children(p).into_iter().next(),
            "list_splat_pattern" | "dictionary_splat_pattern" => {
                named_children(p).into_iter().next()
            }
            _ => None,
        };
        if matches!(p.kind(), "list_splat_pattern" | "keyword_separator")
            || p.kind() == "typed_parameter"
                && named_children(p)
                    .first()
                    .is_some_and(|c| c.kind() == "list_splat_pattern")
        {
            star = true;
        }
        if let Some(n) = name_node {
            let name = src.text_of(n).trim_start_matches('*').to_owned();
            if !name.is_empty() && !seen.insert(name.clone()) {
                let loc = src.loc(n);
                out.push(err(
                    loc.row,
                    loc.col,
                    format!("SyntaxError: duplicate argument '{name}' in function definition"),
                ));
            }
        }
        match p.kind() {
            "default_parameter" | "typed_default_parameter" => default_seen = true,
            "identifier" | "typed_parameter" if default_seen && !star => {
                let is_splat = p.kind() == "typed_parameter"
                    && named_children(p)
                        .first()
                        .is_some_and(|c| c.kind().ends_with("splat_pattern"));
                if !is_splat {
                    let loc = src.loc(p);
                    out.push(err(
                        loc.row,
                        loc.col,
                        "SyntaxError: parameter without a default follows parameter with a default",
                    ));
                }
            }
            _ => {}
        }
    }
}

fn arguments(src: &Source<'_>, node: Node<'_>, out: &mut Vec<SyntaxError>) {
    let mut keywords = HashSet::new();
    let mut keyword_seen = false;
    let mut double_star_seen = false;
    for a in named_children(node) {
        match a.kind() {
            "keyword_argument" => {
                keyword_seen = true;
                if let Some(n) = a.child_by_field_name("name") {
                    let name = src.text_of(n).to_owned();
                    if !keywords.insert(name.clone()) {
                        let loc = src.loc(a);
                        out.push(err(
                            loc.row,
                            loc.col,
                            format!("SyntaxError: keyword argument repeated: {name}"),
                        ));
                    }
                }
            }
            "dictionary_splat" => double_star_seen = true,
            "list_splat" => {
                if double_star_seen {
                    let loc = src.loc(a);
                    out.push(err(
                        loc.row,
                        loc.col,
                        "SyntaxError: iterable argument unpacking follows keyword argument unpacking",
                    ));
                }
            }
            "comment" => {}
            _ => {
                if keyword_seen || double_star_seen {
                    let loc = src.loc(a);
                    out.push(err(
                        loc.row,
                        loc.col,
                        if double_star_seen {
                            "SyntaxError: positional argument follows keyword argument unpacking"
                        } else {
                            "SyntaxError: positional argument follows keyword argument"
                        },
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language::Language;

    fn rows(text: &str) -> Vec<(usize, String)> {
        let src = Source::parse(text, Language::Python);
        errors(&src)
            .into_iter()
            .map(|e| (e.row + 1, e.message))
            .collect()
    }

    #[test]
    fn mixed_tabs_and_spaces_are_a_tab_error() {
        let text = "def handler(event, context):\n        x = 1\n\treturn x\n";
        let found = rows(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert!(found[0].1.starts_with("TabError"), "{found:?}");
    }

    #[test]
    fn a_dedent_to_no_level_is_an_indentation_error() {
        let text = "def f():\n    if x:\n        y = 1\n      z = 2\n";
        let found = rows(text);
        assert!(
            found.iter().any(|(r, m)| *r == 4 && m.contains("unindent")),
            "{found:?}"
        );
    }

    #[test]
    fn strings_and_brackets_do_not_count_as_indentation() {
        let text = "def f():\n    x = (1,\n\t2)\n    s = \"\"\"\n\tdoc\n  \"\"\"\n    return x\n";
        assert!(rows(text).is_empty(), "{:?}", rows(text));
    }

    #[test]
    fn python_2_and_misplaced_statements() {
        for (text, line, says) in [
            ("print \"hello\"\n", 1, "print"),
            ("x = 1\nreturn x\n", 2, "'return' outside function"),
            ("def f():\n    break\n", 2, "'break' outside loop"),
            ("def f():\n    await g()\n", 2, "'await' outside async"),
            ("def f(a, a):\n    pass\n", 1, "duplicate argument"),
            ("def f(a=1, b):\n    pass\n", 1, "without a default"),
            ("f(a=1, a=2)\n", 1, "repeated"),
            ("f(a=1, 2)\n", 1, "positional argument follows"),
        ] {
            let found = rows(text);
            assert!(
                found.iter().any(|(r, m)| *r == line && m.contains(says)),
                "{text:?}: {found:?}"
            );
        }
    }

    #[test]
    fn valid_python_passes() {
        let text = "import asyncio\n\nasync def f(a, b=1, *args, c, d=2, **kw):\n    for x in a:\n        if x:\n            continue\n        break\n    await asyncio.sleep(0)\n    return [y async for y in g()]\n\nclass C:\n    def m(self):\n        yield 1\n\nf(1, *xs, k=2, **kw)\n";
        assert!(rows(text).is_empty(), "{:?}", rows(text));
    }
}
