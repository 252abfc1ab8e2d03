//! Exactness: an identity write is byte-identical, a rewrite changes only
//! the payloads of rewired weights, on every committed model and on fixtures
//! carrying every kind of field an exporter may write.

use std::path::{Path, PathBuf};

use pa_onnx::onnx::patch::{write_patched, WriteOptions};
use pa_onnx::onnx::Model;
use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::plan::Tied;
use pa_onnx::verify::structure::{compare_files, compare_files_with, Mode};

use crate::fixtures::*;

/// Every `.onnx` under `models/` (committed exports), sorted.
pub fn committed_models() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                // Large models are generated on demand and not committed.
                if p.file_name().is_some_and(|n| n != "large") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A model with every field an exporter may write, including fields no
/// ONNX version defines yet (numbers 900+), at every level.
pub fn kitchen_sink(dir: &Path) -> PathBuf {
    let unknown = |m: Msg| m.varint(901, 7).str(902, "future").fixed32(903, 1);
    let meta = |k: &str, v: &str| Msg::new().str(1, k).str(2, v);
    let w_ext = kaiming(6 * 4, 4, 11);
    let mut data = vec![0xAAu8; 16]; // padding before, kept as is
    let off = data.len() as u64;
    data.extend(f32_bytes(&w_ext));
    data.extend([0x55u8; 8]);
    std::fs::write(dir.join("weights.bin"), &data).unwrap();

    let body = graph(GraphSpec {
        name: "loop_body".into(),
        nodes: vec![node("MatMul", "lm", &["x", "w_raw"], &["lb"], vec![])],
        initializers: vec![],
        inputs: vec![value_info("i", INT64, &[]), value_info("c", 9, &[])],
        outputs: vec![value_info("c", 9, &[]), value_info("lb", FLOAT, &[4, 5])],
    });
    let nodes = vec![
        unknown(node("MatMul", "m_raw", &["x", "w_raw"], &["a"], vec![]))
            .str(6, "node doc string")
            .msg(9, meta("node_key", "node_value")),
        node("MatMul", "m_float", &["x", "w_float"], &["b"], vec![]),
        node("Cast", "to16", &["x"], &["x16"], vec![attr_int("to", 10)]),
        node("MatMul", "m_f16", &["x16", "w_f16"], &["c16"], vec![]),
        node("MatMul", "m_ext", &["x", "w_ext"], &["d"], vec![]),
        node(
            "Constant",
            "cst",
            &[],
            &["w_const"],
            vec![attr_tensor(
                "value",
                tensor_f32("", &[4, 3], &kaiming(12, 4, 12)),
            )],
        ),
        node("MatMul", "m_const", &["x", "w_const"], &["e"], vec![]),
        node(
            "Loop",
            "loop",
            &["", "cond"],
            &["c_out", "lb_out"],
            vec![attr_graph("body", body)],
        ),
    ];
    let g = unknown(graph(GraphSpec {
        name: "sink".into(),
        nodes,
        initializers: vec![
            unknown(tensor_f32("w_raw", &[4, 5], &kaiming(20, 4, 13))).str(12, "tensor doc"),
            tensor_float_data("w_float", &[4, 7], &kaiming(28, 4, 14)),
            tensor_f16_int32("w_f16", &[4, 3], &kaiming(12, 4, 15)),
            tensor_external("w_ext", FLOAT, &[4, 6], "weights.bin", off, 96),
        ],
        inputs: vec![value_info("x", FLOAT, &[4, 4]), value_info("cond", 9, &[])],
        outputs: vec![value_info("a", FLOAT, &[4, 5])],
    }))
    .str(10, "graph doc")
    .msg(16, meta("graph_key", "graph_value"))
    .msg(
        15,
        Msg::new()
            .msg(1, tensor_f32("sp_values", &[2], &[1.0, 2.0]))
            .msg(2, tensor_raw("sp_idx", 7, &[2], &[0; 16]))
            .packed(3, &[4]),
    );
    let func = Msg::new()
        .str(1, "Helper")
        .str(4, "p")
        .str(5, "q")
        .msg(7, node("Relu", "r", &["p"], &["q"], vec![]))
        .str(10, "local")
        .str(8, "function doc");
    let training = Msg::new().msg(
        1,
        graph(GraphSpec {
            name: "init".into(),
            nodes: vec![],
            initializers: vec![tensor_f32("train_state", &[2], &[0.5, 0.25])],
            inputs: vec![],
            outputs: vec![],
        }),
    );
    let bytes = {
        let mut m = unknown(Msg(model(
            g,
            vec![
                (25, func),
                (20, training),
                (14, meta("model_key", "model_value")),
            ],
        )));
        m = m.str(6, "model doc string");
        m.0
    };
    write_temp(dir, "sink.onnx", &bytes)
}

