//! The embedded fleet: simulated Lambda functions whose telemetry responds to the deployed
//! configuration. It implements the [`Telemetry`] and [`Deployer`] ports, so a cycle run
//! against it sees a good change improve the metrics and a bad one degrade them; nothing
//! about outcomes is scripted.
//!
//! - [`Scenario`] (in `scenario.rs`): the file format of `events/scenarios/*.json`.
//! - `sim.rs`: the per-minute model of one version (formulas on `simulate_minute`).
//! - [`CodeRunner`] (in `runner.rs`): a version's handler run on each event of its
//!   function's mix with the local `python3` / `node`; what the code really did is the
//!   version's application errors (version 1 at start, each canary when it is deployed).
//! - [`Fleet`]: versions, the `live` alias and its routing history per function.
//!
//! Telemetry is computed on demand from the routing history, so any past window is seen
//! with the routing that was in force at each instant (before the scenario's `now`:
//! version 1 at 100 %). Only minutes that have ended by the clock's `now` have data, and
//! only the last 15 days of them, like CloudWatch's one-minute data.

mod runner;
mod scenario;
mod sim;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use selfbuild_core::change::code_patch::{FileEdit, apply_to_package};
use selfbuild_core::change::{CodeBase, CodeRelease, DeploySpec, LambdaSettings};
use selfbuild_core::cycle::TimeWindow;
use selfbuild_core::deployment::{CanaryDeployment, CodeVersion, FunctionState, LIVE_ALIAS};
use selfbuild_core::error::TelemetryError;
use selfbuild_core::ids::{ComponentId, ImprovementId, TenantId};
use selfbuild_core::ports::{
    Clock, CodeSource, CodeSourceError, DeployError, DeployedFiles, Deployer, Telemetry,
};
use selfbuild_core::telemetry::{
    AgentSeries, AgentSource, DataPoint, DurationQuery, LogRow, MetricName, MetricSeries,
    Quantiles, SuccessDurations, TelemetryQuery, VersionTotals,
};
use time::{Duration, OffsetDateTime};

pub use runner::{
    CodeFailure, CodeRunner, Interpreter, MAX_TIMEOUT_SECONDS, RunError, RunOutcome, RunRequest,
    network_isolated,
};
pub use scenario::{
    Fault, FaultError, FaultOperation, FunctionCode, FunctionSpec, PublishedChange,
    PublishedMetric, RequestClass, SampleEvent, Scenario, ScenarioError, Workload, WorkloadChange,
};
use sim::{CodeBehaviour, LogContext, MinuteKey, PeriodTotals, VersionMinute};

/// How far back telemetry reaches, in minutes (CloudWatch keeps one-minute data 15 days).
const RETENTION_MINUTES: i64 = 15 * 24 * 60;

/// Where a function's alias sends traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The version the alias points at.
    pub stable_version: u32,
    /// An additional version and its weight (0–1].
    pub canary: Option<(u32, f64)>,
}

impl Routing {
    const INITIAL: Self = Self {
        stable_version: 1,
        canary: None,
    };

    /// Each version's share of the traffic.
    fn shares(&self) -> impl Iterator<Item = (u32, f64)> {
        let canary_weight = self.canary.map_or(0.0, |(_, w)| w);
        std::iter::once((self.stable_version, 1.0 - canary_weight))
            .chain(self.canary)
            .filter(|(_, w)| *w > 0.0)
    }

    fn newest_version(&self) -> u32 {
        self.canary
            .map_or(self.stable_version, |(v, _)| v.max(self.stable_version))
    }
}

/// One change of a function's alias routing.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingChange {
    /// When it took effect.
    pub at: OffsetDateTime,
    /// The routing from then on.
    pub routing: Routing,
}

#[derive(Debug)]
struct DeploymentRecord {
    deployment: CanaryDeployment,
    rolled_back: bool,
}

#[derive(Debug)]
struct FunctionModel {
    spec: Arc<FunctionSpec>,
    /// The workload from each minute on (the first from `i64::MIN`).
    workloads: Arc<[(i64, Workload)]>,
    name_hash: u64,
    /// Version `i + 1`.
    versions: Vec<Version>,
    routing: Routing,
    /// Changes after the scenario started, in time order.
    history: Vec<RoutingChange>,
}

impl FunctionModel {
    fn settings(&self, version: u32) -> Option<&LambdaSettings> {
        settings_of(&self.versions, version)
    }

    fn state(&self) -> FunctionState {
        FunctionState {
            function: self.spec.name.clone(),
            settings: self
                .settings(self.routing.stable_version)
                .cloned()
                .unwrap_or_else(|| self.spec.settings.clone()),
            alias: LIVE_ALIAS.to_owned(),
            stable_version: self.routing.stable_version.to_string(),
            canary: self.routing.canary.map(|(v, w)| (v.to_string(), w)),
            code_sha256: self
                .code(self.routing.stable_version)
                .map(|c| c.code_sha256()),
        }
    }

