//! What a file says, read from its syntax tree into one model the rules share across
//! languages: calls with resolved callees and classified arguments, imports, functions and
//! exports, named values, string literals, `unsafe` blocks.
//!
//! - `python`, `js` (JavaScript and TypeScript) and `rust` walk their grammar's tree.
//! - Names resolve through imports and aliases (`from subprocess import run as r` makes
//!   `r(...)` a call of `subprocess.run`), `getattr(os, "system")` and `obj["key"]`.
//! - A value is classified, following local bindings (`cmd = "ls " + p; os.system(cmd)`),
//!   as constant, built from strings with a dynamic part, a reference, a call's result.

mod js;
mod python;
mod rust;

use std::collections::HashMap;

use crate::language::Language;
use crate::source::{Loc, Source};

/// How deep value classification follows an expression.
const MAX_DEPTH: usize = 40;
/// How many elements of a list or map are kept.
const MAX_ITEMS: usize = 64;
/// How many returned values of a function are kept.
const MAX_RETURNS: usize = 8;

/// A classified expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// A constant string.
    Str(String),
    /// A number.
    Num,
    /// A boolean.
    Bool(bool),
    /// None, null, undefined.
    Null,
    /// A string built with a dynamic part: its constant fragments and its dynamic parts.
    Built(Vec<String>, Vec<Val>),
    /// A list, tuple or array.
    List(Vec<Val>),
    /// A dict, object, struct or keyword arguments: keys and values.
    Map(Vec<(String, Val)>),
    /// A name or path, resolved through imports (`os.environ`, `event.body`).
    Ref(String),
    /// A call's result.
    Call {
        /// The resolved callee.
        callee: String,
        /// Its positional arguments.
        args: Vec<Val>,
    },
    /// Anything else.
    Unknown,
}

impl Val {
    /// True when the value is fixed in the source (no data flows into it).
    pub fn is_constant(&self) -> bool {
        match self {
            Self::Str(_) | Self::Num | Self::Bool(_) | Self::Null => true,
            Self::List(items) => items.iter().all(Self::is_constant),
            Self::Map(pairs) => pairs.iter().all(|(_, v)| v.is_constant()),
            _ => false,
        }
    }

    /// True for a string with a dynamic part (built by interpolation, concatenation, format).
    pub fn is_built(&self) -> bool {
        matches!(self, Self::Built(..))
    }