fn identity_round_trip(path: &Path) {
    let model = Model::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.onnx");
    write_patched(&model, &out, &[], WriteOptions::default()).unwrap();
    assert!(
        std::fs::read(path).unwrap() == std::fs::read(&out).unwrap(),
        "{} changed",
        path.display()
    );
}

#[test]
fn identity_round_trip_of_every_committed_model() {
    let models = committed_models();
    for p in &models {
        identity_round_trip(p);
    }
    eprintln!("identity round trip on {} committed models", models.len());
}

#[test]
fn identity_round_trip_of_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    identity_round_trip(&kitchen_sink(dir.path()));
    std::fs::write(dir.path().join("mlp.onnx"), mlp(8, 6, 3)).unwrap();
    identity_round_trip(&dir.path().join("mlp.onnx"));
}

#[test]
fn rewiring_the_kitchen_sink_changes_only_weight_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let input = kitchen_sink(dir.path());
    let input_bytes = std::fs::read(&input).unwrap();
    let data_before = std::fs::read(dir.path().join("weights.bin")).unwrap();
    let out_dir = dir.path().join("out");
    let out = out_dir.join("sink.onnx");
    let report = rewire_file(&input, Some(&out), &RewireOptions::default()).unwrap();
    let mut names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["w_const", "w_ext", "w_f16", "w_float", "w_raw"]);

    // The input and its data file are untouched; the output has its own.
    assert_eq!(std::fs::read(&input).unwrap(), input_bytes);
    assert_eq!(
        std::fs::read(dir.path().join("weights.bin")).unwrap(),
        data_before
    );
    let data_after = std::fs::read(out_dir.join("weights.bin")).unwrap();
    assert_eq!(&data_after[..16], &data_before[..16]);
    assert_eq!(&data_after[112..], &data_before[112..]);
    assert_ne!(data_after, data_before);

    let s = compare_files(&input, &out).unwrap();
    assert_eq!(s.mode, Mode::Aligned);
    assert!(s.passed(), "{:?}", s.differences);
    let mut permuted = s.permuted.clone();
    permuted.sort();
    assert_eq!(permuted, names);
    // Exactly the weights' bytes differ.
    let model = Model::open(&input).unwrap();
    let out_bytes = std::fs::read(&out).unwrap();
    let payloads: Vec<std::ops::Range<usize>> = model
        .tensors
        .iter()
        .filter(|t| names.contains(&t.name.as_str()))
        .filter_map(|t| match &t.storage {
            pa_onnx::onnx::Storage::Raw(r) | pa_onnx::onnx::Storage::Packed { range: r, .. } => {
                Some(r.clone())
            }
            _ => None,
        })
        .collect();
    for (i, (a, b)) in input_bytes.iter().zip(&out_bytes).enumerate() {
        if a != b {
            assert!(
                payloads.iter().any(|r| r.contains(&i)),
                "byte {i} outside payloads changed"
            );
        }
    }
}

#[test]
fn refuses_to_overwrite_input_data_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let input = kitchen_sink(dir.path());
    let out = dir.path().join("other.onnx");
    let err = rewire_file(&input, Some(&out), &RewireOptions::default()).unwrap_err();
    assert!(
        matches!(err, pa_onnx::Error::WouldOverwrite { .. }),
        "{err}"
    );
    assert!(!out.exists(), "a failed run left an output");
    let err = rewire_file(&input, Some(&input), &RewireOptions::default()).unwrap_err();
    assert!(
        matches!(err, pa_onnx::Error::WouldOverwrite { .. }),
        "{err}"
    );
}

