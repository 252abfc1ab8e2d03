//! Batches assembled ahead of the training step, on a worker thread.
//!
//! The step should never wait for data: a worker thread copies (and for
//! training, shuffles and augments) the next few batches while the step
//! runs, and hands them over through a bounded channel, so memory stays a
//! few batches deep. The batches come out in one fixed order whatever the
//! threads do, since every random choice is drawn from the seed, the epoch
//! and the sample's position. Dropping the iterator early disconnects the
//! channel, which stops the worker at its next hand-over.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::rng::{self, Purpose};
use super::{Augment, DataError, Dataset};

/// Batches the worker keeps ready ahead of the consumer.
const DEPTH: usize = 3;
/// Below this many values a batch is copied on the worker alone (rayon's
/// hand-off would cost more than it saves).
const PARALLEL_VALUES: usize = 1 << 16;

/// One batch: `rows` samples one after another, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// `rows * sample_len` values.
    pub x: Vec<f32>,
    /// One label per row.
    pub y: Vec<i64>,
    /// The rows that count: all of them, except in the last evaluation
    /// batch, which is padded with repeated samples.
    pub valid: usize,
}

/// What the worker needs to build any batch of one pass.
struct Plan {
    data: Arc<Dataset>,
    batch: usize,
    /// The sample at each position (training: the epoch's permutation);
    /// `None` is the dataset's order, wrapping round for padding.
    order: Option<Vec<usize>>,
    augment: Augment,
    seed: u64,
    epoch: u32,
}

impl Plan {
    /// Builds batch `b`.
    fn build(&self, b: usize) -> Batch {
        let len = self.data.sample_len();
        let n = self.data.len();
        let first = b * self.batch;
        let mut x = vec![0.0f32; self.batch * len];
        let mut y = vec![0i64; self.batch];
        let fill = |row: usize, (dst, label): (&mut [f32], &mut i64)| {
            let position = first + row;
            let i = match &self.order {
                Some(order) => order[position],
                None => position % n,
            };
            *label = self.data.y[i];
            self.augment.apply(
                &self.data.shape,
                self.data.sample(i),
                dst,
                self.seed,
                self.epoch,
                position,
            );
        };
        if x.len() >= PARALLEL_VALUES && len > 0 {
            x.par_chunks_mut(len)
                .zip(y.par_iter_mut())
                .enumerate()
                .for_each(|(row, pair)| fill(row, pair));
        } else if len > 0 {
            x.chunks_mut(len)
                .zip(y.iter_mut())
                .enumerate()
                .for_each(|(row, pair)| fill(row, pair));
        }
        Batch {
            x,
            y,
            valid: self.batch.min(n - first),
        }
    }
}

/// Batches in a fixed order, built ahead on a worker thread (or here, if
/// no thread could be started).
pub(crate) struct Batches {
    /// Batches still to come.
    remaining: usize,
    source: Source,
}

enum Source {
    Worker {
        rx: Option<Receiver<Batch>>,
        handle: Option<JoinHandle<()>>,
    },
    Inline {
        plan: Arc<Plan>,
        next: usize,
    },
}

impl Batches {
    fn start(plan: Plan, count: usize) -> Batches {
        let (tx, rx) = sync_channel(DEPTH);
        let plan = Arc::new(plan);
        let worker_plan = Arc::clone(&plan);
        let spawned = std::thread::Builder::new()
            .name("pa-onnx-batches".into())
            .spawn(move || {
                for b in 0..count {
                    // A closed channel means the consumer stopped early.
                    if tx.send(worker_plan.build(b)).is_err() {
                        return;
                    }
                }
            });
        let source = match spawned {
            Ok(handle) => Source::Worker {
                rx: Some(rx),
                handle: Some(handle),
            },
            Err(_) => Source::Inline { plan, next: 0 },
        };
        Batches {
            remaining: count,
            source,
        }
    }
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = match &mut self.source {
            Source::Inline { plan, next } => {
                *next += 1;
                plan.build(*next - 1)
            }
            Source::Worker { rx, handle } => match rx.as_ref().map(Receiver::recv) {
                Some(Ok(batch)) => batch,
                _ => {
                    // The worker ended before its last batch: it panicked.
                    rx.take();
                    if let Some(Err(panic)) = handle.take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    self.remaining = 0;
                    return None;
                }
            },
        };
        self.remaining -= 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Source::Worker { rx, handle } = &mut self.source {
            // Disconnect first, so that a worker blocked on a full channel
            // wakes with an error and returns.
            rx.take();
            if let Some(handle) = handle.take() {
                let _ = handle.join();
            }
        }
    }
}