    /// The constant string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The constant text fragments of a string value.
    pub fn fragments(&self) -> Vec<&str> {
        match self {
            Self::Str(s) => vec![s.as_str()],
            Self::Built(f, _) => f.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Every value inside this one (itself included), breadth first, bounded.
    pub fn all(&self) -> Vec<&Val> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() && out.len() < 4 * MAX_ITEMS {
            match out[i] {
                Self::Built(_, parts) => out.extend(parts.iter()),
                Self::List(items) => out.extend(items.iter()),
                Self::Map(pairs) => out.extend(pairs.iter().map(|(_, v)| v)),
                Self::Call { args, .. } => out.extend(args.iter()),
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// The value of key `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Self::Map(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value cut to `depth` levels and `items` elements per level: what a binding keeps
    /// (rules look at a value's top few levels; deep copies on every read cost more).
    pub fn truncated(&self, depth: usize, items: usize) -> Val {
        if depth == 0 {
            return match self {
                Self::Str(_) | Self::Num | Self::Bool(_) | Self::Null | Self::Ref(_) => {
                    self.clone()
                }
                Self::Built(f, _) => {
                    Self::Built(f.iter().take(items).cloned().collect(), vec![Self::Unknown])
                }
                _ => Self::Unknown,
            };
        }
        let cut = |v: &Vec<Val>| {
            v.iter()
                .take(items)
                .map(|x| x.truncated(depth - 1, items))
                .collect()
        };
        match self {
            Self::Built(f, p) => Self::Built(f.iter().take(items).cloned().collect(), cut(p)),
            Self::List(v) => Self::List(cut(v)),
            Self::Map(pairs) => Self::Map(
                pairs
                    .iter()
                    .take(items)
                    .map(|(k, v)| (k.clone(), v.truncated(depth - 1, items)))
                    .collect(),
            ),
            Self::Call { callee, args } => Self::Call {
                callee: callee.clone(),
                args: cut(args),
            },
            other => other.clone(),
        }
    }

    /// Concatenation of two values as strings.
    pub fn concat(a: Val, b: Val) -> Val {
        match (a, b) {
            (Self::Str(x), Self::Str(y)) => Self::Str(x + &y),
            (a, b) => {
                let mut fragments = Vec::new();
                let mut parts = Vec::new();
                for v in [a, b] {
                    match v {
                        Self::Str(s) => fragments.push(s),
                        Self::Built(f, p) => {
                            fragments.extend(f);
                            parts.extend(p);
                        }
                        Self::Num | Self::Bool(_) | Self::Null => {}
                        other => parts.push(other),
                    }
                }
                if parts.is_empty() {
                    Self::Str(fragments.concat())
                } else {
                    Self::Built(fragments, parts)
                }
            }
        }
    }
}

/// A call in the file.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The resolved callee, dotted: `subprocess.run`, `child_process.exec`,
    /// `std.process.Command.new`, `cursor.execute`, `boto3.client().delete_bucket`.
    pub callee: String,
    /// The last segment of the callee (the method or function name).
    pub method: String,
    /// The receiver of a method call, classified.
    pub receiver: Option<Val>,
    /// Positional arguments.
    pub args: Vec<Val>,
    /// Keyword arguments (Python).
    pub kwargs: Vec<(String, Val)>,
    /// A constructor call (`new X(...)`).
    pub is_new: bool,
    /// Where the call is.
    pub loc: Loc,
    /// Rows of the bindings its arguments were read through.
    pub dep_rows: Vec<usize>,
    /// The enclosing function (index into [`Facts::functions`]).
    pub function: Option<usize>,
    /// Inside a loop.
    pub in_loop: bool,
}

impl Call {
    /// A keyword argument's value.
    pub fn kwarg(&self, name: &str) -> Option<&Val> {
        self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Every argument value, positional and keyword.
    pub fn all_args(&self) -> impl Iterator<Item = &Val> {
        self.args.iter().chain(self.kwargs.iter().map(|(_, v)| v))
    }

    /// Whether the callee ends with `.name` for one of `names` (or is one).
    pub fn method_in(&self, names: &[&str]) -> bool {
        names.contains(&self.method.as_str())
    }
}

/// A function parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    /// Its name (as written).
    pub name: String,
    /// It has a default or is optional.
    pub optional: bool,
    /// `*args`, `...rest`.
    pub variadic: bool,
    /// Keyword-only (Python, after `*`) or `**kwargs`.
    pub keyword_only: bool,
}

/// A function or method definition.
#[derive(Debug, Clone)]
pub(crate) struct Function {
    /// Its name; methods are `Type.method`.
    pub name: String,
    /// Exported (JS), public (Rust `pub`), or public by convention (Python, no `_`).
    pub exported: bool,
    /// Defined at the top level of the file (or as a method of a top-level type).
    pub top_level: bool,
    /// Its parameters (`self` included for Rust methods, not for Python's).
    pub params: Vec<Param>,
    /// Where its name is.
    pub loc: Loc,
    /// Its first and last rows.
    pub rows: (usize, usize),
    /// What it returns (`return` statements, an arrow's or a Rust block's tail expression),
    /// classified, with where each is; at most [`MAX_RETURNS`].
    pub returns: Vec<(Val, Loc)>,
}

impl Function {
    /// Records a returned value (kept up to [`MAX_RETURNS`]).
    pub fn add_return(&mut self, value: Val, loc: Loc) {
        if self.returns.len() < MAX_RETURNS {
            self.returns
                .push((value.truncated(BOUND_DEPTH, BOUND_ITEMS), loc));
        }
    }

    /// A parameter's bare name (`region: &str`, `mut r`, `limit=50`, `id?: string` → the
    /// identifier), for matching references to it.
    pub fn param_name(&self, index: usize) -> Option<&str> {
        let text = self.params.get(index)?.name.as_str();
        let end = text.find([':', '=', '?']).unwrap_or(text.len());
        let name = text[..end]
            .trim()
            .trim_start_matches(['*', '&', '.'])
            .trim_start_matches("mut ")
            .trim();
        (!name.is_empty()).then_some(name)
    }
    /// Parameters a caller must pass.
    pub fn required(&self) -> usize {
        self.params
            .iter()
            .filter(|p| !p.optional && !p.variadic && !p.keyword_only)
            .count()
    }

    /// The most positional arguments it takes (`usize::MAX` with a variadic one).
    pub fn max_positional(&self) -> usize {
        if self.params.iter().any(|p| p.variadic && !p.keyword_only) {
            usize::MAX
        } else {
            self.params.iter().filter(|p| !p.keyword_only).count()
        }
    }
}

/// An import of a module, package or crate.
#[derive(Debug, Clone)]
pub(crate) struct Import {
    /// The module (`subprocess`, `node:child_process`, `@aws-sdk/client-s3`, `reqwest`).
    pub module: String,
    /// Where it is.
    pub loc: Loc,
}

/// A value given a name: an assignment, a keyword argument, a dict or object pair, a
/// struct field, a comparison of a name with a value.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    /// The name or key (`tenant_id`, `rejectUnauthorized`, `ctx.check_hostname`).
    pub name: String,
    /// The value.
    pub value: Val,
    /// Where it is.
    pub loc: Loc,
    /// A comparison (`==`), not an assignment.
    pub compared: bool,
}

/// A string literal's constant text.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    /// Its text, interpolations left out.
    pub text: String,
    /// Where it is.
    pub loc: Loc,
}

/// Everything the rules read of one file.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// Calls, in source order.
    pub calls: Vec<Call>,
    /// Imports.
    pub imports: Vec<Import>,
    /// Function definitions.
    pub functions: Vec<Function>,
    /// Names exported without a function definition of their own (`module.exports = {a}`,
    /// `export { a as b }`, `pub use`), by exported name.
    pub exported_names: Vec<(String, Loc)>,
    /// Named values.
    pub named: Vec<Named>,
    /// String literals.
    pub literals: Vec<Literal>,
    /// `unsafe` blocks, functions and impls (Rust).
    pub unsafe_blocks: Vec<Loc>,
    /// Python: the CPython checks that need the tree, run during the same walk.
    pub python_errors: Option<Vec<crate::source::SyntaxError>>,
}

