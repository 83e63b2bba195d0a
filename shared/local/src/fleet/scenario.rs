//! Scenario files (`events/scenarios/<name>.json`): the functions of a simulated fleet, their
//! deployed settings and their workloads, plus opaque sections the cycle reads (`expect`,
//! `llm`, `approval`, `halt`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use selfbuild_core::change::LambdaSettings;

use selfbuild_core::change::code_patch::check_package_path;

use super::runner::Interpreter;
use selfbuild_core::event::EventJson;
use selfbuild_core::ids::{ComponentId, TenantId};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

/// A simulated fleet and what a cycle over it should end in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, e.g. `timeouts-fixed-by-config`.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The instant the scenario starts at; the fleet's routing history begins here.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// Seeds the fleet's random numbers; the same seed gives the same telemetry.
    #[serde(default)]
    pub seed: u64,
    /// The functions, in a stable order.
    pub functions: Vec<FunctionSpec>,
    /// What the cycle should end in (read by the cycle's tests, opaque here).
    pub expect: serde_json::Value,
    /// Recorded LLM answers for the cycle (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<serde_json::Value>,
    /// Recorded approval decisions for the cycle (opaque here); `approve` is accepted too.
    #[serde(default, alias = "approve", skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
    /// Configuration variables for this scenario's cycle (e.g. `CANARY_WEIGHT`,
    /// `PROTECTED_FUNCTIONS`), over the environment's; values are strings, numbers or booleans.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Lambda calls that fail, to test deploy, promote and rollback under faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// How late metrics arrive: the newest minutes are not visible until this many minutes
    /// after they end (CloudWatch's own delay is a few minutes).
    #[serde(default)]
    pub telemetry_delay_minutes: u32,
    /// An operator's emergency stop during the cycle (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<serde_json::Value>,
    /// Metrics published in custom namespaces beside the functions' (registered agents'
    /// own, seed R10.2), answered to [`selfbuild_core::ports::Telemetry::agent_series`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_metrics: Vec<PublishedMetric>,
}

/// A metric published in a custom namespace with one value per minute: `value` until the
/// first change, each change's from the minute containing its `at` on. Read per period as
/// CloudWatch would: `Sum` and `SampleCount` add the minutes up, `Maximum` and `Minimum`
/// take the largest and smallest, any other statistic (`Average`, `pNN`) their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedMetric {
    /// The namespace.
    pub namespace: String,
    /// The metric name.
    pub metric: String,
    /// The dimensions it is published with (a query matches the whole set).
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// The value each minute before the first change.
    pub value: f64,
    /// Later values, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PublishedChange>,
}

/// A published metric's value from one minute on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedChange {
    /// From the minute containing this instant.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The value.
    pub value: f64,
}

impl PublishedMetric {
    /// The value in `minute` (minutes since the epoch).
    pub fn value_in(&self, minute: i64) -> f64 {
        self.changes
            .iter()
            .rev()
            .find(|c| c.at.unix_timestamp().div_euclid(60) <= minute)
            .map_or(self.value, |c| c.value)
    }
}

/// Calls of one Lambda operation that fail: the first `failures` calls after `after_calls`
/// successful ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The operation.
    pub operation: FaultOperation,
    /// Only calls for this function; none: every function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<ComponentId>,
    /// Successful calls before the failures start.
    #[serde(default)]
    pub after_calls: u32,
    /// How many calls fail.
    pub failures: u32,
    /// How they fail.
    #[serde(default)]
    pub error: FaultError,
}

/// A Lambda operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultOperation {
    /// Publishing the canary version and splitting the alias.
    DeployCanary,
    /// Shifting all traffic to the canary.
    Promote,
    /// Restoring the baseline.
    Rollback,
}

/// How a faulty call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultError {
    /// Throttled or a 5xx: worth retrying.
    #[default]
    Unavailable,
    /// Refused for good.
    Rejected,
}

