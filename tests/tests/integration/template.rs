//! `infra/template.yaml` against the code, so the deployment cannot drift from it:
//!
//! - every `${X}` of the state machine definition has a `DefinitionSubstitutions` key, every
//!   key is used, and each names a function of the template built from its package;
//! - every package under `functions/` is one function of the template (arm64, cargo-lambda,
//!   JSON logs into a log group with a retention);
//! - every environment variable a function's code reads is set for that function;
//! - every function's policy allows exactly the AWS actions its code can call.
//!
//! The variables and actions are derived from the source, not listed here. Variables: the
//! names a `from_lookup` reads and literal `std::env::var` names, in the function's package,
//! the `selfbuild_aws` modules it wires, `shared/core` and (when used) `shared/mcp`. Actions:
//! each `selfbuild_aws` module's SDK calls (`<client>.<operation>()`, with every `.send()`
//! accounted for), kept when the function can reach them: through an implementation of a port trait its dependency
//! structs hold (`IntakeDeps`, `StepDeps`, `McpDeps`, …) or a public function its wiring
//! calls, then through the module's own functions. The source is rustfmt-formatted (CI checks
//! it), which the function scanner relies on.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use regex_lite::Regex;
use serde_json::{Map, Value, json};

/// `pattern` compiled once for the whole run.
fn re(pattern: &'static str) -> &'static Regex {
    static CACHE: Mutex<BTreeMap<&'static str, &'static Regex>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap();
    cache
        .entry(pattern)
        .or_insert_with(|| Box::leak(Box::new(Regex::new(pattern).unwrap())))
}

// ------------------------------------------------------------------------------------------
// Where things are

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const TEMPLATE: &str = "infra/template.yaml";
const DEFINITION: &str = "statemachine/improvement-cycle.asl.json";
/// `DefinitionUri` of the state machine, relative to the template.
const DEFINITION_URI: &str = "../statemachine/improvement-cycle.asl.json";

/// IAM service prefix of each SDK crate the adapters use.
const SERVICE_PREFIXES: &[(&str, &str)] = &[
    ("aws_sdk_bedrockruntime", "bedrock"),
    ("aws_sdk_cloudwatch", "cloudwatch"),
    ("aws_sdk_cloudwatchlogs", "logs"),
    ("aws_sdk_dynamodb", "dynamodb"),
    ("aws_sdk_eventbridge", "events"),
    ("aws_sdk_lambda", "lambda"),
    ("aws_sdk_secretsmanager", "secretsmanager"),
    ("aws_sdk_sfn", "states"),
    ("aws_sdk_sqs", "sqs"),
];

/// Operations authorised by an IAM action of another name.
const ACTION_OF_OPERATION: &[(&str, &str)] = &[
    ("lambda:Invoke", "lambda:InvokeFunction"),
    ("bedrock:Converse", "bedrock:InvokeModel"),
    (
        "bedrock:ConverseStream",
        "bedrock:InvokeModelWithResponseStream",
    ),
];

/// The function packages: every directory under `functions/`.
fn function_packages() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

// ------------------------------------------------------------------------------------------
// The template

/// The template as JSON, CloudFormation's short tags in their long form (`!Ref X` →
/// `{"Ref": "X"}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`).
fn template() -> Value {
    let text = read(&root().join(TEMPLATE));
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    yaml_to_json(yaml)
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml_ng::to_string(&other).unwrap().trim().to_owned(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            match (name, inner) {
                ("Ref", inner) => json!({ "Ref": inner }),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').unwrap();
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (other, inner) => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"].as_object().unwrap()
}

/// A function of the template.
struct TemplateFunction<'a> {
    logical_id: &'a str,
    resource: &'a Value,
    /// `BuildProperties.Binary`: the package it is built from.
    package: &'a str,
}

impl TemplateFunction<'_> {
    fn properties(&self) -> &Value {
        &self.resource["Properties"]
    }
}

fn template_functions(template: &Value) -> Vec<TemplateFunction<'_>> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| TemplateFunction {
            logical_id: id,
            resource: r,
            package: r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: no Metadata.BuildProperties.Binary")),
        })
        .collect()
}

