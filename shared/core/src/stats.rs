//! Statistics for canary monitoring: the exact conditional test of two event rates on pooled
//! counts, Wilson intervals, the α-spending schedule of repeated looks, the Mann–Whitney U
//! test, percentiles, means and relative change.
//!
//! Every function drops non-finite samples (NaN, ±infinity) before it looks at the data and
//! never panics; where no answer exists (too few samples, a zero baseline) it returns `None`.

use serde::{Deserialize, Serialize};

/// The fewest finite values each sample needs for [`mann_whitney_u`].
pub const MIN_SAMPLE_SIZE: usize = 3;

/// The result of a one-sided Mann–Whitney U test ("candidate tends to be greater").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U for the candidate: how many (candidate, baseline) pairs the candidate wins, ties ½.
    pub u: f64,
    /// The standardised statistic (tie-corrected, continuity-corrected); 0 when all values tie.
    pub z: f64,
    /// One-sided p-value for "candidate is stochastically greater than baseline".
    pub p_value: f64,
    /// The effect size `u / (n_baseline · n_candidate)`: P(candidate > baseline) + ½ P(tie).
    pub effect_size: f64,
    /// Finite values in the baseline sample.
    pub n_baseline: usize,
    /// Finite values in the candidate sample.
    pub n_candidate: usize,
}

/// One-sided Mann–Whitney U test that `candidate` tends to be greater than `baseline`.
///
/// Greater means worse for the metrics a canary watches (error rate, latency, throttles), so a
/// small `p_value` is evidence the candidate regressed. Ties get average ranks, the variance is
/// tie-corrected and the p-value comes from the normal approximation with continuity
/// correction (as `scipy.stats.mannwhitneyu(candidate, baseline, alternative="greater",
/// method="asymptotic")`).
///
/// Returns `None` when either sample has fewer than [`MIN_SAMPLE_SIZE`] finite values. When
/// every value in both samples is identical the variance is zero and there is no evidence
/// either way: the result is `Some` with `z = 0` and `p_value = 1`, so callers can tell "no
/// difference" from "not enough data".
pub fn mann_whitney_u(baseline: &[f64], candidate: &[f64]) -> Option<MannWhitney> {
    let baseline = finite(baseline);
    let candidate = finite(candidate);
    let (n_b, n_c) = (baseline.len(), candidate.len());
    if n_b < MIN_SAMPLE_SIZE || n_c < MIN_SAMPLE_SIZE {
        return None;
    }

    // Pool the samples, tagged with whether each value is the candidate's.
    let mut pooled: Vec<(f64, bool)> = baseline
        .iter()
        .map(|&v| (v, false))
        .chain(candidate.iter().map(|&v| (v, true)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Average ranks over runs of equal values (`==`, so -0.0 and 0.0 tie; `total_cmp`
    // keeps them adjacent). Collect the tie term Σ(t³ − t) as we go.
    let mut rank_sum_candidate = 0.0_f64;
    let mut tie_term = 0.0_f64;
    let mut start = 0;
    while start < pooled.len() {
        let value = pooled[start].0;
        let end = pooled[start..]
            .iter()
            .position(|&(v, _)| v != value)
            .map_or(pooled.len(), |offset| start + offset);
        let run = (end - start) as f64;
        // Ranks are 1-based: the run covers ranks start+1 ..= end.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let in_candidate = pooled[start..end].iter().filter(|&&(_, c)| c).count() as f64;
        rank_sum_candidate += average_rank * in_candidate;
        tie_term += run * run * run - run;
        start = end;
    }

    let n_b_f = n_b as f64;
    let n_c_f = n_c as f64;
    let n = n_b_f + n_c_f;
    let u = rank_sum_candidate - n_c_f * (n_c_f + 1.0) / 2.0;
    let pairs = n_b_f * n_c_f;
    let mean_u = pairs / 2.0;
    let variance = pairs / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));

    let (z, p_value) = if variance > 0.0 && variance.is_finite() {
        let z = (u - mean_u - 0.5) / variance.sqrt();
        (z, normal_sf(z))
    } else {
        (0.0, 1.0)
    };

    Some(MannWhitney {
        u,
        z,
        p_value,
        effect_size: u / pairs,
        n_baseline: n_b,
        n_candidate: n_c,
    })
}

/// The `p`th percentile (`p` in `0..=100`) of the finite values, interpolating linearly
/// between the closest ranks (NumPy's default `linear` method).
///
/// Returns `None` for no finite values or a `p` outside `0..=100` (including NaN).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = finite(values);
    sorted.sort_by(f64::total_cmp);
    percentile_of_sorted(&sorted, p)
}

