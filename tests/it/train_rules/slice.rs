//! Slice with steps other than 1 (negative ones included), and the
//! malformed slices and axes the builder must refuse rather than panic on.

use super::*;

/// The model `y = Slice(w, starts, ends, axes, steps)` with output `[out]`.
fn slice_model(
    w: Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
    out: Vec<i64>,
) -> Tiny {
    let k = starts.len() as i64;
    Tiny {
        opset: 13,
        inits: vec![
            w,
            i64s("starts", &[k], starts),
            i64s("ends", &[k], ends),
            i64s("axes", &[k], axes),
            i64s("steps", &[k], steps),
        ],
        inputs: vec![],
        nodes: vec![node(
            "Slice",
            &["w", "starts", "ends", "axes", "steps"],
            "y",
            vec![],
        )],
        output: ("y".into(), out),
    }
}

/// `Slice(w, starts, ends, axes, steps)` of a `[dims]` parameter, checked
/// against `positions`: for every axis of the input, the positions the
/// output reads along it, worked out by hand from the ONNX definition.
fn check_slice(
    what: &str,
    dims: &[i64],
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
    positions: &[Vec<usize>],
) {
    let numel = dims.iter().product::<i64>() as usize;
    let w = f32s("w", dims, &wave(numel, 1));
    let out_dims: Vec<usize> = positions.iter().map(Vec::len).collect();
    let out: Vec<i64> = out_dims.iter().map(|&d| d as i64).collect();
    let m = slice_model(w.clone(), starts, ends, axes, steps, out);
    let in_st = strides(&dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
    let map: Vec<usize> = indices(&out_dims)
        .iter()
        .map(|o| {
            o.iter()
                .enumerate()
                .map(|(a, &i)| positions[a][i] * in_st[a])
                .sum()
        })
        .collect();
    let targets = wave(map.len(), 2);
    let (loss, gw) = selection(w.f32s(), &map, &targets);
    check_exact(what, &m, &["w"], &targets, loss, &[("w", gw)]);
}

#[test]
fn slice_with_negative_steps() {
    // Both axes backwards: every row from the last (end INT64_MIN clamps
    // to "before the first"), then columns 4 and 2 (step -2, end 0 excluded).
    check_slice(
        "slice [-1:MIN:-1, 4:0:-2]",
        &[5, 6],
        &[-1, 4],
        &[i64::MIN, 0],
        &[0, 1],
        &[-1, -2],
        &[vec![4, 3, 2, 1, 0], vec![4, 2]],
    );
    // A start past the end clamps to the last position; negative end and axis.
    check_slice(
        "slice [:, 10:-5:-3]",
        &[3, 6],
        &[10],
        &[-5],
        &[-1],
        &[-3],
        &[vec![0, 1, 2], vec![5, 2]],
    );
}

#[test]
fn slice_with_step_two_on_two_axes() {
    // Steps 2 and 3 on the last two axes, a step-1 crop of the first (the
    // Pad part of the rule), an INT64_MAX end and negative axes.
    check_slice(
        "slice [1:2, 1:7:2, 0:MAX:3]",
        &[2, 7, 8],
        &[1, 1, 0],
        &[2, 7, i64::MAX],
        &[-3, 1, -1],
        &[1, 2, 3],
        &[vec![1], vec![1, 3, 5], vec![0, 3, 6]],
    );
    check_slice(
        "slice [::2, ::2]",
        &[4, 5],
        &[0, 0],
        &[4, 5],
        &[0, 1],
        &[2, 2],
        &[vec![0, 2], vec![0, 2, 4]],
    );
}

/// A zero step is invalid ONNX: the builder says so instead of dividing by it.
#[test]
fn slice_with_step_zero_is_an_error() {
    let w = f32s("w", &[4], &wave(4, 1));
    let m = slice_model(w, &[0], &[4], &[0], &[0], vec![4]);
    let err = refusal(&m);
    assert!(err.contains("step"), "{err}");
}

/// An axis outside the input's rank is invalid too: an error, not a panic.
#[test]
fn slice_with_an_axis_out_of_range_is_an_error() {
    for axis in [1, -2] {
        let w = f32s("w", &[4], &wave(4, 1));
        let m = slice_model(w, &[0], &[4], &[axis], &[1], vec![4]);
        let err = refusal(&m);
        assert!(err.contains("out of range"), "{err}");
    }
}

/// Axes that are out of range or repeated, on the operators whose shapes
/// the builder works out: an error naming the problem, never a panic.
#[test]
fn malformed_axes_are_errors() {
    let w = || f32s("w", &[2, 3], &wave(6, 2));
    let tiny = |nodes, inits: Vec<Tensor>| Tiny {
        opset: 13,
        inits: [vec![w()], inits].concat(),
        inputs: vec![],
        nodes: vec![nodes],
        output: ("y".into(), vec![6]),
    };
    let cases = [
        (
            "repeat",
            tiny(
                node("Unsqueeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[2], &[0, 0])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Unsqueeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[7])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Squeeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[-3])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Concat", &["w", "w"], "y", vec![int_attr("axis", 2)]),
                vec![],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Flatten", &["w"], "y", vec![int_attr("axis", 3)]),
                vec![],
            ),
        ),
        (
            "out of range",
            tiny(
                node("ReduceSum", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[-5])],
            ),
        ),
        (
            "pads",
            tiny(
                node("Pad", &["w", "pads"], "y", vec![]),
                vec![i64s("pads", &[3], &[0, 1, 0])],
            ),
        ),
    ];
    for (want, m) in cases {
        let err = refusal(&m);
        assert!(err.contains(want), "{err}");
    }
}