fn function_for_package<'a>(
    functions: &'a [TemplateFunction<'a>],
    package: &str,
) -> &'a TemplateFunction<'a> {
    let matching: Vec<_> = functions.iter().filter(|f| f.package == package).collect();
    assert_eq!(
        matching.len(),
        1,
        "functions/{package} must be exactly one AWS::Serverless::Function of {TEMPLATE} \
         (Metadata.BuildProperties.Binary: {package}), found {}",
        matching.len()
    );
    matching[0]
}

/// A property of a function with the template's `Globals.Function` applied (maps merge).
fn effective_property(template: &Value, function: &TemplateFunction<'_>, name: &str) -> Value {
    let global = &template["Globals"]["Function"][name];
    let own = &function.properties()[name];
    match (global, own) {
        (Value::Object(g), Value::Object(o)) => {
            let mut merged = g.clone();
            for (k, v) in o {
                match (merged.get_mut(k), v) {
                    (Some(Value::Object(mg)), Value::Object(vo)) => {
                        mg.extend(vo.clone());
                    }
                    _ => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
            Value::Object(merged)
        }
        (g, Value::Null) => g.clone(),
        (_, o) => o.clone(),
    }
}

/// `Fn::If` counts as both branches (whatever a parameter chooses), `AWS::NoValue` as nothing.
fn flatten_conditions(value: &Value) -> Vec<&Value> {
    if let Some(branches) = value.get("Fn::If").and_then(Value::as_array) {
        return branches[1..].iter().flat_map(flatten_conditions).collect();
    }
    if value.get("Ref") == Some(&json!("AWS::NoValue")) {
        return Vec::new();
    }
    vec![value]
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The actions a function's policies allow, or what makes them uncheckable.
fn allowed_actions(function: &TemplateFunction<'_>) -> Result<BTreeSet<String>, String> {
    let mut allowed = BTreeSet::new();
    for policy in as_list(&function.properties()["Policies"])
        .into_iter()
        .flat_map(flatten_conditions)
    {
        let Some(statements) = policy.get("Statement") else {
            return Err(format!(
                "{}: policy {policy} is a SAM policy template or a managed policy; write its \
                 statements inline so this test can check them",
                function.logical_id
            ));
        };
        for statement in as_list(statements).into_iter().flat_map(flatten_conditions) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            for action in as_list(&statement["Action"]) {
                let action = action.as_str().unwrap();
                if action.contains('*') {
                    return Err(format!(
                        "{}: wildcard action {action} (name each action the code calls)",
                        function.logical_id
                    ));
                }
                allowed.insert(action.to_owned());
            }
        }
    }
    Ok(allowed)
}

/// The environment variables the template sets for a function (its own and the globals).
fn template_environment(template: &Value, function: &TemplateFunction<'_>) -> BTreeSet<String> {
    effective_property(template, function, "Environment")["Variables"]
        .as_object()
        .map(|vars| vars.keys().cloned().collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// The code

/// A Rust source file without its `#[cfg(test)]` items (top-level, rustfmt-formatted: an
/// item ends at its `;` or at the next `}` in column 0).
struct Source {
    path: PathBuf,
    text: String,
    items: OnceLock<Vec<FnItem>>,
}

impl Source {
    fn load(path: &Path) -> Self {
        let text = read(path);
        let mut kept: Vec<&str> = Vec::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line != "#[cfg(test)]" {
                kept.push(line);
                continue;
            }
            for item_line in lines.by_ref() {
                if item_line == "}" || (item_line.ends_with(';') && !item_line.starts_with(' ')) {
                    break;
                }
            }
        }
        Self {
            path: path.to_owned(),
            text: kept.join("\n"),
            items: OnceLock::new(),
        }
    }

    /// Its function items (see [`fn_items`]), found once.
    fn items(&self) -> &[FnItem] {
        self.items.get_or_init(|| fn_items(self))
    }

    fn name(&self) -> String {
        self.path
            .strip_prefix(root())
            .unwrap_or(&self.path)
            .display()
            .to_string()
    }
}

/// A function item, found by rustfmt's layout: its `fn` line and the `}` at the same indent.
struct FnItem {
    name: String,
    is_pub: bool,
    /// The trait when the function is in an `impl Trait for Type` block.
    trait_impl: Option<String>,
    body: String,
}

fn fn_items(source: &Source) -> Vec<FnItem> {
    let fn_line = re(
        r"^(\s*)(pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)",
    );
    let impl_line = re(r"^impl(?:<[^{]*?>)?\s+([A-Za-z0-9_:<>, ]+?)\s+for\s+");
    let lines: Vec<&str> = source.text.lines().collect();
    let mut items = Vec::new();
    let mut current_trait: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("impl") {
            current_trait = impl_line.captures(line).map(|c| {
                let path = c[1].split('<').next().unwrap();
                path.rsplit("::").next().unwrap().trim().to_owned()
            });
        } else if *line == "}" {
            current_trait = None;
        }
        let Some(c) = fn_line.captures(line) else {
            continue;
        };
        let indent = c[1].to_owned();
        let closing = format!("{indent}}}");
        // The signature ends at the first line ending in `{` (a body) or `;` (a declaration).
        let opens = (i..lines.len())
            .find(|&j| {
                let l = lines[j].trim_end();
                l.ends_with('{') || l.ends_with(';') || (j == i && l.ends_with('}'))
            })
            .unwrap_or(i);
        let end = if !lines[opens].trim_end().ends_with('{') {
            opens
        } else {
            (opens + 1..lines.len())
                .find(|&j| lines[j] == closing)
                .unwrap_or_else(|| {
                    panic!(
                        "{}:{}: no closing brace for fn {} (is the file rustfmt-formatted?)",
                        source.name(),
                        i + 1,
                        &c[3]
                    )
                })
        };
        items.push(FnItem {
            name: c[3].to_owned(),
            is_pub: c.get(2).is_some(),
            trait_impl: if indent.is_empty() {
                None
            } else {
                current_trait.clone()
            },
            body: lines[i..=end].join("\n"),
        });
    }
    items
}

/// One `selfbuild_aws` module: `src/<name>.rs` or the files of `src/<name>/`.
struct Module {
    files: Vec<Source>,
}

fn aws_modules() -> BTreeMap<String, Module> {
    let src = root().join("shared/aws/src");
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let (name, files) = if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, rust_files(&path))
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, vec![path.clone()])
        } else {
            continue;
        };
        if name == "lib" {
            continue;
        }
        let files = files.iter().map(|f| Source::load(f)).collect();
        modules.insert(name, Module { files });
    }
    modules
}

