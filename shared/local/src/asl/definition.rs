//! Loading a definition: `${Name}` substitutions (as `DefinitionSubstitutions` does),
//! parsing, and validation. Everything this interpreter does not support is refused here,
//! naming the state and the field, so a definition that loads runs as written.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::AslError;
use super::choice::{ChoiceRule, parse_rule};
use super::clock::parse_timestamp;
use super::errors;
use super::path::Path;
use super::template::Template;

/// The most seconds any ASL duration field accepts.
const MAX_SECONDS: u64 = 99_999_999;

/// The longest state name Step Functions accepts.
const MAX_STATE_NAME: usize = 80;

/// A loaded, validated state machine definition.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) graph: Graph,
    pub(crate) timeout_seconds: Option<u64>,
    comment: Option<String>,
}

/// A set of states with a start: the machine itself or a Map's item processor.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub start_at: String,
    pub states: HashMap<String, State>,
}

/// One state. Fields a state type does not allow are refused at load, so the defaults of
/// the others are never observed.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub name: String,
    pub kind: Kind,
    pub transition: Transition,
    /// `None` is `"InputPath": null` (the effective input is `{}`).
    pub input_path: Option<Path>,
    /// `None` is `"OutputPath": null` (the output is `{}`).
    pub output_path: Option<Path>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    /// `None` is `"ResultPath": null` (the result is discarded).
    pub result_path: Option<Path>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// Where a state goes when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    Next(String),
    End,
    /// Choice (decided by its rules), Succeed and Fail.
    Own,
}

/// What a state does.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task(TaskSpec),
    Choice {
        choices: Vec<ChoiceRule>,
        default: Option<String>,
    },
    Wait(WaitFor),
    Map(Box<MapSpec>),
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
}

/// A Task state's own fields.
#[derive(Debug, Clone)]
pub(crate) struct TaskSpec {
    /// `Resource` without a `.waitForTaskToken` suffix.
    pub resource: String,
    pub wait_for_task_token: bool,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
}

/// How long a Wait state waits.
#[derive(Debug, Clone)]
pub(crate) enum WaitFor {
    Seconds(u64),
    SecondsPath(Path),
    Timestamp(OffsetDateTime),
    TimestampPath(Path),
}

/// A Map state's own fields.
#[derive(Debug, Clone)]
pub(crate) struct MapSpec {
    pub items_path: Path,
    /// `ItemSelector`, or the legacy `Parameters`.
    pub item_selector: Option<Template>,
    /// `MaxConcurrency` (0 means no limit) or `MaxConcurrencyPath`.
    pub max_concurrency: Concurrency,
    /// `ItemProcessor`, or the legacy `Iterator`.
    pub processor: Graph,
}

/// How many Map iterations may run at once.
#[derive(Debug, Clone)]
pub(crate) enum Concurrency {
    /// `MaxConcurrency`; 0 means no limit.
    Fixed(u64),
    /// `MaxConcurrencyPath`: a reference path into the state input, read at run time.
    Path(Path),
}

/// A Fail state's `Error`/`Cause` (literal) or `ErrorPath`/`CausePath` (path or intrinsic).
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Literal(String),
    Dynamic(Template),
}

/// One entry of `Retry`.
#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub full_jitter: bool,
}

/// One entry of `Catch`.
#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    /// `None` is `"ResultPath": null`.
    pub result_path: Option<Path>,
}

/// Whether an error name is matched by an `ErrorEquals` list. The wildcards `States.ALL`
/// and `States.TaskFailed` (which also skips `States.Timeout`) do not match
/// `States.Runtime` or `States.DataLimitExceeded`.
pub(crate) fn error_matches(error_equals: &[String], error: &str) -> bool {
    let wildcards = error != errors::RUNTIME && error != errors::DATA_LIMIT_EXCEEDED;
    error_equals.iter().any(|name| {
        name == error
            || (wildcards
                && (name == errors::ALL
                    || (name == errors::TASK_FAILED && error != errors::TIMEOUT)))
    })
}