    fn code(&self, version: u32) -> Option<&Arc<FunctionCode>> {
        version_of(&self.versions, version).and_then(|v| v.code.as_ref())
    }

    fn route(&mut self, at: OffsetDateTime, routing: Routing) {
        if self.routing != routing {
            self.routing = routing.clone();
            self.history.push(RoutingChange { at, routing });
        }
    }

    fn view(&self) -> FunctionView {
        FunctionView {
            spec: Arc::clone(&self.spec),
            workloads: Arc::clone(&self.workloads),
            name_hash: self.name_hash,
            versions: self.versions.clone(),
            history: self.history.clone(),
        }
    }
}

/// A copy of what telemetry needs, taken so the lock is not held while simulating.
struct FunctionView {
    spec: Arc<FunctionSpec>,
    workloads: Arc<[(i64, Workload)]>,
    name_hash: u64,
    versions: Vec<Version>,
    history: Vec<RoutingChange>,
}

impl FunctionView {
    /// The workload in force in `minute`.
    fn workload(&self, minute: i64) -> &Workload {
        let after = self.workloads.partition_point(|(from, _)| *from <= minute);
        let index = after.saturating_sub(1);
        self.workloads
            .get(index)
            .map_or(&self.spec.workload, |(_, w)| w)
    }
}

#[derive(Debug)]
struct State {
    functions: Vec<FunctionModel>,
    deployments: BTreeMap<ImprovementId, DeploymentRecord>,
    /// The scenario's faults, each with the calls it has seen.
    faults: Vec<(Fault, u32)>,
}

impl State {
    fn function_mut(&mut self, name: &ComponentId) -> Result<&mut FunctionModel, DeployError> {
        self.functions
            .iter_mut()
            .find(|f| &f.spec.name == name)
            .ok_or_else(|| DeployError::Rejected(format!("unknown function {name}")))
    }
}

struct Inner {
    seed: u64,
    /// Runs each version's code on its function's events.
    runner: Arc<CodeRunner>,
    clock: Arc<dyn Clock>,
    /// How long after a minute ends its telemetry becomes visible.
    telemetry_delay: Duration,
    /// Metrics published beside the functions' (agents' own).
    published: Vec<PublishedMetric>,
    state: Mutex<State>,
}

