//! deploy, monitor, promote and rollback (R10–R12): ship the validated settings as a canary,
//! compare it with the stable version, then promote it or restore the baseline exactly.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::Duration;
use tracing::{info, instrument, warn};

use crate::agents::{ChangeEvent, OwnerWindow};
use crate::audit::{AuditAction, AuditEvent};
use crate::change::{Change, CodeRelease, DeploySpec};
use crate::config::{Config, HaltInFlight};
use crate::cycle::TimeWindow;
use crate::error::{ErrorType, StableError, StoreError, TelemetryError};
use crate::ids::ImprovementId;
use crate::improvement::{
    DeployOutcome, DeployStatus, ImprovementItem, LatencyReport, MetricVerdict, MonitorReport,
    PromoteOutcome, PromoteStatus, QuantileIntervals, SuccessLatency, Verdict,
};
use crate::peers::{Announced, Dependents};
use crate::ports::{
    Clock, DeployError, Deployer, HaltState, HaltSwitch, MetricRecord, MetricSink, RollbackHeal,
    RollbackHealError, Telemetry, Unit,
};
use crate::records::{ImprovementRecord, ImprovementStatus};
use crate::stats::{
    RateTest, alpha_spent, proportion_ratio_test, quantile_interval_levels, rate_test,
    relative_change, wilson_interval,
};
use crate::telemetry::{DurationQuery, MetricName, Quantiles, TelemetryQuery, VersionTotals};
use crate::transition::{Recorder, Transition};

/// Why a canary step failed.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The item lacks what this step needs (a validation, a deployment …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Lambda refused the change.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Telemetry failed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StableError for CanaryError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::InvalidInput(_) => ErrorType::InvalidInput,
            Self::Deploy(DeployError::Unavailable(_)) => ErrorType::Retryable,
            Self::Deploy(DeployError::Rejected(_)) => ErrorType::DeployRejected,
            Self::Telemetry(e) => e.error_type(),
            Self::Store(e) => e.error_type(),
        }
    }
}

/// The ports the canary steps use.
#[derive(Clone, Copy)]
pub struct CanaryDeps<'a> {
    /// Lambda.
    pub deployer: &'a dyn Deployer,
    /// Metrics per version.
    pub telemetry: &'a dyn Telemetry,
    /// The halt switch.
    pub halt: &'a dyn HaltSwitch,
    /// The time.
    pub clock: &'a dyn Clock,
}

/// What the item ships: the validated settings, or its code patch onto the code it was
/// judged against with the settings unchanged.
fn deploy_spec(item: &ImprovementItem) -> Result<DeploySpec, CanaryError> {
    let validation = item.validation.as_ref().ok_or_else(|| {
        CanaryError::InvalidInput("validation: the item was not validated".into())
    })?;
    let settings = validation.after.clone().ok_or_else(|| {
        CanaryError::InvalidInput("validation.after: no validated settings to deploy".into())
    })?;
    match item.generated.as_ref().map(|g| &g.proposal.change) {
        Some(Change::CodePatch { files, .. }) => {
            let base = validation.code_base.clone().ok_or_else(|| {
                CanaryError::InvalidInput(
                    "validation.code_base: a code patch without the code it was judged against"
                        .into(),
                )
            })?;
            if validation.held_for_review || !base.is_deliverable() {
                return Err(CanaryError::InvalidInput(format!(
                    "a code patch to {} code is held for review, never deployed",
                    base.runtime.as_deref().unwrap_or("unknown-runtime")
                )));
            }
            Ok(DeploySpec::Code {
                settings,
                release: CodeRelease {
                    files: files.clone(),
                    base,
                },
            })
        }
        _ => Ok(DeploySpec::Config(settings)),
    }
}

/// The most times one deploy is deferred: each round is about nine Step Functions history
/// events, and the inline Map keeps every item's in the execution's 25,000-event history
/// (10 items × 200 rounds × 9 = 18,000).
pub const MAX_DEFERRALS: u32 = 200;

/// Deploys the validated settings as a canary, unless halted, a dry run, the component's
/// owner says not now (`window`), or (when the owner did not decide) traffic is high. A
/// deploy deferred for `DEPLOY_MAX_DEFER_SECONDS` since its first deferral, or
/// [`MAX_DEFERRALS`] times, is given up: nothing deployed, `skipped`, so neither an agent
/// that always says "not now" nor constant traffic holds the cycle open.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn deploy(
    deps: CanaryDeps<'_>,
    config: &Config,
    item: &ImprovementItem,
    window: &OwnerWindow,
) -> Result<DeployOutcome, CanaryError> {
    let interval = config.monitor_interval_seconds;
    let outcome = |status, reason: String| DeployOutcome {
        status,
        deployment: None,
        wait_until: None,
        reason,
        monitor_interval_seconds: interval,
        deferred_since: None,
        deferrals: 0,
    };
    let spec = deploy_spec(item)?;
    if let Some(halt) = deps.halt.halt_state().await? {
        return Ok(outcome(
            DeployStatus::Halted,
            format!("halt switch is on ({}: {})", halt.actor, halt.reason),
        ));
    }
    if item.dry_run {
        return Ok(outcome(
            DeployStatus::Skipped,
            "dry run: nothing deployed".into(),
        ));
    }
    let function = &item.opportunity.component;
    let now = deps.clock.now();
    let defer = |reason: String, wait_until: time::OffsetDateTime| {
        let earlier = item
            .deploy
            .as_ref()
            .filter(|d| d.status == DeployStatus::Deferred);
        let since = earlier.and_then(|d| d.deferred_since).unwrap_or(now);
        let deferrals = earlier.map_or(0, |d| d.deferrals);
        let give_up_at = since + Duration::seconds(i64::from(config.deploy_max_defer_seconds));
        if deferrals >= MAX_DEFERRALS || (deferrals > 0 && now >= give_up_at) {
            let mut skipped = outcome(
                DeployStatus::Skipped,
                format!(
                    "deferred {deferrals} time(s) since {} (limit: {} s by \
                     DEPLOY_MAX_DEFER_SECONDS, or {MAX_DEFERRALS} times): nothing deployed; a \
                     later cycle analyses afresh; last: {reason}",
                    crate::clock::rfc3339(since),
                    config.deploy_max_defer_seconds
                ),
            );
            skipped.deferred_since = Some(since);
            skipped.deferrals = deferrals;
            return skipped;
        }
        let mut deferred = outcome(DeployStatus::Deferred, reason);
        // The last try is at the limit, so a deploy is never given up before it.
        deferred.wait_until = Some(wait_until.min(give_up_at).max(now));
        deferred.deferred_since = Some(since);
        deferred.deferrals = deferrals + 1;
        deferred
    };
    let note = match window {
        OwnerWindow::Later { wait_until, reason } => {
            return Ok(defer(reason.clone(), *wait_until));
        }
        OwnerWindow::Now(reason) => Some(reason.clone()),
        OwnerWindow::Own(note) => {
            let per_minute = invocations_per_minute(deps, item, now).await?;
            if per_minute > config.low_traffic_invocations_per_minute {
                let reason = with_note(
                    note.as_deref(),
                    format!(
                        "{per_minute:.0} invocations/min is above the low-traffic threshold \
                         of {:.0}",
                        config.low_traffic_invocations_per_minute
                    ),
                );
                let retry = now + Duration::seconds(i64::from(config.deploy_defer_seconds));
                return Ok(defer(reason, retry));
            }
            note.clone()
        }
    };
    let deployment = deps
        .deployer
        .deploy_canary(
            &item.improvement_id(),
            function,
            &spec,
            config.canary_weight,
        )
        .await?;
    info!(
        function = %function,
        version = %deployment.canary_version,
        weight = deployment.weight,
        "canary deployed"
    );
    Ok(DeployOutcome {
        status: DeployStatus::Deployed,
        reason: with_note(
            note.as_deref(),
            format!(
                "version {} at {:.0} % beside {}",
                deployment.canary_version,
                deployment.weight * 100.0,
                deployment.baseline.stable_version
            ),
        ),
        deployment: Some(deployment),
        wait_until: None,
        monitor_interval_seconds: interval,
        deferred_since: None,
        deferrals: 0,
    })
}

