//! Random flips and crops of training images.
//!
//! The standard image augmentation (a horizontal flip with probability
//! one half, a random crop of the image zero-padded on every side) changes
//! what a network learns from, so both arms of a comparison must get the
//! same flips and crops: each sample's choice is drawn from the seed, the
//! epoch and the sample's position in the epoch, nothing else. Padding is
//! applied to normalised samples, so it pads with the channel mean.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::rng::{self, Purpose};
use super::DataError;

/// Which augmentations training batches get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Augment {
    /// Mirror the width axis with probability 0.5.
    pub flip: bool,
    /// Zero-pad each side by this many pixels and crop back to the image's
    /// size at a random offset (0: no crop).
    pub crop_pad: usize,
}

impl Augment {
    /// True when nothing is changed.
    pub(crate) fn is_none(&self) -> bool {
        !self.flip && self.crop_pad == 0
    }

    /// Refuses augmentation of samples that are not `[C, H, W]` images.
    pub(crate) fn check(&self, shape: &[usize]) -> Result<(), DataError> {
        if self.is_none() || shape.len() == 3 {
            return Ok(());
        }
        Err(DataError::BadOption(format!(
            "flips and crops need image samples [C, H, W]; these are {shape:?}"
        )))
    }

    /// Writes the augmented `src` (of `shape` `[C, H, W]`, checked) to
    /// `dst`, with the choices that `(seed, epoch, position)` draws.
    pub(super) fn apply(
        &self,
        shape: &[usize],
        src: &[f32],
        dst: &mut [f32],
        seed: u64,
        epoch: u32,
        position: usize,
    ) {
        if self.is_none() {
            dst.copy_from_slice(src);
            return;
        }
        let bits = rng::key(Purpose::Augment, &[seed, u64::from(epoch), position as u64]);
        let flip = self.flip && bits & 1 == 1;
        let span = 2 * self.crop_pad as u64 + 1;
        // Offsets into the padded image; `pad` is the unshifted crop.
        let oy = ((bits >> 8) & 0xFFFF_FFFF) % span;
        let ox = (bits >> 40) % span;
        let (h, w) = (shape[1], shape[2]);
        let pad = self.crop_pad;
        for (src, dst) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(h * w)) {
            for y in 0..h {
                let sy = (y + oy as usize).checked_sub(pad).filter(|&sy| sy < h);
                for x in 0..w {
                    let fx = if flip { w - 1 - x } else { x };
                    let sx = (fx + ox as usize).checked_sub(pad).filter(|&sx| sx < w);
                    dst[y * w + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => src[sy * w + sx],
                        _ => 0.0,
                    };
                }
            }
        }
    }
}

impl FromStr for Augment {
    type Err = DataError;

    /// `none`, or a comma-separated list of `flip` and `crop:PAD`
    /// (e.g. `flip,crop:4`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut augment = Augment::default();
        for part in s.split(',').map(str::trim) {
            if part == "none" || part.is_empty() {
                continue;
            }
            if part == "flip" {
                augment.flip = true;
            } else if let Some(pad) = part.strip_prefix("crop:") {
                augment.crop_pad = pad.parse().map_err(|_| {
                    DataError::BadOption(format!(
                        "augmentation `{part}`: the padding is not a count"
                    ))
                })?;
            } else {
                return Err(DataError::BadOption(format!(
                    "augmentation `{part}`: expected none, flip or crop:PAD"
                )));
            }
        }
        Ok(augment)
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.flip, self.crop_pad) {
            (false, 0) => f.write_str("none"),
            (true, 0) => f.write_str("flip"),
            (false, p) => write!(f, "crop:{p}"),
            (true, p) => write!(f, "flip,crop:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_crops_are_drawn_from_seed_epoch_and_position() {
        let shape = [1, 3, 4];
        let src: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let aug = Augment {
            flip: true,
            crop_pad: 1,
        };
        let run = |seed, epoch, pos| {
            let mut dst = vec![0.0; 12];
            aug.apply(&shape, &src, &mut dst, seed, epoch, pos);
            dst
        };
        assert_eq!(run(3, 1, 7), run(3, 1, 7));
        let outcomes: std::collections::HashSet<Vec<u32>> = (0..64)
            .map(|p| run(3, 1, p).iter().map(|v| v.to_bits()).collect())
            .collect();
        // 2 flips x 3 x 3 offsets.
        assert_eq!(outcomes.len(), 18);
        assert_ne!(
            (0..8).map(|p| run(3, 1, p)).collect::<Vec<_>>(),
            (0..8).map(|p| run(3, 2, p)).collect::<Vec<_>>()
        );
        // Every outcome is a shifted (maybe mirrored) copy padded with zeros.
        for out in (0..64).map(|p| run(3, 1, p)) {
            let kept: Vec<f32> = out.iter().copied().filter(|&v| v != 0.0).collect();
            assert!(kept.len() >= 6, "{out:?}");
        }
    }

    #[test]
    fn a_pure_flip_mirrors_rows() {
        let aug = Augment {
            flip: true,
            crop_pad: 0,
        };
        let src = [1., 2., 3., 4., 5., 6.];
        let mut flipped = 0;
        for p in 0..32 {
            let mut dst = [0.0; 6];
            aug.apply(&[1, 2, 3], &src, &mut dst, 0, 0, p);
            if dst == [3., 2., 1., 6., 5., 4.] {
                flipped += 1;
            } else {
                assert_eq!(dst, src);
            }
        }
        assert!((8..=24).contains(&flipped), "{flipped}");
    }

    #[test]
    fn parses_and_checks() {
        let a: Augment = "flip,crop:4".parse().unwrap();
        assert_eq!(
            a,
            Augment {
                flip: true,
                crop_pad: 4
            }
        );
        assert_eq!(a.to_string(), "flip,crop:4");
        assert!("none".parse::<Augment>().unwrap().is_none());
        assert!("rotate".parse::<Augment>().is_err());
        assert!(a.check(&[3, 8, 8]).is_ok());
        assert!(a.check(&[64]).is_err());
        assert!(Augment::default().check(&[64]).is_ok());
    }
}
