//! When two outputs count as the same: numpy's `allclose` rule,
//! `|x - r| <= atol + rtol * |r|`, element by element.
//!
//! One rule serves both questions verification asks: did the rewiring change
//! the outputs (candidate against original), and do the backends agree
//! (one backend against the reference). Non-finite values need their own
//! answer, since the arithmetic of the rule means nothing for them.

/// The largest errors found, and how many elements broke the rule.
pub(super) struct Diff {
    pub(super) max_abs: f64,
    pub(super) max_rel: f64,
    pub(super) violations: usize,
}

/// Element-wise `|x - r| <= atol + rtol * |r|`, with the largest errors.
pub(super) fn compare(x: &[f64], r: &[f64], atol: f64, rtol: f64) -> Diff {
    let mut d = Diff {
        max_abs: 0.0,
        max_rel: 0.0,
        violations: 0,
    };
    for (&x, &r) in x.iter().zip(r) {
        // Non-finite values are reported by the finiteness check; matching
        // infinities (or NaNs) are not a disagreement between backends.
        if !x.is_finite() || !r.is_finite() {
            let same = (x.is_nan() && r.is_nan()) || x == r;
            if !same {
                d.violations += 1;
                d.max_abs = f64::INFINITY;
            }
            continue;
        }
        let abs = (x - r).abs();
        d.max_abs = d.max_abs.max(abs);
        if r != 0.0 {
            d.max_rel = d.max_rel.max(abs / r.abs());
        }
        if abs > atol + rtol * r.abs() {
            d.violations += 1;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_check() {
        let d = compare(&[1.0, 2.0005, 0.0], &[1.0, 2.0, 0.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 0);
        assert!((d.max_abs - 0.0005).abs() < 1e-12);
        let d = compare(&[1.0, 2.01], &[1.0, 2.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 1);
        let d = compare(&[f64::NAN], &[1.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 1);
    }
}
