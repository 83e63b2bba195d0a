//! Python facts from tree-sitter-python's tree.

use tree_sitter::Node;

use super::{Call, Facts, Function, Import, Literal, Named, Param, Scope, Val, bounded, max_depth};
use crate::rules::python_syntax::{self, Place};
use crate::source::{Source, children, named_children, walk};

#[derive(Clone, Copy, Default)]
struct Ctx {
    function: Option<usize>,
    in_loop: bool,
    top: bool,
    class_top: bool,
}

struct Extractor<'s, 't> {
    src: &'s Source<'t>,
    scope: Scope,
    facts: Facts,
    deps: Vec<usize>,
    class_name: Vec<(usize, String)>,
}

pub(super) fn extract(src: &Source<'_>) -> Facts {
    let mut x = Extractor {
        src,
        scope: Scope::default(),
        facts: Facts::default(),
        deps: Vec::new(),
        class_name: Vec::new(),
    };
    let Some(root) = src.root() else {
        return x.facts;
    };
    let mut errors = Vec::new();
    let start = Ctx {
        top: true,
        ..Ctx::default()
    };
    walk(
        root,
        (start, Place::default()),
        |node, (ctx, place), parent| {
            (
                x.visit(node, ctx, parent),
                python_syntax::check_node(src, node, place, &mut errors),
            )
        },
    );
    x.facts.python_errors = Some(errors);
    x.facts
}

fn builtin(name: &str) -> String {
    name.strip_prefix("builtins.")
        .or_else(|| name.strip_prefix("__builtins__."))
        .or_else(|| name.strip_prefix("__builtin__."))
        .unwrap_or(name)
        .to_owned()
}

impl Extractor<'_, '_> {
    fn text(&self, node: Node<'_>) -> String {
        self.src.text_of(node).to_owned()
    }

