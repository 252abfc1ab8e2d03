//! Population statistics of plain `f64` slices.
//!
//! Both the rewiring report (row and column strengths) and verification
//! (the spread of a model's outputs) summarise values by their variance;
//! one definition here keeps the two from drifting apart, and keeps either
//! from importing the other for it.

/// Population variance: the mean squared distance from the mean (divided
/// by `n`, not `n - 1`); 0.0 for an empty slice.
pub(crate) fn variance(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n
}

/// Population standard deviation: the square root of [`variance`].
pub(crate) fn std_dev(xs: &[f64]) -> f64 {
    variance(xs).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_not_sample() {
        assert_eq!(variance(&[]), 0.0);
        assert_eq!(variance(&[3.0]), 0.0);
        assert_eq!(variance(&[1.0, 3.0]), 1.0);
        assert_eq!(std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), 2.0);
    }
}