/// One kind of request in a mix: its share of the traffic and its own costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestClass {
    /// Its share of the requests (the shares of a mix add up to 1).
    pub share: f64,
    /// CPU time at 1024 MB, ms.
    pub work_ms_at_1024mb: f64,
    /// Time waiting on other services, ms.
    #[serde(default)]
    pub io_ms: f64,
    /// Peak memory, MB; none: the workload's `memory_used_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mb: Option<f64>,
}

/// One Lambda function of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// The function's name; unique in the scenario.
    pub name: ComponentId,
    /// Its tenant; none for a system-wide function, which tenant-scoped queries never see.
    #[serde(default)]
    pub tenant: Option<TenantId>,
    /// Version 1's configuration, the one the `live` alias points at when the scenario starts.
    #[serde(deserialize_with = "strict_settings")]
    pub settings: LambdaSettings,
    /// How the function behaves under any configuration.
    pub workload: Workload,
    /// Changes of the workload over time (a slower dependency, a traffic spike), in time
    /// order; each overrides the fields it names from the minute containing `at` on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_changes: Vec<WorkloadChange>,
    /// The deployed code, what a code patch is made against; none: the function's code
    /// cannot be read (a code patch to it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<FunctionCode>,
}

/// A function's deployed code: its handler and its files by repository path, and the
/// events it is run on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCode {
    /// The configured handler (`app.handler`, `bootstrap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The runtime (`python3.12`, `nodejs22.x`, `provided.al2023`); none: unknown, and a
    /// patch to the code is held for review rather than shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Each file's text by its path in the package.
    pub files: BTreeMap<String, String>,
    /// The requests the function gets, each a sample event with its weight; when given (a
    /// Python or Node.js runtime), each version's handler really runs on each of them and
    /// its failures are the function's application errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SampleEvent>,
}

/// One kind of request in a function's event mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleEvent {
    /// A short name (`order-found`), unique in the mix.
    pub name: String,
    /// Its relative weight (> 0); the mix's weights need not add up to 1.
    pub weight: f64,
    /// The event the handler is called with.
    pub event: serde_json::Value,
}

