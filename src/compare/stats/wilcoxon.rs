//! The Wilcoxon signed-rank test, as `scipy.stats.wilcoxon(d)` computes it.
//!
//! Readers check a reported p-value against scipy, so this follows scipy's
//! defaults (version 1.13 and later: `zero_method="wilcox"`,
//! `correction=False`, `method="auto"`, two-sided), including which method
//! "auto" picks, since the methods give different p-values on the same data:
//!
//! - more than 50 pairs: the normal approximation, ties or not;
//! - otherwise, no tied absolute differences and no zero difference: the
//!   exact null distribution of the rank sum;
//! - otherwise, at most 13 pairs: a permutation test over all `2^n` sign
//!   flips (scipy runs it as `permutation_test`, which enumerates every
//!   flip when `2^n` is at most its 9999 resamples, so it is exact too);
//! - otherwise: the normal approximation with the tie correction.
//!
//! Zero differences are dropped before ranking (`n` in the rule above still
//! counts them). Tied absolute differences share their average rank, so
//! rank sums are multiples of 1/2; the counting below works in doubled ranks
//! so that every sum is an integer and the tails are compared exactly.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// How the signed-rank p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WilcoxonMethod {
    /// The exact null distribution of the rank sum (no ties, no zeros, at most 50 pairs).
    Exact,
    /// Every sign flip of the observed ranks counted (ties or zeros, at most 13 pairs).
    Permutation,
    /// The normal approximation with the tie correction, no continuity correction.
    Normal,
}

/// Above this many pairs scipy always uses the normal approximation.
const EXACT_MAX_PAIRS: usize = 50;
/// Up to this many pairs scipy counts every sign flip when ranks tie or
/// differences are zero (`2^13` is the last power of two below 9999).
const PERMUTATION_MAX_PAIRS: usize = 13;

/// A signed-rank test's outcome; `None` where scipy gives NaN.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SignedRank {
    /// The smaller of the positive and negative rank sums.
    pub statistic: Option<f64>,
    /// The two-sided p-value.
    pub p: Option<f64>,
    /// The method used; `None` without differences.
    pub method: Option<WilcoxonMethod>,
}

/// Tests whether the finite differences `d` are symmetric around zero.
pub(super) fn signed_rank(d: &[f64]) -> SignedRank {
    if d.is_empty() {
        return SignedRank {
            statistic: None,
            p: None,
            method: None,
        };
    }
    let ranks = Ranks::of(d);
    let has_zeros = ranks.doubled.len() < d.len();
    let method = if d.len() > EXACT_MAX_PAIRS {
        WilcoxonMethod::Normal
    } else if !ranks.has_ties() && !has_zeros {
        WilcoxonMethod::Exact
    } else if d.len() <= PERMUTATION_MAX_PAIRS {
        WilcoxonMethod::Permutation
    } else {
        WilcoxonMethod::Normal
    };
    let plus2 = ranks.plus_doubled();
    let minus2 = ranks.total_doubled() - plus2;
    let p = match method {
        // Both count the same thing: the null distribution of the positive
        // rank sum when each observed rank's sign is a fair coin. Without
        // ties the ranks are 1..n and this is the textbook exact table.
        WilcoxonMethod::Exact | WilcoxonMethod::Permutation => {
            Some(sign_flip_p(&ranks.doubled, plus2))
        }
        WilcoxonMethod::Normal => normal_p(&ranks, plus2),
    };
    SignedRank {
        statistic: Some(plus2.min(minus2) as f64 / 2.0),
        p,
        method: Some(method),
    }
}

/// The nonzero differences' ranks by absolute value, ties averaged, doubled.
struct Ranks {
    /// Twice each nonzero difference's rank, with its difference's sign.
    doubled: Vec<u64>,
    /// Whether each entry of `doubled` belongs to a positive difference.
    positive: Vec<bool>,
    /// The size of each group of tied absolute values.
    tie_groups: Vec<u64>,
}

impl Ranks {
    fn of(d: &[f64]) -> Ranks {
        let mut nz: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
        nz.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let mut doubled = Vec::with_capacity(nz.len());
        let mut tie_groups = Vec::new();
        let mut i = 0;
        while i < nz.len() {
            let mut j = i;
            while j + 1 < nz.len() && nz[j + 1].abs() == nz[i].abs() {
                j += 1;
            }
            // Positions i..=j hold ranks i+1..=j+1, whose average doubled is i+j+2.
            let r2 = (i + j + 2) as u64;
            doubled.extend(std::iter::repeat_n(r2, j - i + 1));
            tie_groups.push((j - i + 1) as u64);
            i = j + 1;
        }
        let positive = nz.iter().map(|&x| x > 0.0).collect();
        Ranks {
            doubled,
            positive,
            tie_groups,
        }
    }

