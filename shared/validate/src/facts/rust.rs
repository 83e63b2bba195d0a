//! Rust facts from tree-sitter-rust's tree.

use tree_sitter::Node;

use super::{Call, Facts, Function, Import, Literal, Named, Param, Scope, Val, bounded, max_depth};
use crate::source::{Source, children, named_children, walk};

#[derive(Clone, Copy, Default)]
struct Ctx {
    function: Option<usize>,
    in_loop: bool,
    in_fn: bool,
}

struct Extractor<'s, 't> {
    src: &'s Source<'t>,
    scope: Scope,
    facts: Facts,
    deps: Vec<usize>,
}

pub(super) fn extract(src: &Source<'_>) -> Facts {
    let mut x = Extractor {
        src,
        scope: Scope::default(),
        facts: Facts::default(),
        deps: Vec::new(),
    };
    let Some(root) = src.root() else {
        return x.facts;
    };
    walk(root, Ctx::default(), |node, ctx, parent| {
        x.visit(node, ctx, parent)
    });
    x.facts
}

/// Whether a block's last child of this kind is an expression (its value), not a statement,
/// an item or a comment.
fn is_tail_expression(kind: &str) -> bool {
    !matches!(
        kind,
        "expression_statement" | "let_declaration" | "line_comment" | "block_comment"
    ) && !kind.ends_with("_item")
        && !kind.ends_with("_declaration")
}

/// Crates every file has: not imports of a dependency.
const BUILT_IN_ROOTS: [&str; 6] = ["std", "core", "alloc", "crate", "self", "super"];

impl Extractor<'_, '_> {
    fn text(&self, node: Node<'_>) -> String {
        self.src.text_of(node).to_owned()
    }

