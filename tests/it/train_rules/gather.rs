//! Gather: repeated and negative indices accumulate, any axis, and which
//! float tables the automatic choice trains as embeddings.

use super::*;

/// How a Gather test feeds its indices.
#[derive(Clone, Copy, Debug)]
enum Indices {
    /// An int64 graph input.
    Int64Input,
    /// An int32 graph input.
    Int32Input,
    /// An int64 initializer (known while building the graph).
    Constant,
}

/// `Gather(w, idx, axis)` with `w` trainable, on opset 13 (the one-hot
/// rule) and opset 17 (ScatterND with reduction="add").
fn check_gather(what: &str, dims: &[i64], axis: i64, idx_dims: &[i64], idx: &[i64]) {
    let r = dims.len() as i64;
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let d: Vec<usize> = dims.iter().map(|&x| x as usize).collect();
    let out_dims: Vec<usize> = [
        &d[..a],
        &idx_dims.iter().map(|&x| x as usize).collect::<Vec<_>>(),
        &d[a + 1..],
    ]
    .concat();
    let numel: usize = d.iter().product();
    let w = f32s("w", dims, &wave(numel, 3));
    // Output element (p, j, q) is input element (p, idx[j] wrapped, q).
    let (p, v, q) = (
        d[..a].iter().product::<usize>(),
        d[a],
        d[a + 1..].iter().product::<usize>(),
    );
    let n = idx.len();
    let mut map = vec![];
    for pi in 0..p {
        for &i in idx {
            let row = if i < 0 { i + v as i64 } else { i } as usize;
            for qi in 0..q {
                map.push((pi * v + row) * q + qi);
            }
        }
    }
    assert_eq!(map.len(), p * n * q);
    let targets = wave(map.len(), 4);
    let (loss, gw) = selection(w.f32s(), &map, &targets);
    for opset in [13, 17] {
        for how in [Indices::Int64Input, Indices::Int32Input, Indices::Constant] {
            let idx_t = match how {
                Indices::Int32Input => tensor(
                    "idx",
                    idx_dims,
                    Vals::I32(idx.iter().map(|&i| i as i32).collect()),
                ),
                _ => i64s("idx", idx_dims, idx),
            };
            let (inits, inputs) = match how {
                Indices::Constant => (vec![w.clone(), idx_t], vec![]),
                _ => (vec![w.clone()], vec![idx_t]),
            };
            let m = Tiny {
                opset,
                inits,
                inputs,
                nodes: vec![node(
                    "Gather",
                    &["w", "idx"],
                    "y",
                    vec![int_attr("axis", axis)],
                )],
                output: ("y".into(), out_dims.iter().map(|&x| x as i64).collect()),
            };
            check_exact(
                &format!("{what}, opset {opset}, {how:?} indices"),
                &m,
                &["w"],
                &targets,
                loss,
                &[("w", gw.clone())],
            );
        }
    }
}

#[test]
fn gather_embedding_accumulates_repeated_and_negative_indices() {
    // Row 2 is read three times, row 4 also as -1, row 0 also as -5; row 1
    // is never read and must get a zero gradient.
    check_gather(
        "embedding",
        &[5, 3],
        0,
        &[2, 4],
        &[0, 2, -1, 2, 4, -5, 3, 2],
    );
}

#[test]
fn gather_on_axis_one() {
    check_gather("gather axis 1", &[3, 5, 2], 1, &[2, 2], &[1, -1, 1, 0]);
    // A scalar index drops the axis (the first token of a sequence).
    check_gather("gather axis -2, scalar index", &[2, 4, 3], -2, &[], &[0]);
}

