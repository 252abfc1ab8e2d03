//! The ZIP archives that `numpy.savez` (stored entries) and
//! `numpy.savez_compressed` (deflated entries) write.
//!
//! A `.npz` file is a ZIP archive of `.npy` files. Reading one needs only the
//! central directory, the local headers and a CRC check; stored entries are
//! read in place, deflated ones are inflated with flate2. Encrypted entries
//! and other compression methods are refused with the way to avoid them.

use std::borrow::Cow;
use std::io::Read;

/// What is wrong with the archive itself, naming the entry where one is at
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZipError {
    #[error("not a zip archive (too short)")]
    TooShort,
    #[error("not a zip archive (no end of central directory); save inputs with numpy.savez")]
    NoEndOfCentralDirectory,
    #[error("truncated zip archive")]
    Truncated,
    #[error("zip offset out of range")]
    OffsetOutOfRange,
    #[error("broken zip64 end of central directory")]
    BrokenZip64,
    #[error("broken zip central directory")]
    BrokenCentralDirectory,
    #[error("entry `{entry}` is encrypted")]
    Encrypted { entry: String },
    #[error("entry `{entry}` uses compression method {method}; save the arrays with numpy.savez or numpy.savez_compressed")]
    Compressed { entry: String, method: u16 },
    #[error("entry `{entry}`: the compressed data is damaged ({detail})")]
    Inflate { entry: String, detail: String },
    #[error("entry `{entry}`: stored sizes disagree")]
    SizesDisagree { entry: String },
    #[error("entry `{entry}`: broken local header")]
    BrokenLocalHeader { entry: String },
    #[error("entry `{entry}` runs past the end of the file")]
    PastEnd { entry: String },
    #[error("entry `{entry}`: CRC mismatch, the file is damaged")]
    Crc { entry: String },
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ZipError::Truncated)
}

pub(super) fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ZipError::Truncated)
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ZipError> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or(ZipError::Truncated)
}

fn to_usize(v: u64) -> Result<usize, ZipError> {
    usize::try_from(v).map_err(|_| ZipError::OffsetOutOfRange)
}

/// One entry of an archive: its name and its (inflated) bytes.
pub(super) type Entry<'a> = (String, Cow<'a, [u8]>);

/// The entries of a zip archive, read through its central directory
/// (numpy writes zip64 fields, so those are understood): stored ones in
/// place, deflated ones inflated.
pub(super) fn zip_entries(b: &[u8]) -> Result<Vec<Entry<'_>>, ZipError> {
    const EOCD: u32 = 0x0605_4b50;
    const EOCD64: u32 = 0x0606_4b50;
    const LOCATOR64: u32 = 0x0706_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const LOCAL: u32 = 0x0403_4b50;

    if b.len() < 22 {
        return Err(ZipError::TooShort);
    }
    let lowest = b.len().saturating_sub(22 + 0xFFFF);
    let eocd = (lowest..=b.len() - 22)
        .rev()
        .find(|&i| u32_at(b, i) == Ok(EOCD))
        .ok_or(ZipError::NoEndOfCentralDirectory)?;
    let mut count = u64::from(u16_at(b, eocd + 10)?);
    let mut cd_offset = u64::from(u32_at(b, eocd + 16)?);
    if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF)
        && eocd >= 20
        && u32_at(b, eocd - 20)? == LOCATOR64
    {
        let at = to_usize(u64_at(b, eocd - 20 + 8)?)?;
        if u32_at(b, at)? != EOCD64 {
            return Err(ZipError::BrokenZip64);
        }
        count = u64_at(b, at + 32)?;
        cd_offset = u64_at(b, at + 48)?;
    }

    let mut entries = Vec::new();
    let mut at = to_usize(cd_offset)?;
    for _ in 0..count {
        if u32_at(b, at)? != CENTRAL {
            return Err(ZipError::BrokenCentralDirectory);
        }
        let flags = u16_at(b, at + 8)?;
        let method = u16_at(b, at + 10)?;
        let crc = u32_at(b, at + 16)?;
        let mut csize = u64::from(u32_at(b, at + 20)?);
        let mut usize_ = u64::from(u32_at(b, at + 24)?);
        let name_len = usize::from(u16_at(b, at + 28)?);
        let extra_len = usize::from(u16_at(b, at + 30)?);
        let comment_len = usize::from(u16_at(b, at + 32)?);
        let mut local = u64::from(u32_at(b, at + 42)?);
        let name_bytes = b
            .get(at + 46..at + 46 + name_len)
            .ok_or(ZipError::Truncated)?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = b
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or(ZipError::Truncated)?;
        // Zip64 extra field: the 64-bit values, in this order, of the 32-bit fields that overflowed.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e)?;
            let len = usize::from(u16_at(extra, e + 2)?);
            if id == 1 {
                let mut p = e + 4;
                for field in [&mut usize_, &mut csize, &mut local] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, p)?;
                        p += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if flags & 1 != 0 {
            return Err(ZipError::Encrypted { entry: name });
        }
        if method != 0 && method != 8 {
            return Err(ZipError::Compressed {
                entry: name,
                method,
            });
        }
        if method == 0 && csize != usize_ {
            return Err(ZipError::SizesDisagree { entry: name });
        }
        let local = to_usize(local)?;
        if u32_at(b, local)? != LOCAL {
            return Err(ZipError::BrokenLocalHeader { entry: name });
        }
        let start =
            local + 30 + usize::from(u16_at(b, local + 26)?) + usize::from(u16_at(b, local + 28)?);
        let Some(data) = b.get(start..start + to_usize(csize)?) else {
            return Err(ZipError::PastEnd { entry: name });
        };
        let data = match method {
            0 => Cow::Borrowed(data),
            _ => Cow::Owned(inflate(&name, data, to_usize(usize_)?)?),
        };
        if crc32(&data) != crc {
            return Err(ZipError::Crc { entry: name });
        }
        entries.push((name, data));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// A deflated entry, which must inflate to exactly `size` bytes (the
/// central directory's word; reading stops past it, so a lying archive
/// cannot make the reader allocate more).
fn inflate(entry: &str, data: &[u8], size: usize) -> Result<Vec<u8>, ZipError> {
    let damaged = |detail: String| ZipError::Inflate {
        entry: entry.to_string(),
        detail,
    };
    let mut out = Vec::with_capacity(size.min(1 << 30));
    flate2::read::DeflateDecoder::new(data)
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| damaged(e.to_string()))?;
    if out.len() != size {
        return Err(damaged(format!(
            "inflates to {} bytes where the archive says {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// CRC-32 (IEEE), as zip uses.
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
