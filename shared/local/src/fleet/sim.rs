//! The model of one minute of one version: how many requests it gets, how long they run,
//! how they fail, and the log rows the failures write. Pure functions of their inputs.

use std::f64::consts::TAU;

use selfbuild_core::change::LambdaSettings;
use selfbuild_core::telemetry::MetricName;
use time::{Duration, OffsetDateTime};

use super::runner::{CodeFailure, Interpreter, RunOutcome};
use super::scenario::{RequestClass, Workload};

/// Invocations simulated one by one per minute and version; counts are scaled up from them.
pub(super) const MAX_SAMPLES: u64 = 1000;

/// The account's unreserved concurrency, the limit of a function without a reservation.
pub(super) const ACCOUNT_CONCURRENCY: f64 = 1000.0;

/// splitmix64: small, fast and good enough for a simulation; no `rand` needed.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose stream depends on every part, in order.
    pub(super) fn seeded(parts: &[u64]) -> Self {
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        for &part in parts {
            state = mix(state.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix(part));
        }
        Self(state)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub(super) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }

    /// Poisson with mean `lambda` (Knuth below 30, a rounded normal above).
    pub(super) fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 || !lambda.is_finite() {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0;
            let mut p = self.uniform();
            while p > limit {
                k += 1;
                p *= self.uniform();
            }
            return k;
        }
        (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
    }

    /// Uniform in `0..n` (n > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// FNV-1a, to seed from a function's name.
pub(super) fn hash_str(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How one invocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Ran past the timeout.
    Timeout,
    /// Used more memory than configured.
    OutOfMemory,
    /// The code failed with `error_messages[message]`.
    Application {
        /// Index into the workload's error messages.
        message: usize,
    },
    /// The version's code, really run, failed on this event of its mix.
    Code {
        /// Index into the version's [`CodeBehaviour`] events.
        event: usize,
    },
}

/// How a version's code handles each event of its function's mix, as really run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CodeBehaviour {
    /// The runtime's language, which decides how its failures are logged.
    pub interpreter: Interpreter,
    /// The events in the mix's order.
    pub events: Vec<EventBehaviour>,
}

/// One event of a mix and how the code ended on it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventBehaviour {
    /// The event's name.
    pub name: String,
    /// Its share of the requests (the shares add up to 1).
    pub share: f64,
    /// How the handler ended on it.
    pub outcome: RunOutcome,
}

impl CodeBehaviour {
    /// The behaviour of `events`, (name, weight, outcome); weights become shares.
    pub(super) fn new(interpreter: Interpreter, events: Vec<(String, f64, RunOutcome)>) -> Self {
        let total: f64 = events.iter().map(|(_, w, _)| *w).sum();
        Self {
            interpreter,
            events: events
                .into_iter()
                .map(|(name, weight, outcome)| EventBehaviour {
                    name,
                    share: weight / total,
                    outcome,
                })
                .collect(),
        }
    }

    /// The event a uniform draw in `[0, 1)` picks, by share.
    fn pick(&self, draw: f64) -> usize {
        let mut left = draw;
        for (i, event) in self.events.iter().enumerate() {
            if left < event.share {
                return i;
            }
            left -= event.share;
        }
        self.events.len().saturating_sub(1)
    }
}

/// One simulated invocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Invocation {
    /// Billed duration in ms (the timeout when it timed out).
    pub duration_ms: f64,
    /// How it failed, if it did.
    pub failure: Option<Failure>,
    /// Peak memory used, MB (at most the configured memory).
    pub memory_used_mb: f64,
}

/// What identifies a minute of a version, and so seeds its random numbers.
#[derive(Debug, Clone, Copy)]
pub(super) struct MinuteKey {
    /// The scenario's seed.
    pub seed: u64,
    /// `hash_str` of the function's name.
    pub function: u64,
    /// Minutes since the Unix epoch.
    pub minute: i64,
    /// The version.
    pub version: u32,
}

impl MinuteKey {
    fn rng(&self, stream: u64) -> Rng {
        Rng::seeded(&[
            self.seed,
            self.function,
            self.minute as u64,
            u64::from(self.version),
            stream,
        ])
    }
}

/// One minute of one version.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct VersionMinute {
    /// Requests routed to the version (invocations + throttles).
    pub requests: u64,
    /// Requests that ran.
    pub invocations: u64,
    /// Requests refused for lack of concurrency.
    pub throttles: u64,
    /// Invocations that failed (timeouts, out of memory, application errors).
    pub errors: u64,
    /// Sum of the durations of all invocations, ms.
    pub duration_sum_ms: f64,
    /// Mean concurrency while running (capped at the version's share of its limit).
    pub concurrency: f64,
    /// Peak memory used as a percentage of the configured memory; none without invocations.
    pub memory_utilization: Option<f64>,
    /// The simulated invocations.
    pub samples: Vec<Invocation>,
    /// Invocations each sample stands for.
    pub sample_weight: f64,
}

