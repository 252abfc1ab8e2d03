//! The data a comparison trains on: read once into memory, checked against
//! the model, normalised, and fed to the training step in batches.
//!
//! A paired comparison is only fair if every arm sees the same samples in
//! the same order with the same augmentation, and only useful if a data set
//! that does not fit the model is refused before hours of training, not
//! during them. So every format reader delivers the same in-memory
//! [`Dataset`] (f32 samples one after another, i64 labels), [`load`] checks
//! it against the model's input shape and output width, and the batch
//! iterators derive every random choice from the seed, the epoch and the
//! sample's position alone.
//!
//! One file per concern: [`spec`] says what `--data` names and detects the
//! format, one reader per format ([`arrays`] for `.npz`/`.npy`, [`idx`],
//! [`cifar`], [`images`], [`synthetic`]), [`conform`] fits a split to the
//! model and holds out a test split, [`normalize`] and [`augment`]
//! transform samples, and [`batches`] assembles them ahead of the step.

mod arrays;
mod augment;
mod batches;
mod cifar;
mod conform;
mod error;
mod idx;
mod images;
mod normalize;
mod rng;
mod spec;
mod synthetic;

#[cfg(test)]
mod tests;

// The surface the comparison's engine uses.
pub(crate) use augment::Augment;
pub(crate) use batches::{eval_batches, train_batches};
pub use error::DataError;
pub(crate) use normalize::Normalizer;
pub(crate) use spec::DataSpec;
pub(crate) use synthetic::SyntheticTask;

/// One split, decoded to f32, samples one after another.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dataset {
    /// `len() * sample_len()` values, sample after sample, each in C order.
    pub x: Vec<f32>,
    /// One class index per sample, each in `0..classes`.
    pub y: Vec<i64>,
    /// One sample's shape, e.g. `[C, H, W]` or `[F]`.
    pub shape: Vec<usize>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Sample `i`'s values.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.x[i * n..(i + 1) * n]
    }

    /// The samples at `indices`, in that order.
    pub(crate) fn select(&self, indices: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(indices.len() * self.sample_len());
        for &i in indices {
            x.extend_from_slice(self.sample(i));
        }
        Dataset {
            x,
            y: indices.iter().map(|&i| self.y[i]).collect(),
            shape: self.shape.clone(),
        }
    }
}

/// The training and test splits of one data set, ready for the model.
#[derive(Debug, Clone)]
pub(crate) struct Splits {
    /// What the model trains on.
    pub train: Dataset,
    /// What it is evaluated on.
    pub test: Dataset,
    /// One line for the report, e.g. `digits.npz: 1437 train / 360 test
    /// (held out 20%, seed 0)`, followed by every change made to fit the
    /// model (reshape, NHWC to NCHW, resize).
    pub description: String,
    /// True when the data had no test split and `test` was held out of it.
    pub test_held_out: bool,
    /// Class names in label order, where the data names them (image
    /// folders: the subfolder names).
    pub class_names: Option<Vec<String>>,
}

/// How to load and fit a data set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataOptions {
    /// Seeds the held-out split, the `limit` subset and synthetic samples.
    pub seed: u64,
    /// The share held out for testing when the data has no test split.
    pub test_fraction: f64,
    /// The model's input without the batch dimension.
    pub sample_shape: Vec<usize>,
    /// The model's output width: labels must lie in `0..classes`.
    pub classes: usize,
    /// Training and test sample counts of synthetic tasks.
    pub synthetic_size: (usize, usize),
    /// Use at most this many training samples (a seeded random subset).
    pub limit: Option<usize>,
}

impl DataOptions {
    #[cfg(test)]
    /// Options for a model taking `sample_shape` and giving `classes`
    /// outputs: data seed 0, 20% held out, synthetic 2000 / 500, no limit.
    pub(crate) fn new(sample_shape: Vec<usize>, classes: usize) -> DataOptions {
        DataOptions {
            seed: 0,
            test_fraction: 0.2,
            sample_shape,
            classes,
            synthetic_size: (2000, 500),
            limit: None,
        }
    }

    /// Refuses options no data set can satisfy.
    fn check(&self) -> Result<(), DataError> {
        if self.sample_shape.is_empty() || self.sample_shape.contains(&0) {
            return Err(DataError::BadOption(format!(
                "the model's input {:?} holds no values per sample",
                self.sample_shape
            )));
        }
        if self.classes == 0 {
            return Err(DataError::BadOption("the model has no outputs".into()));
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(DataError::BadOption(format!(
                "the test fraction must lie strictly between 0 and 1, not {}",
                self.test_fraction
            )));
        }
        Ok(())
    }
}

/// One split as a format reader delivers it, before it is fitted to the model.
#[derive(Debug)]
pub(super) struct RawSplit {
    /// Names the data in errors: the file, and the split where it matters.
    pub origin: String,
    /// The samples, each of `shape`, one after another (`uint8` already
    /// scaled to `[0, 1]`).
    pub x: Vec<f32>,
    /// One sample's shape as stored.
    pub shape: Vec<usize>,
    /// The labels as stored (not yet checked).
    pub y: Vec<i64>,
}

/// A data set as a format reader delivers it.
#[derive(Debug)]
pub(super) struct RawData {
    /// Names the data set in the description (a file or folder name).
    pub name: String,
    /// The training samples.
    pub train: RawSplit,
    /// The test samples, where the data has its own.
    pub test: Option<RawSplit>,
    /// What the reader did to fit the model (resizing, colour conversion).
    pub notes: Vec<String>,
    /// Class names in label order, where the data names them.
    pub class_names: Option<Vec<String>>,
}

/// Loads the data `spec` names and fits it to the model `opts` describes:
/// every split is checked (shape, labels, counts, finite values) before
/// anything trains; a test split is held out where the data has none.
pub(crate) fn load(spec: &DataSpec, opts: &DataOptions) -> Result<Splits, DataError> {
    opts.check()?;
    let raw = match spec {
        DataSpec::Synthetic(task) => synthetic::load(*task, opts)?,
        DataSpec::Npz(path) => arrays::load_npz(path)?,
        DataSpec::Npy { x, y, test } => arrays::load_npy(x, y, test.as_ref())?,
        DataSpec::Idx(dir) => idx::load(dir)?,
        DataSpec::Cifar(path) => cifar::load(path)?,
        DataSpec::Images(dir) => images::load(dir, &opts.sample_shape)?,
    };
    conform::finish(raw, opts)
}