/// `text`, after the owner's note when there is one.
fn with_note(note: Option<&str>, text: String) -> String {
    match note {
        Some(note) => format!("{note}; {text}"),
        None => text,
    }
}

/// The component's invocations per minute over the last 15 minutes.
async fn invocations_per_minute(
    deps: CanaryDeps<'_>,
    item: &ImprovementItem,
    now: time::OffsetDateTime,
) -> Result<f64, CanaryError> {
    let function = &item.opportunity.component;
    let recent = TelemetryQuery {
        tenant: item.tenant_id.clone(),
        components: vec![function.clone()],
        window: TimeWindow {
            start: now - Duration::minutes(15),
            end: now,
        },
        period_seconds: 300,
    };
    let series = deps.telemetry.metric_series(&recent).await?;
    Ok(series
        .iter()
        .find(|s| s.metric == MetricName::Invocations)
        .map_or(0.0, |s| s.sum() / 15.0))
}

/// The fixed level the guardrail's own test must reach, on top of its ceilings: far below
/// any look's share of α, so a no-op canary practically never trips it.
const GUARDRAIL_P_VALUE: f64 = 1e-3;
/// The share of α the planned window may spend; the rest is kept for one extension.
const WINDOW_ALPHA_SHARE: f64 = 0.8;
/// Confidence of the reported rate intervals.
const INTERVAL_CONFIDENCE: f64 = 0.95;