#[test]
fn rewiring_every_committed_model_verifies_and_changes_every_weight() {
    for p in committed_models() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.onnx");
        let report = rewire_file(&p, Some(&out), &RewireOptions::default()).unwrap();
        let s = compare_files(&p, &out).unwrap();
        assert!(s.passed(), "{}: {:?}", p.display(), s.differences);
        let mut rewired: Vec<&str> = report
            .tensors
            .iter()
            .filter(|t| t.rows > 1 && t.cols > 1)
            // A tensor of equal values (a zero-initialised head) is its
            // own permutation; its strengths are all equal too.
            .filter(|t| t.before.row_std > 0.0 || t.before.col_std > 0.0)
            .map(|t| t.name.as_str())
            .collect();
        rewired.sort();
        let mut permuted: Vec<&str> = s.permuted.iter().map(|s| s.as_str()).collect();
        permuted.sort();
        assert_eq!(rewired, permuted, "{}", p.display());
    }
}

/// A file re-encoded by another tool (here: written with float_data instead
/// of raw_data, and with a doc string that shifts every offset) is compared
/// tensor by tensor by name.
#[test]
fn verify_by_name_on_files_not_written_by_pa_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let w1 = kaiming(12, 4, 1);
    let w2 = kaiming(6, 3, 2);
    let build = |w1: &[f32], w2: &[f32], doc: bool, float_data: bool| {
        let t1 = if float_data {
            tensor_float_data("w1", &[3, 4], w1)
        } else {
            tensor_f32("w1", &[3, 4], w1)
        };
        let mut g = graph(GraphSpec {
            name: "g".into(),
            nodes: vec![
                node(
                    "Gemm",
                    "fc1",
                    &["x", "w1"],
                    &["h"],
                    vec![attr_int("transB", 1)],
                ),
                node("MatMul", "fc2", &["h", "w2"], &["y"], vec![]),
            ],
            initializers: vec![t1, tensor_f32("w2", &[3, 2], w2)],
            inputs: vec![value_info("x", FLOAT, &[1, 4])],
            outputs: vec![value_info("y", FLOAT, &[1, 2])],
        });
        if doc {
            g = g.str(10, "re-exported");
        }
        model(g, vec![])
    };
    let original = write_temp(dir.path(), "a.onnx", &build(&w1, &w2, false, false));
    let mut p1 = w1.clone();
    p1.reverse();
    let reexported = write_temp(dir.path(), "b.onnx", &build(&p1, &w2, true, true));
    let s = compare_files(&original, &reexported).unwrap();
    assert_eq!(s.mode, Mode::ByName);
    assert!(s.passed(), "{:?}", s.differences);
    assert_eq!(s.permuted, ["w1"]);
    assert_eq!(s.identical, ["w2"]);

    let mut changed = w2.clone();
    changed[0] += 1.0;
    let bad = write_temp(dir.path(), "c.onnx", &build(&p1, &changed, true, false));
    let s = compare_files(&original, &bad).unwrap();
    assert!(!s.passed());
    assert_eq!(s.differences.len(), 1, "{:?}", s.differences);
    assert_eq!(s.differences[0].tensor.as_deref(), Some("w2"));
}