/// What one function package is made of.
struct Wiring {
    package: String,
    /// The package's own sources.
    own: Vec<Source>,
    /// The `selfbuild_aws` modules it reaches (`selfbuild_aws::x`, then `crate::x` in those).
    modules: BTreeSet<String>,
    /// Whether it uses `selfbuild_mcp`.
    uses_mcp: bool,
    /// Whether it uses `selfbuild_validate` (the code-patch pipeline and its settings).
    uses_validate: bool,
}

fn wiring(package: &str, modules: &BTreeMap<String, Module>) -> Wiring {
    let own: Vec<Source> = rust_files(&root().join("functions").join(package).join("src"))
        .iter()
        .map(|p| Source::load(p))
        .collect();
    let lib = Source::load(&root().join("shared/aws/src/lib.rs"));
    // `pub use dynamo::DynamoStore;`: a re-exported name leads to its module.
    let reexports: BTreeMap<String, String> = re(r"pub use (\w+)::(\w+);")
        .captures_iter(&lib.text)
        .map(|c| (c[2].to_owned(), c[1].to_owned()))
        .collect();
    let external = re(r"selfbuild_aws::(?:\{([^}]*)\}|(\w+))");
    let internal = re(r"\bcrate::(?:\{([^}]*)\}|(\w+))");
    let resolve = |name: &str| -> Option<String> {
        if modules.contains_key(name) {
            Some(name.to_owned())
        } else {
            reexports.get(name).cloned()
        }
    };
    let heads = |re: &Regex, text: &str| -> Vec<String> {
        let mut names = Vec::new();
        for c in re.captures_iter(text) {
            if let Some(group) = c.get(1) {
                for part in group.as_str().split(',') {
                    let head = part.trim().split("::").next().unwrap().trim();
                    if !head.is_empty() {
                        names.push(head.to_owned());
                    }
                }
            } else {
                names.push(c[2].to_owned());
            }
        }
        names
    };
    let mut reached = BTreeSet::new();
    let mut queue: Vec<String> = own
        .iter()
        .flat_map(|s| heads(external, &s.text))
        .filter_map(|n| resolve(&n))
        .collect();
    while let Some(name) = queue.pop() {
        if reached.insert(name.clone()) {
            for source in &modules[&name].files {
                queue.extend(
                    heads(internal, &source.text)
                        .iter()
                        .filter_map(|n| resolve(n)),
                );
            }
        }
    }
    let uses_mcp = own.iter().any(|s| s.text.contains("selfbuild_mcp"));
    let uses_validate = own.iter().any(|s| s.text.contains("selfbuild_validate"));
    Wiring {
        package: package.to_owned(),
        own,
        modules: reached,
        uses_mcp,
        uses_validate,
    }
}