/// Judges the canary against stable on counts pooled since the deploy (SPEC R11); while
/// halted, reports `halted` or `frozen` (`HALT_IN_FLIGHT`) without reading telemetry.
///
/// At each look: guardrails first (a gross error or throttle rate rolls back at once), then
/// four rates, each tested against (1 + `DEGRADATION_THRESHOLD`) × stable's at this look's
/// share of the α budget (Lan–DeMets Pocock-type spending over the window, split over the
/// metrics): errors, throttles and the share slower than the tail threshold (rare events:
/// the exact conditional Poisson test), and the share slower than stable's median (a shift
/// of every request, a common event: the Farrington–Manning score test). A latency
/// regression bought by a significantly lower error rate is accepted within
/// `LATENCY_TRADE_BOUND`. Too few canary requests at the end extend the window once, then
/// end inconclusive (stable kept). See docs/cycle.md.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn monitor(
    deps: CanaryDeps<'_>,
    config: &Config,
    item: &ImprovementItem,
) -> Result<MonitorReport, CanaryError> {
    let deployment = item
        .deploy
        .as_ref()
        .and_then(|d| d.deployment.as_ref())
        .ok_or_else(|| {
            CanaryError::InvalidInput("deploy.deployment: nothing deployed to monitor".into())
        })?;
    if let Some(halt) = deps.halt.halt_state().await? {
        return Ok(halted_report(config, &halt, deps.clock.now()));
    }
    let now = deps.clock.now();
    let function = &deployment.baseline.function;
    let versions = [
        deployment.baseline.stable_version.clone(),
        deployment.canary_version.clone(),
    ];
    let window = TimeWindow {
        start: deployment.deployed_at,
        end: now.max(deployment.deployed_at),
    };
    let pick = |totals: &[VersionTotals], version: &str| {
        totals
            .iter()
            .find(|t| t.version == version)
            .cloned()
            .unwrap_or_else(|| VersionTotals::empty(version))
    };
    let telemetry = deps.telemetry;
    let mut totals = telemetry
        .version_totals(function, &versions, &window, &DurationQuery::default())
        .await?;
    // The thresholds come from stable's pooled quantiles, known only after a first read:
    // the tail is `LATENCY_SLO_MS` or stable's p99, the body stable's median. So do the
    // interval levels of each version's p50 and p99, which depend on its requests.
    let quantiles = pick(&totals, &versions[0]).duration_ms;
    let threshold = config.latency_slo_ms.or_else(|| quantiles.map(|q| q.p99));
    let median_threshold = quantiles.map(|q| q.p50);
    let levels_of = |requests: fn(&VersionTotals) -> f64| -> Vec<f64> {
        versions
            .iter()
            .flat_map(|v| interval_levels(requests(&pick(&totals, v))))
            .flat_map(|(low, high)| [low, high])
            .collect()
    };
    let durations = DurationQuery {
        slower_than_ms: threshold.into_iter().chain(median_threshold).collect(),
        percentiles: levels_of(|t| t.invocations),
        success_percentiles: config
            .canary_success_latency
            .then(|| levels_of(|t| (t.invocations - t.errors).max(0.0))),
    };
    if quantiles.is_some() || !durations.slower_than_ms.is_empty() {
        totals = telemetry
            .version_totals(function, &versions, &window, &durations)
            .await?;
    }
    let stable = pick(&totals, &versions[0]);
    let canary = pick(&totals, &versions[1]);
    // The counts above each threshold, at the index it was asked at.
    let tail_index = threshold.map(|_| 0);
    let median_index = median_threshold.map(|_| usize::from(threshold.is_some()));

    let schedule = LookSchedule::new(config, deployment.deployed_at);
    let previous = item
        .monitor
        .as_ref()
        .map(|m| m.checked_at)
        .filter(|t| *t > deployment.deployed_at && *t < now);
    let spent_before = previous.map_or(0.0, |t| schedule.spent(config, t));
    let spent = schedule.spent(config, now);
    let tested: Vec<Rate> = [
        Some(Rate::errors(&stable, &canary)),
        Some(Rate::throttles(&stable, &canary)),
        tail_index.and_then(|k| Rate::slow(RateKind::SlowTail, &stable, &canary, k)),
        median_index.and_then(|k| Rate::slow(RateKind::SlowBody, &stable, &canary, k)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let alpha = (spent - spent_before).max(0.0) / tested.len().max(1) as f64;
    let errors_lower = tested
        .first()
        .and_then(|r| r.test(0.0))
        .is_some_and(|t| t.p_better < alpha);
    let metrics: Vec<MetricVerdict> = tested
        .iter()
        .map(|rate| rate.judge(config, alpha, errors_lower, &stable, &canary))
        .collect();

    // Promotion is decided at two data-independent points only: the first look at or after
    // the planned end, and the end of the one extension.
    let elapsed = now - deployment.deployed_at;
    let planned = schedule.window;
    let at_planned_end = elapsed >= planned;
    let at_extension_end = elapsed >= planned * 2;
    let first_at_end =
        at_planned_end && previous.is_none_or(|t| t - deployment.deployed_at < planned);
    let enough = canary.invocations >= f64::from(config.min_canary_requests);
    // Without a median share (no percentiles) only the request count can be asked for.
    let non_inferior = !tested.iter().any(|r| r.kind == RateKind::SlowBody)
        || metrics
            .iter()
            .find_map(|m| m.p_non_inferior)
            .is_some_and(|p| p < config.significance_level / 2.0);
    let convincing = enough && non_inferior;
    let degraded: Vec<&MetricVerdict> = metrics.iter().filter(|m| m.degraded).collect();
    let decided = first_at_end && (convincing || !degraded.is_empty());
    let window_over = at_extension_end || decided;
    let extended = at_planned_end && !decided;
    let (verdict, reason) = if let Some(first) = degraded.first() {
        (
            Verdict::Degraded,
            format!("{}: {}", first.metric, first.rule),
        )
    } else if window_over && convincing {
        (
            Verdict::Healthy,
            "window over: no metric worse, latency within the margin".to_owned(),
        )
    } else if at_planned_end || !enough {
        let missing = if enough {
            format!(
                "canary latency not shown within {:.0} % of stable's median share",
                config.latency_non_inferiority_margin * 100.0
            )
        } else {
            format!(
                "{:.0} canary invocations, {} needed",
                canary.invocations, config.min_canary_requests
            )
        };
        let stage = if window_over {
            ": inconclusive after the extended window, stable kept"
        } else if extended {
            ": window extended once"
        } else {
            ""
        };
        (Verdict::Inconclusive, format!("{missing}{stage}"))
    } else {
        (Verdict::Healthy, "no metric worse so far".to_owned())
    };
    info!(
        ?verdict,
        window_over,
        canary = canary.invocations,
        alpha,
        "canary checked"
    );
    Ok(MonitorReport {
        verdict,
        window_over,
        checked_at: now,
        metrics,
        reason,
        canary_requests: canary.invocations,
        stable_requests: stable.invocations,
        extended,
        alpha_spent: spent,
        latency: Some(LatencyReport {
            stable: stable.duration_ms,
            canary: canary.duration_ms,
            threshold_ms: threshold,
            median_threshold_ms: median_threshold,
            stable_intervals: quantile_intervals(&stable.percentiles, stable.invocations, 0),
            canary_intervals: quantile_intervals(&canary.percentiles, canary.invocations, 1),
            stable_successes: success_latency(&stable, 0),
            canary_successes: success_latency(&canary, 1),
        }),
    })
}

/// The levels bounding p50 and p99 of `requests` requests at [`INTERVAL_CONFIDENCE`]; both
/// (0.5, 0.5) and (0.99, 0.99) without requests, so every version asks for four levels.
fn interval_levels(requests: f64) -> [(f64, f64); 2] {
    [0.5, 0.99]
        .map(|q| quantile_interval_levels(q, requests, INTERVAL_CONFIDENCE).unwrap_or((q, q)))
}

/// The p50 and p99 intervals of the version asked for at position `index` (four levels per
/// version, in the order [`interval_levels`] gives them) from the durations read at those
/// levels; none where the source cannot tell.
fn quantile_intervals(
    percentiles: &[f64],
    requests: f64,
    index: usize,
) -> Option<QuantileIntervals> {
    let values = percentiles.get(index * 4..index * 4 + 4)?;
    (requests > 0.0).then(|| QuantileIntervals {
        p50: (values[0], values[1]),
        p99: (values[2], values[3]),
    })
}

/// The latency of the successful invocations of the version asked for at position `index`.
fn success_latency(totals: &VersionTotals, index: usize) -> Option<SuccessLatency> {
    let successes = totals.successes.as_ref()?;
    Some(SuccessLatency {
        requests: successes.requests,
        quantiles: successes.duration_ms,
        intervals: quantile_intervals(&successes.percentiles, successes.requests, index),
    })
}

/// When the α budget is spent: [`WINDOW_ALPHA_SHARE`] over the planned window, the rest over
/// one extension of the same length, each by the Pocock-type function of elapsed time. The
/// looks' times never depend on the data, so the union bound holds.
struct LookSchedule {
    deployed_at: time::OffsetDateTime,
    window: Duration,
}

impl LookSchedule {
    fn new(config: &Config, deployed_at: time::OffsetDateTime) -> Self {
        Self {
            deployed_at,
            window: Duration::seconds(i64::from(config.monitor_window_seconds.max(1))),
        }
    }

    /// The α spent by `at`.
    fn spent(&self, config: &Config, at: time::OffsetDateTime) -> f64 {
        let alpha = config.significance_level;
        let t = (at - self.deployed_at) / self.window;
        let planned = alpha_spent(WINDOW_ALPHA_SHARE * alpha, t);
        let extension = alpha_spent((1.0 - WINDOW_ALPHA_SHARE) * alpha, t - 1.0);
        planned + extension
    }
}

/// What a compared rate counts, and so how it is tested.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RateKind {
    /// Failed invocations of those that ran.
    Errors,
    /// Refused requests of all requests.
    Throttles,
    /// Invocations slower than the tail threshold (`LATENCY_SLO_MS` or stable's p99), or
    /// failed.
    SlowTail,
    /// Invocations slower than stable's median.
    SlowBody,
}

impl RateKind {
    fn metric(self) -> &'static str {
        match self {
            Self::Errors => "error_rate",
            Self::Throttles => "throttle_rate",
            Self::SlowTail => "slow_rate",
            Self::SlowBody => "above_stable_median",
        }
    }

    /// Gross failures: the guardrail applies.
    fn guarded(self) -> bool {
        matches!(self, Self::Errors | Self::Throttles)
    }

    /// The quantile (name, value) a latency regression bought by fewer errors is bounded on.
    fn traded_quantile(self) -> Option<(&'static str, QuantileOf)> {
        match self {
            Self::SlowTail => Some(("p99", |q| q.p99)),
            Self::SlowBody => Some(("p50", |q| q.p50)),
            Self::Errors | Self::Throttles => None,
        }
    }
}

/// Reads one quantile.
type QuantileOf = fn(&Quantiles) -> f64;

/// One rate compared between the versions.
struct Rate {
    kind: RateKind,
    baseline_events: f64,
    baseline_total: f64,
    canary_events: f64,
    canary_total: f64,
}

impl Rate {
    fn errors(stable: &VersionTotals, canary: &VersionTotals) -> Self {
        Self {
            kind: RateKind::Errors,
            baseline_events: stable.errors,
            baseline_total: stable.invocations,
            canary_events: canary.errors,
            canary_total: canary.invocations,
        }
    }

    fn throttles(stable: &VersionTotals, canary: &VersionTotals) -> Self {
        Self {
            kind: RateKind::Throttles,
            baseline_events: stable.throttles,
            baseline_total: stable.invocations + stable.throttles,
            canary_events: canary.throttles,
            canary_total: canary.invocations + canary.throttles,
        }
    }

