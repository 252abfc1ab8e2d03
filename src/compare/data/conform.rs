//! Fitting what a reader delivered to the model, and making the splits.
//!
//! Data and model disagree in ways that have one obvious reading (a flat
//! `[64]` sample for a `[1, 8, 8]` input, NHWC images for an NCHW model)
//! and in ways that have none (a different number of values, a label the
//! model has no output for, a NaN). The first are fixed here and said in
//! the description, so the report shows what was done; the second are
//! errors, raised before anything trains.

use rayon::prelude::*;

use super::rng::{self, Purpose};
use super::{DataError, DataOptions, Dataset, RawData, RawSplit, Splits};

/// Fits every split to the model, holds out a test split where the data
/// has none, applies `limit`, and describes the result.
pub(super) fn finish(raw: RawData, opts: &DataOptions) -> Result<Splits, DataError> {
    let mut notes = raw.notes;
    let (train, note) = fit(raw.train, opts)?;
    notes.extend(note);
    let (mut train, test, split_note) = match raw.test {
        Some(test) => {
            let (test, note) = fit(test, opts)?;
            notes.extend(note);
            (train, test, "its own test split".to_string())
        }
        None => {
            let (train, test) = hold_out(&train, &raw.name, opts)?;
            let percent = format!("{:.1}", opts.test_fraction * 100.0);
            let percent = percent.trim_end_matches(".0");
            let note = format!("held out {percent}%, seed {}", opts.seed);
            (train, test, note)
        }
    };
    if let Some(limit) = opts.limit {
        if limit == 0 {
            return Err(DataError::BadOption(
                "the training-sample limit must be at least 1".into(),
            ));
        }
        if limit < train.len() {
            notes.push(format!(
                "training limited to {limit} of {} samples, seed {}",
                train.len(),
                opts.seed
            ));
            let mut keep = rng::permutation(train.len(), rng::key(Purpose::Limit, &[opts.seed]));
            keep.truncate(limit);
            keep.sort_unstable();
            train = train.select(&keep);
        }
    }
    notes.dedup();
    let mut description = format!(
        "{}: {} train / {} test ({split_note})",
        raw.name,
        train.len(),
        test.len()
    );
    for note in &notes {
        description.push_str("; ");
        description.push_str(note);
    }
    Ok(Splits {
        train,
        test,
        description,
        test_held_out: split_note.starts_with("held out"),
        class_names: raw.class_names,
    })
}

/// Checks one split against the model and gives it the model's sample
/// shape; the note says what was changed, if anything.
pub(super) fn fit(
    split: RawSplit,
    opts: &DataOptions,
) -> Result<(Dataset, Option<String>), DataError> {
    let RawSplit {
        origin,
        x,
        shape,
        y,
    } = split;
    let stored_len: usize = shape.iter().product();
    let n = x.len().checked_div(stored_len).unwrap_or(0);
    if stored_len == 0 && !y.is_empty() {
        return Err(DataError::ShapeMismatch {
            origin,
            data: shape,
            model: opts.sample_shape.clone(),
        });
    }
    if n != y.len() {
        return Err(DataError::CountMismatch {
            origin,
            x: n,
            y: y.len(),
        });
    }
    if n == 0 {
        return Err(DataError::Empty { origin });
    }
    let target = &opts.sample_shape;
    let (x, note) = if &shape == target {
        (x, None)
    } else if is_hwc_of(&shape, target) {
        let note =
            format!("samples transposed from HWC {shape:?} to CHW {target:?} (NHWC to NCHW)");
        (hwc_to_chw(&x, &shape), Some(note))
    } else if stored_len == target.iter().product::<usize>() {
        (
            x,
            Some(format!("samples reshaped from {shape:?} to {target:?}")),
        )
    } else {
        return Err(DataError::ShapeMismatch {
            origin,
            data: shape,
            model: target.clone(),
        });
    };
    if let Some((index, &label)) = y
        .iter()
        .enumerate()
        .find(|(_, &l)| l < 0 || l as u64 >= opts.classes as u64)
    {
        return Err(DataError::LabelOutOfRange {
            origin,
            index,
            label,
            classes: opts.classes,
        });
    }
    if let Some(at) = x.par_iter().position_first(|v| !v.is_finite()) {
        return Err(DataError::NonFinite {
            origin,
            index: at / stored_len,
            value: x[at],
        });
    }
    let dataset = Dataset {
        x,
        y,
        shape: target.clone(),
    };
    Ok((dataset, note))
}

/// True when `shape` is `target`'s `[C, H, W]` stored as `[H, W, C]`, with
/// `C` a channel count images have (1 or 3).
fn is_hwc_of(shape: &[usize], target: &[usize]) -> bool {
    matches!(
        (shape, target),
        ([h, w, c], [tc, th, tw]) if c == tc && h == th && w == tw && (*c == 1 || *c == 3)
    )
}

