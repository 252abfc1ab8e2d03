//! Element-level access to tensor payloads: decoding values for the
//! rewiring math, listing bit patterns for the multiset proof, and moving
//! elements into a permuted payload without changing a single bit.

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
    if matches!(dtype.0, 14 | 15) {
        2
    } else {
        1
    }
}

/// Whether two payloads of the same encoding hold the same multiset of
/// element bit patterns (so -0.0 and +0.0 differ, and NaN payloads count).
pub fn same_multiset(enc: Encoding, a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match enc {
        Encoding::Fixed(w) if w <= 8 => {
            if a.len() != b.len() {
                return false;
            }
            let words = |bytes: &[u8]| {
                let mut v: Vec<u64> = bytes
                    .chunks_exact(w)
                    .map(|c| {
                        let mut word = [0u8; 8];
                        word[..w].copy_from_slice(c);
                        u64::from_le_bytes(word)
                    })
                    .collect();
                v.sort_unstable();
                v
            };
            words(a) == words(b)
        }
        Encoding::Fixed(w) => {
            if a.len() != b.len() {
                return false;
            }
            let mut x: Vec<&[u8]> = a.chunks_exact(w).collect();
            let mut y: Vec<&[u8]> = b.chunks_exact(w).collect();
            x.sort_unstable();
            y.sort_unstable();
            x == y
        }
        Encoding::Varint => {
            let mut x = varint_values(a);
            let mut y = varint_values(b);
            x.sort_unstable();
            y.sort_unstable();
            x == y
        }
    }
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

/// Decodes a float tensor's values as f64 (exact for every supported type).
pub fn decode_f64(t: &Tensor, bytes: &[u8]) -> Result<Vec<f64>> {
    let enc = encoding(t).ok_or_else(|| Error::tensor(&t.name, "elements are not addressable"))?;
    let values: Vec<f64> = match (t.dtype, enc) {
        (DataType::FLOAT, Encoding::Fixed(4)) => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        (DataType::DOUBLE, Encoding::Fixed(8)) => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        (DataType::FLOAT16, Encoding::Fixed(2)) => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64())
            .collect(),
        (DataType::BFLOAT16, Encoding::Fixed(2)) => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64())
            .collect(),
        (DataType::FLOAT16, Encoding::Varint) => varint_values(bytes)
            .into_iter()
            .map(|v| half::f16::from_bits(v as u16).to_f64())
            .collect(),
        (DataType::BFLOAT16, Encoding::Varint) => varint_values(bytes)
            .into_iter()
            .map(|v| half::bf16::from_bits(v as u16).to_f64())
            .collect(),
        (dtype, _) => {
            return Err(Error::tensor(
                &t.name,
                format!("{dtype} values cannot be rewired"),
            ))
        }
    };
    if values.len() as u64 != t.numel {
        return Err(Error::tensor(
            &t.name,
            format!(
                "payload holds {} values, dims say {}",
                values.len(),
                t.numel
            ),
        ));
    }
    Ok(values)
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