    /// The share of invocations slower than the threshold asked at `index`; none when a
    /// source cannot tell. Above the tail threshold a failure counts as slow too (a request
    /// not served well, as an SLO counts it): a version whose failures are capped at the
    /// timeout must not look fast beside one that serves them slowly.
    fn slow(
        kind: RateKind,
        stable: &VersionTotals,
        canary: &VersionTotals,
        index: usize,
    ) -> Option<Self> {
        let events = |t: &VersionTotals| -> Option<f64> {
            let slow = *t.slower_than.get(index)?;
            Some(match kind {
                RateKind::SlowTail => (slow + t.errors).min(t.invocations),
                _ => slow,
            })
        };
        Some(Self {
            kind,
            baseline_events: events(stable)?,
            baseline_total: stable.invocations,
            canary_events: events(canary)?,
            canary_total: canary.invocations,
        })
    }

    fn rate(events: f64, total: f64) -> f64 {
        if total > 0.0 {
            (events / total).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn test(&self, margin: f64) -> Option<RateTest> {
        let test = match self.kind {
            RateKind::SlowBody => proportion_ratio_test,
            RateKind::Errors | RateKind::Throttles | RateKind::SlowTail => rate_test,
        };
        test(
            self.canary_events,
            self.canary_total,
            self.baseline_events,
            self.baseline_total,
            margin,
        )
    }

    /// The guardrail: a gross rate on enough requests, strongly significant.
    fn guardrail(&self, config: &Config) -> Option<String> {
        let canary = Self::rate(self.canary_events, self.canary_total);
        let baseline = Self::rate(self.baseline_events, self.baseline_total);
        let fires = self.kind.guarded()
            && self.canary_total >= f64::from(config.guardrail_min_requests)
            && canary >= config.guardrail_error_rate
            && canary >= config.guardrail_ratio * baseline
            && self
                .test(0.0)
                .is_some_and(|t| t.p_worse < GUARDRAIL_P_VALUE);
        fires.then(|| {
            format!(
                "guardrail: canary {:.1} % of {:.0} ≥ {:.1} % and ≥ {}× stable's {:.2} %",
                canary * 100.0,
                self.canary_total,
                config.guardrail_error_rate * 100.0,
                config.guardrail_ratio,
                baseline * 100.0
            )
        })
    }

    fn judge(
        &self,
        config: &Config,
        alpha: f64,
        errors_lower: bool,
        stable: &VersionTotals,
        canary_totals: &VersionTotals,
    ) -> MetricVerdict {
        let baseline = Self::rate(self.baseline_events, self.baseline_total);
        let canary = Self::rate(self.canary_events, self.canary_total);
        let test = self.test(config.degradation_threshold);
        let significant = test.is_some_and(|t| t.p_worse < alpha);
        let guardrail = self.guardrail(config);
        let (degraded, rule) = if let Some(rule) = guardrail {
            (true, rule)
        } else if let Some((name, quantile)) = self
            .kind
            .traded_quantile()
            .filter(|_| significant && errors_lower)
        {
            // Failures turned into slower successes: judged on both, within the bound. The
            // successes' own quantiles where both versions have them: stable's failures,
            // often capped at the timeout, would otherwise loosen the bound.
            let successes = |t: &VersionTotals| t.successes.as_ref().map(|s| s.duration_ms);
            let (of, stable_q, canary_q) = match (successes(stable), successes(canary_totals)) {
                (Some(s), Some(c)) => ("successes' ", Some(s), Some(c)),
                _ => ("", stable.duration_ms, canary_totals.duration_ms),
            };
            let bound = 1.0 + config.latency_trade_bound;
            match (
                stable_q.as_ref().map(quantile),
                canary_q.as_ref().map(quantile),
            ) {
                (Some(s), Some(c)) if c <= s * bound => (
                    false,
                    format!(
                        "slower, but errors significantly lower and {of}{name} {c:.0} ms within {bound}× stable's {s:.0} ms"
                    ),
                ),
                _ => (
                    true,
                    format!("slower beyond {bound}× stable's {of}{name}, though errors are lower"),
                ),
            }
        } else if significant {
            (
                true,
                format!(
                    "worse than stable by more than {:.0} %: p = {:.2e} < α = {alpha:.2e}",
                    config.degradation_threshold * 100.0,
                    test.map_or(1.0, |t| t.p_worse)
                ),
            )
        } else {
            (false, "not significantly worse".to_owned())
        };
        // The only rate whose upper bound is attainable at low traffic: a share near one half.
        let p_non_inferior = (self.kind == RateKind::SlowBody && self.canary_total > 0.0)
            .then(|| self.test(config.latency_non_inferiority_margin))
            .flatten()
            .map(|t| {
                let bound = (1.0 + config.latency_non_inferiority_margin) * baseline;
                if canary > bound { 1.0 } else { 1.0 - t.p_worse }
            });
        MetricVerdict {
            p_non_inferior,
            metric: self.kind.metric().to_owned(),
            baseline,
            canary,
            delta: relative_change(baseline, canary),
            p_value: test.map(|t| t.p_worse),
            p_better: test.map(|t| t.p_better),
            degraded,
            baseline_events: self.baseline_events,
            baseline_total: self.baseline_total,
            canary_events: self.canary_events,
            canary_total: self.canary_total,
            baseline_interval: wilson_interval(
                self.baseline_events,
                self.baseline_total,
                INTERVAL_CONFIDENCE,
            ),
            canary_interval: wilson_interval(
                self.canary_events,
                self.canary_total,
                INTERVAL_CONFIDENCE,
            ),
            alpha,
            rule,
        }
    }
}

/// Shifts all traffic to the canary, unless the halt switch is on (checked right before).
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn promote(
    deps: CanaryDeps<'_>,
    item: &ImprovementItem,
) -> Result<PromoteOutcome, CanaryError> {
    let deployment = deployment_of(item)?;
    if let Some(halt) = deps.halt.halt_state().await? {
        info!(actor = %halt.actor, "promotion refused: halted");
        return Ok(PromoteOutcome {
            status: PromoteStatus::Halted,
            reason: format!(
                "halt switch is on ({}: {}): not promoted",
                halt.actor, halt.reason
            ),
        });
    }
    deps.deployer.promote(deployment).await?;
    info!(version = %deployment.canary_version, "canary promoted");
    Ok(PromoteOutcome {
        status: PromoteStatus::Promoted,
        reason: format!("version {} takes 100 %", deployment.canary_version),
    })
}

/// A look that found the halt switch on: the verdict `HALT_IN_FLIGHT` asks for, and why.
fn halted_report(config: &Config, halt: &HaltState, now: time::OffsetDateTime) -> MonitorReport {
    let (verdict, effect) = match config.halt_in_flight {
        HaltInFlight::Rollback => (Verdict::Halted, "rolled back to stable"),
        HaltInFlight::Freeze => (
            Verdict::Frozen,
            "frozen at its traffic split, neither watched nor promoted",
        ),
    };
    info!(actor = %halt.actor, ?verdict, "canary watch stopped: halted");
    MonitorReport {
        verdict,
        window_over: false,
        checked_at: now,
        metrics: Vec::new(),
        reason: format!(
            "halt switch is on ({}: {}); HALT_IN_FLIGHT={}: canary {effect}",
            halt.actor,
            halt.reason,
            config.halt_in_flight.as_str()
        ),
        canary_requests: 0.0,
        stable_requests: 0.0,
        extended: false,
        alpha_spent: 0.0,
        latency: None,
    }
}

/// Restores the baseline exactly; without a deployment (the deploy failed part-way), undoes
/// what the deploy left. False when there was nothing to restore.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn rollback(
    deployer: &dyn Deployer,
    item: &ImprovementItem,
) -> Result<bool, CanaryError> {
    let Some(deployment) = item.deploy.as_ref().and_then(|d| d.deployment.as_ref()) else {
        let undone = deployer
            .undo_deploy(&item.improvement_id(), &item.opportunity.component)
            .await?;
        match &undone {
            Some(state) => info!(version = %state.stable_version, "failed deploy undone"),
            None => info!("no deployment, and nothing a failed deploy left"),
        }
        return Ok(undone.is_some());
    };
    deployer.rollback(deployment).await?;
    info!(version = %deployment.baseline.stable_version, "baseline restored");
    Ok(true)
}

/// Why an improvement is rolled back.
#[derive(Debug, Clone, Copy)]
pub enum RollbackCause<'a> {
    /// The cycle acts on the monitor's last verdict: degraded, halted, or too little evidence.
    Verdict,
    /// A person or agent asked.
    Requested {
        /// Who.
        actor: &'a str,
        /// Why.
        reason: &'a str,
    },
}

