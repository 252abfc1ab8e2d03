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