/// A MatMul weight stored as [K, N] is rewired as its transpose; the file
/// path makes that view by transposing the keys in tiles, and must give
/// what walking the view element by element gives (`rewire_values`), for
/// every dtype and for a shape whose sides are not multiples of a tile.
#[test]
fn transposed_weights_match_the_element_by_element_view() {
    let dir = tempfile::tempdir().unwrap();
    let (k, n) = (37u64, 70u64);
    let vals: Vec<f64> = kaiming((k * n) as usize, k as usize, 21)
        .into_iter()
        .map(f64::from)
        .collect();
    // (ONNX dtype, bytes per element, encode, decode), values rounded to
    // the dtype first so the reference sees exactly the stored numbers.
    type Enc = fn(f64) -> Vec<u8>;
    type Dec = fn(&[u8]) -> f64;
    let cases: [(i32, Enc, Dec); 4] = [
        (
            1,
            |v| (v as f32).to_le_bytes().to_vec(),
            |b| f32::from_le_bytes(b.try_into().unwrap()) as f64,
        ),
        (
            10,
            |v| half::f16::from_f64(v).to_le_bytes().to_vec(),
            |b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        ),
        (
            16,
            |v| half::bf16::from_f64(v).to_le_bytes().to_vec(),
            |b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
        ),
        (
            11,
            |v| (v + 1e-12).to_le_bytes().to_vec(),
            |b| f64::from_le_bytes(b.try_into().unwrap()),
        ),
    ];
    for (dtype, enc, dec) in cases {
        let raw: Vec<u8> = vals.iter().flat_map(|&v| enc(v)).collect();
        let width = raw.len() / vals.len();
        let stored: Vec<f64> = raw.chunks_exact(width).map(dec).collect();
        let bytes = graph_model(
            vec![node("MatMul", "mm", &["x", "w"], &["y"], vec![])],
            vec![tensor_raw("w", dtype, &[k, n], &raw)],
            vec![value_info("x", dtype, &[1, k])],
            vec![value_info("y", dtype, &[1, n])],
        );
        let input = write_temp(dir.path(), &format!("mm{dtype}.onnx"), &bytes);
        let output = dir.path().join(format!("mm{dtype}.out.onnx"));
        let report = rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap();
        assert_eq!(report.tensors.len(), 1, "dtype {dtype}");
        assert!(report.tensors[0].transposed);
        let (_, plan) =
            pa_onnx::pipeline::plan_file(&input, &pa_onnx::plan::Selection::default()).unwrap();
        let want = pa_onnx::rewire::rewire_values(
            &stored,
            &[k, n],
            &[1, 0],
            &plan.weights[0].key,
            &pa_onnx::rewire::Options::default(),
        );
        let m = Model::open(&output).unwrap();
        let t = m.tensors.iter().find(|t| t.name == "w").unwrap();
        let got: Vec<f64> = m.payload(t).unwrap().chunks_exact(width).map(dec).collect();
        assert_ne!(got, stored, "dtype {dtype}: nothing moved");
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "dtype {dtype}"
        );
    }
}

/// The payload bytes of tensor `name` of the model at `path`.
fn payload_of(path: &Path, name: &str) -> Vec<u8> {
    let m = Model::open(path).unwrap();
    let t = m.tensors.iter().find(|t| t.name == name).unwrap();
    m.payload(t).unwrap().into_owned()
}

fn sorted_f32s(bytes: &[u8]) -> Vec<u32> {
    let mut v: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    v.sort_unstable();
    v
}

/// Issue 19: GPT-2's embedding and its folded transposed copy stay tied:
/// one permutation for both, each a permutation of its original, and the
/// structural proof says the group is kept.
#[test]
fn a_folded_tied_copy_gets_the_same_permutation_as_its_dense_weight() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_temp(dir.path(), "gpt2.onnx", &gpt2_folded());
    let output = dir.path().join("gpt2.out.onnx");
    let report = rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap();
    let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w_fc", "lm_head"]);
    assert_eq!(report.ties.len(), 1);
    assert!(report.skipped.iter().all(|s| s.name != "wte"));

    let (wte, head) = (payload_of(&output, "wte"), payload_of(&output, "lm_head"));
    assert_ne!(head, payload_of(&input, "lm_head"), "lm_head not rewired");
    assert_eq!(wte, pa_onnx::plan::transpose_bytes(&head, 8, 24, 4));
    for name in ["wte", "lm_head"] {
        let (a, b) = (payload_of(&input, name), payload_of(&output, name));
        assert_ne!(a, b, "{name} unchanged");
        assert_eq!(sorted_f32s(&a), sorted_f32s(&b), "{name}");
    }
    let s = compare_files(&input, &output).unwrap();
    assert!(s.passed(), "{}", s);
    assert_eq!(s.ties.len(), 1);
    assert!(s.ties[0].kept && s.ties[0].permuted, "{:?}", s.ties);
}

