//! A parsed file: its text, its tree-sitter tree, and positions as people count them.

use std::cell::RefCell;
use std::num::NonZeroU16;

use tree_sitter::{InputEdit, Node, Parser, Point, Tree};

use crate::language::Language;

/// A file as the rules see it.
pub(crate) struct Source<'t> {
    /// The text.
    pub text: &'t str,
    /// Its language.
    pub language: Language,
    /// The syntax tree, for languages with a grammar (none when the parser gave up).
    pub tree: Option<Tree>,
    line_starts: Vec<usize>,
    /// Whether each line is ASCII (its character column is its byte column).
    ascii_lines: Vec<bool>,
    /// Field ids by name: tree-sitter finds a field by comparing its name with each of the
    /// grammar's, which the extractors would otherwise do for every node.
    field_ids: RefCell<Vec<(&'static str, Option<NonZeroU16>)>>,
    /// Node kinds by id: `Node::kind` measures and checks a C string on every call.
    kinds: RefCell<Vec<Option<&'static str>>>,
}

impl<'t> Source<'t> {
    /// Parses `text` as `language`.
    pub fn parse(text: &'t str, language: Language) -> Self {
        Self::parse_with(text, language, None)
    }

    /// Parses `text`, a new version of `old`, reusing the subtrees of `old`'s tree that the
    /// change leaves alone (tree-sitter's incremental parsing: the cost follows the size of
    /// the change, not of the file).
    pub fn parse_edited(text: &'t str, old: &Source<'_>) -> Self {
        Self::parse_with(text, old.language, Some(old))
    }

    fn parse_with(text: &'t str, language: Language, old: Option<&Source<'_>>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii_lines = line_starts
            .iter()
            .enumerate()
            .map(|(row, &start)| {
                let end = line_starts.get(row + 1).copied().unwrap_or(text.len());
                text.as_bytes()[start..end].is_ascii()
            })
            .collect();
        let mut source = Self {
            text,
            language,
            tree: None,
            line_starts,
            ascii_lines,
            field_ids: RefCell::new(Vec::new()),
            kinds: RefCell::new(Vec::new()),
        };
        let previous = old.and_then(|old| {
            let mut tree = old.tree.clone()?;
            tree.edit(&source.edit_from(old));
            Some(tree)
        });
        source.tree = language.grammar().and_then(|grammar| {
            let mut parser = Parser::new();
            parser.set_language(&grammar).ok()?;
            parser.parse(text, previous.as_ref())
        });
        source
    }

    /// The one edit that turns `old`'s text into this text: what lies between their common
    /// prefix and their common suffix.
    fn edit_from(&self, old: &Source<'_>) -> InputEdit {
        let (a, b) = (old.text.as_bytes(), self.text.as_bytes());
        let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let suffix = a[prefix..]
            .iter()
            .rev()
            .zip(b[prefix..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        let (old_end, new_end) = (a.len() - suffix, b.len() - suffix);
        InputEdit {
            start_byte: prefix,
            old_end_byte: old_end,
            new_end_byte: new_end,
            start_position: self.point(prefix),
            old_end_position: old.point(old_end),
            new_end_position: self.point(new_end),
        }
    }

    /// The tree-sitter point (row, byte column) of a byte offset.
    fn point(&self, byte: usize) -> Point {
        let row = match self.line_starts.binary_search(&byte) {
            Ok(r) => r,
            Err(r) => r.saturating_sub(1),
        };
        Point::new(row, byte - self.line_starts.get(row).copied().unwrap_or(0))
    }

    /// A node's kind (as `Node::kind`, from a table by kind id).
    pub fn kind<'a>(&self, node: impl std::borrow::Borrow<Node<'a>>) -> &'static str {
        let node = *node.borrow();
        let id = usize::from(node.kind_id());
        if let Some(Some(kind)) = self.kinds.borrow().get(id) {
            return kind;
        }
        let kind = intern(node.kind());
        let mut kinds = self.kinds.borrow_mut();
        if kinds.len() <= id {
            kinds.resize(id + 1, None);
        }
        kinds[id] = Some(kind);
        kind
    }

    /// A node's child in field `name` (as `Node::child_by_field_name`, with the id cached).
    pub fn field<'a>(&self, node: Node<'a>, name: &'static str) -> Option<Node<'a>> {
        // A handful of names, each a literal: compare addresses first, then text.
        let cached = self
            .field_ids
            .borrow()
            .iter()
            .find(|(n, _)| std::ptr::eq(*n, name) || *n == name)
            .map(|(_, id)| *id);
        let id = match cached {
            Some(id) => id,
            None => {
                let id = node.language().field_id_for_name(name);
                self.field_ids.borrow_mut().push((name, id));
                id
            }
        };
        node.child_by_field_id(id?.get())
    }