    fn visit(&mut self, node: Node<'_>, ctx: Ctx, parent: &str) -> Ctx {
        let mut inner = ctx;
        // A function body's tail expression is what it returns.
        if parent == "block"
            && let Some(index) = ctx.function
            && node.next_named_sibling().is_none()
            && is_tail_expression(self.src.kind(node))
            && node
                .parent()
                .and_then(|b| b.parent())
                .is_some_and(|f| self.src.kind(f) == "function_item")
        {
            self.returned(node, node, index);
        }
        match self.src.kind(node) {
            "use_declaration" => {
                let public = named_children(node)
                    .iter()
                    .any(|c| self.src.kind(c) == "visibility_modifier");
                if let Some(arg) = self.src.field(node, "argument") {
                    self.use_tree(arg, "", public, 0);
                }
            }
            "extern_crate_declaration" => {
                if let Some(name) = self.src.field(node, "name") {
                    let n = self.text(name);
                    self.scope.alias(&n, &n);
                    self.facts.imports.push(Import {
                        module: n,
                        loc: self.src.loc(name),
                    });
                }
            }
            "function_item" => {
                inner.function = Some(self.function(node, ctx));
                inner.in_loop = false;
                inner.in_fn = true;
                if children(node).iter().any(|c| {
                    self.src.kind(c) == "function_modifiers"
                        && self.src.text_of(*c).contains("unsafe")
                }) {
                    self.facts.unsafe_blocks.push(self.src.loc(node));
                }
            }
            "unsafe_block" => self.facts.unsafe_blocks.push(self.src.loc(node)),
            "impl_item" | "trait_item" | "foreign_mod_item"
                if children(node).iter().any(|c| self.src.kind(c) == "unsafe") =>
            {
                self.facts.unsafe_blocks.push(self.src.loc(node));
            }
            "for_expression" | "while_expression" | "loop_expression" => inner.in_loop = true,
            "let_declaration" => self.let_declaration(node),
            "return_expression" => {
                if let (Some(index), Some(value)) = (ctx.function, named_children(node).first()) {
                    self.returned(node, *value, index);
                }
            }
            "assignment_expression" => {
                if let (Some(l), Some(r)) =
                    (self.src.field(node, "left"), self.src.field(node, "right"))
                {
                    self.deps.clear();
                    let value = self.val(r, 0);
                    let name = self.text(l);
                    if self.src.kind(l) == "identifier" {
                        self.scope
                            .bind(&name, value.clone(), node.start_position().row);
                    }
                    self.named(name, value, node, false);
                }
            }
            "compound_assignment_expr" => {
                if let (Some(l), Some(r)) =
                    (self.src.field(node, "left"), self.src.field(node, "right"))
                    && self.src.kind(l) == "identifier"
                {
                    let name = self.text(l);
                    let before = self
                        .scope
                        .value(&name)
                        .map_or(Val::Unknown, |(v, _)| v.clone());
                    let right = self.val(r, 0);
                    self.scope
                        .bind(&name, Val::concat(before, right), node.start_position().row);
                }
            }
            "field_initializer" => {
                if let (Some(f), Some(v)) =
                    (self.src.field(node, "field"), self.src.field(node, "value"))
                {
                    let value = self.val(v, 0);
                    let name = self.text(f);
                    self.named(name, value, node, false);
                }
            }
            "binary_expression" => {
                let op = self
                    .src
                    .field(node, "operator")
                    .map(|o| self.text(o))
                    .unwrap_or_default();
                if matches!(op.as_str(), "==" | "!=")
                    && let (Some(l), Some(r)) =
                        (self.src.field(node, "left"), self.src.field(node, "right"))
                {
                    for (name_side, value_side) in [(l, r), (r, l)] {
                        if matches!(self.src.kind(name_side), "identifier" | "field_expression") {
                            let value = self.val(value_side, 0);
                            if value.as_str().is_some() {
                                let name = self.text(name_side);
                                self.named(name, value, node, true);
                            }
                        }
                    }
                }
            }
            "call_expression" => {
                self.call(node, ctx);
                if parent == "expression_statement" {
                    self.rebind_builder(node);
                }
                if let Some(f) = self.src.field(node, "function")
                    && self.src.kind(f) == "field_expression"
                    && self.src.field(f, "field").is_some_and(|m| {
                        matches!(self.src.text_of(m), "for_each" | "map" | "try_for_each")
                    })
                {
                    inner.in_loop = true;
                }
            }
            "string_literal" | "raw_string_literal" => {
                let text = self
                    .val(node, max_depth() - 1)
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                self.facts.literals.push(Literal {
                    text,
                    loc: self.src.loc(node),
                });
            }
            _ => {}
        }
        inner
    }

    fn named(&mut self, name: String, value: Val, node: Node<'_>, compared: bool) {
        self.facts.named.push(Named {
            name,
            value,
            loc: self.src.loc(node),
            compared,
        });
    }

    fn path(&mut self, node: Node<'_>) -> String {
        let text = self.text(node);
        let mut segments: Vec<&str> = text.split("::").map(str::trim).collect();
        if segments.first() == Some(&"") {
            segments.remove(0);
        }
        let first = segments.first().copied().unwrap_or("");
        let resolved = self.scope.resolve(first);
        let rest = segments.get(1..).unwrap_or(&[]).join(".");
        if rest.is_empty() {
            resolved
        } else {
            format!("{resolved}.{rest}")
        }
    }

