//! JavaScript and TypeScript facts from tree-sitter-javascript/-typescript trees.

use std::collections::BTreeSet;

use tree_sitter::Node;

use super::{Call, Facts, Function, Import, Literal, Named, Param, Scope, Val, bounded, max_depth};
use crate::source::{Source, children, named_children, walk};

#[derive(Clone, Copy, Default)]
struct Ctx {
    function: Option<usize>,
    in_loop: bool,
    /// Inside a function (a class method's body does not count).
    in_fn: bool,
}

struct Extractor<'s, 't> {
    src: &'s Source<'t>,
    scope: Scope,
    facts: Facts,
    deps: Vec<usize>,
    exported: BTreeSet<String>,
}

pub(super) fn extract(src: &Source<'_>) -> Facts {
    let mut x = Extractor {
        src,
        scope: Scope::default(),
        facts: Facts::default(),
        deps: Vec::new(),
        exported: BTreeSet::new(),
    };
    let Some(root) = src.root() else {
        return x.facts;
    };
    walk(root, Ctx::default(), |node, ctx, parent| {
        x.visit(node, ctx, parent)
    });
    let exported = std::mem::take(&mut x.exported);
    for f in &mut x.facts.functions {
        f.exported = exported.contains(&f.name);
    }
    let defined: BTreeSet<String> = x.facts.functions.iter().map(|f| f.name.clone()).collect();
    for name in exported {
        if !defined.contains(&name) {
            x.facts.exported_names.push((name, Default::default()));
        }
    }
    x.facts
}

const FUNCTION_KINDS: [&str; 6] = [
    "function_declaration",
    "generator_function_declaration",
    "function_expression",
    "function",
    "arrow_function",
    "method_definition",
];

