//! Whether a function's timeouts cluster in time or spread with its traffic.
//!
//! The window is cut into the metric periods (1 minute for an emergency cycle, 5 for a
//! routine one). If timeouts hit a fixed share of requests, the `T` timeouts fall into the
//! periods in proportion to their invocations: period `i` gets `Binomial(T, wᵢ)` of them,
//! `wᵢ` its share of the invocations (a period the metric has not reported yet counts as an
//! average one; with no traffic data every period weighs the same). A period is **hot** when
//! its count is improbable under that: `P(X ≥ observed) ≤ α / periods` (Bonferroni, so on
//! spread timeouts the chance of any hot period is at most α). The timeouts **cluster** when
//! at least [`TIMEOUT_CLUSTER_MIN`] were seen and hot periods hold at least
//! [`TIMEOUT_CLUSTER_SHARE`] of them. Adjacent hot periods are reported as one window.
//!
//! Spread timeouts say the function is too slow for its timeout on ordinary requests (more
//! memory, a longer timeout); clustered ones say something happened in those windows (a
//! slow dependency, a burst of heavy requests): worth naming in the evidence either way.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::cycle::TimeWindow;
use crate::stats::binomial_sf;

/// Fewer timeouts than this are not judged: one incident's three or four lines would be
/// called a cluster, and one incident is not a pattern.
pub const TIMEOUT_CLUSTER_MIN: usize = 10;

/// The share of the timeouts hot periods must hold for the timeouts to cluster: most of
/// them, so a spread baseline with one bad minute is still "spread".
pub const TIMEOUT_CLUSTER_SHARE: f64 = 0.5;

/// The family-wise false-alarm rate of calling a period hot when timeouts follow traffic.
pub const TIMEOUT_CLUSTER_ALPHA: f64 = 0.01;

/// The most clustered windows reported.
const MAX_WINDOWS: usize = 5;

/// Adjacent hot periods: one window where timeouts concentrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeoutWindow {
    /// Its start.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Its end.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Timeouts in it.
    pub timeouts: u64,
    /// Timeouts expected in it had they followed traffic.
    pub expected: f64,
}

/// How a function's timeouts lie in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeoutPattern {
    /// Timeouts judged (one per request).
    pub timeouts: u64,
    /// Periods of the span judged.
    pub periods: u64,
    /// Whether they cluster.
    pub clustered: bool,
    /// The share of them in hot periods.
    pub clustered_share: f64,
    /// The hot windows, most timeouts first (at most 5).
    pub windows: Vec<TimeoutWindow>,
}