impl FunctionCode {
    /// The package's hash, as Lambda's `CodeSha256` would name it: base64 of the SHA-256
    /// of the files in path order (each path and text length-prefixed).
    pub fn code_sha256(&self) -> String {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (path, text) in &self.files {
            for part in [path.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
    }
}

/// A change of a function's workload at one instant; absent fields stay as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadChange {
    /// When it takes effect (from the start of the minute containing it).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// New `invocations_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_per_minute: Option<f64>,
    /// New `work_ms_at_1024mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ms_at_1024mb: Option<f64>,
    /// New `io_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_ms: Option<f64>,
    /// New `duration_jitter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_jitter: Option<f64>,
    /// New `memory_used_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mb: Option<f64>,
    /// New `memory_jitter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_jitter: Option<f64>,
    /// New `base_error_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_error_rate: Option<f64>,
    /// New `error_messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_messages: Option<Vec<String>>,
    /// New `request_mix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mix: Option<Vec<RequestClass>>,
}

impl WorkloadChange {
    /// `workload` with this change applied.
    pub fn apply(&self, workload: &Workload) -> Workload {
        let mut next = workload.clone();
        let set = |field: &mut f64, value: Option<f64>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(
            &mut next.invocations_per_minute,
            self.invocations_per_minute,
        );
        set(&mut next.work_ms_at_1024mb, self.work_ms_at_1024mb);
        set(&mut next.io_ms, self.io_ms);
        set(&mut next.duration_jitter, self.duration_jitter);
        set(&mut next.memory_used_mb, self.memory_used_mb);
        set(&mut next.memory_jitter, self.memory_jitter);
        set(&mut next.base_error_rate, self.base_error_rate);
        if let Some(messages) = &self.error_messages {
            next.error_messages.clone_from(messages);
        }
        if let Some(mix) = &self.request_mix {
            next.request_mix.clone_from(mix);
        }
        next
    }
}

impl FunctionSpec {
    /// The workload in force from each instant on: the base workload (from the beginning of
    /// time, `None`), then one entry per change.
    pub fn workload_timeline(&self) -> Vec<(Option<OffsetDateTime>, Workload)> {
        let mut timeline = vec![(None, self.workload.clone())];
        for change in &self.workload_changes {
            let previous = timeline.last().map_or(&self.workload, |(_, w)| w);
            let next = change.apply(previous);
            timeline.push((Some(change.at), next));
        }
        timeline
    }
}

/// How a function behaves; the model turns this and a version's settings into telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Requests per minute reaching the alias (a Poisson mean).
    pub invocations_per_minute: f64,
    /// CPU time of one invocation at 1024 MB, in ms; it scales with `1024 / memory_mb`.
    pub work_ms_at_1024mb: f64,
    /// Time spent waiting on other services, in ms; independent of memory.
    #[serde(default)]
    pub io_ms: f64,
    /// σ of the log-normal factor on each invocation's duration (0 = every invocation alike).
    #[serde(default)]
    pub duration_jitter: f64,
    /// Peak memory one invocation uses, in MB; more than the configured memory is fatal.
    pub memory_used_mb: f64,
    /// σ of the log-normal factor on each invocation's memory use (0 = always `memory_used_mb`).
    #[serde(default)]
    pub memory_jitter: f64,
    /// Probability that an invocation which neither times out nor runs out of memory fails.
    #[serde(default)]
    pub base_error_rate: f64,
    /// Application error messages; `<id>`-like placeholders get a fresh value on every row.
    #[serde(default)]
    pub error_messages: Vec<String>,
    /// Kinds of requests with different costs; when given, each request is drawn from it
    /// and its costs replace `work_ms_at_1024mb`, `io_ms` and (if set) `memory_used_mb`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_mix: Vec<RequestClass>,
}

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid scenario.
    #[error("{source_name}: {field}: {message}")]
    Invalid {
        /// The file (or other source) it came from.
        source_name: String,
        /// The offending field, e.g. `functions[0].workload.io_ms` (`.` for the document).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A function's code could not be run on its events (no interpreter, no scratch space).
    #[error("{scenario}: {function}: {source}")]
    Run {
        /// The scenario's name.
        scenario: String,
        /// The function.
        function: ComponentId,
        /// Why.
        #[source]
        source: super::runner::RunError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    memory_mb: u32,
    timeout_seconds: u32,
    #[serde(default)]
    reserved_concurrency: Option<u32>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

fn strict_settings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LambdaSettings, D::Error> {
    let s = SettingsFile::deserialize(deserializer)?;
    Ok(LambdaSettings {
        memory_mb: s.memory_mb,
        timeout_seconds: s.timeout_seconds,
        reserved_concurrency: s.reserved_concurrency,
        environment: s.environment,
    })
}

impl Scenario {
    /// Parses and checks a scenario; `source_name` (usually the file name) prefixes errors,
    /// which name the offending field.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ScenarioError> {
        // A repeated key is refused, naming it: serde would read a struct's first and keep a
        // map's (`config`, `environment`, the opaque sections) last, without a word.
        if let Ok(Err(repeated)) =
            serde_json::from_str::<EventJson>(text).map(EventJson::into_value)
        {
            let (field, message) = repeated.0.split_once(": ").unwrap_or((".", &repeated.0));
            return Err(ScenarioError::Invalid {
                source_name: source_name.to_owned(),
                field: field.to_owned(),
                message: message.to_owned(),
            });
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let scenario: Self =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ScenarioError::Invalid {
                source_name: source_name.to_owned(),
                field: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        de.end().map_err(|e| ScenarioError::Invalid {
            source_name: source_name.to_owned(),
            field: ".".to_owned(),
            message: e.to_string(),
        })?;
        scenario.validate(source_name)?;
        Ok(scenario)
    }

    /// Reads and parses the scenario file at `path` (or the bundled one of that path).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        // A relative path not on disk may name a scenario bundled in the binary.
        let file = crate::bundled::read(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&file.text, &file.name)
    }

    /// Checks what the types cannot: ranges, unique names, messages for a non-zero error rate.
    pub fn validate(&self, source_name: &str) -> Result<(), ScenarioError> {
        let fail = |field: String, message: String| ScenarioError::Invalid {
            source_name: source_name.to_owned(),
            field,
            message,
        };
        if self.name.trim().is_empty() {
            return Err(fail("name".into(), "must not be empty".into()));
        }
        if self.functions.is_empty() {
            return Err(fail(
                "functions".into(),
                "must list at least one function".into(),
            ));
        }
        for (i, m) in self.published_metrics.iter().enumerate() {
            let at_field = |field: &str| format!("published_metrics[{i}].{field}");
            if m.namespace.trim().is_empty() {
                return Err(fail(at_field("namespace"), "must not be empty".into()));
            }
            if m.metric.trim().is_empty() {
                return Err(fail(at_field("metric"), "must not be empty".into()));
            }
            for (j, v) in std::iter::once(m.value)
                .chain(m.changes.iter().map(|c| c.value))
                .enumerate()
            {
                if !v.is_finite() {
                    let field = if j == 0 {
                        at_field("value")
                    } else {
                        at_field(&format!("changes[{}].value", j - 1))
                    };
                    return Err(fail(field, format!("{v} is not a number")));
                }
            }
            if m.changes.windows(2).any(|w| w[1].at < w[0].at) {
                return Err(fail(at_field("changes"), "must be in time order".into()));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, f) in self.functions.iter().enumerate() {
            let at_field = |field: &str| format!("functions[{i}].{field}");
            if !seen.insert(f.name.as_str()) {
                return Err(fail(
                    at_field("name"),
                    format!("{} is listed twice", f.name),
                ));
            }
            let s = &f.settings;
            if !(128..=10_240).contains(&s.memory_mb) {
                return Err(fail(
                    at_field("settings.memory_mb"),
                    format!("must be 128-10240, got {}", s.memory_mb),
                ));
            }
            if !(1..=900).contains(&s.timeout_seconds) {
                return Err(fail(
                    at_field("settings.timeout_seconds"),
                    format!("must be 1-900, got {}", s.timeout_seconds),
                ));
            }
            if let Some(code) = &f.code {
                check_code(code, &at_field("code"))
                    .map_err(|(field, message)| fail(field, message))?;
            }
            let runs_code = f.code.as_ref().is_some_and(|c| !c.events.is_empty());
            for (j, (at, workload)) in f.workload_timeline().iter().enumerate() {
                let prefix = match j {
                    0 => at_field("workload"),
                    _ => at_field(&format!("workload_changes[{}]", j - 1)),
                };
                check_workload(workload, &prefix)
                    .map_err(|(field, message)| fail(field, message))?;
                if runs_code && workload.base_error_rate > 0.0 {
                    return Err(fail(
                        format!("{prefix}.base_error_rate"),
                        "must be 0 when code.events is given: the errors are those of the code"
                            .into(),
                    ));
                }
                if let (Some(at), Some(change)) =
                    (at, j.checked_sub(2).and_then(|k| f.workload_changes.get(k)))
                    && *at <= change.at
                {
                    return Err(fail(
                        format!("{prefix}.at"),
                        "changes must be in time order".into(),
                    ));
                }
            }
        }
        for (name, value) in &self.config {
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(fail(
                    format!("config.{name}"),
                    "must be an environment variable name (A-Z, 0-9, _)".into(),
                ));
            }
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                return Err(fail(
                    format!("config.{name}"),
                    "must be a string, a number or a boolean".into(),
                ));
            }
        }
        for (i, fault) in self.faults.iter().enumerate() {
            if fault.failures == 0 {
                return Err(fail(
                    format!("faults[{i}].failures"),
                    "must be at least 1".into(),
                ));
            }
            if let Some(f) = &fault.function
                && self.function(f).is_none()
            {
                return Err(fail(
                    format!("faults[{i}].function"),
                    format!("{f} is not one of the scenario's functions"),
                ));
            }
        }
        Ok(())
    }

    /// The `config` section as environment values.
    pub fn config_values(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect()
    }

    /// The function with this name.
    pub fn function(&self, name: &ComponentId) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| &f.name == name)
    }
}