    fn use_tree(&mut self, node: Node<'_>, prefix: &str, public: bool, depth: usize) {
        if depth > 16 {
            return;
        }
        let join = |p: &str, s: &str| {
            if p.is_empty() {
                s.to_owned()
            } else {
                format!("{p}.{s}")
            }
        };
        match self.src.kind(node) {
            "identifier" | "scoped_identifier" | "crate" | "self" | "super" => {
                let path = join(prefix, &self.text(node).replace("::", "."));
                let path = path.trim_start_matches('.').to_owned();
                let last = path.rsplit('.').next().unwrap_or(&path).to_owned();
                let name = if last == "self" {
                    path.rsplit('.').nth(1).unwrap_or("").to_owned()
                } else {
                    last
                };
                let full = path.trim_end_matches(".self").to_owned();
                self.scope.alias(&name, &full);
                self.import_root(&full, node);
                if public {
                    self.facts.exported_names.push((name, self.src.loc(node)));
                }
            }
            "use_as_clause" => {
                if let (Some(p), Some(a)) =
                    (self.src.field(node, "path"), self.src.field(node, "alias"))
                {
                    let full = join(prefix, &self.text(p).replace("::", "."));
                    let alias = self.text(a);
                    self.scope.alias(&alias, &full);
                    self.import_root(&full, node);
                    if public {
                        self.facts.exported_names.push((alias, self.src.loc(node)));
                    }
                }
            }
            "scoped_use_list" => {
                let p = self
                    .src
                    .field(node, "path")
                    .map(|p| join(prefix, &self.text(p).replace("::", ".")))
                    .unwrap_or_else(|| prefix.to_owned());
                if let Some(list) = self.src.field(node, "list") {
                    for item in named_children(list) {
                        self.use_tree(item, &p, public, depth + 1);
                    }
                }
            }
            "use_list" => {
                for item in named_children(node) {
                    self.use_tree(item, prefix, public, depth + 1);
                }
            }
            "use_wildcard" => {
                let p = join(prefix, &self.text(node).replace("::", "."));
                self.import_root(&p, node);
            }
            _ => {}
        }
    }

    fn import_root(&mut self, path: &str, node: Node<'_>) {
        let root = path
            .split('.')
            .next()
            .unwrap_or("")
            .trim_start_matches("::");
        if root.is_empty() || BUILT_IN_ROOTS.contains(&root) {
            return;
        }
        if self
            .facts
            .imports
            .iter()
            .any(|i| i.module == root && i.loc.row == node.start_position().row)
        {
            return;
        }
        self.facts.imports.push(Import {
            module: root.to_owned(),
            loc: self.src.loc(node),
        });
    }

    fn function(&mut self, node: Node<'_>, ctx: Ctx) -> usize {
        let name_node = self.src.field(node, "name").unwrap_or(node);
        let mut name = self.text(name_node);
        let public = named_children(node).iter().any(|c| {
            self.src.kind(c) == "visibility_modifier" && self.src.text_of(*c).starts_with("pub")
        });
        let mut impl_type = None;
        let mut trait_impl = false;
        let mut p = node.parent();
        for _ in 0..3 {
            let Some(n) = p else { break };
            if self.src.kind(n) == "impl_item" {
                impl_type = self.src.field(n, "type").map(|t| self.text(t));
                trait_impl = self.src.field(n, "trait").is_some();
                break;
            }
            p = n.parent();
        }
        if let Some(t) = &impl_type {
            let t = t.split('<').next().unwrap_or(t).trim();
            name = format!("{t}.{name}");
        }
        let mut params = Vec::new();
        if let Some(list) = self.src.field(node, "parameters") {
            for p in named_children(list) {
                let variadic = self.src.kind(p) == "variadic_parameter";
                if matches!(
                    self.src.kind(p),
                    "parameter" | "self_parameter" | "variadic_parameter"
                ) {
                    params.push(Param {
                        name: self.text(p),
                        optional: false,
                        variadic,
                        keyword_only: false,
                    });
                }
            }
        }
        self.facts.functions.push(Function {
            name,
            exported: public && !trait_impl,
            top_level: !ctx.in_fn,
            params,
            loc: self.src.loc(name_node),
            rows: (node.start_position().row, node.end_position().row),
            returns: Vec::new(),
        });
        self.facts.functions.len() - 1
    }

    /// A value function `index` returns (at `node`), for data flow through calls.
    fn returned(&mut self, node: Node<'_>, value: Node<'_>, index: usize) {
        self.deps.clear();
        let value = self.val(value, 0);
        self.deps.clear();
        let loc = self.src.loc(node);
        if let Some(f) = self.facts.functions.get_mut(index) {
            f.add_return(value, loc);
        }
    }

