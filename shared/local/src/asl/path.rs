//! JSONPath reference paths (`$`, `$.a.b`, `$.a[0]`, `$['a b']`), the context object `$$`,
//! and `ResultPath` merging.
//!
//! Only reference paths are supported: each path names at most one node. Wildcards,
//! filters, slices, unions and deep scan (`..`) are refused when the definition loads.

use serde_json::{Map, Value};

/// What a path starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `$`: the value the path applies to (state input, effective input, task result).
    Input,
    /// `$$`: the context object.
    Context,
}

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// `.name`, `['name']` or `["name"]`.
    Field(String),
    /// `[3]`.
    Index(usize),
}

/// A parsed reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    root: Root,
    segments: Vec<Segment>,
    text: String,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// `$`.
    pub(crate) fn root() -> Self {
        Self {
            root: Root::Input,
            segments: Vec::new(),
            text: "$".to_owned(),
        }
    }

    /// Parses a path; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (root, rest) = if let Some(rest) = text.strip_prefix("$$") {
            (Root::Context, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (Root::Input, rest)
        } else {
            return Err(format!(
                "\"{text}\" is not a path (a path starts with \"$\")"
            ));
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        let bad = |why: &str| {
            Err(format!(
                "\"{text}\" is not a supported reference path: {why}"
            ))
        };
        while let Some(&c) = chars.get(i) {
            match c {
                '.' => {
                    i += 1;
                    let start = i;
                    while let Some(&c) = chars.get(i) {
                        if c == '.' || c == '[' {
                            break;
                        }
                        if c.is_whitespace() || "*?@(),:'\"]$".contains(c) {
                            return if c == '*' {
                                bad("wildcards are not supported")
                            } else {
                                bad(&format!("'{c}' in a field name (use ['...'] to quote it)"))
                            };
                        }
                        i += 1;
                    }
                    if i == start {
                        return bad("an empty field name (deep scan \"..\" is not supported)");
                    }
                    segments.push(Segment::Field(
                        chars.get(start..i).unwrap_or_default().iter().collect(),
                    ));
                }
                '[' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&q) if q == '\'' || q == '"' => {
                            i += 1;
                            let mut name = String::new();
                            loop {
                                match chars.get(i) {
                                    None => return bad("an unterminated quoted name"),
                                    Some('\\') => {
                                        match chars.get(i + 1) {
                                            Some(&e) if e == q || e == '\\' => name.push(e),
                                            _ => return bad("an unknown escape in a quoted name"),
                                        }
                                        i += 2;
                                    }
                                    Some(&c) if c == q => {
                                        i += 1;
                                        break;
                                    }
                                    Some(&c) => {
                                        name.push(c);
                                        i += 1;
                                    }
                                }
                            }
                            if chars.get(i) != Some(&']') {
                                return bad("a quoted name must be followed by ']'");
                            }
                            i += 1;
                            segments.push(Segment::Field(name));
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let start = i;
                            while chars.get(i).is_some_and(char::is_ascii_digit) {
                                i += 1;
                            }
                            if chars.get(i) != Some(&']') {
                                return bad("slices and unions are not supported");
                            }
                            let digits: String =
                                chars.get(start..i).unwrap_or_default().iter().collect();
                            let Ok(index) = digits.parse::<usize>() else {
                                return bad("an array index that is too large");
                            };
                            i += 1;
                            segments.push(Segment::Index(index));
                        }
                        Some('*') => return bad("wildcards are not supported"),
                        Some('?') => return bad("filters are not supported"),
                        Some('-') => return bad("negative indexes are not supported"),
                        _ => return bad("expected an index or a quoted name after '['"),
                    }
                }
                other => return bad(&format!("unexpected '{other}'")),
            }
        }
        Ok(Self {
            root,
            segments,
            text: text.to_owned(),
        })
    }

    /// Whether the path starts at the context object (`$$`).
    pub(crate) fn is_context(&self) -> bool {
        self.root == Root::Context
    }

    /// Whether the path is exactly `$`.
    pub(crate) fn is_root(&self) -> bool {
        self.root == Root::Input && self.segments.is_empty()
    }

    /// The node the path names, or `None` when it names nothing.
    pub(crate) fn lookup(&self, input: &Value, context: &ContextObject<'_>) -> Option<Value> {
        match self.root {
            Root::Input => walk(input, &self.segments).cloned(),
            Root::Context => context.lookup(&self.segments),
        }
    }
}