impl StateMachine {
    /// Substitutes `${Name}` placeholders, parses and validates a definition.
    pub fn load(
        definition_json: &str,
        substitutions: &BTreeMap<String, String>,
    ) -> Result<Self, AslError> {
        let text = substitute(definition_json, substitutions)?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| AslError::Json(e.to_string()))?;
        let Value::Object(root) = &value else {
            return Err(AslError::Structure(
                "the definition must be a JSON object".to_owned(),
            ));
        };
        let top = Obj::new("definition", "", root);
        top.only(&[
            "Comment",
            "StartAt",
            "States",
            "Version",
            "TimeoutSeconds",
            "QueryLanguage",
        ])?;
        top.query_language()?;
        let comment = top.string("Comment")?.map(str::to_owned);
        top.string("Version")?;
        let timeout_seconds = top.uint("TimeoutSeconds", 1, MAX_SECONDS)?;
        let mut names = HashSet::new();
        let graph = parse_graph(&top, &mut names)?;
        Ok(Self {
            graph,
            timeout_seconds,
            comment,
        })
    }

    /// The name of the first state.
    pub fn start_at(&self) -> &str {
        &self.graph.start_at
    }

    /// The top-level `Comment`, if any.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The top-level `TimeoutSeconds`, if any.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
    }

    /// The names of all states, including those inside Map item processors, sorted.
    pub fn state_names(&self) -> Vec<&str> {
        fn collect<'a>(graph: &'a Graph, out: &mut Vec<&'a str>) {
            for (name, state) in &graph.states {
                out.push(name);
                if let Kind::Map(map) = &state.kind {
                    collect(&map.processor, out);
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.graph, &mut out);
        out.sort_unstable();
        out
    }
}

/// Replaces every `${Name}` with its substitution; a name without one is an error.
fn substitute(text: &str, substitutions: &BTreeMap<String, String>) -> Result<String, AslError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 2..).unwrap_or_default();
        let name_end = after.find('}');
        match name_end.and_then(|end| after.get(..end).map(|name| (end, name))) {
            Some((end, name))
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                match substitutions.get(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(AslError::MissingSubstitution(name.to_owned())),
                }
                rest = after.get(end + 1..).unwrap_or_default();
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON object being validated, with where it is for error messages.
struct Obj<'a> {
    /// `definition` or `state "Name"`.
    at: &'a str,
    /// Prepended to field names (`ItemProcessor.`, `Retry[0].`).
    prefix: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(at: &'a str, prefix: &'a str, map: &'a Map<String, Value>) -> Self {
        Self { at, prefix, map }
    }

    fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn invalid(&self, key: &str, problem: impl Into<String>) -> AslError {
        AslError::Invalid {
            at: self.at.to_owned(),
            field: self.field(key),
            problem: problem.into(),
        }
    }

    /// Refuses every key not in `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), AslError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(key) => Err(AslError::Unsupported {
                at: self.at.to_owned(),
                field: self.field(key),
            }),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn query_language(&self) -> Result<(), AslError> {
        match self.get("QueryLanguage") {
            None => Ok(()),
            Some(Value::String(q)) if q == "JSONPath" => Ok(()),
            Some(other) => Err(self.invalid(
                "QueryLanguage",
                format!("value {other} is not supported (only \"JSONPath\" is)"),
            )),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    fn required_string(&self, key: &str) -> Result<&'a str, AslError> {
        self.string(key)?
            .ok_or_else(|| self.invalid(key, "is required"))
    }

    fn uint(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(self.invalid(key, format!("must be an integer from {min} to {max}"))),
            },
            Some(_) => Err(self.invalid(key, format!("must be an integer from {min} to {max}"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(key, "must be true or false")),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.invalid(key, "must be an array")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(self.invalid(key, "must be a JSON object")),
        }
    }

    fn path(&self, key: &str, allow_context: bool) -> Result<Option<Path>, AslError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let path = Path::parse(text).map_err(|problem| self.invalid(key, problem))?;
        if path.is_context() && !allow_context {
            return Err(self.invalid(key, "cannot refer to the context object ($$)"));
        }
        Ok(Some(path))
    }

    /// A path that may be `null`: absent is `$`, `null` is `None`.
    fn nullable_path(&self, key: &str, allow_context: bool) -> Result<Option<Path>, AslError> {
        match self.get(key) {
            None => Ok(Some(Path::root())),
            Some(Value::Null) => Ok(None),
            Some(_) => self.path(key, allow_context),
        }
    }

    fn template(&self, key: &str) -> Result<Option<Template>, AslError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => Template::compile(value)
                .map(Some)
                .map_err(|problem| self.invalid(key, format!("is invalid: {problem}"))),
        }
    }

    fn text(&self, literal: &str, dynamic: &str) -> Result<Option<Text>, AslError> {
        match (self.string(literal)?, self.string(dynamic)?) {
            (Some(_), Some(_)) => {
                Err(self.invalid(dynamic, format!("cannot be combined with \"{literal}\"")))
            }
            (Some(text), None) => Ok(Some(Text::Literal(text.to_owned()))),
            (None, Some(expr)) => Template::expression(expr, dynamic)
                .map(|t| Some(Text::Dynamic(t)))
                .map_err(|problem| self.invalid(dynamic, problem)),
            (None, None) => Ok(None),
        }
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];
const PASS: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultPath",
    "Result",
];
const TASK: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
    "Resource",
    "TimeoutSeconds",
    "HeartbeatSeconds",
];
const CHOICE: &[&str] = &["InputPath", "OutputPath", "Choices", "Default"];
const WAIT: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Seconds",
    "SecondsPath",
    "Timestamp",
    "TimestampPath",
];
const SUCCEED: &[&str] = &["InputPath", "OutputPath"];
const FAIL: &[&str] = &["Error", "ErrorPath", "Cause", "CausePath"];
const MAP: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "ItemsPath",
    "ItemSelector",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Retry",
    "Catch",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ItemProcessor",
    "Iterator",
];

