//! Built-in classification tasks that need no download.
//!
//! Tests, CI and first tries need data that fits whatever model the user
//! has (any input shape, any number of outputs) without fetching a data
//! set. A useful task for comparing initializations must also be learnable
//! within a few epochs by a small network, yet not so easy that every
//! initialization reaches the same accuracy at once.
//!
//! `patterns`: each class has a fixed smooth template, a sum of four
//! plane waves of low integer frequency (at most 3 per axis over the last
//! two axes; for a line of values `[F]`, at most `F / 3` up to 12) with
//! per-channel weights that are alike across channels, scaled to unit RMS.
//! The templates come from a constant task seed, never from the run's seed,
//! so every run and every user sees the same task for the same shape and
//! class count. A sample of class `k` is the template scaled by a random
//! amplitude in `[0.5, 1.5]`, shifted circularly by up to an eighth of each
//! axis, plus a smooth random field of three waves (structured noise: it
//! looks like another template) and white noise that grows with the
//! sample's size. Labels cycle through the classes, so every class is
//! equally common. Samples are drawn from (data seed, split, index) alone.
//!
//! How hard that is: a one-hidden-layer MLP (32 units, plain SGD) reaches
//! about 75% test accuracy after one epoch on 2000 samples of `[1, 16, 16]`
//! with 10 classes and about 80% after five, differing by a few points
//! between initializations; the nearest class mean reaches about 65%.

use std::f64::consts::TAU;
use std::str::FromStr;

use rayon::prelude::*;

use super::rng::{self, Purpose};
use super::{DataError, DataOptions, RawData, RawSplit};

/// The constant that fixes every task's templates (not a run seed).
const TASK_SEED: u64 = 0x7061_2d6f_6e6e_7831;
/// Waves in a class template.
const TEMPLATE_WAVES: usize = 4;
/// Waves in a sample's structured noise.
const NOISE_WAVES: usize = 3;
/// RMS of the structured noise, relative to the unit-RMS template.
const FIELD_NOISE: f64 = 0.9;
/// Standard deviation of the white noise for a sample of 256 values; it
/// grows with the square root of the sample's size (within
/// [`WHITE_NOISE_RANGE`]), since a classifier sums the evidence of every
/// value, so that the task is about as hard for `[20]` as for `[1, 16, 16]`.
const WHITE_NOISE: f64 = 0.9;
/// The least and most white noise whatever the sample's size.
const WHITE_NOISE_RANGE: (f64, f64) = (0.25, 2.0);
/// How much one channel's weight differs from the others'.
const CHANNEL_SPREAD: f64 = 0.5;

/// A built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SyntheticTask {
    /// Smooth class templates under shifts, scaling and structured noise.
    #[default]
    Patterns,
}

impl SyntheticTask {
    /// Every task, for messages.
    pub(crate) const ALL: [SyntheticTask; 1] = [SyntheticTask::Patterns];

    /// The task's name in `--data synthetic:NAME`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SyntheticTask::Patterns => "patterns",
        }
    }
}

impl FromStr for SyntheticTask {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SyntheticTask::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| DataError::UnknownTask {
                name: s.to_string(),
                known: SyntheticTask::ALL.map(SyntheticTask::name).join(", "),
            })
    }
}

/// The geometry the waves live on: `channels` independent planes of
/// `height x width` (the last two axes; `height` is 1 for rank-1 samples).
#[derive(Debug, Clone, Copy)]
struct Grid {
    channels: usize,
    height: usize,
    width: usize,
}

impl Grid {
    fn of(shape: &[usize]) -> Grid {
        let rank = shape.len();
        let (height, width) = match rank {
            0 => (1, 1),
            1 => (1, shape[0]),
            _ => (shape[rank - 2], shape[rank - 1]),
        };
        let plane = height * width;
        Grid {
            channels: shape.iter().product::<usize>() / plane.max(1),
            height,
            width,
        }
    }

    fn len(self) -> usize {
        self.channels * self.height * self.width
    }
}

