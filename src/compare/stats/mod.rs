//! The statistics of a paired experiment: did the arm beat the original?
//!
//! A comparison is a handful of seeds, each giving one number per arm
//! (epoch-1 accuracy, final loss, ...). Seeds vary the data order and the
//! rewiring together, so the honest unit is the per-seed difference, and
//! the questions are the usual ones for paired samples: how large is the
//! mean difference and how sure are we of it (a seeded bootstrap
//! interval), would it survive a test that assumes normality (paired t) and
//! one that does not (Wilcoxon signed-rank), and how often did the arm win.
//!
//! The figures must agree with scipy, which is what readers will check
//! them against: `tests/fixtures/compare_stats.json` holds scipy's answers
//! (made by `scripts/stats_fixtures.py`). Distributions come from `statrs`;
//! the Wilcoxon null distribution is counted exactly ([`wilcoxon`]).
//!
//! The results go into `report.json` as they are, so a value that does not
//! exist (the spread of one seed, a t statistic without spread) is `None`,
//! never NaN: JSON has no NaN, and a reader should see "undefined", not a
//! number.

mod sentence;
mod wilcoxon;

#[cfg(test)]
mod tests;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

pub(crate) use sentence::{sentence, Unit};
pub use wilcoxon::WilcoxonMethod;

/// How many bootstrap resamples make the 95% interval of the mean difference.
const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// One arm's values of one metric over the seeds, summarised.
///
/// Non-finite values (a diverged run's loss) are left out, and `n` counts
/// the values used; every field but `n` is `None` when none is left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Describe {
    /// How many finite values were summarised.
    pub n: usize,
    /// The arithmetic mean.
    pub mean: Option<f64>,
    /// The sample standard deviation (divided by `n - 1`); `None` below two values.
    pub std: Option<f64>,
    /// The median (the mean of the two middle values for even `n`).
    pub median: Option<f64>,
    /// The interquartile mean: the mean after cutting `n / 4` values (rounded
    /// down) from each end, as `scipy.stats.trim_mean(x, 0.25)`; robust to a
    /// diverged or lucky seed, and recommended over the median by rliable.
    pub iqm: Option<f64>,
    /// The smallest value.
    pub min: Option<f64>,
    /// The largest value.
    pub max: Option<f64>,
}

/// Summarises one arm's values of a metric (see [`Describe`]).
pub(crate) fn describe(xs: &[f64]) -> Describe {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Describe {
            n,
            mean: None,
            std: None,
            median: None,
            iqm: None,
            min: None,
            max: None,
        };
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let cut = n / 4;
    Describe {
        n,
        mean: Some(mean(&v)),
        std: sample_std(&v),
        median: Some(median),
        iqm: Some(mean(&v[cut..n - cut])),
        min: Some(v[0]),
        max: Some(v[n - 1]),
    }
}

/// The paired comparison of one arm against the original on one metric.
///
/// Differences are `arm - original`, per seed. Pairs where either value
/// is not finite (a diverged run) are left out; `n` counts the pairs used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// How many seeds have a finite value in both arms.
    pub n: usize,
    /// The mean of `arm - original`; `None` without pairs.
    pub mean_diff: Option<f64>,
    /// The sample standard deviation of the differences; `None` below two pairs.
    pub std_diff: Option<f64>,
    /// The paired t statistic (`scipy.stats.ttest_rel(arm, original)`);
    /// `None` below two pairs or when every difference is the same (scipy
    /// then says infinity or NaN).
    pub t_statistic: Option<f64>,
    /// The two-sided p-value of the paired t-test, with `n - 1` degrees of freedom.
    pub t_p: Option<f64>,
    /// The Wilcoxon signed-rank statistic as scipy reports it: the smaller
    /// of the positive and negative rank sums, zero differences dropped.
    pub wilcoxon_statistic: Option<f64>,
    /// The two-sided p-value of the signed-rank test, by `wilcoxon_method`;
    /// `None` when the method cannot give one (no pairs, or only zero
    /// differences past 13 pairs, as scipy).
    pub wilcoxon_p: Option<f64>,
    /// How `wilcoxon_p` was computed; the same choice as
    /// `scipy.stats.wilcoxon(d)` makes by default. `None` without pairs.
    pub wilcoxon_method: Option<WilcoxonMethod>,
    /// The smallest two-sided p-value the exact signed-rank test can give
    /// over `n` pairs, `2 / 2^n` (at most 1): below 6 pairs it is above
    /// 0.05, so no outcome of the experiment could be called significant.
    pub min_attainable_p: f64,
    /// The 95% percentile bootstrap interval of the mean difference:
    /// 10 000 resamples of the seeds, seeded, so the same runs give the
    /// same interval. `None` without pairs.
    pub ci95: Option<[f64; 2]>,
    /// The probability of improvement, `(wins + ties / 2) / n`; `None` without pairs.
    pub prob_improvement: Option<f64>,
    /// Seeds where the arm did better (higher or lower, by the metric).
    pub wins: usize,
    /// Seeds where both arms gave exactly the same value.
    pub ties: usize,
    /// Seeds where the arm did worse.
    pub losses: usize,
}