/// Every `[H, W, C]` sample of `x` rearranged as `[C, H, W]`.
fn hwc_to_chw(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let (h, w, c) = (shape[0], shape[1], shape[2]);
    let len = h * w * c;
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(len)
        .zip(x.par_chunks(len))
        .for_each(|(dst, src)| {
            for (p, pixel) in src.chunks_exact(c).enumerate() {
                for (ch, &v) in pixel.iter().enumerate() {
                    dst[ch * h * w + p] = v;
                }
            }
        });
    out
}

/// Splits `data` into training and test samples: `ceil(n * fraction)`
/// samples drawn by the data seed are held out, both parts keep the
/// original order.
fn hold_out(
    data: &Dataset,
    name: &str,
    opts: &DataOptions,
) -> Result<(Dataset, Dataset), DataError> {
    let n = data.len();
    let n_test = ((n as f64 * opts.test_fraction).ceil() as usize).clamp(1, n.max(1));
    if n_test >= n {
        return Err(DataError::BadOption(format!(
            "{name}: {n} samples and no test split: too few to hold out {} for testing",
            opts.test_fraction
        )));
    }
    let order = rng::permutation(n, rng::key(Purpose::HoldOut, &[opts.seed]));
    let mut test: Vec<usize> = order[..n_test].to_vec();
    let mut train: Vec<usize> = order[n_test..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    Ok((data.select(&train), data.select(&test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(x: Vec<f32>, shape: Vec<usize>, y: Vec<i64>) -> RawSplit {
        RawSplit {
            origin: "t.npz (train)".into(),
            x,
            shape,
            y,
        }
    }

    #[test]
    fn flat_samples_are_reshaped_and_nhwc_transposed() {
        let opts = DataOptions::new(vec![1, 2, 2], 3);
        let (ds, note) = fit(split(vec![0., 1., 2., 3.], vec![4], vec![2]), &opts).unwrap();
        assert_eq!(ds.shape, vec![1, 2, 2]);
        assert!(note.unwrap().contains("reshaped from [4] to [1, 2, 2]"));

        let opts = DataOptions::new(vec![3, 1, 2], 3);
        // One 1x2 image, pixels (r, g, b) = (1, 2, 3) and (4, 5, 6).
        let raw = split(vec![1., 2., 3., 4., 5., 6.], vec![1, 2, 3], vec![0]);
        let (ds, note) = fit(raw, &opts).unwrap();
        assert_eq!(ds.x, vec![1., 4., 2., 5., 3., 6.]);
        assert!(note.unwrap().contains("NHWC to NCHW"));
    }

    #[test]
    fn a_mismatch_in_shape_count_label_or_value_is_refused() {
        let opts = DataOptions::new(vec![3], 2);
        let err = fit(split(vec![0.; 4], vec![4], vec![0]), &opts).unwrap_err();
        assert!(
            matches!(&err, DataError::ShapeMismatch { data, model, .. } if data == &[4] && model == &[3]),
            "{err:?}"
        );
        let err = fit(split(vec![0.; 6], vec![3], vec![0]), &opts).unwrap_err();
        assert!(
            matches!(err, DataError::CountMismatch { x: 2, y: 1, .. }),
            "{err:?}"
        );
        let err = fit(split(vec![0.; 9], vec![3], vec![0, 1, 2]), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.npz (train): label 2 (sample 2) is outside the model's 2 outputs (0..2)"
        );
        assert!(err.hint().unwrap().contains("0..2"));
        let err = fit(
            split(vec![0., 0., 0., 1., f32::NAN, 0.], vec![3], vec![0, 1]),
            &opts,
        )
        .unwrap_err();
        assert!(
            matches!(err, DataError::NonFinite { index: 1, .. }),
            "{err:?}"
        );
        let err = fit(split(vec![], vec![3], vec![]), &opts).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    }

    #[test]
    fn the_held_out_split_is_seeded_and_described() {
        let x: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let raw = |name: &str| RawData {
            name: name.into(),
            train: split(x.clone(), vec![1], (0..10).map(|v| v % 2).collect()),
            test: None,
            notes: vec![],
            class_names: None,
        };
        let mut opts = DataOptions::new(vec![1], 2);
        opts.test_fraction = 0.25;
        let a = finish(raw("d.npz"), &opts).unwrap();
        assert_eq!((a.train.len(), a.test.len()), (7, 3));
        assert!(a.test_held_out);
        assert_eq!(
            a.description,
            "d.npz: 7 train / 3 test (held out 25%, seed 0)"
        );
        let b = finish(raw("d.npz"), &opts).unwrap();
        assert_eq!(a.test.x, b.test.x);
        let mut all: Vec<f32> = a.train.x.iter().chain(&a.test.x).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, x);
        opts.seed = 1;
        opts.limit = Some(4);
        let c = finish(raw("d.npz"), &opts).unwrap();
        assert_ne!(a.test.x, c.test.x);
        assert_eq!(c.train.len(), 4);
        assert!(c
            .description
            .ends_with("training limited to 4 of 7 samples, seed 1"));
    }
}
