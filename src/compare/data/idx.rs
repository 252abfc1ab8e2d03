//! MNIST-style IDX files, plain or gzipped.
//!
//! MNIST, Fashion-MNIST, KMNIST and EMNIST are distributed as IDX files
//! (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, and
//! `t10k-*` for the test split): a big-endian header giving the element
//! type and the dimensions, then the values. Users unpack them or not, so
//! both are read; gzip is recognised by its magic bytes, not the name.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::arrays::{file_name, read_file};
use super::{DataError, RawData, RawSplit};

/// The four files of one IDX data set (the test pair optional).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test: Option<(PathBuf, PathBuf)>,
}

/// Which role a file name plays, if it is an IDX file.
fn role(name: &str) -> Option<(bool, bool)> {
    let name = name.to_ascii_lowercase();
    if !name.contains("idx") {
        return None;
    }
    let train = name.contains("train");
    let test = name.contains("t10k") || name.contains("test");
    let images = name.contains("images");
    let labels = name.contains("labels");
    (train != test && images != labels).then_some((train, images))
}

/// The IDX files in `dir`, if it holds a training pair. A folder holding
/// two sets (EMNIST's subsets side by side) is refused as ambiguous.
pub(super) fn find(dir: &Path) -> Result<Option<IdxFiles>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut slots: [Vec<PathBuf>; 4] = Default::default();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some((train, images)) = path.file_name().and_then(|n| n.to_str()).and_then(role) else {
            continue;
        };
        if path.is_file() {
            slots[usize::from(train) * 2 + usize::from(images)].push(path);
        }
    }
    let mut pick = |slot: usize| -> Result<Option<PathBuf>, DataError> {
        let files = &mut slots[slot];
        // An unpacked copy next to its .gz is the same data: keep the unpacked one.
        files.sort();
        let stems: Vec<String> = files
            .iter()
            .map(|p| file_name(p).trim_end_matches(".gz").to_string())
            .collect();
        match files.len() {
            0 => Ok(None),
            1 => Ok(Some(files[0].clone())),
            2 if stems[0] == stems[1] => Ok(Some(files[0].clone())),
            _ => Err(DataError::UnknownFormat {
                path: dir.to_path_buf(),
                found: format!(
                    "several IDX sets side by side ({}); give a folder holding one",
                    stems.join(", ")
                ),
            }),
        }
    };
    let (train_labels, train_images) = (pick(2)?, pick(3)?);
    let (test_labels, test_images) = (pick(0)?, pick(1)?);
    let (Some(train_images), Some(train_labels)) = (train_images, train_labels) else {
        return Ok(None);
    };
    Ok(Some(IdxFiles {
        train_images,
        train_labels,
        test: test_images.zip(test_labels),
    }))
}

/// One IDX array: its element type code, dimensions and big-endian values.
struct IdxArray {
    kind: u8,
    dims: Vec<usize>,
    body: Vec<u8>,
}

/// Bytes per element of an IDX type code.
fn element_size(kind: u8) -> Option<usize> {
    match kind {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

impl IdxArray {
    /// Each value as a number.
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let size = element_size(self.kind).unwrap_or(1);
        let kind = self.kind;
        self.body.chunks_exact(size).map(move |c| match kind {
            0x08 => f64::from(c[0]),
            0x09 => f64::from(c[0] as i8),
            0x0B => f64::from(i16::from_be_bytes([c[0], c[1]])),
            0x0C => f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])),
            0x0D => f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])),
            _ => f64::from_be_bytes(c.try_into().expect("8 bytes")),
        })
    }
}

/// Reads one IDX file, gunzipping it if it is compressed.
fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut bytes = read_file(path)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .map_err(|e| corrupt(format!("gzip stream broken ({e})")))?;
        bytes = plain;
    }
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(corrupt("not an IDX file (no IDX magic number)".into()));
    }
    let kind = bytes[2];
    let size = element_size(kind)
        .ok_or_else(|| corrupt(format!("unknown IDX element type 0x{kind:02x}")))?;
    let rank = usize::from(bytes[3]);
    let header = 4 + 4 * rank;
    let dims: Vec<usize> = bytes
        .get(4..header)
        .ok_or_else(|| {
            corrupt(format!(
                "truncated: {} bytes, the header alone needs {header}",
                bytes.len()
            ))
        })?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let needed = dims
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(format!("dimensions {dims:?} overflow")))?;
    let got = bytes.len() - header;
    if got != needed {
        let what = if got < needed {
            "truncated"
        } else {
            "too long"
        };
        return Err(corrupt(format!(
            "{what}: dimensions {dims:?} need {needed} bytes of values, the file has {got}"
        )));
    }
    bytes.drain(..header);
    Ok(IdxArray {
        kind,
        dims,
        body: bytes,
    })
}

