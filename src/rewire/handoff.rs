//! The two-thread hand-off of a pass, and with it every `unsafe` operation
//! of rewire/ outside the vector kernels of `transpose.rs` and `chacha.rs`.
//!
//! A pass is sequential (row k's columns depend on the sums of all rows
//! before it), but most of its work is not: sorting each row and drawing
//! its random numbers, and transposing finished rows for the next pass.
//! A helper thread does that work in the matrix the sequential thread is
//! rewiring, a few rows ahead of it and a few bands behind, which safe
//! Rust cannot express: both threads hold the same buffer, and the
//! transposed copy is written before it is initialised. The other buffers
//! of rewire/ that are filled in place before they are initialised, often
//! on two threads at once (a whole matrix transposed, the keys of an f32
//! payload encoded while their strengths are summed), and fresh buffers
//! with their advice to the kernel, are here too: so one file holds what a
//! review of rewire/'s memory safety must read, and the rest of rewire/
//! uses the safe functions below.
//!
//! # Safety invariant
//!
//! Every slot of a shared or uninitialised buffer is written by exactly
//! one thread, the one that claimed it, before any thread reads it, and a
//! buffer's length covers only slots that were written:
//!
//! - a row of the matrix and its slot in the ring of draws belong to the
//!   thread that claimed the row until its `ready` flag is set (release,
//!   read with acquire); after that only the sequential thread reads the
//!   row and then writes its result there, and a ring slot is reused only
//!   once `consumed` shows that its last reader is done;
//! - rows below `consumed` are final: a band of them is read, and its
//!   columns of the transposed copy written, only by the thread that
//!   claimed the band;
//! - [`Rows`] holds the sequential thread to that order (row k is taken,
//!   written and done before row k + 1, and its slices are dead before it
//!   is written), and [`run`] sets the copy's length only once both
//!   threads have returned with every band claimed;
//! - the fills set a buffer's length only once the parts they gave out
//!   cover it, each written in full by its kernel: [`f32_keys_into`] one
//!   slot per word, `transpose_band` and `transpose_rows` every slot of
//!   their band.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::sort::cpu::widest;
use crate::sort::{f32_key, sort_values, Scratch};

use super::draws::draw_row;
use super::strength::{sum_rows, sums, Strength};
use super::transpose::{transpose_band, transpose_rows, TILE};
use super::PARALLEL_MIN;

/// Rows whose draws a pass may hold at once, in elements: the helper
/// thread prepares at most this far ahead of the sequential part.
const WINDOW: usize = 1 << 16;

/// The work of a pass that does not depend on the accumulated strength
/// (sorting each row's keys ascending, in place, and drawing its Exp(1)
/// numbers), shared between the sequential thread and a helper.
///
/// Rows are claimed in order through `claimed`: the helper claims the
/// next one, and the sequential thread claims the row it needs if nobody
/// has. So nothing waits for a helper that never started (one thread, or
/// every thread busy with other tensors), and with two the helper keeps
/// ahead without a hand-over per batch of rows. Draws live in a ring of
/// `window` rows; a row's slot is reused only once the sequential part is
/// past the row before it in the slot.
struct Ahead<'a> {
    keys: *mut u32,
    cols: usize,
    rows: usize,
    ring: *mut f32,
    window: usize,
    draws: Option<(&'a [u8; 32], u64)>,
    claimed: AtomicUsize,
    ready: Vec<AtomicBool>,
    consumed: AtomicUsize,
    /// Where finished rows go, transposed, in bands of TILE rows (with
    /// decode or not), and the next band to claim.
    out: Option<(*mut u32, bool)>,
    bands: AtomicUsize,
    /// Set if either thread panicked, so that the other stops waiting for
    /// it (rayon reports the panic once both closures have returned).
    died: AtomicBool,
}

// SAFETY: the module's invariant (see the top of this file): rows and ring
// slots are written only by the thread that claimed the row, and read only
// after its `ready` flag (release/acquire); after that only the sequential
// thread reads the row and then writes its result there. A slot is
// rewritten only after `consumed` shows its last reader done. Rows below
// `consumed` are final: a band of them is read, and its columns of `out`
// written, only by the thread that claimed the band.
unsafe impl Sync for Ahead<'_> {}