/// [`percentile`] of values already finite and sorted ascending (no copy, no sort: for
/// several percentiles of one large set).
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if !(0.0..=100.0).contains(&p) || sorted.is_empty() {
        return None;
    }
    let last = sorted.len() - 1;
    let rank = p / 100.0 * last as f64;
    // `rank` is in 0..=last, so the casts stay in range; `min` guards rounding.
    let lower = (rank.floor() as usize).min(last);
    let upper = (rank.ceil() as usize).min(last);
    let (low, high) = (sorted[lower], sorted[upper]);
    if lower == upper || low == high {
        return Some(low);
    }
    let fraction = rank - lower as f64;
    // `low + f·(high − low)` could overflow for values near ±f64::MAX; this form cannot.
    Some(low * (1.0 - fraction) + high * fraction)
}

/// The arithmetic mean of the finite values, or `None` when there are none.
pub fn mean(values: &[f64]) -> Option<f64> {
    let finite = finite(values);
    if finite.is_empty() {
        return None;
    }
    let n = finite.len() as f64;
    let sum: f64 = finite.iter().sum();
    if sum.is_finite() {
        return Some(sum / n);
    }
    // The plain sum overflowed (values near ±f64::MAX): scale each term first.
    Some(finite.iter().map(|v| v / n).sum())
}

/// The relative change from `baseline` to `candidate`: `(candidate − baseline) / |baseline|`.
///
/// Positive means the candidate is larger, whatever the baseline's sign. Rules at the edges:
/// both zero gives `Some(0.0)` (no change); a zero baseline with a non-zero candidate gives
/// `None` (the change is unbounded: compare absolute values instead); non-finite inputs or a
/// non-finite result give `None`.
pub fn relative_change(baseline: f64, candidate: f64) -> Option<f64> {
    if !baseline.is_finite() || !candidate.is_finite() {
        return None;
    }
    if baseline == 0.0 {
        return (candidate == 0.0).then_some(0.0);
    }
    let change = (candidate - baseline) / baseline.abs();
    change.is_finite().then_some(change)
}

/// The finite values of `values`, in order.
fn finite(values: &[f64]) -> Vec<f64> {
    values.iter().copied().filter(|v| v.is_finite()).collect()
}

/// The standard normal survival function `P(Z > z) = ½·erfc(z/√2)`.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The exact conditional test that a canary's event rate exceeds the baseline's by more than
/// a relative margin, on pooled counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateTest {
    /// One-sided p-value for "canary rate > (1 + margin) × baseline rate".
    pub p_worse: f64,
    /// One-sided p-value for "canary rate < baseline rate" (no margin).
    pub p_better: f64,
}

/// Tests canary events `canary_events` out of `canary_total` against the baseline's
/// `baseline_events` out of `baseline_total`, each count treated as Poisson with the total as
/// its exposure.
///
/// Given the k = x_c + x_b events of both, x_c is Binomial(k, π) with
/// π = r·n_c ÷ (r·n_c + n_b) when the canary's rate is r times the baseline's; `p_worse` is
/// P(X ≥ x_c) at r = 1 + `margin`, `p_better` is P(X ≤ x_c) at r = 1 (as
/// `scipy.stats.binomtest(x_c, k, π, alternative=…)`). Defined when the baseline saw no
/// event (then x_c events alone can be significant); for common events (binomial counts,
/// less variable than Poisson) the test is conservative. Counts are rounded to whole events.
///
/// Returns `None` when a total is not positive or any input is not finite, or `margin` < 0.
pub fn rate_test(
    canary_events: f64,
    canary_total: f64,
    baseline_events: f64,
    baseline_total: f64,
    margin: f64,
) -> Option<RateTest> {
    if !comparable(
        canary_events,
        canary_total,
        baseline_events,
        baseline_total,
        margin,
    ) {
        return None;
    }
    let x_c = canary_events.round().clamp(0.0, canary_total.ceil());
    let x_b = baseline_events.round().clamp(0.0, baseline_total.ceil());
    let k = x_c + x_b;
    if k == 0.0 {
        return Some(RateTest {
            p_worse: 1.0,
            p_better: 1.0,
        });
    }
    let ratio = 1.0 + margin;
    let pi_worse = ratio * canary_total / (ratio * canary_total + baseline_total);
    let pi_same = canary_total / (canary_total + baseline_total);
    Some(RateTest {
        p_worse: binomial_sf(x_c, k, pi_worse),
        p_better: 1.0 - binomial_sf(x_c + 1.0, k, pi_same),
    })
}