/// Parses `StartAt` + `States` of `obj` and checks every transition and reachability.
fn parse_graph(obj: &Obj<'_>, names: &mut HashSet<String>) -> Result<Graph, AslError> {
    let start_at = obj.required_string("StartAt")?.to_owned();
    let states_map = obj
        .object("States")?
        .ok_or_else(|| obj.invalid("States", "is required"))?;
    if states_map.is_empty() {
        return Err(obj.invalid("States", "must have at least one state"));
    }
    let mut states = HashMap::with_capacity(states_map.len());
    for (name, definition) in states_map {
        if name.is_empty() || name.chars().count() > MAX_STATE_NAME {
            return Err(AslError::Structure(format!(
                "state name \"{name}\" must have 1 to {MAX_STATE_NAME} characters"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(AslError::Structure(format!(
                "state \"{name}\" is defined more than once (state names are unique in the whole state machine)"
            )));
        }
        states.insert(name.clone(), parse_state(name, definition, names)?);
    }
    if !states.contains_key(&start_at) {
        return Err(obj.invalid(
            "StartAt",
            format!(
                "names state \"{start_at}\", which does not exist{}",
                level(obj)
            ),
        ));
    }
    for state in states.values() {
        for (field, target) in targets(state) {
            if !states.contains_key(target) {
                return Err(AslError::Invalid {
                    at: format!("state \"{}\"", state.name),
                    field,
                    problem: format!(
                        "names state \"{target}\", which does not exist{}",
                        level(obj)
                    ),
                });
            }
        }
    }
    let mut reached: HashSet<&str> = HashSet::from([start_at.as_str()]);
    let mut queue = VecDeque::from([start_at.as_str()]);
    while let Some(name) = queue.pop_front() {
        if let Some(state) = states.get(name) {
            for (_, target) in targets(state) {
                if reached.insert(target) {
                    queue.push_back(target);
                }
            }
        }
    }
    let mut unreachable: Vec<&String> = states
        .keys()
        .filter(|name| !reached.contains(name.as_str()))
        .collect();
    unreachable.sort();
    if let Some(name) = unreachable.first() {
        return Err(AslError::Structure(format!(
            "state \"{name}\" is unreachable: it is not {}StartAt and no Next, Default or Catch names it",
            obj.prefix
        )));
    }
    let terminal = states.values().any(|state| {
        state.transition == Transition::End
            || matches!(state.kind, Kind::Succeed | Kind::Fail { .. })
    });
    if !terminal {
        return Err(obj.invalid(
            "States",
            "has no terminal state (\"End\": true, Succeed or Fail)",
        ));
    }
    Ok(Graph { start_at, states })
}

/// Where a graph is, for messages: nothing at top level, the Map state otherwise.
fn level(obj: &Obj<'_>) -> String {
    if obj.prefix.is_empty() {
        String::new()
    } else {
        format!(" in the item processor of {}", obj.at)
    }
}

/// Every transition target of a state, with the field that names it.
fn targets(state: &State) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Transition::Next(next) = &state.transition {
        out.push(("Next".to_owned(), next.as_str()));
    }
    if let Kind::Choice { choices, default } = &state.kind {
        for (i, rule) in choices.iter().enumerate() {
            out.push((format!("Choices[{i}].Next"), rule.next.as_str()));
        }
        if let Some(default) = default {
            out.push(("Default".to_owned(), default.as_str()));
        }
    }
    for (i, catcher) in state.catch.iter().enumerate() {
        out.push((format!("Catch[{i}].Next"), catcher.next.as_str()));
    }
    out
}

fn parse_state(
    name: &str,
    definition: &Value,
    names: &mut HashSet<String>,
) -> Result<State, AslError> {
    let at = format!("state \"{name}\"");
    let Value::Object(map) = definition else {
        return Err(AslError::Structure(format!("{at} must be a JSON object")));
    };
    let o = Obj::new(&at, "", map);
    let ty = o.required_string("Type")?;
    let own: &[&str] = match ty {
        "Pass" => PASS,
        "Task" => TASK,
        "Choice" => CHOICE,
        "Wait" => WAIT,
        "Succeed" => SUCCEED,
        "Fail" => FAIL,
        "Map" => MAP,
        other => {
            return Err(o.invalid("Type", format!("value \"{other}\" is not supported")));
        }
    };
    let allowed: Vec<&str> = COMMON.iter().chain(own).copied().collect();
    o.only(&allowed)?;
    o.query_language()?;
    o.string("Comment")?;

    let transition = if own.contains(&"Next") {
        let next = o.string("Next")?;
        let end = o.bool("End")?.unwrap_or(false);
        match (next, end) {
            (Some(next), false) => Transition::Next(next.to_owned()),
            (None, true) => Transition::End,
            (Some(_), true) => return Err(o.invalid("End", "cannot be combined with \"Next\"")),
            (None, false) => return Err(o.invalid("Next", "is required (or \"End\": true)")),
        }
    } else {
        Transition::Own
    };

    let mut state = State {
        name: name.to_owned(),
        kind: Kind::Succeed,
        transition,
        input_path: o.nullable_path("InputPath", true)?,
        output_path: o.nullable_path("OutputPath", true)?,
        parameters: None,
        result_selector: o.template("ResultSelector")?,
        result_path: o.nullable_path("ResultPath", false)?,
        retry: parse_retry(&o)?,
        catch: parse_catch(&o)?,
    };

    state.kind = match ty {
        "Pass" => {
            state.parameters = o.template("Parameters")?;
            Kind::Pass {
                result: o.get("Result").cloned(),
            }
        }
        "Task" => {
            state.parameters = o.template("Parameters")?;
            let resource = o.required_string("Resource")?;
            let (resource, wait_for_task_token) = match resource.strip_suffix(".waitForTaskToken") {
                Some(base) => (base, true),
                None => (resource, false),
            };
            if resource.is_empty() {
                return Err(o.invalid("Resource", "must not be empty"));
            }
            let timeout_seconds = o.uint("TimeoutSeconds", 1, MAX_SECONDS)?;
            let heartbeat_seconds = o.uint("HeartbeatSeconds", 1, MAX_SECONDS)?;
            if let (Some(timeout), Some(heartbeat)) = (timeout_seconds, heartbeat_seconds)
                && heartbeat >= timeout
            {
                return Err(o.invalid(
                    "HeartbeatSeconds",
                    "must be smaller than \"TimeoutSeconds\"",
                ));
            }
            Kind::Task(TaskSpec {
                resource: resource.to_owned(),
                wait_for_task_token,
                timeout_seconds,
                heartbeat_seconds,
            })
        }
        "Choice" => {
            let rules = o
                .array("Choices")?
                .ok_or_else(|| o.invalid("Choices", "is required"))?;
            if rules.is_empty() {
                return Err(o.invalid("Choices", "must have at least one rule"));
            }
            let mut choices = Vec::with_capacity(rules.len());
            for (i, rule) in rules.iter().enumerate() {
                let (next, condition) = parse_rule(rule, &format!("Choices[{i}]"), true).map_err(
                    |(field, problem)| match problem {
                        Some(problem) => o.invalid(&field, problem),
                        None => AslError::Unsupported {
                            at: at.clone(),
                            field,
                        },
                    },
                )?;
                choices.push(ChoiceRule {
                    next: next.unwrap_or_default(),
                    condition,
                });
            }
            Kind::Choice {
                choices,
                default: o.string("Default")?.map(str::to_owned),
            }
        }
        "Wait" => {
            let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                .into_iter()
                .filter(|k| map.contains_key(*k))
                .collect();
            let field = match present.as_slice() {
                [] => {
                    return Err(o.invalid(
                        "Seconds",
                        "is required (or SecondsPath, Timestamp, TimestampPath)",
                    ));
                }
                [only] => *only,
                [_, second, ..] => {
                    return Err(o.invalid(second, "cannot be combined with another wait field"));
                }
            };
            Kind::Wait(match field {
                "Seconds" => {
                    WaitFor::Seconds(o.uint("Seconds", 0, MAX_SECONDS)?.unwrap_or_default())
                }
                "SecondsPath" => {
                    WaitFor::SecondsPath(o.path("SecondsPath", true)?.unwrap_or_else(Path::root))
                }
                "Timestamp" => {
                    let text = o.required_string("Timestamp")?;
                    WaitFor::Timestamp(parse_timestamp(text).ok_or_else(|| {
                        o.invalid(
                            "Timestamp",
                            "must be an RFC 3339 timestamp (e.g. 2024-05-01T12:00:00Z)",
                        )
                    })?)
                }
                _ => WaitFor::TimestampPath(
                    o.path("TimestampPath", true)?.unwrap_or_else(Path::root),
                ),
            })
        }
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail {
            error: o.text("Error", "ErrorPath")?,
            cause: o.text("Cause", "CausePath")?,
        },
        "Map" => {
            let item_selector = match (o.template("ItemSelector")?, o.template("Parameters")?) {
                (Some(_), Some(_)) => {
                    return Err(o.invalid("Parameters", "cannot be combined with \"ItemSelector\""));
                }
                (selector, parameters) => selector.or(parameters),
            };
            let (key, processor) = match (o.object("ItemProcessor")?, o.object("Iterator")?) {
                (Some(_), Some(_)) => {
                    return Err(o.invalid("Iterator", "cannot be combined with \"ItemProcessor\""));
                }
                (Some(p), None) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                (None, None) => return Err(o.invalid("ItemProcessor", "is required")),
            };
            let prefix = format!("{key}.");
            let inner = Obj::new(&at, &prefix, processor);
            if key == "ItemProcessor" {
                inner.only(&["StartAt", "States", "ProcessorConfig", "Comment"])?;
                if let Some(config) = inner.object("ProcessorConfig")? {
                    let config_prefix = format!("{prefix}ProcessorConfig.");
                    Obj::new(&at, &config_prefix, config).only(&["Mode", "ExecutionType"])?;
                }
            } else {
                inner.only(&["StartAt", "States", "Comment"])?;
            }
            inner.string("Comment")?;
            let processor = parse_graph(&inner, names)?;
            Kind::Map(Box::new(MapSpec {
                items_path: o.path("ItemsPath", true)?.unwrap_or_else(Path::root),
                item_selector,
                max_concurrency: match (
                    o.uint("MaxConcurrency", 0, u64::from(u32::MAX))?,
                    o.path("MaxConcurrencyPath", false)?,
                ) {
                    (Some(_), Some(_)) => {
                        return Err(o.invalid(
                            "MaxConcurrencyPath",
                            "cannot be used together with MaxConcurrency",
                        ));
                    }
                    (_, Some(path)) => Concurrency::Path(path),
                    (fixed, None) => Concurrency::Fixed(fixed.unwrap_or(0)),
                },
                processor,
            }))
        }
        // The match on `ty` above returned for every other type.
        _ => Kind::Succeed,
    };
    Ok(state)
}

/// Checks an `ErrorEquals` list; `last` says whether its retrier/catcher is the last one.
fn error_equals(o: &Obj<'_>, last: bool) -> Result<Vec<String>, AslError> {
    let items = o
        .array("ErrorEquals")?
        .ok_or_else(|| o.invalid("ErrorEquals", "is required"))?;
    if items.is_empty() {
        return Err(o.invalid("ErrorEquals", "must not be empty"));
    }
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(o.invalid("ErrorEquals", "must contain only strings"));
        };
        names.push(name.clone());
    }
    if names.iter().any(|n| n == errors::ALL) {
        if names.len() > 1 {
            return Err(o.invalid("ErrorEquals", "must contain States.ALL alone"));
        }
        if !last {
            return Err(o.invalid("ErrorEquals", "may use States.ALL only in the last entry"));
        }
    }
    Ok(names)
}