    /// Records what `node` says; returns the context for its children.
    fn visit(&mut self, node: Node<'_>, ctx: Ctx, parent: &str) -> Ctx {
        let mut inner = ctx;
        match self.src.kind(node) {
            "module" => {}
            "block" => {
                inner.top = false;
            }
            "decorated_definition" => {}
            "class_definition" => {
                if ctx.top
                    && let Some(name) = self.src.field(node, "name")
                {
                    self.class_name.push((node.end_byte(), self.text(name)));
                    inner.class_top = true;
                }
                inner.top = false;
                return inner;
            }
            "import_statement" => self.import(node),
            "import_from_statement" => self.import_from(node),
            "function_definition" => {
                inner.function = Some(self.function(node, ctx));
                inner.in_loop = false;
                inner.top = false;
                inner.class_top = false;
                return inner;
            }
            "for_statement"
            | "while_statement"
            | "list_comprehension"
            | "dictionary_comprehension"
            | "set_comprehension"
            | "generator_expression" => {
                inner.in_loop = true;
            }
            "assignment" => self.assignment(node),
            "augmented_assignment" => self.augmented(node),
            "return_statement" => self.returned(node, ctx),
            "call" => self.call(node, ctx),
            "pair" => {
                if let (Some(k), Some(v)) =
                    (self.src.field(node, "key"), self.src.field(node, "value"))
                {
                    let key = match self.val(k, 0) {
                        Val::Str(s) => s,
                        _ => self.text(k),
                    };
                    let value = self.val(v, 0);
                    self.named(key, value, node, false);
                }
            }
            "comparison_operator" => self.comparison(node),
            "string" if parent != "concatenated_string" => {
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
            "concatenated_string" => {
                let text = self.val(node, 0).fragments().join("");
                self.facts.literals.push(Literal {
                    text,
                    loc: self.src.loc(node),
                });
            }
            _ => {}
        }
        inner
    }

    /// A `return` of the enclosing function: its value, for data flow through calls.
    fn returned(&mut self, node: Node<'_>, ctx: Ctx) {
        let Some(index) = ctx.function else {
            return;
        };
        let Some(value) = named_children(node)
            .into_iter()
            .find(|c| self.src.kind(c) != "comment")
        else {
            return;
        };
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

    fn import(&mut self, node: Node<'_>) {
        for child in named_children(node) {
            match self.src.kind(child) {
                "dotted_name" => {
                    let module = self.text(child);
                    let first = module.split('.').next().unwrap_or("").to_owned();
                    self.scope.alias(&first, &first);
                    self.push_import(module, child);
                }
                "aliased_import" => {
                    if let (Some(name), Some(alias)) = (
                        self.src.field(child, "name"),
                        self.src.field(child, "alias"),
                    ) {
                        let module = self.text(name);
                        self.scope.alias(&self.text(alias), &module);
                        self.push_import(module, child);
                    }
                }
                _ => {}
            }
        }
    }

    fn push_import(&mut self, module: String, node: Node<'_>) {
        self.facts.imports.push(Import {
            module,
            loc: self.src.loc(node),
        });
    }

    fn import_from(&mut self, node: Node<'_>) {
        let Some(module_node) = self.src.field(node, "module_name") else {
            return;
        };
        let relative = self.src.kind(module_node) == "relative_import";
        let module = self.text(module_node);
        if !relative {
            self.push_import(module.clone(), module_node);
        }
        let mut cursor = node.walk();
        let names: Vec<Node<'_>> = node.children_by_field_name("name", &mut cursor).collect();
        for name in names {
            let (imported, alias) = match self.src.kind(name) {
                "aliased_import" => {
                    match (self.src.field(name, "name"), self.src.field(name, "alias")) {
                        (Some(n), Some(a)) => (self.text(n), self.text(a)),
                        _ => continue,
                    }
                }
                _ => {
                    let t = self.text(name);
                    (t.clone(), t)
                }
            };
            let path = if relative {
                imported.clone()
            } else {
                format!("{module}.{imported}")
            };
            self.scope.alias(&alias, &path);
        }
    }

    fn function(&mut self, node: Node<'_>, ctx: Ctx) -> usize {
        let name_node = self.src.field(node, "name").unwrap_or(node);
        let mut name = self.text(name_node);
        let class = self
            .class_name
            .iter()
            .rev()
            .find(|(end, _)| *end >= node.end_byte())
            .map(|(_, n)| n.clone());
        let mut exported = !name.starts_with('_') || name.starts_with("__") && name.ends_with("__");
        let top_level = ctx.top || ctx.class_top;
        if ctx.class_top
            && let Some(class) = class
        {
            exported &= !class.starts_with('_');
            name = format!("{class}.{name}");
        }
        let mut params = Vec::new();
        let mut keyword_only = false;
        if let Some(list) = self.src.field(node, "parameters") {
            for p in named_children(list) {
                let text = self.text(p);
                let param = match self.src.kind(p) {
                    "identifier" => Param {
                        name: text,
                        optional: false,
                        variadic: false,
                        keyword_only,
                    },
                    "typed_parameter" => {
                        let splat = named_children(p)
                            .first()
                            .map(|c| self.src.kind(c).to_owned())
                            .unwrap_or_default();
                        match splat.as_str() {
                            "list_splat_pattern" => {
                                keyword_only = true;
                                Param {
                                    name: text,
                                    optional: true,
                                    variadic: true,
                                    keyword_only: false,
                                }
                            }
                            "dictionary_splat_pattern" => Param {
                                name: text,
                                optional: true,
                                variadic: true,
                                keyword_only: true,
                            },
                            _ => Param {
                                name: text,
                                optional: false,
                                variadic: false,
                                keyword_only,
                            },
                        }
                    }
                    "default_parameter" | "typed_default_parameter" => Param {
                        name: text,
                        optional: true,
                        variadic: false,
                        keyword_only,
                    },
                    "list_splat_pattern" => {
                        keyword_only = true;
                        Param {
                            name: text,
                            optional: true,
                            variadic: true,
                            keyword_only: false,
                        }
                    }
                    "dictionary_splat_pattern" => Param {
                        name: text,
                        optional: true,
                        variadic: true,
                        keyword_only: true,
                    },
                    "keyword_separator" => {
                        keyword_only = true;
                        continue;
                    }
                    _ => continue,
                };
                params.push(param);
            }
        }
        if ctx.class_top
            && params
                .first()
                .is_some_and(|p| p.name == "self" || p.name == "cls")
        {
            params.remove(0);
        }
        self.facts.functions.push(Function {
            name,
            exported,
            top_level,
            params,
            loc: self.src.loc(name_node),
            rows: (node.start_position().row, node.end_position().row),
            returns: Vec::new(),
        });
        self.facts.functions.len() - 1
    }

    fn assignment(&mut self, node: Node<'_>) {
        let (Some(left), Some(right)) =
            (self.src.field(node, "left"), self.src.field(node, "right"))
        else {
            return;
        };
        self.deps.clear();
        let value = self.val(right, 0);
        let row = node.start_position().row;
        match self.src.kind(left) {
            "identifier" => {
                let name = self.text(left);
                self.scope.bind(&name, value.clone(), row);
                self.named(name, value, node, false);
            }
            "pattern_list" | "tuple_pattern" => {
                for target in named_children(left) {
                    if self.src.kind(target) == "identifier" {
                        self.scope.bind(&self.text(target), Val::Unknown, row);
                    }
                }
            }
            _ => {
                let name = match self.val(left, 0) {
                    Val::Ref(p) => p,
                    _ => self.text(left),
                };
                self.named(name, value, node, false);
            }
        }
    }

    fn augmented(&mut self, node: Node<'_>) {
        let (Some(left), Some(right), Some(op)) = (
            self.src.field(node, "left"),
            self.src.field(node, "right"),
            self.src.field(node, "operator"),
        ) else {
            return;
        };
        if self.src.kind(left) != "identifier" {
            return;
        }
        let name = self.text(left);
        let before = self
            .scope
            .value(&name)
            .map_or(Val::Unknown, |(v, _)| v.clone());
        let right = self.val(right, 0);
        let value = match self.src.text_of(op) {
            "+=" => Val::concat(before, right),
            "%=" => Val::concat(before, right),
            _ => Val::Unknown,
        };
        self.scope.bind(&name, value, node.start_position().row);
    }

    fn comparison(&mut self, node: Node<'_>) {
        let operands: Vec<Node<'_>> = named_children(node);
        if operands.len() != 2 {
            return;
        }
        let (a, b) = (operands[0], operands[1]);
        for (name_side, value_side) in [(a, b), (b, a)] {
            if matches!(
                self.src.kind(name_side),
                "identifier" | "attribute" | "subscript"
            ) {
                let value = self.val(value_side, 0);
                if value.as_str().is_some() {
                    let name = self.text(name_side);
                    self.named(name, value, node, true);
                }
            }
        }
    }

    fn call(&mut self, node: Node<'_>, ctx: Ctx) {
        let Some(function) = self.src.field(node, "function") else {
            return;
        };
        self.deps.clear();
        let callee = match self.val(function, 0) {
            Val::Ref(p) => p,
            Val::Call { callee, .. } => format!("{callee}()"),
            _ => "?".to_owned(),
        };
        let receiver = (self.src.kind(function) == "attribute")
            .then(|| self.src.field(function, "object"))
            .flatten()
            .map(|o| self.val(o, 0));
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        if let Some(list) = self.src.field(node, "arguments") {
            for a in named_children(list) {
                match self.src.kind(a) {
                    "keyword_argument" => {
                        if let (Some(n), Some(v)) =
                            (self.src.field(a, "name"), self.src.field(a, "value"))
                        {
                            let value = self.val(v, 0);
                            let name = self.text(n);
                            self.named(name.clone(), value.clone(), a, false);
                            kwargs.push((name, value));
                        }
                    }
                    "comment" => {}
                    "list_splat" | "dictionary_splat" => {
                        let v = named_children(a)
                            .first()
                            .map_or(Val::Unknown, |c| self.val(*c, 0));
                        args.push(v);
                    }
                    _ => args.push(self.val(a, 0)),
                }
            }
        }
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
            args: bounded(args),
            kwargs: bounded(kwargs),
            is_new: false,
            loc: self.src.loc(node),
            dep_rows,
            function: ctx.function,
            in_loop: ctx.in_loop,
        });
    }

