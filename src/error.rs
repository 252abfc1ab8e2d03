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
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The protobuf wire format is broken (truncated, lying length, ...).
    #[error("malformed ONNX file at byte {offset}: {detail}")]
    Malformed { offset: u64, detail: String },

    /// The bytes are valid protobuf but not an ONNX model.
    #[error("not an ONNX model: {detail}")]
    NotOnnx { detail: String },

    /// A tensor's declared shape, type and payload do not fit together.
    #[error("tensor `{tensor}`: {detail}")]
    InvalidTensor { tensor: String, detail: String },

    /// A tensor's external data cannot be used.
    #[error("tensor `{tensor}`: external data `{location}`: {detail}")]
    ExternalData {
        tensor: String,
        location: String,
        detail: String,
    },

    /// Writing would replace a file the command reads from.
    #[error("refusing to overwrite {path}, which is an input of this run")]
    WouldOverwrite { path: PathBuf },

    /// An option's value cannot be used.
    #[error("invalid option {option}: {detail}")]
    InvalidOption { option: String, detail: String },

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
