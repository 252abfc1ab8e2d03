//! Why a data set cannot be used with the model, said before any training
//! starts.
//!
//! A comparison runs for hours; a data set that does not fit the model, or
//! a file cut short by an interrupted download, must stop it at load time
//! with the file and the remedy named, never as a panic mid-run. Each
//! variant names the file (or data set) it is about.

use std::path::PathBuf;

/// Why a data set cannot be loaded or does not fit the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// `--data` does not parse.
    #[error("--data `{spec}`: {reason}")]
    BadSpec {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A synthetic task name that does not exist.
    #[error("no synthetic task `{name}` (there is: {known})")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The tasks there are, comma-separated.
        known: String,
    },
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// Nothing at the path looks like a data set format this reader knows.
    #[error("{}: cannot tell the data format ({found})", path.display())]
    UnknownFormat {
        /// The path given.
        path: PathBuf,
        /// What was there instead.
        found: String,
    },
    /// A file or folder cannot be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A `.npz` archive or `.npy` array cannot be read.
    #[error("{}: {source}", path.display())]
    Npz {
        /// The file.
        path: PathBuf,
        /// What is wrong inside it (an npz reader error).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file is cut short or its bytes do not follow its format.
    #[error("{}: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the sizes where they tell.
        detail: String,
    },
    /// An image file cannot be decoded.
    #[error("{}: cannot decode the image", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder's reason.
        #[source]
        source: image::ImageError,
    },
    /// A `.npz` lacks the inputs or the labels.
    #[error("{}: no array for the {what} (the archive has: {keys})", path.display())]
    MissingArray {
        /// The file.
        path: PathBuf,
        /// `inputs` or `labels`, and for which split.
        what: String,
        /// The keys the archive does have.
        keys: String,
    },
    /// One sample's shape cannot be made the model's input.
    #[error("{origin}: one sample is {data:?}, the model takes {model:?}")]
    ShapeMismatch {
        /// Which data (file and split).
        origin: String,
        /// One sample's shape in the data.
        data: Vec<usize>,
        /// The model's input without the batch dimension.
        model: Vec<usize>,
    },
    /// A label the model has no output for.
    #[error(
        "{origin}: label {label} (sample {index}) is outside the model's {classes} outputs \
         (0..{classes})"
    )]
    LabelOutOfRange {
        /// Which data (file and split).
        origin: String,
        /// The sample's position in its split.
        index: usize,
        /// The label.
        label: i64,
        /// The model's output width.
        classes: usize,
    },
    /// Labels that are not class indices.
    #[error("{origin}: {detail}")]
    BadLabels {
        /// Which data (file and split).
        origin: String,
        /// What is wrong with them.
        detail: String,
    },
    /// Inputs that are not an array of samples.
    #[error("{origin}: {detail}")]
    BadInputs {
        /// Which data (file and split).
        origin: String,
        /// What is wrong with them.
        detail: String,
    },
    /// Inputs and labels disagree in count.
    #[error("{origin}: {x} inputs but {y} labels")]
    CountMismatch {
        /// Which data (file and split).
        origin: String,
        /// Number of input samples.
        x: usize,
        /// Number of labels.
        y: usize,
    },
    /// An input value is NaN or infinite.
    #[error("{origin}: sample {index} holds {value}")]
    NonFinite {
        /// Which data (file and split).
        origin: String,
        /// The sample's position in its split.
        index: usize,
        /// The value (NaN or an infinity).
        value: f32,
    },
    /// A split with no samples.
    #[error("{origin}: no samples")]
    Empty {
        /// Which data (file and split).
        origin: String,
    },
    /// The model's input is not one this data can be shaped to.
    #[error("{origin}: the model takes samples of shape {model:?}; {detail}")]
    ModelInput {
        /// Which data.
        origin: String,
        /// The model's input without the batch dimension.
        model: Vec<usize>,
        /// What this data needs instead.
        detail: String,
    },
    /// An option out of its range.
    #[error("{0}")]
    BadOption(String),
}

/// What `--data` accepts, for the hint when it names nothing usable.
const FORMATS: &str =
    "--data takes synthetic[:TASK], FILE.npz, X.npy,Y.npy[,XTEST.npy,YTEST.npy], \
    a folder of MNIST-style IDX files, CIFAR-10/100 binary batches (a folder or one .bin), \
    or an image folder with one subfolder per class; \
    prefix npz:, npy:, idx:, cifar: or images: to name the format";

/// How to make samples fit, for the hint on a shape mismatch.
const FIT_SHAPE: &str = "give data whose samples hold the model's input: the same shape, \
    the same number of values, or NHWC images for an NCHW model";

impl DataError {
    /// What the user can do about the error, where one thing helps.
    pub(crate) fn hint(&self) -> Option<String> {
        use crate::npz::{NpzError, ZipError};
        let hint = match self {
            DataError::BadSpec { .. }
            | DataError::UnknownFormat { .. }
            | DataError::NotFound { .. } => FORMATS.to_string(),
            DataError::UnknownTask { .. } => "use --data synthetic:patterns".into(),
            DataError::Npz { source, .. }
                if matches!(
                    source.downcast_ref::<NpzError>(),
                    Some(NpzError::Zip(ZipError::Compressed { .. }))
                ) =>
            {
                "load it in numpy and save it again with numpy.savez or numpy.savez_compressed"
                    .into()
            }
            DataError::Corrupt { .. } | DataError::Image { .. } => {
                "the file may be truncated by an interrupted download; fetch it again".into()
            }
            DataError::MissingArray { .. } => "name the arrays x and y (or x_train, y_train, \
                x_test, y_test): numpy.savez(path, x=x, y=y)"
                .into(),
            DataError::ShapeMismatch { .. } => FIT_SHAPE.to_string(),
            DataError::LabelOutOfRange { classes, .. } => format!(
                "labels must be class indices 0..{classes}; \
                 use a model with as many outputs as the data has classes"
            ),
            DataError::NonFinite { .. } => "replace or drop the samples with missing values".into(),
            _ => return None,
        };
        Some(hint)
    }
}