impl Wiring {
    /// The package's sources and those of the modules it reaches.
    fn sources<'a>(&'a self, modules: &'a BTreeMap<String, Module>) -> Vec<&'a Source> {
        let mut sources: Vec<&Source> = self.own.iter().collect();
        for name in &self.modules {
            sources.extend(&modules[name].files);
        }
        sources
    }
}

/// The sources the checks read, loaded once for all of them.
struct Code {
    modules: BTreeMap<String, Module>,
    core: Vec<Source>,
    mcp: Vec<Source>,
    validate: Vec<Source>,
}

fn code() -> &'static Code {
    static CODE: OnceLock<Code> = OnceLock::new();
    CODE.get_or_init(|| Code {
        modules: aws_modules(),
        core: crate_sources("shared/core"),
        mcp: crate_sources("shared/mcp"),
        validate: crate_sources("shared/validate"),
    })
}

/// Sources of a shared crate (`shared/core`, `shared/mcp`), tests left out.
fn crate_sources(dir: &str) -> Vec<Source> {
    rust_files(&root().join(dir).join("src"))
        .iter()
        .map(|p| Source::load(p))
        .collect()
}

/// The port traits a function's dependency structs hold: `dyn Trait` fields of every struct
/// of `shared/core` or `shared/mcp` that the wiring builds with a struct literal, supertraits
/// included.
fn used_traits(wiring_sources: &[&Source], shared: &[&Source]) -> Option<BTreeSet<String>> {
    let literal = re(r"\b([A-Z][A-Za-z0-9]*)\s*\{");
    let built: BTreeSet<String> = wiring_sources
        .iter()
        .flat_map(|s| literal.captures_iter(&s.text).map(|c| c[1].to_owned()))
        .collect();
    let dyn_trait = re(r"\bdyn\s+(?:\w+::)*(\w+)");
    let item_name = |rest: &str| -> String {
        rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap()
            .to_owned()
    };
    let called: BTreeSet<String> = wiring_sources
        .iter()
        .flat_map(|s| called_names(&s.text))
        .collect();
    let mut traits = BTreeSet::new();
    let mut supertraits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for source in shared {
        let lines: Vec<&str> = source.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let function = line
                .strip_prefix("pub async fn ")
                .or_else(|| line.strip_prefix("pub fn "));
            if function.is_some_and(|rest| called.contains(&item_name(rest))) {
                // A function the wiring calls: the ports it is handed, up to its body.
                for param in lines[i..].iter().take_while(|l| !l.ends_with('{')) {
                    traits.extend(dyn_trait.captures_iter(param).map(|d| d[1].to_owned()));
                }
            } else if let Some(rest) = line.strip_prefix("pub struct ") {
                // A struct the wiring builds: its `dyn` fields, up to its closing `}`.
                if built.contains(&item_name(rest)) {
                    for field in lines[i..].iter().take_while(|l| **l != "}") {
                        traits.extend(dyn_trait.captures_iter(field).map(|d| d[1].to_owned()));
                    }
                }
            } else if let Some(rest) = line.strip_prefix("pub trait ") {
                // `pub trait Store:\n    DedupStore\n    + HaltSwitch … {`
                let header: String = lines[i..]
                    .iter()
                    .scan(false, |done, l| {
                        if *done {
                            return None;
                        }
                        *done = l.contains('{');
                        Some(*l)
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                let header = header.split('{').next().unwrap();
                if let Some((_, bounds)) = header.split_once(':') {
                    let bounds = bounds
                        .split('+')
                        .map(|b| b.trim().rsplit("::").next().unwrap().trim().to_owned())
                        .filter(|b| {
                            !b.is_empty() && !["Send", "Sync", "'static"].contains(&b.as_str())
                        })
                        .collect();
                    supertraits.insert(item_name(rest), bounds);
                }
            }
        }
    }
    if traits.is_empty() {
        return None;
    }
    let mut queue: Vec<String> = traits.iter().cloned().collect();
    while let Some(t) = queue.pop() {
        for s in supertraits.get(&t).into_iter().flatten() {
            if traits.insert(s.clone()) {
                queue.push(s.clone());
            }
        }
    }
    Some(traits)
}

/// The SDK clients of a file: bindings `name: Client` / `name: aws_sdk_x::Client` (struct
/// fields, parameters), each with its SDK crate and the pattern of its calls.
struct Clients(Vec<(String, String, Regex)>);

impl Clients {
    fn of(source: &Source) -> Self {
        let default_client = re(r"use (aws_sdk_\w+)::Client;");
        let binding = re(r"\b(\w+)\s*:\s*&?(?:(aws_sdk_\w+)::)?Client\b");
        let default = default_client
            .captures(&source.text)
            .map(|c| c[1].to_owned());
        let bindings: BTreeMap<String, String> = binding
            .captures_iter(&source.text)
            .filter_map(|c| {
                let krate = c
                    .get(2)
                    .map(|m| m.as_str().to_owned())
                    .or_else(|| default.clone())?;
                Some((c[1].to_owned(), krate))
            })
            .collect();
        Self(
            bindings
                .into_iter()
                .map(|(name, krate)| {
                    let call = Regex::new(&format!(r"\b{name}\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)"))
                        .unwrap();
                    (name, krate, call)
                })
                .collect(),
        )
    }

    /// The client bindings of every file of a module, each named once.
    fn of_module(files: &[Source]) -> Self {
        let mut all: Vec<(String, String, Regex)> = Vec::new();
        for clients in files.iter().map(Self::of) {
            for binding in clients.0 {
                if !all.iter().any(|(n, _, _)| *n == binding.0) {
                    all.push(binding);
                }
            }
        }
        Self(all)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn iam_action(krate: &str, operation: &str) -> String {
    let prefix = SERVICE_PREFIXES
        .iter()
        .find(|(k, _)| *k == krate)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("add the IAM service prefix of {krate} to SERVICE_PREFIXES"));
    let action = format!("{prefix}:{}", pascal_case(operation));
    ACTION_OF_OPERATION
        .iter()
        .find(|(op, _)| *op == action)
        .map_or(action, |(_, a)| (*a).to_owned())
}

/// The names a piece of code calls (`name(`, `.name(`, `Type::name(`, `name::<T>(`), not
/// the ones it defines (`fn name(`). A scanner, not a regex: it runs over every source often.
fn called_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut names = BTreeSet::new();
    let mut previous = "";
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let name = &text[start..i];
        let mut next = skip_space(i);
        if text[next..].starts_with("::<")
            && let Some(close) = text[next..].find('>')
        {
            next = skip_space(next + close + 1);
        }
        if next < bytes.len() && bytes[next] == b'(' && previous != "fn" {
            names.insert(name.to_owned());
        }
        previous = name;
    }
    names
}

