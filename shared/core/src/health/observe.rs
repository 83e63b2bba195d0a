//! A registered component's [`ComponentFact`] from its metric series and selfbuild's
//! improvement records: pure, so every adapter that reads series observes alike.

use std::time::Duration;

use time::OffsetDateTime;

use super::{ComponentFact, SelfChange};
use crate::records::ImprovementRecord;
use crate::telemetry::{MetricName, MetricSeries};

/// The fact of `component` at `now`: its error rate over the last `recent` (none without
/// invocations then), and when its errors rose over `threshold`: the first period of the
/// unbroken run of periods over it that reaches the latest period with invocations.
pub fn component_fact(
    component: &str,
    series: &[MetricSeries],
    now: OffsetDateTime,
    recent: Duration,
    threshold: f64,
    last_change: Option<SelfChange>,
) -> ComponentFact {
    let points = |metric: MetricName| {
        series
            .iter()
            .filter(|s| s.component.as_str() == component && s.metric == metric)
            .flat_map(|s| s.points.iter())
            .map(|p| (p.timestamp, p.value))
            .collect::<Vec<_>>()
    };
    let invocations = points(MetricName::Invocations);
    let errors = points(MetricName::Errors);
    let errors_at = |at: OffsetDateTime| {
        errors
            .iter()
            .filter(|(t, _)| *t == at)
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    // Per period with invocations, oldest first: (start, error rate).
    let mut periods: Vec<(OffsetDateTime, f64)> = invocations
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(at, n)| (*at, errors_at(*at) / n))
        .collect();
    periods.sort_by_key(|(at, _)| *at);
    let since = now - recent;
    let (recent_errors, recent_invocations) = invocations
        .iter()
        .filter(|(at, _)| *at >= since && *at <= now)
        .fold((0.0, 0.0), |(e, n), (at, v)| (e + errors_at(*at), n + v));
    let error_rate = (recent_invocations > 0.0).then(|| recent_errors / recent_invocations);
    let errors_began_at = periods
        .iter()
        .rev()
        .take_while(|(_, rate)| *rate > threshold)
        .last()
        .map(|(at, _)| *at);
    ComponentFact {
        component: component.to_owned(),
        exists: true,
        error_rate,
        errors_began_at,
        last_change,
    }
}

/// selfbuild's latest change still live on `component`: the newest record of it that can be
/// rolled back (deployed, frozen, promoted, rollback failed), as deployed at its last update.
pub fn last_change(records: &[ImprovementRecord], component: &str) -> Option<SelfChange> {
    records
        .iter()
        .filter(|r| r.component == component && r.status.can_be_rolled_back())
        .max_by_key(|r| r.updated_at)
        .map(|r| SelfChange {
            improvement_id: r.improvement_id.to_string(),
            deployed_at: r.updated_at,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ComponentId;
    use crate::telemetry::DataPoint;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

    fn series(metric: MetricName, values: &[f64]) -> MetricSeries {
        MetricSeries {
            component: ComponentId::parse("orders").unwrap(),
            metric,
            version: None,
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| DataPoint {
                    timestamp: NOW - time::Duration::minutes(values.len() as i64 - i as i64),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn the_rate_is_recent_and_the_errors_began_where_the_run_over_the_threshold_starts() {
        // Six minutes: fine, over, fine, over, over, over (the last three are the run).
        let s = [
            series(MetricName::Invocations, &[100.0; 6]),
            series(MetricName::Errors, &[0.0, 50.0, 0.0, 10.0, 20.0, 30.0]),
        ];
        let fact = component_fact("orders", &s, NOW, Duration::from_secs(120), 0.05, None);
        assert_eq!(fact.errors_began_at, Some(NOW - time::Duration::minutes(3)));
        // The last two minutes: 50 errors of 200.
        assert_eq!(fact.error_rate, Some(0.25));
        // At the threshold is not over it: no run.
        let s = [
            series(MetricName::Invocations, &[100.0; 2]),
            series(MetricName::Errors, &[5.0, 5.0]),
        ];
        let fact = component_fact("orders", &s, NOW, Duration::from_secs(120), 0.05, None);
        assert_eq!((fact.errors_began_at, fact.error_rate), (None, Some(0.05)));
        // No invocations: no rate observed.
        let fact = component_fact("orders", &[], NOW, Duration::from_secs(120), 0.05, None);
        assert_eq!((fact.errors_began_at, fact.error_rate), (None, None));
    }
}
