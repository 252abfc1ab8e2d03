//! Order keys: a tensor's values as `u32`s whose integer order is the
//! order of the values, and the way back to each element's exact bits.
//! Sorting and comparing keys is most of what a pass does, and they make
//! the result a bitwise permutation of the input whatever the element
//! type.

use crate::onnx::DataType;
use crate::sort::{f32_key, f32_unkey, f64_key};

use super::handoff::{fill_f32_keys, fill_f32_keys_rows};
use super::strength::Strength;
#[cfg(test)]
use super::{strength::strength_by, transpose::decode_f32};

/// Keys are made only of the float types of 16 bits or more
/// ([`DataType::is_rewirable_float`]); the planner never selects others.
#[cold]
fn unsupported(dtype: DataType) -> ! {
    panic!("rewiring does not handle {dtype} elements")
}

/// A tensor's values as order keys, and the way back to each element's
/// bits.
///
/// Nearly always a key is the order-preserving bit pattern of the value as
/// f32 (`f32_key` in the sort module): f16, bf16 and f32 values all fit, and so do the
/// f64 values of a tensor that was initialised in f32. The key then *is*
/// the value, and the element's bits come back exactly from it. Otherwise
/// (an f64 tensor with values f32 cannot hold, or bits that do not survive
/// the round trip, such as NaN payloads) a key is the value's rank among
/// all the tensor's values, with the values and bits kept in a table.
pub(crate) struct Keys {
    /// One key per element, in the order the elements were given.
    pub(crate) keys: Vec<u32>,
    dtype: DataType,
    /// Values and bit patterns by rank, for rank keys.
    table: Option<(Vec<f64>, Vec<u64>)>,
    finite: bool,
}

impl Keys {
    /// Keys of elements given as bit patterns (the low 16, 32 or 64 bits
    /// of each word, by `dtype`).
    pub(crate) fn encode<I>(dtype: DataType, bits: I) -> Keys
    where
        I: Iterator<Item = u64> + Clone,
    {
        let mut keys = Vec::with_capacity(bits.size_hint().0);
        // Plain functions of the bits, so that each arm is its own loop
        // with the conversions inlined.
        fn narrow(
            bits: impl Iterator<Item = u64>,
            keys: &mut Vec<u32>,
            to_f32: impl Fn(u64) -> f32,
            from_f32: impl Fn(f32) -> u64,
        ) -> (bool, bool) {
            let (mut inexact, mut infinite) = (false, false);
            keys.extend(bits.map(|b| {
                let v = to_f32(b);
                infinite |= !v.is_finite();
                inexact |= from_f32(v) != b;
                f32_key(v)
            }));
            (!inexact, !infinite)
        }
        let b = bits.clone();
        let (exact, finite) = match dtype {
            DataType::Float => narrow(
                b,
                &mut keys,
                |b| f32::from_bits(b as u32),
                |v| v.to_bits() as u64,
            ),
            DataType::Float16 => narrow(
                b,
                &mut keys,
                |b| half::f16::from_bits(b as u16).to_f32(),
                |v| half::f16::from_f32(v).to_bits() as u64,
            ),
            DataType::Bfloat16 => narrow(
                b,
                &mut keys,
                |b| half::bf16::from_bits(b as u16).to_f32(),
                |v| half::bf16::from_f32(v).to_bits() as u64,
            ),
            DataType::Double => narrow(
                b,
                &mut keys,
                |b| f64::from_bits(b) as f32,
                |v| (v as f64).to_bits(),
            ),
            other => unsupported(other),
        };
        if exact {
            return Keys {
                keys,
                dtype,
                table: None,
                finite,
            };
        }
        let value = |b: u64| dtype.float_value(b).unwrap_or_else(|| unsupported(dtype));
        let mut by_value: Vec<(u64, u64, u32)> = bits
            .enumerate()
            .map(|(i, b)| (f64_key(value(b)), b, i as u32))
            .collect();
        by_value.sort_unstable();
        let mut vals = Vec::with_capacity(by_value.len());
        let mut raw = Vec::with_capacity(by_value.len());
        for (rank, &(_, b, i)) in by_value.iter().enumerate() {
            keys[i as usize] = rank as u32;
            vals.push(value(b));
            raw.push(b);
        }
        Keys {
            keys,
            dtype,
            table: Some((vals, raw)),
            finite,
        }
    }

