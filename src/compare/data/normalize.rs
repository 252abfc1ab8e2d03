//! Per-channel standardisation, measured on the training split only.
//!
//! Networks train best on inputs of zero mean and unit variance, and the
//! statistics must come from the training split alone: measuring them on
//! the test split would leak it into training. Channels are axis 0 of a
//! sample of rank 3 or more (`[C, H, W]`), every feature of a rank-1
//! sample, and the whole sample otherwise.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset};

/// Below this standard deviation a channel is taken as constant and only
/// centred (dividing would blow rounding noise up, or divide by zero).
const CONSTANT: f64 = 1e-6;

/// Each channel's mean and standard deviation over the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Normalizer {
    /// The sample shape it was measured on.
    pub shape: Vec<usize>,
    /// Per channel, the training split's mean.
    pub mean: Vec<f32>,
    /// Per channel, the training split's standard deviation (1 for a
    /// constant channel).
    pub std: Vec<f32>,
}

/// How many consecutive values of a sample share a channel, and how many
/// channels there are.
fn layout(shape: &[usize]) -> (usize, usize) {
    let len: usize = shape.iter().product();
    match shape.len() {
        1 => (1, len),
        0 | 2 => (len, 1),
        _ => (len / shape[0].max(1), shape[0]),
    }
}

impl Normalizer {
    /// Measures `train`'s per-channel mean and standard deviation.
    pub(crate) fn fit(train: &Dataset) -> Normalizer {
        let (block, channels) = layout(&train.shape);
        let len = train.sample_len();
        let zero = || vec![(0.0f64, 0.0f64); channels];
        let sums = if len == 0 {
            zero()
        } else {
            train
                .x
                .par_chunks(len)
                .fold(zero, |mut acc, sample| {
                    for (i, &v) in sample.iter().enumerate() {
                        let v = f64::from(v);
                        let s = &mut acc[i / block];
                        s.0 += v;
                        s.1 += v * v;
                    }
                    acc
                })
                .reduce(zero, |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.0 += y.0;
                        x.1 += y.1;
                    }
                    a
                })
        };
        let count = (train.len() * block).max(1) as f64;
        let (mean, std) = sums
            .iter()
            .map(|&(s, s2)| {
                let mean = s / count;
                let std = (s2 / count - mean * mean).max(0.0).sqrt();
                let std = if std > CONSTANT { std } else { 1.0 };
                (mean as f32, std as f32)
            })
            .unzip();
        Normalizer {
            shape: train.shape.clone(),
            mean,
            std,
        }
    }

    /// Standardises every sample of `data` in place.
    pub(crate) fn apply(&self, data: &mut Dataset) -> Result<(), DataError> {
        if data.shape != self.shape {
            return Err(DataError::BadOption(format!(
                "normalising samples of shape {:?} with statistics of shape {:?}",
                data.shape, self.shape
            )));
        }
        let (block, _) = layout(&self.shape);
        let len = data.sample_len();
        if len == 0 {
            return Ok(());
        }
        let scale: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        data.x.par_chunks_mut(len).for_each(|sample| {
            for (i, v) in sample.iter_mut().enumerate() {
                let c = i / block;
                *v = (*v - self.mean[c]) * scale[c];
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_come_from_train_and_apply_to_both() {
        // Two channels of two pixels; channel 1 is constant in train.
        let mut train = Dataset {
            x: vec![1., 3., 5., 5., 3., 5., 5., 5.],
            y: vec![0, 1],
            shape: vec![2, 1, 2],
        };
        let mut test = Dataset {
            x: vec![100., 100., 100., 100.],
            y: vec![0],
            shape: vec![2, 1, 2],
        };
        let norm = Normalizer::fit(&train);
        assert_eq!(norm.mean, vec![3.0, 5.0]);
        assert_eq!(norm.std, vec![2f32.sqrt(), 1.0]);
        norm.apply(&mut train).unwrap();
        norm.apply(&mut test).unwrap();
        let mean0 = (train.x[0] + train.x[1] + train.x[4] + train.x[5]) / 4.0;
        assert!(mean0.abs() < 1e-6);
        assert_eq!(train.x[2], 0.0);
        assert!((test.x[0] - 97.0 / 2f32.sqrt()).abs() < 1e-4);
        assert_eq!(test.x[3], 95.0);
    }

    #[test]
    fn flat_samples_are_normalised_per_feature() {
        let train = Dataset {
            x: vec![0., 10., 2., 30.],
            y: vec![0, 0],
            shape: vec![2],
        };
        let norm = Normalizer::fit(&train);
        assert_eq!(norm.mean, vec![1.0, 20.0]);
        assert_eq!(norm.std, vec![1.0, 10.0]);
        let mut other = Dataset {
            x: vec![0.; 3],
            y: vec![0],
            shape: vec![3],
        };
        assert!(norm.apply(&mut other).is_err());
    }
}