impl Facts {
    /// Reads the facts of a parsed file (empty for a file without a tree).
    pub fn of(source: &Source<'_>) -> Self {
        match source.language {
            Language::Python => python::extract(source),
            l if l.is_js_family() => js::extract(source),
            Language::Rust => rust::extract(source),
            _ => Self::default(),
        }
    }

    /// The function named `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Whether `name` is exported (a function or a bare exported name).
    pub fn exports(&self, name: &str) -> bool {
        self.functions.iter().any(|f| f.exported && f.name == name)
            || self.exported_names.iter().any(|(n, _)| n == name)
    }
}

/// Bindings seen so far while walking a file: local names to their last value, aliases of
/// imported modules to their path.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// Name → (value, row of the binding).
    values: HashMap<String, (Val, usize)>,
    /// Alias → resolved path.
    aliases: HashMap<String, String>,
    /// Values already classified, by node id, with the binding rows they read: a chain
    /// `a.b().c().d()` classifies each link once, not once per enclosing call. Valid until a
    /// binding or alias changes.
    memo: HashMap<usize, (Val, Vec<usize>)>,
    /// Names read since the memo was last emptied: rebinding one of them empties it.
    reads: std::collections::HashSet<String>,
}

impl Scope {
    /// Binds a local name.
    pub fn bind(&mut self, name: &str, value: Val, row: usize) {
        self.forget(name);
        if self.values.len() < 10_000 {
            let value = value.truncated(BOUND_DEPTH, BOUND_ITEMS);
            self.values.insert(name.to_owned(), (value, row));
        }
    }

    /// Records an import alias.
    pub fn alias(&mut self, name: &str, path: &str) {
        self.forget(name);
        if self.aliases.len() < 10_000 {
            self.aliases.insert(name.to_owned(), path.to_owned());
        }
    }

    /// Empties the memo if a remembered value read `name`.
    fn forget(&mut self, name: &str) {
        if self.reads.contains(name) {
            self.memo.clear();
            self.reads.clear();
        }
    }

    /// A value classified before (and the binding rows it read), if still valid.
    pub fn remembered(&self, node: usize) -> Option<&(Val, Vec<usize>)> {
        self.memo.get(&node)
    }

    /// Remembers a node's value and the binding rows it read.
    pub fn remember(&mut self, node: usize, value: Val, deps: Vec<usize>) {
        if self.memo.len() < 100_000 {
            self.memo.insert(node, (value, deps));
        }
    }

    /// A local value and the row it was bound at.
    pub fn value(&mut self, name: &str) -> Option<&(Val, usize)> {
        if !self.reads.contains(name) {
            self.reads.insert(name.to_owned());
        }
        self.values.get(name)
    }

    /// The path an alias stands for, or the name itself.
    pub fn resolve(&mut self, name: &str) -> String {
        if !self.reads.contains(name) {
            self.reads.insert(name.to_owned());
        }
        self.aliases
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    }
}

/// Keeps at most [`MAX_ITEMS`] items.
pub(crate) fn bounded<T>(mut items: Vec<T>) -> Vec<T> {
    items.truncate(MAX_ITEMS);
    items
}

/// Levels of a bound value kept.
const BOUND_DEPTH: usize = 4;
/// Elements per level of a bound value kept.
const BOUND_ITEMS: usize = 16;

/// Values computed this shallow had at least this much depth budget left: close enough to a
/// fresh evaluation to reuse.
pub(crate) const MEMO_DEPTH: usize = 8;

/// `classify(node)`, remembered per node while the bindings stay the same; `deps` (from
/// `parts`) gains the rows the value read, whether computed or remembered.
pub(crate) fn remembered_val<X>(
    x: &mut X,
    node: tree_sitter::Node<'_>,
    depth: usize,
    parts: impl Fn(&mut X) -> (&mut Scope, &mut Vec<usize>),
    classify: impl FnOnce(&mut X, tree_sitter::Node<'_>, usize) -> Val,
) -> Val {
    let (scope, deps) = parts(x);
    if let Some((v, read)) = scope.remembered(node.id()) {
        let v = v.clone();
        deps.extend_from_slice(read);
        return v;
    }
    let mark = deps.len();
    let v = classify(x, node, depth);
    // Leaves are cheaper to classify again than to copy out of the memo.
    if depth <= MEMO_DEPTH && node.named_child_count() > 0 {
        let (scope, deps) = parts(x);
        let read = deps.get(mark..).unwrap_or_default().to_vec();
        scope.remember(node.id(), v.clone(), read);
    }
    v
}

/// The depth bound, for the extractors.
pub(crate) const fn max_depth() -> usize {
    MAX_DEPTH
}
