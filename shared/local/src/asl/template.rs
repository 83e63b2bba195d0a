//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): keys ending in `.$`
//! take their value from a path or an intrinsic function. Supported intrinsics:
//! `States.Format`, `States.StringToJson`, `States.JsonToString`, `States.Array`,
//! `States.MathAdd` and `States.UUID`; any other is refused when the definition loads.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Number, Value};

use super::path::{ContextObject, Path, kind_of};
use super::{ExecutionFailure, errors};

/// What a template is evaluated against.
pub(crate) struct Scope<'a> {
    /// `$`.
    pub input: &'a Value,
    /// `$$`.
    pub context: &'a ContextObject<'a>,
    /// Where `States.UUID()` takes its values from.
    pub uuids: &'a UuidSource,
}

/// A compiled payload template.
#[derive(Debug, Clone)]
pub(crate) enum Template {
    /// A value with nothing to evaluate.
    Literal(Value),
    /// An object with at least one dynamic member somewhere below it.
    Object(Vec<(String, Template)>),
    /// An array with at least one dynamic member somewhere below it.
    Array(Vec<Template>),
    /// `"key.$": "$.path"` (the key is kept for messages).
    Path { key: String, path: Path },
    /// `"key.$": "States.Fn(...)"`.
    Call { key: String, call: Call },
}

impl Template {
    /// Compiles a payload template; the error says which key is wrong and why.
    pub(crate) fn compile(value: &Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => {
                let mut members = Vec::with_capacity(map.len());
                let mut dynamic = false;
                for (key, member) in map {
                    let (name, template) = if let Some(name) = key.strip_suffix(".$") {
                        let Value::String(text) = member else {
                            return Err(format!(
                                "key \"{key}\" must have a string value (a path or an intrinsic function)"
                            ));
                        };
                        let template = Self::expression(text, name)
                            .map_err(|problem| format!("key \"{key}\": {problem}"))?;
                        dynamic = true;
                        (name.to_owned(), template)
                    } else {
                        let template = Self::compile(member)?;
                        dynamic |= !matches!(template, Self::Literal(_));
                        (key.clone(), template)
                    };
                    if map.contains_key(&name) && key.ends_with(".$") {
                        return Err(format!(
                            "keys \"{name}\" and \"{key}\" would both produce \"{name}\""
                        ));
                    }
                    members.push((name, template));
                }
                Ok(if dynamic {
                    Self::Object(members)
                } else {
                    Self::Literal(value.clone())
                })
            }
            Value::Array(items) => {
                let items = items
                    .iter()
                    .map(Self::compile)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if items.iter().all(|t| matches!(t, Self::Literal(_))) {
                    Self::Literal(value.clone())
                } else {
                    Self::Array(items)
                })
            }
            other => Ok(Self::Literal(other.clone())),
        }
    }

    /// Compiles the value of a `.$` key (or an `ErrorPath`/`CausePath`): a path or an
    /// intrinsic function call.
    pub(crate) fn expression(text: &str, key: &str) -> Result<Self, String> {
        if text.starts_with('$') {
            Ok(Self::Path {
                key: key.to_owned(),
                path: Path::parse(text)?,
            })
        } else if text.starts_with("States.") {
            Ok(Self::Call {
                key: key.to_owned(),
                call: Call::parse(text)?,
            })
        } else {
            Err(format!(
                "\"{text}\" is neither a path (starting with \"$\") nor an intrinsic function (States.…)"
            ))
        }
    }

    /// Evaluates the template.
    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, ExecutionFailure> {
        match self {
            Self::Literal(value) => Ok(value.clone()),
            Self::Object(members) => {
                let mut out = Map::with_capacity(members.len());
                for (name, template) in members {
                    out.insert(name.clone(), template.eval(scope)?);
                }
                Ok(Value::Object(out))
            }
            Self::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|t| t.eval(scope))
                    .collect::<Result<_, _>>()?,
            )),
            Self::Path { key, path } => path.lookup(scope.input, scope.context).ok_or_else(|| {
                ExecutionFailure::runtime(format!(
                    "the path \"{path}\" for \"{key}\" matches nothing in the {}",
                    if path.is_context() {
                        "context object"
                    } else {
                        "input"
                    }
                ))
            }),
            Self::Call { key, call } => call.eval(scope).map_err(|mut failure| {
                failure.cause = format!("\"{key}\": {}", failure.cause);
                failure
            }),
        }
    }
}

