//! Max and Min with any number of inputs, broadcasting, and ties sharing
//! an element's gradient.

use super::*;

/// `op` (Max or Min) over `ins`, broadcast to `out_dims`, checked against
/// the rule's convention: k tied inputs share an element's gradient equally.
/// The first `data` inputs are fed as data, the others are trained.
fn check_extremum(
    what: &str,
    op: &str,
    opset: i64,
    ins: &[Tensor],
    data: usize,
    out_dims: &[usize],
) {
    let pick = |a: f32, b: f32| if op == "Max" { a.max(b) } else { a.min(b) };
    let outs = indices(out_dims);
    let n = outs.len() as f64;
    // For every output element, the flat index it reads in each input.
    let maps: Vec<Vec<usize>> = ins
        .iter()
        .map(|t| {
            let d: Vec<usize> = t.dims.iter().map(|&x| x as usize).collect();
            let st = strides(&d);
            let lead = out_dims.len() - d.len();
            outs.iter()
                .map(|o| {
                    (0..d.len())
                        .map(|k| if d[k] == 1 { 0 } else { o[lead + k] * st[k] })
                        .sum()
                })
                .collect()
        })
        .collect();
    let targets = wave(outs.len(), 8);
    let mut loss = 0.0;
    let mut grads: Vec<Vec<f64>> = ins.iter().map(|t| vec![0.0; t.f32s().len()]).collect();
    for o in 0..outs.len() {
        let vals: Vec<f32> = ins.iter().zip(&maps).map(|(t, m)| t.f32s()[m[o]]).collect();
        let y = vals.iter().copied().reduce(pick).unwrap();
        let diff = y as f64 - targets[o] as f64;
        loss += diff * diff / n;
        let gy = 2.0 * diff / n;
        let ties = vals.iter().filter(|&&v| v == y).count() as f64;
        for (i, &v) in vals.iter().enumerate() {
            if v == y {
                grads[i][maps[i][o]] += gy / ties;
            }
        }
    }
    let names: Vec<&str> = ins.iter().map(|t| t.name.as_str()).collect();
    let m = Tiny {
        opset,
        inits: ins[data..].to_vec(),
        inputs: ins[..data].to_vec(),
        nodes: vec![node(op, &names, "y", vec![])],
        output: ("y".into(), out_dims.iter().map(|&d| d as i64).collect()),
    };
    let want: Vec<(&str, Vec<f64>)> = names[data..]
        .iter()
        .copied()
        .zip(grads.into_iter().skip(data))
        .collect();
    check_exact(what, &m, &names[data..], &targets, loss, &want);
}

#[test]
fn max_of_three_inputs_with_broadcasting() {
    // [2, 3], [3] and [2, 1] broadcast together. Ties: all three at [0, 0],
    // a and c at [1, 0].
    let a = f32s("a", &[2, 3], &[0.5, -1.0, 2.0, 1.5, 0.25, -0.5]);
    let b = f32s("b", &[3], &[0.5, 0.75, -2.0]);
    let c = f32s("c", &[2, 1], &[0.5, 1.5]);
    check_extremum("Max(a, b, c)", "Max", 13, &[a, b, c], 0, &[2, 3]);
    // A fourth input, fed as data, that wins one element.
    let x = f32s("x", &[2, 3], &[-3.0, -1.0, 2.5, -4.0, -3.5, -5.0]);
    let a = f32s("a", &[2, 3], &[0.5, -1.0, 2.0, 1.5, 0.25, -0.5]);
    let b = f32s("b", &[3], &[0.5, 0.75, -2.0]);
    let c = f32s("c", &[2, 1], &[0.5, 1.5]);
    check_extremum("Max(x, a, b, c)", "Max", 17, &[x, a, b, c], 1, &[2, 3]);
}

#[test]
fn min_of_three_inputs_with_a_data_input_in_the_ties() {
    // x is data (needs no gradient) but still takes its share of a tie:
    // with w at [0, 1], with v at [1, 0].
    let x = f32s("x", &[2, 3], &[1.0, -0.5, 0.25, 0.0, 2.0, -1.0]);
    let w = f32s("w", &[3], &[0.5, -0.5, 0.75]);
    let v = f32s("v", &[1], &[0.0]);
    check_extremum("Min(x, w, v)", "Min", 17, &[x, w, v], 1, &[2, 3]);
}

#[test]
fn max_of_two_inputs_splits_ties() {
    let x = f32s("x", &[4], &[1.0, 2.0, -1.0, 0.5]);
    let w = f32s("w", &[4], &[1.0, 1.0, -1.0, 0.75]);
    check_extremum("Max(x, w)", "Max", 13, &[x, w], 1, &[4]);
    // Rank 3 against a rank-1 parameter: the gradient is summed over the
    // broadcast axes.
    let x = f32s("x", &[2, 2, 3], &wave(12, 9));
    let w = f32s("w", &[3], &[0.0, -0.25, 0.5]);
    check_extremum("Min(x[2,2,3], w[3])", "Min", 13, &[x, w], 1, &[2, 2, 3]);
}