fn parse_retry(o: &Obj<'_>) -> Result<Vec<Retrier>, AslError> {
    let Some(items) = o.array("Retry")? else {
        return Ok(Vec::new());
    };
    let mut retriers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("Retry[{i}].");
        let Value::Object(map) = item else {
            return Err(o.invalid(&format!("Retry[{i}]"), "must be a JSON object"));
        };
        let r = Obj::new(o.at, &prefix, map);
        r.only(&[
            "ErrorEquals",
            "IntervalSeconds",
            "MaxAttempts",
            "BackoffRate",
            "MaxDelaySeconds",
            "JitterStrategy",
            "Comment",
        ])?;
        r.string("Comment")?;
        let backoff_rate = match r.get("BackoffRate") {
            None => 2.0,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(rate) if rate >= 1.0 && rate.is_finite() => rate,
                _ => return Err(r.invalid("BackoffRate", "must be a number of at least 1.0")),
            },
            Some(_) => return Err(r.invalid("BackoffRate", "must be a number of at least 1.0")),
        };
        let full_jitter = match r.string("JitterStrategy")? {
            None | Some("NONE") => false,
            Some("FULL") => true,
            Some(other) => {
                return Err(r.invalid(
                    "JitterStrategy",
                    format!("value \"{other}\" is not FULL or NONE"),
                ));
            }
        };
        retriers.push(Retrier {
            error_equals: error_equals(&r, i + 1 == items.len())?,
            interval_seconds: r.uint("IntervalSeconds", 1, MAX_SECONDS)?.unwrap_or(1),
            max_attempts: r.uint("MaxAttempts", 0, MAX_SECONDS)?.unwrap_or(3),
            backoff_rate,
            max_delay_seconds: r.uint("MaxDelaySeconds", 1, 31_622_400)?,
            full_jitter,
        });
    }
    Ok(retriers)
}