/// The score test that a canary's share of events exceeds the baseline's by more than a
/// relative margin, for common events (binomial proportions).
///
/// Farrington–Manning: under H₀ p_c = θ·p_b the proportions are estimated by restricted
/// maximum likelihood, and z = (p̂_c − θ·p̂_b) ÷ √(p̃_c(1 − p̃_c)/n_c + θ²·p̃_b(1 − p̃_b)/n_b).
/// `p_worse` is P(Z ≥ z) at θ = 1 + `margin`, `p_better` is P(Z ≤ z) at θ = 1 (as
/// `statsmodels.stats.proportion.test_proportions_2indep(…, method="score",
/// compare="ratio", correction=False)`). Where [`rate_test`] treats counts as Poisson (right
/// for rare events, conservative for common ones), this uses the binomial variance, so a
/// shift of a share near one half is found with half the requests.
///
/// Returns `None` when a total is not positive, any input is not finite, or `margin` < 0;
/// no event on either side (or only events) is no evidence: both p-values are 1.
pub fn proportion_ratio_test(
    canary_events: f64,
    canary_total: f64,
    baseline_events: f64,
    baseline_total: f64,
    margin: f64,
) -> Option<RateTest> {
    if !comparable(
        canary_events,
        canary_total,
        baseline_events,
        baseline_total,
        margin,
    ) {
        return None;
    }
    let x_c = canary_events.clamp(0.0, canary_total);
    let x_b = baseline_events.clamp(0.0, baseline_total);
    let score = |theta: f64| -> Option<f64> {
        let (n_c, n_b) = (canary_total, baseline_total);
        // The restricted MLE of p_b: the smaller root of θN·p² + B·p + C = 0.
        let a = theta * (n_c + n_b);
        let b = -(theta * n_c + x_c + n_b + theta * x_b);
        let c = x_c + x_b;
        let p_b = (-b - (b * b - 4.0 * a * c).max(0.0).sqrt()) / (2.0 * a);
        let p_c = theta * p_b;
        let variance = p_c * (1.0 - p_c) / n_c + theta * theta * p_b * (1.0 - p_b) / n_b;
        let difference = x_c / n_c - theta * x_b / n_b;
        (variance > 0.0).then(|| difference / variance.sqrt())
    };
    let p_worse = score(1.0 + margin).map_or(1.0, normal_sf);
    let p_better = score(1.0).map_or(1.0, |z| normal_sf(-z));
    Some(RateTest { p_worse, p_better })
}