/// Follows `segments` down from `value`.
fn walk<'v>(value: &'v Value, segments: &[Segment]) -> Option<&'v Value> {
    let mut current = value;
    for segment in segments {
        current = match (segment, current) {
            (Segment::Field(name), Value::Object(map)) => map.get(name)?,
            (Segment::Index(index), Value::Array(items)) => items.get(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The context object `$$` of one state: `Execution`, `State`, `StateMachine`, and `Task`
/// or `Map` when they apply. `Execution.Input` is looked up in place rather than copied.
#[derive(Debug)]
pub(crate) struct ContextObject<'a> {
    /// The execution's input (`$$.Execution.Input`).
    pub execution_input: &'a Value,
    /// Everything else; its `Execution` object has no `Input` member.
    pub rest: Value,
}

impl ContextObject<'_> {
    fn lookup(&self, segments: &[Segment]) -> Option<Value> {
        match segments {
            [Segment::Field(execution), Segment::Field(input), rest @ ..]
                if execution == "Execution" && input == "Input" =>
            {
                walk(self.execution_input, rest).cloned()
            }
            [] | [Segment::Field(_)] => {
                let mut whole = self.rest.clone();
                if let Some(Value::Object(execution)) = whole.get_mut("Execution") {
                    execution.insert("Input".to_owned(), self.execution_input.clone());
                }
                walk(&whole, segments).cloned()
            }
            _ => walk(&self.rest, segments).cloned(),
        }
    }
}

/// Applies `ResultPath`: `None` (JSON `null`) keeps the input and discards the result, `$`
/// replaces the input, and a deeper path inserts the result into the input, creating the
/// objects on the way. The error says why the path cannot be applied to this input.
pub(crate) fn merge_result(
    input: Value,
    result_path: Option<&Path>,
    result: Value,
) -> Result<Value, String> {
    let Some(path) = result_path else {
        return Ok(input);
    };
    let Some((last, parents)) = path.segments.split_last() else {
        return Ok(result);
    };
    let mut document = input;
    let mut target = &mut document;
    for segment in parents {
        target = match (segment, target) {
            (Segment::Field(name), Value::Object(map)) => map
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            (Segment::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(item) => item,
                None => return Err(format!("{path}: index {index} is out of range")),
            },
            (segment, other) => return Err(mismatch(path, segment, other)),
        };
    }
    match (last, target) {
        (Segment::Field(name), Value::Object(map)) => {
            map.insert(name.clone(), result);
        }
        (Segment::Index(index), Value::Array(items)) => match items.get_mut(*index) {
            Some(item) => *item = result,
            None => return Err(format!("{path}: index {index} is out of range")),
        },
        (segment, other) => return Err(mismatch(path, segment, other)),
    }
    Ok(document)
}

fn mismatch(path: &Path, segment: &Segment, found: &Value) -> String {
    let wanted = match segment {
        Segment::Field(name) => format!("an object to hold \"{name}\""),
        Segment::Index(index) => format!("an array to hold index {index}"),
    };
    format!("{path}: needs {wanted} but found {}", kind_of(found))
}

/// A JSON type name for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_context(input: &Value) -> ContextObject<'_> {
        ContextObject {
            execution_input: input,
            rest: json!({}),
        }
    }

    #[test]
    fn reference_paths_parse_and_look_up() {
        let doc = json!({"a": {"b": [10, {"c d": "x"}]}, "it's": 1});
        let ctx = no_context(&doc);
        let get = |p: &str| Path::parse(p).unwrap().lookup(&doc, &ctx);
        assert_eq!(get("$"), Some(doc.clone()));
        assert_eq!(get("$.a.b[0]"), Some(json!(10)));
        assert_eq!(get("$.a.b[1]['c d']"), Some(json!("x")));
        assert_eq!(get("$['a'][\"b\"][0]"), Some(json!(10)));
        assert_eq!(get("$['it\\'s']"), Some(json!(1)));
        assert_eq!(get("$.a.missing"), None);
        assert_eq!(get("$.a.b[7]"), None);
        assert_eq!(get("$.a.b.c"), None);
    }

    #[test]
    fn paths_beyond_reference_paths_are_refused() {
        for bad in [
            "a.b",
            "$.a[*]",
            "$..a",
            "$.a[?(@.x)]",
            "$.a[-1]",
            "$.a[0:2]",
            "$.a.",
            "$[",
            "$.a b",
            "$['a'",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_context_object_serves_execution_input_in_place() {
        let input = json!({"x": 1});
        let ctx = ContextObject {
            execution_input: &input,
            rest: json!({"Execution": {"Name": "n"}, "State": {"Name": "S"}}),
        };
        let get = |p: &str| Path::parse(p).unwrap().lookup(&json!(null), &ctx);
        assert_eq!(get("$$.Execution.Input.x"), Some(json!(1)));
        assert_eq!(get("$$.Execution.Name"), Some(json!("n")));
        assert_eq!(
            get("$$.Execution"),
            Some(json!({"Name": "n", "Input": {"x": 1}}))
        );
        assert_eq!(get("$$.Task.Token"), None);
    }

    #[test]
    fn result_path_merges_discards_and_replaces() {
        let input = json!({"a": 1, "list": [1, 2]});
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(merge_result(input.clone(), None, json!(9)).unwrap(), input);
        assert_eq!(
            merge_result(input.clone(), Some(&p("$")), json!(9)).unwrap(),
            json!(9)
        );
        assert_eq!(
            merge_result(input.clone(), Some(&p("$.x.y")), json!(9)).unwrap(),
            json!({"a": 1, "list": [1, 2], "x": {"y": 9}})
        );
        assert_eq!(
            merge_result(input.clone(), Some(&p("$.list[1]")), json!(9)).unwrap(),
            json!({"a": 1, "list": [1, 9]})
        );
        assert!(merge_result(input.clone(), Some(&p("$.a.b")), json!(9)).is_err());
        assert!(merge_result(input.clone(), Some(&p("$.list[5]")), json!(9)).is_err());
        assert!(merge_result(json!("text"), Some(&p("$.x")), json!(9)).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};

        /// A fixed seed: the same cases on every run and machine.
        fn config(cases: u32) -> ProptestConfig {
            ProptestConfig {
                cases,
                rng_seed: RngSeed::Fixed(0x5e1f_b01d),
                ..ProptestConfig::default()
            }
        }

        /// Field names, including ones only the quoted form can hold.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                "[A-Za-z_][A-Za-z0-9_-]{0,8}",
                "[a-z '\"\\\\.\\[\\]$*?@(),:]{0,6}",
                any::<String>(),
            ]
        }

        fn segment() -> impl Strategy<Value = Segment> {
            prop_oneof![
                3 => name().prop_map(Segment::Field),
                1 => (0_usize..1000).prop_map(Segment::Index),
            ]
        }

        /// A segment as text: `.name` when the name allows it, else `['…']` with `'` and `\`
        /// escaped; `[n]` for an index.
        fn render(segment: &Segment) -> String {
            match segment {
                Segment::Field(name)
                    if !name.is_empty()
                        && !name
                            .chars()
                            .any(|c| c.is_whitespace() || ".[*?@(),:'\"]$".contains(c)) =>
                {
                    format!(".{name}")
                }
                Segment::Field(name) => {
                    format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'"))
                }
                Segment::Index(i) => format!("[{i}]"),
            }
        }

        proptest! {
            #![proptest_config(config(256))]

            /// Any text is a path or an error, never a panic; a path displays as its text.
            #[test]
            fn parsing_never_panics(text in prop_oneof![any::<String>(), "\\$\\$?[.\\[\\]'\"a0-9*?@\\\\-]{0,12}"]) {
                if let Ok(path) = Path::parse(&text) {
                    prop_assert_eq!(path.to_string(), text);
                }
            }

            /// Rendered segments parse back to themselves, from `$` and from `$$`.
            #[test]
            fn rendered_paths_parse_back(segments in proptest::collection::vec(segment(), 0..6), context in any::<bool>()) {
                let root = if context { "$$" } else { "$" };
                let text: String = std::iter::once(root.to_owned())
                    .chain(segments.iter().map(render))
                    .collect();
                let path = Path::parse(&text).unwrap();
                prop_assert_eq!(&path.segments, &segments);
                prop_assert_eq!(path.is_context(), context);
                prop_assert_eq!(path.is_root(), !context && segments.is_empty());
            }

            /// A result merged at a field path is found there, and the input's other members
            /// stay as they were; `$` replaces the input and no path keeps it.
            #[test]
            fn a_merged_result_is_found_at_its_path(
                input in proptest::collection::btree_map("[a-c]", any::<i32>(), 0..4),
                names in proptest::collection::vec("[a-c]", 1..4),
                result in any::<i32>(),
            ) {
                let input = serde_json::to_value(input).unwrap();
                let result = Value::from(result);
                let text: String = std::iter::once("$".to_owned())
                    .chain(names.iter().map(|n| format!(".{n}")))
                    .collect();
                let path = Path::parse(&text).unwrap();
                let ctx = no_context(&input);
                match merge_result(input.clone(), Some(&path), result.clone()) {
                    Ok(merged) => {
                        prop_assert_eq!(path.lookup(&merged, &ctx), Some(result.clone()));
                        for (key, value) in input.as_object().unwrap() {
                            if *key != names[0] {
                                prop_assert_eq!(merged.get(key), Some(value));
                            }
                        }
                    }
                    // Only a number where an object must hold the next name is refused.
                    Err(_) => prop_assert!(names.len() > 1 && input.get(&names[0]).is_some()),
                }
                prop_assert_eq!(merge_result(input.clone(), Some(&Path::root()), result.clone()).unwrap(), result.clone());
                prop_assert_eq!(merge_result(input.clone(), None, result).unwrap(), input);
            }
        }
    }
}