    fn has_ties(&self) -> bool {
        self.tie_groups.iter().any(|&t| t > 1)
    }

    fn plus_doubled(&self) -> u64 {
        self.doubled
            .iter()
            .zip(&self.positive)
            .filter(|(_, &p)| p)
            .map(|(r, _)| r)
            .sum()
    }

    fn total_doubled(&self) -> u64 {
        self.doubled.iter().sum()
    }
}

/// The two-sided p-value of the observed doubled rank sum `plus2` when
/// every rank's sign is flipped with probability 1/2: twice the smaller
/// tail, each tail including the observed sum, at most 1.
fn sign_flip_p(doubled: &[u64], plus2: u64) -> f64 {
    let total: u64 = doubled.iter().sum();
    // At most 13 tied ranks or 50 untied ones: total is at most 2550.
    let mut dist = vec![0.0f64; total as usize + 1];
    dist[0] = 1.0;
    let mut reach = 0usize;
    for &r in doubled {
        let r = r as usize;
        for s in (0..=reach).rev() {
            let half = dist[s] * 0.5;
            dist[s] = half;
            dist[s + r] += half;
        }
        reach += r;
    }
    let k = plus2 as usize;
    let lower: f64 = dist[..=k].iter().sum();
    let upper: f64 = dist[k..].iter().sum();
    (2.0 * lower.min(upper)).min(1.0)
}

/// The normal approximation: z of the positive rank sum against its null
/// mean and tie-corrected spread over the nonzero differences. `None` when
/// there is no spread (every difference zero), where scipy gives NaN.
fn normal_p(ranks: &Ranks, plus2: u64) -> Option<f64> {
    let m = ranks.doubled.len() as f64;
    let mean = m * (m + 1.0) / 4.0;
    let ties: f64 = ranks
        .tie_groups
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let var = (m * (m + 1.0) * (2.0 * m + 1.0) - ties / 2.0) / 24.0;
    if var <= 0.0 {
        return None;
    }
    let z = (plus2 as f64 / 2.0 - mean) / var.sqrt();
    let p = 2.0 * Normal::standard().cdf(-z.abs());
    p.is_finite().then_some(p.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tied_ranks_are_averaged_and_doubled() {
        let r = Ranks::of(&[1.0, -2.0, 2.0, 0.0, 3.0]);
        // |d| = 1, 2, 2, 3 -> ranks 1, 2.5, 2.5, 4.
        assert_eq!(r.doubled, vec![2, 5, 5, 8]);
        assert_eq!(r.tie_groups, vec![1, 2, 1]);
        assert_eq!(r.plus_doubled(), 2 + 5 + 8);
        assert!(r.has_ties());
    }

    #[test]
    fn exact_table_for_three_untied_pairs() {
        // Sums of subsets of {1, 2, 3}: 0,1,2,3,3,4,5,6; P(S <= 0) = 1/8.
        assert_eq!(sign_flip_p(&[2, 4, 6], 0), 0.25);
        assert_eq!(sign_flip_p(&[2, 4, 6], 12), 0.25);
        assert_eq!(sign_flip_p(&[2, 4, 6], 6), 1.0);
    }

    #[test]
    fn method_follows_scipys_auto_rule() {
        let untied: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(signed_rank(&untied).method, Some(WilcoxonMethod::Exact));
        let mut tied = untied.clone();
        tied[1] = 1.0;
        assert_eq!(signed_rank(&tied).method, Some(WilcoxonMethod::Normal));
        assert_eq!(
            signed_rank(&tied[..13]).method,
            Some(WilcoxonMethod::Permutation)
        );
        let many: Vec<f64> = (1..=51).map(f64::from).collect();
        assert_eq!(signed_rank(&many).method, Some(WilcoxonMethod::Normal));
        assert_eq!(signed_rank(&[]).method, None);
    }

    #[test]
    fn only_zero_differences_give_p_one_when_counted_and_none_when_approximated() {
        let few = signed_rank(&[0.0; 5]);
        assert_eq!((few.statistic, few.p), (Some(0.0), Some(1.0)));
        let many = signed_rank(&[0.0; 20]);
        assert_eq!((many.statistic, many.p), (Some(0.0), None));
    }
}