/// A supported intrinsic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    MathAdd,
    Uuid,
}

/// Intrinsics AWS has that this interpreter refuses.
const UNSUPPORTED: &[&str] = &[
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.StringSplit",
];

impl Function {
    fn from_name(name: &str) -> Result<Self, String> {
        Ok(match name {
            "States.Format" => Self::Format,
            "States.StringToJson" => Self::StringToJson,
            "States.JsonToString" => Self::JsonToString,
            "States.Array" => Self::Array,
            "States.MathAdd" => Self::MathAdd,
            "States.UUID" => Self::Uuid,
            other if UNSUPPORTED.contains(&other) => {
                return Err(format!("intrinsic function {other} is not supported"));
            }
            other => return Err(format!("{other} is not an intrinsic function")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Format => "States.Format",
            Self::StringToJson => "States.StringToJson",
            Self::JsonToString => "States.JsonToString",
            Self::Array => "States.Array",
            Self::MathAdd => "States.MathAdd",
            Self::Uuid => "States.UUID",
        }
    }
}

/// An intrinsic function argument.
#[derive(Debug, Clone)]
enum Arg {
    /// A quoted string: its value, and its text with escapes kept (for `States.Format`).
    Str {
        value: String,
        raw: String,
    },
    Number(Number),
    Bool(bool),
    Null,
    Path(Path),
    Call(Box<Call>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    function: Function,
    args: Vec<Arg>,
}

impl Call {
    /// Parses `States.Name(arg, ...)` and checks its arguments as far as they are known.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        let call = parser.call()?;
        parser.skip_whitespace();
        if parser.pos < parser.chars.len() {
            return Err(format!("unexpected text after the call in \"{text}\""));
        }
        Ok(call)
    }

    fn check(function: Function, args: &[Arg]) -> Result<(), String> {
        let name = function.name();
        let arity_ok = match function {
            Function::Format => !args.is_empty(),
            Function::StringToJson | Function::JsonToString => args.len() == 1,
            Function::MathAdd => args.len() == 2,
            Function::Uuid => args.is_empty(),
            Function::Array => true,
        };
        if !arity_ok {
            let wanted = match function {
                Function::Format => "at least 1 argument",
                Function::StringToJson | Function::JsonToString => "1 argument",
                Function::MathAdd => "2 arguments",
                Function::Uuid => "no arguments",
                Function::Array => "any number of arguments",
            };
            return Err(format!("{name} takes {wanted}, got {}", args.len()));
        }
        if function == Function::Format {
            match args.first() {
                Some(Arg::Str { raw, .. }) => {
                    let placeholders = format_pieces(raw)?.iter().filter(|p| p.is_none()).count();
                    if placeholders != args.len() - 1 {
                        return Err(format!(
                            "{name} template has {placeholders} placeholder(s) but {} value(s)",
                            args.len() - 1
                        ));
                    }
                }
                Some(Arg::Path(_)) => {}
                _ => return Err(format!("{name} needs a string template as first argument")),
            }
        }
        if function == Function::MathAdd {
            for arg in args {
                if matches!(arg, Arg::Str { .. } | Arg::Bool(_) | Arg::Null) {
                    return Err(format!("{name} takes numbers"));
                }
            }
        }
        Ok(())
    }

    fn eval(&self, scope: &Scope<'_>) -> Result<Value, ExecutionFailure> {
        let name = self.function.name();
        let fail = |why: String| {
            ExecutionFailure::new(errors::INTRINSIC_FAILURE, format!("{name}: {why}"))
        };
        let mut values = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Number(n) => Value::Number(n.clone()),
                Arg::Bool(b) => Value::Bool(*b),
                Arg::Null => Value::Null,
                Arg::Path(path) => path.lookup(scope.input, scope.context).ok_or_else(|| {
                    ExecutionFailure::runtime(format!(
                        "{name}: the path \"{path}\" matches nothing"
                    ))
                })?,
                Arg::Call(call) => call.eval(scope)?,
            });
        }
        match self.function {
            Function::Format => {
                let template = match (self.args.first(), values.first()) {
                    (Some(Arg::Str { raw, .. }), _) => raw.clone(),
                    (_, Some(Value::String(s))) => s.clone(),
                    (_, Some(other)) => {
                        return Err(fail(format!(
                            "the template is {}, not a string",
                            kind_of(other)
                        )));
                    }
                    _ => return Err(fail("no template".to_owned())),
                };
                let pieces = format_pieces(&template).map_err(fail)?;
                let mut rest = values.iter().skip(1);
                let mut out = String::new();
                for piece in &pieces {
                    match piece {
                        Some(text) => out.push_str(text),
                        None => match rest.next() {
                            Some(Value::String(s)) => out.push_str(s),
                            Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                                out.push_str(&v.to_string());
                            }
                            Some(other) => {
                                return Err(fail(format!(
                                    "cannot put {} into the template",
                                    kind_of(other)
                                )));
                            }
                            None => return Err(fail("more placeholders than values".to_owned())),
                        },
                    }
                }
                if rest.next().is_some() {
                    return Err(fail("more values than placeholders".to_owned()));
                }
                Ok(Value::String(out))
            }
            Function::StringToJson => match values.first() {
                Some(Value::String(s)) => serde_json::from_str(s)
                    .map_err(|e| fail(format!("the string is not JSON: {e}"))),
                Some(other) => Err(fail(format!("needs a string, got {}", kind_of(other)))),
                None => Err(fail("needs an argument".to_owned())),
            },
            Function::JsonToString => match values.first() {
                Some(v) => Ok(Value::String(v.to_string())),
                None => Err(fail("needs an argument".to_owned())),
            },
            Function::Array => Ok(Value::Array(values)),
            Function::MathAdd => {
                let mut sum: i64 = 0;
                for value in &values {
                    let n = as_integer(value)
                        .ok_or_else(|| fail(format!("needs integers, got {value}")))?;
                    sum = sum
                        .checked_add(n)
                        .ok_or_else(|| fail("the sum overflows".to_owned()))?;
                }
                Ok(Value::Number(sum.into()))
            }
            Function::Uuid => Ok(Value::String(scope.uuids.next())),
        }
    }
}

