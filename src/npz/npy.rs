//! One `.npy` array: numpy's own format, a text header (a Python dict
//! literal with the element type, the memory order and the shape) and the
//! raw little-endian values.
//!
//! [`parse_npy`] reads the element types the backends exchange;
//! [`parse_raw`] reads every little-endian number type, for data sets,
//! which come as `uint8` images and integer labels of any width. Both read
//! C order only; any other layout is refused with the numpy call that
//! produces a readable one.

use std::borrow::Cow;

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
    /// Not a number type at all, or big-endian (for readers that take
    /// every number type).
    #[error("dtype `{0}` is not supported (use little-endian integers, floats or bool)")]
    UnknownDtype(String),
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

/// The element types a `.npy` array may hold that pa-onnx reads as numbers
/// (little-endian, or single bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl Dtype {
    /// The type a numpy `descr` names, `=` read as little-endian on
    /// little-endian hosts.
    fn parse(descr: &str) -> Option<Dtype> {
        let descr = match descr.as_bytes().first() {
            Some(b'=') if cfg!(target_endian = "little") => &descr[1..],
            Some(b'<' | b'|') => &descr[1..],
            _ => return None,
        };
        Some(match descr {
            "b1" => Dtype::Bool,
            "u1" => Dtype::U8,
            "i1" => Dtype::I8,
            "u2" => Dtype::U16,
            "i2" => Dtype::I16,
            "u4" => Dtype::U32,
            "i4" => Dtype::I32,
            "u8" => Dtype::U64,
            "i8" => Dtype::I64,
            "f2" => Dtype::F16,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 => 8,
        }
    }
}

/// One array as stored: its element type, shape and little-endian values,
/// borrowed from the file's bytes. Data sets come in more element types
/// than the backends exchange (images as `uint8`, labels as `uint8` or
/// `int32`), so they are converted from here rather than through
/// [`HostTensor`].
#[derive(Debug, Clone)]
pub(crate) struct RawArray<'a> {
    /// The element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape`'s product times the element size, in C order (borrowed
    /// from the file's bytes, or owned when it was inflated).
    pub body: Cow<'a, [u8]>,
}

/// `v` as an integer, when it is one (class labels stored as floats).
pub(crate) fn whole(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < 9.0e18).then_some(v as i64)
}

impl RawArray<'_> {
    /// The same array owning its bytes.
    pub(crate) fn into_owned(self) -> RawArray<'static> {
        RawArray {
            dtype: self.dtype,
            shape: self.shape,
            body: Cow::Owned(self.body.into_owned()),
        }
    }

    /// Every element as one number, in C order.
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let size = self.dtype.size();
        let dtype = self.dtype;
        self.body.chunks_exact(size).map(move |c| match dtype {
            Dtype::Bool => f64::from(u8::from(c[0] != 0)),
            Dtype::U8 => f64::from(c[0]),
            Dtype::I8 => f64::from(c[0] as i8),
            Dtype::U16 => f64::from(u16::from_le_bytes([c[0], c[1]])),
            Dtype::I16 => f64::from(i16::from_le_bytes([c[0], c[1]])),
            Dtype::U32 => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::I32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::U64 => u64::from_le_bytes(c.try_into().expect("8")) as f64,
            Dtype::I64 => i64::from_le_bytes(c.try_into().expect("8")) as f64,
            Dtype::F16 => f64::from(half::f16::from_le_bytes([c[0], c[1]])),
            Dtype::F32 => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Dtype::F64 => f64::from_le_bytes(c.try_into().expect("8")),
        })
    }

    /// The elements as 32-bit floats (integers beyond 2^24 round).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        self.values().map(|v| v as f32).collect()
    }

    /// The elements as integers, or the index of the first one that is not
    /// a whole number within `i64`'s range.
    pub(crate) fn to_i64(&self) -> Result<Vec<i64>, usize> {
        let size = self.dtype.size();
        match self.dtype {
            // Exact for the 64-bit types, which an f64 would round.
            Dtype::I64 => Ok(self
                .body
                .chunks_exact(size)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect()),
            Dtype::U64 => self
                .body
                .chunks_exact(size)
                .enumerate()
                .map(|(i, c)| {
                    i64::try_from(u64::from_le_bytes(c.try_into().expect("8"))).map_err(|_| i)
                })
                .collect(),
            _ => self
                .values()
                .enumerate()
                .map(|(i, v)| whole(v).ok_or(i))
                .collect(),
        }
    }
}

/// Parses one `.npy` array of any [`Dtype`], C order, without converting
/// its values.
pub(crate) fn parse_raw(b: &[u8]) -> Result<RawArray<'_>, NpyError> {
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
    let dtype = Dtype::parse(descr).ok_or_else(|| NpyError::UnknownDtype(descr.to_string()))?;
    let needed = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::BadDimension(shape_text.trim().to_string()))?;
    let body = &b[start + header_len..];
    if body.len() != needed {
        return Err(NpyError::WrongLength {
            shape,
            needed,
            got: body.len(),
        });
    }
    Ok(RawArray {
        dtype,
        shape,
        body: Cow::Borrowed(body),
    })
}

/// Parses one `.npy` array: little-endian f32/f64/f16/i64/i32/bool, C order.
pub(crate) fn parse_npy(b: &[u8]) -> Result<HostTensor, NpyError> {
    let raw = parse_raw(b).map_err(|e| match e {
        NpyError::UnknownDtype(d) => NpyError::UnsupportedDtype(d),
        e => e,
    })?;
    let size = raw.dtype.size();
    let chunks = raw.body.chunks_exact(size);
    let data = match raw.dtype {
        Dtype::F32 => TensorData::F32(
            chunks
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        Dtype::F64 => TensorData::F64(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        Dtype::F16 => TensorData::F16(
            chunks
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        Dtype::I32 => TensorData::I32(
            chunks
                .map(|c| i32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        Dtype::I64 => TensorData::I64(
            chunks
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        Dtype::Bool => TensorData::Bool(chunks.map(|c| c[0] != 0).collect()),
        other => return Err(NpyError::UnsupportedDtype(descr_of(other))),
    };
    HostTensor::new(raw.shape, data).map_err(NpyError::Tensor)
}

/// The little-endian numpy `descr` of a type, for messages.
fn descr_of(dtype: Dtype) -> String {
    match dtype {
        Dtype::Bool => "|b1",
        Dtype::U8 => "|u1",
        Dtype::I8 => "|i1",
        Dtype::U16 => "<u2",
        Dtype::I16 => "<i2",
        Dtype::U32 => "<u4",
        Dtype::I32 => "<i4",
        Dtype::U64 => "<u8",
        Dtype::I64 => "<i8",
        Dtype::F16 => "<f2",
        Dtype::F32 => "<f4",
        Dtype::F64 => "<f8",
    }
    .to_string()
}

/// The text after `'key':` in a .npy header dict.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}