/// Simulates minute `key.minute` of a version with `settings` that gets `share` of the
/// function's traffic; with `code`, its application errors are those of its real code.
///
/// - requests n ~ Poisson(invocations_per_minute × share);
/// - each of min(n, 1000) sampled invocations runs
///   `(io_ms + work_ms_at_1024mb × 1024 / memory_mb) × exp(duration_jitter × z)` ms, z ~ N(0, 1),
///   and uses `memory_used_mb × exp(memory_jitter × z')` MB (with a `request_mix`, the costs
///   of a kind drawn by share);
/// - memory above `memory_mb` kills it (out of memory), else a duration above the timeout
///   ends it at the timeout, else it fails with probability `base_error_rate`, or, when
///   the version's code was run on an event mix, its event is drawn by weight and it fails
///   (or times out) as the code did on that event;
/// - concurrency c = n × mean duration / 60 000; the version may use `share` of its
///   reservation (or of the account's 1000), so it sees the throttling it would see with all
///   the traffic: the excess fraction `(c − limit) / c` of the requests is throttled;
/// - counts scale from the samples to the invocations that ran.
pub(super) fn simulate_minute(
    key: MinuteKey,
    share: f64,
    settings: &LambdaSettings,
    workload: &Workload,
    code: Option<&CodeBehaviour>,
) -> VersionMinute {
    let mut rng = key.rng(0);
    let requests = rng.poisson(workload.invocations_per_minute * share);
    if requests == 0 {
        return VersionMinute::default();
    }
    let memory = f64::from(settings.memory_mb.max(1));
    let timeout_ms = f64::from(settings.timeout_seconds) * 1000.0;
    let base_ms = workload.io_ms + workload.work_ms_at_1024mb * 1024.0 / memory;
    let k = requests.min(MAX_SAMPLES);
    let mut samples = Vec::with_capacity(k as usize);
    let mut peak_memory: f64 = 0.0;
    for _ in 0..k {
        // A mix draws each request's kind first; without one the draws are as they were.
        let (base_ms, memory_used_mb) = match pick_class(&mut rng, &workload.request_mix) {
            Some(class) => (
                class.io_ms + class.work_ms_at_1024mb * 1024.0 / memory,
                class.memory_used_mb.unwrap_or(workload.memory_used_mb),
            ),
            None => (base_ms, workload.memory_used_mb),
        };
        let duration = base_ms * (workload.duration_jitter * rng.normal()).exp();
        let used = if workload.memory_jitter > 0.0 {
            memory_used_mb * (workload.memory_jitter * rng.normal()).exp()
        } else {
            memory_used_mb
        };
        let error_draw = rng.uniform();
        let (duration_ms, failure) = if used > memory {
            (duration.min(timeout_ms), Some(Failure::OutOfMemory))
        } else if duration > timeout_ms {
            (timeout_ms, Some(Failure::Timeout))
        } else if let Some(code) = code {
            // The same draw picks the event, so runs without code draw as they always did.
            let event = code.pick(error_draw);
            match code.events.get(event).map(|e| &e.outcome) {
                Some(RunOutcome::Failed(_)) => (duration, Some(Failure::Code { event })),
                Some(RunOutcome::TimedOut { .. }) => (timeout_ms, Some(Failure::Timeout)),
                Some(RunOutcome::Succeeded) | None => (duration, None),
            }
        } else if error_draw < workload.base_error_rate {
            let count = workload.error_messages.len().max(1) as u64;
            let message = rng.below(count) as usize;
            (duration, Some(Failure::Application { message }))
        } else {
            (duration, None)
        };
        peak_memory = peak_memory.max(used.min(memory));
        samples.push(Invocation {
            duration_ms,
            failure,
            memory_used_mb: used.min(memory),
        });
    }
    let sampled_sum: f64 = samples.iter().map(|s| s.duration_ms).sum();
    let mean_ms = sampled_sum / k as f64;
    let wanted = requests as f64 * mean_ms / 60_000.0;
    let reservation = settings
        .reserved_concurrency
        .map_or(ACCOUNT_CONCURRENCY, f64::from);
    let limit = reservation * share;
    let throttled_fraction = if wanted > limit && wanted > 0.0 {
        (wanted - limit) / wanted
    } else {
        0.0
    };
    let throttles = ((requests as f64 * throttled_fraction).round() as u64).min(requests);
    let invocations = requests - throttles;
    let sample_weight = invocations as f64 / k as f64;
    let failed = samples.iter().filter(|s| s.failure.is_some()).count() as f64;
    VersionMinute {
        requests,
        invocations,
        throttles,
        errors: ((failed * sample_weight).round() as u64).min(invocations),
        duration_sum_ms: sampled_sum * sample_weight,
        concurrency: (invocations as f64 * mean_ms / 60_000.0).min(limit),
        memory_utilization: (invocations > 0).then(|| (peak_memory / memory * 100.0).min(100.0)),
        samples,
        sample_weight,
    }
}

/// One request's kind, drawn by share; none without a mix.
fn pick_class<'w>(rng: &mut Rng, mix: &'w [RequestClass]) -> Option<&'w RequestClass> {
    let last = mix.last()?;
    let mut draw = rng.uniform();
    for class in mix {
        if draw < class.share {
            return Some(class);
        }
        draw -= class.share;
    }
    Some(last)
}

/// Totals over the minutes of one period.
#[derive(Debug, Clone, Default)]
pub(super) struct PeriodTotals {
    requests: u64,
    invocations: f64,
    errors: f64,
    throttles: f64,
    duration_sum_ms: f64,
    peak_concurrency: Option<f64>,
    peak_memory: Option<f64>,
    /// Every sampled invocation.
    durations: Vec<Sampled>,
}