/// A sum of `waves` plane waves with per-channel weights, scaled to unit
/// RMS, added into `out` times `scale`.
fn add_field(out: &mut [f32], grid: Grid, waves: usize, scale: f64, rng: &mut impl rand::RngCore) {
    let mut field = vec![0.0f64; grid.len()];
    let plane = grid.height * grid.width;
    for _ in 0..waves {
        let fy = if grid.height > 1 {
            rng::below(rng, 7) as f64 - 3.0
        } else {
            0.0
        };
        // A line of values has one axis of frequencies instead of two: it
        // gets more of them, or every class would look alike.
        let top = if grid.height > 1 {
            3
        } else {
            (grid.width / 3).clamp(1, 12)
        };
        let mut fx = if grid.width > 1 {
            rng::below(rng, 2 * top + 1) as f64 - top as f64
        } else {
            0.0
        };
        if fy == 0.0 && fx == 0.0 {
            fx = 1.0;
        }
        let phase = TAU * rng::unit(rng);
        // Channels alike, as in photographs, so that extra channels add
        // little information.
        let shared = rng::gaussian(rng);
        let weights: Vec<f64> = (0..grid.channels)
            .map(|_| shared + CHANNEL_SPREAD * rng::gaussian(rng))
            .collect();
        for yy in 0..grid.height {
            for xx in 0..grid.width {
                let t = TAU
                    * (fy * yy as f64 / grid.height as f64 + fx * xx as f64 / grid.width as f64);
                let wave = (t + phase).cos();
                for (c, w) in weights.iter().enumerate() {
                    field[c * plane + yy * grid.width + xx] += w * wave;
                }
            }
        }
    }
    let rms = (field.iter().map(|v| v * v).sum::<f64>() / field.len() as f64).sqrt();
    let norm = if rms > 0.0 { scale / rms } else { 0.0 };
    for (o, f) in out.iter_mut().zip(&field) {
        *o += (f * norm) as f32;
    }
}

/// The class templates for this shape and class count.
fn templates(grid: Grid, classes: usize) -> Vec<Vec<f32>> {
    (0..classes)
        .into_par_iter()
        .map(|k| {
            let mut rng = rng::generator(rng::key(Purpose::Template, &[TASK_SEED, k as u64]));
            let mut t = vec![0.0; grid.len()];
            add_field(&mut t, grid, TEMPLATE_WAVES, 1.0, &mut rng);
            t
        })
        .collect()
}

/// One sample of class `template` into `out`, drawn from `key`.
fn sample(out: &mut [f32], template: &[f32], grid: Grid, key: u64) {
    let mut rng = rng::generator(key);
    let amplitude = 0.5 + rng::unit(&mut rng);
    let shift = |extent: usize, rng: &mut rand_chacha::ChaCha8Rng| {
        let most = extent / 8;
        if most == 0 {
            0
        } else {
            extent + rng::below(rng, 2 * most + 1) - most
        }
    };
    let dy = shift(grid.height, &mut rng);
    let dx = shift(grid.width, &mut rng);
    let plane = grid.height * grid.width;
    for c in 0..grid.channels {
        for yy in 0..grid.height {
            let sy = (yy + dy) % grid.height;
            for xx in 0..grid.width {
                let sx = (xx + dx) % grid.width;
                out[c * plane + yy * grid.width + xx] =
                    (amplitude * f64::from(template[c * plane + sy * grid.width + sx])) as f32;
            }
        }
    }
    add_field(out, grid, NOISE_WAVES, FIELD_NOISE, &mut rng);
    let white = (WHITE_NOISE * (grid.len() as f64 / 256.0).sqrt())
        .clamp(WHITE_NOISE_RANGE.0, WHITE_NOISE_RANGE.1);
    for o in out.iter_mut() {
        *o += (white * rng::gaussian(&mut rng)) as f32;
    }
}

/// `n` samples of one split (`split` 0 trains, 1 tests).
fn make_split(
    templates: &[Vec<f32>],
    grid: Grid,
    shape: &[usize],
    n: usize,
    split: u64,
    seed: u64,
    origin: String,
) -> RawSplit {
    let len = grid.len();
    let classes = templates.len();
    let mut x = vec![0.0f32; n * len];
    x.par_chunks_mut(len).enumerate().for_each(|(i, out)| {
        let key = rng::key(Purpose::Synthetic, &[seed, split, i as u64]);
        sample(out, &templates[i % classes], grid, key);
    });
    RawSplit {
        origin,
        x,
        shape: shape.to_vec(),
        y: (0..n).map(|i| (i % classes) as i64).collect(),
    }
}