    /// Keys of an f32 payload given as little-endian bytes: the same as
    /// [`Keys::encode`] with [`DataType::Float`] (every f32 survives the round
    /// trip), in a plain loop over the bytes that vectorises; into `buf`,
    /// whose contents are dropped and whose memory is reused (a buffer from
    /// [`Spares::words`](super::Spares::words)).
    pub(crate) fn from_f32_le_in(bytes: &[u8], buf: Vec<u32>) -> Keys {
        assert_eq!(bytes.len() % 4, 0);
        let mut keys = buf;
        let (words, _) = bytes.as_chunks::<4>();
        let infinite = fill_f32_keys(words, &mut keys);
        Keys {
            keys,
            dtype: DataType::Float,
            table: None,
            finite: !infinite,
        }
    }

    /// [`Keys::from_f32_le_in`] for a row-major `rows x cols` matrix, with
    /// its strengths (bit for bit those `Keys::strength` gives) summed in
    /// the same sweep, block by block while the values are in cache,
    /// instead of in a sweep of their own.
    pub(crate) fn from_f32_le_rows_in(
        bytes: &[u8],
        buf: Vec<u32>,
        rows: usize,
        cols: usize,
    ) -> (Keys, Strength) {
        assert_eq!(bytes.len(), 4 * rows * cols);
        let mut keys = buf;
        let (words, _) = bytes.as_chunks::<4>();
        let (strength, infinite) = fill_f32_keys_rows(words, &mut keys, rows, cols);
        let keys = Keys {
            keys,
            dtype: DataType::Float,
            table: None,
            finite: !infinite,
        };
        (keys, strength)
    }

    /// Whether every value is finite (rewiring NaN or infinity is
    /// meaningless: the strengths would be NaN).
    pub(crate) fn finite(&self) -> bool {
        self.finite
    }

    pub(super) fn values(&self) -> Values<'_> {
        match &self.table {
            None => Values::Narrow,
            Some((vals, _)) => Values::Wide(vals),
        }
    }

    /// Calls `f(i, bits)` for each key in order: the bit pattern of the
    /// element it stands for.
    pub(crate) fn for_each_bits(&self, mut f: impl FnMut(usize, u64)) {
        fn each(keys: &[u32], g: impl Fn(u32) -> u64, f: &mut impl FnMut(usize, u64)) {
            for (i, &k) in keys.iter().enumerate() {
                f(i, g(k));
            }
        }
        if let Some((_, raw)) = &self.table {
            return each(&self.keys, |k| raw[k as usize], &mut f);
        }
        match self.dtype {
            DataType::Float => each(&self.keys, |k| f32_unkey(k).to_bits() as u64, &mut f),
            DataType::Float16 => each(
                &self.keys,
                |k| half::f16::from_f32(f32_unkey(k)).to_bits() as u64,
                &mut f,
            ),
            DataType::Bfloat16 => each(
                &self.keys,
                |k| half::bf16::from_f32(f32_unkey(k)).to_bits() as u64,
                &mut f,
            ),
            DataType::Double => each(&self.keys, |k| (f32_unkey(k) as f64).to_bits(), &mut f),
            other => unsupported(other),
        }
    }
}

/// What only the tests need: the f32 path without a kept buffer, the bits
/// made back from the keys, and the strengths of the keys.
#[cfg(test)]
impl Keys {
    /// [`Keys::from_f32_le_in`] into a new buffer.
    pub(crate) fn from_f32_le(bytes: &[u8]) -> Keys {
        Keys::from_f32_le_in(bytes, Vec::new())
    }

    /// The elements' bits as little-endian u32 words, made in place from
    /// the keys (no second buffer the size of the tensor), for f32 keys;
    /// other tensors are handed back.
    pub(crate) fn into_bits32(mut self) -> std::result::Result<Vec<u32>, Keys> {
        if !self.is_plain_f32() {
            return Err(self);
        }
        decode_f32(&mut self.keys);
        Ok(self.keys)
    }

