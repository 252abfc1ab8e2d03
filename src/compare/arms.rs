//! The initial weights of each arm for a seed.
//!
//! Every arm trains the same training graph; only the starting values of
//! its trainable tensors differ. The rewired arm's values are what
//! `pa-onnx rewire --seed s` would write, tensor by tensor, without
//! writing a file: the same per-tensor seeds, the same bytes.

use std::collections::HashMap;
use std::path::Path;

use crate::onnx::{payload, Model};
use crate::plan::{locate, Plan};
use crate::rewire::{view_index, Options};

use super::options::Arm;
use super::record::InitRecord;
use super::CompareError;

/// The model an arm starts from, read once.
pub(crate) struct Source {
    model: Model,
    plan: Plan,
}

/// One arm's starting values for one seed.
pub(crate) struct Init {
    /// New values of the tensors that differ from the model's own.
    pub values: HashMap<String, Vec<f32>>,
    /// What the rewiring did (rewired arms only).
    pub record: Option<InitRecord>,
    /// Each neuron's strength before and after, over the rewired tensors,
    /// in units of the strength's deviation under random placement.
    pub strengths: Option<(Vec<f64>, Vec<f64>)>,
}

/// Tensors larger than this are left out of the strength histograms.
const HISTOGRAM_MAX: u64 = 1 << 22;

impl Source {
    pub(crate) fn open(path: &Path) -> Result<Source, CompareError> {
        let model = Model::open(path)?;
        let plan = locate(&model)?;
        Ok(Source { model, plan })
    }

    /// The starting values of `arm` for `seed`.
    pub(crate) fn init(&self, arm: &Arm, seed: u64) -> Result<Init, CompareError> {
        match arm {
            Arm::Original => Ok(Init {
                values: HashMap::new(),
                record: None,
                strengths: None,
            }),
            Arm::Rewired { method, stabilize } => self.rewired(Options {
                method: *method,
                stabilize: *stabilize,
                seed,
            }),
            Arm::File { path } => from_file(path),
        }
    }

    fn rewired(&self, opts: Options) -> Result<Init, CompareError> {
        let mut values = HashMap::new();
        let (mut before, mut after) = (vec![], vec![]);
        let mut rec = InitRecord {
            tensors: 0,
            variance_before: 0.0,
            variance_after: 0.0,
            row_std: [0.0; 2],
            col_std: [0.0; 2],
        };
        for w in &self.plan.weights {
            let t = &self.model.tensors[w.tensor];
            if t.dtype != crate::onnx::DataType::Float {
                continue;
            }
            let old = f32_values(&self.model, w.tensor)?;
            let (payload, report) = crate::rewire_tensor(&self.model, w, &opts)?;
            let new = f32_le(&payload);
            rec.tensors += 1;
            rec.variance_before += report.before.mean_variance();
            rec.variance_after += report.after.mean_variance();
            rec.row_std[0] += report.before.row_std;
            rec.row_std[1] += report.after.row_std;
            rec.col_std[0] += report.before.col_std;
            rec.col_std[1] += report.after.col_std;
            if t.numel <= HISTOGRAM_MAX {
                let index = view_index(&w.shape, &w.axes);
                let (rows, cols) = (w.rows as usize, w.cols as usize);
                before.extend(relative_strengths(&old, &index, rows, cols));
                after.extend(relative_strengths(&new, &index, rows, cols));
            }
            // Tied copies start from the same permutation, as `rewire`
            // writes them.
            for c in self
                .plan
                .tie_of(w.tensor)
                .into_iter()
                .flat_map(|g| g.copies())
            {
                let copy = crate::plan::copy_payload(&w.shape, c, &payload);
                values.insert(c.name.clone(), f32_le(&copy));
            }
            values.insert(w.name.clone(), new);
        }
        if rec.tensors > 0 {
            let n = rec.tensors as f64;
            for pair in [&mut rec.row_std, &mut rec.col_std] {
                pair[0] /= n;
                pair[1] /= n;
            }
        }
        Ok(Init {
            values,
            record: Some(rec),
            strengths: Some((before, after)),
        })
    }
}

/// A float32 tensor's values in storage order.
fn f32_values(model: &Model, index: usize) -> Result<Vec<f32>, CompareError> {
    let t = &model.tensors[index];
    let bytes = model.payload(t)?;
    let elems = payload::elements(t, &bytes)?;
    Ok((0..elems.len())
        .map(|i| f32::from_bits(elems.get(i) as u32))
        .collect())
}

/// Row sums of the matrix view divided by what their deviation would be
/// with the same values placed at random (the values' deviation times the
/// square root of the row length), so layers of any size share one scale.
fn relative_strengths(vals: &[f32], index: &[u32], rows: usize, cols: usize) -> Vec<f64> {
    let wide: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
    let mean = wide.iter().sum::<f64>() / wide.len() as f64;
    let scale = (crate::stats::variance(&wide) * cols as f64).sqrt();
    if scale.is_nan() || scale <= 0.0 {
        return vec![];
    }
    (0..rows)
        .map(|r| {
            let s: f64 = index[r * cols..(r + 1) * cols]
                .iter()
                .map(|&i| wide[i as usize])
                .sum();
            (s - mean * cols as f64) / scale
        })
        .collect()
}

/// Every float32 initializer of a fixed starting model, by name.
fn from_file(path: &Path) -> Result<Init, CompareError> {
    let model = Model::open(path)?;
    let mut values = HashMap::new();
    for (i, t) in model.tensors.iter().enumerate() {
        if t.dtype == crate::onnx::DataType::Float && !t.name.is_empty() {
            values.insert(t.name.clone(), f32_values(&model, i)?);
        }
    }
    Ok(Init {
        values,
        record: None,
        strengths: None,
    })
}

impl Source {
    /// Writes the original model with `tensors` (trained values, by name)
    /// in place of its own: every other byte stays as it was.
    pub(crate) fn save(
        &self,
        path: &Path,
        tensors: &[(String, Vec<f32>)],
    ) -> Result<(), CompareError> {
        let mut patches = vec![];
        for (name, values) in tensors {
            let found = self.model.tensors.iter().position(|t| {
                t.name == *name
                    && t.dtype == crate::onnx::DataType::Float
                    && t.numel == values.len() as u64
            });
            let Some(i) = found else {
                continue;
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            patches.push((i, bytes));
        }
        crate::onnx::patch::write_patched(&self.model, path, &patches, Default::default())?;
        Ok(())
    }
}

/// Little-endian f32 payload bytes as values.
fn f32_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
