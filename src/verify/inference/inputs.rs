//! What the two models are fed: the user's arrays from a `.npz` file, or
//! random values that anyone can reproduce from the seed.
//!
//! Random inputs must not depend on anything but the seed and the input's
//! own name (ChaCha8, one stream per input name), so that a report can be
//! reproduced elsewhere, and adding an input to a model changes no other
//! input's values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::report::InputSummary;
use crate::backend::{HostTensor, IoSpec, TensorData};
use crate::npz::{self, NpzError};

/// Why the models cannot be fed; it stops the whole comparison.
#[derive(Debug, thiserror::Error)]
pub(super) enum InputError {
    #[error("cannot read inputs file {}: {cause}", path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("inputs file {}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: NpzError },
    #[error("the inputs file has an array `{name}`, but the model's inputs are: {known}")]
    UnknownArray { name: String, known: String },
    #[error("input `{input}`: the inputs file gives {given}, the model expects {expected}")]
    WrongType {
        input: String,
        given: String,
        expected: String,
    },
    #[error("the inputs file has no array for input `{0}`")]
    MissingArray(String),
    /// The input's shape cannot be settled (the message names the input).
    #[error("{0}")]
    Shape(String),
    #[error(
        "input `{input}` has type {dtype}, for which pa-onnx cannot make random values; give inputs in a .npz file"
    )]
    NoRandomValues { input: String, dtype: String },
    /// The values do not fill the shape (the tensor's own check).
    #[error(transparent)]
    Tensor(#[from] crate::backend::ShapeMismatch),
}

/// The arrays of the user's `.npz` file, under their keys.
pub(super) fn read_inputs(path: &Path) -> Result<Vec<(String, HostTensor)>, InputError> {
    npz::read(path).map_err(|e| match e {
        NpzError::Io(cause) => InputError::Unreadable {
            path: path.to_path_buf(),
            cause,
        },
        problem => InputError::Invalid {
            path: path.to_path_buf(),
            problem,
        },
    })
}

/// Named input tensors, in the model's order.
type Feed = Vec<(String, HostTensor)>;

/// The inputs to feed, from the user's file or random, with their summaries.
pub(super) fn make_inputs(
    specs: &[IoSpec],
    user: Option<&[(String, HostTensor)]>,
    shapes: &HashMap<String, Vec<usize>>,
    seed: u64,
) -> Result<(Feed, Vec<InputSummary>), InputError> {
    let mut inputs = Vec::with_capacity(specs.len());
    let mut summaries = Vec::with_capacity(specs.len());
    if let Some(user) = user {
        for (name, _) in user {
            if !specs.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(InputError::UnknownArray {
                    name: name.clone(),
                    known: known.join(", "),
                });
            }
        }
    }
    for spec in specs {
        let (tensor, source) = match user.and_then(|u| u.iter().find(|(n, _)| n == &spec.name)) {
            Some((_, t)) => {
                if t.dtype() != spec.dtype {
                    return Err(InputError::WrongType {
                        input: spec.name.clone(),
                        given: t.dtype().to_string(),
                        expected: spec.dtype.clone(),
                    });
                }
                (t.clone(), "npz")
            }
            None if user.is_some() => {
                return Err(InputError::MissingArray(spec.name.clone()));
            }
            None => {
                let shape = spec
                    .resolve_shape(shapes)
                    .map_err(|e| InputError::Shape(e.to_string()))?;
                (random_input(spec, shape, seed)?, "random")
            }
        };
        summaries.push(InputSummary {
            name: spec.name.clone(),
            shape: tensor.shape.clone(),
            dtype: tensor.dtype().to_string(),
            source,
        });
        inputs.push((spec.name.clone(), tensor));
    }
    Ok((inputs, summaries))
}

/// A reproducible random tensor: standard normal for floats, uniform in
/// [0, 8) for integers (safe as indices into any small axis), fair coins for
/// bools. Each input has its own stream, so adding an input changes no other.
fn random_input(spec: &IoSpec, shape: Vec<usize>, seed: u64) -> Result<HostTensor, InputError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let digest = Sha256::digest(spec.name.as_bytes());
    let mut stream = [0u8; 8];
    stream.copy_from_slice(&digest[..8]);
    rng.set_stream(u64::from_le_bytes(stream));
    let n: usize = shape.iter().product();
    let data = match spec.dtype.as_str() {
        "f32" => TensorData::F32(normals(&mut rng, n).map(|x| x as f32).collect()),
        "f64" => TensorData::F64(normals(&mut rng, n).collect()),
        "f16" => TensorData::F16(normals(&mut rng, n).map(half::f16::from_f64).collect()),
        "i64" => TensorData::I64((0..n).map(|_| rng.random_range(0..8i64)).collect()),
        "i32" => TensorData::I32((0..n).map(|_| rng.random_range(0..8i32)).collect()),
        "bool" => TensorData::Bool((0..n).map(|_| rng.random_bool(0.5)).collect()),
        other => {
            return Err(InputError::NoRandomValues {
                input: spec.name.clone(),
                dtype: other.to_string(),
            })
        }
    };
    HostTensor::new(shape, data).map_err(InputError::Tensor)
}

/// Standard normal samples by the Box-Muller transform (both halves used).
fn normals(rng: &mut ChaCha8Rng, n: usize) -> impl Iterator<Item = f64> + '_ {
    let mut spare: Option<f64> = None;
    (0..n).map(move |_| {
        if let Some(z) = spare.take() {
            return z;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        spare = Some(r * theta.sin());
        r * theta.cos()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::std_dev;

    #[test]
    fn random_inputs_are_reproducible_and_per_name() {
        let spec = |name: &str, dtype: &str| IoSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape: vec![Some(1000)],
            dim_names: vec![None],
            ranked: true,
        };
        let a = random_input(&spec("x", "f32"), vec![1000], 7).unwrap();
        let b = random_input(&spec("x", "f32"), vec![1000], 7).unwrap();
        let c = random_input(&spec("y", "f32"), vec![1000], 7).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v = a.to_f64();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.15, "mean {mean}");
        assert!((std_dev(&v) - 1.0).abs() < 0.1);
        let ids = random_input(&spec("ids", "i64"), vec![1000], 7)
            .unwrap()
            .to_f64();
        assert!(ids.iter().all(|&x| (0.0..8.0).contains(&x)));
        assert!(random_input(&spec("s", "string"), vec![1], 7).is_err());
    }
}