fn parse_catch(o: &Obj<'_>) -> Result<Vec<Catcher>, AslError> {
    let Some(items) = o.array("Catch")? else {
        return Ok(Vec::new());
    };
    let mut catchers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("Catch[{i}].");
        let Value::Object(map) = item else {
            return Err(o.invalid(&format!("Catch[{i}]"), "must be a JSON object"));
        };
        let c = Obj::new(o.at, &prefix, map);
        c.only(&["ErrorEquals", "Next", "ResultPath", "Comment"])?;
        c.string("Comment")?;
        catchers.push(Catcher {
            error_equals: error_equals(&c, i + 1 == items.len())?,
            next: c.required_string("Next")?.to_owned(),
            result_path: c.nullable_path("ResultPath", false)?,
        });
    }
    Ok(catchers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(definition: Value) -> Result<StateMachine, AslError> {
        StateMachine::load(&definition.to_string(), &BTreeMap::new())
    }

    fn message(definition: Value) -> String {
        load(definition).unwrap_err().to_string()
    }

    #[test]
    fn substitutions_replace_placeholders_and_a_missing_one_is_named() {
        let text = r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${AnalyzeFunctionArn}", "End": true}}}"#;
        let subs = BTreeMap::from([(
            "AnalyzeFunctionArn".to_owned(),
            "arn:aws:lambda:x".to_owned(),
        )]);
        let machine = StateMachine::load(text, &subs).unwrap();
        let Kind::Task(task) = &machine.graph.states["A"].kind else {
            panic!()
        };
        assert_eq!(task.resource, "arn:aws:lambda:x");
        let err = StateMachine::load(text, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err,
            AslError::MissingSubstitution("AnalyzeFunctionArn".to_owned())
        );
        assert!(err.to_string().contains("${AnalyzeFunctionArn}"), "{err}");
    }

    #[test]
    fn an_unsupported_state_type_is_refused() {
        let msg = message(
            json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [], "End": true}}}),
        );
        assert_eq!(
            msg,
            "state \"P\": field \"Type\" value \"Parallel\" is not supported"
        );
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let msg = message(json!({"StartAt": "Deploy", "States": {"Deploy": {
            "Type": "Task", "Resource": "arn", "Arguments": {}, "End": true}}}));
        assert_eq!(
            msg,
            "state \"Deploy\": field \"Arguments\" is not supported"
        );
        let msg = message(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {}, "End": true}}}),
        );
        assert_eq!(msg, "state \"A\": field \"Assign\" is not supported");
        let msg = message(
            json!({"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
        );
        assert!(
            msg.starts_with("definition: field \"QueryLanguage\""),
            "{msg}"
        );
        let msg = message(
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
            "Retry": [{"ErrorEquals": ["X"], "Jitter": 1}]}}}),
        );
        assert_eq!(
            msg,
            "state \"A\": field \"Retry[0].Jitter\" is not supported"
        );
        let msg = message(
            json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
            {"Variable": "$.x", "StringSoundsLike": "y", "Next": "D"}]}, "D": {"Type": "Succeed"}}}),
        );
        assert_eq!(
            msg,
            "state \"C\": field \"Choices[0].StringSoundsLike\" is not supported"
        );
        let msg = message(
            json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true,
            "Parameters": {"h.$": "States.Hash($, 'MD5')"}}}}),
        );
        assert!(
            msg.starts_with("state \"A\": field \"Parameters\" is invalid"),
            "{msg}"
        );
        assert!(msg.contains("States.Hash is not supported"), "{msg}");
        let msg = message(
            json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Output": 1, "End": true}}}}}}),
        );
        assert_eq!(msg, "state \"I\": field \"Output\" is not supported");
    }

    #[test]
    fn dangling_transitions_are_refused() {
        let msg =
            message(json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}));
        assert_eq!(
            msg,
            "state \"A\": field \"Next\" names state \"Nowhere\", which does not exist"
        );
        let msg = message(json!({"StartAt": "Z", "States": {"A": {"Type": "Succeed"}}}));
        assert!(msg.starts_with("definition: field \"StartAt\""), "{msg}");
        let msg = message(
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]}}}),
        );
        assert!(
            msg.contains("\"Catch[0].Next\" names state \"Gone\""),
            "{msg}"
        );
        let msg = message(
            json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Default": "Gone",
            "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "C"}]}}}),
        );
        assert!(msg.contains("\"Default\" names state \"Gone\""), "{msg}");
        let msg = message(
            json!({"StartAt": "M", "States": {"M": {"Type": "Map", "Next": "After",
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Next": "After"}}}},
            "After": {"Type": "Succeed"}}}),
        );
        assert!(msg.contains("state \"I\": field \"Next\" names state \"After\", which does not exist in the item processor of"), "{msg}");
    }

    #[test]
    fn structural_rules_are_enforced() {
        for (definition, needle) in [
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}),
                "\"Next\" is required",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A", "End": true}}}),
                "\"End\" cannot be combined",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}),
                "\"B\" is unreachable",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "End": true}}}),
                "\"Seconds\" is required",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "End": true}}}),
                "\"Timestamp\" cannot be combined",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
                "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]}}}),
                "only in the last entry",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true,
                "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "A"}]}}}),
                "States.ALL alone",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "TimeoutSeconds": 5, "HeartbeatSeconds": 5}}}),
                "smaller",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$$.x"}}}),
                "context object",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$.a[*]"}}}),
                "wildcards",
            ),
            (
                json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
                "ItemProcessor": {"StartAt": "M", "States": {"M": {"Type": "Succeed"}}}}}}),
                "defined more than once",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Succeed", "Next": "A"}}}),
                "field \"Next\" is not supported",
            ),
            (json!([1]), "must be a JSON object"),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}),
                "has no terminal state",
            ),
        ] {
            let msg = message(definition.clone());
            assert!(msg.contains(needle), "{definition}: {msg}");
        }
        assert!(matches!(
            StateMachine::load("{", &BTreeMap::new()),
            Err(AslError::Json(_))
        ));
    }

    #[test]
    fn a_full_definition_loads() {
        let machine = load(json!({
            "Comment": "c", "Version": "1.0", "TimeoutSeconds": 60, "QueryLanguage": "JSONPath",
            "StartAt": "Analyze",
            "States": {
                "Analyze": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "f", "Payload.$": "$"},
                    "ResultSelector": {"r.$": "$.Payload"}, "ResultPath": "$.analysis", "OutputPath": "$",
                    "Retry": [{"ErrorEquals": ["Retryable"], "MaxDelaySeconds": 10, "JitterStrategy": "FULL", "Comment": "x"}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
                    "TimeoutSeconds": 30, "HeartbeatSeconds": 10, "Next": "HasWork"},
                "HasWork": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Fan", "Comment": "x"}], "Default": "Done"},
                "Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3,
                    "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Wait", "States": {
                        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Approve"},
                        "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": true}}},
                    "Next": "Done"},
                "Done": {"Type": "Succeed"},
                "Failed": {"Type": "Fail", "Error": "CycleFailed", "CausePath": "$.error.Cause"}
            }
        }))
        .unwrap();
        assert_eq!(machine.start_at(), "Analyze");
        assert_eq!(machine.timeout_seconds(), Some(60));
        assert_eq!(machine.comment(), Some("c"));
        assert_eq!(
            machine.state_names(),
            [
                "Analyze", "Approve", "Done", "Failed", "Fan", "HasWork", "Wait"
            ]
        );
        let Kind::Map(map) = &machine.graph.states["Fan"].kind else {
            panic!()
        };
        let Kind::Task(task) = &map.processor.states["Approve"].kind else {
            panic!()
        };
        assert!(task.wait_for_task_token);
        assert_eq!(task.resource, "arn:aws:states:::lambda:invoke");
    }

    #[test]
    fn no_prefix_or_mangling_of_a_definition_panics() {
        let text = json!({"StartAt": "É", "States": {
            "É": {"Type": "Pass", "Parameters": {"a.$": "States.Format('ü{}\\{', $['ñ x'][0])",
                "b.$": "States.Array(States.MathAdd(1, -2.5), 'x\\'y', null)"}, "Next": "Ç"},
            "Ç": {"Type": "Choice", "Choices": [{"Not": {"Variable": "$$.State.Name",
                "StringMatches": "*\\**"}, "Next": "Ω"}], "Default": "Ω"},
            "Ω": {"Type": "Wait", "Timestamp": "2024-05-01T12:00:00+01:00", "End": true}}})
        .to_string()
            + " ${Sub} ${ ${} $";
        let subs = BTreeMap::from([("Sub".to_owned(), "\"".to_owned())]);
        for (i, _) in text.char_indices() {
            let _ = StateMachine::load(&text[..i], &subs);
            let _ = StateMachine::load(&text[i..], &subs);
            let mut mangled = text.clone();
            mangled.insert(i, '"');
            let _ = StateMachine::load(&mangled, &subs);
        }
        for expr in [
            "States.Format('ü{}\\{', $['ñ x'][0], States.Array())",
            "$['é\\'x'][12].ü",
        ] {
            for (i, _) in expr.char_indices() {
                let _ = Template::expression(&expr[..i], "k");
                let _ = Template::expression(&expr[i..], "k");
            }
        }
    }

    #[test]
    fn error_names_match_like_step_functions() {
        let list = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(error_matches(&list(&["Retryable"]), "Retryable"));
        assert!(!error_matches(&list(&["Retryable"]), "Other"));
        assert!(error_matches(&list(&["States.ALL"]), "States.Timeout"));
        assert!(error_matches(
            &list(&["States.TaskFailed"]),
            "Lambda.ServiceException"
        ));
        assert!(!error_matches(
            &list(&["States.TaskFailed"]),
            "States.Timeout"
        ));
        assert!(!error_matches(
            &list(&["States.ALL"]),
            "States.DataLimitExceeded"
        ));
        assert!(error_matches(
            &list(&["States.DataLimitExceeded"]),
            "States.DataLimitExceeded"
        ));
    }
}
