//! The library's error type.
//!
//! Every failure that a user can cause (a broken file, a path that escapes
//! the model folder, an option that makes no sense) is a variant here that
//! names the file, tensor or node involved; the CLI renders it with a hint
//! and maps it to exit status 2. Panics are reserved for bugs.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, planning, rewiring or writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read, written or renamed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot open", "cannot write", ...).
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The protobuf wire format is broken (truncated, lying length, ...).
    #[error("malformed ONNX file at byte {offset}: {detail}")]
    Malformed {
        /// The byte offset in the file where the walk failed.
        offset: u64,
        /// What is wrong there.
        detail: String,
    },

    /// The bytes are valid protobuf but not an ONNX model.
    #[error("not an ONNX model: {detail}")]
    NotOnnx {
        /// What is missing or wrong.
        detail: String,
    },

    /// A tensor's declared shape, type and payload do not fit together.
    #[error("tensor `{tensor}`: {detail}")]
    InvalidTensor {
        /// The tensor's name.
        tensor: String,
        /// What does not fit.
        detail: String,
    },

    /// A tensor's external data cannot be used.
    #[error("tensor `{tensor}`: external data `{location}`: {detail}")]
    ExternalData {
        /// The tensor's name.
        tensor: String,
        /// The `location` the model gives for the data.
        location: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Writing would replace a file the command reads from.
    #[error("refusing to overwrite {path}, which is an input of this run")]
    WouldOverwrite {
        /// The output path that names an input.
        path: PathBuf,
    },

    /// An option's value cannot be used.
    #[error("invalid option {option}: {detail}")]
    InvalidOption {
        /// The option as written on the command line.
        option: String,
        /// Why its value is refused.
        detail: String,
    },

    /// The thread writing the output stopped early; the error that stopped
    /// it is the one reported, so this one only ends the other threads.
    #[error("the output writer stopped")]
    WriterStopped,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tensor(tensor: &str, detail: impl Into<String>) -> Self {
        Error::InvalidTensor {
            tensor: tensor.to_string(),
            detail: detail.into(),
        }
    }

    /// A suggestion for the user, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Malformed { .. } => Some(
                "the file may be truncated or not an ONNX model; re-export it or check the download"
                    .into(),
            ),
            Error::ExternalData { location, .. } => Some(format!(
                "keep `{location}` inside the model's folder, next to the .onnx file that names it"
            )),
            Error::WouldOverwrite { .. } => {
                Some("write to another path, or pass --force to replace it".into())
            }
            _ => None,
        }
    }
}