/// Checks a function's code: paths inside the package; an event mix only with a handler and
/// a runtime the fleet runs, its names unique, its weights positive.
fn check_code(code: &FunctionCode, prefix: &str) -> Result<(), (String, String)> {
    for path in code.files.keys() {
        check_package_path(path).map_err(|e| (format!("{prefix}.files"), e.to_string()))?;
    }
    if code.events.is_empty() {
        return Ok(());
    }
    match code.runtime.as_deref() {
        None => {
            return Err((
                format!("{prefix}.runtime"),
                "is needed to run the code on its events".into(),
            ));
        }
        Some(runtime) if Interpreter::of_runtime(runtime).is_none() => {
            return Err((
                format!("{prefix}.events"),
                format!(
                    "runtime {runtime} cannot be run locally (only python3.x and nodejs*.x): \
                     leave out the events and model its errors in the workload"
                ),
            ));
        }
        Some(_) => {}
    }
    if code.handler.as_deref().is_none_or(|h| h.trim().is_empty()) {
        return Err((
            format!("{prefix}.handler"),
            "is needed to run the code on its events".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (j, event) in code.events.iter().enumerate() {
        let field = |name: &str| format!("{prefix}.events[{j}].{name}");
        if event.name.trim().is_empty() {
            return Err((field("name"), "must not be empty".into()));
        }
        if !names.insert(event.name.as_str()) {
            return Err((field("name"), format!("{} is listed twice", event.name)));
        }
        if !(event.weight.is_finite() && event.weight > 0.0) {
            return Err((
                field("weight"),
                format!("must be above 0, got {}", event.weight),
            ));
        }
    }
    Ok(())
}

/// Checks one workload; an error names the field under `prefix`.
fn check_workload(w: &Workload, prefix: &str) -> Result<(), (String, String)> {
    let ranges: [(&str, f64, f64, f64); 7] = [
        (
            "invocations_per_minute",
            w.invocations_per_minute,
            0.0,
            1_000_000.0,
        ),
        ("work_ms_at_1024mb", w.work_ms_at_1024mb, 0.0, 10_000_000.0),
        ("io_ms", w.io_ms, 0.0, 1_000_000.0),
        ("duration_jitter", w.duration_jitter, 0.0, 3.0),
        ("memory_used_mb", w.memory_used_mb, 1.0, 10_240.0),
        ("memory_jitter", w.memory_jitter, 0.0, 1.0),
        ("base_error_rate", w.base_error_rate, 0.0, 1.0),
    ];
    for (name, value, low, high) in ranges {
        if !value.is_finite() || value < low || value > high {
            return Err((
                format!("{prefix}.{name}"),
                format!("must be {low}-{high}, got {value}"),
            ));
        }
    }
    if w.work_ms_at_1024mb + w.io_ms <= 0.0 {
        return Err((
            format!("{prefix}.work_ms_at_1024mb"),
            "work_ms_at_1024mb + io_ms must be positive".into(),
        ));
    }
    if w.base_error_rate > 0.0 && w.error_messages.is_empty() {
        return Err((
            format!("{prefix}.error_messages"),
            "must not be empty when base_error_rate is above 0".into(),
        ));
    }
    if let Some(j) = w.error_messages.iter().position(|m| m.trim().is_empty()) {
        return Err((
            format!("{prefix}.error_messages[{j}]"),
            "must not be empty".into(),
        ));
    }
    for (j, class) in w.request_mix.iter().enumerate() {
        let field = |name: &str| format!("{prefix}.request_mix[{j}].{name}");
        let ranges = [
            ("share", class.share, 0.0, 1.0),
            (
                "work_ms_at_1024mb",
                class.work_ms_at_1024mb,
                0.0,
                10_000_000.0,
            ),
            ("io_ms", class.io_ms, 0.0, 1_000_000.0),
            (
                "memory_used_mb",
                class.memory_used_mb.unwrap_or(1.0),
                1.0,
                10_240.0,
            ),
        ];
        for (name, value, low, high) in ranges {
            if !value.is_finite() || value < low || value > high {
                return Err((field(name), format!("must be {low}-{high}, got {value}")));
            }
        }
        if class.work_ms_at_1024mb + class.io_ms <= 0.0 {
            return Err((
                field("work_ms_at_1024mb"),
                "work_ms_at_1024mb + io_ms must be positive".into(),
            ));
        }
    }
    let shares: f64 = w.request_mix.iter().map(|c| c.share).sum();
    if !w.request_mix.is_empty() && (shares - 1.0).abs() > 1e-6 {
        return Err((
            format!("{prefix}.request_mix"),
            format!("shares must add up to 1, got {shares}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{
        "name": "minimal", "now": "2026-11-22T05:00:00Z",
        "functions": [{"name": "f", "settings": {"memory_mb": 128, "timeout_seconds": 3},
                       "workload": {"invocations_per_minute": 10, "work_ms_at_1024mb": 50,
                                    "memory_used_mb": 60}}],
        "expect": {}
    }"#;

    fn invalid(text: &str) -> (String, String) {
        match Scenario::parse(text, "bad.json") {
            Err(ScenarioError::Invalid {
                source_name,
                field,
                message,
            }) => {
                assert_eq!(source_name, "bad.json");
                (field, message)
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_scenario_takes_defaults() {
        let s = Scenario::parse(MINIMAL, "minimal.json").unwrap();
        let f = &s.functions[0];
        assert_eq!(f.tenant, None);
        assert_eq!(f.settings.reserved_concurrency, None);
        assert!(f.settings.environment.is_empty());
        assert_eq!(f.workload.io_ms, 0.0);
        assert_eq!(s.seed, 0);
        assert!(s.llm.is_none() && s.approval.is_none());
    }

    #[test]
    fn approve_is_accepted_for_approval() {
        let text = MINIMAL.replace(r#""expect": {}"#, r#""expect": {}, "approve": {"x": 1}"#);
        let s = Scenario::parse(&text, "a.json").unwrap();
        assert_eq!(s.approval, Some(serde_json::json!({"x": 1})));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let (field, message) = invalid(&MINIMAL.replace(
            r#""memory_used_mb": 60"#,
            r#""memory_used_mb": 60, "cpu_ms": 3"#,
        ));
        assert_eq!(field, "functions[0].workload.cpu_ms");
        assert!(message.contains("unknown field"), "{message}");

        let (field, _) = invalid(&MINIMAL.replace(
            r#""timeout_seconds": 3"#,
            r#""timeout_seconds": 3, "memory": 1"#,
        ));
        assert_eq!(field, "functions[0].settings.memory");

        let (field, _) =
            invalid(&MINIMAL.replace(r#""expect": {}"#, r#""expect": {}, "extra": 1"#));
        assert_eq!(field, "extra");
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let (field, message) = invalid(&MINIMAL.replace(
            r#""invocations_per_minute": 10"#,
            r#""invocations_per_minute": "ten""#,
        ));
        assert_eq!(field, "functions[0].workload.invocations_per_minute");
        assert!(message.contains("invalid type"), "{message}");

        let (field, message) = invalid(&MINIMAL.replace(r#""expect": {}"#, r#""seed": 1"#));
        assert!(message.contains("expect"), "{field}: {message}");

        let (field, _) =
            invalid(&MINIMAL.replace(r#""now": "2026-11-22T05:00:00Z""#, r#""now": "today""#));
        assert_eq!(field, "now");

        let (field, _) = invalid(&MINIMAL.replace(r#""name": "f""#, r#""name": " f""#));
        assert_eq!(field, "functions[0].name");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let (field, message) =
            invalid(&MINIMAL.replace(r#""memory_mb": 128"#, r#""memory_mb": 64"#));
        assert_eq!(field, "functions[0].settings.memory_mb");
        assert!(message.contains("64"), "{message}");

        let (field, _) = invalid(&MINIMAL.replace(
            r#""memory_used_mb": 60"#,
            r#""memory_used_mb": 60, "base_error_rate": 0.1"#,
        ));
        assert_eq!(field, "functions[0].workload.error_messages");

        let (field, _) = invalid(&MINIMAL.replace(
            r#""memory_used_mb": 60"#,
            r#""memory_used_mb": 60, "duration_jitter": -1"#,
        ));
        assert_eq!(field, "functions[0].workload.duration_jitter");
    }

    #[test]
    fn workload_changes_apply_in_order_and_are_checked() {
        let with = |changes: &str| {
            MINIMAL.replace(
                r#""memory_used_mb": 60}"#,
                &format!(r#""memory_used_mb": 60}}, "workload_changes": {changes}"#),
            )
        };
        let s = Scenario::parse(
            &with(
                r#"[{"at": "2026-11-22T01:00:00Z", "io_ms": 900},
                    {"at": "2026-11-22T02:00:00Z", "invocations_per_minute": 5}]"#,
            ),
            "c.json",
        )
        .unwrap();
        let timeline = s.functions[0].workload_timeline();
        assert_eq!(timeline.len(), 3);
        assert_eq!(timeline[0].0, None);
        assert_eq!(
            (timeline[1].1.io_ms, timeline[1].1.invocations_per_minute),
            (900.0, 10.0)
        );
        assert_eq!(
            (timeline[2].1.io_ms, timeline[2].1.invocations_per_minute),
            (900.0, 5.0)
        );

        let (field, _) = invalid(&with(r#"[{"at": "2026-11-22T01:00:00Z", "io": 1}]"#));
        assert_eq!(field, "functions[0].workload_changes[0].io");
        let (field, _) = invalid(&with(r#"[{"at": "2026-11-22T01:00:00Z", "io_ms": -1}]"#));
        assert_eq!(field, "functions[0].workload_changes[0].io_ms");
        let (field, _) = invalid(&with(
            r#"[{"at": "2026-11-22T02:00:00Z", "io_ms": 1}, {"at": "2026-11-22T01:00:00Z", "io_ms": 2}]"#,
        ));
        assert_eq!(field, "functions[0].workload_changes[1].at");
    }

    #[test]
    fn duplicate_functions_and_trailing_text_are_refused() {
        let text = MINIMAL.replace("\"functions\": [{", "\"functions\": [{\"name\": \"f\", \"settings\": {\"memory_mb\": 128, \"timeout_seconds\": 3}, \"workload\": {\"invocations_per_minute\": 1, \"work_ms_at_1024mb\": 1, \"memory_used_mb\": 1}}, {");
        let (field, _) = invalid(&text);
        assert_eq!(field, "functions[1].name");
        let (field, _) = invalid(&format!("{MINIMAL} {{}}"));
        assert_eq!(field, ".");
    }

    #[test]
    fn an_event_mix_is_read_and_checked_naming_the_field() {
        let with = |code: &str| {
            MINIMAL.replace(
                r#""memory_used_mb": 60}}]"#,
                &format!(r#""memory_used_mb": 60}}, "code": {code}}}]"#),
            )
        };
        let good = r#"{"handler": "orders.handler", "runtime": "python3.12",
            "files": {"orders.py": "def handler(e, c):\n    return 1\n"},
            "events": [{"name": "found", "weight": 9, "event": {"id": 1}},
                       {"name": "missing", "weight": 1, "event": {}}]}"#;
        let s = Scenario::parse(&with(good), "code.json").unwrap();
        let code = s.functions[0].code.as_ref().unwrap();
        assert_eq!(code.events.len(), 2);
        assert_eq!(code.events[0].event, serde_json::json!({"id": 1}));

        let (field, message) = invalid(&with(&good.replace(r#""weight": 1,"#, r#""weight": 0,"#)));
        assert_eq!(field, "functions[0].code.events[1].weight");
        assert!(message.contains("above 0"), "{message}");
        let (field, _) = invalid(&with(
            &good.replace(r#""name": "missing""#, r#""name": "found""#),
        ));
        assert_eq!(field, "functions[0].code.events[1].name");
        let (field, message) = invalid(&with(
            &good.replace(r#""weight": 9,"#, r#""weight": 9, "share": 1,"#),
        ));
        assert_eq!(field, "functions[0].code.events[0].share");
        assert!(message.contains("unknown field"), "{message}");
        let (field, message) = invalid(&with(&good.replace("python3.12", "provided.al2023")));
        assert_eq!(field, "functions[0].code.events");
        assert!(
            message.contains("provided.al2023 cannot be run locally"),
            "{message}"
        );
        let (field, _) = invalid(&with(&good.replace(r#""handler": "orders.handler", "#, "")));
        assert_eq!(field, "functions[0].code.handler");
        let (field, message) = invalid(&with(&good.replace(r#""orders.py""#, r#""../orders.py""#)));
        assert_eq!(field, "functions[0].code.files");
        assert!(message.contains("../orders.py"), "{message}");
        let (field, _) = invalid(&with(good).replace(
            r#""memory_used_mb": 60}"#,
            r#""memory_used_mb": 60, "base_error_rate": 0.1, "error_messages": ["E"]}"#,
        ));
        assert_eq!(field, "functions[0].workload.base_error_rate");
        // Without events, a compiled runtime is fine: its code is only read, never run.
        let compiled = r#"{"handler": "bootstrap", "runtime": "provided.al2023", "files": {"src/main.rs": "fn main() {}\n"}}"#;
        assert!(Scenario::parse(&with(compiled), "rust.json").is_ok());
    }

    #[test]
    fn config_faults_and_request_mixes_are_checked_naming_the_field() {
        let with = |extra: &str| {
            MINIMAL.replace(r#""expect": {}"#, &format!(r#"{extra}, "expect": {{}}"#))
        };
        let (field, message) = invalid(&with(r#""config": {"canary_weight": 0.2}"#));
        assert_eq!(field, "config.canary_weight");
        assert!(message.contains("A-Z"), "{message}");
        let (field, _) = invalid(&with(r#""config": {"CANARY_WEIGHT": [0.2]}"#));
        assert_eq!(field, "config.CANARY_WEIGHT");
        let (field, message) = invalid(&with(
            r#""faults": [{"operation": "rollback", "function": "g", "failures": 1}]"#,
        ));
        assert_eq!(field, "faults[0].function");
        assert!(message.contains("g is not"), "{message}");
        let (field, _) = invalid(&with(
            r#""faults": [{"operation": "rollback", "failures": 0}]"#,
        ));
        assert_eq!(field, "faults[0].failures");
        let (field, _) = invalid(&with(
            r#""faults": [{"operation": "reboot", "failures": 1}]"#,
        ));
        assert_eq!(field, "faults[0].operation");
        let mix = MINIMAL.replace(
            r#""memory_used_mb": 60}"#,
            r#""memory_used_mb": 60, "request_mix": [{"share": 0.5, "work_ms_at_1024mb": 10}, {"share": 0.4, "work_ms_at_1024mb": 90}]}"#,
        );
        let (field, message) = invalid(&mix);
        assert_eq!(field, "functions[0].workload.request_mix");
        assert!(message.contains("add up to 1"), "{message}");
        let fine = with(
            r#""config": {"CANARY_WEIGHT": 0.2, "ENABLE_AUTONOMOUS_IMPROVEMENTS": false}, "telemetry_delay_minutes": 3, "faults": [{"operation": "promote", "failures": 2}]"#,
        );
        let s = Scenario::parse(&fine, "ok.json").unwrap();
        assert_eq!(s.config_values()["CANARY_WEIGHT"], "0.2");
        assert_eq!(s.config_values()["ENABLE_AUTONOMOUS_IMPROVEMENTS"], "false");
        assert_eq!(s.telemetry_delay_minutes, 3);
        assert_eq!(s.faults[0].error, FaultError::Unavailable);
    }
}
