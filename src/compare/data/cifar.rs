//! CIFAR-10 and CIFAR-100 in their binary version.
//!
//! CIFAR-10 is the paper's benchmark. Its binary release is a folder of
//! fixed-size records (`data_batch_1.bin` .. `data_batch_5.bin`,
//! `test_batch.bin`): one label byte, then a 32x32 image as 3072 bytes,
//! channel after channel. CIFAR-100's (`train.bin`, `test.bin`) puts two
//! label bytes first, the coarse and the fine class; the fine one (100
//! classes) is used. A file whose length is not a whole number of records
//! was cut short.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::arrays::{file_name, read_file};
use super::{DataError, RawData, RawSplit};

/// Bytes of one image: 3 channels of 32 x 32.
const IMAGE: usize = 3 * 32 * 32;

/// Which of the two releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// One label byte per record.
    Cifar10,
    /// Coarse and fine label bytes per record.
    Cifar100,
}

impl Release {
    fn label_bytes(self) -> usize {
        match self {
            Release::Cifar10 => 1,
            Release::Cifar100 => 2,
        }
    }
}

/// The batch files of one release.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CifarFiles {
    pub release: Release,
    pub train: Vec<PathBuf>,
    pub test: Option<PathBuf>,
}

/// The release a file name belongs to, and whether it is the test split.
fn role(name: &str) -> Option<(Release, bool)> {
    let batch_number = name
        .strip_prefix("data_batch_")
        .and_then(|rest| rest.strip_suffix(".bin"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match name {
        "test_batch.bin" => Some((Release::Cifar10, true)),
        "train.bin" => Some((Release::Cifar100, false)),
        "test.bin" => Some((Release::Cifar100, true)),
        _ if batch_number => Some((Release::Cifar10, false)),
        _ => None,
    }
}

/// The CIFAR files at `path`: one batch file, or a folder holding them
/// (or holding the unpacked `cifar-10-batches-bin` / `cifar-100-binary`).
pub(super) fn find(path: &Path) -> Result<Option<CifarFiles>, DataError> {
    if path.is_file() {
        let release = match role(&file_name(path)) {
            Some((release, _)) => release,
            None if path.extension().is_some_and(|e| e == "bin") => Release::Cifar10,
            None => return Ok(None),
        };
        return Ok(Some(CifarFiles {
            release,
            train: vec![path.to_path_buf()],
            test: None,
        }));
    }
    for inner in ["cifar-10-batches-bin", "cifar-100-binary"] {
        if path.join(inner).is_dir() {
            return find(&path.join(inner));
        }
    }
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut found: Vec<(PathBuf, Release, bool)> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let file = entry.map_err(io)?.path();
        if let Some((release, test)) = role(&file_name(&file)) {
            found.push((file, release, test));
        }
    }
    // Batches in their numeric order, so that sample indices are stable.
    found.sort_by_key(|(p, _, _)| {
        let name = file_name(p);
        let number: u64 = name
            .trim_start_matches("data_batch_")
            .trim_end_matches(".bin")
            .parse()
            .unwrap_or(0);
        (number, name)
    });
    let Some(release) = found
        .iter()
        .find(|(_, _, test)| !test)
        .map(|(_, release, _)| *release)
    else {
        return Ok(None);
    };
    let of = |test: bool| {
        found
            .iter()
            .filter(move |(_, r, t)| *r == release && *t == test)
            .map(|(p, _, _)| p.clone())
    };
    Ok(Some(CifarFiles {
        release,
        train: of(false).collect(),
        test: of(true).next(),
    }))
}

/// The records of `files`, one split.
fn split(files: &[PathBuf], release: Release) -> Result<RawSplit, DataError> {
    let record = release.label_bytes() + IMAGE;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for path in files {
        let bytes = read_file(path)?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(DataError::Corrupt {
                path: path.clone(),
                detail: format!(
                    "{} bytes is not a whole number of {record}-byte {} records",
                    bytes.len(),
                    match release {
                        Release::Cifar10 => "CIFAR-10",
                        Release::Cifar100 => "CIFAR-100",
                    }
                ),
            });
        }
        let n = bytes.len() / record;
        let start = x.len();
        x.resize(start + n * IMAGE, 0.0f32);
        x[start..]
            .par_chunks_mut(IMAGE)
            .zip(bytes.par_chunks(record))
            .for_each(|(dst, rec)| {
                for (d, &s) in dst.iter_mut().zip(&rec[release.label_bytes()..]) {
                    *d = f32::from(s) / 255.0;
                }
            });
        y.extend(
            bytes
                .chunks(record)
                .map(|rec| i64::from(rec[release.label_bytes() - 1])),
        );
    }
    Ok(RawSplit {
        origin: files.first().map(|p| file_name(p)).unwrap_or_default(),
        x,
        shape: vec![3, 32, 32],
        y,
    })
}