/// One split from an images file and a labels file.
fn split(images: &Path, labels: &Path) -> Result<RawSplit, DataError> {
    let x = read_idx(images)?;
    let y = read_idx(labels)?;
    let origin = file_name(images);
    let Some((_, sample)) = x.dims.split_first() else {
        return Err(DataError::Corrupt {
            path: images.to_path_buf(),
            detail: "holds a single number, not an array of images".into(),
        });
    };
    if y.dims.len() != 1 {
        return Err(DataError::BadLabels {
            origin: file_name(labels),
            detail: format!("labels of shape {:?}; an IDX labels file holds [N]", y.dims),
        });
    }
    let scale = if x.kind == 0x08 { 1.0 / 255.0 } else { 1.0 };
    let labels_origin = file_name(labels);
    let y = y
        .values()
        .enumerate()
        .map(|(i, v)| {
            crate::npz::whole(v).ok_or_else(|| DataError::BadLabels {
                origin: labels_origin.clone(),
                detail: format!("label {i} is {v}, not a class index"),
            })
        })
        .collect::<Result<Vec<i64>, DataError>>()?;
    Ok(RawSplit {
        origin,
        x: x.values().map(|v| (v * scale) as f32).collect(),
        shape: sample.to_vec(),
        y,
    })
}

/// Reads the IDX data set in `dir`.
pub(super) fn load(dir: &Path) -> Result<RawData, DataError> {
    let files = find(dir)?.ok_or_else(|| DataError::UnknownFormat {
        path: dir.to_path_buf(),
        found: "no train-images-idx3-ubyte and train-labels-idx1-ubyte files (optionally .gz)"
            .into(),
    })?;
    let test = match &files.test {
        Some((images, labels)) => Some(split(images, labels)?),
        None => None,
    };
    Ok(RawData {
        name: file_name(dir),
        train: split(&files.train_images, &files.train_labels)?,
        test,
        notes: Vec::new(),
        class_names: None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;

    /// An IDX file of `u8` values.
    pub(crate) fn idx_u8(dims: &[u32], values: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(values);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn plain_and_gzipped_idx_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pixels: Vec<u8> = (0..2 * 2 * 3).map(|v| v as u8 * 20).collect();
        std::fs::write(
            d.join("train-images-idx3-ubyte.gz"),
            gzip(&idx_u8(&[2, 2, 3], &pixels)),
        )
        .unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx_u8(&[2], &[7, 1])).unwrap();
        std::fs::write(
            d.join("t10k-images-idx3-ubyte"),
            idx_u8(&[1, 2, 3], &[255; 6]),
        )
        .unwrap();
        std::fs::write(
            d.join("t10k-labels-idx1-ubyte.gz"),
            gzip(&idx_u8(&[1], &[4])),
        )
        .unwrap();
        std::fs::write(d.join("README"), b"not data").unwrap();
        let raw = load(d).unwrap();
        assert_eq!(raw.train.shape, vec![2, 3]);
        assert_eq!(raw.train.y, vec![7, 1]);
        assert_eq!(raw.train.x[1], 20.0 / 255.0);
        let test = raw.test.unwrap();
        assert_eq!((test.x.clone(), test.y), (vec![1.0; 6], vec![4]));
        assert_eq!(raw.train.origin, "train-images-idx3-ubyte.gz");
    }

    #[test]
    fn truncated_idx_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("train-images-idx3-ubyte"),
            idx_u8(&[2, 2, 2], &[0; 7]),
        )
        .unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte"), idx_u8(&[2], &[0, 1])).unwrap();
        let err = load(d).unwrap_err();
        assert!(
            matches!(&err, DataError::Corrupt { path, .. } if path.ends_with("train-images-idx3-ubyte"))
        );
        assert!(
            err.to_string()
                .contains("truncated: dimensions [2, 2, 2] need 8 bytes"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("fetch it again"));
        let full = gzip(&idx_u8(&[2, 2, 2], &[0; 8]));
        std::fs::write(d.join("train-images-idx3-ubyte"), &full[..full.len() - 6]).unwrap();
        let err = load(d).unwrap_err().to_string();
        assert!(err.contains("gzip stream broken"), "{err}");
    }

    #[test]
    fn file_roles_are_read_from_the_names() {
        assert_eq!(role("train-images-idx3-ubyte.gz"), Some((true, true)));
        assert_eq!(role("t10k-labels.idx1-ubyte"), Some((false, false)));
        assert_eq!(
            role("emnist-digits-test-images-idx3-ubyte"),
            Some((false, true))
        );
        assert_eq!(role("train.bin"), None);
    }
}