/// Draws a task's training and test splits for the model `opts` describes.
pub(super) fn load(task: SyntheticTask, opts: &DataOptions) -> Result<RawData, DataError> {
    let (n_train, n_test) = opts.synthetic_size;
    let name = format!("synthetic:{}", task.name());
    if n_train == 0 || n_test == 0 {
        return Err(DataError::BadOption(format!(
            "{name}: the synthetic sizes must be at least 1 each, not {n_train} / {n_test}"
        )));
    }
    let grid = Grid::of(&opts.sample_shape);
    let templates = match task {
        SyntheticTask::Patterns => templates(grid, opts.classes),
    };
    let shape = &opts.sample_shape;
    let train = make_split(
        &templates,
        grid,
        shape,
        n_train,
        0,
        opts.seed,
        format!("{name} (train)"),
    );
    let test = make_split(
        &templates,
        grid,
        shape,
        n_test,
        1,
        opts.seed,
        format!("{name} (test)"),
    );
    Ok(RawData {
        notes: vec![format!(
            "{} classes, samples {shape:?}, data seed {}",
            opts.classes, opts.seed
        )],
        name,
        train,
        test: Some(test),
        class_names: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accuracy of the nearest class mean (from the training split) on the
    /// test split: a floor for what a trained network reaches.
    fn nearest_mean_accuracy(shape: Vec<usize>, classes: usize) -> f64 {
        let mut opts = DataOptions::new(shape, classes);
        opts.synthetic_size = (100 * classes, 50 * classes);
        let raw = load(SyntheticTask::Patterns, &opts).unwrap();
        let len = raw.train.x.len() / raw.train.y.len();
        let mut means = vec![vec![0.0f64; len]; classes];
        for (s, &y) in raw.train.x.chunks(len).zip(&raw.train.y) {
            for (m, v) in means[y as usize].iter_mut().zip(s) {
                *m += f64::from(*v);
            }
        }
        let right = raw
            .test
            .as_ref()
            .unwrap()
            .x
            .chunks(len)
            .zip(&raw.test.as_ref().unwrap().y)
            .filter(|(s, &y)| {
                let dist = |m: &Vec<f64>| {
                    let scale = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-9);
                    -m.iter()
                        .zip(s.iter())
                        .map(|(a, &b)| a / scale * f64::from(b))
                        .sum::<f64>()
                };
                let best = (0..classes)
                    .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
                    .unwrap();
                best as i64 == y
            })
            .count();
        right as f64 / raw.test.unwrap().y.len() as f64
    }

    #[test]
    fn patterns_are_learnable_but_not_trivial() {
        for (shape, classes) in [(vec![1, 16, 16], 10), (vec![3, 8, 8], 4), (vec![20], 5)] {
            let acc = nearest_mean_accuracy(shape.clone(), classes);
            assert!(
                acc > 1.5 / classes as f64 && acc < 0.97,
                "{shape:?} x {classes}: nearest-mean accuracy {acc}"
            );
        }
    }

    #[test]
    fn patterns_depend_on_the_data_seed_but_templates_do_not() {
        let mut opts = DataOptions::new(vec![2, 5, 6], 3);
        opts.synthetic_size = (6, 3);
        let a = load(SyntheticTask::Patterns, &opts).unwrap();
        let b = load(SyntheticTask::Patterns, &opts).unwrap();
        assert_eq!(a.train.x, b.train.x);
        assert_eq!(a.train.y, vec![0, 1, 2, 0, 1, 2]);
        assert_ne!(a.train.x[..60], a.test.as_ref().unwrap().x[..60]);
        opts.seed = 5;
        let c = load(SyntheticTask::Patterns, &opts).unwrap();
        assert_ne!(a.train.x, c.train.x);
        let grid = Grid::of(&opts.sample_shape);
        assert_eq!(templates(grid, 3), templates(grid, 3));
        assert!(a.train.x.iter().all(|v| v.is_finite()));
        let err = "noise".parse::<SyntheticTask>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "no synthetic task `noise` (there is: patterns)"
        );
    }
}