/// One sampled invocation as the period pools it.
#[derive(Debug, Clone, Copy)]
struct Sampled {
    duration_ms: f64,
    /// Invocations it stands for.
    weight: f64,
    succeeded: bool,
}

impl PeriodTotals {
    /// Adds one minute: the versions that served it, already simulated.
    pub(super) fn add_minute(&mut self, versions: &[VersionMinute]) {
        let mut concurrency = 0.0;
        let mut any = false;
        for v in versions.iter().filter(|v| v.requests > 0) {
            any = true;
            self.requests += v.requests;
            self.invocations += v.invocations as f64;
            self.errors += v.errors as f64;
            self.throttles += v.throttles as f64;
            self.duration_sum_ms += v.duration_sum_ms;
            concurrency += v.concurrency;
            if let Some(m) = v.memory_utilization {
                self.peak_memory = Some(self.peak_memory.map_or(m, |p| p.max(m)));
            }
            if v.sample_weight > 0.0 {
                self.durations.extend(v.samples.iter().map(|s| Sampled {
                    duration_ms: s.duration_ms,
                    weight: v.sample_weight,
                    succeeded: s.failure.is_none(),
                }));
            }
        }
        if any {
            self.peak_concurrency = Some(
                self.peak_concurrency
                    .map_or(concurrency, |p: f64| p.max(concurrency)),
            );
        }
    }

    /// The statistic `metric` over the period; none when the period had no data for it
    /// (no requests at all, or no invocation for the duration and memory statistics).
    ///
    /// Sums for the counts, the invocation-weighted mean for `DurationAvg`, the exact
    /// weighted 99th percentile of the sampled durations for `DurationP99`, the peak minute
    /// for `ConcurrentExecutions` and `MemoryUtilization`.
    pub(super) fn value(&mut self, metric: MetricName) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        match metric {
            MetricName::Invocations => Some(self.invocations),
            MetricName::Errors => Some(self.errors),
            MetricName::Throttles => Some(self.throttles),
            MetricName::DurationAvg => {
                (self.invocations > 0.0).then(|| self.duration_sum_ms / self.invocations)
            }
            MetricName::DurationP99 => self.percentile(0.99),
            MetricName::ConcurrentExecutions => self.peak_concurrency,
            MetricName::MemoryUtilization => self.peak_memory,
        }
    }

    /// Invocations, errors and throttles so far.
    pub(super) fn counts(&self) -> (f64, f64, f64) {
        (self.invocations, self.errors, self.throttles)
    }

    /// Invocations (as the samples stand for them) that ran longer than `threshold_ms`.
    pub(super) fn slower_than(&self, threshold_ms: f64) -> f64 {
        self.durations
            .iter()
            .filter(|d| d.duration_ms > threshold_ms)
            .map(|d| d.weight)
            .sum()
    }

    /// The exact weighted `q` quantile (0–1) of the sampled durations.
    pub(super) fn percentile(&mut self, q: f64) -> Option<f64> {
        self.quantile_where(q, |_| true)
    }

    /// The exact weighted `q` quantile (0–1) of the successful samples' durations.
    pub(super) fn success_percentile(&mut self, q: f64) -> Option<f64> {
        self.quantile_where(q, |d| d.succeeded)
    }

    fn quantile_where(&mut self, q: f64, keep: fn(&Sampled) -> bool) -> Option<f64> {
        let total: f64 = self
            .durations
            .iter()
            .filter(|d| keep(d))
            .map(|d| d.weight)
            .sum();
        if total <= 0.0 {
            return None;
        }
        self.durations
            .sort_unstable_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms));
        let target = q * total;
        let mut seen = 0.0;
        let mut last = None;
        for d in self.durations.iter().filter(|d| keep(d)) {
            seen += d.weight;
            last = Some(d.duration_ms);
            if seen >= target {
                break;
            }
        }
        last
    }
}

/// What the log rows of one function need to know.
pub(super) struct LogContext<'a> {
    /// The version's settings.
    pub settings: &'a LambdaSettings,
    /// The function's workload.
    pub workload: &'a Workload,
    /// How the version's code, really run, handles its events.
    pub code: Option<&'a CodeBehaviour>,
}

/// The error log rows of one simulated minute: `minute.errors` rows, their kinds drawn in
/// turn from the failed samples, at deterministic instants inside the minute.
pub(super) fn error_rows(
    key: MinuteKey,
    minute: &VersionMinute,
    context: &LogContext<'_>,
) -> Vec<(OffsetDateTime, String)> {
    let failures: Vec<&Invocation> = minute
        .samples
        .iter()
        .filter(|s| s.failure.is_some())
        .collect();
    if failures.is_empty() || minute.errors == 0 {
        return Vec::new();
    }
    let start = OffsetDateTime::UNIX_EPOCH + Duration::minutes(key.minute);
    (0..minute.errors)
        .filter_map(|j| {
            let sample = failures.get((j % failures.len() as u64) as usize)?;
            let failure = sample.failure?;
            let mut rng = key.rng(1 + j);
            let at = start + Duration::milliseconds(rng.below(60_000) as i64);
            let text = message(&mut rng, at, failure, sample.duration_ms, context);
            Some((at, text))
        })
        .collect()
}

