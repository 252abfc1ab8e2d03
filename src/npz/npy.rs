//! One `.npy` array: numpy's own format, a text header (a Python dict
//! literal with the element type, the memory order and the shape) and the
//! raw little-endian values.
//!
//! Only the element types the backends exchange are read, in C order; any
//! other layout is refused with the numpy call that produces a readable one.

use crate::backend::{HostTensor, TensorData};

use super::zip::{u32_at, ZipError};

/// What is wrong with one `.npy` array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NpyError {
    #[error("not a .npy array")]
    NotNpy,
    #[error("unsupported .npy version {0}")]
    UnsupportedVersion(u8),
    /// The header length of a version 2 or 3 array is cut off (the message
    /// is the one the archive reader gives for the same problem).
    #[error(transparent)]
    Truncated(#[from] ZipError),
    #[error("truncated .npy header")]
    TruncatedHeader,
    #[error("the .npy header is not text")]
    HeaderNotText,
    /// The header lacks one of `descr`, `fortran_order`, `shape`.
    #[error("the .npy header has no {0}")]
    MissingKey(&'static str),
    #[error("array is in Fortran order; save numpy.ascontiguousarray(a) instead")]
    FortranOrder,
    #[error("bad dimension `{0}`")]
    BadDimension(String),
    #[error(
        "dtype `{0}` is not supported (use little-endian float32/float64/float16/int64/int32/bool)"
    )]
    UnsupportedDtype(String),
    #[error("shape {shape:?} needs {needed} bytes of data, the array has {got}")]
    WrongLength {
        shape: Vec<usize>,
        needed: usize,
        got: usize,
    },
    /// The values do not fill the shape (the tensor's own check).
    #[error(transparent)]
    Tensor(#[from] crate::backend::ShapeMismatch),
}

/// Parses one `.npy` array: little-endian f32/f64/f16/i64/i32/bool, C order.
pub(crate) fn parse_npy(b: &[u8]) -> Result<HostTensor, NpyError> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(NpyError::NotNpy);
    }
    let (header_len, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 => (u32_at(b, 8)? as usize, 12),
        v => return Err(NpyError::UnsupportedVersion(v)),
    };
    let header = b
        .get(start..start + header_len)
        .ok_or(NpyError::TruncatedHeader)?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::HeaderNotText)?;
    let descr = header_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.split(['\'', '"']).next())
        .ok_or(NpyError::MissingKey("descr"))?;
    let fortran =
        header_value(header, "fortran_order").ok_or(NpyError::MissingKey("fortran_order"))?;
    if fortran.starts_with("True") {
        return Err(NpyError::FortranOrder);
    }
    let shape_text = header_value(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or(NpyError::MissingKey("shape"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| NpyError::BadDimension(s.to_string()))
        })
        .collect::<Result<Vec<usize>, NpyError>>()?;
    let n: usize = shape.iter().product();
    let body = &b[start + header_len..];
    // '=' is native order; numpy writes '<' or '|', but accept '=' on little-endian hosts.
    let descr = match descr.as_bytes().first() {
        Some(b'=') if cfg!(target_endian = "little") => format!("<{}", &descr[1..]),
        _ => descr.to_string(),
    };
    let size = match descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" => 2,
        "|b1" => 1,
        _ => return Err(NpyError::UnsupportedDtype(descr)),
    };
    if body.len() != n * size {
        return Err(NpyError::WrongLength {
            shape,
            needed: n * size,
            got: body.len(),
        });
    }
    let chunks = body.chunks_exact(size);
    let data = match descr.as_str() {
        "<f4" => TensorData::F32(
            chunks
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        "<f8" => TensorData::F64(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        "<f2" => TensorData::F16(
            chunks
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        "<i4" => TensorData::I32(
            chunks
                .map(|c| i32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        "<i8" => TensorData::I64(
            chunks
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        _ => TensorData::Bool(chunks.map(|c| c[0] != 0).collect()),
    };
    HostTensor::new(shape, data).map_err(NpyError::Tensor)
}

/// The text after `'key':` in a .npy header dict.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}