/// What a recorded rollback did.
#[derive(Debug, Clone)]
pub struct RolledBack {
    /// Whether a deployment was there to restore.
    pub restored: bool,
    /// The audit event written.
    pub event: AuditEvent,
}

/// The ports a recorded rollback uses.
#[derive(Clone, Copy)]
pub struct RollbackPorts<'a> {
    /// Lambda.
    pub deployer: &'a dyn Deployer,
    /// Where the rollback (and each delivery to a dependent agent) is recorded.
    pub recorder: Recorder<'a>,
    /// Where a requested rollback is counted.
    pub metrics: &'a dyn MetricSink,
    /// The agents told of the rollback.
    pub dependents: Dependents<'a>,
}

/// Restores the baseline of `item`'s deployment and records it: audit `rolled_back` (or
/// `inconclusive` when the window ended without evidence) with the function as it runs now,
/// the improvement's status, the "Improvement Rolled Back" notification, and, when a
/// deployment was restored, every dependent agent told (deliveries audited as the
/// rollback's actor). A requested rollback is also counted in `ImprovementsRolledBack`; a
/// cycle counts its own in its summary.
pub async fn roll_back_recorded(
    ports: RollbackPorts<'_>,
    item: &ImprovementItem,
    before: Option<ImprovementStatus>,
    cause: RollbackCause<'_>,
) -> Result<RolledBack, CanaryError> {
    let RollbackPorts {
        deployer,
        recorder,
        metrics,
        dependents,
    } = ports;
    let restored = match rollback(deployer, item).await {
        Ok(restored) => restored,
        Err(e) => {
            let actor = match cause {
                RollbackCause::Verdict => None,
                RollbackCause::Requested { actor, .. } => Some(actor),
            };
            record_rollback_failure(deployer, recorder, item, actor, "the rollback", &e).await;
            return Err(e);
        }
    };
    let mut transition = match cause {
        RollbackCause::Verdict => {
            let monitor = item.monitor.as_ref();
            let detail = match monitor {
                Some(m) if m.verdict == Verdict::Halted => {
                    format!("{}; baseline restored: {restored}", m.reason)
                }
                Some(m) => format!(
                    "monitor verdict {:?} ({}); baseline restored: {restored}",
                    m.verdict, m.reason
                ),
                None => format!("baseline restored: {restored}"),
            };
            // Too little evidence is not a failure of the change: recorded apart.
            let inconclusive =
                monitor.is_some_and(|m| m.verdict == Verdict::Inconclusive && m.window_over);
            let action = if inconclusive {
                AuditAction::Inconclusive
            } else {
                AuditAction::RolledBack
            };
            Transition::by_step(action, detail)
        }
        RollbackCause::Requested { actor, reason } => Transition {
            actor: actor.to_owned(),
            ..Transition::by_step(
                AuditAction::RolledBack,
                format!("rolled back by {actor}: {reason}; baseline restored: {restored}"),
            )
        },
    };
    if transition.action == AuditAction::RolledBack {
        transition.notify = Some("Improvement Rolled Back");
    }
    transition.before = before.map(|s| serde_json::json!({"status": s.as_str()}));
    transition.after = function_state_for_audit(deployer, item).await;
    let event = recorder.record(item, transition).await?;
    if let RollbackCause::Requested { .. } = cause {
        metrics.record(MetricRecord {
            name: "ImprovementsRolledBack",
            unit: Unit::Count,
            value: 1.0,
            dimensions: Vec::new(),
            timestamp: event.at,
        });
    }
    if restored {
        let change = Announced {
            event: ChangeEvent::RolledBack,
            actor: &event.actor,
            detail: &event.detail,
        };
        dependents.notify(recorder, item, change).await;
    }
    Ok(RolledBack { restored, event })
}

/// What a requested rollback of a recorded improvement came to.
#[derive(Debug, Clone)]
pub enum RequestedRollback {
    /// Rolled back now.
    Done {
        /// Whether a deployment was there to restore.
        restored: bool,
    },
    /// It was rolled back before; nothing done.
    AlreadyRolledBack,
    /// Its status allows no rollback (never deployed, rejected, …); nothing done.
    NotRollbackable(ImprovementStatus),
}

/// Rolls back a recorded improvement on request (MCP `rollback_improvement`, the health
/// pass's `RollBack` heal): a deployed, frozen, promoted or `rollback_failed` one is rolled
/// back through [`roll_back_recorded`] (dependents told, as `actor`); an already rolled back
/// one is left as it is.
pub async fn roll_back_requested(
    ports: RollbackPorts<'_>,
    record: &ImprovementRecord,
    actor: &str,
    reason: &str,
) -> Result<RequestedRollback, CanaryError> {
    match record.status {
        status if status.can_be_rolled_back() => {}
        ImprovementStatus::RolledBack => return Ok(RequestedRollback::AlreadyRolledBack),
        other => return Ok(RequestedRollback::NotRollbackable(other)),
    }
    let done = roll_back_recorded(
        ports,
        &record.item,
        Some(record.status),
        RollbackCause::Requested { actor, reason },
    )
    .await?;
    Ok(RequestedRollback::Done {
        restored: done.restored,
    })
}

/// The longest actor and reason a [`RollbackOrder`] carries.
pub const MAX_ORDER_TEXT: usize = 1000;

/// A requested rollback to carry out elsewhere (the health pass's heal, handed to the
/// rollback function): which improvement, who asked, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackOrder {
    /// The improvement to roll back.
    pub improvement_id: ImprovementId,
    /// Who asked (`selfbuild:health`, a key's actor): the audit events name them.
    pub actor: String,
    /// Why, for the audit trail and the notifications.
    pub reason: String,
}

