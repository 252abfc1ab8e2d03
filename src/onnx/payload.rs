//! Element-level access to tensor payloads: decoding values for the
//! rewiring math, listing bit patterns for the multiset proof, and moving
//! elements into a permuted payload without changing a single bit.

use rayon::prelude::*;

use super::dtype::{DataType, PackedField};
use super::model::{Storage, Tensor};
use super::wire::{read_varint, write_varint};
use crate::error::{Error, Result};

/// How one element is laid out in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Little-endian words of this many bytes (`raw_data`, `float_data`,
    /// `double_data`, external data).
    Fixed(usize),
    /// One varint per element (`int32_data`, `int64_data`, `uint64_data`).
    Varint,
}

/// The encoding of a tensor's payload, or None when elements cannot be
/// addressed one by one (sub-byte types, strings, unsupported storage).
pub fn encoding(t: &Tensor) -> Option<Encoding> {
    match &t.storage {
        Storage::Raw(_) | Storage::External { .. } => t.dtype.byte_width().map(Encoding::Fixed),
        Storage::Packed { field, .. } => match field {
            PackedField::Float => Some(Encoding::Fixed(4 * complex_factor(t.dtype))),
            PackedField::Double => Some(Encoding::Fixed(8 * complex_factor(t.dtype))),
            PackedField::Int32 | PackedField::Int64 | PackedField::Uint64 => {
                // Complex and sub-byte types do not map one varint to one
                // element.
                match t.dtype.packed_field() {
                    Some((_, 1)) => Some(Encoding::Varint),
                    _ => None,
                }
            }
            PackedField::String => None,
        },
        Storage::Empty => Some(Encoding::Fixed(t.dtype.byte_width().unwrap_or(1))),
        Storage::Unsupported(_) => None,
    }
}

fn complex_factor(dtype: DataType) -> usize {
    if matches!(dtype, DataType::Complex64 | DataType::Complex128) {
        2
    } else {
        1
    }
}

/// A payload's elements as a sorted list of bit patterns: two payloads of
/// one encoding hold the same multiset exactly when these are equal (so
/// -0.0 and +0.0 differ, and NaN payloads count). Elements of up to four
/// bytes are kept as u32, half the memory of a u64 per element.
#[derive(Debug, PartialEq, Eq)]
pub enum Multiset {
    /// Elements of up to four bytes, widened to u32.
    Narrow(Vec<u32>),
    /// Elements of five to eight bytes, or varints.
    Words(Vec<u64>),
    /// Longer elements (complex128, strings), as bytes.
    Long(Vec<Vec<u8>>),
}

/// The longest list [`multiset`] sorts with the vector sort.
const VECTOR_SORT_MAX: usize = 1 << 24;

/// The sorted multiset of a payload's elements.
pub fn multiset(enc: Encoding, bytes: &[u8]) -> Multiset {
    fn narrow<const W: usize>(bytes: &[u8]) -> Vec<u32> {
        // Whole elements (`as_chunks`), which load as such; chunks of a
        // byte slice were gathered byte by byte.
        let (elements, _) = bytes.as_chunks::<W>();
        elements
            .iter()
            .map(|c| {
                let mut word = [0u8; 4];
                word[..W].copy_from_slice(c);
                u32::from_le_bytes(word)
            })
            .collect()
    }
    let mut m = match enc {
        Encoding::Fixed(1) => Multiset::Narrow(narrow::<1>(bytes)),
        Encoding::Fixed(2) => Multiset::Narrow(narrow::<2>(bytes)),
        Encoding::Fixed(4) => Multiset::Narrow(narrow::<4>(bytes)),
        Encoding::Fixed(w) if w <= 8 => Multiset::Words(
            bytes
                .chunks_exact(w)
                .map(|c| {
                    let mut word = [0u8; 8];
                    word[..w].copy_from_slice(c);
                    u64::from_le_bytes(word)
                })
                .collect(),
        ),
        Encoding::Fixed(w) => Multiset::Long(bytes.chunks_exact(w).map(|c| c.to_vec()).collect()),
        Encoding::Varint => Multiset::Words(varint_values(bytes)),
    };
    match &mut m {
        // The vector sort of the rewiring, where the CPU has it: about
        // three times the standard library's speed on millions of items.
        // It needs scratch as large as the list, so the largest lists
        // (over 64 MiB) are sorted in place instead, within the memory
        // `verify` is sized by, on every core: such a tensor is compared
        // alone.
        Multiset::Narrow(v) if v.len() > VECTOR_SORT_MAX => v.par_sort_unstable(),
        Multiset::Narrow(v) => {
            if !crate::sort::sort_u32(v, &mut Vec::new()) {
                v.sort_unstable()
            }
        }
        Multiset::Words(v) => v.par_sort_unstable(),
        Multiset::Long(v) => v.sort_unstable(),
    }
    m
}

/// Whether payloads of these byte lengths can hold the same multiset:
/// fixed-width payloads must be equally long (a trailing partial element
/// would otherwise be ignored); varints may be written with more bytes
/// than needed, so their lengths say nothing.
pub fn lengths_can_match(enc: Encoding, a: usize, b: usize) -> bool {
    enc == Encoding::Varint || a == b
}

/// Whether two payloads of the same encoding hold the same multiset of
/// element bit patterns.
pub fn same_multiset(enc: Encoding, a: &[u8], b: &[u8]) -> bool {
    a == b || (lengths_can_match(enc, a.len(), b.len()) && multiset(enc, a) == multiset(enc, b))
}