/// The simulated fleet; clones share one state.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("seed", &self.inner.seed)
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// The fleet of `scenario`, every function on version 1, reading time from `clock`;
    /// functions with an event mix have their code run by the process-wide runner.
    pub fn new(scenario: &Scenario, clock: Arc<dyn Clock>) -> Result<Self, ScenarioError> {
        Self::with_runner(scenario, clock, CodeRunner::shared())
    }

    /// [`Fleet::new`] with the code run by `runner`.
    pub fn with_runner(
        scenario: &Scenario,
        clock: Arc<dyn Clock>,
        runner: Arc<CodeRunner>,
    ) -> Result<Self, ScenarioError> {
        scenario.validate(&scenario.name)?;
        let mut functions = Vec::with_capacity(scenario.functions.len());
        for spec in &scenario.functions {
            let code = spec.code.clone().map(Arc::new);
            let behaviour = behaviour(&runner, &spec.name, code.as_deref(), &spec.settings)
                .map_err(|source| ScenarioError::Run {
                    scenario: scenario.name.clone(),
                    function: spec.name.clone(),
                    source,
                })?;
            functions.push(FunctionModel {
                workloads: spec
                    .workload_timeline()
                    .into_iter()
                    .map(|(at, w)| {
                        (
                            at.map_or(i64::MIN, |t| t.unix_timestamp().div_euclid(60)),
                            w,
                        )
                    })
                    .collect(),
                name_hash: sim::hash_str(spec.name.as_str()),
                versions: vec![Version {
                    settings: spec.settings.clone(),
                    code,
                    behaviour,
                }],
                routing: Routing::INITIAL,
                history: Vec::new(),
                spec: Arc::new(spec.clone()),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                seed: scenario.seed,
                runner,
                clock,
                telemetry_delay: Duration::minutes(i64::from(scenario.telemetry_delay_minutes)),
                published: scenario.published_metrics.clone(),
                state: Mutex::new(State {
                    functions,
                    deployments: BTreeMap::new(),
                    faults: scenario.faults.iter().map(|f| (f.clone(), 0)).collect(),
                }),
            }),
        })
    }

    /// The functions, in the scenario's order.
    pub fn functions(&self) -> Vec<ComponentId> {
        self.lock()
            .functions
            .iter()
            .map(|f| f.spec.name.clone())
            .collect()
    }

    /// The routing changes of `function` since the scenario started, oldest first (before
    /// the first one, version 1 served everything); none for an unknown function.
    pub fn routing_history(&self, function: &ComponentId) -> Option<Vec<RoutingChange>> {
        self.lock()
            .functions
            .iter()
            .find(|f| &f.spec.name == function)
            .map(|f| f.history.clone())
    }

    /// The settings of one published version of `function`.
    pub fn version_settings(
        &self,
        function: &ComponentId,
        version: &str,
    ) -> Option<LambdaSettings> {
        let version = version.parse().ok()?;
        self.lock()
            .functions
            .iter()
            .find(|f| &f.spec.name == function)?
            .settings(version)
            .cloned()
    }

    /// What happened to each function during the run: its end state and the exposure of
    /// every version deployed beside stable, for checking a scenario's expectations.
    pub fn outcomes(&self) -> Vec<FunctionOutcome> {
        let now = self.inner.clock.now();
        let functions: Vec<(FunctionState, LambdaSettings, FunctionView)> = self
            .lock()
            .functions
            .iter()
            .map(|f| (f.state(), f.spec.settings.clone(), f.view()))
            .collect();
        functions
            .into_iter()
            .map(|(end_state, initial_settings, view)| {
                let canaries = canary_spans(&view.history, now)
                    .into_iter()
                    .map(|(version, from, until, promoted)| {
                        let window = TimeWindow {
                            start: from,
                            end: until,
                        };
                        // Ground truth: every minute, the current one included.
                        let totals = self.version_totals_at(
                            &view,
                            &version.to_string(),
                            &window,
                            &DurationQuery::default(),
                            now + Duration::MINUTE,
                        );
                        CanaryExposure {
                            version: version.to_string(),
                            deployed_at: from,
                            ended_at: until,
                            promoted,
                            invocations: totals.invocations,
                            errors: totals.errors,
                        }
                    })
                    .collect();
                FunctionOutcome {
                    function: view.spec.name.clone(),
                    initial_settings,
                    end_state,
                    routing_changes: view.history.len(),
                    canaries,
                }
            })
            .collect()
    }

    /// The end of the newest minute whose telemetry is visible.
    fn observed_until(&self) -> OffsetDateTime {
        self.inner.clock.now() - self.inner.telemetry_delay
    }

    /// Fails this call when a scenario fault says so.
    fn inject_fault(
        state: &mut State,
        operation: FaultOperation,
        function: &ComponentId,
    ) -> Result<(), DeployError> {
        for (fault, calls) in &mut state.faults {
            if fault.operation != operation
                || fault.function.as_ref().is_some_and(|f| f != function)
            {
                continue;
            }
            *calls += 1;
            let failing =
                *calls > fault.after_calls && *calls <= fault.after_calls + fault.failures;
            if failing {
                let message = format!("{operation:?} {function}: injected fault (call {calls})");
                return Err(match fault.error {
                    FaultError::Unavailable => DeployError::Unavailable(message),
                    FaultError::Rejected => DeployError::Rejected(message),
                });
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation completes before the guard drops, so a poisoned state is whole.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn views(&self, tenant: Option<&TenantId>, components: &[ComponentId]) -> Vec<FunctionView> {
        self.lock()
            .functions
            .iter()
            .filter(|f| tenant.is_none() || f.spec.tenant.as_ref() == tenant)
            .filter(|f| components.is_empty() || components.contains(&f.spec.name))
            .map(FunctionModel::view)
            .collect()
    }

    fn key(&self, view: &FunctionView, minute: i64, version: u32) -> MinuteKey {
        MinuteKey {
            seed: self.inner.seed,
            function: view.name_hash,
            minute,
            version,
        }
    }

    /// The selected versions of one minute, simulated; `only` none means every version.
    /// The log rows `lines` writes for each version of each function in scope, minute by
    /// minute from the newest, inside the window and before now, newest first, at most
    /// `limit` (logs are visible as soon as written: the current minute counts too).
    fn log_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
        lines: impl Fn(MinuteKey, &VersionMinute, &LogContext<'_>) -> Vec<(OffsetDateTime, String)>,
    ) -> Vec<LogRow> {
        let now = self.inner.clock.now();
        let views = self.views(query.tenant.as_ref(), &query.components);
        let window = &query.window;
        let (_, minutes) = window_minutes(window, now + Duration::MINUTE);
        let mut rows = Vec::new();
        for m in minutes.rev() {
            if rows.len() >= limit {
                break;
            }
            let mut this_minute = Vec::new();
            for view in &views {
                for (version, vm) in self.minute(view, m, None) {
                    let Some(published) = version_of(&view.versions, version) else {
                        continue;
                    };
                    let context = LogContext {
                        settings: &published.settings,
                        workload: view.workload(m),
                        code: published.behaviour.as_deref(),
                    };
                    let key = self.key(view, m, version);
                    let stream = sim::log_stream(key);
                    this_minute.extend(
                        lines(key, &vm, &context)
                            .into_iter()
                            .filter(|(at, _)| *at >= window.start && *at < window.end && *at < now)
                            .map(|(timestamp, message)| LogRow {
                                timestamp,
                                component: view.spec.name.clone(),
                                message,
                                log_stream: Some(stream.clone()),
                            }),
                    );
                }
            }
            this_minute.sort_by(|a, b| {
                b.timestamp
                    .cmp(&a.timestamp)
                    .then_with(|| a.component.cmp(&b.component))
                    .then_with(|| a.message.cmp(&b.message))
            });
            rows.extend(this_minute.into_iter().take(limit - rows.len()));
        }
        rows
    }

    fn minute(
        &self,
        view: &FunctionView,
        minute: i64,
        only: Option<u32>,
    ) -> Vec<(u32, VersionMinute)> {
        shares_in_minute(&view.history, minute)
            .into_iter()
            .filter(|(v, _)| only.is_none_or(|o| o == *v))
            .filter_map(|(version, share)| {
                let published = version_of(&view.versions, version)?;
                let key = self.key(view, minute, version);
                Some((
                    version,
                    sim::simulate_minute(
                        key,
                        share,
                        &published.settings,
                        view.workload(minute),
                        published.behaviour.as_deref(),
                    ),
                ))
            })
            .collect()
    }

    /// Every metric of `metrics` for one function over `window`, one point per period with data.
    fn points(
        &self,
        view: &FunctionView,
        only: Option<u32>,
        metrics: &[MetricName],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<Vec<DataPoint>>, TelemetryError> {
        let per = period_minutes(period_seconds)?;
        let (first, minutes) = window_minutes(window, self.observed_until());
        let mut out = vec![Vec::new(); metrics.len()];
        let mut period: Option<(i64, PeriodTotals)> = None;
        for m in minutes {
            let index = (m - first).div_euclid(per);
            if period.as_ref().is_some_and(|(i, _)| *i != index)
                && let Some((i, totals)) = period.take()
            {
                emit(&mut out, metrics, first + i * per, totals);
            }
            let versions: Vec<VersionMinute> = self
                .minute(view, m, only)
                .into_iter()
                .map(|(_, vm)| vm)
                .collect();
            period
                .get_or_insert_with(|| (index, PeriodTotals::default()))
                .1
                .add_minute(&versions);
        }
        if let Some((i, totals)) = period {
            emit(&mut out, metrics, first + i * per, totals);
        }
        Ok(out)
    }
}

impl Fleet {
    /// One version's counts and latency pooled over the minutes of `window` that have ended.
    fn version_totals_of(
        &self,
        view: &FunctionView,
        version: &str,
        window: &TimeWindow,
        durations: &DurationQuery,
    ) -> VersionTotals {
        self.version_totals_at(view, version, window, durations, self.observed_until())
    }

    /// [`Self::version_totals_of`] over the minutes ended by `observed_until`.
    fn version_totals_at(
        &self,
        view: &FunctionView,
        version: &str,
        window: &TimeWindow,
        durations: &DurationQuery,
        observed_until: OffsetDateTime,
    ) -> VersionTotals {
        let Some(number) = parse_version(version) else {
            return VersionTotals::empty(version);
        };
        let (_, minutes) = window_minutes(window, observed_until);
        let mut totals = PeriodTotals::default();
        for m in minutes {
            let versions: Vec<VersionMinute> = self
                .minute(view, m, Some(number))
                .into_iter()
                .map(|(_, vm)| vm)
                .collect();
            totals.add_minute(&versions);
        }
        let (invocations, errors, throttles) = totals.counts();
        let duration_ms = quantiles(|q| totals.percentile(q));
        let successes = durations.success_percentiles.as_ref().and_then(|levels| {
            Some(SuccessDurations {
                requests: invocations - errors,
                duration_ms: quantiles(|q| totals.success_percentile(q))?,
                percentiles: levels
                    .iter()
                    .map(|level| totals.success_percentile(*level))
                    .collect::<Option<Vec<f64>>>()
                    .unwrap_or_default(),
            })
        });
        VersionTotals {
            version: version.to_owned(),
            invocations,
            errors,
            throttles,
            duration_ms,
            slower_than: durations
                .slower_than_ms
                .iter()
                .map(|t| totals.slower_than(*t))
                .collect(),
            percentiles: durations
                .percentiles
                .iter()
                .map(|level| totals.percentile(*level))
                .collect::<Option<Vec<f64>>>()
                .unwrap_or_default(),
            successes,
        }
    }
}

/// p50, p90 and p99 as `percentile` gives them; none when it gives none.
fn quantiles(mut percentile: impl FnMut(f64) -> Option<f64>) -> Option<Quantiles> {
    Some(Quantiles {
        p50: percentile(0.50)?,
        p90: percentile(0.90)?,
        p99: percentile(0.99)?,
    })
}

fn emit(out: &mut [Vec<DataPoint>], metrics: &[MetricName], minute: i64, mut totals: PeriodTotals) {
    let timestamp = minute_start(minute);
    for (points, metric) in out.iter_mut().zip(metrics) {
        if let Some(value) = totals.value(*metric) {
            points.push(DataPoint { timestamp, value });
        }
    }
}

/// What happened to one function during a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionOutcome {
    /// The function.
    pub function: ComponentId,
    /// Version 1's settings, as the scenario started.
    pub initial_settings: LambdaSettings,
    /// Its stable settings and routing at the end.
    pub end_state: FunctionState,
    /// How often its alias routing changed.
    pub routing_changes: usize,
    /// Each version that served beside stable, in deploy order.
    pub canaries: Vec<CanaryExposure>,
}

/// How long a canary version served and what it did to its requests.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryExposure {
    /// The version.
    pub version: String,
    /// When it began to take traffic.
    pub deployed_at: OffsetDateTime,
    /// When it was promoted, rolled back, or the run ended.
    pub ended_at: OffsetDateTime,
    /// It became the stable version.
    pub promoted: bool,
    /// Invocations it served as a canary.
    pub invocations: f64,
    /// Of those, failed ones.
    pub errors: f64,
}

/// Each canary's span in a routing history: (version, from, until, promoted); a canary
/// still in place ends at `now`.
fn canary_spans(
    history: &[RoutingChange],
    now: OffsetDateTime,
) -> Vec<(u32, OffsetDateTime, OffsetDateTime, bool)> {
    let mut spans = Vec::new();
    let mut open: Option<(u32, OffsetDateTime)> = None;
    for change in history {
        let current = change.routing.canary.map(|(v, _)| v);
        if let Some((version, from)) = open
            && current != Some(version)
        {
            spans.push((
                version,
                from,
                change.at,
                change.routing.stable_version == version,
            ));
            open = None;
        }
        if let (Some(version), None) = (current, open) {
            open = Some((version, change.at));
        }
    }
    if let Some((version, from)) = open {
        spans.push((version, from, now, false));
    }
    spans
}

fn minute_start(minute: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::minutes(minute)
}

/// A published metric's `stat` per period of `per` minutes aligned to `first`, over
/// `minutes` (see [`PublishedMetric`] for the statistics).
fn published_points(
    published: &PublishedMetric,
    stat: &str,
    first: i64,
    minutes: std::ops::Range<i64>,
    per: i64,
) -> Vec<DataPoint> {
    let mut periods: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for m in minutes {
        periods
            .entry(first + (m - first).div_euclid(per) * per)
            .or_default()
            .push(published.value_in(m));
    }
    periods
        .into_iter()
        .map(|(start, values)| {
            let value = match stat {
                "Sum" | "SampleCount" => values.iter().sum(),
                "Maximum" => values.iter().copied().fold(f64::MIN, f64::max),
                "Minimum" => values.iter().copied().fold(f64::MAX, f64::min),
                _ => values.iter().sum::<f64>() / values.len() as f64,
            };
            DataPoint {
                timestamp: minute_start(start),
                value,
            }
        })
        .collect()
}

fn period_minutes(period_seconds: u32) -> Result<i64, TelemetryError> {
    if period_seconds == 0 || !period_seconds.is_multiple_of(60) {
        return Err(TelemetryError::Invalid(format!(
            "period_seconds must be a positive multiple of 60, got {period_seconds}"
        )));
    }
    Ok(i64::from(period_seconds / 60))
}

/// The minute the window's periods are aligned to, and the minutes of the window that have
/// ended by `now` and are still retained.
fn window_minutes(window: &TimeWindow, now: OffsetDateTime) -> (i64, std::ops::Range<i64>) {
    let first = window.start.unix_timestamp().div_euclid(60);
    let end = window.end.unix_timestamp() + i64::from(window.end.nanosecond() > 0);
    let last = (end + 59).div_euclid(60);
    let ended = now.unix_timestamp().div_euclid(60);
    let from = first.max(ended - RETENTION_MINUTES);
    (first, from..last.min(ended).max(from))
}

/// Each version's share of the traffic in `minute`, weighting each routing by the part of
/// the minute it was in force.
fn shares_in_minute(history: &[RoutingChange], minute: i64) -> Vec<(u32, f64)> {
    let start = minute_start(minute);
    let end = start + Duration::MINUTE;
    let before = history.partition_point(|c| c.at <= start);
    let mut current = before
        .checked_sub(1)
        .and_then(|i| history.get(i))
        .map_or(&Routing::INITIAL, |c| &c.routing);
    let mut from = start;
    let mut shares: Vec<(u32, f64)> = Vec::with_capacity(2);
    let mut add = |routing: &Routing, span: Duration| {
        let part = span.as_seconds_f64() / 60.0;
        for (version, weight) in routing.shares() {
            match shares.iter_mut().find(|(v, _)| *v == version) {
                Some((_, w)) => *w += weight * part,
                None => shares.push((version, weight * part)),
            }
        }
    };
    for change in history.get(before..).unwrap_or_default() {
        if change.at >= end {
            break;
        }
        add(current, change.at - from);
        current = &change.routing;
        from = change.at;
    }
    add(current, end - from);
    shares.retain(|(_, w)| *w > 1e-12);
    shares
}

/// The package paths a release changes, in order.
fn patched_paths(release: &CodeRelease) -> Vec<String> {
    release.files.iter().map(|f| f.path.clone()).collect()
}

/// `stable` with `release` applied, and what the canary records of it; refused when the
/// stable code is not the code the patch was judged against, or the patch does not apply.
fn patched(
    function: &ComponentId,
    stable: Option<&FunctionCode>,
    release: &CodeRelease,
) -> Result<(FunctionCode, CodeVersion), DeployError> {
    let stable = stable.ok_or_else(|| {
        DeployError::Rejected(format!("{function} has no code to patch in this scenario"))
    })?;
    let base_code_sha256 = stable.code_sha256();
    if release.base.code_sha256.as_deref() != Some(base_code_sha256.as_str()) {
        return Err(DeployError::Rejected(format!(
            "{function}'s live code is {base_code_sha256}, not {} that the patch was validated \
             against; validate it again",
            release.base.code_sha256.as_deref().unwrap_or("(unknown)")
        )));
    }
    let edits = apply_to_package(&release.files, |path| {
        stable.files.get(path).map(|t| t.as_bytes().to_vec())
    })
    .map_err(|e| DeployError::Rejected(format!("{function}: {e}")))?;
    let mut code = stable.clone();
    for (path, edit) in edits {
        match edit {
            FileEdit::Write(text) => {
                code.files.insert(path, text);
            }
            FileEdit::Delete => {
                code.files.remove(&path);
            }
        }
    }
    let version = CodeVersion {
        base_code_sha256,
        code_sha256: code.code_sha256(),
        files: patched_paths(release),
    };
    Ok((code, version))
}

/// A published version of a function: its settings, its code and what its code does.
#[derive(Debug, Clone)]
struct Version {
    settings: LambdaSettings,
    /// None when the scenario gives the function no code.
    code: Option<Arc<FunctionCode>>,
    /// How its code handled each event of the mix; none without an event mix.
    behaviour: Option<Arc<CodeBehaviour>>,
}

/// How `code` with `settings` handles each of its events, each run once (or taken from the
/// runner's cache); none when the code has no event mix.
fn behaviour(
    runner: &CodeRunner,
    function: &ComponentId,
    code: Option<&FunctionCode>,
    settings: &LambdaSettings,
) -> Result<Option<Arc<CodeBehaviour>>, RunError> {
    let Some(code) = code.filter(|c| !c.events.is_empty()) else {
        return Ok(None);
    };
    let runtime = code
        .runtime
        .as_deref()
        .ok_or(RunError::Missing("runtime"))?;
    let interpreter = runner.check_runtime(runtime)?;
    let mut events = Vec::with_capacity(code.events.len());
    for event in &code.events {
        let outcome = runner.run(&RunRequest {
            function: function.as_str(),
            code,
            settings,
            event,
        })?;
        events.push((event.name.clone(), event.weight, outcome));
    }
    Ok(Some(Arc::new(CodeBehaviour::new(interpreter, events))))
}

/// `version` of `versions` (versions count from 1).
fn version_of(versions: &[Version], version: u32) -> Option<&Version> {
    versions.get(usize::try_from(version).ok()?.checked_sub(1)?)
}

/// The settings of `version` (versions count from 1).
fn settings_of(versions: &[Version], version: u32) -> Option<&LambdaSettings> {
    version_of(versions, version).map(|v| &v.settings)
}

fn parse_version(version: &str) -> Option<u32> {
    version.parse().ok().filter(|v| *v >= 1)
}

#[async_trait]
impl Telemetry for Fleet {
    async fn metric_series(
        &self,
        query: &TelemetryQuery,
    ) -> Result<Vec<MetricSeries>, TelemetryError> {
        period_minutes(query.period_seconds)?;
        let views = self.views(query.tenant.as_ref(), &query.components);
        let mut series = Vec::new();
        // A named component the fleet has no data of (not one of its functions, or another
        // tenant's) gets every metric without points, as CloudWatch answers for it.
        let mut named: Vec<&ComponentId> = Vec::new();
        for component in &query.components {
            if !named.contains(&component) && !views.iter().any(|v| &v.spec.name == component) {
                named.push(component);
                series.extend(MetricName::ALL.into_iter().map(|metric| MetricSeries {
                    component: component.clone(),
                    metric,
                    version: None,
                    points: Vec::new(),
                }));
            }
        }
        for view in views {
            let points = self.points(
                &view,
                None,
                &MetricName::ALL,
                &query.window,
                query.period_seconds,
            )?;
            series.extend(
                MetricName::ALL
                    .into_iter()
                    .zip(points)
                    .map(|(metric, points)| MetricSeries {
                        component: view.spec.name.clone(),
                        metric,
                        version: None,
                        points,
                    }),
            );
        }
        Ok(series)
    }

    async fn version_totals(
        &self,
        function: &ComponentId,
        versions: &[String],
        window: &TimeWindow,
        durations: &DurationQuery,
    ) -> Result<Vec<VersionTotals>, TelemetryError> {
        let view = self.views(None, std::slice::from_ref(function)).pop();
        Ok(versions
            .iter()
            .map(|version| match &view {
                Some(view) => self.version_totals_of(view, version, window, durations),
                None => VersionTotals::empty(version),
            })
            .collect())
    }

    async fn error_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        Ok(self.log_rows(query, limit, |key, vm, context| {
            sim::error_rows(key, vm, context)
        }))
    }

    async fn agent_series(
        &self,
        agents: &[AgentSource],
        window: &TimeWindow,
        period_seconds: u32,
    ) -> Result<Vec<AgentSeries>, TelemetryError> {
        let per = period_minutes(period_seconds)?;
        let (first, minutes) = window_minutes(window, self.observed_until());
        let mut out = Vec::new();
        for agent in agents {
            for (metric, name, stat) in &agent.stats {
                let published = self.inner.published.iter().find(|p| {
                    p.namespace == agent.namespace
                        && &p.metric == name
                        && p.dimensions.len() == agent.dimensions.len()
                        && agent
                            .dimensions
                            .iter()
                            .all(|d| p.dimensions.get(&d.name) == Some(&d.value))
                });
                out.push(AgentSeries {
                    agent: agent.agent.clone(),
                    tenant_id: agent.tenant_id.clone(),
                    metric: *metric,
                    points: published
                        .map(|p| published_points(p, stat, first, minutes.clone(), per))
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    async fn report_rows(
        &self,
        query: &TelemetryQuery,
        limit: usize,
    ) -> Result<Vec<LogRow>, TelemetryError> {
        if query.components.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.log_rows(query, limit, |key, vm, context| {
            sim::report_rows(key, vm, context.settings)
        }))
    }
}

#[async_trait]
impl CodeSource for Fleet {
    async fn deployed_files(
        &self,
        component: &ComponentId,
        paths: &[&str],
    ) -> Result<DeployedFiles, CodeSourceError> {
        let state = self.lock();
        let model = state
            .functions
            .iter()
            .find(|f| &f.spec.name == component)
            .ok_or_else(|| {
                CodeSourceError::Rejected(format!("{component} is not a function of this fleet"))
            })?;
        // What the alias serves as stable: a promoted patch is the code the next one is cut on.
        let code = model
            .code(model.routing.stable_version)
            .cloned()
            .ok_or_else(|| {
                CodeSourceError::Rejected(format!("the scenario gives no code for {component}"))
            })?;
        Ok(DeployedFiles {
            base: CodeBase {
                code_sha256: Some(code.code_sha256()),
                runtime: code.runtime.clone(),
            },
            handler: code.handler.clone(),
            files: paths
                .iter()
                .map(|&p| {
                    let text = code.files.get(p.trim_start_matches("./")).cloned();
                    (p.to_owned(), text)
                })
                .collect(),
        })
    }
}

#[async_trait]
impl Deployer for Fleet {
    async fn function_state(&self, function: &ComponentId) -> Result<FunctionState, DeployError> {
        Ok(self.lock().function_mut(function)?.state())
    }

    async fn deploy_canary(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
        spec: &DeploySpec,
        weight: f64,
    ) -> Result<CanaryDeployment, DeployError> {
        let settings = spec.settings();
        if !(weight > 0.0 && weight <= 1.0) {
            return Err(DeployError::Rejected(format!(
                "canary weight must be in (0, 1], got {weight}"
            )));
        }
        let now = self.inner.clock.now();
        let mut state = self.lock();
        Self::inject_fault(&mut state, FaultOperation::DeployCanary, function)?;
        if let Some(record) = state.deployments.get(improvement_id) {
            let d = &record.deployment;
            let same_code =
                d.code.as_ref().map(|c| &c.files) == spec.release().map(patched_paths).as_ref();
            if &d.baseline.function != function
                || &d.settings != settings
                || d.weight != weight
                || !same_code
            {
                return Err(DeployError::Rejected(format!(
                    "improvement {improvement_id} was deployed to {} with other settings, code or weight",
                    d.baseline.function
                )));
            }
            let deployment = d.clone();
            // As on Lambda: a stray retry never stands for an older canary once a later one
            // was deployed.
            let published = state.function_mut(function)?.versions.len();
            if parse_version(&deployment.canary_version)
                .is_none_or(|v| usize::try_from(v).is_ok_and(|v| v < published))
            {
                return Err(DeployError::Rejected(format!(
                    "version {} of {function} was published for improvement {improvement_id}, \
                     but later versions were published after it; not routing an older canary",
                    deployment.canary_version
                )));
            }
            return Ok(deployment);
        }
        let model = state.function_mut(function)?;
        if let Some((version, _)) = model.routing.canary {
            return Err(DeployError::Rejected(format!(
                "{function} already routes to canary version {version}; promote or roll it back first"
            )));
        }
        let baseline = model.state();
        let stable_code = model.code(model.routing.stable_version).cloned();
        let (code, code_version) = match spec.release() {
            None => (stable_code, None),
            Some(release) => {
                let (code, version) = patched(function, stable_code.as_deref(), release)?;
                (Some(Arc::new(code)), Some(version))
            }
        };
        let behaviour = behaviour(&self.inner.runner, function, code.as_deref(), settings)
            .map_err(|e| {
                DeployError::Rejected(format!("{function}: the new version's code: {e}"))
            })?;
        let model = state.function_mut(function)?;
        model.versions.push(Version {
            settings: settings.clone(),
            code,
            behaviour,
        });
        let version = u32::try_from(model.versions.len())
            .map_err(|_| DeployError::Rejected(format!("{function} has too many versions")))?;
        let stable_version = model.routing.stable_version;
        model.route(
            now,
            Routing {
                stable_version,
                canary: Some((version, weight)),
            },
        );
        let deployment = CanaryDeployment {
            improvement_id: improvement_id.to_owned(),
            baseline,
            settings: settings.clone(),
            code: code_version,
            canary_version: version.to_string(),
            weight,
            deployed_at: now,
        };
        state.deployments.insert(
            improvement_id.clone(),
            DeploymentRecord {
                deployment: deployment.clone(),
                rolled_back: false,
            },
        );
        Ok(deployment)
    }

    async fn promote(&self, deployment: &CanaryDeployment) -> Result<(), DeployError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        Self::inject_fault(
            &mut state,
            FaultOperation::Promote,
            &deployment.baseline.function,
        )?;
        if state
            .deployments
            .get(&deployment.improvement_id)
            .is_some_and(|r| r.rolled_back)
        {
            return Err(DeployError::Rejected(format!(
                "improvement {} was rolled back",
                deployment.improvement_id
            )));
        }
        let function = &deployment.baseline.function;
        let model = state.function_mut(function)?;
        let version = parse_version(&deployment.canary_version)
            .filter(|v| model.settings(*v).is_some())
            .ok_or_else(|| {
                DeployError::Rejected(format!(
                    "{function} has no version {}",
                    deployment.canary_version
                ))
            })?;
        let promoted = Routing {
            stable_version: version,
            canary: None,
        };
        if model.routing == promoted {
            return Ok(());
        }
        if model.routing.canary.map(|(v, _)| v) != Some(version) {
            return Err(DeployError::Rejected(format!(
                "{function}'s alias no longer routes to version {version}"
            )));
        }
        model.route(now, promoted);
        Ok(())
    }

    async fn rollback(&self, deployment: &CanaryDeployment) -> Result<(), DeployError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        Self::inject_fault(
            &mut state,
            FaultOperation::Rollback,
            &deployment.baseline.function,
        )?;
        let function = &deployment.baseline.function;
        let model = state.function_mut(function)?;
        let invalid =
            |what: &str| DeployError::Rejected(format!("the baseline of {function} names {what}"));
        let stable_version = parse_version(&deployment.baseline.stable_version)
            .filter(|v| model.settings(*v) == Some(&deployment.baseline.settings))
            .ok_or_else(|| invalid("a version or settings this fleet does not have"))?;
        let canary = match &deployment.baseline.canary {
            Some((v, w)) => Some((
                parse_version(v)
                    .filter(|v| model.settings(*v).is_some())
                    .ok_or_else(|| invalid("an unknown canary version"))?,
                *w,
            )),
            None => None,
        };
        let canary_version = parse_version(&deployment.canary_version).unwrap_or(0);
        if model.routing.newest_version() > canary_version {
            return Err(DeployError::Rejected(format!(
                "{function} was deployed again after version {canary_version}; roll that back first"
            )));
        }
        model.route(
            now,
            Routing {
                stable_version,
                canary,
            },
        );
        if let Some(record) = state.deployments.get_mut(&deployment.improvement_id) {
            record.rolled_back = true;
        }
        Ok(())
    }

    /// A deploy here changes everything or nothing: what it left is its whole deployment,
    /// rolled back.
    async fn undo_deploy(
        &self,
        improvement_id: &ImprovementId,
        function: &ComponentId,
    ) -> Result<Option<FunctionState>, DeployError> {
        let deployment = self
            .lock()
            .deployments
            .get(improvement_id)
            .map(|r| r.deployment.clone())
            .filter(|d| &d.baseline.function == function);
        let Some(deployment) = deployment else {
            return Ok(None);
        };
        self.rollback(&deployment).await?;
        Ok(Some(deployment.baseline))
    }
}

#[cfg(test)]
mod tests;