fn message(
    rng: &mut Rng,
    at: OffsetDateTime,
    failure: Failure,
    duration_ms: f64,
    context: &LogContext<'_>,
) -> String {
    let request = request_id(rng);
    let stamp = log_stamp(at);
    match failure {
        Failure::Timeout => format!(
            "{stamp} {request} Task timed out after {}.00 seconds",
            context.settings.timeout_seconds
        ),
        Failure::OutOfMemory => {
            let memory = context.settings.memory_mb;
            format!(
                "RequestId: {request} Error: Runtime exited with error: signal: killed Runtime.ExitError\n\
                 REPORT RequestId: {request}\tDuration: {duration_ms:.2} ms\tBilled Duration: {} ms\t\
                 Memory Size: {memory} MB\tMax Memory Used: {memory} MB",
                duration_ms.ceil() as u64
            )
        }
        Failure::Application { message } => {
            let template = context
                .workload
                .error_messages
                .get(message)
                .map_or("Error: internal error", String::as_str);
            let mut text = format!(
                "{stamp}\t{request}\tERROR\t{}",
                fill_placeholders(rng, template)
            );
            if rng.uniform() < 0.5 {
                text.push_str(&stack_trace(template));
            }
            text
        }
        Failure::Code { event } => {
            match (context.code, context.code.and_then(|c| c.events.get(event))) {
                (
                    Some(code),
                    Some(EventBehaviour {
                        outcome: RunOutcome::Failed(failure),
                        ..
                    }),
                ) => code_failure_row(code.interpreter, &stamp, &request, failure),
                _ => format!("{stamp}\t{request}\tERROR\tError: internal error"),
            }
        }
    }
}

/// The log row a runtime writes for an uncaught error: Python's `[ERROR]` layout with the
/// exception line and the traceback's frames; Node.js' `Invoke Error` with its JSON error
/// (`errorType`, `errorMessage`, `stack`).
fn code_failure_row(
    interpreter: Interpreter,
    stamp: &str,
    request: &str,
    failure: &CodeFailure,
) -> String {
    match interpreter {
        Interpreter::Python => {
            let mut text = format!("[ERROR]\t{stamp}\t{request}\t{}", failure.error_type);
            if !failure.message.is_empty() {
                text.push_str(": ");
                text.push_str(&failure.message);
            }
            for line in &failure.trace {
                text.push('\n');
                text.push_str(line);
            }
            text
        }
        Interpreter::Node => {
            let error = serde_json::json!({
                "errorType": failure.error_type,
                "errorMessage": failure.message,
                "stack": failure.trace,
            });
            format!("{stamp}\t{request}\tERROR\tInvoke Error \t{error}")
        }
    }
}

/// The `REPORT` lines of one simulated minute, one per sampled invocation that ran, at
/// deterministic instants inside the minute: the text format with the managed runtimes'
/// `Status` suffix on failures (`Error Type: Runtime.OutOfMemory` for a kill). The model
/// has no execution environments, so no line has an `Init Duration`.
pub(super) fn report_rows(
    key: MinuteKey,
    minute: &VersionMinute,
    settings: &LambdaSettings,
) -> Vec<(OffsetDateTime, String)> {
    let start = OffsetDateTime::UNIX_EPOCH + Duration::minutes(key.minute);
    let ran = usize::try_from(minute.invocations).unwrap_or(usize::MAX);
    minute
        .samples
        .iter()
        .take(ran)
        .enumerate()
        .map(|(j, sample)| {
            let mut rng = key.rng(1_000_000 + j as u64);
            let at = start + Duration::milliseconds(rng.below(60_000) as i64);
            let status = match sample.failure {
                None => "",
                Some(Failure::Timeout) => "Status: timeout\t",
                Some(Failure::OutOfMemory) => "Status: error\tError Type: Runtime.OutOfMemory\t",
                Some(Failure::Application { .. } | Failure::Code { .. }) => {
                    "Status: error\tError Type: Runtime.Unknown\t"
                }
            };
            let line = format!(
                "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\t\
                 Memory Size: {} MB\tMax Memory Used: {} MB\t{status}",
                request_id(&mut rng),
                sample.duration_ms,
                sample.duration_ms.ceil() as u64,
                settings.memory_mb,
                sample.memory_used_mb.round() as u64,
            );
            (at, line)
        })
        .collect()
}

/// The Lambda log stream a version's lines of a minute are in: `2026/11/22/[3]<32 hex
/// digits>`, one stream per function, version and day.
pub(super) fn log_stream(key: MinuteKey) -> String {
    let at = OffsetDateTime::UNIX_EPOCH + Duration::minutes(key.minute);
    let day = key.minute.div_euclid(24 * 60);
    let mut rng = Rng::seeded(&[key.seed, key.function, u64::from(key.version), day as u64]);
    format!(
        "{:04}/{:02}/{:02}/[{}]{:016x}{:016x}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        key.version,
        rng.next_u64(),
        rng.next_u64()
    )
}

