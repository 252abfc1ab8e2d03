//! The main job end to end: read, plan, rewire every selected weight in
//! parallel, write the patched file, and account for it in a report.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::patch::{Output, WriteOptions};
use crate::onnx::payload;
use crate::onnx::{DataType, Model};
use crate::plan::{self, Plan, Selection, Weight};
use crate::report::{FileInfo, RewireReport, TensorReport, Totals};
use crate::rewire::{self, Keys, Layout, Options, Spares, ViewIndices};

/// Called with the name of each tensor once it is rewired.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

pub use crate::budget::DEFAULT_MAX_MEMORY;

/// Everything `rewire` can be told.
#[derive(Clone, Default)]
pub struct RewireOptions {
    /// The method, seed and stabilization.
    pub rewire: Options,
    /// Which weights to rewire.
    pub selection: Selection,
    /// How the output is written.
    pub write: WriteOptions,
    /// Compute SHA-256 of input and output for the report.
    pub hashes: bool,
    /// Called with a line of text as the run advances.
    pub progress: Option<Progress>,
    /// Bytes of work space the tensors in flight may use together (None:
    /// [`DEFAULT_MAX_MEMORY`]). One tensor always runs, whatever its size.
    pub max_memory: Option<u64>,
}

/// About the most memory rewiring `w` holds at once: its keys and the other
/// side of each pass (4 + 4 bytes an element), and its payload (read for
/// external data, written for the output). f64 values f32 cannot hold
/// need a rank table on top.
pub fn workspace_bytes(model: &Model, w: &Weight) -> u64 {
    let t = &model.tensors[w.tensor];
    let width = t.dtype.byte_width().unwrap_or(8) as u64;
    let per = if width == 8 { 48 } else { 8 + width };
    t.numel.saturating_mul(per)
}

/// The weights in batches whose work space fits `budget` (see
/// [`crate::budget::batches`]).
fn batches(model: &Model, plan: &Plan, budget: u64) -> Vec<Vec<usize>> {
    // A tied weight's copies are made from its new payload while it waits
    // for the writer: one more payload each.
    let copies = |w: &Weight| -> u64 {
        plan.tie_of(w.tensor).map_or(0, |g| {
            let t = &model.tensors[w.tensor];
            let width = t.dtype.byte_width().unwrap_or(8) as u64;
            g.copies().count() as u64 * t.numel.saturating_mul(width)
        })
    };
    let costs: Vec<u64> = plan
        .weights
        .iter()
        .map(|w| workspace_bytes(model, w).saturating_add(copies(w)))
        .collect();
    crate::budget::batches(&costs, budget)
}

/// A rewired tensor's new payload bytes.
pub struct Payload(Repr);

impl Payload {
    /// Hands a word buffer back to `spares` once the bytes are written.
    fn recycle(self, spares: &Spares) {
        if let Repr::Words(w) = self.0 {
            spares.keep_words(w);
        }
    }
}

enum Repr {
    Bytes(Vec<u8>),
    /// Little-endian words, kept as the buffer they were made in.
    Words(Vec<u32>),
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Bytes(b) => b,
            // SAFETY: any initialised u32 slice is a valid byte slice four
            // times as long, and u8 needs no alignment.
            Repr::Words(w) => unsafe {
                std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 4)
            },
        }
    }
}

/// Rewires one located weight of `model`: returns its new payload (same
/// length, a bitwise permutation of the old one) and its report line.
pub fn rewire_tensor(model: &Model, w: &Weight, opts: &Options) -> Result<(Payload, TensorReport)> {
    rewire_tensor_in(model, w, opts, &Spares::default())
}

/// [`rewire_tensor`] with the rewiring's buffers from `spares`, which the
/// tensors of one run share.
pub fn rewire_tensor_in(
    model: &Model,
    w: &Weight,
    opts: &Options,
    spares: &Spares,
) -> Result<(Payload, TensorReport)> {
    rewire_finite(model, w, opts, spares)?.ok_or_else(|| non_finite(&model.tensors[w.tensor]))
}

