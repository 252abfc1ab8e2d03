//! Arrays saved by numpy (`.npz`: a ZIP archive of `.npy` files), read into
//! [`HostTensor`]s.
//!
//! Users hand pa-onnx data as numpy writes it: inputs for `verify --inputs`
//! today, data sets for comparing training runs next. One reader serves
//! them all, so that every command accepts the same files and refuses the
//! same ones with the same words. The archive ([`zip`]) and the array
//! format ([`npy`]) are read by hand, both being simple; deflated entries
//! (`numpy.savez_compressed`) are inflated with flate2.

mod npy;
mod zip;

use std::borrow::Cow;
use std::path::Path;

use crate::backend::HostTensor;

pub(crate) use npy::{parse_raw as parse_npy_raw, whole, Dtype, NpyError, RawArray};
pub(crate) use zip::ZipError;

/// Why a `.npz` file cannot be read. The messages name the entry or array
/// at fault but not the file: the caller says which file it was and what
/// it was for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NpzError {
    /// The file cannot be read at all.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The archive is not one `numpy.savez` writes, or is damaged.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// One array inside it cannot be read.
    #[error("array `{key}`: {problem}")]
    Array { key: String, problem: NpyError },
}

/// Reads a `.npz` file as written by `numpy.savez` or `savez_compressed`,
/// returning its arrays under their keys, in the archive's order.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, HostTensor)>, NpzError> {
    let bytes = std::fs::read(path)?;
    parse(&bytes)
}

/// Parses the bytes of a `.npz` file (a zip archive of `.npy` files).
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<(String, HostTensor)>, NpzError> {
    let entries = zip::zip_entries(bytes)?;
    let mut arrays = Vec::with_capacity(entries.len());
    for (name, data) in entries {
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        match npy::parse_npy(&data) {
            Ok(tensor) => arrays.push((key, tensor)),
            Err(problem) => return Err(NpzError::Array { key, problem }),
        }
    }
    Ok(arrays)
}