/// `2026-11-22T05:00:03.123Z`.
fn log_stamp(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

fn request_id(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Replaces every `<name>` (letters, digits, `_`) with a value that varies per row:
/// a UUID for `uuid`/`request_id`, a number for `n`/`num`/`count`/`ms`/`qty`/`status`,
/// an address for `ip`, an 8-digit hex id otherwise.
fn fill_placeholders(rng: &mut Rng, template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('<') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let name_end = after[1..].find('>').map(|i| i + 1);
        let name = name_end.map(|end| &after[1..end]).filter(|name| {
            !name.is_empty()
                && name.len() <= 32
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        match (name, name_end) {
            (Some(name), Some(end)) => {
                out.push_str(&placeholder_value(rng, name));
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn placeholder_value(rng: &mut Rng, name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "uuid" | "request_id" => request_id(rng),
        "n" | "num" | "count" | "ms" | "qty" => (1 + rng.below(9999)).to_string(),
        "status" => (400 + rng.below(200)).to_string(),
        "ip" => format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        _ => format!("{:08x}", rng.next_u64() >> 32),
    }
}

/// A Node-style stack trace, the same for every row of one message template.
fn stack_trace(template: &str) -> String {
    let mut rng = Rng::seeded(&[hash_str(template)]);
    let frames = [
        "handler",
        "processRecord",
        "validate",
        "loadFromStore",
        "parseBody",
    ];
    let depth = 3 + rng.below(3) as usize;
    let mut trace = String::new();
    for frame in frames
        .iter()
        .cycle()
        .skip(rng.below(5) as usize)
        .take(depth)
    {
        trace.push_str(&format!(
            "\n    at {frame} (/var/task/index.js:{}:{})",
            10 + rng.below(300),
            1 + rng.below(40)
        ));
    }
    trace.push_str(
        "\n    at Runtime.handleOnceNonStreaming (file:///var/runtime/index.mjs:1173:29)",
    );
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            invocations_per_minute: 120.0,
            work_ms_at_1024mb: 300.0,
            io_ms: 250.0,
            duration_jitter: 0.25,
            memory_used_mb: 100.0,
            memory_jitter: 0.0,
            base_error_rate: 0.0,
            error_messages: Vec::new(),
            request_mix: Vec::new(),
        }
    }

    #[test]
    fn a_request_mix_gives_each_kind_its_share_and_its_costs() {
        let mut w = workload();
        w.duration_jitter = 0.0;
        w.request_mix = vec![
            RequestClass {
                share: 0.9,
                work_ms_at_1024mb: 100.0,
                io_ms: 0.0,
                memory_used_mb: None,
            },
            RequestClass {
                share: 0.1,
                work_ms_at_1024mb: 2000.0,
                io_ms: 0.0,
                memory_used_mb: Some(900.0),
            },
        ];
        let (mut cheap, mut costly, mut oom) = (0, 0, 0);
        for minute in 0..200 {
            let m = simulate_minute(key(minute), 1.0, &settings(512, 60, None), &w, None);
            for s in &m.samples {
                match s.failure {
                    Some(Failure::OutOfMemory) => oom += 1,
                    _ if (s.duration_ms - 200.0).abs() < 1e-9 => cheap += 1,
                    _ => costly += 1,
                }
            }
        }
        // The costly kind needs 900 MB of the 512 configured: every one of them is killed.
        assert_eq!(costly, 0);
        let share = f64::from(oom) / f64::from(oom + cheap);
        assert!((share - 0.1).abs() < 0.01, "{share}");
    }

    fn behaviour(outcomes: &[(f64, RunOutcome)]) -> CodeBehaviour {
        CodeBehaviour::new(
            Interpreter::Python,
            outcomes
                .iter()
                .enumerate()
                .map(|(i, (w, o))| (format!("e{i}"), *w, o.clone()))
                .collect(),
        )
    }

    fn key_error() -> RunOutcome {
        RunOutcome::Failed(CodeFailure {
            error_type: "KeyError".into(),
            message: "'shipping'".into(),
            trace: vec![
                "Traceback (most recent call last):".into(),
                "  File \"/var/task/orders.py\", line 11, in shipping_cost".into(),
                "    address = order[\"shipping\"]".into(),
            ],
        })
    }

    #[test]
    fn a_versions_errors_are_the_share_of_events_its_code_fails_on() {
        // Weights 6 : 3 : 1, the code failing on the last and timing out on none.
        let code = behaviour(&[
            (6.0, RunOutcome::Succeeded),
            (3.0, RunOutcome::Succeeded),
            (1.0, key_error()),
        ]);
        let w = workload();
        let (mut failed, mut ran) = (0_u64, 0_u64);
        for minute in 0..200 {
            let m = simulate_minute(key(minute), 1.0, &settings(1024, 30, None), &w, Some(&code));
            assert_eq!(
                m,
                simulate_minute(key(minute), 1.0, &settings(1024, 30, None), &w, Some(&code))
            );
            failed += m
                .samples
                .iter()
                .filter(|s| s.failure == Some(Failure::Code { event: 2 }))
                .count() as u64;
            ran += m.samples.len() as u64;
            assert!(
                m.samples
                    .iter()
                    .all(|s| matches!(s.failure, None | Some(Failure::Code { event: 2 })))
            );
        }
        let share = failed as f64 / ran as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
        // Code that succeeds on every event never fails, whatever the workload says.
        let healthy = behaviour(&[(1.0, RunOutcome::Succeeded)]);
        let noisy = Workload {
            base_error_rate: 0.5,
            error_messages: vec!["E".into()],
            ..workload()
        };
        let m = simulate_minute(
            key(1),
            1.0,
            &settings(1024, 30, None),
            &noisy,
            Some(&healthy),
        );
        assert_eq!(m.errors, 0);
        // A handler that ran past its timeout times out at the configured timeout.
        let spinning = behaviour(&[(1.0, RunOutcome::TimedOut { seconds: 3 })]);
        let m = simulate_minute(key(1), 1.0, &settings(1024, 3, None), &w, Some(&spinning));
        assert!(
            m.samples
                .iter()
                .all(|s| s.failure == Some(Failure::Timeout) && s.duration_ms == 3000.0)
        );
    }

    #[test]
    fn a_code_failure_is_logged_as_its_runtime_logs_it_and_reads_as_its_trace() {
        use selfbuild_core::logfacts::{Language, parse_trace, record};
        let s = settings(128, 3, None);
        let w = workload();
        let failure = match key_error() {
            RunOutcome::Failed(f) => f,
            _ => unreachable!(),
        };
        let node_failure = CodeFailure {
            error_type: "TypeError".into(),
            message: "Cannot read properties of null (reading 'currency')".into(),
            trace: vec![
                "TypeError: Cannot read properties of null (reading 'currency')".into(),
                "    at handler (file:///var/task/src/cart.mjs:11:47)".into(),
            ],
        };
        let at = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(3_123);
        for (interpreter, failure, language, file, function) in [
            (
                Interpreter::Python,
                failure,
                Language::Python,
                "/var/task/orders.py",
                "shipping_cost",
            ),
            (
                Interpreter::Node,
                node_failure,
                Language::Node,
                "file:///var/task/src/cart.mjs",
                "handler",
            ),
        ] {
            let code = CodeBehaviour {
                interpreter,
                events: vec![EventBehaviour {
                    name: "e".into(),
                    share: 1.0,
                    outcome: RunOutcome::Failed(failure.clone()),
                }],
            };
            let context = LogContext {
                settings: &s,
                workload: &w,
                code: Some(&code),
            };
            let row = message(
                &mut Rng::seeded(&[1]),
                at,
                Failure::Code { event: 0 },
                5.0,
                &context,
            );
            let read = record::read(&row);
            assert!(read.is_error(), "{row}");
            assert!(read.request_id.is_some(), "{row}");
            let trace = parse_trace(read.trace_text(), read.error_type.as_deref())
                .unwrap_or_else(|| panic!("no trace in {row}"));
            assert_eq!(trace.language, language, "{row}");
            assert_eq!(trace.exception, failure.error_type, "{row}");
            assert_eq!(
                trace.message.as_deref(),
                Some(failure.message.as_str()),
                "{row}"
            );
            let top = trace.top_frame().unwrap();
            assert_eq!(
                (top.file.as_deref(), top.function.as_deref()),
                (Some(file), Some(function))
            );
        }
    }

    fn settings(memory_mb: u32, timeout_seconds: u32, reserved: Option<u32>) -> LambdaSettings {
        LambdaSettings {
            memory_mb,
            timeout_seconds,
            reserved_concurrency: reserved,
            environment: Default::default(),
        }
    }

    fn key(minute: i64) -> MinuteKey {
        MinuteKey {
            seed: 7,
            function: hash_str("f"),
            minute,
            version: 1,
        }
    }

    #[test]
    fn the_normal_draws_have_mean_0_and_variance_1() {
        let mut rng = Rng::seeded(&[1, 2, 3]);
        let draws: Vec<f64> = (0..100_000).map(|_| rng.normal()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn poisson_draws_have_the_asked_mean() {
        for lambda in [0.5_f64, 12.0, 120.0] {
            let mut rng = Rng::seeded(&[lambda.to_bits()]);
            let mean = (0..20_000).map(|_| rng.poisson(lambda) as f64).sum::<f64>() / 20_000.0;
            assert!(
                (mean - lambda).abs() < lambda * 0.03 + 0.02,
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn duration_scales_with_memory_and_timeouts_cap_it() {
        let w = Workload {
            duration_jitter: 0.0,
            ..workload()
        };
        let at_128 = simulate_minute(key(1), 1.0, &settings(128, 10, None), &w, None);
        let mean = at_128.duration_sum_ms / at_128.invocations as f64;
        assert!((mean - (250.0 + 2400.0)).abs() < 1e-6, "{mean}");
        assert_eq!(at_128.errors, 0);
        let short = simulate_minute(key(1), 1.0, &settings(128, 2, None), &w, None);
        assert_eq!(short.errors, short.invocations);
        assert!(
            short
                .samples
                .iter()
                .all(|s| s.duration_ms == 2000.0 && s.failure == Some(Failure::Timeout))
        );
    }

    #[test]
    fn memory_above_the_configuration_kills_every_invocation() {
        let w = Workload {
            memory_used_mb: 300.0,
            ..workload()
        };
        let m = simulate_minute(key(2), 1.0, &settings(256, 30, None), &w, None);
        assert!(m.invocations > 0);
        assert_eq!(m.errors, m.invocations);
        assert_eq!(m.memory_utilization, Some(100.0));
        let ok = simulate_minute(key(2), 1.0, &settings(512, 30, None), &w, None);
        assert_eq!(ok.errors, 0);
        assert!((ok.memory_utilization.unwrap() - 300.0 / 512.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn reserved_concurrency_throttles_the_excess() {
        // 600/min × 1.5 s ⇒ 15 concurrent; 5 reserved ⇒ two thirds throttled.
        let w = Workload {
            invocations_per_minute: 600.0,
            work_ms_at_1024mb: 400.0,
            io_ms: 700.0,
            duration_jitter: 0.0,
            ..workload()
        };
        let m = simulate_minute(key(3), 1.0, &settings(512, 10, Some(5)), &w, None);
        let fraction = m.throttles as f64 / m.requests as f64;
        assert!((fraction - 2.0 / 3.0).abs() < 0.01, "{fraction}");
        assert!((m.concurrency - 5.0).abs() < 0.1, "{}", m.concurrency);
        // A 10 % share may use 10 % of the reservation: the same fraction is throttled.
        let canary = simulate_minute(key(3), 0.1, &settings(512, 10, Some(5)), &w, None);
        let fraction = canary.throttles as f64 / canary.requests as f64;
        assert!((fraction - 2.0 / 3.0).abs() < 0.06, "{fraction}");
        let enough = simulate_minute(key(3), 1.0, &settings(512, 10, Some(20)), &w, None);
        assert_eq!(enough.throttles, 0);
        let none = simulate_minute(key(3), 1.0, &settings(512, 10, Some(0)), &w, None);
        assert_eq!((none.invocations, none.throttles), (0, none.requests));
        assert_eq!(none.memory_utilization, None);
    }

    #[test]
    fn only_1000_invocations_are_simulated_and_counts_scale() {
        let w = Workload {
            invocations_per_minute: 5000.0,
            base_error_rate: 0.1,
            error_messages: vec!["E".into()],
            ..workload()
        };
        let m = simulate_minute(key(4), 1.0, &settings(1024, 30, None), &w, None);
        assert_eq!(m.samples.len(), 1000);
        assert!((4700..5300).contains(&m.invocations), "{}", m.invocations);
        let rate = m.errors as f64 / m.invocations as f64;
        assert!((0.04..0.17).contains(&rate), "{rate}");
    }

    #[test]
    fn the_weighted_p99_is_taken_over_all_samples() {
        let mut totals = PeriodTotals::default();
        let mut minute = VersionMinute {
            requests: 100,
            invocations: 100,
            sample_weight: 1.0,
            ..Default::default()
        };
        minute.samples = (1..=100)
            .map(|i| Invocation {
                duration_ms: f64::from(i),
                failure: None,
                memory_used_mb: 64.0,
            })
            .collect();
        totals.add_minute(&[minute]);
        assert_eq!(totals.value(MetricName::DurationP99), Some(99.0));
    }

    #[test]
    fn placeholders_vary_and_malformed_ones_stay() {
        let mut rng = Rng::seeded(&[9]);
        let a = fill_placeholders(&mut rng, "order <id> has <n> items from <ip> (<not closed");
        let b = fill_placeholders(&mut rng, "order <id> has <n> items from <ip> (<not closed");
        assert_ne!(a, b);
        assert!(
            a.starts_with("order ") && a.ends_with("(<not closed"),
            "{a}"
        );
        assert!(!a.contains("<id>") && !a.contains("<ip>"), "{a}");
        assert_eq!(fill_placeholders(&mut rng, "a <b c> d"), "a <b c> d");
    }

    #[test]
    fn log_rows_look_like_lambda_logs() {
        let s = settings(128, 3, None);
        let w = Workload {
            error_messages: vec!["ValidationError: order <id> has no items".into()],
            ..workload()
        };
        let context = LogContext {
            settings: &s,
            workload: &w,
            code: None,
        };
        let at = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(3_123);
        let mut rng = Rng::seeded(&[1]);
        let timeout = message(&mut rng, at, Failure::Timeout, 3000.0, &context);
        assert!(
            timeout.starts_with("1970-01-01T00:00:03.123Z "),
            "{timeout}"
        );
        assert!(
            timeout.ends_with("Task timed out after 3.00 seconds"),
            "{timeout}"
        );
        let oom = message(&mut rng, at, Failure::OutOfMemory, 812.5, &context);
        assert!(oom.contains("Runtime exited with error: signal: killed Runtime.ExitError"));
        assert!(oom.contains("Max Memory Used: 128 MB"), "{oom}");
        let traces = (0..20)
            .map(|_| {
                message(
                    &mut rng,
                    at,
                    Failure::Application { message: 0 },
                    1.0,
                    &context,
                )
            })
            .filter(|m| m.lines().count() > 1)
            .count();
        assert!((1..20).contains(&traces), "{traces}");
    }

    // --- properties ---

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

        /// A minute of sampled invocations: durations, which failed, and the weight each stands for.
        fn minute() -> impl Strategy<Value = VersionMinute> {
            (
                proptest::collection::vec((0.0_f64..10_000.0, any::<bool>()), 1..40),
                0.5_f64..20.0,
            )
                .prop_map(|(samples, weight)| {
                    let k = samples.len() as u64;
                    VersionMinute {
                        requests: k,
                        invocations: k,
                        sample_weight: weight,
                        samples: samples
                            .into_iter()
                            .map(|(duration_ms, failed)| Invocation {
                                duration_ms,
                                failure: failed.then_some(Failure::Timeout),
                                memory_used_mb: 64.0,
                            })
                            .collect(),
                        ..Default::default()
                    }
                })
        }

        fn workloads() -> impl Strategy<Value = Workload> {
            (
                0.0_f64..3000.0,
                0.0_f64..3000.0,
                1.0_f64..500.0,
                0.0_f64..1.5,
                16.0_f64..2048.0,
                0.0_f64..0.5,
                0.0_f64..1.0,
            )
                .prop_map(
                    |(rate, work, io, jitter, memory, memory_jitter, error_rate)| Workload {
                        invocations_per_minute: rate,
                        work_ms_at_1024mb: work,
                        io_ms: io,
                        duration_jitter: jitter,
                        memory_used_mb: memory,
                        memory_jitter,
                        base_error_rate: error_rate,
                        error_messages: vec!["E".into()],
                        request_mix: Vec::new(),
                    },
                )
        }

        proptest! {
            #![proptest_config(config(128))]

            /// The weighted quantile never falls as q rises, lies among the samples, and q = 1 is
            /// the slowest; the same holds for the successes alone.
            #[test]
            fn the_weighted_quantile_is_monotone_in_q(
                minutes in proptest::collection::vec(minute(), 1..4),
                mut levels in proptest::collection::vec(0.0_f64..=1.0, 2..6),
            ) {
                let mut totals = PeriodTotals::default();
                for m in &minutes {
                    totals.add_minute(std::slice::from_ref(m));
                }
                let durations = || minutes.iter().flat_map(|m| m.samples.iter().map(|s| s.duration_ms));
                let (low, high) = durations().fold((f64::MAX, f64::MIN), |(l, h), d| (l.min(d), h.max(d)));
                levels.sort_by(f64::total_cmp);
                let values: Vec<f64> = levels.iter().map(|q| totals.percentile(*q).unwrap()).collect();
                prop_assert!(values.windows(2).all(|w| w[0] <= w[1]), "{levels:?} -> {values:?}");
                prop_assert!(values.iter().all(|v| (low..=high).contains(v)));
                prop_assert_eq!(totals.percentile(1.0), Some(high));
                let any_success = minutes.iter().any(|m| m.samples.iter().any(|s| s.failure.is_none()));
                let successes: Vec<Option<f64>> =
                    levels.iter().map(|q| totals.success_percentile(*q)).collect();
                if any_success {
                    let values: Vec<f64> = successes.into_iter().map(Option::unwrap).collect();
                    prop_assert!(values.windows(2).all(|w| w[0] <= w[1]));
                } else {
                    prop_assert!(successes.iter().all(Option::is_none));
                }
            }

            /// Slow counts never rise with the threshold, count every invocation below the fastest
            /// and none above the slowest; the counts are the minutes' sums.
            #[test]
            fn slow_counts_fall_with_the_threshold_and_counts_add_up(
                minutes in proptest::collection::vec(minute(), 1..4),
                mut thresholds in proptest::collection::vec(0.0_f64..12_000.0, 2..6),
            ) {
                let mut totals = PeriodTotals::default();
                totals.add_minute(&minutes);
                thresholds.sort_by(f64::total_cmp);
                let counts: Vec<f64> = thresholds.iter().map(|t| totals.slower_than(*t)).collect();
                prop_assert!(counts.windows(2).all(|w| w[0] >= w[1]));
                let weight: f64 = minutes.iter().map(|m| m.sample_weight * m.samples.len() as f64).sum();
                prop_assert!((totals.slower_than(-1.0) - weight).abs() < 1e-6 * weight.max(1.0));
                prop_assert_eq!(totals.slower_than(10_000.0), 0.0);
                let invocations: u64 = minutes.iter().map(|m| m.invocations).sum();
                prop_assert_eq!(totals.counts().0, invocations as f64);
            }

            /// A simulated minute's counts are consistent: every request ran or was throttled,
            /// failures are among the invocations, the samples are min(requests, 1000), no sample
            /// outlasts the timeout, and concurrency stays within the version's share of its limit.
            #[test]
            fn a_simulated_minute_is_consistent(
                workload in workloads(),
                minute in 0_i64..100_000,
                share in 0.01_f64..=1.0,
                memory_mb in 128_u32..4096,
                timeout_seconds in 1_u32..30,
                reserved in proptest::option::of(0_u32..50),
            ) {
                let settings = settings(memory_mb, timeout_seconds, reserved);
                let m = simulate_minute(key(minute), share, &settings, &workload, None);
                prop_assert_eq!(m.invocations + m.throttles, m.requests);
                prop_assert!(m.errors <= m.invocations);
                prop_assert_eq!(m.samples.len() as u64, m.requests.min(MAX_SAMPLES));
                let timeout_ms = f64::from(timeout_seconds) * 1000.0;
                prop_assert!(m.samples.iter().all(|s| s.duration_ms >= 0.0 && s.duration_ms <= timeout_ms));
                let limit = reserved.map_or(ACCOUNT_CONCURRENCY, f64::from) * share;
                prop_assert!(m.concurrency >= 0.0 && m.concurrency <= limit + 1e-9);
                prop_assert_eq!(m.memory_utilization.is_some(), m.invocations > 0);
                prop_assert!(m.memory_utilization.is_none_or(|u| (0.0..=100.0).contains(&u)));
                // The same key gives the same minute.
                prop_assert_eq!(simulate_minute(key(minute), share, &settings, &workload, None), m);
            }
        }
    }
}