/// Client methods that are not service operations.
const NOT_OPERATIONS: &[&str] = &["clone", "config"];

/// The operation each waiter polls.
const WAITER_OPERATIONS: &[(&str, &str)] = &[(
    "aws_sdk_dynamodb:wait_until_table_exists",
    "dynamodb:DescribeTable",
)];

/// The service operations a piece of code calls: `<client>.<operation>()`, where `<client>`
/// is one of the file's client bindings (every operation of an SDK client starts so).
fn sdk_calls(text: &str, clients: &Clients) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for (_, krate, call) in &clients.0 {
        for c in call.captures_iter(text) {
            let method = &c[1];
            if NOT_OPERATIONS.contains(&method) {
                continue;
            }
            let action = if method.starts_with("wait_until_") {
                let waiter = format!("{krate}:{method}");
                WAITER_OPERATIONS
                    .iter()
                    .find(|(w, _)| *w == waiter)
                    .map(|(_, op)| (*op).to_owned())
                    .unwrap_or_else(|| {
                        panic!("add the operation {waiter} polls to WAITER_OPERATIONS")
                    })
            } else {
                iam_action(krate, method)
            };
            actions.insert(action);
        }
    }
    actions
}

/// Every `.send()` of a file with SDK clients belongs to a statement that calls a client
/// operation, or sends a builder that one made (`let mut put = self.client.put_item()…`) or
/// that was handed in (`query: QueryFluentBuilder`); anything else (a client reached through
/// an alias or an accessor) would hide calls from this test.
fn assert_every_send_is_accounted_for(source: &Source, clients: &Clients) {
    let mut builders: Vec<String> = re(r"\b(\w+)\s*:\s*(?:\w+::)*\w+FluentBuilder\b")
        .captures_iter(&source.text)
        .map(|c| c[1].to_owned())
        .collect();
    let assigned =
        re(r"let\s+(?:mut\s+)?(\w+)\s*=\s*(?:self\s*\.\s*)?(\w+)\s*\.\s*[a-z][a-z0-9_]*\s*\(\s*\)");
    builders.extend(
        assigned
            .captures_iter(&source.text)
            .filter(|c| clients.contains(&c[2]))
            .map(|c| c[1].to_owned()),
    );
    let builder = Regex::new(&format!(r"\b(?:{})\b", builders.join("|"))).unwrap();
    for (at, _) in source.text.match_indices(".send()") {
        let start = source.text[..at]
            .rfind([';', '{', '}'])
            .map_or(0, |i| i + 1);
        let statement = &source.text[start..at];
        let calls_client = clients
            .0
            .iter()
            .any(|(_, _, call)| call.is_match(statement));
        let sends_builder = !builders.is_empty() && builder.is_match(statement);
        assert!(
            calls_client || sends_builder,
            "{}:{}: a .send() this test cannot tie to a client call; call operations as \
             `<client field or parameter>.<operation>()`",
            source.name(),
            source.text[..at].lines().count()
        );
    }
}