impl<'a> Ahead<'a> {
    /// With `out`, the finished rows are also written transposed there
    /// (which must hold room for them all).
    fn new(
        keys: &'a mut [u32],
        cols: usize,
        ring: &'a mut Vec<f32>,
        draws: Option<(&'a [u8; 32], u64)>,
        out: Option<(&'a mut [MaybeUninit<u32>], bool)>,
    ) -> Self {
        let rows = keys.len() / cols;
        let window = (WINDOW / cols).clamp(2, rows.max(2));
        ring.resize(window * cols, 0.0);
        Ahead {
            keys: keys.as_mut_ptr(),
            cols,
            rows,
            ring: ring.as_mut_ptr(),
            window,
            draws,
            claimed: AtomicUsize::new(0),
            ready: (0..rows).map(|_| AtomicBool::new(false)).collect(),
            consumed: AtomicUsize::new(0),
            out: out.map(|(o, decode)| {
                assert_eq!(o.len(), keys.len());
                (o.as_mut_ptr() as *mut u32, decode)
            }),
            bands: AtomicUsize::new(0),
            died: AtomicBool::new(false),
        }
    }

    /// Prepares row k, which the caller has claimed.
    fn prepare(&self, k: usize, bits: &mut Vec<u32>, scratch: &mut Scratch<u32>) {
        let c = self.cols;
        // Row 0 is never changed, so it is neither sorted nor drawn.
        if k > 0 {
            // SAFETY: row k and its ring slot are this thread's alone
            // until `ready[k]` is set (see the type's comment).
            let (row, e) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.keys.add(k * c), c),
                    std::slice::from_raw_parts_mut(self.ring.add(k % self.window * c), c),
                )
            };
            sort_values(row, scratch);
            if let Some((seed, pass_no)) = self.draws {
                draw_row(seed, pass_no, k, bits, e);
            }
        }
        self.ready[k].store(true, Ordering::Release);
    }

    /// The helper: prepares rows in order until none is left.
    fn help(&self) {
        let _alarm = self.alarm();
        let (mut bits, mut scratch) = (Vec::new(), Scratch::default());
        loop {
            let k = self.claimed.fetch_add(1, Ordering::AcqRel);
            if k >= self.rows {
                break;
            }
            // A full window is time to spare: finished bands use it.
            wait_or(
                || {
                    k < self.consumed.load(Ordering::Acquire) + self.window
                        || self.died.load(Ordering::Acquire)
                },
                || self.transpose_next(),
            );
            if self.died.load(Ordering::Acquire) {
                return;
            }
            self.prepare(k, &mut bits, &mut scratch);
        }
        wait_or(
            || self.bands_left() == 0 || self.died.load(Ordering::Acquire),
            || self.transpose_next(),
        );
    }

    /// Bands of `out` not yet claimed.
    fn bands_left(&self) -> usize {
        if self.out.is_none() {
            return 0;
        }
        self.rows
            .div_ceil(TILE)
            .saturating_sub(self.bands.load(Ordering::Acquire))
    }

    /// Transposes the next band of rows into `out` if all its rows are
    /// final; false if there is none to do now.
    fn transpose_next(&self) -> bool {
        let Some((dst, decode)) = self.out else {
            return false;
        };
        let b = self.bands.load(Ordering::Acquire);
        let (i0, i1) = (b * TILE, ((b + 1) * TILE).min(self.rows));
        if i0 >= self.rows || self.consumed.load(Ordering::Acquire) < i1 {
            return false;
        }
        if self
            .bands
            .compare_exchange(b, b + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let c = self.cols;
            // SAFETY: rows i0..i1 are final (below `consumed`), and this
            // thread claimed their band, whose columns of `out` no other
            // thread writes (see the type's comment).
            unsafe {
                let band = std::slice::from_raw_parts(self.keys.add(i0 * c), (i1 - i0) * c);
                transpose_rows(band, self.rows, c, i0, dst, decode);
            }
        }
        true
    }

    /// A guard that sets `died` if its thread unwinds while it lives.
    fn alarm(&self) -> impl Drop + '_ {
        struct Alarm<'a>(&'a AtomicBool);
        impl Drop for Alarm<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(true, Ordering::Release);
                }
            }
        }
        Alarm(&self.died)
    }

    /// Row k, sorted, and its draws, for the sequential part, which must
    /// then call [`Ahead::done`] (through [`Rows`], which sees to it).
    fn get(&self, k: usize, bits: &mut Vec<u32>, scratch: &mut Scratch<u32>) -> (&[u32], &[f32]) {
        if !self.ready[k].load(Ordering::Acquire) {
            let mine = self
                .claimed
                .compare_exchange(k, k + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if mine {
                self.prepare(k, bits, scratch);
            } else {
                wait(|| self.ready[k].load(Ordering::Acquire) || self.died.load(Ordering::Acquire));
                // The helper's own panic is what rayon reports.
                assert!(
                    self.ready[k].load(Ordering::Acquire),
                    "the helper preparing row {k} panicked"
                );
            }
        }
        let c = self.cols;
        // SAFETY: row k is ready, and neither it nor its slot is written
        // again before `done(k)`.
        unsafe {
            (
                std::slice::from_raw_parts(self.keys.add(k * c), c),
                std::slice::from_raw_parts(self.ring.add(k % self.window * c), c),
            )
        }
    }

    /// Writes row k's result over its sorted input, which the caller must
    /// no longer be reading (the slice [`Ahead::get`] gave it is dead).
    fn put(&self, k: usize, row: &[u32]) {
        let c = self.cols;
        assert_eq!(row.len(), c);
        // SAFETY: row k lies inside the matrix, its preparation is over
        // (it was handed out by `get`), and no other thread touches it: the
        // helper only writes rows it claimed, all past k.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.keys.add(k * c), c) };
    }

    fn done(&self, k: usize) {
        self.consumed.store(k + 1, Ordering::Release);
    }
}

