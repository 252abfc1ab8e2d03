//! The buffers of rewiring and where they come from. A pass needs several
//! buffers as large as the matrix, and fresh memory costs a page fault per
//! 4 KiB page on first touch: so a run keeps the buffers of finished
//! tensors for the next ones (fresh ones are asked for in huge pages, see
//! `fresh_words` in `handoff.rs`).

use crate::sort::Scratch;

use super::handoff::fresh_words;

/// Buffers of the sequential part of a pass, reused across rows.
#[derive(Default)]
pub(super) struct Drawing {
    /// Column words `key << 32 | j` (the general path).
    pub(super) order: Vec<u64>,
    pub(super) keys: Scratch<u64>,
    /// Key bits by column and packed column words (the AVX-512 path).
    pub(super) kbits: Vec<u32>,
    pub(super) words: Vec<u32>,
    pub(super) packed: Scratch<u32>,
    /// The row being assembled.
    pub(super) row: Vec<u32>,
}

/// Buffers reused across the rows and passes of one tensor, and kept for
/// the next one (see [`Spares`]).
#[derive(Default)]
pub struct Workspace {
    /// The accumulated column strengths of a pass.
    pub(super) acc: Vec<f64>,
    pub(super) drawing: Drawing,
    /// The other side of each pass and transpose.
    pub(super) b: Vec<u32>,
    /// The ring of prepared Exp(1) draws.
    pub(super) exps: Vec<f32>,
    /// Random words of the row being drawn.
    pub(super) bits: Vec<u32>,
    /// The sorting scratch of the sequential thread.
    pub(super) values: Scratch<u32>,
}

/// Buffers kept between the tensors of one run, so that a tensor writes
/// into memory a finished one used instead of fresh pages the kernel must
/// zero. Dropped with the run.
///
/// Two kinds: workspaces (see [`Workspace`]), and word buffers, which hold
/// a tensor's keys and then, as its new payload, its bits until they are
/// written (see `Keys::from_f32_le_in`).
#[derive(Default)]
pub struct Spares {
    workspaces: std::sync::Mutex<Vec<Workspace>>,
    words: std::sync::Mutex<Vec<Vec<u32>>>,
}

/// Workspaces larger than this are not kept, so that a huge tensor's
/// buffers do not outlive it while smaller ones run; word buffers kept
/// together stay below it too.
const SPARE_MAX: usize = 64 << 20;

impl Spares {
    /// A kept workspace for a tensor of `n` elements, or a new one: the
    /// smallest that holds it, else the largest (which then grows).
    pub(crate) fn take(&self, n: usize) -> Workspace {
        take_fitting(&self.workspaces, n, |ws| ws.b.capacity(), true).unwrap_or_default()
    }

    /// Keeps `ws` for a later tensor.
    pub(crate) fn keep(&self, ws: Workspace) {
        if ws.b.capacity() * 4 <= SPARE_MAX {
            if let Ok(mut v) = self.workspaces.lock() {
                v.push(ws);
            }
        }
    }

    /// An empty buffer for at least `n` words: the smallest kept one that
    /// is large enough, or a new one.
    pub(crate) fn words(&self, n: usize) -> Vec<u32> {
        let kept = take_fitting(&self.words, n, Vec::capacity, false);
        let mut buf = kept.unwrap_or_else(|| fresh_words(n));
        buf.clear();
        buf
    }

    /// Keeps a word buffer that is no longer needed, as long as the kept
    /// ones fit within [`SPARE_MAX`] together.
    pub(crate) fn keep_words(&self, buf: Vec<u32>) {
        if let Ok(mut v) = self.words.lock() {
            let held: usize = v.iter().map(|b| b.capacity() * 4).sum();
            if held + buf.capacity() * 4 <= SPARE_MAX {
                v.push(buf);
            }
        }
    }
}

/// Takes out of `kept` the item whose capacity (`cap`) is the smallest
/// that holds `n`; if none does, the largest one with `or_largest`, else
/// nothing.
fn take_fitting<T>(
    kept: &std::sync::Mutex<Vec<T>>,
    n: usize,
    cap: impl Fn(&T) -> usize,
    or_largest: bool,
) -> Option<T> {
    let mut v = kept.lock().ok()?;
    let best = (0..v.len())
        .filter(|&i| or_largest || cap(&v[i]) >= n)
        .min_by_key(|&i| (cap(&v[i]) < n, cap(&v[i]).abs_diff(n)))?;
    Some(v.swap_remove(best))
}