/// `--tied skip` is the behaviour before ties were understood: the table
/// is left alone and the copy rewired on its own, with the bytes the
/// default gives that tensor; the tie-aware proof then finds the group
/// broken, and the tie-blind one passes.
#[test]
fn tied_skip_rewires_the_copy_alone_and_verify_finds_the_tie_broken() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_temp(dir.path(), "gpt2.onnx", &gpt2_folded());
    let (tied, skip) = (dir.path().join("tied.onnx"), dir.path().join("skip.onnx"));
    rewire_file(&input, Some(&tied), &RewireOptions::default()).unwrap();
    let mut opts = RewireOptions::default();
    opts.selection.tied = Tied::Skip;
    let report = rewire_file(&input, Some(&skip), &opts).unwrap();
    assert!(report.ties.is_empty());
    assert!(report.skipped.iter().any(|s| s.name == "wte"));
    assert_eq!(payload_of(&skip, "wte"), payload_of(&input, "wte"));
    for name in ["lm_head", "w_fc"] {
        assert_eq!(payload_of(&skip, name), payload_of(&tied, name), "{name}");
    }
    // Only the rewired payloads differ from the input.
    let (a, b) = (
        std::fs::read(&input).unwrap(),
        std::fs::read(&skip).unwrap(),
    );
    let m = Model::open(&input).unwrap();
    let holes: Vec<_> = ["lm_head", "w_fc"]
        .iter()
        .map(
            |n| match &m.tensors.iter().find(|t| &t.name == n).unwrap().storage {
                pa_onnx::onnx::Storage::Raw(r) => r.clone(),
                s => panic!("{s:?}"),
            },
        )
        .collect();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y || holes.iter().any(|r| r.contains(&i)), "byte {i}");
    }

    let s = compare_files(&input, &skip).unwrap();
    assert!(!s.passed());
    assert!(!s.ties[0].kept);
    assert_eq!(s.differences[0].tensor.as_deref(), Some("wte"));
    let s = compare_files_with(&input, &skip, Tied::Skip).unwrap();
    assert!(s.passed(), "{}", s);
}

/// tied_lm stores the tied table once, read by Gather and by the output
/// MatMul: it is rewired with the MatMul's view; with `--tied skip` it is
/// left as it was and everything else is as before.
#[test]
fn a_shared_tied_table_is_rewired_once_and_skip_leaves_it() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/torch/tied_lm.onnx");
    let dir = tempfile::tempdir().unwrap();
    let (tied, skip) = (dir.path().join("tied.onnx"), dir.path().join("skip.onnx"));
    let report = rewire_file(&input, Some(&tied), &RewireOptions::default()).unwrap();
    assert!(report.tensors.iter().any(|t| t.name == "emb.weight"));
    assert_ne!(
        payload_of(&tied, "emb.weight"),
        payload_of(&input, "emb.weight")
    );
    let s = compare_files(&input, &tied).unwrap();
    assert!(s.passed(), "{}", s);
    assert!(s.permuted.contains(&"emb.weight".to_string()));
    assert!(s.ties[0].kept && s.ties[0].permuted);

    let mut opts = RewireOptions::default();
    opts.selection.tied = Tied::Skip;
    rewire_file(&input, Some(&skip), &opts).unwrap();
    assert_eq!(
        payload_of(&skip, "emb.weight"),
        payload_of(&input, "emb.weight")
    );
    assert_eq!(
        payload_of(&skip, "hidden.weight"),
        payload_of(&tied, "hidden.weight")
    );
}

/// A tied group whose rewired tensor holds a NaN is left whole: neither
/// the weight nor its copy changes, and both are listed as skipped.
#[test]
fn a_non_finite_tied_group_is_left_as_it_was_copies_included() {
    let mut wte = kaiming(24 * 8, 8, 11);
    wte[5] = f32::NAN;
    let dir = tempfile::tempdir().unwrap();
    let input = write_temp(dir.path(), "nan.onnx", &gpt2_folded_with(wte));
    let output = dir.path().join("nan.out.onnx");
    let report = rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap();
    assert!(report.ties.is_empty());
    for name in ["wte", "lm_head"] {
        assert!(report.skipped.iter().any(|s| s.name == name), "{name}");
        assert_eq!(
            payload_of(&output, name),
            payload_of(&input, name),
            "{name}"
        );
    }
    assert!(compare_files(&input, &output).unwrap().passed());
}
