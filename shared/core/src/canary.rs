//! deploy, monitor, promote and rollback (R10–R12): ship the validated settings as a canary,
//! compare it with the stable version, then promote it or restore the baseline exactly.

use time::Duration;
use tracing::{info, instrument, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::cycle::TimeWindow;
use crate::error::{StableError, StoreError, TelemetryError};
use crate::improvement::{
    DeployOutcome, DeployStatus, ImprovementItem, MetricVerdict, MonitorReport, Verdict,
};
use crate::ports::{DeployError, Deployer, HaltSwitch, Telemetry};
use crate::stats::{mann_whitney_u, mean, relative_change};
use crate::telemetry::{MetricName, MetricSeries, TelemetryQuery};

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
    fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::Deploy(DeployError::Unavailable(_)) => "Retryable",
            Self::Deploy(DeployError::Rejected(_)) => "DeployRejected",
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

/// Deploys the validated settings as a canary, unless halted, a dry run, or traffic is high.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn deploy(
    deps: CanaryDeps<'_>,
    config: &Config,
    item: &ImprovementItem,
) -> Result<DeployOutcome, CanaryError> {
    let interval = config.monitor_interval_seconds;
    let outcome = |status, reason: String| DeployOutcome {
        status,
        deployment: None,
        wait_until: None,
        reason,
        monitor_interval_seconds: interval,
    };
    let after = item
        .validation
        .as_ref()
        .and_then(|v| v.after.clone())
        .ok_or_else(|| {
            CanaryError::InvalidInput("validation.after: no validated settings to deploy".into())
        })?;
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
    let per_minute = series
        .iter()
        .find(|s| s.metric == MetricName::Invocations)
        .map_or(0.0, |s| s.sum() / 15.0);
    if per_minute > config.low_traffic_invocations_per_minute {
        let mut deferred = outcome(
            DeployStatus::Deferred,
            format!(
                "{per_minute:.0} invocations/min is above the low-traffic threshold of {:.0}",
                config.low_traffic_invocations_per_minute
            ),
        );
        deferred.wait_until = Some(now + Duration::seconds(i64::from(config.deploy_defer_seconds)));
        return Ok(deferred);
    }
    let deployment = deps
        .deployer
        .deploy_canary(
            &item.improvement_id(),
            function,
            &after,
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
        reason: format!(
            "version {} at {:.0} % beside {}",
            deployment.canary_version,
            deployment.weight * 100.0,
            deployment.baseline.stable_version
        ),
        deployment: Some(deployment),
        wait_until: None,
        monitor_interval_seconds: interval,
    })
}

/// Compares canary and stable since the deploy, per minute.
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
    let now = deps.clock.now();
    let stable = deployment.baseline.stable_version.clone();
    let canary = deployment.canary_version.clone();
    let window = TimeWindow {
        start: deployment.deployed_at,
        end: now,
    };
    let metrics = [
        MetricName::Invocations,
        MetricName::Errors,
        MetricName::Throttles,
        MetricName::DurationP99,
    ];
    let series = deps
        .telemetry
        .version_series(
            &deployment.baseline.function,
            &[stable.clone(), canary.clone()],
            &metrics,
            &window,
            60,
        )
        .await?;
    let pick = |version: &str, name: MetricName| -> Vec<f64> {
        series
            .iter()
            .find(|s| s.version.as_deref() == Some(version) && s.metric == name)
            .map(MetricSeries::values)
            .unwrap_or_default()
    };
    let rates = |version: &str, numerator: MetricName, with_numerator: bool| -> Vec<f64> {
        let part = pick(version, numerator);
        let invocations = pick(version, MetricName::Invocations);
        part.iter()
            .zip(&invocations)
            .filter_map(|(p, i)| {
                let whole = if with_numerator { i + p } else { *i };
                (whole > 0.0).then(|| p / whole)
            })
            .collect()
    };
    let compare = |metric: &str, baseline: Vec<f64>, candidate: Vec<f64>| {
        let b = mean(&baseline).unwrap_or(0.0);
        let c = mean(&candidate).unwrap_or(0.0);
        let delta = relative_change(b, c);
        let p_value = mann_whitney_u(&baseline, &candidate).map(|t| t.p_value);
        let degraded = delta.is_some_and(|d| d > config.degradation_threshold)
            && p_value.is_some_and(|p| p < config.significance_level);
        MetricVerdict {
            metric: metric.to_owned(),
            baseline: b,
            canary: c,
            delta,
            p_value,
            degraded,
        }
    };
    let verdicts = vec![
        compare(
            "error_rate",
            rates(&stable, MetricName::Errors, false),
            rates(&canary, MetricName::Errors, false),
        ),
        compare(
            "p99_ms",
            pick(&stable, MetricName::DurationP99),
            pick(&canary, MetricName::DurationP99),
        ),
        compare(
            "throttle_rate",
            rates(&stable, MetricName::Throttles, true),
            rates(&canary, MetricName::Throttles, true),
        ),
    ];
    let samples = pick(&canary, MetricName::Invocations).len();
    let verdict = if verdicts.iter().any(|v| v.degraded) {
        Verdict::Degraded
    } else if samples < 3 {
        Verdict::Inconclusive
    } else {
        Verdict::Healthy
    };
    let window_over =
        now >= deployment.deployed_at + Duration::seconds(i64::from(config.monitor_window_seconds));
    info!(?verdict, window_over, samples, "canary checked");
    Ok(MonitorReport {
        verdict,
        window_over,
        checked_at: now,
        metrics: verdicts,
    })
}

/// Shifts all traffic to the canary.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn promote(deployer: &dyn Deployer, item: &ImprovementItem) -> Result<(), CanaryError> {
    let deployment = deployment_of(item)?;
    deployer.promote(deployment).await?;
    info!(version = %deployment.canary_version, "canary promoted");
    Ok(())
}

/// Restores the baseline exactly; a no-op when nothing was deployed.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn rollback(
    deployer: &dyn Deployer,
    item: &ImprovementItem,
) -> Result<bool, CanaryError> {
    let Some(deployment) = item.deploy.as_ref().and_then(|d| d.deployment.as_ref()) else {
        warn!("rollback with nothing deployed");
        return Ok(false);
    };
    deployer.rollback(deployment).await?;
    info!(version = %deployment.baseline.stable_version, "baseline restored");
    Ok(true)
}

fn deployment_of(
    item: &ImprovementItem,
) -> Result<&crate::deployment::CanaryDeployment, CanaryError> {
    item.deploy
        .as_ref()
        .and_then(|d| d.deployment.as_ref())
        .ok_or_else(|| CanaryError::InvalidInput("deploy.deployment: nothing deployed".into()))
}
