//! One plain sentence per comparison, for the output folder's summary page and the terminal.
//!
//! Most readers will read this line and nothing else, so it must carry
//! the effect with its unit and interval, both tests, and a warning when
//! the experiment is too small for any conclusion; and it must stay
//! sensible on the edges (no seeds, one seed, identical arms) instead of
//! printing NaN.

use super::{min_attainable_p, PairedTest};

/// How a metric's differences are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A fraction in 0..1 (accuracy), written in percentage points: 0.008 is "+0.8 points".
    Points,
    /// A plain number (loss), written with as many digits as its size needs.
    Plain,
}

impl Unit {
    fn scale(self) -> f64 {
        match self {
            Unit::Points => 100.0,
            Unit::Plain => 1.0,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Unit::Points => " points",
            Unit::Plain => "",
        }
    }

    fn min_digits(self) -> i32 {
        match self {
            Unit::Points => 1,
            Unit::Plain => 0,
        }
    }
}

/// The significance level the small-sample warning refers to.
const ALPHA: f64 = 0.05;

/// Says in one sentence how `arm` compared with the original on `metric`:
///
/// "pa better on 7 of 10 seeds (1 tie); epoch-1 test accuracy +0.8 points,
/// 95% CI [+0.2, +1.4], Wilcoxon p = 0.04, paired t p = 0.03."
pub(crate) fn sentence(
    arm: &str,
    metric: &str,
    unit: Unit,
    t: &PairedTest,
    higher_is_better: bool,
) -> String {
    let n = t.n;
    let Some(mean) = t.mean_diff else {
        return format!(
            "{arm}: no seed has a finite {metric} in both arms, so there is nothing to compare."
        );
    };
    if t.ties == n {
        return format!(
            "{arm} and the original give exactly the same {metric} on {}; there is no difference to test.",
            if n == 1 { "the one seed".to_string() } else { format!("all {n} seeds") }
        );
    }
    let mut s = format!("{arm} better on {} of {}", t.wins, seeds(n));
    if t.ties > 0 {
        s += &format!(" ({} tie{})", t.ties, if t.ties == 1 { "" } else { "s" });
    }
    let ci = t.ci95.filter(|_| n >= 2);
    let digits = digits_for(
        unit,
        [Some(mean), ci.map(|c| c[0]), ci.map(|c| c[1])]
            .into_iter()
            .flatten(),
    );
    let num = |v: f64| signed(v * unit.scale(), digits);
    s += &format!("; {metric} {}{}", num(mean), unit.suffix());
    if !higher_is_better {
        s += " (lower is better)";
    }
    if let Some([lo, hi]) = ci {
        s += &format!(", 95% CI [{}, {}]", num(lo), num(hi));
    }
    if let Some(p) = t.wilcoxon_p {
        s += &format!(", Wilcoxon p {}", p_value(p));
    }
    match t.t_p {
        Some(p) => s += &format!(", paired t p {}", p_value(p)),
        None if n >= 2 => s += ", paired t undefined (the same difference on every seed)",
        None => {}
    }
    s.push('.');
    if n < 2 {
        s += &format!(
            " With {} no test is possible; run at least {} seeds.",
            seeds(n),
            seeds_needed()
        );
    } else if t.min_attainable_p >= ALPHA {
        s += &format!(
            " With {} the signed-rank test cannot reach p < {ALPHA} (its smallest p is {}), \
             and the t-test's normality cannot be checked; run at least {} seeds.",
            seeds(n),
            t.min_attainable_p,
            seeds_needed()
        );
    }
    s
}

/// "1 seed", "10 seeds".
fn seeds(n: usize) -> String {
    format!("{n} seed{}", if n == 1 { "" } else { "s" })
}

/// The fewest pairs whose exact signed-rank test can go below [`ALPHA`].
fn seeds_needed() -> usize {
    (1..).find(|&n| min_attainable_p(n) < ALPHA).unwrap_or(6)
}

/// Decimals for numbers up to the largest magnitude among `values` (as
/// measured; written after [`Unit::scale`]): two significant digits of the
/// largest, at least the unit's minimum, at most six.
fn digits_for(unit: Unit, values: impl Iterator<Item = f64>) -> usize {
    let largest = values
        .map(|v| (v * unit.scale()).abs())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let digits = if largest > 0.0 {
        1 - largest.log10().floor() as i32
    } else {
        1
    };
    digits.clamp(unit.min_digits(), 6) as usize
}

/// A number with an explicit sign ("+0.8", "-1.2"), and none when it rounds to zero.
fn signed(v: f64, digits: usize) -> String {
    let s = format!("{v:+.digits$}");
    if s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// "= 0.04", "= 0.004", "< 0.001": two decimals, three below 0.01.
fn p_value(p: f64) -> String {
    if p < 0.001 {
        return "< 0.001".to_string();
    }
    let s = if p < 0.01 {
        format!("{p:.3}")
    } else {
        format!("{p:.2}")
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("= {s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_a_sign_and_the_digits_their_size_needs() {
        assert_eq!(signed(0.8, 1), "+0.8");
        assert_eq!(signed(-0.0123, 3), "-0.012");
        assert_eq!(signed(-0.00001, 2), "0.00");
        assert_eq!(digits_for(Unit::Points, [0.008, 0.014].into_iter()), 1);
        assert_eq!(digits_for(Unit::Plain, [-0.012].into_iter()), 3);
        assert_eq!(digits_for(Unit::Plain, [25.0].into_iter()), 0);
        assert_eq!(digits_for(Unit::Points, [0.0].into_iter()), 1);
    }

    #[test]
    fn p_values_read_as_people_write_them() {
        assert_eq!(p_value(0.0412), "= 0.04");
        assert_eq!(p_value(0.0625), "= 0.06");
        assert_eq!(p_value(0.00412), "= 0.004");
        assert_eq!(p_value(0.0004), "< 0.001");
        assert_eq!(p_value(1.0), "= 1");
        assert_eq!(p_value(0.5), "= 0.5");
    }

    #[test]
    fn six_seeds_are_the_fewest_that_can_reach_five_percent() {
        assert_eq!(seeds_needed(), 6);
    }
}