/// Spins until `ready()`, yielding the core after a while (the wait is
/// normally a fraction of one row's work).
fn wait(ready: impl Fn() -> bool) {
    wait_or(ready, || false)
}

/// [`wait`], doing `work` meanwhile for as long as it finds some (it
/// returns whether it did).
fn wait_or(ready: impl Fn() -> bool, work: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if work() {
            spins = 0;
        } else if spins < 200 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs the hand-off of a pass over the row-major matrix `keys`, `cols`
/// wide: `sequential` takes the rows in order through [`Rows`] on this
/// thread, while a helper sorts the rows after it and, with `draws` (the
/// tensor's seed and the pass number), draws their Exp(1) numbers into
/// `ring`. With `out`, the finished rows are also written transposed
/// there (decoded or not), band by band as they are finished: the helper
/// does that while it waits for the sequential part, and the rest is split
/// between both at the end. `out` then holds the whole transpose.
pub(super) fn run(
    keys: &mut [u32],
    cols: usize,
    ring: &mut Vec<f32>,
    draws: Option<(&[u8; 32], u64)>,
    mut out: Option<(&mut Vec<u32>, bool)>,
    sequential: impl FnOnce(&mut Rows) + Send,
) {
    let n = keys.len();
    let spare = out.as_mut().map(|(t, decode)| {
        t.clear();
        (&mut t.spare_capacity_mut()[..n], *decode)
    });
    let ahead = Ahead::new(keys, cols, ring, draws, spare);
    // The helper runs on the other core when one is free; otherwise it
    // starts after the sequential part, finds every row taken, and returns.
    rayon::join(
        || {
            let _alarm = ahead.alarm();
            sequential(&mut Rows {
                ahead: &ahead,
                next: 0,
                taken: false,
            });
            while ahead.transpose_next() {}
        },
        || ahead.help(),
    );
    let complete = ahead.bands_left() == 0;
    if let Some((t, _)) = out {
        assert!(complete, "a band of the transposed copy was left out");
        // SAFETY: both closures have returned, and between them every
        // band was claimed and written in full (`transpose_rows` writes
        // all columns of its rows' slots); a panic would have propagated
        // out of `join` before this line.
        unsafe { t.set_len(n) };
    }
}

/// The sequential thread's access to the rows of a pass, lent by [`run`]:
/// row k sorted and with its draws ([`Rows::get`]), its result written
/// over it ([`Rows::put`]), and then marked done ([`Rows::done`]), for
/// k = 0, 1, .. in order. It checks that order, on which the helper
/// relies to work on the rows after k.
pub(super) struct Rows<'h, 'a> {
    ahead: &'h Ahead<'a>,
    /// The row to be taken next, and whether it has been.
    next: usize,
    taken: bool,
}

impl Rows<'_, '_> {
    /// Row k, sorted, and its draws; k is the row after the last one done.
    /// `bits` and `scratch` serve if this thread has to prepare the row
    /// itself.
    pub(super) fn get(
        &mut self,
        k: usize,
        bits: &mut Vec<u32>,
        scratch: &mut Scratch<u32>,
    ) -> (&[u32], &[f32]) {
        assert_eq!(k, self.next, "rows are taken in order");
        self.taken = true;
        self.ahead.get(k, bits, scratch)
    }

    /// Writes row k's result over its sorted input (which `get` lent: this
    /// borrow ends it).
    pub(super) fn put(&mut self, k: usize, row: &[u32]) {
        assert!(k == self.next && self.taken, "row {k} is written unread");
        self.ahead.put(k, row);
    }

    /// Marks row k final, for the helper: its slot in the ring may be
    /// reused, and its band transposed once the band is whole.
    pub(super) fn done(&mut self, k: usize) {
        assert!(k == self.next && self.taken, "row {k} is done unread");
        self.ahead.done(k);
        self.next += 1;
        self.taken = false;
    }
}

/// The keys of the little-endian f32 `words` into `keys`, whose contents
/// are dropped and whose memory is reused; true if a value is NaN or
/// infinite.
pub(super) fn fill_f32_keys(words: &[[u8; 4]], keys: &mut Vec<u32>) -> bool {
    let n = words.len();
    keys.clear();
    keys.reserve_exact(n);
    let infinite = f32_keys_into(words, &mut keys.spare_capacity_mut()[..n]);
    // SAFETY: f32_keys_into wrote all n slots, one per word.
    unsafe { keys.set_len(n) };
    infinite
}

/// [`fill_f32_keys`] for a row-major `rows x cols` matrix, with its
/// strengths summed in the same sweep, block by block while the values
/// are in cache, instead of in a sweep of their own; true if a value is NaN
/// or infinite.
pub(super) fn fill_f32_keys_rows(
    words: &[[u8; 4]],
    keys: &mut Vec<u32>,
    rows: usize,
    cols: usize,
) -> (Strength, bool) {
    let n = rows * cols;
    assert_eq!(words.len(), n);
    keys.clear();
    keys.reserve_exact(n);
    let out = &mut keys.spare_capacity_mut()[..n];
    let add = |(w, o): (&[[u8; 4]], &mut [MaybeUninit<u32>]), row: &mut [f64], col: &mut [f64]| {
        // Blocks of about 16 KB of rows, encoded and then summed.
        let block = (4096 / cols.max(1)).max(1);
        let len = (block * cols).max(1);
        let mut infinite = false;
        for ((w, o), r) in w
            .chunks(len)
            .zip(o.chunks_mut(len))
            .zip(row.chunks_mut(block))
        {
            infinite |= f32_keys_into(w, o);
            sums(w, |x| f32::from_le_bytes(*x) as f64, r, col);
        }
        infinite
    };
    let (strength, infinite) = sum_rows(
        rows,
        cols,
        (words, out),
        |(w, o), h| {
            let ((w0, w1), (o0, o1)) = (w.split_at(h * cols), o.split_at_mut(h * cols));
            ((w0, o0), (w1, o1))
        },
        add,
    );
    // SAFETY: every part wrote all of its slots (f32_keys_into, one per
    // word, over blocks that cover the part), and the parts `sum_rows`
    // adds cover the n slots.
    unsafe { keys.set_len(n) };
    (strength, infinite)
}

/// Transpose of a row-major `rows x cols` matrix of keys into `dst`, in
/// tiles of 32 x 32 that keep both sides in cache; with AVX2, full tiles
/// move as 8 x 8 blocks of registers. With `decode`, f32 keys become their
/// values' bits on the way (see [`decode_f32`](super::transpose::decode_f32)).
pub(super) fn transpose(src: &[u32], rows: usize, cols: usize, dst: &mut Vec<u32>, decode: bool) {
    let n = src.len();
    assert_eq!(n, rows * cols);
    dst.clear();
    if dst.capacity() < n {
        *dst = fresh_words(n);
    }
    if rows > 0 && cols > 0 {
        // Each band of TILE rows of dst (TILE columns of src) is
        // independent; bands run on both cores when the matrix is large
        // enough to pay for it. Written into the spare capacity: zeroing it
        // first was a sweep on one thread, through fresh pages.
        let out = &mut dst.spare_capacity_mut()[..n];
        let band = |(b, out): (usize, &mut [MaybeUninit<u32>])| {
            transpose_band(src, rows, cols, b * TILE, out, decode)
        };
        if n >= PARALLEL_MIN {
            out.par_chunks_mut(TILE * rows).enumerate().for_each(band);
        } else {
            out.chunks_mut(TILE * rows).enumerate().for_each(band);
        }
    }
    // SAFETY: the bands cover all n slots, and each band writes every slot
    // of its own (every column of its tiles and edges, for every row).
    unsafe { dst.set_len(n) };
}

/// The keys of little-endian f32 words into `out`, as wide as the CPU
/// allows; true if a value is NaN or infinite. Writes every slot of `out`
/// that has a word, which [`fill_f32_keys`] relies on. Whole words
/// (`as_chunks`) load as such, where chunks of a byte slice would be
/// gathered byte by byte.
fn f32_keys_into(words: &[[u8; 4]], out: &mut [MaybeUninit<u32>]) -> bool {
    #[inline(always)]
    fn body(words: &[[u8; 4]], out: &mut [MaybeUninit<u32>]) -> bool {
        let mut infinite = false;
        for (k, w) in out.iter_mut().zip(words) {
            let b = u32::from_le_bytes(*w);
            infinite |= b & 0x7f80_0000 == 0x7f80_0000;
            k.write(f32_key(f32::from_bits(b)));
        }
        infinite
    }
    widest!(body(words: &[[u8; 4]], out: &mut [MaybeUninit<u32>]) -> bool)
}

/// An empty buffer with room for `n` words, which the kernel is asked to
/// back with 2 MiB pages wherever whole ones fit. Each 4 KiB page of fresh
/// memory costs a fault on first touch, and the faults, more than the
/// zeroing, are a noticeable part of rewiring a model; the transposes,
/// which stride across the whole matrix, also miss the TLB less.
pub(super) fn fresh_words(n: usize) -> Vec<u32> {
    let buf = Vec::with_capacity(n);
    advise_huge_pages(&buf);
    buf
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf`'s capacity,
/// which must not have been touched yet, with huge pages. Advice only:
/// where the kernel has transparent huge pages off, or none free, the
/// memory is ordinary and nothing fails.
#[allow(clippy::ptr_arg)]
fn advise_huge_pages(buf: &Vec<u32>) {
    let (addr, len) = (buf.as_ptr() as usize, buf.capacity() * 4);
    const HUGE: usize = 2 << 20;
    let (start, end) = (addr.next_multiple_of(HUGE), (addr + len) / HUGE * HUGE);
    #[cfg(target_os = "linux")]
    if start < end {
        // SAFETY: the range lies inside the allocation of `buf`, which
        // has not been touched yet; MADV_HUGEPAGE changes how its pages are
        // backed, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    let _ = (start, end);
}
