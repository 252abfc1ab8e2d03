//! Why a comparison stopped, with what the user can do about it.

use std::path::PathBuf;

/// Why a comparison could not run or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// The data could not be read or does not fit the model.
    #[error("data: {0}")]
    Data(#[from] super::data::DataError),
    /// The model could not be read, located or rewired.
    #[error(transparent)]
    Model(#[from] crate::Error),
    /// The training or evaluation graph could not be built or run.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// The model is outside what a comparison trains.
    #[error("{0}")]
    Unsupported(String),
    /// The output folder holds runs of another configuration.
    #[error("{dir} holds runs of another configuration ({what} differs)")]
    ConfigChanged {
        /// The output folder.
        dir: PathBuf,
        /// The first setting that differs.
        what: String,
    },
    /// Two folders given to `compare merge` are of different comparisons.
    #[error("{first} and {other} are not shards of one comparison ({what} differs)")]
    MergeMismatch {
        /// The first folder.
        first: PathBuf,
        /// The folder that differs from it.
        other: PathBuf,
        /// The first setting that differs.
        what: String,
    },
    /// One run was found in two folders with different results.
    #[error("{arm} seed {seed} is in {first} and in {other} with different results")]
    DuplicateRun {
        /// The arm.
        arm: String,
        /// The seed.
        seed: u64,
        /// One folder.
        first: PathBuf,
        /// The other.
        other: PathBuf,
    },
    /// Runs of the plan that no folder holds.
    #[error("{count} runs are missing: {list}")]
    MissingRuns {
        /// How many.
        count: usize,
        /// The first few, as `arm seed s`.
        list: String,
    },
    /// The options contradict each other or are out of range.
    #[error("{0}")]
    Options(String),
    /// Reading or writing the output folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A stored run record is unreadable.
    #[error("{path}: not a run record of this version: {msg}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(#[from] super::plot::PlotError),
}

impl CompareError {
    /// What the user can do about the error, where one thing helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            CompareError::Data(e) => e.hint(),
            CompareError::Model(e) => e.hint(),
            CompareError::Train(e) => e.hint(),
            CompareError::Plot(e) => e.hint(),
            CompareError::MissingRuns { .. } => Some(
                "run the shards that made them again (each resumes), or pass --allow-missing to merge what is there".into(),
            ),
            CompareError::DuplicateRun { .. } => Some(
                "the two folders ran the same run with other code or hardware; keep one of them".into(),
            ),
            CompareError::ConfigChanged { .. } => {
                Some("use another --out folder, or restore the earlier settings to resume".into())
            }
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CompareError::Io {
            path: path.into(),
            source,
        }
    }
}