    fn let_declaration(&mut self, node: Node<'_>) {
        let (Some(pattern), Some(value)) = (
            self.src.field(node, "pattern"),
            self.src.field(node, "value"),
        ) else {
            return;
        };
        self.deps.clear();
        let v = self.val(value, 0);
        let name = self.text(pattern);
        let name = name.trim_start_matches("mut ").trim().to_owned();
        if self.src.kind(pattern) == "identifier" || self.src.kind(pattern) == "mut_pattern" {
            self.scope.bind(&name, v.clone(), node.start_position().row);
        }
        self.named(name, v, node, false);
    }

    fn callee_and_receiver(&mut self, function: Node<'_>, d: usize) -> (String, Option<Val>) {
        match self.src.kind(function) {
            "field_expression" => {
                let (Some(value), Some(field)) = (
                    self.src.field(function, "value"),
                    self.src.field(function, "field"),
                ) else {
                    return ("?".to_owned(), None);
                };
                let field = self.text(field);
                let recv = self.val(value, d);
                let callee = match &recv {
                    Val::Ref(p) => format!("{p}.{field}"),
                    Val::Call { callee, .. } => format!("{callee}().{field}"),
                    Val::Str(_) | Val::Built(..) => format!("str.{field}"),
                    _ => format!("?.{field}"),
                };
                (callee, Some(recv))
            }
            "generic_function" => match self.src.field(function, "function") {
                Some(f) => self.callee_and_receiver(f, d),
                None => ("?".to_owned(), None),
            },
            "identifier" | "scoped_identifier" => (self.path(function), None),
            _ => match self.val(function, d) {
                Val::Ref(p) => (p, None),
                _ => ("?".to_owned(), None),
            },
        }
    }