/// [`rewire_tensor_in`], or None, with nothing rewired, when the weight
/// holds a NaN or an infinity (found as its values are encoded).
fn rewire_finite(
    model: &Model,
    w: &Weight,
    opts: &Options,
    spares: &Spares,
) -> Result<Option<(Payload, TensorReport)>> {
    let t = &model.tensors[w.tensor];
    let dtype = payload::float_type(t)?;
    let bytes = model.payload(t)?;
    let view = ViewIndices::new(&t.dims, &w.axes);
    let (rows, cols) = (w.rows as usize, w.cols as usize);
    let result = match payload::elements(t, &bytes)? {
        payload::Elements::Fixed { width: 2, .. } => {
            fixed::<2>(bytes, dtype, view, w, opts, spares)
        }
        payload::Elements::Fixed { width: 4, .. } => {
            fixed::<4>(bytes, dtype, view, w, opts, spares)
        }
        payload::Elements::Fixed { width: 8, .. } => {
            fixed::<8>(bytes, dtype, view, w, opts, spares)
        }
        payload::Elements::Fixed { width, .. } => {
            return Err(Error::tensor(
                &t.name,
                format!("{width}-byte elements cannot be rewired"),
            ))
        }
        payload::Elements::Decoded(vals) => {
            let mut keys = Keys::encode(dtype, view.clone().map(|s| vals[s]));
            if !keys.finite() {
                return Ok(None);
            }
            let (before, after) =
                rewire::rewire_keys_in(&mut keys, rows, cols, Layout::Rows, &w.key, opts, spares);
            let mut new = vec![0u64; vals.len()];
            let mut dst = view;
            keys.for_each_bits(|_, b| new[dst.next().unwrap_or(0)] = b);
            Some((
                Payload(Repr::Bytes(payload::varint_payload(&new))),
                before,
                after,
            ))
        }
    };
    let Some((out, before, after)) = result else {
        return Ok(None);
    };
    Ok(Some((
        out,
        TensorReport {
            name: w.name.clone(),
            op: w.op.clone(),
            dtype: w.dtype,
            shape: w.shape.clone(),
            rows: w.rows,
            cols: w.cols,
            transposed: w.transposed,
            before,
            after,
        },
    )))
}

fn non_finite(t: &crate::onnx::Tensor) -> Error {
    Error::tensor(&t.name, "contains NaN or infinite values")
}

/// Rewires a payload of little-endian `W`-byte elements; None when a
/// value is NaN or infinite.
fn fixed<const W: usize>(
    bytes: std::borrow::Cow<'_, [u8]>,
    dtype: DataType,
    view: ViewIndices,
    w: &Weight,
    opts: &Options,
    spares: &Spares,
) -> Option<(Payload, rewire::Strength, rewire::Strength)> {
    let (rows, cols) = (w.rows as usize, w.cols as usize);
    let word = |c: &[u8; W]| {
        let mut b = [0u8; 8];
        b[..W].copy_from_slice(c);
        u64::from_le_bytes(b)
    };
    // A view that is the storage matrix transposed (a MatMul or Gemm
    // weight stored as [K, N]) keeps its keys in storage order and is
    // rewired in that layout: walking the view element by element took as
    // long as both passes.
    let flip = rewire::storage_transpose(&w.shape, &w.axes);
    let in_order = view.is_identity() || flip.is_some();
    let layout = match flip {
        Some((r, c)) => {
            debug_assert_eq!((c, r), (rows, cols));
            Layout::Columns
        }
        None => Layout::Rows,
    };
    if in_order && W == 4 && dtype == DataType::Float {
        let (words, before, after) =
            rewire::rewire_f32_le(bytes, rows, cols, layout, &w.key, opts, spares)?;
        return Some((Payload(Repr::Words(words)), before, after));
    }
    let (elements, _) = bytes.as_chunks::<W>();
    let mut keys = if in_order {
        Keys::encode(dtype, elements.iter().map(word))
    } else {
        Keys::encode(dtype, view.clone().map(|s| word(&elements[s])))
    };
    if !keys.finite() {
        return None;
    }
    // The payload can be as large as the tensor (external data is read
    // into memory) and is not needed again: the keys give back every bit.
    drop(bytes);
    let (before, after) =
        rewire::rewire_keys_in(&mut keys, rows, cols, layout, &w.key, opts, spares);
    let mut out = vec![0u8; keys.keys.len() * W];
    let (slots, _) = out.as_chunks_mut::<W>();
    if in_order {
        keys.for_each_bits(|i, b| slots[i].copy_from_slice(&b.to_le_bytes()[..W]));
    } else {
        let mut dst = view;
        keys.for_each_bits(|_, b| {
            let s = dst.next().unwrap_or(0);
            slots[s].copy_from_slice(&b.to_le_bytes()[..W]);
        });
    }
    Some((Payload(Repr::Bytes(out)), before, after))
}