    /// The root node, if the file has a tree.
    pub fn root(&self) -> Option<Node<'_>> {
        self.tree.as_ref().map(Tree::root_node)
    }

    /// A node's text.
    pub fn text_of(&self, node: Node<'_>) -> &'t str {
        self.text.get(node.byte_range()).unwrap_or("")
    }

    /// 0-based row and 1-based character column of a byte offset.
    pub fn position(&self, byte: usize) -> (usize, usize) {
        let byte = byte.min(self.text.len());
        let row = match self.line_starts.binary_search(&byte) {
            Ok(r) => r,
            Err(r) => r.saturating_sub(1),
        };
        let start = self.line_starts[row];
        let col = if self.ascii_lines.get(row).copied().unwrap_or(false) {
            byte - start
        } else {
            self.text
                .get(start..byte)
                .map_or(byte - start, |s| s.chars().count())
        } + 1;
        (row, col)
    }

    /// The location of a node's start.
    pub fn loc(&self, node: Node<'_>) -> Loc {
        let (row, col) = self.position(node.start_byte());
        Loc {
            row,
            col,
            end_row: node.end_position().row.max(row),
        }
    }

    /// The number of lines.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// Line `row` (0-based) without its newline.
    pub fn line(&self, row: usize) -> &'t str {
        let Some(&start) = self.line_starts.get(row) else {
            return "";
        };
        let end = self
            .line_starts
            .get(row + 1)
            .map_or(self.text.len(), |e| e - 1);
        self.text
            .get(start..end.max(start))
            .unwrap_or("")
            .trim_end_matches('\r')
    }
}

/// Kind names for the process: every grammar has a fixed, small set, kept once each.
static KIND_NAMES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
    std::sync::LazyLock::new(Default::default);

/// The process-wide copy of a kind name.
fn intern(kind: &str) -> &'static str {
    let mut names = KIND_NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&k) = names.get(kind) {
        return k;
    }
    let k: &'static str = Box::leak(kind.to_owned().into_boxed_str());
    names.insert(k);
    k
}

/// A syntax problem at a 0-based row and 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 0-based row.
    pub row: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// 0-based last row.
    pub end_row: usize,
    /// What is wrong.
    pub message: String,
}

/// Where something is: a 0-based start row, its 1-based character column, its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    /// 0-based first row.
    pub row: usize,
    /// 1-based column of the start, in characters.
    pub col: usize,
    /// 0-based last row.
    pub end_row: usize,
}

/// Every node under `root` (itself included), depth first, without recursion: a deep tree
/// must not overflow the stack.
pub(crate) fn descendants<'a>(root: Node<'a>) -> impl Iterator<Item = Node<'a>> {
    let mut cursor = root.walk();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let node = cursor.node();
        if cursor.goto_first_child() {
            return Some(node);
        }
        loop {
            if cursor.node() == root {
                done = true;
                return Some(node);
            }
            if cursor.goto_next_sibling() {
                return Some(node);
            }
            if !cursor.goto_parent() {
                done = true;
                return Some(node);
            }
        }
    })
}

/// Visits every named node under `root` (itself included) depth first with one cursor: `visit`
/// gets the node, the context its parent gave its children, and the parent's kind, and
/// returns the context for the node's own children.
pub(crate) fn walk<'a, C: Copy>(
    root: Node<'a>,
    init: C,
    mut visit: impl FnMut(Node<'a>, C, &'a str) -> C,
) {
    let mut cursor = root.walk();
    let mut open: Vec<(C, &'a str)> = vec![(visit(root, init, ""), root.kind())];
    if !cursor.goto_first_child() {
        return;
    }
    loop {
        let node = cursor.node();
        let Some(&(ctx, parent_kind)) = open.last() else {
            return;
        };
        // Anonymous nodes are tokens (punctuation, keywords): nothing to record, no children.
        if node.is_named() {
            let inner = visit(node, ctx, parent_kind);
            if cursor.goto_first_child() {
                open.push((inner, node.kind()));
                continue;
            }
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() || cursor.node() == root {
                return;
            }
            open.pop();
        }
    }
}

/// The named children of a node.
pub(crate) fn named_children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

/// The children of a node, named or not.
pub(crate) fn children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.children(&mut cursor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_one() {
        let s = Source::parse("a = 1\nb = \"é\" + x\n", Language::Python);
        assert_eq!(s.position(0), (0, 1));
        let x = s.text.find('x').unwrap();
        assert_eq!(s.position(x), (1, 11));
        assert_eq!(s.line(1), "b = \"é\" + x");
        assert_eq!(s.line(9), "");
    }

    #[test]
    fn an_edited_parse_gives_the_fresh_parse_tree() {
        let cases = [
            (
                Language::Python,
                "def f(a):\n    return a + 1\n",
                "def f(a):\n    b = [a,\n    return a + 1\n\ndef g():\n    pass\n",
            ),
            (Language::Python, "x = 1\ny = 2\n", "y = 2\n"),
            (
                Language::JavaScript,
                "function f(a) {\n  return a;\n}\n",
                "function f(a) {\n  const b = `${a}`;\n  return b;\n}\nf(1);\n",
            ),
            (
                Language::TypeScript,
                "const a: number = 1;\n",
                "const a: number = 1;\nconst b: string = 'é' + a;\n",
            ),
            (
                Language::Rust,
                "fn f() -> u8 {\n    1\n}\n",
                "fn f() -> u8 {\n    let x = 2;\n    x +\n}\n",
            ),
            (Language::Rust, "fn f() {}\n", ""),
        ];
        for (language, before, after) in cases {
            let old = Source::parse(before, language);
            let edited = Source::parse_edited(after, &old);
            let fresh = Source::parse(after, language);
            assert_eq!(
                edited.root().map(|r| r.to_sexp()),
                fresh.root().map(|r| r.to_sexp()),
                "{language:?}: {before:?} → {after:?}"
            );
        }
    }

    #[test]
    fn descendants_visit_every_node_once() {
        let s = Source::parse("def f(a):\n    return a + 1\n", Language::Python);
        let root = s.root().unwrap();
        let n = descendants(root).count();
        let mut count = 0;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(children(node));
        }
        assert_eq!(n, count);
    }
}