    fn args(&mut self, node: Node<'_>, d: usize) -> Vec<Val> {
        self.src
            .field(node, "arguments")
            .map(named_children)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| {
                !self.src.kind(a).ends_with("comment") && self.src.kind(a) != "attribute_item"
            })
            .take(64)
            .map(|a| self.val(a, d))
            .collect()
    }

    fn call(&mut self, node: Node<'_>, ctx: Ctx) {
        let Some(function) = self.src.field(node, "function") else {
            return;
        };
        self.deps.clear();
        let (callee, receiver) = self.callee_and_receiver(function, 0);
        let args = self.args(node, 0);
        let method = callee
            .rsplit('.')
            .next()
            .unwrap_or(&callee)
            .trim_end_matches("()")
            .to_owned();
        let dep_rows = std::mem::take(&mut self.deps);
        self.facts.calls.push(Call {
            callee,
            method,
            receiver,
            args,
            kwargs: Vec::new(),
            is_new: false,
            loc: self.src.loc(node),
            dep_rows,
            function: ctx.function,
            in_loop: ctx.in_loop,
        });
    }

    /// `cmd.arg(x);` as a statement: the builder bound to `cmd` keeps the arguments.
    fn rebind_builder(&mut self, node: Node<'_>) {
        let mut root = node;
        for _ in 0..64 {
            let next = match self.src.kind(root) {
                "call_expression" => self.src.field(root, "function"),
                "field_expression" => self.src.field(root, "value"),
                _ => None,
            };
            match next {
                Some(n) => root = n,
                None => break,
            }
        }
        if self.src.kind(root) != "identifier" {
            return;
        }
        let name = self.text(root);
        let is_builder = matches!(
            self.scope.value(&name),
            Some((Val::Call { callee, .. }, _)) if callee.contains("Command.new")
        );
        if is_builder {
            self.deps.clear();
            let v = self.val(node, 0);
            if let Val::Call { args, .. } = v
                && let Some((Val::Call { callee, .. }, _)) = self.scope.value(&name)
            {
                let callee = callee.clone();
                self.scope
                    .bind(&name, Val::Call { callee, args }, node.start_position().row);
            }
        }
    }

    fn string_val(&self, node: Node<'_>) -> Val {
        let content: String = named_children(node)
            .into_iter()
            .filter(|c| matches!(self.src.kind(c), "string_content" | "escape_sequence"))
            .map(|c| self.text(c))
            .collect();
        Val::Str(content)
    }

    fn macro_val(&mut self, node: Node<'_>, d: usize) -> Val {
        let name = self
            .src
            .field(node, "macro")
            .map(|m| self.text(m))
            .unwrap_or_default();
        let name = name.rsplit("::").next().unwrap_or("").to_owned();
        let Some(tokens) = named_children(node)
            .into_iter()
            .find(|c| self.src.kind(c) == "token_tree")
        else {
            return Val::Unknown;
        };
        let items = named_children(tokens);
        match name.as_str() {
            "format" | "format_args" | "concat" => {
                let Some(template) = items.iter().find(|c| {
                    matches!(self.src.kind(**c), "string_literal" | "raw_string_literal")
                }) else {
                    return Val::Unknown;
                };
                let text = self.val(*template, d).as_str().unwrap_or("").to_owned();
                let unescaped = text.replace("{{", "").replace("}}", "");
                let mut parts: Vec<Val> = Vec::new();
                if name != "concat" && unescaped.contains('{') {
                    // Inline names ({id}) and the arguments after the template.
                    for piece in unescaped.split('{').skip(1) {
                        let inner = piece.split('}').next().unwrap_or("");
                        let ident = inner.split(':').next().unwrap_or("").trim();
                        if !ident.is_empty() && !ident.chars().all(|c| c.is_ascii_digit()) {
                            parts.push(self.ident_val(ident));
                        }
                    }
                    for item in items
                        .iter()
                        .filter(|c| c.start_byte() > template.end_byte())
                    {
                        match self.src.kind(item) {
                            "identifier" => {
                                let v = self.ident_val(&self.text(*item));
                                parts.push(v);
                            }
                            "string_literal" | "integer_literal" | "float_literal" => {}
                            _ => parts.push(Val::Unknown),
                        }
                    }
                    if parts.is_empty() {
                        parts.push(Val::Unknown);
                    }
                }
                let parts: Vec<Val> = parts.into_iter().filter(|p| !p.is_constant()).collect();
                if parts.is_empty() {
                    Val::Str(text)
                } else {
                    Val::Built(vec![text], bounded(parts))
                }
            }
            "vec" => Val::List(bounded(
                items.iter().take(64).map(|c| self.val(*c, d)).collect(),
            )),
            _ => Val::Call {
                callee: format!("{name}!"),
                args: Vec::new(),
            },
        }
    }

    fn ident_val(&mut self, name: &str) -> Val {
        if let Some((v, row)) = self.scope.value(name) {
            let v = v.clone();
            self.deps.push(*row);
            v
        } else {
            Val::Ref(self.scope.resolve(name))
        }
    }

    /// Classifies an expression (remembered per node while the bindings stay the same).
    fn val(&mut self, node: Node<'_>, depth: usize) -> Val {
        super::remembered_val(
            self,
            node,
            depth,
            |x| (&mut x.scope, &mut x.deps),
            Self::classify,
        )
    }

    fn classify(&mut self, node: Node<'_>, depth: usize) -> Val {
        if depth > max_depth() {
            return Val::Unknown;
        }
        let d = depth + 1;
        match self.src.kind(node) {
            "string_literal" | "raw_string_literal" => self.string_val(node),
            "char_literal" => Val::Str(self.text(node).trim_matches('\'').to_owned()),
            "integer_literal" | "float_literal" => Val::Num,
            "boolean_literal" => Val::Bool(self.src.text_of(node) == "true"),
            "identifier" => {
                let name = self.text(node);
                self.ident_val(&name)
            }
            "scoped_identifier" => Val::Ref(self.path(node)),
            "self" => Val::Ref("self".to_owned()),
            "field_expression" => {
                let (Some(value), Some(field)) =
                    (self.src.field(node, "value"), self.src.field(node, "field"))
                else {
                    return Val::Unknown;
                };
                let field = self.text(field);
                match self.val(value, d) {
                    Val::Ref(p) => Val::Ref(format!("{p}.{field}")),
                    Val::Call { callee, .. } => Val::Ref(format!("{callee}().{field}")),
                    _ => Val::Ref(format!("?.{field}")),
                }
            }
            "call_expression" => {
                let Some(function) = self.src.field(node, "function") else {
                    return Val::Unknown;
                };
                let (callee, receiver) = self.callee_and_receiver(function, d);
                let mut args = self.args(node, d);
                let method = callee.rsplit('.').next().unwrap_or("");
                match (&receiver, method) {
                    (
                        Some(r @ (Val::Str(_) | Val::Built(..))),
                        "to_string" | "to_owned" | "as_str" | "into" | "clone" | "trim"
                        | "to_uppercase" | "to_lowercase" | "as_ref",
                    ) => return r.clone(),
                    // A builder chain keeps the arguments of every link (Command::new(p).arg(a)).
                    (Some(Val::Call { args: before, .. }), _) => {
                        let mut all = before.clone();
                        all.extend(args);
                        return Val::Call {
                            callee,
                            args: bounded(all),
                        };
                    }
                    _ => {}
                }
                if matches!(callee.as_str(), "String.from" | "str.to_string") && args.len() == 1 {
                    return args.remove(0);
                }
                Val::Call {
                    callee,
                    args: bounded(args),
                }
            }
            "macro_invocation" => self.macro_val(node, d),
            "reference_expression"
            | "try_expression"
            | "await_expression"
            | "parenthesized_expression"
            | "type_cast_expression"
            | "unary_expression" => {
                let inner = self.src.field(node, "value").or_else(|| {
                    named_children(node)
                        .into_iter()
                        .find(|c| !self.src.kind(c).ends_with("type"))
                });
                inner.map_or(Val::Unknown, |c| self.val(c, d))
            }
            "binary_expression" => {
                let (Some(l), Some(r)) =
                    (self.src.field(node, "left"), self.src.field(node, "right"))
                else {
                    return Val::Unknown;
                };
                let op = self
                    .src
                    .field(node, "operator")
                    .map(|o| self.text(o))
                    .unwrap_or_default();
                let left = self.val(l, d);
                let right = self.val(r, d);
                match op.as_str() {
                    "+" if matches!(left, Val::Str(_) | Val::Built(..))
                        || matches!(right, Val::Str(_) | Val::Built(..)) =>
                    {
                        Val::concat(left, right)
                    }
                    _ if left == Val::Num && right == Val::Num => Val::Num,
                    _ => Val::Unknown,
                }
            }
            "array_expression" | "tuple_expression" => Val::List(bounded(
                named_children(node)
                    .into_iter()
                    .filter(|c| !self.src.kind(c).ends_with("comment"))
                    .take(64)
                    .map(|c| self.val(c, d))
                    .collect(),
            )),
            "struct_expression" => {
                let mut pairs = Vec::new();
                if let Some(body) = self.src.field(node, "body") {
                    for f in named_children(body).into_iter().take(64) {
                        match self.src.kind(f) {
                            "field_initializer" => {
                                if let (Some(n), Some(v)) =
                                    (self.src.field(f, "field"), self.src.field(f, "value"))
                                {
                                    let key = self.text(n);
                                    pairs.push((key, self.val(v, d)));
                                }
                            }
                            "shorthand_field_initializer" => {
                                let key = self.text(f);
                                let v = self.ident_val(&key);
                                pairs.push((key, v));
                            }
                            _ => {}
                        }
                    }
                }
                Val::Map(pairs)
            }
            _ => Val::Unknown,
        }
    }
}