/// The actions a function's code can call.
fn required_actions(
    wiring: &Wiring,
    modules: &BTreeMap<String, Module>,
    shared: &[&Source],
) -> BTreeSet<String> {
    let sources = wiring.sources(modules);
    let traits = used_traits(&sources, shared);
    let mut required = BTreeSet::new();
    for name in &wiring.modules {
        let module = &modules[name];
        // A module split over files (`dynamo/claims.rs` …) binds its clients in one of them.
        let clients = Clients::of_module(&module.files);
        for source in &module.files {
            // A file that binds a client, or calls one its module binds (an HTTP-only file
            // beside an SDK one sends without either).
            let uses_clients = !Clients::of(source).is_empty()
                || clients
                    .0
                    .iter()
                    .any(|(_, _, call)| call.is_match(&source.text));
            if uses_clients {
                assert_every_send_is_accounted_for(source, &clients);
            }
        }
        // Each function item with the client bindings of its module.
        let items: Vec<(&FnItem, &Clients)> = module
            .files
            .iter()
            .flat_map(|source| source.items().iter().map(|item| (item, &clients)))
            .collect();
        // Calls from outside the module: the package and the other modules it reaches.
        let called_outside: BTreeSet<String> = sources
            .iter()
            .filter(|s| !module.files.iter().any(|m| m.path == s.path))
            .flat_map(|s| called_names(&s.text))
            .collect();
        let mut reachable: BTreeSet<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, (item, _))| {
                let by_port = match (&item.trait_impl, &traits) {
                    (Some(t), Some(used)) => used.contains(t),
                    // No dependency struct found: every port implementation counts.
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                by_port || (item.is_pub && called_outside.contains(&item.name))
            })
            .map(|(i, _)| i)
            .collect();
        // Then whatever those call in the module, by name.
        let calls: Vec<BTreeSet<String>> = items
            .iter()
            .map(|(item, _)| called_names(&item.body))
            .collect();
        let mut queue: Vec<usize> = reachable.iter().copied().collect();
        while let Some(i) = queue.pop() {
            for (j, (other, _)) in items.iter().enumerate() {
                if calls[i].contains(&other.name) && reachable.insert(j) {
                    queue.push(j);
                }
            }
        }
        for i in reachable {
            let (item, clients) = &items[i];
            required.extend(sdk_calls(&item.body, clients));
        }
    }
    required
}

