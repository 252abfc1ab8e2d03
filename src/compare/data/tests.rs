//! End-to-end checks of `--data`: text to spec to fitted splits, for every
//! format, and the errors a user meets first.

use std::path::Path;
use std::sync::Arc;

use super::batches::Batch;
use super::cifar::tests::records;
use super::idx::tests::{gzip, idx_u8};
use super::*;
use crate::npz::tests::{npy, zip};

fn spec(text: &Path) -> DataSpec {
    text.to_str().unwrap().parse().unwrap()
}

/// A digits-like `.npz`: `n` flat samples of 64 float64 values, labels
/// cycling through 10 classes.
fn digits(path: &Path, n: usize, label_shift: i64) {
    let x: Vec<u8> = (0..n * 64)
        .flat_map(|v| ((v % 17) as f64).to_le_bytes())
        .collect();
    let y: Vec<u8> = (0..n as i64)
        .flat_map(|v| (v % 10 + label_shift).to_le_bytes())
        .collect();
    let file = zip(&[
        ("data.npy", npy("<f8", &format!("({n}, 64)"), &x)),
        ("target.npy", npy("<i8", &format!("({n},)"), &y)),
    ]);
    std::fs::write(path, file).unwrap();
}

#[test]
fn each_format_is_detected_from_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let npz = d.join("digits.npz");
    digits(&npz, 4, 0);
    assert_eq!(spec(&npz), DataSpec::Npz(npz.clone()));

    let mnist = d.join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    std::fs::write(
        mnist.join("train-images-idx3-ubyte.gz"),
        gzip(&idx_u8(&[1, 1, 1], &[0])),
    )
    .unwrap();
    std::fs::write(
        mnist.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_u8(&[1], &[0])),
    )
    .unwrap();
    assert_eq!(spec(&mnist), DataSpec::Idx(mnist.clone()));

    let cifar = d.join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), records(&[&[0]], 0)).unwrap();
    assert_eq!(spec(&cifar), DataSpec::Cifar(cifar.clone()));

    let photos = d.join("photos");
    std::fs::create_dir_all(photos.join("a")).unwrap();
    image::GrayImage::new(2, 2)
        .save(photos.join("a/x.png"))
        .unwrap();
    assert_eq!(spec(&photos), DataSpec::Images(photos.clone()));

    let (x, y) = (d.join("x.npy"), d.join("y.npy"));
    std::fs::write(&x, npy("<f4", "(1, 1)", &[0; 4])).unwrap();
    std::fs::write(&y, npy("<i8", "(1,)", &[0; 8])).unwrap();
    let pair: DataSpec = format!("{},{}", x.display(), y.display()).parse().unwrap();
    assert_eq!(
        pair,
        DataSpec::Npy {
            x: x.clone(),
            y: y.clone(),
            test: None
        }
    );
    assert_eq!(pair.to_string().parse::<DataSpec>().unwrap(), pair);

    assert_eq!(
        "synthetic".parse::<DataSpec>().unwrap(),
        DataSpec::Synthetic(SyntheticTask::Patterns)
    );
    assert_eq!(
        "synthetic:patterns"
            .parse::<DataSpec>()
            .unwrap()
            .to_string(),
        "synthetic:patterns"
    );
    let forced: DataSpec = format!("images:{}", photos.display()).parse().unwrap();
    assert_eq!(forced, DataSpec::Images(photos));

    let err = x.to_str().unwrap().parse::<DataSpec>().unwrap_err();
    assert!(err.to_string().contains("X.npy,Y.npy"), "{err}");
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = empty.to_str().unwrap().parse::<DataSpec>().unwrap_err();
    assert!(matches!(err, DataError::UnknownFormat { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("synthetic"));
    let err = d
        .join("nope.npz")
        .to_str()
        .unwrap()
        .parse::<DataSpec>()
        .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_digits_npz_is_reshaped_held_out_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.npz");
    digits(&path, 50, 0);
    let opts = DataOptions::new(vec![1, 8, 8], 10);
    let splits = load(&spec(&path), &opts).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (40, 10));
    assert_eq!(splits.train.shape, vec![1, 8, 8]);
    assert!(splits.test_held_out);
    assert_eq!(
        splits.description,
        "digits.npz: 40 train / 10 test (held out 20%, seed 0); samples reshaped from [64] to [1, 8, 8]"
    );
    let again = load(&spec(&path), &opts).unwrap();
    assert_eq!(splits.test, again.test);
}

#[test]
fn data_that_does_not_fit_the_model_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.npz");
    digits(&path, 20, 1);
    let err = load(&spec(&path), &DataOptions::new(vec![64], 10)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "digits.npz: label 10 (sample 9) is outside the model's 10 outputs (0..10)"
    );
    let err = load(&spec(&path), &DataOptions::new(vec![3, 8, 8], 11)).unwrap_err();
    assert!(
        matches!(&err, DataError::ShapeMismatch { data, model, .. } if data == &[64] && model == &[3, 8, 8]),
        "{err:?}"
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(&spec(&path), &DataOptions::new(vec![64], 11)).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn nhwc_images_are_transposed_for_an_nchw_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgb.npz");
    // Two 2x2 RGB images, NHWC, uint8.
    let x: Vec<u8> = (0..24).map(|v| v * 10).collect();
    let file = zip(&[
        ("x_train.npy", npy("|u1", "(2, 2, 2, 3)", &x)),
        ("y_train.npy", npy("|u1", "(2,)", &[0, 1])),
        ("x_test.npy", npy("|u1", "(2, 2, 2, 3)", &x)),
        ("y_test.npy", npy("|u1", "(2,)", &[1, 0])),
    ]);
    std::fs::write(&path, file).unwrap();
    let splits = load(&spec(&path), &DataOptions::new(vec![3, 2, 2], 2)).unwrap();
    assert!(!splits.test_held_out);
    assert!(
        splits.description.contains("(NHWC to NCHW)"),
        "{}",
        splits.description
    );
    // Red of the first image: pixels 0..4 at offsets 0, 3, 6, 9.
    assert_eq!(
        splits.train.x[..4],
        [0.0, 30.0 / 255.0, 60.0 / 255.0, 90.0 / 255.0]
    );
}

#[test]
fn synthetic_data_feeds_normalised_batches() {
    let mut opts = DataOptions::new(vec![1, 8, 8], 4);
    opts.synthetic_size = (64, 16);
    let mut splits = load(&"synthetic".parse().unwrap(), &opts).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (64, 16));
    assert!(splits
        .description
        .starts_with("synthetic:patterns: 64 train / 16 test (its own test split)"));
    let norm = Normalizer::fit(&splits.train);
    norm.apply(&mut splits.train).unwrap();
    norm.apply(&mut splits.test).unwrap();
    let train = Arc::new(splits.train);
    let aug = Augment {
        flip: true,
        crop_pad: 1,
    };
    let first: Vec<Batch> = train_batches(train.clone(), 16, 3, 0, aug)
        .unwrap()
        .collect();
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].x.len(), 16 * 64);
    let test = Arc::new(splits.test);
    let eval: Vec<Batch> = eval_batches(test, 10).unwrap().collect();
    assert_eq!(eval.iter().map(|b| b.valid).sum::<usize>(), 16);
}