impl RollbackOrder {
    /// The order with its actor and reason checked (one line each, not empty, at most
    /// [`MAX_ORDER_TEXT`] characters); the error names the field.
    pub fn checked(self) -> Result<Self, crate::text::TextError> {
        let actor = crate::text::single_line("actor", &self.actor, MAX_ORDER_TEXT)?;
        let reason = crate::text::single_line("reason", &self.reason, MAX_ORDER_TEXT)?;
        Ok(Self {
            actor,
            reason,
            ..self
        })
    }
}

/// Carries out `order` here: reads the improvement's record and rolls it back through
/// [`roll_back_requested`]. The text says what was done; nothing left to undo (no record,
/// already rolled back, not rollbackable) is a [`RollbackHealError::NothingToUndo`].
pub async fn roll_back_ordered(
    ports: RollbackPorts<'_>,
    order: &RollbackOrder,
) -> Result<String, RollbackHealError> {
    let id = &order.improvement_id;
    let record = ports
        .recorder
        .improvements
        .get_improvement(id)
        .await?
        .ok_or_else(|| {
            RollbackHealError::NothingToUndo(format!("improvement {id} has no record"))
        })?;
    let outcome = roll_back_requested(ports, &record, &order.actor, &order.reason).await?;
    match outcome {
        RequestedRollback::Done { restored } => {
            Ok(format!("rolled back {id}; baseline restored: {restored}"))
        }
        RequestedRollback::AlreadyRolledBack => Err(RollbackHealError::NothingToUndo(format!(
            "{id} was already rolled back"
        ))),
        RequestedRollback::NotRollbackable(status) => {
            Err(RollbackHealError::NothingToUndo(format!(
                "{id} is {}; only a deployed, frozen, promoted or rollback_failed improvement \
                 can be rolled back",
                status.as_str()
            )))
        }
    }
}

/// The rollback heal carried out in this process (the offline pass; the rollback function
/// runs the same [`roll_back_ordered`] on an order handed to it).
#[derive(Clone, Copy)]
pub struct RollBackHere<'a>(pub RollbackPorts<'a>);

#[async_trait]
impl RollbackHeal for RollBackHere<'_> {
    async fn roll_back(&self, order: &RollbackOrder) -> Result<String, RollbackHealError> {
        roll_back_ordered(self.0, order).await
    }
}

/// Audits a rollback (or the undo of a failed deploy) that failed, with the function as the
/// failure left it: status `rollback_failed`, for a person or a retry to finish. A failed
/// audit write is logged, never put in the rollback's error's place.
pub async fn record_rollback_failure(
    deployer: &dyn Deployer,
    recorder: Recorder<'_>,
    item: &ImprovementItem,
    actor: Option<&str>,
    what: &str,
    error: &CanaryError,
) {
    let left = function_state_for_audit(deployer, item).await;
    let mut transition = Transition::by_step(
        AuditAction::RollbackFailed,
        format!("{what} failed ({}): {error}", error.error_type()),
    );
    if let Some(actor) = actor {
        transition.actor = actor.to_owned();
    }
    transition.before = left;
    if let Err(e) = recorder.record(item, transition).await {
        warn!(error = %crate::text::Escaped(&e), "rollback failure not audited");
    }
}

/// The item's function as deployed now, for an audit event's before/after; none when it
/// cannot be read (the change the event records has happened either way).
pub async fn function_state_for_audit(
    deployer: &dyn Deployer,
    item: &ImprovementItem,
) -> Option<serde_json::Value> {
    match deployer.function_state(&item.opportunity.component).await {
        Ok(state) => serde_json::to_value(state).ok(),
        Err(e) => {
            warn!(error = %e, "function state not read for the audit");
            None
        }
    }
}