/// A number as an integer; fractions are rounded half up as Step Functions (Java) does.
fn as_integer(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    let rounded = (f + 0.5).floor();
    (rounded.is_finite() && rounded.abs() < 9.0e18).then_some(rounded as i64)
}

/// Splits a `States.Format` template (escapes still in place) into literal text (`Some`)
/// and placeholders (`None`).
fn format_pieces(raw: &str) -> Result<Vec<Option<String>>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => text.push(escaped),
                None => return Err("the template ends with a lone '\\'".to_owned()),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.push(Some(std::mem::take(&mut text)));
                pieces.push(None);
            }
            '{' | '}' => {
                return Err(format!(
                    "the template has a lone '{c}' (write \\\\{c} for a literal brace)"
                ));
            }
            other => text.push(other),
        }
    }
    pieces.push(Some(text));
    Ok(pieces)
}

/// A recursive-descent parser for intrinsic function calls.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn rest_starts_with(&self, prefix: &str) -> bool {
        prefix
            .chars()
            .enumerate()
            .all(|(i, p)| self.chars.get(self.pos + i) == Some(&p))
    }

    fn call(&mut self) -> Result<Call, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            self.pos += 1;
        }
        let name: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        let function = Function::from_name(&name)?;
        self.skip_whitespace();
        if self.peek() != Some('(') {
            return Err(format!("{name} must be followed by '('"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_whitespace();
                args.push(self.arg()?);
                self.skip_whitespace();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(format!("{name}: expected ',' or ')' between arguments")),
                }
            }
        }
        Call::check(function, &args)?;
        Ok(Call { function, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => self.path(),
            Some(c) if c.is_ascii_digit() || c == '-' => self.number(),
            _ if self.rest_starts_with("States.") => Ok(Arg::Call(Box::new(self.call()?))),
            _ if self.keyword("true") => Ok(Arg::Bool(true)),
            _ if self.keyword("false") => Ok(Arg::Bool(false)),
            _ if self.keyword("null") => Ok(Arg::Null),
            _ => Err("an argument must be a 'string', a number, true, false, null, a path or an intrinsic function".to_owned()),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.rest_starts_with(word) {
            let after = self.pos + word.chars().count();
            if !self
                .chars
                .get(after)
                .is_some_and(|c| c.is_ascii_alphanumeric())
            {
                self.pos = after;
                return true;
            }
        }
        false
    }

    fn string(&mut self) -> Result<Arg, String> {
        self.pos += 1;
        let mut value = String::new();
        let mut raw = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string argument".to_owned()),
                Some('\\') => {
                    let Some(escaped) = self.chars.get(self.pos + 1).copied() else {
                        return Err("unterminated string argument".to_owned());
                    };
                    // `\'` and `\\` are string escapes; `\{` and `\}` stay escaped in `raw`
                    // so States.Format can tell literal braces from placeholders.
                    value.push(escaped);
                    if escaped != '\'' {
                        raw.push('\\');
                    }
                    raw.push(escaped);
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Arg::Str { value, raw });
                }
                Some(c) => {
                    value.push(c);
                    raw.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Arg, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        {
            self.pos += 1;
        }
        let text: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        serde_json::from_str::<Number>(&text)
            .map(Arg::Number)
            .map_err(|_| format!("\"{text}\" is not a number"))
    }

    fn path(&mut self) -> Result<Arg, String> {
        let start = self.pos;
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            match quote {
                Some(q) => {
                    if c == '\\' {
                        self.pos += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => {
                    if c == ',' || c == ')' || c.is_whitespace() {
                        break;
                    }
                    if c == '\'' || c == '"' {
                        quote = Some(c);
                    }
                }
            }
            self.pos += 1;
        }
        let text: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        Ok(Arg::Path(Path::parse(&text)?))
    }
}

/// Deterministic `States.UUID()` values for one execution: version-4-shaped UUIDs derived
/// from the execution name and a counter.
#[derive(Debug)]
pub(crate) struct UuidSource {
    seed: String,
    counter: AtomicU64,
}

impl UuidSource {
    /// UUIDs for the execution named `seed`.
    pub(crate) fn new(seed: &str) -> Self {
        Self {
            seed: seed.to_owned(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next UUID.
    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let high = fnv1a(0xcbf2_9ce4_8422_2325, self.seed.as_bytes(), n);
        let low = fnv1a(0x8422_2325_cbf2_9ce4, self.seed.as_bytes(), n ^ 0x5bd1_e995);
        let bits = (u128::from(high) << 64) | u128::from(low);
        // Version 4, RFC 4122 variant.
        let bits = (bits & !(0xf << 76)) | (0x4 << 76);
        let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
        let hex = format!("{bits:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            hex.get(0..8).unwrap_or_default(),
            hex.get(8..12).unwrap_or_default(),
            hex.get(12..16).unwrap_or_default(),
            hex.get(16..20).unwrap_or_default(),
            hex.get(20..32).unwrap_or_default()
        )
    }
}

/// FNV-1a over `bytes` then `n`, with a mixing finish.
pub(crate) fn fnv1a(basis: u64, bytes: &[u8], n: u64) -> u64 {
    let mut hash = basis;
    for b in bytes.iter().chain(n.to_le_bytes().iter()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(template: &Value, input: &Value) -> Result<Value, ExecutionFailure> {
        let ctx = ContextObject {
            execution_input: input,
            rest: json!({"State": {"Name": "S"}}),
        };
        let uuids = UuidSource::new("exec");
        Template::compile(template).unwrap().eval(&Scope {
            input,
            context: &ctx,
            uuids: &uuids,
        })
    }

    #[test]
    fn dollar_keys_take_paths_and_nest_through_objects_and_arrays() {
        let out = eval(
            &json!({"FunctionName": "fn", "Payload.$": "$", "list": [{"n.$": "$.n"}, 2], "s.$": "$$.State.Name"}),
            &json!({"n": 7}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"FunctionName": "fn", "Payload": {"n": 7}, "list": [{"n": 7}, 2], "s": "S"})
        );
    }

    #[test]
    fn a_missing_path_is_a_runtime_error() {
        let err = eval(&json!({"x.$": "$.nope"}), &json!({})).unwrap_err();
        assert_eq!(err.error, errors::RUNTIME);
        assert!(err.cause.contains("$.nope"), "{err}");
    }

    #[test]
    fn intrinsics_evaluate() {
        let input = json!({"name": "api", "n": 2, "doc": "{\"a\":[1]}", "obj": {"k": true}});
        let out = eval(
            &json!({
                "f.$": "States.Format('Hello {} #{} \\{x\\} it\\'s', $.name, $.n)",
                "j.$": "States.StringToJson($.doc)",
                "s.$": "States.JsonToString($.obj)",
                "a.$": "States.Array($.n, 'x', true, null, States.MathAdd($.n, -5))",
                "m.$": "States.MathAdd(1.5, 2)",
            }),
            &input,
        )
        .unwrap();
        assert_eq!(out["f"], json!("Hello api #2 {x} it's"));
        assert_eq!(out["j"], json!({"a": [1]}));
        assert_eq!(out["s"], json!("{\"k\":true}"));
        assert_eq!(out["a"], json!([2, "x", true, null, -3]));
        assert_eq!(out["m"], json!(4));
    }

    #[test]
    fn uuids_are_deterministic_per_execution_and_unique_per_call() {
        let a = UuidSource::new("exec");
        let b = UuidSource::new("exec");
        let first = a.next();
        assert_eq!(first, b.next());
        assert_ne!(first, a.next());
        assert_eq!(first.len(), 36);
        assert_eq!(first.chars().nth(14), Some('4'));
    }

    #[test]
    fn bad_templates_are_refused_with_the_key() {
        for (template, needle) in [
            (
                json!({"h.$": "States.Hash($.x, 'SHA-256')"}),
                "States.Hash is not supported",
            ),
            (
                json!({"h.$": "States.Nope()"}),
                "States.Nope is not an intrinsic",
            ),
            (json!({"h.$": "States.Format('{} {}', $.x)"}), "placeholder"),
            (json!({"h.$": "States.MathAdd(1)"}), "2 arguments"),
            (json!({"h.$": 3}), "string value"),
            (json!({"h.$": "plain"}), "neither a path"),
            (json!({"h.$": "$.a[*]"}), "wildcards"),
            (json!({"h": 1, "h.$": "$.a"}), "both produce"),
        ] {
            let err = Template::compile(&template).unwrap_err();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn intrinsic_type_errors_are_intrinsic_failures() {
        let err = eval(
            &json!({"x.$": "States.StringToJson($.n)"}),
            &json!({"n": 1}),
        )
        .unwrap_err();
        assert_eq!(err.error, errors::INTRINSIC_FAILURE);
        let err = eval(
            &json!({"x.$": "States.MathAdd($.s, 1)"}),
            &json!({"s": "1"}),
        )
        .unwrap_err();
        assert_eq!(err.error, errors::INTRINSIC_FAILURE);
    }
}
