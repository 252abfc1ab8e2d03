//! Protobuf wire-format scanning that remembers where every field lies.
//!
//! Generated protobuf decoders hand back owned values and forget offsets, but
//! pa-onnx must splice new payload bytes into the original buffer without
//! re-encoding anything. This module walks the wire format directly and
//! reports each field with its absolute byte range, so callers can descend
//! into sub-messages and record exactly where tensor payloads live.

use std::ops::Range;

use crate::error::{Error, Result};

/// The four wire types ONNX files use (groups, 3 and 4, are deprecated and
/// never written by ONNX tooling; meeting one is treated as corruption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// Wire type 0: a varint.
    Varint,
    /// Wire type 1: eight little-endian bytes.
    Fixed64,
    /// Wire type 2: a length, then that many bytes.
    Len,
    /// Wire type 5: four little-endian bytes.
    Fixed32,
}

/// One decoded field: its number, and either its scalar value or the range of
/// its length-delimited body, in absolute file offsets.
#[derive(Debug, Clone)]
pub struct Field {
    /// The field number.
    pub number: u32,
    /// How its value is encoded.
    pub wire: WireType,
    /// Varint value, or the raw bits of a fixed32/fixed64 field.
    pub scalar: u64,
    /// For `Len` fields: the body (without tag and length prefix).
    pub body: Range<usize>,
    /// The whole field, tag included.
    pub whole: Range<usize>,
}

/// Reads one varint at `pos`; returns the value and the position after it.
pub fn read_varint(buf: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(pos)?;
        pos += 1;
        // The tenth byte may only carry the single remaining bit.
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// Appends `value` as a varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Iterates over the fields of one message body.
///
/// `buf` is the whole file; `range` the message body inside it. Offsets
/// reported are absolute, which is what the writer needs.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    what: &'static str,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// The fields of the message whose body is `buf[range]`; `what` names the message in errors.
    pub fn new(buf: &'a [u8], range: Range<usize>, what: &'static str) -> Self {
        Fields {
            buf,
            pos: range.start,
            end: range.end,
            what,
            failed: false,
        }
    }

    fn corrupt(&mut self, at: usize, detail: &str) -> Error {
        self.failed = true;
        Error::Malformed {
            offset: at as u64,
            detail: format!("{} in {}", detail, self.what),
        }
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        let window = &self.buf[..self.end];
        let Some((key, after_key)) = read_varint(window, start) else {
            return Some(Err(self.corrupt(start, "truncated field key")));
        };
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Some(Err(self.corrupt(start, "invalid field number")));
        }
        let number = number as u32;
        let (wire, scalar, body, next) = match key & 7 {
            0 => match read_varint(window, after_key) {
                Some((v, p)) => (WireType::Varint, v, p..p, p),
                None => return Some(Err(self.corrupt(after_key, "truncated varint"))),
            },
            1 => {
                let end = after_key + 8;
                if end > self.end {
                    return Some(Err(self.corrupt(after_key, "truncated fixed64")));
                }
                let bits = u64::from_le_bytes(window[after_key..end].try_into().unwrap());
                (WireType::Fixed64, bits, end..end, end)
            }
            2 => {
                let Some((len, body_start)) = read_varint(window, after_key) else {
                    return Some(Err(self.corrupt(after_key, "truncated length")));
                };
                let body_end = body_start.checked_add(len as usize);
                match body_end {
                    Some(e) if len <= (self.end - body_start) as u64 => {
                        (WireType::Len, len, body_start..e, e)
                    }
                    _ => {
                        return Some(Err(self.corrupt(
                            after_key,
                            &format!(
                                "field {number} claims {len} bytes but only {} remain",
                                self.end - body_start
                            ),
                        )))
                    }
                }
            }
            5 => {
                let end = after_key + 4;
                if end > self.end {
                    return Some(Err(self.corrupt(after_key, "truncated fixed32")));
                }
                let bits = u32::from_le_bytes(window[after_key..end].try_into().unwrap());
                (WireType::Fixed32, u64::from(bits), end..end, end)
            }
            other => {
                return Some(Err(
                    self.corrupt(start, &format!("unsupported wire type {other}"))
                ))
            }
        };
        self.pos = next;
        Some(Ok(Field {
            number,
            wire,
            scalar,
            body,
            whole: start..next,
        }))
    }
}

/// Decodes a packed run of varints, or returns None if it is malformed.
pub fn packed_varints(buf: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (v, p) = read_varint(buf, pos)?;
        out.push(v);
        pos = p;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_length() {
        for v in [0u64, 1, 127, 128, 300, 65535, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "length of {v}");
            assert_eq!(read_varint(&out, 0), Some((v, out.len())));
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xffu8; 11];
        assert_eq!(read_varint(&bytes, 0), None);
    }

    #[test]
    fn length_past_end_is_an_error_not_a_panic() {
        // field 1, wire type 2, length 10, but only 2 bytes follow
        let buf = [0x0a, 10, 1, 2];
        let mut it = Fields::new(&buf, 0..buf.len(), "test");
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }
}