/// Parses the bytes of a `.npz` file into its arrays as stored, without
/// converting their values (see [`RawArray`]), under their keys, in the
/// archive's order.
pub(crate) fn parse_raw(bytes: &[u8]) -> Result<Vec<(String, RawArray<'_>)>, NpzError> {
    let entries = zip::zip_entries(bytes)?;
    let mut arrays = Vec::with_capacity(entries.len());
    for (name, data) in entries {
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let array = match data {
            Cow::Borrowed(data) => npy::parse_raw(data),
            Cow::Owned(data) => npy::parse_raw(&data).map(RawArray::into_owned),
        };
        match array {
            Ok(array) => arrays.push((key, array)),
            Err(problem) => return Err(NpzError::Array { key, problem }),
        }
    }
    Ok(arrays)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::zip::crc32;
    use super::*;
    use crate::backend::TensorData;

    /// The bytes of a `.npy` file holding `body` as `descr` values of `shape`
    /// (a Python tuple, e.g. `"(2, 3)"`).
    pub(crate) fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A stored zip, as `numpy.savez` would write it (without zip64 fields).
    pub(crate) fn zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        archive(entries, false)
    }

    /// A zip of `entries`, deflated as `numpy.savez_compressed` writes it
    /// when `deflate`, stored otherwise.
    fn archive(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, raw) in entries {
            let offset = out.len() as u32;
            let crc = crc32(raw);
            let data = if deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            } else {
                raw.clone()
            };
            let method: u8 = if deflate { 8 } else { 0 };
            let data = &data;
            let mut header = Vec::new();
            header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            header.extend_from_slice(&[20, 0, 0, 0, method, 0, 0, 0, 0, 0]);
            header.extend_from_slice(&crc.to_le_bytes());
            header.extend_from_slice(&(data.len() as u32).to_le_bytes());
            header.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            header.extend_from_slice(&(name.len() as u16).to_le_bytes());
            header.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, method, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn deflated_archives_read_as_stored_ones() {
        let f: Vec<u8> = (0..300)
            .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
            .collect();
        let entries = [
            ("x.npy", npy("<f4", "(100, 3)", &f)),
            ("y.npy", npy("<i8", "(2,)", &[7; 16])),
        ];
        let stored = parse(&zip(&entries)).unwrap();
        let deflated = archive(&entries, true);
        assert!(deflated.len() < zip(&entries).len());
        assert_eq!(parse(&deflated).unwrap(), stored);
        let raw = parse_raw(&deflated).unwrap();
        assert_eq!(raw[0].1.shape, [100, 3]);
        assert_eq!(&raw[0].1.body[..], &f[..]);
        // Damaged compressed bytes are an error naming the entry, never a panic.
        let mut bad = deflated.clone();
        let name_end = 30 + "x.npy".len();
        for b in &mut bad[name_end..name_end + 40] {
            *b ^= 0x5a;
        }
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("x.npy"), "{err}");
    }

    #[test]
    fn npz_round_trip() {
        let f: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let i: Vec<u8> = [3i64, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = zip(&[
            ("x.npy", npy("<f4", "(2, 3)", &f)),
            ("ids.npy", npy("<i8", "(2,)", &i)),
            ("flag.npy", npy("|b1", "()", &[1])),
        ]);
        let arrays = parse(&file).unwrap();
        assert_eq!(arrays[0].0, "x");
        assert_eq!(arrays[0].1.shape, vec![2, 3]);
        assert_eq!(
            arrays[0].1.data,
            TensorData::F32(vec![1.5, -2.0, 0.25, 4.0, 5.0, 6.0])
        );
        assert_eq!(arrays[1].1.data, TensorData::I64(vec![3, 7]));
        assert_eq!(arrays[2].1.shape, Vec::<usize>::new());
        assert_eq!(arrays[2].1.data, TensorData::Bool(vec![true]));
    }

    #[test]
    fn npz_rejects_damage_and_unsupported_types() {
        let mut file = zip(&[("x.npy", npy("<f4", "(1,)", &1f32.to_le_bytes()))]);
        let last_data = file.iter().position(|&b| b == 0x3f).unwrap();
        file[last_data] ^= 1;
        let err = parse(&file).unwrap_err();
        assert!(
            matches!(&err, NpzError::Zip(ZipError::Crc { entry }) if entry == "x.npy"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "entry `x.npy`: CRC mismatch, the file is damaged"
        );
        let file = zip(&[("x.npy", npy(">f4", "(1,)", &1f32.to_be_bytes()))]);
        let err = parse(&file).unwrap_err().to_string();
        assert!(err.starts_with("array `x`: dtype `>f4`"), "{err}");
        assert!(err.contains("not supported"), "{err}");
        let file = zip(&[("x.npy", npy("<f4", "(2,)", &1f32.to_le_bytes()))]);
        let err = parse(&file).unwrap_err().to_string();
        assert!(err.contains("needs 8 bytes"), "{err}");
        assert!(parse(b"definitely not a zip file at all").is_err());
    }

    #[test]
    fn raw_arrays_keep_their_element_type_for_data_sets() {
        let u16s: Vec<u8> = [7u16, 65535].iter().flat_map(|x| x.to_le_bytes()).collect();
        let f64s: Vec<u8> = [2.0f64, 2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = zip(&[
            ("x.npy", npy("|u1", "(1, 2)", &[0, 255])),
            ("y.npy", npy("<u2", "(2,)", &u16s)),
            ("z.npy", npy("<f8", "(2,)", &f64s)),
        ]);
        let arrays = parse_raw(&file).unwrap();
        assert_eq!(arrays[0].1.dtype, Dtype::U8);
        assert_eq!(arrays[0].1.to_f32(), vec![0.0, 255.0]);
        assert_eq!(arrays[1].1.to_i64(), Ok(vec![7, 65535]));
        assert_eq!(arrays[2].1.to_i64(), Err(1));
        // The backends' reader still refuses what they cannot exchange.
        let err = parse(&file).unwrap_err().to_string();
        assert!(
            err.starts_with("array `x`: dtype `|u1` is not supported"),
            "{err}"
        );
        let file = zip(&[("x.npy", npy("<U3", "(1,)", &[0; 12]))]);
        let err = parse_raw(&file).unwrap_err().to_string();
        assert!(
            err.contains("use little-endian integers, floats or bool"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("absent.npz")).unwrap_err();
        assert!(matches!(err, NpzError::Io(_)), "{err:?}");
    }
}