/// Rewires the weights of one batch in parallel and writes them into
/// `staged`, returning their report lines by plan index (None for a weight
/// found to hold a NaN or an infinity, left as it was).
///
/// New payloads go to a writer thread, so that the time the kernel takes to
/// copy them into the file (tens of milliseconds for 10 MB on this VM, more
/// while the file it replaces is being written back) overlaps with
/// rewiring instead of holding up a core that has more to rewire. The
/// writer lives as long as the batch: a payload waiting for it is part of
/// its tensor's work space, which the batch was sized to hold, and the next
/// batch starts only once every write is done.
fn rewire_batch(
    model: &Model,
    plan: &Plan,
    batch: &[usize],
    staged: &Output,
    opts: &RewireOptions,
    spares: &Spares,
) -> Result<Vec<(usize, Option<TensorReport>)>> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Payload)>(2);
        let writer = scope.spawn(move || -> Result<()> {
            for (tensor, bytes) in rx {
                staged.write(model, tensor, &bytes)?;
                bytes.recycle(spares);
            }
            Ok(())
        });
        let done = batch
            .par_iter()
            .map(|&i| {
                let w = &plan.weights[i];
                let copies = plan.tie_of(w.tensor).into_iter().flat_map(|g| g.copies());
                let rep = match rewire_finite(model, w, &opts.rewire, spares)? {
                    Some((bytes, rep)) => {
                        // Tied copies get the same permutation, so that
                        // they stay equal to the rewired tensor.
                        for c in copies {
                            let copy = plan::copy_payload(&w.shape, c, &bytes);
                            tx.send((c.tensor, Payload(Repr::Bytes(copy))))
                                .map_err(|_| Error::WriterStopped)?;
                        }
                        // A closed queue means the writer failed; its error
                        // is the one reported.
                        tx.send((w.tensor, bytes))
                            .map_err(|_| Error::WriterStopped)?;
                        Some(rep)
                    }
                    None => {
                        staged.keep(model, w.tensor)?;
                        for c in copies {
                            staged.keep(model, c.tensor)?;
                        }
                        None
                    }
                };
                if let Some(p) = &opts.progress {
                    p(&w.name);
                }
                Ok((i, rep))
            })
            .collect::<Result<Vec<_>>>();
        drop(tx);
        writer.join().expect("the writer thread does not panic")?;
        done
    })
}

/// Reads and plans `input` with the given selection. The plan still holds
/// weights with NaN or infinite values (see [`plan::locate_weights`]);
/// [`rewire_model`] skips them.
pub fn plan_file(input: &Path, selection: &Selection) -> Result<(Model, Plan)> {
    let model = Model::open(input)?;
    let plan = plan::locate_weights_with(&model, selection.tied)?.select(selection);
    Ok((model, plan))
}

/// Rewires `input` into `output` (or only plans, when `output` is None).
pub fn rewire_file(
    input: &Path,
    output: Option<&Path>,
    opts: &RewireOptions,
) -> Result<RewireReport> {
    let (model, plan) = plan_file(input, &opts.selection)?;
    rewire_model(&model, &plan, output, opts)
}