/// The pattern of `timeouts` (instants) over `span` cut in `period`s, with `traffic`
/// (period start, invocations); none with fewer than [`TIMEOUT_CLUSTER_MIN`] timeouts in
/// the span or a span shorter than two periods.
pub fn timeout_pattern(
    timeouts: &[OffsetDateTime],
    traffic: &[(OffsetDateTime, f64)],
    span: TimeWindow,
    period: Duration,
) -> Option<TimeoutPattern> {
    if period <= Duration::ZERO || span.end <= span.start {
        return None;
    }
    let n = usize::try_from(((span.end - span.start) / period).ceil() as i64).ok()?;
    if n < 2 {
        return None;
    }
    let index = |t: OffsetDateTime| -> Option<usize> {
        (t >= span.start && t < span.end)
            .then(|| ((t - span.start) / period).floor() as usize)
            .filter(|i| *i < n)
    };
    let mut observed = vec![0_u64; n];
    for t in timeouts {
        if let Some(i) = index(*t) {
            observed[i] += 1;
        }
    }
    let total: u64 = observed.iter().sum();
    if total < TIMEOUT_CLUSTER_MIN as u64 {
        return None;
    }
    let mut invocations: Vec<Option<f64>> = vec![None; n];
    for (t, v) in traffic {
        if let Some(i) = index(*t)
            && v.is_finite()
            && *v >= 0.0
        {
            *invocations[i].get_or_insert(0.0) += v;
        }
    }
    let reported_sum: f64 = invocations.iter().flatten().sum();
    let weights: Vec<f64> = if reported_sum > 0.0 {
        let average = reported_sum / invocations.iter().flatten().count() as f64;
        invocations.iter().map(|v| v.unwrap_or(average)).collect()
    } else {
        vec![1.0; n]
    };
    let weight_sum: f64 = weights.iter().sum();
    let threshold = TIMEOUT_CLUSTER_ALPHA / n as f64;
    let hot: Vec<bool> = observed
        .iter()
        .zip(&weights)
        .map(|(&o, &w)| {
            o > 0 && binomial_sf(o as f64, total as f64, (w / weight_sum).min(1.0)) <= threshold
        })
        .collect();
    let in_hot: u64 = observed
        .iter()
        .zip(&hot)
        .filter(|(_, h)| **h)
        .map(|(o, _)| o)
        .sum();
    let clustered_share = in_hot as f64 / total as f64;
    let mut windows: Vec<TimeoutWindow> = Vec::new();
    let mut i = 0;
    while i < n {
        if !hot[i] {
            i += 1;
            continue;
        }
        let first = i;
        while i < n && hot[i] {
            i += 1;
        }
        let count: u64 = observed[first..i].iter().sum();
        let weight: f64 = weights[first..i].iter().sum();
        windows.push(TimeoutWindow {
            start: span.start + period * first as u32,
            end: (span.start + period * i as u32).min(span.end),
            timeouts: count,
            expected: total as f64 * weight / weight_sum,
        });
    }
    windows.sort_by(|a, b| b.timeouts.cmp(&a.timeouts).then(a.start.cmp(&b.start)));
    windows.truncate(MAX_WINDOWS);
    Some(TimeoutPattern {
        timeouts: total,
        periods: n as u64,
        clustered: clustered_share >= TIMEOUT_CLUSTER_SHARE,
        clustered_share,
        windows,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const START: OffsetDateTime = datetime!(2026-11-21 05:00 UTC);
    const FIVE: Duration = Duration::minutes(5);

    fn span() -> TimeWindow {
        TimeWindow {
            start: START,
            end: START + Duration::hours(24),
        }
    }

    /// 288 five-minute periods of `per_period` invocations.
    fn flat(per_period: f64) -> Vec<(OffsetDateTime, f64)> {
        (0..288).map(|i| (START + FIVE * i, per_period)).collect()
    }

    #[test]
    fn timeouts_spread_with_traffic_are_spread() {
        // One timeout every 40 minutes, all day.
        let timeouts: Vec<OffsetDateTime> = (0..36)
            .map(|i| START + Duration::minutes(40 * i + 7))
            .collect();
        let p = timeout_pattern(&timeouts, &flat(100.0), span(), FIVE).unwrap();
        assert!(!p.clustered, "{p:?}");
        assert_eq!(p.clustered_share, 0.0);
        assert_eq!(p.timeouts, 36);
        assert_eq!(p.periods, 288);
    }

    #[test]
    fn a_burst_of_timeouts_clusters_and_is_reported_as_one_window() {
        // A quiet baseline (6 spread) and 30 in a quarter of an hour at 13:00.
        let mut timeouts: Vec<OffsetDateTime> = (0..6)
            .map(|i| START + Duration::hours(4 * i + 1) + Duration::minutes(2))
            .collect();
        let burst = START + Duration::hours(8);
        timeouts.extend((0..30).map(|i| burst + Duration::seconds(30 * i)));
        let p = timeout_pattern(&timeouts, &flat(100.0), span(), FIVE).unwrap();
        assert!(p.clustered, "{p:?}");
        assert!((p.clustered_share - 30.0 / 36.0).abs() < 1e-9);
        assert_eq!(p.windows.len(), 1);
        assert_eq!(p.windows[0].start, burst);
        assert_eq!(p.windows[0].end, burst + Duration::minutes(15));
        assert_eq!(p.windows[0].timeouts, 30);
    }

    #[test]
    fn timeouts_that_follow_a_traffic_peak_are_spread() {
        // Traffic ×200 for an hour; the timeouts follow it at the same rate.
        let mut traffic = flat(10.0);
        for (t, v) in &mut traffic {
            if (START + Duration::hours(12)..START + Duration::hours(13)).contains(t) {
                *v = 2000.0;
            }
        }
        let mut timeouts: Vec<OffsetDateTime> = Vec::new();
        for (i, (t, v)) in traffic.iter().enumerate() {
            // 1 % of requests, at deterministic instants.
            let n = (v / 100.0) as i64 + i64::from(i % 10 == 0);
            timeouts.extend((0..n).map(|k| *t + Duration::seconds(10 * k + 1)));
        }
        let p = timeout_pattern(&timeouts, &traffic, span(), FIVE).unwrap();
        assert!(!p.clustered, "{p:?}");
        // The same timeouts judged against flat traffic do cluster: the traffic matters.
        let q = timeout_pattern(&timeouts, &flat(10.0), span(), FIVE).unwrap();
        assert!(q.clustered, "{q:?}");
    }

    #[test]
    fn periods_the_metric_has_not_reported_count_as_average() {
        // Logs arrive before metrics: the last quarter hour has timeouts and no metric yet.
        let mut traffic = flat(100.0);
        traffic.truncate(285);
        let timeouts: Vec<OffsetDateTime> = (0..40)
            .map(|i| START + Duration::minutes(36 * i + 30))
            .collect();
        assert!(*timeouts.last().unwrap() >= START + FIVE * 285);
        let p = timeout_pattern(&timeouts, &traffic, span(), FIVE).unwrap();
        assert!(!p.clustered, "{p:?}");
        assert!(p.windows.is_empty(), "{p:?}");
    }

    #[test]
    fn too_few_timeouts_or_a_too_short_span_are_not_judged() {
        let few: Vec<OffsetDateTime> = (0..9).map(|i| START + Duration::seconds(i)).collect();
        assert_eq!(timeout_pattern(&few, &flat(1.0), span(), FIVE), None);
        let short = TimeWindow {
            start: START,
            end: START + FIVE,
        };
        let many: Vec<OffsetDateTime> = (0..50).map(|i| START + Duration::seconds(i)).collect();
        assert_eq!(timeout_pattern(&many, &[], short, FIVE), None);
        // Outside the span: not counted.
        let outside: Vec<OffsetDateTime> =
            (0..50).map(|i| START - Duration::minutes(i + 1)).collect();
        assert_eq!(timeout_pattern(&outside, &flat(1.0), span(), FIVE), None);
    }

    #[test]
    fn without_traffic_every_period_weighs_the_same() {
        let timeouts: Vec<OffsetDateTime> = (0..20).map(|i| START + Duration::seconds(i)).collect();
        let p = timeout_pattern(&timeouts, &[], span(), FIVE).unwrap();
        assert!(p.clustered);
        assert!((p.windows[0].expected - 20.0 / 288.0).abs() < 1e-9);
    }
}
