//! Data sets saved by numpy: one `.npz` archive, or `.npy` files.
//!
//! This is how most users hold data they prepared themselves
//! (`numpy.savez("digits.npz", x=x, y=y)`, or Keras' `mnist.npz` with
//! `x_train`, `y_train`, `x_test`, `y_test`). The archive is read by the
//! house reader ([`crate::npz`]); this file finds the inputs and labels by
//! their usual names and turns any number type into f32 inputs (`uint8`
//! scaled to `[0, 1]`) and class indices (one-hot rows taken to their
//! index).

use std::path::{Path, PathBuf};

use crate::npz::{self, Dtype, NpzError, RawArray};

use super::{DataError, RawData, RawSplit};

/// Keys tried, in order, for each array of a `.npz` (numpy names positional
/// arrays `arr_0`, `arr_1`, ...).
const TRAIN_X: &[&str] = &[
    "x_train", "train_x", "X_train", "x", "X", "data", "inputs", "images", "features", "arr_0",
];
const TRAIN_Y: &[&str] = &[
    "y_train", "train_y", "Y_train", "y", "Y", "labels", "targets", "target", "arr_1",
];
const TEST_X: &[&str] = &["x_test", "test_x", "X_test", "arr_2"];
const TEST_Y: &[&str] = &["y_test", "test_y", "Y_test", "arr_3"];

/// The file name of `path`, for descriptions.
pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads a whole file, naming it in the error.
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `.npz` holding inputs and labels, and a test pair if it has one.
pub(super) fn load_npz(path: &Path) -> Result<RawData, DataError> {
    let bytes = read_file(path)?;
    let arrays = npz::parse_raw(&bytes).map_err(|source| DataError::Npz {
        path: path.to_path_buf(),
        source: source.into(),
    })?;
    let name = file_name(path);
    let find = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| arrays.iter().find(|(key, _)| key == k))
            .map(|(_, a)| a)
    };
    let missing = |what: &str| DataError::MissingArray {
        path: path.to_path_buf(),
        what: what.to_string(),
        keys: arrays
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let x = find(TRAIN_X).ok_or_else(|| missing("training inputs"))?;
    let y = find(TRAIN_Y).ok_or_else(|| missing("training labels"))?;
    let test = match (find(TEST_X), find(TEST_Y)) {
        (Some(x), Some(y)) => Some(split(format!("{name} (test)"), x, y)?),
        (None, None) => None,
        (Some(_), None) => return Err(missing("test labels")),
        (None, Some(_)) => return Err(missing("test inputs")),
    };
    let origin = if test.is_some() {
        format!("{name} (train)")
    } else {
        name.clone()
    };
    Ok(RawData {
        train: split(origin, x, y)?,
        test,
        name,
        notes: Vec::new(),
        class_names: None,
    })
}

/// Reads inputs and labels from separate `.npy` files, and a test pair.
pub(super) fn load_npy(
    x: &Path,
    y: &Path,
    test: Option<&(PathBuf, PathBuf)>,
) -> Result<RawData, DataError> {
    let pair = |x: &Path, y: &Path, origin: String| -> Result<RawSplit, DataError> {
        let xb = read_file(x)?;
        let yb = read_file(y)?;
        split(origin, &one_npy(x, &xb)?, &one_npy(y, &yb)?)
    };
    let name = file_name(x);
    let test = match test {
        Some((tx, ty)) => Some(pair(tx, ty, file_name(tx))?),
        None => None,
    };
    Ok(RawData {
        train: pair(x, y, name.clone())?,
        test,
        name,
        notes: Vec::new(),
        class_names: None,
    })
}

/// Parses one `.npy` file's bytes.
fn one_npy<'b>(path: &Path, bytes: &'b [u8]) -> Result<RawArray<'b>, DataError> {
    npz::parse_npy_raw(bytes).map_err(|problem| DataError::Npz {
        path: path.to_path_buf(),
        source: NpzError::Array {
            key: file_name(path),
            problem,
        }
        .into(),
    })
}

/// Inputs and labels as one split.
fn split(origin: String, x: &RawArray<'_>, y: &RawArray<'_>) -> Result<RawSplit, DataError> {
    let Some((_, sample)) = x.shape.split_first() else {
        return Err(DataError::BadInputs {
            origin,
            detail: "the inputs are a single number, not an array of samples".into(),
        });
    };
    let mut values = x.to_f32();
    if x.dtype == Dtype::U8 {
        values.iter_mut().for_each(|v| *v /= 255.0);
    }
    let labels = labels(&origin, y)?;
    Ok(RawSplit {
        origin,
        x: values,
        shape: sample.to_vec(),
        y: labels,
    })
}

