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
    let find = |version: &str, name: MetricName| {
        series
            .iter()
            .find(|s| s.version.as_deref() == Some(version) && s.metric == name)
    };
    // Per-minute rates, pairing numerator and invocations by timestamp (a minute missing
    // from either series is skipped, not misaligned).
    let rates = |version: &str, numerator: MetricName, with_numerator: bool| -> Vec<f64> {
        let invocations: std::collections::BTreeMap<_, f64> =
            find(version, MetricName::Invocations)
                .map(|s| s.points.iter().map(|p| (p.timestamp, p.value)).collect())
                .unwrap_or_default();
        find(version, numerator)
            .map(|s| s.points.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let i = *invocations.get(&p.timestamp)?;
                let whole = if with_numerator { i + p.value } else { i };
                (whole > 0.0).then(|| p.value / whole)
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
    use crate::telemetry::{DataPoint, ErrorRow};
    use crate::testing::StaticDeployer;

    const DEPLOYED: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);

    /// Per-minute series: stable fails 1 %, the canary `canary_error_rate`; the canary's
    /// Errors series misses minute 3 (a source that drops points).
    struct Versions {
        canary_error_rate: f64,
    }

    fn points(minutes: i64, value: impl Fn(i64) -> f64, skip: Option<i64>) -> Vec<DataPoint> {
        (0..minutes)
            .filter(|m| Some(*m) != skip)
            .map(|m| DataPoint {
                timestamp: DEPLOYED + Duration::minutes(m),
                value: value(m),
            })
            .collect()
    }

    #[async_trait]
    impl Telemetry for Versions {
        async fn metric_series(
            &self,
            _: &TelemetryQuery,
        ) -> Result<Vec<MetricSeries>, TelemetryError> {
            Ok(vec![])
        }
        async fn version_series(
            &self,
            function: &ComponentId,
            _: &[String],
            _: &[MetricName],
            _: &TimeWindow,
            _: u32,
        ) -> Result<Vec<MetricSeries>, TelemetryError> {
            let series = |version: &str, metric, points| MetricSeries {
                component: function.clone(),
                metric,
                version: Some(version.to_owned()),
                points,
            };
            let rate = self.canary_error_rate;
            Ok(vec![
                series("1", MetricName::Invocations, points(10, |_| 900.0, None)),
                series(
                    "1",
                    MetricName::Errors,
                    points(10, |m| 9.0 + (m % 2) as f64, None),
                ),
                series(
                    "1",
                    MetricName::DurationP99,
                    points(10, |m| 200.0 + m as f64, None),
                ),
                series("2", MetricName::Invocations, points(10, |_| 100.0, None)),
                // Minute 3 missing: pairing by position would shift every later minute.
                series(
                    "2",
                    MetricName::Errors,
                    points(10, |m| 100.0 * rate + (m % 2) as f64, Some(3)),
                ),
                series(
                    "2",
                    MetricName::DurationP99,
                    points(10, |m| 201.0 + m as f64, None),
                ),
            ])
        }
        async fn error_rows(
            &self,
            _: &TelemetryQuery,
            _: usize,
        ) -> Result<Vec<ErrorRow>, TelemetryError> {
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
                improvement_id: "c1-1".into(),
                baseline: FunctionState {
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
        });
        item
    }

    async fn check(canary_error_rate: f64, minutes_after: i64) -> MonitorReport {
        let telemetry = Versions { canary_error_rate };
        let clock = FixedClock(DEPLOYED + Duration::minutes(minutes_after));
        let deps = CanaryDeps {
            deployer: &StaticDeployer(None),
            telemetry: &telemetry,
            halt: &NotHalted,
            clock: &clock,
        };
        monitor(deps, &Config::default(), &item()).await.unwrap()
    }

    #[tokio::test]
    async fn a_canary_as_good_as_stable_is_healthy_and_promoted_after_the_window() {
        let report = check(0.01, 10).await;
        assert_eq!(report.verdict, Verdict::Healthy, "{report:#?}");
        assert!(!report.window_over);
        let error_rate = &report.metrics[0];
        assert_eq!(error_rate.metric, "error_rate");
        assert!((error_rate.canary - 0.015).abs() < 0.002, "{error_rate:?}");
        assert!(check(0.01, 61).await.window_over);
    }

    #[tokio::test]
    async fn a_significantly_worse_canary_is_degraded() {
        let report = check(0.2, 10).await;
        assert_eq!(report.verdict, Verdict::Degraded);
        let error_rate = &report.metrics[0];
        assert!(error_rate.degraded);
        assert!(error_rate.p_value.unwrap() < 0.05);
        assert!(
            !report.metrics[1].degraded,
            "p99 within 10 %: {:?}",
            report.metrics[1]
        );
    }
}