/// A whole classifier over an embedding: the table is trained without
/// being named, and its gradient matches finite differences of the loss.
#[test]
fn embedding_table_is_trainable_and_matches_finite_differences() {
    let (batch, seq, vocab, dim, classes) = (4i64, 3i64, 6i64, 4i64, 5i64);
    let ids = i64s(
        "ids",
        &[batch, seq],
        &[0, 5, -1, 2, 2, -6, 1, 3, 0, -2, 2, 1],
    );
    let m = Tiny {
        opset: 17,
        inits: vec![
            f32s(
                "emb",
                &[vocab, dim],
                &wave((vocab * dim) as usize, 5)
                    .iter()
                    .map(|v| 2.0 * v)
                    .collect::<Vec<_>>(),
            ),
            f32s(
                "w",
                &[classes, seq * dim],
                &wave((classes * seq * dim) as usize, 6),
            ),
            f32s("b", &[classes], &wave(classes as usize, 7)),
        ],
        inputs: vec![ids.clone()],
        nodes: vec![
            node("Gather", &["emb", "ids"], "e", vec![]),
            node("Flatten", &["e"], "f", vec![int_attr("axis", 1)]),
            node(
                "Gemm",
                &["f", "w", "b"],
                "logits",
                vec![int_attr("transB", 1)],
            ),
        ],
        output: ("logits".into(), vec![batch, classes]),
    };
    let graph = build_training_graph(&m.encode(), &TrainGraphOptions::default()).unwrap();
    let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["emb", "w", "b"]);
    let labels = HostTensor::new(vec![batch as usize], TensorData::I64(vec![0, 3, 1, 4])).unwrap();
    let params: Vec<Vec<f32>> = graph.params.iter().map(|p| p.init.clone()).collect();
    let data = [ids];
    let mut analytic: Vec<HashMap<String, Vec<f64>>> = vec![];
    for kind in BACKENDS {
        let Some(mut r) = Runner::open(&graph, kind, "embedding classifier") else {
            continue;
        };
        let (_, grads) = r.run(&data, labels.clone(), &params);
        let eps = 1e-2f32;
        for (pi, p) in graph.params.iter().enumerate() {
            let mut fd = vec![0.0; p.init.len()];
            for (k, slot) in fd.iter_mut().enumerate() {
                let mut loss_at = |delta: f32| {
                    let mut moved = params.clone();
                    moved[pi][k] += delta;
                    r.run(&data, labels.clone(), &moved).0
                };
                *slot = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            }
            let err = rel_err(&grads[&p.name], &fd);
            assert!(
                err < 1e-2,
                "{kind}: gradient of {} is {err:.2e} away from finite differences",
                p.name
            );
            eprintln!(
                "embedding classifier on {kind}: {} within {err:.1e} of finite differences",
                p.name
            );
        }
        // Rows 0..6 are all read, so every row of the table has a gradient.
        let g = &grads["emb"];
        for row in 0..vocab as usize {
            let d = dim as usize;
            assert!(g[row * d..(row + 1) * d].iter().any(|&v| v != 0.0));
        }
        analytic.push(grads);
    }
    if let [a, b] = analytic.as_slice() {
        for name in names {
            assert!(rel_err(&a[name], &b[name]) < 1e-5, "{name}: tract vs ORT");
        }
    }
}

/// Float tensors that Gather reads along another axis, or that are not
/// tables, stay frozen unless named.
#[test]
fn only_embedding_tables_become_trainable() {
    let m = Tiny {
        opset: 17,
        inits: vec![
            f32s("w", &[3, 2], &wave(6, 1)),
            f32s("table", &[2, 5], &wave(10, 2)),
            f32s("scales", &[4], &wave(4, 3)),
            i64s("cols", &[2], &[4, 1]),
            i64s("pick", &[2], &[3, 0]),
        ],
        inputs: vec![f32s("x", &[2, 3], &wave(6, 4))],
        nodes: vec![
            node("Gemm", &["x", "w"], "h", vec![]),
            node("Gather", &["table", "cols"], "t", vec![int_attr("axis", 1)]),
            node("Gather", &["scales", "pick"], "s", vec![]),
            node("Mul", &["h", "t"], "ht", vec![]),
            node("Mul", &["ht", "s"], "y", vec![]),
        ],
        output: ("y".into(), vec![2, 2]),
    };
    let opts = TrainGraphOptions {
        loss: LossKind::MeanSquaredError,
        ..Default::default()
    };
    let graph = build_training_graph(&m.encode(), &opts).unwrap();
    let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["w"]);
}