    fn string_val(&mut self, node: Node<'_>, depth: usize) -> Val {
        let mut fragments = Vec::new();
        let mut parts = Vec::new();
        for child in children(node) {
            match self.src.kind(child) {
                "string_content" => fragments.push(self.text(child)),
                "interpolation" => {
                    let v = self
                        .src
                        .field(child, "expression")
                        .or_else(|| named_children(child).first().copied())
                        .map_or(Val::Unknown, |e| self.val(e, depth + 1));
                    match v {
                        Val::Str(s) => fragments.push(s),
                        Val::Num | Val::Bool(_) | Val::Null => {}
                        other => parts.push(other),
                    }
                }
                _ => {}
            }
        }
        if parts.is_empty() {
            Val::Str(fragments.concat())
        } else {
            Val::Built(fragments, parts)
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
            "string" => self.string_val(node, depth),
            "concatenated_string" => {
                named_children(node)
                    .into_iter()
                    .fold(Val::Str(String::new()), |acc, c| {
                        let v = self.val(c, d);
                        Val::concat(acc, v)
                    })
            }
            "integer" | "float" => Val::Num,
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            "none" => Val::Null,
            "identifier" => {
                let name = self.text(node);
                if let Some((v, row)) = self.scope.value(&name) {
                    let v = v.clone();
                    self.deps.push(*row);
                    v
                } else {
                    Val::Ref(builtin(&self.scope.resolve(&name)))
                }
            }
            "attribute" => {
                let (Some(object), Some(attr)) = (
                    self.src.field(node, "object"),
                    self.src.field(node, "attribute"),
                ) else {
                    return Val::Unknown;
                };
                let attr = self.text(attr);
                match self.val(object, d) {
                    Val::Ref(p) => Val::Ref(builtin(&format!("{p}.{attr}"))),
                    Val::Call { callee, .. } => Val::Ref(format!("{callee}().{attr}")),
                    Val::Str(_) | Val::Built(..) => Val::Ref(format!("str.{attr}")),
                    _ => Val::Ref(format!("?.{attr}")),
                }
            }
            "subscript" => {
                let Some(value) = self.src.field(node, "value") else {
                    return Val::Unknown;
                };
                let key = self
                    .src
                    .field(node, "subscript")
                    .map_or(Val::Unknown, |k| self.val(k, d));
                let base = self.val(value, d);
                match (base, key) {
                    (Val::Call { callee, .. }, Val::Str(k))
                        if matches!(callee.as_str(), "globals" | "locals" | "vars") =>
                    {
                        Val::Ref(builtin(&k))
                    }
                    (Val::Ref(p), Val::Str(k)) if p.ends_with("__dict__") => Val::Ref(builtin(&k)),
                    (Val::Ref(p), Val::Str(k)) => Val::Ref(format!("{p}.{k}")),
                    (Val::Ref(p), _) => Val::Ref(format!("{p}[]")),
                    (Val::Map(pairs), Val::Str(k)) => pairs
                        .into_iter()
                        .find(|(key, _)| *key == k)
                        .map_or(Val::Unknown, |(_, v)| v),
                    _ => Val::Unknown,
                }
            }
            "call" => self.call_val(node, d),
            "binary_operator" => {
                let (Some(l), Some(r), Some(op)) = (
                    self.src.field(node, "left"),
                    self.src.field(node, "right"),
                    self.src.field(node, "operator"),
                ) else {
                    return Val::Unknown;
                };
                let op = self.src.text_of(op);
                let left = self.val(l, d);
                let right = self.val(r, d);
                let stringy = |v: &Val| matches!(v, Val::Str(_) | Val::Built(..));
                match op {
                    "+" if stringy(&left) || stringy(&right) => Val::concat(left, right),
                    "%" if stringy(&left) => {
                        if right.is_constant() {
                            left
                        } else {
                            let fragments =
                                left.fragments().iter().map(|s| (*s).to_owned()).collect();
                            Val::Built(fragments, vec![right])
                        }
                    }
                    _ if left == Val::Num && right == Val::Num => Val::Num,
                    _ => Val::Unknown,
                }
            }
            "parenthesized_expression" | "await" | "list_splat" | "dictionary_splat" => {
                named_children(node)
                    .first()
                    .map_or(Val::Unknown, |c| self.val(*c, d))
            }
            "list" | "tuple" | "set" | "expression_list" => Val::List(bounded(
                named_children(node)
                    .into_iter()
                    .filter(|c| self.src.kind(c) != "comment")
                    .take(64)
                    .map(|c| self.val(c, d))
                    .collect(),
            )),
            "dictionary" => {
                let mut pairs = Vec::new();
                for c in named_children(node).into_iter().take(64) {
                    match self.src.kind(c) {
                        "pair" => {
                            if let (Some(k), Some(v)) =
                                (self.src.field(c, "key"), self.src.field(c, "value"))
                            {
                                let key = match self.val(k, d) {
                                    Val::Str(s) => s,
                                    _ => self.text(k),
                                };
                                pairs.push((key, self.val(v, d)));
                            }
                        }
                        "dictionary_splat" => {
                            let v = self.val(c, d);
                            pairs.push(("**".to_owned(), v));
                        }
                        _ => {}
                    }
                }
                Val::Map(pairs)
            }
            "conditional_expression" | "boolean_operator" => {
                let values: Vec<Val> = named_children(node)
                    .into_iter()
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
            _ => Val::Unknown,
        }
    }

    fn call_val(&mut self, node: Node<'_>, d: usize) -> Val {
        let Some(function) = self.src.field(node, "function") else {
            return Val::Unknown;
        };
        let args: Vec<Node<'_>> = self
            .src
            .field(node, "arguments")
            .map(named_children)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| self.src.kind(a) != "comment")
            .collect();
        if self.src.kind(function) == "attribute"
            && let (Some(object), Some(attr)) = (
                self.src.field(function, "object"),
                self.src.field(function, "attribute"),
            )
        {
            let attr = self.text(attr);
            let base = self.val(object, d);
            if matches!(base, Val::Str(_) | Val::Built(..)) {
                let fragments: Vec<String> =
                    base.fragments().iter().map(|s| (*s).to_owned()).collect();
                let arg_vals: Vec<Val> = args
                    .iter()
                    .map(|a| match self.src.kind(a) {
                        "keyword_argument" => self
                            .src
                            .field(*a, "value")
                            .map_or(Val::Unknown, |v| self.val(v, d)),
                        _ => self.val(*a, d),
                    })
                    .collect();
                return match attr.as_str() {
                    "format" | "join" | "replace" | "format_map" => {
                        let mut parts: Vec<Val> =
                            arg_vals.into_iter().filter(|v| !v.is_constant()).collect();
                        if let Val::Built(_, p) = base {
                            parts.extend(p);
                        }
                        if parts.is_empty() {
                            Val::Str(fragments.concat())
                        } else {
                            Val::Built(fragments, parts)
                        }
                    }
                    _ => base,
                };
            }
            let callee = match &base {
                Val::Ref(p) => builtin(&format!("{p}.{attr}")),
                Val::Call { callee, .. } => format!("{callee}().{attr}"),
                _ => format!("?.{attr}"),
            };
            let args = args.iter().map(|a| self.val(*a, d)).collect();
            return Val::Call {
                callee,
                args: bounded(args),
            };
        }
        let callee = match self.val(function, d) {
            Val::Ref(p) => p,
            Val::Call { callee, .. } => format!("{callee}()"),
            _ => "?".to_owned(),
        };
        let mut vals: Vec<Val> = args.iter().map(|a| self.val(*a, d)).collect();
        match callee.as_str() {
            "getattr" if vals.len() >= 2 => match (&vals[0], &vals[1]) {
                (Val::Ref(p), Val::Str(name)) => Val::Ref(builtin(&format!("{p}.{name}"))),
                _ => Val::Unknown,
            },
            "str" | "repr" if vals.len() == 1 => match vals.remove(0) {
                s @ Val::Str(_) => s,
                b @ Val::Built(..) => b,
                other => Val::Built(Vec::new(), vec![other]),
            },
            _ => Val::Call {
                callee,
                args: bounded(vals),
            },
        }
    }
}