fn inner_expression(node: Node<'_>) -> Option<Node<'_>> {
    named_children(node)
        .into_iter()
        .find(|c| c.kind() != "comment" && !c.kind().starts_with("type"))
}

impl Extractor<'_, '_> {
    fn text(&self, node: Node<'_>) -> String {
        self.src.text_of(node).to_owned()
    }

    fn visit(&mut self, node: Node<'_>, ctx: Ctx, _parent: &str) -> Ctx {
        let mut inner = ctx;
        let kind = self.src.kind(node);
        if FUNCTION_KINDS.contains(&kind) {
            let index = self.function(node, !ctx.in_fn);
            // An arrow's expression body is what it returns.
            if kind == "arrow_function"
                && let Some(body) = self.src.field(node, "body")
                && self.src.kind(body) != "statement_block"
            {
                self.returned(body, body, index);
            }
            inner.function = Some(index);
            inner.in_loop = false;
            inner.in_fn = ctx.in_fn || kind != "method_definition";
            return inner;
        }
        match kind {
            "import_statement" => self.import(node),
            "import_require_clause" => {
                if let (Some(name), Some(source)) = (
                    named_children(node)
                        .into_iter()
                        .find(|c| self.src.kind(c) == "identifier"),
                    self.src.field(node, "source"),
                ) {
                    let module = self.val(source, 0).as_str().unwrap_or("").to_owned();
                    self.scope.alias(&self.text(name), &module);
                    self.push_import(module, source);
                }
            }
            "export_statement" => self.export(node),
            "variable_declarator" => self.declarator(node),
            "return_statement" => {
                if let (Some(index), Some(value)) = (ctx.function, inner_expression(node)) {
                    self.returned(node, value, index);
                }
            }
            "assignment_expression" => self.assignment(node),
            "augmented_assignment_expression" => self.augmented(node),
            "call_expression" | "new_expression" => {
                self.call(node, ctx);
                let callee_method = self
                    .src
                    .field(node, "function")
                    .filter(|f| self.src.kind(f) == "member_expression")
                    .and_then(|f| self.src.field(f, "property"))
                    .map(|p| self.text(p));
                if matches!(
                    callee_method.as_deref(),
                    Some("forEach" | "map" | "flatMap" | "reduce")
                ) {
                    inner.in_loop = true;
                }
            }
            "for_statement" | "for_in_statement" | "while_statement" | "do_statement" => {
                inner.in_loop = true;
            }
            "pair" => {
                if let (Some(k), Some(v)) =
                    (self.src.field(node, "key"), self.src.field(node, "value"))
                {
                    let key = self.key(k);
                    let value = self.val(v, 0);
                    self.named(key, value, node, false);
                }
            }
            "binary_expression" => {
                let op = self
                    .src
                    .field(node, "operator")
                    .map(|o| self.text(o))
                    .unwrap_or_default();
                if matches!(op.as_str(), "==" | "===" | "!=" | "!==")
                    && let (Some(l), Some(r)) =
                        (self.src.field(node, "left"), self.src.field(node, "right"))
                {
                    for (name_side, value_side) in [(l, r), (r, l)] {
                        if matches!(
                            self.src.kind(name_side),
                            "identifier" | "member_expression" | "subscript_expression"
                        ) {
                            let value = self.val(value_side, 0);
                            if value.as_str().is_some() {
                                let name = self.text(name_side);
                                self.named(name, value, node, true);
                            }
                        }
                    }
                }
            }
            "string" | "template_string" => {
                let text = match self.val(node, max_depth() - 1) {
                    Val::Str(s) => s,
                    Val::Built(f, _) => f.join("{}"),
                    _ => String::new(),
                };
                self.facts.literals.push(Literal {
                    text,
                    loc: self.src.loc(node),
                });
            }
            _ => {}
        }
        inner
    }

    fn key(&mut self, k: Node<'_>) -> String {
        match self.src.kind(k) {
            "property_identifier" | "identifier" | "private_property_identifier" => self.text(k),
            "computed_property_name" => inner_expression(k)
                .map(|e| match self.val(e, 0) {
                    Val::Str(s) => s,
                    _ => self.text(e),
                })
                .unwrap_or_default(),
            _ => match self.val(k, 0) {
                Val::Str(s) => s,
                _ => self.text(k),
            },
        }
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

    fn named(&mut self, name: String, value: Val, node: Node<'_>, compared: bool) {
        self.facts.named.push(Named {
            name,
            value,
            loc: self.src.loc(node),
            compared,
        });
    }

    fn push_import(&mut self, module: String, node: Node<'_>) {
        self.facts.imports.push(Import {
            module,
            loc: self.src.loc(node),
        });
    }

    fn import(&mut self, node: Node<'_>) {
        let Some(source) = self.src.field(node, "source") else {
            return;
        };
        let module = self.val(source, 0).as_str().unwrap_or("").to_owned();
        self.push_import(module.clone(), source);
        for clause in named_children(node)
            .into_iter()
            .filter(|c| self.src.kind(c) == "import_clause")
        {
            for part in named_children(clause) {
                match self.src.kind(part) {
                    "identifier" => self.scope.alias(&self.text(part), &module),
                    "namespace_import" => {
                        if let Some(id) = named_children(part).first() {
                            self.scope.alias(&self.text(*id), &module);
                        }
                    }
                    "named_imports" => {
                        for spec in named_children(part) {
                            if self.src.kind(spec) != "import_specifier" {
                                continue;
                            }
                            let Some(name) = self.src.field(spec, "name") else {
                                continue;
                            };
                            let name = self.key(name);
                            let alias = self
                                .src
                                .field(spec, "alias")
                                .map_or_else(|| name.clone(), |a| self.text(a));
                            self.scope.alias(&alias, &format!("{module}.{name}"));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn export(&mut self, node: Node<'_>) {
        let is_default = children(node).iter().any(|c| self.src.kind(c) == "default");
        if is_default {
            self.exported.insert("default".to_owned());
        }
        if let Some(decl) = self.src.field(node, "declaration") {
            match self.src.kind(decl) {
                "function_declaration"
                | "generator_function_declaration"
                | "class_declaration"
                | "abstract_class_declaration"
                | "interface_declaration"
                | "type_alias_declaration"
                | "enum_declaration" => {
                    if let Some(n) = self.src.field(decl, "name") {
                        self.exported.insert(self.text(n));
                    }
                }
                "lexical_declaration" | "variable_declaration" => {
                    for d in named_children(decl) {
                        if self.src.kind(d) == "variable_declarator"
                            && let Some(n) = self.src.field(d, "name")
                        {
                            self.exported.insert(self.text(n));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(value) = self.src.field(node, "value")
            && let Some(n) = self.src.field(value, "name")
        {
            self.exported.insert(self.text(n));
        }
        for clause in named_children(node)
            .into_iter()
            .filter(|c| self.src.kind(c) == "export_clause")
        {
            for spec in named_children(clause) {
                if let Some(name) = self.src.field(spec, "name") {
                    let target = self.src.field(spec, "alias").unwrap_or(name);
                    let exported = self.key(target);
                    self.exported.insert(exported);
                }
            }
        }
    }

    /// The name a function gets: its own, its declarator's, its assignment target's.
    fn function_name(&self, node: Node<'_>) -> String {
        if let Some(n) = self.src.field(node, "name") {
            let name = self.text(n);
            if self.src.kind(node) == "method_definition" {
                let class = node
                    .parent()
                    .and_then(|body| body.parent())
                    .and_then(|c| self.src.field(c, "name"))
                    .map(|c| self.text(c));
                return class.map_or(name.clone(), |c| format!("{c}.{name}"));
            }
            return name;
        }
        let Some(parent) = node.parent() else {
            return String::new();
        };
        match self.src.kind(parent) {
            "variable_declarator" => self
                .src
                .field(parent, "name")
                .map(|n| self.text(n))
                .unwrap_or_default(),
            "assignment_expression" => self
                .src
                .field(parent, "left")
                .map(|l| {
                    let t = self.text(l);
                    export_name(&t).unwrap_or(t)
                })
                .unwrap_or_default(),
            "pair" => self
                .src
                .field(parent, "key")
                .map(|k| self.text(k))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn function(&mut self, node: Node<'_>, top_level: bool) -> usize {
        let name = self.function_name(node);
        let mut params = Vec::new();
        let list = self
            .src
            .field(node, "parameters")
            .or_else(|| self.src.field(node, "parameter"));
        if let Some(list) = list {
            let items = if self.src.kind(list) == "identifier" {
                vec![list]
            } else {
                named_children(list)
            };
            for p in items {
                let text = self.text(p);
                let (optional, variadic) = match self.src.kind(p) {
                    "identifier" | "object_pattern" | "array_pattern" => (false, false),
                    "required_parameter" => {
                        let rest = named_children(p)
                            .iter()
                            .any(|c| self.src.kind(c) == "rest_pattern");
                        let default = self.src.field(p, "value").is_some();
                        (default || rest, rest)
                    }
                    "assignment_pattern" | "optional_parameter" => (true, false),
                    "rest_pattern" => (true, true),
                    _ => continue,
                };
                if text == "this" || text.starts_with("this:") {
                    continue;
                }
                params.push(Param {
                    name: text,
                    optional,
                    variadic,
                    keyword_only: false,
                });
            }
        }
        let name_loc = self
            .src
            .field(node, "name")
            .map_or_else(|| self.src.loc(node), |n| self.src.loc(n));
        self.facts.functions.push(Function {
            name,
            exported: false,
            top_level,
            params,
            loc: name_loc,
            rows: (node.start_position().row, node.end_position().row),
            returns: Vec::new(),
        });
        self.facts.functions.len() - 1
    }

    fn declarator(&mut self, node: Node<'_>) {
        let (Some(name), Some(value)) =
            (self.src.field(node, "name"), self.src.field(node, "value"))
        else {
            return;
        };
        self.deps.clear();
        let v = self.val(value, 0);
        let row = node.start_position().row;
        match self.src.kind(name) {
            "identifier" => {
                let n = self.text(name);
                match &v {
                    // A function: calls of it are calls of the name (its facts are its own).
                    _ if FUNCTION_KINDS.contains(&self.src.kind(value)) => {}
                    // A module (require) or a path into one: an alias, not a value.
                    Val::Ref(p) if self.src.kind(value) != "identifier" || !p.is_empty() => {
                        if is_module_value(self.src, value) {
                            self.scope.alias(&n, p);
                        } else {
                            self.scope.bind(&n, v.clone(), row);
                        }
                    }
                    _ => self.scope.bind(&n, v.clone(), row),
                }
                self.named(n, v, node, false);
            }
            "object_pattern" => {
                let base = match &v {
                    Val::Ref(p) => Some(p.clone()),
                    _ => None,
                };
                for part in named_children(name) {
                    match self.src.kind(part) {
                        "shorthand_property_identifier_pattern" => {
                            let n = self.text(part);
                            match &base {
                                Some(b) => self.scope.alias(&n, &format!("{b}.{n}")),
                                None => self.scope.bind(&n, Val::Unknown, row),
                            }
                        }
                        "pair_pattern" => {
                            if let (Some(k), Some(target)) =
                                (self.src.field(part, "key"), self.src.field(part, "value"))
                                && self.src.kind(target) == "identifier"
                            {
                                let key = self.key(k);
                                let n = self.text(target);
                                match &base {
                                    Some(b) => self.scope.alias(&n, &format!("{b}.{key}")),
                                    None => self.scope.bind(&n, Val::Unknown, row),
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn assignment(&mut self, node: Node<'_>) {
        let (Some(left), Some(right)) =
            (self.src.field(node, "left"), self.src.field(node, "right"))
        else {
            return;
        };
        self.deps.clear();
        let value = self.val(right, 0);
        let target = self.text(left);
        if self.src.kind(left) == "identifier" {
            self.scope
                .bind(&target, value.clone(), node.start_position().row);
        }
        if let Some(name) = export_name(&target) {
            self.exported.insert(name);
        } else if target == "module.exports" || target == "exports" {
            match self.src.kind(right) {
                "object" => {
                    for part in named_children(right) {
                        match self.src.kind(part) {
                            "shorthand_property_identifier" => {
                                self.exported.insert(self.text(part));
                            }
                            "pair" | "method_definition" => {
                                if let Some(k) = self
                                    .src
                                    .field(part, "key")
                                    .or_else(|| self.src.field(part, "name"))
                                {
                                    let key = self.key(k);
                                    self.exported.insert(key);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {
                    self.exported.insert("default".to_owned());
                }
            }
        }
        let name = match self.val(left, 0) {
            Val::Ref(p) => p,
            _ => target,
        };
        self.named(name, value, node, false);
    }

    fn augmented(&mut self, node: Node<'_>) {
        let (Some(left), Some(right)) =
            (self.src.field(node, "left"), self.src.field(node, "right"))
        else {
            return;
        };
        let op = self
            .src
            .field(node, "operator")
            .map(|o| self.text(o))
            .unwrap_or_default();
        if self.src.kind(left) != "identifier" || op != "+=" {
            return;
        }
        let name = self.text(left);
        let before = self
            .scope
            .value(&name)
            .map_or(Val::Unknown, |(v, _)| v.clone());
        let right = self.val(right, 0);
        self.scope
            .bind(&name, Val::concat(before, right), node.start_position().row);
    }

    fn callee(&mut self, function: Node<'_>, d: usize) -> String {
        if self.src.kind(function) == "import" {
            return "import".to_owned();
        }
        match self.val(function, d) {
            Val::Ref(p) => p,
            // util.promisify(exec) calls what it wraps.
            Val::Call { callee, args } if callee.ends_with("promisify") => match args.first() {
                Some(Val::Ref(p)) => p.clone(),
                _ => format!("{callee}()"),
            },
            Val::Call { callee, .. } => format!("{callee}()"),
            _ => "?".to_owned(),
        }
    }

    fn call(&mut self, node: Node<'_>, ctx: Ctx) {
        let is_new = self.src.kind(node) == "new_expression";
        let Some(function) = self
            .src
            .field(node, "function")
            .or_else(|| self.src.field(node, "constructor"))
        else {
            return;
        };
        self.deps.clear();
        let callee = self.callee(function, 0);
        let receiver = (self.src.kind(function) == "member_expression")
            .then(|| self.src.field(function, "object"))
            .flatten()
            .map(|o| self.val(o, 0));
        let args: Vec<Val> = self
            .src
            .field(node, "arguments")
            .map(named_children)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| self.src.kind(a) != "comment")
            .take(64)
            .map(|a| self.val(a, 0))
            .collect();
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
            is_new,
            loc: self.src.loc(node),
            dep_rows,
            function: ctx.function,
            in_loop: ctx.in_loop,
        });
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
            "string" => Val::Str(
                named_children(node)
                    .into_iter()
                    .map(|c| self.text(c))
                    .collect(),
            ),
            "template_string" => {
                let mut fragments = Vec::new();
                let mut parts = Vec::new();
                for c in named_children(node) {
                    match self.src.kind(c) {
                        "template_substitution" => {
                            let v = inner_expression(c).map_or(Val::Unknown, |e| self.val(e, d));
                            match v {
                                Val::Str(s) => fragments.push(s),
                                Val::Num | Val::Bool(_) | Val::Null => {}
                                other => parts.push(other),
                            }
                        }
                        _ => fragments.push(self.text(c)),
                    }
                }
                if parts.is_empty() {
                    Val::Str(fragments.concat())
                } else {
                    Val::Built(fragments, parts)
                }
            }
            "number" => Val::Num,
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            "null" | "undefined" => Val::Null,
            "identifier" | "shorthand_property_identifier" => {
                let name = self.text(node);
                if name == "undefined" {
                    return Val::Null;
                }
                if let Some((v, row)) = self.scope.value(&name) {
                    let v = v.clone();
                    self.deps.push(*row);
                    v
                } else {
                    Val::Ref(self.scope.resolve(&name))
                }
            }
            "this" => Val::Ref("this".to_owned()),
            "member_expression" => {
                let (Some(object), Some(prop)) = (
                    self.src.field(node, "object"),
                    self.src.field(node, "property"),
                ) else {
                    return Val::Unknown;
                };
                let prop = self.text(prop);
                match self.val(object, d) {
                    Val::Ref(p) => Val::Ref(global(&format!("{p}.{prop}"))),
                    Val::Call { callee, .. } => Val::Ref(format!("{callee}().{prop}")),
                    Val::Str(_) | Val::Built(..) => Val::Ref(format!("String.{prop}")),
                    Val::List(_) => Val::Ref(format!("Array.{prop}")),
                    _ => Val::Ref(format!("?.{prop}")),
                }
            }
            "subscript_expression" => {
                let (Some(object), Some(index)) = (
                    self.src.field(node, "object"),
                    self.src.field(node, "index"),
                ) else {
                    return Val::Unknown;
                };
                let key = self.val(index, d);
                match (self.val(object, d), key) {
                    (Val::Ref(p), Val::Str(k)) => Val::Ref(global(&format!("{p}.{k}"))),
                    (Val::Ref(p), _) => Val::Ref(format!("{p}[]")),
                    (Val::Map(pairs), Val::Str(k)) => pairs
                        .into_iter()
                        .find(|(key, _)| *key == k)
                        .map_or(Val::Unknown, |(_, v)| v),
                    _ => Val::Unknown,
                }
            }
            "call_expression" => self.call_val(node, d),
            "new_expression" => {
                let callee = self
                    .src
                    .field(node, "constructor")
                    .map_or_else(|| "?".to_owned(), |c| self.callee(c, d));
                let args = self
                    .src
                    .field(node, "arguments")
                    .map(named_children)
                    .unwrap_or_default()
                    .into_iter()
                    .take(64)
                    .map(|a| self.val(a, d))
                    .collect();
                Val::Call { callee, args }
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
                let stringy = |v: &Val| matches!(v, Val::Str(_) | Val::Built(..));
                match op.as_str() {
                    "+" if stringy(&left) || stringy(&right) => Val::concat(left, right),
                    "||" | "??" | "&&" => {
                        if left.is_constant() && right.is_constant() {
                            left
                        } else {
                            Val::Built(
                                Vec::new(),
                                [left, right]
                                    .into_iter()
                                    .filter(|v| !v.is_constant())
                                    .collect(),
                            )
                        }
                    }
                    _ if left == Val::Num && right == Val::Num => Val::Num,
                    _ => Val::Unknown,
                }
            }
            "parenthesized_expression"
            | "await_expression"
            | "as_expression"
            | "satisfies_expression"
            | "non_null_expression"
            | "type_assertion"
            | "spread_element" => inner_expression(node).map_or(Val::Unknown, |c| self.val(c, d)),
            "ternary_expression" => {
                let values: Vec<Val> = ["consequence", "alternative"]
                    .iter()
                    .filter_map(|f| self.src.field(node, f))
                    .map(|c| self.val(c, d))
                    .collect();
                if values.iter().all(Val::is_constant) {
                    values.into_iter().next().unwrap_or(Val::Unknown)
                } else {
                    Val::Built(
                        Vec::new(),
                        values.into_iter().filter(|v| !v.is_constant()).collect(),
                    )
                }
            }
            "array" => Val::List(bounded(
                named_children(node)
                    .into_iter()
                    .filter(|c| self.src.kind(c) != "comment")
                    .take(64)
                    .map(|c| self.val(c, d))
                    .collect(),
            )),
            "object" => {
                let mut pairs = Vec::new();
                for c in named_children(node).into_iter().take(64) {
                    match self.src.kind(c) {
                        "pair" => {
                            if let (Some(k), Some(v)) =
                                (self.src.field(c, "key"), self.src.field(c, "value"))
                            {
                                let key = self.key(k);
                                pairs.push((key, self.val(v, d)));
                            }
                        }
                        "shorthand_property_identifier" => {
                            let key = self.text(c);
                            let v = self.val(c, d);
                            pairs.push((key, v));
                        }
                        "spread_element" => {
                            let v = self.val(c, d);
                            pairs.push(("...".to_owned(), v));
                        }
                        _ => {}
                    }
                }
                Val::Map(pairs)
            }
            _ => Val::Unknown,
        }
    }

    fn call_val(&mut self, node: Node<'_>, d: usize) -> Val {
        let Some(function) = self.src.field(node, "function") else {
            return Val::Unknown;
        };
        let arg_nodes: Vec<Node<'_>> = self
            .src
            .field(node, "arguments")
            .map(named_children)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| self.src.kind(a) != "comment")
            .take(64)
            .collect();
        let callee = self.callee(function, d);
        let mut args: Vec<Val> = arg_nodes.iter().map(|a| self.val(*a, d)).collect();
        if callee == "require" && args.len() == 1 {
            if let Val::Str(m) = &args[0] {
                return Val::Ref(m.clone());
            }
            return Val::Unknown;
        }
        if self.src.kind(function) == "member_expression"
            && let Some(object) = self.src.field(function, "object")
        {
            let base = self.val(object, d);
            let method = callee.rsplit('.').next().unwrap_or("");
            match (&base, method) {
                (
                    Val::Str(_) | Val::Built(..),
                    "concat" | "replace" | "replaceAll" | "trim" | "toUpperCase" | "toLowerCase",
                ) => {
                    let mut out = base.clone();
                    for a in args {
                        out = Val::concat(out, a);
                    }
                    return out;
                }
                (Val::List(items), "join") => {
                    let mut out = Val::Str(String::new());
                    for item in items.clone() {
                        out = Val::concat(out, item);
                    }
                    return out;
                }
                _ => {}
            }
        }
        match callee.as_str() {
            "String" if args.len() == 1 => match args.remove(0) {
                s @ (Val::Str(_) | Val::Built(..)) => s,
                other => Val::Built(Vec::new(), vec![other]),
            },
            "util.format" | "format" if !args.is_empty() => {
                let mut out = args.remove(0);
                for a in args {
                    out = Val::concat(out, a);
                }
                out
            }
            _ => Val::Call {
                callee,
                args: bounded(args),
            },
        }
    }
}

/// `global.eval`, `globalThis.eval`, `window.eval` → `eval`.
fn global(path: &str) -> String {
    path.strip_prefix("globalThis.")
        .or_else(|| path.strip_prefix("global."))
        .or_else(|| path.strip_prefix("window."))
        .or_else(|| path.strip_prefix("self."))
        .unwrap_or(path)
        .to_owned()
}

/// `exports.X` / `module.exports.X` → `X`.
fn export_name(target: &str) -> Option<String> {
    target
        .strip_prefix("module.exports.")
        .or_else(|| target.strip_prefix("exports."))
        .filter(|n| !n.is_empty() && !n.contains('.'))
        .map(str::to_owned)
}

/// `require("m")` or `require("m").x`: the declarator names a module, so it is an alias.
fn is_module_value(src: &Source<'_>, value: Node<'_>) -> bool {
    let mut v = value;
    for _ in 0..8 {
        match v.kind() {
            "call_expression" => {
                return src
                    .field(v, "function")
                    .is_some_and(|f| f.kind() == "identifier" && src.text_of(f) == "require");
            }
            "member_expression" => match src.field(v, "object") {
                Some(o) => v = o,
                None => return false,
            },
            "await_expression" | "parenthesized_expression" => match named_children(v).first() {
                Some(c) => v = *c,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}