fn deployment_of(
    item: &ImprovementItem,
) -> Result<&crate::deployment::CanaryDeployment, CanaryError> {
    item.deploy
        .as_ref()
        .and_then(|d| d.deployment.as_ref())
        .ok_or_else(|| CanaryError::InvalidInput("deploy.deployment: nothing deployed".into()))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use time::OffsetDateTime;
    use time::macros::datetime;

    use super::*;
    use crate::change::LambdaSettings;
    use crate::clock::FixedClock;
    use crate::deployment::{CanaryDeployment, FunctionState};
    use crate::error::StoreError;
    use crate::ids::ComponentId;
    use crate::ports::HaltState;
    use crate::telemetry::{LogRow, MetricSeries, Quantiles, SuccessDurations};
    use crate::testing::StaticDeployer;

    const DEPLOYED: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

    /// Fixed pooled totals per version; slow counts (above the tail, above the median) only
    /// for the thresholds asked for.
    struct Versions {
        stable: VersionTotals,
        canary: VersionTotals,
        /// Thresholds asked for, per read.
        asked: std::sync::Mutex<Vec<Vec<f64>>>,
    }

    /// Totals with half the invocations above stable's median (no shift of the body).
    fn totals(version: &str, invocations: f64, errors: f64, p99: f64, slow: f64) -> VersionTotals {
        with_body(version, invocations, errors, p99, slow, invocations / 2.0)
    }

    fn with_body(
        version: &str,
        invocations: f64,
        errors: f64,
        p99: f64,
        slow: f64,
        above_median: f64,
    ) -> VersionTotals {
        VersionTotals {
            version: version.into(),
            invocations,
            errors,
            throttles: 0.0,
            duration_ms: Some(Quantiles {
                p50: p99 / 3.0,
                p90: p99 / 1.5,
                p99,
            }),
            slower_than: vec![slow, above_median],
            percentiles: Vec::new(),
            successes: None,
        }
    }

    #[async_trait]
    impl Telemetry for Versions {
        async fn metric_series(
            &self,
            _: &TelemetryQuery,
        ) -> Result<Vec<MetricSeries>, TelemetryError> {
            Ok(vec![])
        }
        async fn version_totals(
            &self,
            _: &ComponentId,
            versions: &[String],
            _: &TimeWindow,
            durations: &DurationQuery,
        ) -> Result<Vec<VersionTotals>, TelemetryError> {
            self.asked
                .lock()
                .unwrap()
                .push(durations.slower_than_ms.clone());
            // A duration at each level: level × 1000 ms, so a test can tell which was read.
            let strip = |mut t: VersionTotals| {
                t.slower_than.truncate(durations.slower_than_ms.len());
                t.percentiles = durations.percentiles.iter().map(|l| l * 1000.0).collect();
                match &durations.success_percentiles {
                    Some(levels) => {
                        if let Some(s) = t.successes.as_mut() {
                            s.percentiles = levels.iter().map(|l| l * 100.0).collect();
                        }
                    }
                    None => t.successes = None,
                }
                t
            };
            assert_eq!(versions, ["1", "2"]);
            Ok(vec![strip(self.stable.clone()), strip(self.canary.clone())])
        }
        async fn error_rows(
            &self,
            _: &TelemetryQuery,
            _: usize,
        ) -> Result<Vec<LogRow>, TelemetryError> {
            Ok(vec![])
        }
    }

    struct NotHalted;

    #[async_trait]
    impl HaltSwitch for NotHalted {
        async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
            Ok(None)
        }
        async fn set_halt(&self, _: &HaltState) -> Result<(), StoreError> {
            Ok(())
        }
        async fn clear_halt(&self) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    fn item() -> ImprovementItem {
        let settings = LambdaSettings {
            memory_mb: 512,
            timeout_seconds: 10,
            reserved_concurrency: None,
            environment: Default::default(),
        };
        let function = ComponentId::parse("orders").unwrap();
        let json = serde_json::json!({
            "cycle_id": "c1", "tenant_id": "acme", "mode": "routine",
            "opportunity": {"id": "orders:timeouts", "rank": 1, "component": "orders", "tenant_id": null,
                "kind": "timeouts", "evidence": [], "expected_gain": 0.9, "affected_requests": 1.0,
                "impact_score": 0.9, "priority": "high", "current": null, "top_errors": []},
        });
        let mut item: ImprovementItem = serde_json::from_value(json).unwrap();
        item.deploy = Some(DeployOutcome {
            status: DeployStatus::Deployed,
            deployment: Some(CanaryDeployment {
                code: None,
                improvement_id: "c1-1".parse().unwrap(),
                baseline: FunctionState {
                    code_sha256: None,
                    function,
                    settings: settings.clone(),
                    alias: "live".into(),
                    stable_version: "1".into(),
                    canary: None,
                },
                settings,
                canary_version: "2".into(),
                weight: 0.1,
                deployed_at: DEPLOYED,
            }),
            wait_until: None,
            reason: String::new(),
            monitor_interval_seconds: 300,
            deferred_since: None,
            deferrals: 0,
        });
        item
    }

    async fn check_with(
        stable: VersionTotals,
        canary: VersionTotals,
        minutes_after: i64,
        previous_look: Option<i64>,
    ) -> MonitorReport {
        let telemetry = Versions {
            stable,
            canary,
            asked: Default::default(),
        };
        let clock = FixedClock(DEPLOYED + Duration::minutes(minutes_after));
        let deps = CanaryDeps {
            deployer: &StaticDeployer(None),
            telemetry: &telemetry,
            halt: &NotHalted,
            clock: &clock,
        };
        let mut item = item();
        item.monitor = previous_look.map(|m| MonitorReport {
            verdict: Verdict::Healthy,
            window_over: false,
            checked_at: DEPLOYED + Duration::minutes(m),
            metrics: vec![],
            reason: String::new(),
            canary_requests: 0.0,
            stable_requests: 0.0,
            extended: false,
            alpha_spent: 0.0,
            latency: None,
        });
        let report = monitor(deps, &Config::default(), &item).await.unwrap();
        // Without an SLO: one read for stable's quantiles, one for the counts above its
        // p99 and its median.
        let asked = telemetry.asked.lock().unwrap().clone();
        let latency = report.latency.as_ref().unwrap();
        let stable = latency.stable.unwrap();
        assert_eq!(asked, [vec![], vec![stable.p99, stable.p50]]);
        // Each version's p50 and p99 intervals, at the levels its own requests allow.
        let stable_requests = report.stable_requests;
        let (low, high) = quantile_interval_levels(0.5, stable_requests, 0.95).unwrap();
        let intervals = latency.stable_intervals.unwrap();
        assert_eq!(intervals.p50, (low * 1000.0, high * 1000.0));
        let canary = latency.canary_intervals.unwrap();
        let (low, high) = quantile_interval_levels(0.99, report.canary_requests, 0.95).unwrap();
        assert_eq!(canary.p99, (low * 1000.0, high * 1000.0));
        report
    }

    fn metric<'r>(report: &'r MonitorReport, name: &str) -> &'r MetricVerdict {
        report.metrics.iter().find(|m| m.metric == name).unwrap()
    }

    #[tokio::test]
    async fn a_canary_as_good_as_stable_is_healthy_and_promoted_after_the_window() {
        let stable = totals("1", 54_000.0, 540.0, 200.0, 540.0);
        let canary = totals("2", 6_000.0, 62.0, 201.0, 63.0);
        let report = check_with(stable.clone(), canary.clone(), 10, Some(5)).await;
        assert_eq!(report.verdict, Verdict::Healthy, "{report:#?}");
        assert!(!report.window_over);
        let errors = metric(&report, "error_rate");
        assert!((errors.canary - 62.0 / 6000.0).abs() < 1e-12, "{errors:?}");
        assert_eq!((errors.canary_events, errors.canary_total), (62.0, 6000.0));
        let (lo, hi) = errors.canary_interval.unwrap();
        assert!(lo < errors.canary && errors.canary < hi);
        let over = check_with(stable, canary, 60, Some(55)).await;
        assert!(over.window_over);
        assert_eq!(over.verdict, Verdict::Healthy, "{over:#?}");
    }

    #[tokio::test]
    async fn a_failing_canary_on_an_error_free_stable_is_rolled_back_at_the_first_look() {
        // 79 % timeouts against none on stable: no relative change exists, the counts decide.
        let stable = totals("1", 270.0, 0.0, 900.0, 3.0);
        let canary = totals("2", 30.0, 24.0, 3000.0, 24.0);
        let report = check_with(stable, canary, 5, None).await;
        assert_eq!(report.verdict, Verdict::Degraded, "{report:#?}");
        let errors = metric(&report, "error_rate");
        assert!(errors.degraded && errors.delta.is_none());
        assert!(errors.rule.starts_with("guardrail"), "{}", errors.rule);
        assert!(report.reason.starts_with("error_rate: guardrail"));
    }

    #[tokio::test]
    async fn a_moderately_worse_canary_is_caught_by_the_sequential_test() {
        // 3 % errors against 1 %: below the guardrail, significant on the counts.
        let stable = totals("1", 27_000.0, 270.0, 200.0, 270.0);
        let canary = totals("2", 3_000.0, 90.0, 200.0, 30.0);
        let report = check_with(stable, canary, 30, Some(25)).await;
        let errors = metric(&report, "error_rate");
        assert!(!errors.rule.starts_with("guardrail"), "{}", errors.rule);
        assert!(errors.degraded, "{errors:#?}");
        assert!(errors.p_value.unwrap() < errors.alpha);
        assert_eq!(report.verdict, Verdict::Degraded);
    }

    #[tokio::test]
    async fn a_shift_of_every_request_at_low_traffic_is_caught_on_the_median() {
        // 6 requests/min, memory cut: every request 17 % slower. Above stable's p99 the canary
        // has 4 of 72 (too few to tell from 1 %), above its median 57 of 72.
        let stable = with_body("1", 650.0, 1.0, 3000.0, 7.0, 325.0);
        let canary = with_body("2", 72.0, 0.0, 3300.0, 3.0, 57.0);
        let report = check_with(stable.clone(), canary, 120, Some(115)).await;
        assert!(!metric(&report, "slow_rate").degraded);
        let body = metric(&report, "above_stable_median");
        assert!(body.degraded, "{body:#?}");
        assert_eq!(report.verdict, Verdict::Degraded);
        // The same share as stable's is no evidence at all.
        let same = with_body("2", 72.0, 0.0, 3000.0, 1.0, 36.0);
        let report = check_with(stable, same, 120, Some(115)).await;
        assert_eq!(report.verdict, Verdict::Healthy, "{report:#?}");
    }

    #[tokio::test]
    async fn noise_within_the_margin_is_not_a_regression() {
        // 8 % more errors than stable is inside DEGRADATION_THRESHOLD (10 %).
        let stable = totals("1", 54_000.0, 540.0, 200.0, 540.0);
        let canary = totals("2", 6_000.0, 65.0, 200.0, 60.0);
        let report = check_with(stable, canary, 60, Some(55)).await;
        assert!(!metric(&report, "error_rate").degraded);
        assert_eq!(report.verdict, Verdict::Healthy);
    }

    #[tokio::test]
    async fn failures_turned_into_slower_successes_are_judged_on_both() {
        // A longer timeout: 12 % timeouts (capped at 3 s) become 3–5 s successes. In the
        // tail a failure counts as slow, so the canary's slow successes are no worse there.
        let stable = with_body("1", 54_000.0, 6_480.0, 3000.0, 0.0, 27_000.0);
        let canary = with_body("2", 6_000.0, 0.0, 4_800.0, 720.0, 3_540.0);
        let report = check_with(stable.clone(), canary, 60, Some(55)).await;
        let tail = metric(&report, "slow_rate");
        assert!(!tail.degraded && tail.p_value.unwrap() > 0.1, "{tail:#?}");
        // The body is significantly slower, bought by significantly fewer errors.
        let body = metric(&report, "above_stable_median");
        assert!(body.p_value.unwrap() < 1e-6, "{body:?}");
        assert!(!body.degraded, "{body:#?}");
        assert!(
            body.rule.contains("errors significantly lower"),
            "{}",
            body.rule
        );
        assert_eq!(report.verdict, Verdict::Healthy, "{report:#?}");
        // Beyond the bound (2× stable's p50 by default) it is a regression after all.
        let too_slow = with_body("2", 6_000.0, 0.0, 7_000.0, 720.0, 3_540.0);
        let report = check_with(stable, too_slow, 60, Some(55)).await;
        assert!(metric(&report, "above_stable_median").degraded);
        assert_eq!(report.verdict, Verdict::Degraded);
    }

    #[tokio::test]
    async fn the_trade_is_bounded_on_the_successes_latency_where_known() {
        // Stable's 12 % timeouts lift its p50 over all requests to 1 s; its successes' p50
        // is 600 ms. The canary serves everything, its successes' p50 at 1.6 s.
        let successes = |requests: f64, p50: f64| {
            Some(SuccessDurations {
                requests,
                duration_ms: Quantiles {
                    p50,
                    p90: p50 * 2.0,
                    p99: p50 * 3.0,
                },
                percentiles: Vec::new(),
            })
        };
        let mut stable = with_body("1", 54_000.0, 6_480.0, 3000.0, 0.0, 27_000.0);
        let mut canary = with_body("2", 6_000.0, 0.0, 4_800.0, 720.0, 3_540.0);
        // Over all requests 1.6 s is within 2× stable's 1 s: the trade holds.
        let report = check_with(stable.clone(), canary.clone(), 60, Some(55)).await;
        assert!(!metric(&report, "above_stable_median").degraded);
        // Over successes it is 2.7× stable's 600 ms: beyond the bound.
        stable.successes = successes(47_520.0, 600.0);
        canary.successes = successes(6_000.0, 1_600.0);
        let report = check_with(stable, canary, 60, Some(55)).await;
        let body = metric(&report, "above_stable_median");
        assert!(body.degraded, "{body:#?}");
        assert!(
            body.rule.contains("stable's successes' p50"),
            "{}",
            body.rule
        );
        assert_eq!(report.verdict, Verdict::Degraded);
        // The report shows both versions' successes, with intervals at their own levels.
        let latency = report.latency.unwrap();
        let canary = latency.canary_successes.unwrap();
        assert_eq!((canary.requests, canary.quantiles.p50), (6_000.0, 1_600.0));
        let (low, high) = quantile_interval_levels(0.5, 6_000.0, 0.95).unwrap();
        assert_eq!(canary.intervals.unwrap().p50, (low * 100.0, high * 100.0));
        assert_eq!(latency.stable_successes.unwrap().quantiles.p50, 600.0);
    }

    #[tokio::test]
    async fn too_few_canary_requests_extend_the_window_once_then_keep_stable() {
        let stable = totals("1", 360.0, 0.0, 200.0, 4.0);
        let canary = totals("2", 40.0, 0.0, 200.0, 0.0);
        let at_end = check_with(stable.clone(), canary.clone(), 60, Some(55)).await;
        assert_eq!(at_end.verdict, Verdict::Inconclusive);
        assert!(!at_end.window_over && at_end.extended, "{at_end:#?}");
        let after = check_with(stable, canary, 120, Some(115)).await;
        assert_eq!(after.verdict, Verdict::Inconclusive);
        assert!(after.window_over);
        assert!(after.reason.contains("stable kept"), "{}", after.reason);
    }

    #[tokio::test]
    async fn promotion_needs_latency_shown_within_the_margin_at_a_decision_point() {
        // 70 canary requests, 40 of them above stable's median (57 %): not significantly
        // worse, but not shown below 62.5 % either.
        let stable = with_body("1", 630.0, 0.0, 900.0, 6.0, 315.0);
        let canary = with_body("2", 70.0, 0.0, 900.0, 1.0, 40.0);
        let at_end = check_with(stable.clone(), canary.clone(), 60, Some(55)).await;
        assert_eq!(at_end.verdict, Verdict::Inconclusive, "{at_end:#?}");
        assert!(at_end.extended && !at_end.window_over);
        assert!(
            at_end.reason.contains("not shown within 25 %"),
            "{}",
            at_end.reason
        );
        let body = metric(&at_end, "above_stable_median");
        assert!(
            !body.degraded && body.p_non_inferior.unwrap() > 0.025,
            "{body:#?}"
        );
        // Convincing in the middle of the extension is no decision point: keep watching.
        let convincing = with_body("2", 140.0, 0.0, 900.0, 1.0, 70.0);
        let mid = check_with(stable.clone(), convincing.clone(), 90, Some(85)).await;
        assert_eq!(mid.verdict, Verdict::Inconclusive);
        assert!(!mid.window_over);
        let end = check_with(stable.clone(), convincing, 120, Some(115)).await;
        assert_eq!(end.verdict, Verdict::Healthy, "{end:#?}");
        assert!(end.window_over);
        let still = check_with(stable, canary, 120, Some(115)).await;
        assert_eq!(still.verdict, Verdict::Inconclusive);
        assert!(still.window_over && still.reason.contains("stable kept"));
    }

    #[tokio::test]
    async fn the_alpha_budget_is_spent_over_the_looks_and_never_exceeded() {
        let config = Config::default();
        let schedule = LookSchedule::new(&config, DEPLOYED);
        let at = |m: i64| schedule.spent(&config, DEPLOYED + Duration::minutes(m));
        let looks: Vec<f64> = (0..=24).map(|k| at(k * 5)).collect();
        assert!(looks.windows(2).all(|w| w[1] >= w[0]));
        assert!((at(60) - 0.8 * config.significance_level).abs() < 1e-12);
        assert!((at(120) - config.significance_level).abs() < 1e-12);
        assert!((at(600) - config.significance_level).abs() < 1e-12);
    }
}