fn varint_values(bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match read_varint(bytes, pos) {
            Some((v, p)) => {
                out.push(v);
                pos = p;
            }
            None => break,
        }
    }
    out
}

/// The element type of a float tensor, checked to be one the rewiring
/// handles.
pub fn float_type(t: &Tensor) -> Result<DataType> {
    if t.dtype.is_rewirable_float() {
        Ok(t.dtype)
    } else {
        Err(Error::tensor(
            &t.name,
            format!("{} values cannot be rewired", t.dtype),
        ))
    }
}

/// A float payload's elements as bit patterns, by storage index.
pub enum Elements<'a> {
    /// Little-endian elements of `width` bytes, read in place.
    Fixed {
        /// The payload.
        bytes: &'a [u8],
        /// Bytes per element.
        width: usize,
    },
    /// Varint elements, decoded.
    Decoded(Vec<u64>),
}

impl Elements<'_> {
    /// The bit pattern of element `i` (in the low bits).
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        match self {
            Elements::Fixed { bytes, width } => {
                let mut word = [0u8; 8];
                word[..*width].copy_from_slice(&bytes[i * width..(i + 1) * width]);
                u64::from_le_bytes(word)
            }
            Elements::Decoded(v) => v[i],
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Elements::Fixed { bytes, width } => bytes.len() / width,
            Elements::Decoded(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The elements of a float tensor's payload, checked against its dims.
pub fn elements<'a>(t: &Tensor, bytes: &'a [u8]) -> Result<Elements<'a>> {
    let enc = encoding(t).ok_or_else(|| Error::tensor(&t.name, "elements are not addressable"))?;
    let width = float_type(t)?
        .byte_width()
        .expect("float types have whole-byte elements");
    let e = match enc {
        Encoding::Fixed(w) if w == width && bytes.len().is_multiple_of(w) => {
            Elements::Fixed { bytes, width }
        }
        Encoding::Varint => Elements::Decoded(varint_values(bytes)),
        Encoding::Fixed(_) => {
            return Err(Error::tensor(
                &t.name,
                format!("{} bytes do not hold whole {} values", bytes.len(), t.dtype),
            ))
        }
    };
    if e.len() as u64 != t.numel {
        return Err(Error::tensor(
            &t.name,
            format!("payload holds {} values, dims say {}", e.len(), t.numel),
        ));
    }
    Ok(e)
}

/// Decodes a float tensor's values as f64 (exact for every supported type).
pub fn decode_f64(t: &Tensor, bytes: &[u8]) -> Result<Vec<f64>> {
    let dtype = float_type(t)?;
    let e = elements(t, bytes)?;
    Ok((0..e.len())
        .filter_map(|i| dtype.float_value(e.get(i)))
        .collect())
}

/// Whether every value of a float tensor is finite, without decoding the
/// payload into memory: a value is NaN or infinite exactly when its
/// exponent bits are all ones.
pub fn all_finite(t: &Tensor, bytes: &[u8]) -> Result<bool> {
    fn none_all_ones<const W: usize>(bytes: &[u8], exponent: u64) -> bool {
        // Large payloads in parts, on every core: one core reads about
        // 7 GB/s here, well below what the memory gives two.
        bytes.par_chunks((1 << 20) / W * W).all(|part| {
            // A fold without early exit, so that it vectorises.
            !part.chunks_exact(W).fold(false, |bad, c| {
                let mut word = [0u8; 8];
                word[..W].copy_from_slice(c);
                bad | (u64::from_le_bytes(word) & exponent == exponent)
            })
        })
    }
    let exponent: u64 = match float_type(t)? {
        DataType::Float => 0x7f80_0000,
        DataType::Double => 0x7ff0_0000_0000_0000,
        DataType::Float16 => 0x7c00,
        _ => 0x7f80, // bfloat16
    };
    Ok(match elements(t, bytes)? {
        Elements::Fixed { bytes, width: 4 } => none_all_ones::<4>(bytes, exponent),
        Elements::Fixed { bytes, width: 2 } => none_all_ones::<2>(bytes, exponent),
        Elements::Fixed { bytes, width: 8 } => none_all_ones::<8>(bytes, exponent),
        e => (0..e.len()).all(|i| e.get(i) & exponent != exponent),
    })
}

/// A varint payload (`int32_data`) holding `values`.
pub fn varint_payload(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        write_varint(&mut out, v);
    }
    out
}

/// Writes into `out` the payload whose element `i` is element `perm[i]` of
/// `bytes`. The result has the same length as `bytes` for every encoding,
/// because a permutation keeps the multiset of varint lengths too.
pub fn permute(enc: Encoding, bytes: &[u8], perm: &[u32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(bytes.len());
    match enc {
        Encoding::Fixed(w) => {
            debug_assert_eq!(bytes.len(), perm.len() * w);
            for &src in perm {
                let s = src as usize * w;
                out.extend_from_slice(&bytes[s..s + w]);
            }
        }
        Encoding::Varint => {
            let values = varint_values(bytes);
            for &src in perm {
                write_varint(out, values[src as usize]);
            }
        }
    }
    debug_assert_eq!(out.len(), bytes.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_permutation_keeps_the_length() {
        let values = [1u64, 300, 70000, 5];
        let mut bytes = Vec::new();
        for v in values {
            write_varint(&mut bytes, v);
        }
        let mut out = Vec::new();
        permute(Encoding::Varint, &bytes, &[2, 0, 3, 1], &mut out);
        assert_eq!(out.len(), bytes.len());
        assert_eq!(varint_values(&out), vec![70000, 1, 5, 300]);
    }
}