/// The percentile levels whose values bound the `q` quantile of `n` samples at
/// `confidence` (two-sided, e.g. 0.95): the order statistics at ranks n·q ± z·√(n·q(1 − q)),
/// as levels q ± z·√(q(1 − q)/n), widened outwards to whole hundredths of a percent (what
/// CloudWatch's `pNN.NN` statistics take) and clipped to [0.0001, 1]. A distribution-free
/// interval (normal approximation to the binomial count below the quantile); at the clip the
/// sample's extreme is the bound and the coverage is less than asked.
///
/// Returns `None` for `n` < 1, `q` outside (0, 1), non-finite input or a confidence outside
/// (0, 1).
pub fn quantile_interval_levels(q: f64, n: f64, confidence: f64) -> Option<(f64, f64)> {
    let valid = q.is_finite() && n.is_finite() && q > 0.0 && q < 1.0 && n >= 1.0;
    if !(valid && confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let z = normal_quantile(0.5 + confidence / 2.0);
    let half = z * (q * (1.0 - q) / n).sqrt();
    let low = ((q - half) * 10_000.0).floor() / 10_000.0;
    let high = ((q + half) * 10_000.0).ceil() / 10_000.0;
    Some((low.clamp(0.0001, 1.0), high.clamp(0.0001, 1.0)))
}

/// Inputs both rate tests can use: all finite, positive totals, a margin of at least 0.
fn comparable(
    canary_events: f64,
    canary_total: f64,
    baseline_events: f64,
    baseline_total: f64,
    margin: f64,
) -> bool {
    let inputs = [
        canary_events,
        canary_total,
        baseline_events,
        baseline_total,
        margin,
    ];
    inputs.iter().all(|v| v.is_finite())
        && margin >= 0.0
        && canary_total > 0.0
        && baseline_total > 0.0
}

/// P(X ≥ `x`) for X ~ Binomial(`n`, `p`), whole numbers `x` and `n`, through the regularised
/// incomplete beta function: P(X ≥ x) = I_p(x, n − x + 1).
pub fn binomial_sf(x: f64, n: f64, p: f64) -> f64 {
    if !(x.is_finite() && n.is_finite() && p.is_finite()) || n < 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    regularized_beta(x, n - x + 1.0, p)
}

/// The Wilson score interval for `events` out of `total` at `confidence` (e.g. 0.95);
/// `None` for no total, non-finite input or a confidence outside (0, 1).
pub fn wilson_interval(events: f64, total: f64, confidence: f64) -> Option<(f64, f64)> {
    if !(events.is_finite() && total.is_finite() && total > 0.0) {
        return None;
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let p = (events / total).clamp(0.0, 1.0);
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * total)) / (1.0 + z2 / total);
    let half = z / (1.0 + z2 / total) * (p * (1.0 - p) / total + z2 / (4.0 * total * total)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The share of `alpha` a group-sequential test may have spent by information fraction `t`
/// (0 = the first look, 1 = the planned end): the Lan–DeMets Pocock-type function
/// α·ln(1 + (e − 1)·t). Spending the increment between consecutive looks at each look keeps
/// the chance of any false alarm over all looks at or below `alpha`, whatever the looks'
/// correlation (a union bound), as long as when the looks happen does not depend on the data.
pub fn alpha_spent(alpha: f64, t: f64) -> f64 {
    if !(alpha.is_finite() && t.is_finite()) || alpha <= 0.0 || t <= 0.0 {
        return 0.0;
    }
    alpha * (1.0 + (std::f64::consts::E - 1.0) * t.min(1.0)).ln()
}

/// The standard normal quantile (inverse CDF) for `p` in (0, 1): Acklam's rational
/// approximation refined by one Halley step (relative error below 1e-9).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return match p {
            0.0 => f64::NEG_INFINITY,
            1.0 => f64::INFINITY,
            _ => f64::NAN,
        };
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step on Φ(x) − p.
    let e = 0.5 * erfc_precise(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised incomplete beta function I_x(a, b), by Lentz's continued fraction on the
/// side where it converges fast.
fn regularized_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_fraction(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    // One Lentz step with coefficient `aa`: updates c and d, returns the factor on h.
    let step = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 / nonzero(1.0 + aa * *d);
        *c = nonzero(1.0 + aa / *c);
        *d * *c
    };
    for m in 1..=10_000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        let delta = step(
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
            &mut c,
            &mut d,
        );
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// erfc to near machine precision (W. J. Cody's rational approximations are long; this uses
/// the continued fraction of the upper incomplete gamma Γ(½, x²) for |x| > 0.5 and the Taylor
/// series of erf below), for the quantile refinement.
fn erfc_precise(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let z = x.abs();
    let value = if z < 0.5 {
        // erf(z) = 2/√π Σ (−1)^n z^(2n+1) / (n! (2n + 1))
        let mut term = z;
        let mut sum = z;
        let z2 = z * z;
        for n in 1..40 {
            let n = f64::from(n);
            term *= -z2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // erfc(z) = Q(½, z²), the regularised upper incomplete gamma, by Lentz.
        let a = 0.5;
        let xx = z * z;
        let tiny = 1e-300;
        let mut b = xx + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..=300 {
            let i = f64::from(i);
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (-xx + a * xx.ln() - ln_gamma(a)).exp() * h
    };
    if x >= 0.0 { value } else { 2.0 - value }
}

/// The complementary error function, to a relative error below 1.2e-7 everywhere
/// (Numerical Recipes' `erfcc`, a Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * poly.exp();
    if x >= 0.0 { ans } else { 2.0 - ans }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `actual` is within relative tolerance `rel` of `expected`.
    fn close(actual: f64, expected: f64, rel: f64) -> bool {
        (actual - expected).abs() <= rel * expected.abs().max(f64::MIN_POSITIVE)
    }

    fn assert_close(actual: f64, expected: f64, rel: f64) {
        assert!(
            close(actual, expected, rel),
            "expected {expected}, got {actual} (rel tol {rel})"
        );
    }

    // Expected values below come from SciPy 1.17:
    // mannwhitneyu(candidate, baseline, alternative="greater", method="asymptotic",
    // use_continuity=True), and z from the same formula.

    #[test]
    fn fully_separated_candidate_is_significantly_greater() {
        let baseline = [1.0, 2.0, 3.0, 4.0, 5.0];
        let candidate = [6.0, 7.0, 8.0, 9.0, 10.0];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert_eq!(r.u, 25.0);
        assert_close(r.z, 2.506_718_245_762_048_7, 1e-12);
        assert_close(r.p_value, 0.006_092_890_177_672_406, 1e-6);
        assert_eq!(r.effect_size, 1.0);
        assert_eq!((r.n_baseline, r.n_candidate), (5, 5));
    }

    #[test]
    fn candidate_smaller_gives_p_near_one() {
        let baseline = [6.0, 7.0, 8.0, 9.0, 10.0];
        let candidate = [1.0, 2.0, 3.0, 4.0, 5.0];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert_eq!(r.u, 0.0);
        assert_close(r.p_value, 0.996_692_324_517_235_7, 1e-6);
        assert_eq!(r.effect_size, 0.0);
    }

    #[test]
    fn ties_use_average_ranks_and_corrected_variance() {
        let baseline = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0];
        let candidate = [2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert_eq!(r.u, 45.0);
        assert_close(r.z, 1.960_953_590_233_804_4, 1e-12);
        assert_close(r.p_value, 0.024_942_218_489_962_94, 1e-6);
    }

    #[test]
    fn unequal_sizes_with_overlap() {
        let baseline = [0.012, 0.015, 0.011, 0.019, 0.014, 0.013, 0.016, 0.018];
        let candidate = [0.017, 0.021, 0.016, 0.025, 0.019, 0.022];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert_eq!(r.u, 43.0);
        assert_close(r.z, 2.393_606_196_821_001, 1e-12);
        assert_close(r.p_value, 0.008_341_825_403_143_757, 1e-6);
    }

    #[test]
    fn smallest_allowed_samples() {
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]).unwrap();
        assert_eq!(r.u, 7.0);
        assert_close(r.p_value, 0.184_344_134_680_890_78, 1e-6);
    }

    #[test]
    fn realistic_latency_samples() {
        let baseline = [
            100.0, 103.0, 97.3, 91.1, 95.5, 90.1, 100.6, 113.4, 95.1, 93.8, 104.9, 103.6, 101.1,
            90.7, 99.7, 107.0, 86.6, 95.4, 81.0, 87.1, 81.6, 97.6, 87.3, 102.7, 101.6, 98.1, 74.8,
            94.6, 99.5, 101.1, 84.7, 95.2, 90.2, 91.9, 110.6, 91.9, 99.7, 108.8, 94.2, 98.9,
        ];
        let candidate = [
            105.1, 104.6, 91.7, 104.8, 117.6, 88.5, 112.6, 105.2, 97.6, 124.0, 111.6, 92.0, 104.7,
            109.8, 102.1, 110.8, 103.3, 110.7, 118.4, 97.2, 106.0, 99.4, 105.3, 92.1, 98.2, 102.0,
            113.0, 115.5, 90.8, 96.1, 110.5, 84.1, 99.4, 103.0, 116.6,
        ];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert_eq!(r.u, 1041.0);
        assert_close(r.z, 3.616_225_125_004_452_6, 1e-12);
        assert_close(r.p_value, 1.494_652_127_026_441_5e-4, 1e-6);
        assert_eq!((r.n_baseline, r.n_candidate), (40, 35));
    }

    #[test]
    fn u_is_symmetric_between_directions() {
        let a = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let b = [5.0, 3.0, 5.0, 8.0, 9.0, 7.0];
        let ab = mann_whitney_u(&a, &b).unwrap();
        let ba = mann_whitney_u(&b, &a).unwrap();
        assert_eq!(ab.u + ba.u, (a.len() * b.len()) as f64);
    }

    #[test]
    fn input_order_does_not_matter() {
        let r1 = mann_whitney_u(&[1.0, 5.0, 3.0, 2.0], &[4.0, 6.0, 2.0]).unwrap();
        let r2 = mann_whitney_u(&[2.0, 3.0, 1.0, 5.0], &[2.0, 4.0, 6.0]).unwrap();
        assert_eq!(r1, r2);
    }

    #[test]
    fn too_few_finite_values_gives_none() {
        assert_eq!(mann_whitney_u(&[], &[]), None);
        assert_eq!(mann_whitney_u(&[1.0, 2.0], &[3.0, 4.0, 5.0]), None);
        assert_eq!(mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0]), None);
        // Three values, but one is NaN and is dropped.
        assert_eq!(
            mann_whitney_u(&[1.0, 2.0, f64::NAN], &[4.0, 5.0, 6.0]),
            None
        );
    }

    #[test]
    fn all_identical_values_give_no_evidence() {
        let r = mann_whitney_u(&[0.0; 5], &[0.0; 4]).unwrap();
        assert_eq!(r.u, 10.0);
        assert_eq!(r.z, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.effect_size, 0.5);
    }

    #[test]
    fn negative_and_positive_zero_tie() {
        let r = mann_whitney_u(&[-0.0, -0.0, 0.0], &[0.0, 0.0, -0.0]).unwrap();
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let clean = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0], &[3.0, 5.0, 6.0]).unwrap();
        let dirty = mann_whitney_u(
            &[1.0, f64::NAN, 2.0, f64::INFINITY, 3.0, 4.0],
            &[f64::NEG_INFINITY, 3.0, 5.0, f64::NAN, 6.0],
        )
        .unwrap();
        assert_eq!(clean, dirty);
    }

    #[test]
    fn extreme_values_stay_finite() {
        let baseline = [f64::MIN, -1.0, 0.0, f64::MAX];
        let candidate = [f64::MAX, f64::MAX, f64::MAX];
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        assert!(r.z.is_finite() && r.p_value.is_finite());
        assert!((0.0..=1.0).contains(&r.p_value));
    }

    #[test]
    fn large_samples_are_handled() {
        let baseline: Vec<f64> = (0..20_000).map(|i| f64::from(i % 100)).collect();
        let candidate: Vec<f64> = (0..20_000).map(|i| f64::from(i % 100 + 1)).collect();
        let r = mann_whitney_u(&baseline, &candidate).unwrap();
        // scipy: U = 203980000, p = 2.8352014357090516e-4
        assert_eq!(r.u, 203_980_000.0);
        assert_close(r.p_value, 2.835_201_435_709_051_6e-4, 1e-6);
        assert_close(r.effect_size, 0.509_95, 1e-12);
    }

    #[test]
    fn rate_test_matches_scipy_binomtest() {
        // scipy.stats.binomtest(x_c, x_c + x_b, π, alternative="greater" / "less").pvalue
        let cases = [
            // (x_c, n_c, x_b, n_b, margin, p_worse, p_better)
            (
                3.0,
                100.0,
                0.0,
                900.0,
                0.1,
                0.001_291_855_486_891_695_3,
                1.0,
            ),
            (24.0, 30.0, 0.0, 270.0, 0.1, 7.757_315_819_644_69e-24, 1.0),
            (
                12.0,
                100.0,
                90.0,
                900.0,
                0.1,
                0.434_372_747_852_356_3,
                0.781_852_614_413_391_2,
            ),
            (
                20.0,
                100.0,
                90.0,
                900.0,
                0.1,
                0.015_031_795_301_370_237,
                0.997_189_763_902_520_6,
            ),
            (
                5.0,
                100.0,
                9.0,
                900.0,
                0.0,
                0.009_230_212_455_850_002,
                0.998_525_945_733_93,
            ),
            (
                300.0,
                10_000.0,
                2_500.0,
                90_000.0,
                0.1,
                0.626_869_325_571_695_3,
                0.900_791_609_059_271_8,
            ),
            (
                0.0,
                100.0,
                50.0,
                900.0,
                0.1,
                1.0,
                0.005_153_775_207_320_113_5,
            ),
        ];
        for (x_c, n_c, x_b, n_b, margin, worse, better) in cases {
            let t = rate_test(x_c, n_c, x_b, n_b, margin).unwrap();
            assert_close(t.p_worse, worse, 1e-9);
            assert_close(t.p_better, better, 1e-9);
        }
    }

    #[test]
    fn rate_test_edges() {
        // No event anywhere: no evidence either way.
        let none = rate_test(0.0, 10.0, 0.0, 90.0, 0.1).unwrap();
        assert_eq!((none.p_worse, none.p_better), (1.0, 1.0));
        assert!(rate_test(1.0, 0.0, 1.0, 10.0, 0.1).is_none());
        assert!(rate_test(1.0, 10.0, 1.0, 0.0, 0.1).is_none());
        assert!(rate_test(f64::NAN, 10.0, 1.0, 10.0, 0.1).is_none());
        assert!(rate_test(1.0, 10.0, 1.0, 10.0, -0.5).is_none());
        // More events than requests (inconsistent sources) are capped, never a panic.
        let capped = rate_test(50.0, 10.0, 0.0, 90.0, 0.1).unwrap();
        assert!(capped.p_worse < 1e-6);
    }

    #[test]
    fn proportion_ratio_test_matches_statsmodels() {
        // statsmodels 0.15.0 test_proportions_2indep(x_c, n_c, x_b, n_b, value=θ,
        // method="score", compare="ratio", correction=False, alternative="larger" at
        // θ = 1 + margin / "smaller" at θ = 1).pvalue
        let cases = [
            // (x_c, n_c, x_b, n_b, margin, p_worse, p_better)
            (
                50.0,
                72.0,
                330.0,
                650.0,
                0.1,
                0.014_297_092_792_326_55,
                0.998_699_288_880_130_2,
            ),
            (
                36.0,
                60.0,
                30.0,
                60.0,
                0.1,
                0.300_040_776_039_516_95,
                0.864_543_786_098_599_4,
            ),
            (
                5.0,
                60.0,
                6.0,
                600.0,
                0.1,
                3.441_548_993_190_812e-5,
                0.999_988_348_572_6,
            ),
            (30.0, 60.0, 300.0, 600.0, 0.1, 0.768_589_185_985_542_3, 0.5),
            (
                24.0,
                30.0,
                0.0,
                270.0,
                0.1,
                1.245_907_541_866_515_2e-48,
                1.0,
            ),
            (
                90.0,
                3000.0,
                270.0,
                27000.0,
                0.1,
                2.609_249_925_514_168e-18,
                1.0,
            ),
        ];
        for (x_c, n_c, x_b, n_b, margin, worse, better) in cases {
            let t = proportion_ratio_test(x_c, n_c, x_b, n_b, margin).unwrap();
            assert_close(t.p_worse, worse, 1e-6);
            assert_close(t.p_better, better, 1e-6);
        }
        // No event on either side: no evidence either way (statsmodels gives NaN).
        let none = proportion_ratio_test(0.0, 60.0, 0.0, 600.0, 0.1).unwrap();
        assert_eq!((none.p_worse, none.p_better), (1.0, 1.0));
        assert!(proportion_ratio_test(1.0, 0.0, 1.0, 10.0, 0.1).is_none());
        assert!(proportion_ratio_test(f64::INFINITY, 10.0, 1.0, 10.0, 0.1).is_none());
        assert!(proportion_ratio_test(1.0, 10.0, 1.0, 10.0, -0.1).is_none());
        let capped = proportion_ratio_test(50.0, 10.0, 1.0, 90.0, 0.1).unwrap();
        assert!(capped.p_worse < 1e-6);
    }

    #[test]
    fn quantile_interval_levels_narrow_with_n_and_clip_at_the_extremes() {
        // q ± 1.959964·√(q(1 − q)/n), widened to 1e-4.
        let (lo, hi) = quantile_interval_levels(0.5, 400.0, 0.95).unwrap();
        assert_eq!((lo, hi), (0.451, 0.549));
        let (lo, hi) = quantile_interval_levels(0.99, 10_000.0, 0.95).unwrap();
        assert_eq!((lo, hi), (0.988, 0.992));
        // 60 requests cannot bound a p99 from above: the largest is the bound.
        let (lo, hi) = quantile_interval_levels(0.99, 60.0, 0.95).unwrap();
        assert_eq!((lo, hi), (0.9648, 1.0));
        assert!(quantile_interval_levels(0.5, 0.0, 0.95).is_none());
        assert!(quantile_interval_levels(1.0, 10.0, 0.95).is_none());
        assert!(quantile_interval_levels(0.5, 10.0, 1.0).is_none());
        assert!(quantile_interval_levels(f64::NAN, 10.0, 0.95).is_none());
    }

    #[test]
    fn binomial_tail_matches_scipy() {
        // scipy.stats.binom.sf(x - 1, n, p)
        assert_close(binomial_sf(5.0, 20.0, 0.1), 0.043_174_495_284_463_39, 1e-9);
        assert_close(
            binomial_sf(500.0, 1000.0, 0.5),
            0.512_612_509_089_180_2,
            1e-9,
        );
        assert_close(
            binomial_sf(30.0, 1000.0, 0.01),
            2.059_988_850_971_949e-7,
            1e-8,
        );
        assert_eq!(binomial_sf(0.0, 10.0, 0.3), 1.0);
        assert_eq!(binomial_sf(11.0, 10.0, 0.3), 0.0);
        assert!(binomial_sf(f64::NAN, 10.0, 0.3).is_nan());
    }

    #[test]
    fn normal_quantile_matches_scipy() {
        // scipy.stats.norm.ppf
        let cases = [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.999, 3.090_232_306_167_813),
            (1e-10, -6.361_340_902_404_056),
            (0.02, -2.053_748_910_631_823),
            (0.3, -0.524_400_512_708_040_9),
        ];
        for (p, z) in cases {
            assert!((normal_quantile(p) - z).abs() < 1e-9, "ppf({p})");
        }
        assert!(normal_quantile(1.5).is_nan());
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
    }

    #[test]
    fn wilson_intervals_match_the_formula_on_scipy_quantiles() {
        let cases = [
            (0.0, 100.0, 0.0, 0.036_993_498_206_985_68),
            (
                5.0,
                100.0,
                0.021_543_679_154_367_96,
                0.111_750_469_231_919_13,
            ),
            (
                50.0,
                100.0,
                0.403_831_530_365_995_6,
                0.596_168_469_634_004_4,
            ),
            (100.0, 100.0, 0.963_006_501_793_014_3, 1.0),
        ];
        for (x, n, lo, hi) in cases {
            let (l, h) = wilson_interval(x, n, 0.95).unwrap();
            assert!(
                (l - lo).abs() < 1e-9 && (h - hi).abs() < 1e-9,
                "{x}/{n}: {l} {h}"
            );
        }
        assert!(wilson_interval(1.0, 0.0, 0.95).is_none());
        assert!(wilson_interval(1.0, 10.0, 1.0).is_none());
    }

    #[test]
    fn alpha_is_spent_monotonically_and_fully_at_the_end() {
        assert_eq!(alpha_spent(0.05, 0.0), 0.0);
        assert_close(alpha_spent(0.05, 1.0), 0.05, 1e-12);
        assert_close(alpha_spent(0.05, 2.0), 0.05, 1e-12);
        let mut last = 0.0;
        for k in 1..=12 {
            let spent = alpha_spent(0.05, f64::from(k) / 12.0);
            assert!(spent > last);
            last = spent;
        }
        // Pocock-type: about 13.4 % of α at the first of 12 looks.
        assert_close(
            alpha_spent(0.05, 1.0 / 12.0),
            0.05 * 0.133_822_733_505_784_97,
            1e-9,
        );
    }

    #[test]
    fn normal_tail_matches_reference_values() {
        // scipy.stats.norm.sf
        let cases = [
            (0.0, 0.5),
            (0.5, 0.308_537_538_725_986_9),
            (1.0, 0.158_655_253_931_457_07),
            (1.96, 0.024_997_895_148_220_435),
            (-1.5, 0.933_192_798_731_141_9),
            (3.0, 0.001_349_898_031_630_093_3),
            (5.0, 2.866_515_718_791_933e-7),
            (8.0, 6.220_960_574_271_74e-16),
            (-8.0, 0.999_999_999_999_999_3),
        ];
        for (z, expected) in cases {
            assert_close(normal_sf(z), expected, 2e-7);
        }
        assert!(normal_sf(f64::INFINITY) == 0.0);
        assert!(normal_sf(f64::NEG_INFINITY) == 1.0);
        assert!(normal_sf(f64::NAN).is_nan());
    }

    #[test]
    fn percentile_interpolates_linearly() {
        // numpy.percentile([3, 1, 2, 4], [0, 10, 50, 75, 100])
        let v = [3.0, 1.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_close(percentile(&v, 10.0).unwrap(), 1.3, 1e-12);
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 75.0), Some(3.25));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
    }

    #[test]
    fn percentile_of_latency_sample_matches_numpy() {
        let v = [
            100.0, 103.0, 97.3, 91.1, 95.5, 90.1, 100.6, 113.4, 95.1, 93.8, 104.9, 103.6, 101.1,
            90.7, 99.7, 107.0, 86.6, 95.4, 81.0, 87.1, 81.6, 97.6, 87.3, 102.7, 101.6, 98.1, 74.8,
            94.6, 99.5, 101.1, 84.7, 95.2, 90.2, 91.9, 110.6, 91.9, 99.7, 108.8, 94.2, 98.9,
        ];
        assert_close(percentile(&v, 25.0).unwrap(), 91.0, 1e-12);
        assert_close(percentile(&v, 50.0).unwrap(), 96.4, 1e-12);
        assert_close(percentile(&v, 90.0).unwrap(), 105.11, 1e-12);
        assert_close(percentile(&v, 99.0).unwrap(), 112.308, 1e-12);
        assert_close(mean(&v).unwrap(), 96.05, 1e-12);
    }

    #[test]
    fn percentile_edge_cases() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, f64::INFINITY], 50.0), None);
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.9), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], -0.1), None);
        assert_eq!(percentile(&[1.0, 2.0], 100.1), None);
        assert_eq!(percentile(&[1.0, 2.0], f64::NAN), None);
        assert_eq!(percentile(&[1.0, f64::NAN, 3.0], 50.0), Some(2.0));
        let p = percentile(&[f64::MIN, f64::MAX], 50.0).unwrap();
        assert!(p.is_finite());
        assert_eq!(percentile(&[f64::MAX, f64::MAX], 30.0), Some(f64::MAX));
    }

    #[test]
    fn mean_edge_cases() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[f64::NAN]), None);
        assert_eq!(mean(&[1.0, 2.0, f64::INFINITY, 6.0]), Some(3.0));
        assert_eq!(mean(&[f64::MAX, f64::MAX]), Some(f64::MAX));
        assert_eq!(mean(&[-2.5]), Some(-2.5));
    }

    #[test]
    fn relative_change_rules() {
        assert_eq!(relative_change(100.0, 150.0), Some(0.5));
        assert_eq!(relative_change(100.0, 50.0), Some(-0.5));
        assert_eq!(relative_change(0.02, 0.02), Some(0.0));
        // A negative baseline: larger candidate is still a positive change.
        assert_eq!(relative_change(-10.0, -5.0), Some(0.5));
        assert_eq!(relative_change(0.0, 0.0), Some(0.0));
        assert_eq!(relative_change(-0.0, 0.0), Some(0.0));
        assert_eq!(relative_change(0.0, 1.0), None);
        assert_eq!(relative_change(f64::NAN, 1.0), None);
        assert_eq!(relative_change(1.0, f64::INFINITY), None);
        // Overflowing result.
        assert_eq!(relative_change(f64::MIN_POSITIVE, f64::MAX), None);
    }
}