/// Class indices from labels of shape `[N]`, `[N, 1]` or one-hot `[N, K]`.
pub(super) fn labels(origin: &str, y: &RawArray<'_>) -> Result<Vec<i64>, DataError> {
    let bad = |detail: String| DataError::BadLabels {
        origin: origin.to_string(),
        detail,
    };
    match y.shape.as_slice() {
        [_] | [_, 1] => y.to_i64().map_err(|i| {
            bad(format!(
                "label {i} is not a whole number; labels must be class indices"
            ))
        }),
        [n, k] => {
            let values = y.to_f32();
            (0..*n)
                .map(|row| {
                    let r = &values[row * k..(row + 1) * k];
                    let ones = r.iter().filter(|&&v| v == 1.0).count();
                    let zeros = r.iter().filter(|&&v| v == 0.0).count();
                    match r.iter().position(|&v| v == 1.0) {
                        Some(at) if ones == 1 && zeros == k - 1 => Ok(at as i64),
                        _ => Err(bad(format!(
                            "labels of shape {:?}: row {row} is not one-hot; give class indices of shape [N]",
                            y.shape
                        ))),
                    }
                })
                .collect()
        }
        shape => Err(bad(format!(
            "labels of shape {shape:?}; give class indices of shape [N]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npz::tests::{npy, zip};

    fn bytes<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| to(v)).collect()
    }

    #[test]
    fn a_keras_style_npz_round_trips_with_uint8_scaled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnist.npz");
        let file = zip(&[
            (
                "x_train.npy",
                npy("|u1", "(2, 2, 2)", &[0, 255, 51, 102, 0, 0, 0, 255]),
            ),
            ("y_train.npy", npy("|u1", "(2,)", &[3, 1])),
            ("x_test.npy", npy("|u1", "(1, 2, 2)", &[255, 0, 0, 0])),
            (
                "y_test.npy",
                npy("<i8", "(1,)", &bytes(&[2i64], i64::to_le_bytes)),
            ),
        ]);
        std::fs::write(&path, file).unwrap();
        let raw = load_npz(&path).unwrap();
        assert_eq!(raw.name, "mnist.npz");
        assert_eq!(raw.train.shape, vec![2, 2]);
        assert_eq!(raw.train.x[..4], [0.0, 1.0, 0.2, 0.4]);
        assert_eq!(raw.train.y, vec![3, 1]);
        let test = raw.test.unwrap();
        assert_eq!((test.x[0], test.y.clone()), (1.0, vec![2]));
        assert_eq!(test.origin, "mnist.npz (test)");
    }

    #[test]
    fn float_and_one_hot_labels_become_indices_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        let x = npy(
            "<f8",
            "(3, 1)",
            &bytes(&[0.5f64, 1.5, -2.0], f64::to_le_bytes),
        );
        let onehot = bytes(&[0f32, 1., 0., 1., 0., 0., 0., 0., 1.], f32::to_le_bytes);
        std::fs::write(
            &path,
            zip(&[
                ("x.npy", x.clone()),
                ("y.npy", npy("<f4", "(3, 3)", &onehot)),
            ]),
        )
        .unwrap();
        let raw = load_npz(&path).unwrap();
        assert_eq!(raw.train.y, vec![1, 0, 2]);
        assert_eq!(raw.train.x, vec![0.5, 1.5, -2.0]);
        assert!(raw.test.is_none());
        let fractional = bytes(&[0f32, 1.5, 2.0], f32::to_le_bytes);
        std::fs::write(
            &path,
            zip(&[
                ("x.npy", x.clone()),
                ("y.npy", npy("<f4", "(3,)", &fractional)),
            ]),
        )
        .unwrap();
        let err = load_npz(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            "d.npz: label 1 is not a whole number; labels must be class indices"
        );
        std::fs::write(&path, zip(&[("inputs_oops.npy", x)])).unwrap();
        let err = load_npz(&path).unwrap_err();
        assert!(
            matches!(&err, DataError::MissingArray { keys, .. } if keys == "inputs_oops"),
            "{err:?}"
        );
        assert!(err.hint().unwrap().contains("numpy.savez"));
    }

    #[test]
    fn npy_pairs_load_and_a_truncated_npy_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        std::fs::write(
            &xp,
            npy(
                "<i4",
                "(2, 3)",
                &bytes(&[1i32, 2, 3, 4, 5, 6], i32::to_le_bytes),
            ),
        )
        .unwrap();
        std::fs::write(
            &yp,
            npy("<i2", "(2,)", &bytes(&[0i16, 1], i16::to_le_bytes)),
        )
        .unwrap();
        let raw = load_npy(&xp, &yp, None).unwrap();
        assert_eq!(raw.train.x, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(raw.train.y, vec![0, 1]);
        let full = std::fs::read(&xp).unwrap();
        std::fs::write(&xp, &full[..full.len() - 5]).unwrap();
        let err = load_npy(&xp, &yp, None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("x.npy") && text.contains("needs 24 bytes"),
            "{text}"
        );
        let err = load_npy(&dir.path().join("absent.npy"), &yp, None).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    }
}
