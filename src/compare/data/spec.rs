//! What `--data` names, and which format it is in.
//!
//! Users point at what they have: a file, a pair of files, or a folder as
//! a data set's download unpacks it. The format is told from what is there
//! (the extension of a file; for a folder, the IDX, CIFAR or class-folder
//! files inside), so that no flag has to say it; a `FORMAT:` prefix forces
//! one where the guess would be wrong. What cannot be told is an error
//! listing what was looked for.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{cifar, idx, images, DataError, SyntheticTask};

/// A data set, as `--data` names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DataSpec {
    /// `synthetic` or `synthetic:TASK`: built in, no file.
    Synthetic(SyntheticTask),
    /// `FILE.npz` with `x`/`y` (and optionally `x_test`/`y_test`) arrays.
    Npz(PathBuf),
    /// `X.npy,Y.npy` or `X.npy,Y.npy,XTEST.npy,YTEST.npy`.
    Npy {
        /// The training inputs.
        x: PathBuf,
        /// The training labels.
        y: PathBuf,
        /// The test inputs and labels.
        test: Option<(PathBuf, PathBuf)>,
    },
    /// A folder of MNIST-style IDX files.
    Idx(PathBuf),
    /// CIFAR-10/100 binary batches: a folder, or one `.bin` file.
    Cifar(PathBuf),
    /// A folder with one subfolder of images per class.
    Images(PathBuf),
}

/// The prefixes that force a format.
const PREFIXES: &[&str] = &["npz", "npy", "idx", "cifar", "images"];

impl DataSpec {
    /// Tells the format of the file or folder at `path`.
    pub(crate) fn detect(path: &Path) -> Result<DataSpec, DataError> {
        if !path.exists() {
            return Err(DataError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let unknown = |found: &str| DataError::UnknownFormat {
            path: path.to_path_buf(),
            found: found.to_string(),
        };
        if path.is_file() {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            return match ext.as_deref() {
                Some("npz") => Ok(DataSpec::Npz(path.to_path_buf())),
                Some("npy") => Err(unknown(
                    "a .npy file holds one array; name the inputs and labels as X.npy,Y.npy",
                )),
                Some("bin") => Ok(DataSpec::Cifar(path.to_path_buf())),
                _ if idx_like(path) => Err(unknown(
                    "an IDX file alone; give the folder holding the images and labels files",
                )),
                _ => Err(unknown("a file that is not .npz, .npy or a CIFAR .bin")),
            };
        }
        if idx::find(path)?.is_some() {
            return Ok(DataSpec::Idx(path.to_path_buf()));
        }
        if cifar::find(path)?.is_some() {
            return Ok(DataSpec::Cifar(path.to_path_buf()));
        }
        if images::find(path)?.is_some() {
            return Ok(DataSpec::Images(path.to_path_buf()));
        }
        Err(unknown(
            "a folder with no IDX files, CIFAR batches, or class subfolders of images",
        ))
    }

    /// A `.npy` list: two or four comma-separated paths.
    fn npy_list(text: &str, parts: &[&str]) -> Result<DataSpec, DataError> {
        let path = |p: &str| -> Result<PathBuf, DataError> {
            let path = PathBuf::from(p.trim());
            if path.is_file() {
                Ok(path)
            } else {
                Err(DataError::NotFound { path })
            }
        };
        match parts {
            [x, y] => Ok(DataSpec::Npy {
                x: path(x)?,
                y: path(y)?,
                test: None,
            }),
            [x, y, tx, ty] => Ok(DataSpec::Npy {
                x: path(x)?,
                y: path(y)?,
                test: Some((path(tx)?, path(ty)?)),
            }),
            _ => Err(DataError::BadSpec {
                spec: text.to_string(),
                reason: format!(
                    "{} paths; .npy data takes X.npy,Y.npy or X.npy,Y.npy,XTEST.npy,YTEST.npy",
                    parts.len()
                ),
            }),
        }
    }
}

/// True when a file name looks like an IDX file.
fn idx_like(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().contains("idx"))
}

impl FromStr for DataSpec {
    type Err = DataError;

    /// Reads `--data`: `synthetic[:TASK]`, a path (format detected), two
    /// or four `.npy` paths separated by commas, or `FORMAT:PATH` with
    /// `FORMAT` one of `npz`, `npy`, `idx`, `cifar`, `images`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(DataError::BadSpec {
                spec: s.to_string(),
                reason: "empty".into(),
            });
        }
        if text == "synthetic" {
            return Ok(DataSpec::Synthetic(SyntheticTask::default()));
        }
        if let Some(task) = text.strip_prefix("synthetic:") {
            return task.parse().map(DataSpec::Synthetic);
        }
        if let Some((prefix, rest)) = text.split_once(':') {
            if PREFIXES.contains(&prefix) {
                let path = PathBuf::from(rest);
                let exists = || {
                    if path.exists() {
                        Ok(path.clone())
                    } else {
                        Err(DataError::NotFound { path: path.clone() })
                    }
                };
                return match prefix {
                    "npz" => Ok(DataSpec::Npz(exists()?)),
                    "npy" => Self::npy_list(text, &rest.split(',').collect::<Vec<_>>()),
                    "idx" => Ok(DataSpec::Idx(exists()?)),
                    "cifar" => Ok(DataSpec::Cifar(exists()?)),
                    _ => Ok(DataSpec::Images(exists()?)),
                };
            }
        }
        if text.contains(',') && !Path::new(text).exists() {
            return Self::npy_list(text, &text.split(',').collect::<Vec<_>>());
        }
        DataSpec::detect(Path::new(text))
    }
}

impl fmt::Display for DataSpec {
    /// The canonical form, with the format prefix: parsing it gives the
    /// same spec without detection.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Synthetic(task) => write!(f, "synthetic:{}", task.name()),
            DataSpec::Npz(p) => write!(f, "npz:{}", p.display()),
            DataSpec::Npy { x, y, test } => {
                write!(f, "npy:{},{}", x.display(), y.display())?;
                if let Some((tx, ty)) = test {
                    write!(f, ",{},{}", tx.display(), ty.display())?;
                }
                Ok(())
            }
            DataSpec::Idx(p) => write!(f, "idx:{}", p.display()),
            DataSpec::Cifar(p) => write!(f, "cifar:{}", p.display()),
            DataSpec::Images(p) => write!(f, "images:{}", p.display()),
        }
    }
}