/// Compares `arm` against `original`, paired by position (seed).
///
/// `higher_is_better` decides what a win is (accuracy: higher; loss:
/// lower). `bootstrap_seed` seeds the interval's resampling. Values past
/// the shorter slice are ignored.
pub(crate) fn paired(
    original: &[f64],
    arm: &[f64],
    higher_is_better: bool,
    bootstrap_seed: u64,
) -> PairedTest {
    let d: Vec<f64> = original
        .iter()
        .zip(arm)
        .filter(|(o, a)| o.is_finite() && a.is_finite())
        .map(|(o, a)| a - o)
        .collect();
    let n = d.len();
    let better = |x: f64| if higher_is_better { x > 0.0 } else { x < 0.0 };
    let wins = d.iter().filter(|&&x| better(x)).count();
    let ties = d.iter().filter(|&&x| x == 0.0).count();
    let losses = n - wins - ties;
    let (t_statistic, t_p) = paired_t(&d);
    let w = wilcoxon::signed_rank(&d);
    PairedTest {
        n,
        mean_diff: (n > 0).then(|| mean(&d)),
        std_diff: sample_std(&d),
        t_statistic,
        t_p,
        wilcoxon_statistic: w.statistic,
        wilcoxon_p: w.p,
        wilcoxon_method: w.method,
        min_attainable_p: min_attainable_p(n),
        ci95: bootstrap_ci95(&d, bootstrap_seed),
        prob_improvement: (n > 0).then(|| (wins as f64 + ties as f64 / 2.0) / n as f64),
        wins,
        ties,
        losses,
    }
}

/// `2 / 2^n`, at most 1: the exact signed-rank test's smallest two-sided p.
pub(crate) fn min_attainable_p(n: usize) -> f64 {
    // Past 1074 halvings an f64 is zero, which is also the right answer.
    let halvings = i32::try_from(n).unwrap_or(i32::MAX);
    (2.0 * 0.5f64.powi(halvings)).min(1.0)
}

/// The paired t statistic of the differences and its two-sided p-value, or
/// `None` for both where t is undefined (fewer than two pairs, no spread).
fn paired_t(d: &[f64]) -> (Option<f64>, Option<f64>) {
    let Some(sd) = sample_std(d).filter(|&s| s > 0.0) else {
        return (None, None);
    };
    let n = d.len() as f64;
    let t = mean(d) / (sd / n.sqrt());
    let Ok(dist) = StudentsT::new(0.0, 1.0, n - 1.0) else {
        return (None, None);
    };
    // The lower tail of -|t| keeps its precision where 1 - cdf would round to 0.
    let p = (2.0 * dist.cdf(-t.abs())).min(1.0);
    (t.is_finite().then_some(t), p.is_finite().then_some(p))
}

/// The 2.5% and 97.5% percentiles of the means of [`BOOTSTRAP_RESAMPLES`]
/// resamples (with replacement) of the differences.
fn bootstrap_ci95(d: &[f64], seed: u64) -> Option<[f64; 2]> {
    let n = d.len();
    if n == 0 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some([quantile(&means, 0.025), quantile(&means, 0.975)])
}

/// The `q` quantile of sorted, non-empty values, interpolating linearly
/// between neighbours (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The mean of non-empty values.
fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation (divided by `n - 1`), or `None` below two values.
fn sample_std(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}