/// Reads the CIFAR batches at `path`.
pub(super) fn load(path: &Path) -> Result<RawData, DataError> {
    let files = find(path)?.ok_or_else(|| DataError::UnknownFormat {
        path: path.to_path_buf(),
        found:
            "no data_batch_N.bin / test_batch.bin (CIFAR-10) or train.bin / test.bin (CIFAR-100)"
                .into(),
    })?;
    let test = match &files.test {
        Some(test) => Some(split(std::slice::from_ref(test), files.release)?),
        None => None,
    };
    let release = match files.release {
        Release::Cifar10 => "CIFAR-10",
        Release::Cifar100 => "CIFAR-100 (fine labels)",
    };
    Ok(RawData {
        name: format!("{} ({release})", file_name(path)),
        train: split(&files.train, files.release)?,
        test,
        notes: Vec::new(),
        class_names: None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// CIFAR records: label bytes then an image filled with `fill`.
    pub(crate) fn records(labels: &[&[u8]], fill: u8) -> Vec<u8> {
        labels
            .iter()
            .flat_map(|l| l.iter().copied().chain(std::iter::repeat_n(fill, IMAGE)))
            .collect()
    }

    #[test]
    fn cifar10_and_cifar100_folders_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ten = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&ten).unwrap();
        std::fs::write(ten.join("data_batch_10.bin"), records(&[&[9]], 0)).unwrap();
        std::fs::write(ten.join("data_batch_2.bin"), records(&[&[3], &[4]], 255)).unwrap();
        std::fs::write(ten.join("test_batch.bin"), records(&[&[5]], 51)).unwrap();
        std::fs::write(ten.join("batches.meta.txt"), b"airplane\n").unwrap();
        let raw = load(dir.path()).unwrap();
        assert_eq!(raw.train.y, vec![3, 4, 9]);
        assert_eq!(raw.train.shape, vec![3, 32, 32]);
        assert_eq!(raw.train.x[0], 1.0);
        assert_eq!(raw.train.x[2 * IMAGE], 0.0);
        let test = raw.test.unwrap();
        assert_eq!((test.y.clone(), test.x[IMAGE - 1]), (vec![5], 0.2));

        let hundred = dir.path().join("c100");
        std::fs::create_dir(&hundred).unwrap();
        std::fs::write(hundred.join("train.bin"), records(&[&[1, 42], &[2, 77]], 0)).unwrap();
        let raw = load(&hundred).unwrap();
        assert_eq!(raw.train.y, vec![42, 77]);
        assert!(raw.test.is_none());
        assert!(raw.name.contains("fine labels"));
    }

    #[test]
    fn a_truncated_batch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data_batch_1.bin");
        let mut bytes = records(&[&[1], &[2]], 7);
        bytes.truncate(bytes.len() - 100);
        std::fs::write(&file, bytes).unwrap();
        let err = load(&file).unwrap_err();
        assert!(
            matches!(&err, DataError::Corrupt { path, .. } if path == &file),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("not a whole number of 3073-byte CIFAR-10 records"));
    }
}