    /// Whether the keys are f32 values' own keys, so that each gives back
    /// its element's bits by [`f32_unkey`] alone.
    fn is_plain_f32(&self) -> bool {
        self.dtype == DataType::Float && self.table.is_none()
    }

    /// Row and column strengths of the keys as a row-major matrix.
    pub(crate) fn strength(&self, rows: usize, cols: usize) -> Strength {
        let v = self.values();
        strength_by(&self.keys, rows, cols, |&k| v.get(k))
    }
}

/// How to read a key back as a number.
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    /// The key is the f32 order key of the value.
    Narrow,
    /// The key is a rank into these values.
    Wide(&'a [f64]),
}

impl Values<'_> {
    #[inline]
    pub(crate) fn get(self, k: u32) -> f64 {
        match self {
            Values::Narrow => f32_unkey(k) as f64,
            Values::Wide(v) => v[k as usize],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewire::PARALLEL_MIN;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn keys_give_back_every_bit() {
        let f16s: Vec<u64> = [0x0000u64, 0x8000, 0x0001, 0x3c00, 0xfbff, 0x7c00, 0x7e01].to_vec();
        let k = Keys::encode(DataType::Float16, f16s.iter().copied());
        let mut back = vec![0; f16s.len()];
        k.for_each_bits(|i, b| back[i] = b);
        assert_eq!(back, f16s);
        assert!(!k.finite());
        let f64s: Vec<u64> = [0.1f64, -0.0, 1.0, 0.1]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let k = Keys::encode(DataType::Double, f64s.iter().copied());
        let mut back = vec![0; f64s.len()];
        k.for_each_bits(|i, b| back[i] = b);
        assert_eq!(back, f64s);
        assert!(k.finite());
        // Rank keys keep the order of the values.
        assert!(k.keys[1] < k.keys[0] && k.keys[0] < k.keys[2]);
    }

    #[test]
    fn f32_keys_from_bytes_and_back_to_bits_in_place() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Below and above the size split between threads.
        for n in [5usize, PARALLEL_MIN * 2 + 3] {
            let mut words: Vec<u32> = (0..n).map(|_| rng.random::<u32>() & 0xbfff_ffff).collect();
            words[1] = (-0.0f32).to_bits();
            let keys = Keys::encode(DataType::Float, words.iter().map(|&w| w as u64));
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let from_bytes = Keys::from_f32_le(&bytes);
            assert_eq!(from_bytes.keys, keys.keys);
            assert!(from_bytes.finite() && keys.finite());
            // With the strengths summed while encoding: the same keys, and
            // the same strengths to the bit, for several row lengths.
            for cols in [1, 5, n / 5] {
                let rows = n / cols;
                let b = &bytes[..4 * rows * cols];
                let (k, s) = Keys::from_f32_le_rows_in(b, vec![7; 3], rows, cols);
                assert_eq!(k.keys, keys.keys[..rows * cols]);
                assert!(k.finite());
                let want = k.strength(rows, cols);
                assert_eq!(
                    (s.row_std.to_bits(), s.col_std.to_bits()),
                    (want.row_std.to_bits(), want.col_std.to_bits()),
                    "{rows}x{cols}"
                );
            }
            let back = keys.into_bits32().ok().unwrap();
            assert_eq!(
                back.iter().map(|w| u32::from_le(*w)).collect::<Vec<_>>(),
                words
            );
        }
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let bytes: Vec<u8> = [1.0f32, bad].iter().flat_map(|v| v.to_le_bytes()).collect();
            assert!(!Keys::from_f32_le(&bytes).finite());
            assert!(!Keys::from_f32_le_rows_in(&bytes, Vec::new(), 2, 1)
                .0
                .finite());
        }
        // Rows without columns: no keys, and no panic.
        let (empty, _) = Keys::from_f32_le_rows_in(&[], Vec::new(), 3, 0);
        assert!(empty.keys.is_empty() && empty.finite());
        let f16 = Keys::encode(DataType::Float16, [0x3c00u64].into_iter());
        assert!(f16.into_bits32().is_err());
    }
}