/// One epoch of training batches: samples in a permutation drawn from
/// `(seed, epoch)` alone, augmented with choices drawn from
/// `(seed, epoch, position)`, the last partial batch dropped.
pub(crate) fn train_batches(
    ds: Arc<Dataset>,
    batch: usize,
    seed: u64,
    epoch: u32,
    augment: Augment,
) -> Result<Batches, DataError> {
    augment.check(&ds.shape)?;
    if batch == 0 || batch > ds.len() {
        return Err(DataError::BadOption(format!(
            "batch size {batch} for {} training samples: it must lie in 1..={}",
            ds.len(),
            ds.len()
        )));
    }
    let count = ds.len() / batch;
    let order = rng::permutation(
        ds.len(),
        rng::key(Purpose::Shuffle, &[seed, u64::from(epoch)]),
    );
    let plan = Plan {
        data: ds,
        batch,
        order: Some(order),
        augment,
        seed,
        epoch,
    };
    Ok(Batches::start(plan, count))
}

/// Evaluation batches in the dataset's order; the last one is padded to
/// `batch` rows by repeating the first samples, and says how many rows
/// count in [`Batch::valid`].
pub(crate) fn eval_batches(ds: Arc<Dataset>, batch: usize) -> Result<Batches, DataError> {
    if batch == 0 {
        return Err(DataError::BadOption(
            "the batch size must be at least 1".into(),
        ));
    }
    let count = ds.len().div_ceil(batch);
    let plan = Plan {
        data: ds,
        batch,
        order: None,
        augment: Augment::default(),
        seed: 0,
        epoch: 0,
    };
    Ok(Batches::start(plan, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize, shape: Vec<usize>) -> Arc<Dataset> {
        let len: usize = shape.iter().product();
        Arc::new(Dataset {
            x: (0..n * len).map(|v| v as f32).collect(),
            y: (0..n as i64).collect(),
            shape,
        })
    }

    #[test]
    fn an_epoch_is_a_seeded_permutation_without_the_partial_batch() {
        let ds = dataset(10, vec![2]);
        let a: Vec<Batch> = train_batches(ds.clone(), 3, 7, 0, Augment::default())
            .unwrap()
            .collect();
        assert_eq!(a.len(), 3);
        let b: Vec<Batch> = train_batches(ds.clone(), 3, 7, 0, Augment::default())
            .unwrap()
            .collect();
        assert_eq!(a, b);
        let c: Vec<Batch> = train_batches(ds.clone(), 3, 7, 1, Augment::default())
            .unwrap()
            .collect();
        assert_ne!(a, c);
        let mut seen: Vec<i64> = a.iter().flat_map(|b| b.y.clone()).collect();
        for batch in &a {
            assert_eq!(batch.valid, 3);
            for (row, &label) in batch.y.iter().enumerate() {
                let i = label as usize;
                assert_eq!(batch.x[row * 2..row * 2 + 2], ds.x[i * 2..i * 2 + 2]);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert!(train_batches(ds.clone(), 11, 7, 0, Augment::default()).is_err());
        let flip = Augment {
            flip: true,
            crop_pad: 0,
        };
        assert!(train_batches(ds, 2, 7, 0, flip).is_err());
    }

    #[test]
    fn augmented_epochs_repeat_exactly_and_large_batches_match_small_ones() {
        let ds = dataset(40, vec![3, 16, 16]);
        let aug = Augment {
            flip: true,
            crop_pad: 2,
        };
        let a: Vec<Batch> = train_batches(ds.clone(), 32, 1, 2, aug).unwrap().collect();
        let b: Vec<Batch> = train_batches(ds.clone(), 32, 1, 2, aug).unwrap().collect();
        assert_eq!(a, b);
        // Copied in parallel (32 x 768 values) or not, a row depends only on its position.
        let small: Vec<Batch> = train_batches(ds, 4, 1, 2, aug).unwrap().take(8).collect();
        let rows: Vec<f32> = small.iter().flat_map(|b| b.x.clone()).collect();
        assert_eq!(rows, a[0].x);
    }

    #[test]
    fn evaluation_pads_the_last_batch_with_the_first_samples() {
        let ds = dataset(5, vec![1]);
        let batches: Vec<Batch> = eval_batches(ds.clone(), 2).unwrap().collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].y, vec![0, 1]);
        assert_eq!(batches[2].y, vec![4, 0]);
        assert_eq!(batches[2].x, vec![4.0, 0.0]);
        assert_eq!(
            batches.iter().map(|b| b.valid).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let big: Vec<Batch> = eval_batches(ds, 12).unwrap().collect();
        assert_eq!(big[0].y, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
        assert_eq!(big[0].valid, 5);
    }

    #[test]
    fn dropping_the_iterator_early_stops_the_worker() {
        let ds = dataset(1000, vec![4]);
        let mut it = train_batches(ds, 1, 0, 0, Augment::default()).unwrap();
        assert_eq!(it.len(), 1000);
        assert!(it.next().is_some());
        assert_eq!(it.len(), 999);
        // Joins the worker, which is blocked on a full channel: must not hang.
        drop(it);
    }
}