/// Rewires an already read and planned model. Weights found to hold a NaN
/// or an infinity as they are read are left as they are and join the
/// report's skipped list.
pub fn rewire_model(
    model: &Model,
    plan: &Plan,
    output: Option<&Path>,
    opts: &RewireOptions,
) -> Result<RewireReport> {
    let input_path = model
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let results: Vec<(usize, Option<TensorReport>)>;
    let mut output_info = None;
    let input_hash = || {
        if opts.hashes {
            Some(crate::digest::sha256_hex(&model.bytes))
        } else {
            None
        }
    };
    let input_sha;
    let budget = opts.max_memory.unwrap_or(DEFAULT_MAX_MEMORY);
    let spares = Spares::default();
    if let Some(out) = output {
        let copies = plan.ties.iter().flat_map(|g| g.copies().map(|c| c.tensor));
        let indices: Vec<usize> = plan
            .weights
            .iter()
            .map(|w| w.tensor)
            .chain(copies)
            .collect();
        let staged = Output::create(model, out, &indices, opts.write)?;
        let mut done = Vec::new();
        for batch in batches(model, plan, budget) {
            done.extend(rewire_batch(model, plan, &batch, &staged, opts, &spares)?);
        }
        results = done;
        // Both digests at the end, side by side: hashing the input during
        // the rewiring took a core from it, and the output's digest can
        // only start once every payload is written.
        let (in_sha, out_sha) = rayon::join(input_hash, || {
            opts.hashes.then(|| staged.model_sha256()).transpose()
        });
        input_sha = in_sha;
        staged.commit()?;
        output_info = Some(FileInfo {
            path: out.display().to_string(),
            sha256: out_sha?,
        });
    } else {
        input_sha = input_hash();
        // A dry run still computes what rewiring would achieve.
        let mut done = Vec::new();
        for batch in batches(model, plan, budget) {
            let part = batch
                .par_iter()
                .map(|&i| {
                    let r = rewire_finite(model, &plan.weights[i], &opts.rewire, &spares)?;
                    Ok((
                        i,
                        r.map(|(bytes, r)| {
                            bytes.recycle(&spares);
                            r
                        }),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            done.extend(part);
        }
        results = done;
    }
    let mut tensors = Vec::with_capacity(results.len());
    let mut found = Vec::new();
    // A tie whose rewired tensor turned out non-finite was left as it was,
    // copies included; the copies join the skipped list with it.
    let mut tied = Plan {
        ties: plan.ties.clone(),
        ..Plan::default()
    };
    for (i, r) in results {
        match r {
            Some(r) => tensors.push((i, r)),
            None => {
                let w = &plan.weights[i];
                tied.untie(
                    w.tensor,
                    plan::SkipKind::NonFinite,
                    "contains NaN or infinite values",
                );
                found.push(plan::Skipped::non_finite(w));
            }
        }
    }
    found.append(&mut tied.skipped);
    tensors.sort_by_key(|(i, _)| *i);
    let tensors: Vec<TensorReport> = tensors.into_iter().map(|(_, r)| r).collect();
    // Where `plan::locate` puts them: among the weights it skips, in file
    // order, ahead of those the selection left out.
    let mut skipped = plan.skipped.clone();
    if !found.is_empty() {
        let cut = skipped
            .iter()
            .position(|s| s.kind == plan::SkipKind::Deselected)
            .unwrap_or(skipped.len());
        let deselected = skipped.split_off(cut);
        skipped.extend(found);
        skipped.sort_by_key(|s| s.tensor);
        skipped.extend(deselected);
    }
    Ok(RewireReport {
        pa_onnx_version: env!("CARGO_PKG_VERSION").to_string(),
        seed: opts.rewire.seed,
        method: opts.rewire.method,
        stabilize: opts.rewire.stabilize,
        dry_run: output.is_none(),
        input: FileInfo {
            path: input_path,
            sha256: input_sha,
        },
        output: output_info,
        totals: Totals::from_tensors(&tensors),
        tensors,
        skipped,
        ties: tied.ties,
    })
}