/// The environment variables a function's code reads, each with where it is read.
fn read_variables(
    wiring: &Wiring,
    modules: &BTreeMap<String, Module>,
    core: &[Source],
    mcp: &[Source],
    validate: &[Source],
) -> BTreeMap<String, String> {
    let env_var = re(r#"env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"\s*\)"#);
    let name_literal = re(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{3,})""#);
    let optional = re(r#"(\w+):\s*env\s*\.\s*optional\(\s*"([A-Z][A-Z0-9_]*)"\s*\)"#);
    let wiring_sources = wiring.sources(modules);
    let mut sources: Vec<&Source> = wiring_sources.clone();
    sources.extend(core);
    if wiring.uses_mcp {
        sources.extend(mcp);
    }
    if wiring.uses_validate {
        sources.extend(validate);
    }
    let mut read = BTreeMap::new();
    let mut optional_fields = BTreeMap::new();
    for source in &sources {
        for c in env_var.captures_iter(&source.text) {
            read.insert(c[1].to_owned(), source.name());
        }
        for item in source.items() {
            if item.name == "from_lookup" {
                for c in name_literal.captures_iter(&item.body) {
                    read.insert(c[1].to_owned(), source.name());
                }
            }
        }
        for c in optional.captures_iter(&source.text) {
            optional_fields.insert(c[2].to_owned(), c[1].to_owned());
        }
    }
    // An optional variable (no default) matters only where the wiring uses its field, e.g.
    // STATE_MACHINE_ARN where `require_state_machine_arn` is called.
    read.retain(|name, _| match optional_fields.get(name) {
        Some(field) => wiring_sources
            .iter()
            .any(|s| s.text.contains(field.as_str())),
        None => true,
    });
    read
}

// ------------------------------------------------------------------------------------------
// The checks

fn state_machine(template: &Value) -> (&str, &Value) {
    let machines: Vec<_> = resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::StateMachine")
        .collect();
    assert_eq!(machines.len(), 1, "one AWS::Serverless::StateMachine");
    let (id, machine) = machines[0];
    assert_eq!(
        machine["Properties"]["DefinitionUri"], DEFINITION_URI,
        "{id} loads the one definition"
    );
    (id, machine)
}

#[test]
fn every_placeholder_of_the_definition_is_substituted_and_every_substitution_used() {
    let template = template();
    let (id, machine) = state_machine(&template);
    let definition = read(&root().join(DEFINITION));
    let placeholders: BTreeSet<String> = re(r"\$\{([^}]+)\}")
        .captures_iter(&definition)
        .map(|c| c[1].to_owned())
        .collect();
    let keys: BTreeSet<String> = machine["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(!placeholders.is_empty());
    assert_eq!(
        placeholders.difference(&keys).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "placeholders of {DEFINITION} without a DefinitionSubstitutions key in {id}"
    );
    assert_eq!(
        keys.difference(&placeholders).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "DefinitionSubstitutions keys of {id} that {DEFINITION} never uses"
    );
    // The embedded runner substitutes the same keys.
    let local: BTreeSet<String> = selfbuild_local::cycle::substitutions("")
        .into_keys()
        .collect();
    assert_eq!(
        local, keys,
        "selfbuild_local::cycle::substitutions and {id}"
    );
}

#[test]
fn every_function_the_definition_calls_is_a_function_of_the_template() {
    let template = template();
    let (id, machine) = state_machine(&template);
    let functions = template_functions(&template);
    let invokable: BTreeSet<String> = as_list(&machine["Properties"]["Policies"])
        .into_iter()
        .filter_map(|p| p["LambdaInvokePolicy"]["FunctionName"]["Ref"].as_str())
        .map(str::to_owned)
        .collect();
    for (key, value) in machine["Properties"]["DefinitionSubstitutions"]
        .as_object()
        .unwrap()
    {
        let target = value["Fn::GetAtt"][0]
            .as_str()
            .filter(|_| value["Fn::GetAtt"][1] == "Arn")
            .unwrap_or_else(|| panic!("{id}: {key} must be !GetAtt <Function>.Arn, is {value}"));
        let function = functions
            .iter()
            .find(|f| f.logical_id == target)
            .unwrap_or_else(|| {
                panic!("{id}: {key} names {target}, not a function of the template")
            });
        let package = key
            .strip_suffix("FunctionArn")
            .unwrap_or_else(|| panic!("{key}: expected <Name>FunctionArn"))
            .to_ascii_lowercase();
        assert_eq!(function.package, package, "{key} is the {package} function");
        assert!(
            root().join("functions").join(&package).is_dir(),
            "{key}: no package functions/{package}"
        );
        assert!(
            invokable.contains(target),
            "{id} needs LambdaInvokePolicy for {target}"
        );
    }
}

#[test]
fn every_function_package_is_one_arm64_cargo_lambda_function_with_json_logs_kept_for_a_time() {
    let template = template();
    let functions = template_functions(&template);
    for package in function_packages() {
        let manifest = read(&root().join("functions").join(&package).join("Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{package}\"")),
            "functions/{package}: folder = package = binary name"
        );
        function_for_package(&functions, &package);
    }
    for function in &functions {
        let id = function.logical_id;
        let package = function.package;
        let property = |name: &str| effective_property(&template, function, name);
        assert_eq!(
            function.resource["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{id}"
        );
        assert_eq!(
            property("CodeUri"),
            json!(format!("../functions/{package}")),
            "{id}: CodeUri is its package (cargo-lambda builds it in the workspace)"
        );
        assert_eq!(property("Runtime"), "provided.al2023", "{id}");
        assert_eq!(property("Architectures"), json!(["arm64"]), "{id}");
        assert_eq!(property("Handler"), "bootstrap", "{id}");
        let logging = property("LoggingConfig");
        assert_eq!(logging["LogFormat"], "JSON", "{id}: JSON logs");
        let group = logging["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup must be !Ref a log group"));
        let group = &resources(&template)[group];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{id}");
        assert!(
            !group["Properties"]["RetentionInDays"].is_null(),
            "{id}: its log group has a retention"
        );
        if !root().join("functions").join(package).is_dir() {
            eprintln!(
                "note: functions/{package} does not exist yet: {id} is not checked against code"
            );
        }
    }
}

/// Variables a function reads that the template does not set: Lambda's reserved variables
/// (the log level and format come from `LoggingConfig`), and `RUST_LOG`, a developer's
/// override that is absent on purpose.
const NOT_FROM_THE_TEMPLATE: &[&str] = &[
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
    "RUST_LOG",
];

#[test]
fn every_environment_variable_a_function_reads_is_set_for_it() {
    let template = template();
    let functions = template_functions(&template);
    let Code {
        modules,
        core,
        mcp,
        validate,
    } = code();
    let mut problems = Vec::new();
    for package in function_packages() {
        let function = function_for_package(&functions, &package);
        let wiring = wiring(&package, modules);
        let read = read_variables(&wiring, modules, core, mcp, validate);
        assert!(
            read.contains_key("TABLE_NAME"),
            "{package}: the scan found no configuration at all: {read:?}"
        );
        let set = template_environment(&template, function);
        for (name, source) in &read {
            if !set.contains(name) && !NOT_FROM_THE_TEMPLATE.contains(&name.as_str()) {
                problems.push(format!(
                    "{} ({package}) does not set {name}, read in {source}",
                    function.logical_id
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_function_policy_allows_exactly_the_actions_its_code_calls() {
    let template = template();
    let functions = template_functions(&template);
    let Code {
        modules, core, mcp, ..
    } = code();
    let shared: Vec<&Source> = core.iter().chain(mcp).collect();
    let mut problems = Vec::new();
    for package in function_packages() {
        let function = function_for_package(&functions, &package);
        let wiring = wiring(&package, modules);
        let required = required_actions(&wiring, modules, &shared);
        assert!(
            !required.is_empty(),
            "{package}: the scan found no AWS call in {:?}",
            wiring.modules
        );
        match allowed_actions(function) {
            Err(problem) => problems.push(problem),
            Ok(allowed) => {
                for missing in required.difference(&allowed) {
                    problems.push(format!(
                        "{} ({}) calls {missing} but its policy does not allow it",
                        function.logical_id, wiring.package
                    ));
                }
                for extra in allowed.difference(&required) {
                    problems.push(format!(
                        "{} ({}) is allowed {extra}, which its code never calls",
                        function.logical_id, wiring.package
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
