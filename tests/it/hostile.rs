//! Hostile and degenerate inputs: whatever a file claims, reading, planning
//! and rewiring it returns a named error or a correct result, never a panic,
//! and a failed `rewire` leaves nothing on disk.
//!
//! Each case says in its name what it breaks; each error case checks that
//! the message names the problem, because "malformed" alone does not help
//! anyone fix a file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pa_onnx::onnx::{Model, Storage};
use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::plan::SkipKind;
use pa_onnx::verify::structure::compare_files;
use rand::{Rng, SeedableRng};

use crate::fixtures::*;

// ---------------------------------------------------------------- helpers

fn pa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pa-onnx"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("the binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Parses `bytes` and, when that succeeds, locates and rewires every weight;
/// returns the first error's message. A panic anywhere fails the test with
/// `what` in the message.
fn read_plan_rewire(bytes: &[u8], dir: &Path, what: &str) -> Result<(), String> {
    let run = || -> pa_onnx::Result<()> {
        let model = Model::from_bytes(bytes.to_vec(), dir)?;
        let plan = pa_onnx::locate(&model)?;
        for w in &plan.weights {
            if model.tensors[w.tensor].numel <= 1 << 16 {
                pa_onnx::rewire_tensor(&model, w, &Default::default())?;
            }
        }
        Ok(())
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => panic!("{what}: panicked"),
    }
}

/// The error message of reading `bytes` (a panic fails the test).
fn read_error(bytes: &[u8], dir: &Path, what: &str) -> String {
    match read_plan_rewire(bytes, dir, what) {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => e,
    }
}

/// Names in `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Runs `pa-onnx rewire model out/out.onnx` and checks the failure contract:
/// exit 2, stderr opening with one `error:` line that contains `needle`,
/// no panic, and nothing left in the output folder.
fn cli_rejects(model: &Path, needle: &str) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.onnx");
    let o = pa(&["rewire", s(model), s(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}: {err}", model.display());
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    let first = err.lines().next().unwrap();
    assert!(first.contains(needle), "expected `{needle}` in: {first}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let left = leftovers(out_dir.path(), &[]);
    assert!(left.is_empty(), "{}: left {left:?}", model.display());
}

/// A small MLP whose graph is the last top-level field, so that every
/// proper prefix of the file is broken (none ends on a field boundary that
/// still holds a graph).
fn graph_last_mlp() -> Vec<u8> {
    let full = mlp(4, 3, 2);
    let model = Model::from_bytes(full.clone(), Path::new(".")).unwrap();
    // Re-emit the top level as ir_version, opset, graph.
    let mut graph = None;
    for f in pa_onnx::onnx::wire::Fields::new(&full, 0..full.len(), "ModelProto") {
        let f = f.unwrap();
        if f.number == 7 {
            graph = Some(full[f.body].to_vec());
        }
    }
    assert_eq!(model.ir_version, Some(8));
    Msg::new()
        .varint(1, 8)
        .msg(8, Msg::new().str(1, "").varint(2, 17))
        .bytes(7, &graph.unwrap())
        .0
}

// ------------------------------------------------------------- truncation

#[test]
fn truncated_at_every_offset_is_an_error() {
    let full = graph_last_mlp();
    let dir = tempfile::tempdir().unwrap();
    read_plan_rewire(&full, dir.path(), "the whole file").unwrap();
    for cut in 0..full.len() {
        let e = read_error(&full[..cut], dir.path(), &format!("cut at {cut}"));
        assert!(
            e.contains("malformed") || e.contains("not an ONNX model"),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn truncated_committed_models_never_panic() {
    // Dense at both ends (headers, last tensors), sparse in between.
    let dir = tempfile::tempdir().unwrap();
    for name in ["conv1d.onnx", "left_matmul.onnx", "transformer.onnx"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/torch")
            .join(name);
        let full = std::fs::read(&p).unwrap();
        let n = full.len();
        let cuts = (0..n.min(400))
            .chain((400..n).step_by(97))
            .chain(n.saturating_sub(400)..n);
        for cut in cuts {
            let _ = read_plan_rewire(&full[..cut], dir.path(), &format!("{name} cut at {cut}"));
        }
    }
}

#[test]
fn truncated_model_on_the_cli_exits_2_and_writes_nothing() {
    let full = graph_last_mlp();
    let dir = tempfile::tempdir().unwrap();
    // A spread of cuts: the header, inside nodes, inside payloads, the end.
    let n = full.len();
    let mut cuts: Vec<usize> = vec![
        0,
        1,
        2,
        3,
        5,
        9,
        n / 4,
        n / 3,
        n / 2,
        2 * n / 3,
        n - 9,
        n - 2,
        n - 1,
    ];
    cuts.dedup();
    for cut in cuts {
        let p = write_temp(dir.path(), "cut.onnx", &full[..cut]);
        let needle = if cut == 0 { "empty" } else { "" };
        cli_rejects(&p, needle);
    }
    assert_eq!(leftovers(dir.path(), &["cut.onnx"]), Vec::<String>::new());
}

// ------------------------------------------------------- not ONNX at all

#[test]
fn random_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let seed_model = graph_last_mlp();
    for i in 0..3000 {
        let len = rng.random_range(0..600);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if i % 2 == 0 && len > 0 {
            // A valid model with a few random bytes flipped reaches deeper.
            bytes = seed_model.clone();
            for _ in 0..rng.random_range(1..6) {
                let k = rng.random_range(0..bytes.len());
                bytes[k] = rng.random();
            }
        }
        let _ = read_plan_rewire(&bytes, dir.path(), &format!("random input {i}"));
    }
}

#[test]
fn random_bytes_on_the_cli_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    let p = write_temp(dir.path(), "noise.onnx", &bytes);
    cli_rejects(&p, "");
}

#[test]
fn valid_protobuf_that_is_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Some other message: a string and a number.
        (
            "other_message",
            Msg::new().str(1, "hello").varint(2, 5).0,
            "no graph",
        ),
        // A bare TensorProto is valid protobuf, but its name (field 8) is
        // where a model has its opset_import, which then does not parse.
        (
            "bare_tensor",
            tensor_f32("w", &[2], &[1.0, 2.0]).0,
            "in OperatorSetIdProto",
        ),
        // A graph with no ir_version.
        (
            "no_ir_version",
            Msg::new()
                .msg(
                    7,
                    graph(GraphSpec {
                        name: "g".into(),
                        nodes: vec![],
                        initializers: vec![],
                        inputs: vec![],
                        outputs: vec![],
                    }),
                )
                .0,
            "ir_version",
        ),
        // Field 7 (graph) written as a varint.
        (
            "graph_as_varint",
            Msg::new().varint(1, 8).varint(7, 3).0,
            "wrong wire type",
        ),
        // Two graphs.
        (
            "two_graphs",
            {
                let one = mlp(2, 2, 2);
                let g = Msg::new().str(2, "g");
                let mut two = one.clone();
                two.extend_from_slice(&Msg::new().msg(7, g).0);
                two
            },
            "more than one graph",
        ),
        // Deprecated group wire type.
        ("group_wire_type", vec![0x0b, 0x0c], "wire type"),
    ];
    for (name, bytes, needle) in cases {
        let e = read_error(&bytes, dir.path(), name);
        assert!(e.contains(needle), "{name}: {e}");
        let p = write_temp(dir.path(), &format!("{name}.onnx"), &bytes);
        cli_rejects(&p, needle);
    }
}

#[test]
fn deeply_nested_subgraphs_are_refused_not_a_stack_overflow() {
    let mut g = graph(GraphSpec {
        name: "leaf".into(),
        nodes: vec![],
        initializers: vec![],
        inputs: vec![],
        outputs: vec![],
    });
    for _ in 0..200 {
        let n = node(
            "If",
            "if",
            &["c"],
            &["y"],
            vec![attr_graph("then_branch", g)],
        );
        g = Msg::new().msg(1, n).str(2, "g");
    }
    let bytes = Msg::new().varint(1, 8).msg(7, g).0;
    let e = read_error(&bytes, Path::new("."), "nested subgraphs");
    assert!(e.contains("nested deeper"), "{e}");
}

// ----------------------------------------------- tensors that lie about size

/// A model whose only initializer is `t`, read by Gemm B.
fn one_weight_model(t: Msg) -> Vec<u8> {
    graph_model(
        vec![node(
            "Gemm",
            "fc",
            &["x", "w"],
            &["y"],
            vec![attr_int("transB", 1)],
        )],
        vec![t],
        vec![value_info("x", FLOAT, &[1, 4])],
        vec![value_info("y", FLOAT, &[1, 4])],
    )
}

#[test]
fn tensors_whose_shape_and_payload_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let dims_tensor = |dims: &[u64]| {
        Msg::new()
            .packed(1, dims)
            .varint(2, FLOAT as u64)
            .str(8, "w")
            .bytes(9, &[0; 16])
    };
    let cases: Vec<(&str, Msg, &str)> = vec![
        (
            "raw_data_short",
            tensor_raw("w", FLOAT, &[2, 2], &[0; 12]),
            "raw_data holds 12 bytes",
        ),
        (
            "raw_data_long",
            tensor_raw("w", FLOAT, &[2, 2], &[0; 20]),
            "raw_data holds 20 bytes",
        ),
        (
            "raw_data_empty",
            tensor_raw("w", FLOAT, &[2, 2], &[]),
            "raw_data holds 0 bytes",
        ),
        (
            "dims_product_overflows_u64",
            dims_tensor(&[1 << 40, 1 << 40]),
            "overflows",
        ),
        (
            "dims_beyond_any_file",
            dims_tensor(&[1 << 30, 1 << 30]),
            "more than any file",
        ),
        (
            "negative_dim",
            dims_tensor(&[(-4i64) as u64, 1]),
            "negative dimension -4",
        ),
        (
            "negative_dim_unpacked",
            Msg::new()
                .varint(1, 2)
                .varint(1, (-1i64) as u64)
                .varint(2, 1)
                .str(8, "w")
                .bytes(9, &[0; 16]),
            "negative dimension -1",
        ),
        (
            "float_data_short",
            tensor_float_data("w", &[2, 2], &[1.0, 2.0, 3.0]),
            "holds 3 values but its dims describe 4",
        ),
        (
            "float_data_ragged",
            Msg::new()
                .packed(1, &[2, 2])
                .varint(2, 1)
                .bytes(4, &[0; 15])
                .str(8, "w"),
            "not a whole number of floats",
        ),
        (
            "no_payload",
            Msg::new().packed(1, &[2, 2]).varint(2, 1).str(8, "w"),
            "holds no data for 4 elements",
        ),
        (
            "raw_and_typed",
            tensor_raw("w", FLOAT, &[1], &[0; 4]).bytes(4, &[0; 4]),
            "both raw_data and typed data",
        ),
        (
            "raw_data_twice",
            tensor_raw("w", FLOAT, &[1], &[0; 4]).bytes(9, &[0; 4]),
            "raw_data twice",
        ),
        (
            "broken_packed_dims",
            Msg::new().bytes(1, &[0xff]).varint(2, 1).str(8, "w"),
            "packed dims",
        ),
    ];
    for (name, t, needle) in cases {
        let bytes = one_weight_model(t);
        let e = read_error(&bytes, dir.path(), name);
        assert!(e.contains(needle), "{name}: {e}");
        let p = write_temp(dir.path(), &format!("{name}.onnx"), &bytes);
        cli_rejects(&p, needle);
    }
}

// ----------------------------------------------------------- external data

/// A folder `model/` holding `m.onnx` whose weight `w` ([4, 4] f32) lives
/// at `location`, with a 64-byte `w.bin` beside it, and a sibling folder
/// `outside/` holding `secret.bin`.
struct ExternalCase {
    root: tempfile::TempDir,
}

impl ExternalCase {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("model")).unwrap();
        std::fs::create_dir(root.path().join("outside")).unwrap();
        let vals = f32_bytes(&kaiming(16, 4, 3));
        std::fs::write(root.path().join("model/w.bin"), &vals).unwrap();
        std::fs::write(root.path().join("outside/secret.bin"), &vals).unwrap();
        ExternalCase { root }
    }
    fn dir(&self) -> PathBuf {
        self.root.path().join("model")
    }
    fn model(&self, location: &str, offset: u64, length: u64) -> (PathBuf, Vec<u8>) {
        let bytes = one_weight_model(tensor_external(
            "w",
            FLOAT,
            &[4, 4],
            location,
            offset,
            length,
        ));
        (write_temp(&self.dir(), "m.onnx", &bytes), bytes)
    }
}

#[test]
fn external_data_that_escapes_or_lies() {
    let cases: Vec<(&str, String, u64, u64, &str)> = vec![
        ("dotdot", "../outside/secret.bin".into(), 0, 64, "`..`"),
        (
            "dotdot_inside",
            "sub/../../outside/secret.bin".into(),
            0,
            64,
            "`..`",
        ),
        ("absolute", "/etc/passwd".into(), 0, 64, "absolute"),
        ("missing_file", "nowhere.bin".into(), 0, 64, "not found"),
        (
            "offset_beyond_end",
            "w.bin".into(),
            64,
            64,
            "beyond the end",
        ),
        ("range_beyond_end", "w.bin".into(), 8, 64, "beyond the end"),
        (
            "offset_overflows",
            "w.bin".into(),
            u64::MAX - 8,
            64,
            "beyond the end",
        ),
        (
            "length_disagrees_with_dims",
            "w.bin".into(),
            0,
            60,
            "`length` is 60",
        ),
        ("empty_location", String::new(), 0, 64, "empty"),
        ("a_folder", ".".into(), 0, 64, "not a regular file"),
    ];
    for (name, location, offset, length, needle) in cases {
        let case = ExternalCase::new();
        let (p, bytes) = case.model(&location, offset, length);
        let e = read_error(&bytes, &case.dir(), name);
        assert!(e.contains(needle), "{name}: {e}");
        assert!(e.contains("external data"), "{name}: {e}");
        cli_rejects(&p, needle);
    }
}

#[test]
fn external_data_through_a_symlink_leading_outside() {
    let case = ExternalCase::new();
    std::os::unix::fs::symlink("../outside/secret.bin", case.dir().join("link.bin")).unwrap();
    let (p, bytes) = case.model("link.bin", 0, 64);
    let e = read_error(&bytes, &case.dir(), "symlink");
    assert!(e.contains("outside the model's folder"), "{e}");
    cli_rejects(&p, "outside");
    // A symlinked folder is the same escape.
    std::os::unix::fs::symlink("../outside", case.dir().join("sub")).unwrap();
    let (p, bytes) = case.model("sub/secret.bin", 0, 64);
    let e = read_error(&bytes, &case.dir(), "symlinked folder");
    assert!(e.contains("outside"), "{e}");
    cli_rejects(&p, "outside");
    // A symlink that stays inside is followed.
    std::os::unix::fs::symlink("w.bin", case.dir().join("alias.bin")).unwrap();
    let (_, bytes) = case.model("alias.bin", 0, 64);
    read_plan_rewire(&bytes, &case.dir(), "symlink inside").unwrap();
}

#[test]
fn external_offset_that_is_not_a_number() {
    let case = ExternalCase::new();
    let entry = |k: &str, v: &str| Msg::new().str(1, k).str(2, v);
    let t = Msg::new()
        .packed(1, &[4, 4])
        .varint(2, 1)
        .str(8, "w")
        .msg(13, entry("location", "w.bin"))
        .msg(13, entry("offset", "-8"))
        .varint(14, 1);
    let bytes = one_weight_model(t);
    let e = read_error(&bytes, &case.dir(), "negative offset");
    assert!(e.contains("`offset` is not a non-negative integer"), "{e}");
    let t = Msg::new()
        .packed(1, &[4, 4])
        .varint(2, 1)
        .str(8, "w")
        .varint(14, 1);
    let e = read_error(&one_weight_model(t), &case.dir(), "no location");
    assert!(e.contains("names no `location`"), "{e}");
}

// ------------------------------------------------------ degenerate weights

/// Writes `bytes` as `in.onnx`, rewires it to `out.onnx`, proves the output
/// a permutation, and returns (input, output, plan of the input).
fn rewire_and_verify(bytes: &[u8]) -> (Model, Model, pa_onnx::Plan, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let input = write_temp(dir.path(), "in.onnx", bytes);
    let output = dir.path().join("out.onnx");
    rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap();
    let report = compare_files(&input, &output).unwrap();
    assert!(report.passed(), "{:?}", report.differences);
    let a = Model::open(&input).unwrap();
    let b = Model::open(&output).unwrap();
    let plan = pa_onnx::locate(&a).unwrap();
    (a, b, plan, dir)
}

fn payload_of(m: &Model, name: &str) -> Vec<u8> {
    let t = m.tensors.iter().find(|t| t.name == name).unwrap();
    m.payload(t).unwrap().into_owned()
}

#[test]
fn nan_and_inf_weights_are_skipped_with_a_reason() {
    for (label, bad) in [
        ("nan", f32::NAN),
        ("inf", f32::INFINITY),
        ("neg_inf", f32::NEG_INFINITY),
    ] {
        let mut v = kaiming(16, 4, 7);
        v[5] = bad;
        let (a, b, plan, _d) = rewire_and_verify(&one_weight_model(tensor_f32("w", &[4, 4], &v)));
        assert!(plan.weights.is_empty(), "{label}");
        let s = plan.skipped.iter().find(|s| s.name == "w").unwrap();
        assert_eq!(s.kind, SkipKind::NonFinite, "{label}");
        assert!(
            s.reason.contains("NaN or infinite"),
            "{label}: {}",
            s.reason
        );
        assert_eq!(payload_of(&a, "w"), payload_of(&b, "w"), "{label}: touched");
    }
}

/// Rewiring reads each weight's values once, so it meets a NaN or an
/// infinity only as it encodes that weight (the plan of a rewire does not
/// read values). Such a weight must still come out byte for byte as it
/// went in, next to a weight that is rewired, in every storage, and be
/// listed as skipped with its reason, in a dry run too.
#[test]
fn a_non_finite_weight_found_while_rewiring_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = kaiming(16, 4, 3);
    bad[6] = f32::NAN;
    bad[9] = f32::INFINITY;
    let good = kaiming(16, 4, 4);
    std::fs::write(dir.path().join("w.bin"), f32_bytes(&bad)).unwrap();
    let storages: Vec<(&str, Msg)> = vec![
        ("raw_data", tensor_f32("w1", &[4, 4], &bad)),
        ("float_data", tensor_float_data("w1", &[4, 4], &bad)),
        ("f16 int32_data", tensor_f16_int32("w1", &[4, 4], &bad)),
        (
            "external",
            tensor_external("w1", FLOAT, &[4, 4], "w.bin", 0, 64),
        ),
    ];
    for (label, w1) in storages {
        let gemm = |name: &str, x: &str, w: &str, y: &str| {
            node("Gemm", name, &[x, w], &[y], vec![attr_int("transB", 1)])
        };
        let bytes = graph_model(
            vec![gemm("fc1", "x", "w1", "h"), gemm("fc2", "h", "w2", "y")],
            vec![w1, tensor_f32("w2", &[4, 4], &good)],
            vec![value_info("x", FLOAT, &[1, 4])],
            vec![value_info("y", FLOAT, &[1, 4])],
        );
        let input = write_temp(dir.path(), "in.onnx", &bytes);
        let output = dir.path().join("out").join("out.onnx");
        std::fs::create_dir_all(output.parent().unwrap()).unwrap();
        for out in [Some(output.as_path()), None] {
            let report = rewire_file(&input, out, &RewireOptions::default()).unwrap();
            let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["w2"], "{label}");
            let s = report.skipped.iter().find(|s| s.name == "w1").unwrap();
            assert_eq!(s.kind, SkipKind::NonFinite, "{label}");
            assert!(
                s.reason.contains("NaN or infinite"),
                "{label}: {}",
                s.reason
            );
        }
        let cmp = compare_files(&input, &output).unwrap();
        assert!(cmp.passed(), "{label}: {:?}", cmp.differences);
        let (a, b) = (Model::open(&input).unwrap(), Model::open(&output).unwrap());
        assert_eq!(
            payload_of(&a, "w1"),
            payload_of(&b, "w1"),
            "{label}: touched"
        );
        assert_ne!(
            payload_of(&a, "w2"),
            payload_of(&b, "w2"),
            "{label}: not rewired"
        );
        if label == "external" {
            let copied = std::fs::read(output.parent().unwrap().join("w.bin")).unwrap();
            assert_eq!(copied, f32_bytes(&bad), "{label}: external file");
        }
    }
}

#[test]
fn zero_size_weights_are_skipped() {
    for dims in [[0u64, 4], [4, 0], [0, 0]] {
        let (a, b, plan, _d) = rewire_and_verify(&one_weight_model(tensor_f32("w", &dims, &[])));
        assert!(plan.weights.is_empty(), "{dims:?}");
        let s = plan.skipped.iter().find(|s| s.name == "w").unwrap();
        assert_eq!(s.kind, SkipKind::Shape, "{dims:?}");
        assert!(s.reason.contains("no elements"), "{}", s.reason);
        assert_eq!(a.bytes[..], b.bytes[..], "{dims:?}");
    }
    // Zero elements stored as nothing at all (no raw_data field).
    let t = Msg::new().packed(1, &[0, 4]).varint(2, 1).str(8, "w");
    let (a, _, _, _d) = rewire_and_verify(&one_weight_model(t));
    assert_eq!(a.tensors[0].storage, Storage::Empty);
}

#[test]
fn one_row_and_one_column_weights_are_left_as_they_are() {
    // A matrix of one row or one column is unchanged by both passes.
    for dims in [[1u64, 7], [7, 1], [1, 1]] {
        let n = (dims[0] * dims[1]) as usize;
        let v = kaiming(n, n, 11);
        let (a, b, plan, _d) = rewire_and_verify(&one_weight_model(tensor_f32("w", &dims, &v)));
        assert_eq!(plan.weights.len(), 1, "{dims:?}: {:?}", plan.skipped);
        assert_eq!(payload_of(&a, "w"), payload_of(&b, "w"), "{dims:?}");
    }
}

#[test]
fn all_equal_and_signed_zero_weights_stay_a_permutation() {
    let (a, b, plan, _d) =
        rewire_and_verify(&one_weight_model(tensor_f32("w", &[6, 5], &[0.25; 30])));
    assert_eq!(plan.weights.len(), 1);
    assert_eq!(payload_of(&a, "w"), payload_of(&b, "w"));
    // +0.0 and -0.0 compare equal but are different bit patterns: the
    // multiset of bit patterns must survive.
    let v: Vec<f32> = (0..30)
        .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
        .collect();
    let (a, b, _, _d) = rewire_and_verify(&one_weight_model(tensor_f32("w", &[6, 5], &v)));
    let count_neg = |p: Vec<u8>| {
        p.chunks(4)
            .filter(|c| c == &(-0.0f32).to_le_bytes())
            .count()
    };
    assert_eq!(count_neg(payload_of(&a, "w")), 10);
    assert_eq!(count_neg(payload_of(&b, "w")), 10);
}

#[test]
fn extreme_finite_weights_are_rewired() {
    // Sums of f32::MAX overflow f32 but not the f64 accumulator.
    let mut v = kaiming(64, 8, 13);
    v[0] = f32::MAX;
    v[9] = f32::MAX;
    v[18] = -f32::MAX;
    v[27] = f32::MIN_POSITIVE / 4.0; // subnormal
    let (_, _, plan, _d) = rewire_and_verify(&one_weight_model(tensor_f32("w", &[8, 8], &v)));
    assert_eq!(plan.weights.len(), 1, "{:?}", plan.skipped);
}

// ----------------------------------------------------------- planner graphs

/// `a` is defined twice and each definition reads `a` again: a cycle with
/// fan-out 2 at every step, so walking every path from `w` would take 2^64
/// steps (the planner hung on it before its walk had a budget).
fn identity_cycle_model() -> Vec<u8> {
    let nodes = vec![
        node("Identity", "i0", &["w"], &["a"], vec![]),
        node("Identity", "i1", &["a"], &["a"], vec![]),
        node("Identity", "i2", &["a"], &["a"], vec![]),
        node(
            "Gemm",
            "fc",
            &["x", "a"],
            &["y"],
            vec![attr_int("transB", 1)],
        ),
    ];
    graph_model(
        nodes,
        vec![tensor_f32("w", &[4, 4], &kaiming(16, 4, 1))],
        vec![value_info("x", FLOAT, &[1, 4])],
        vec![value_info("y", FLOAT, &[1, 4])],
    )
}

#[test]
fn identity_cycles_and_fanout_do_not_explode_the_planner() {
    let start = std::time::Instant::now();
    let model = Model::from_bytes(identity_cycle_model(), Path::new(".")).unwrap();
    let plan = pa_onnx::locate(&model).unwrap();
    assert!(
        start.elapsed().as_secs() < 5,
        "planning took {:?}",
        start.elapsed()
    );
    let s = plan.skipped.iter().find(|s| s.name == "w").unwrap();
    assert!(
        s.reason.contains("paths") || s.reason.contains("64"),
        "{}",
        s.reason
    );
}

// ------------------------------------------------------ fuzzer regressions

/// The folder the fuzzer's external-data seeds expect: one `w.bin` of 1024
/// floats, as `fuzz/fuzz_targets/read_and_locate.rs` makes it.
fn fuzz_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..1024u16)
        .flat_map(|i| (f32::from(i) * 0.01 - 5.0).to_le_bytes())
        .collect();
    std::fs::write(dir.path().join("w.bin"), bytes).unwrap();
    dir
}

#[test]
fn fuzz_regressions_replay_without_panicking() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", folder.display());
    let data = fuzz_data_dir();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let start = std::time::Instant::now();
        let _ = read_plan_rewire(&bytes, data.path(), &f.display().to_string());
        assert!(
            start.elapsed().as_secs() < 5,
            "{}: took {:?}",
            f.display(),
            start.elapsed()
        );
    }
}

/// Writes the fixtures above into `$FUZZ_SEED_DIR`, to seed the fuzzer's
/// corpus: `FUZZ_SEED_DIR=fuzz/corpus/read_and_locate cargo test --test it
/// write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "a tool, not a test"]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mixed = graph_model(
        vec![
            node("Identity", "i0", &["w"], &["a"], vec![]),
            node(
                "Transpose",
                "t",
                &["a"],
                &["b"],
                vec![attr_ints("perm", &[1, 0])],
            ),
            node(
                "Gemm",
                "fc",
                &["x", "b"],
                &["y"],
                vec![attr_int("transB", 0)],
            ),
            node("Conv", "c", &["x", "k"], &["z"], vec![]),
            node("MatMul", "m", &["h", "x"], &["q"], vec![]),
        ],
        vec![
            tensor_f32("w", &[4, 4], &kaiming(16, 4, 1)),
            tensor_f16_int32("k", &[2, 1, 2, 2], &kaiming(8, 4, 2)),
            tensor_float_data("h", &[2, 3], &kaiming(6, 3, 3)),
        ],
        vec![value_info("x", FLOAT, &[1, 4])],
        vec![value_info("y", FLOAT, &[1, 4])],
    );
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("mlp", mlp(4, 3, 2)),
        ("graph_last_mlp", graph_last_mlp()),
        (
            "external_w_bin",
            one_weight_model(tensor_external("w", FLOAT, &[4, 4], "w.bin", 64, 64)),
        ),
        ("mixed_storage", mixed),
        ("identity_cycle", identity_cycle_model()),
        (
            "if_subgraph",
            graph_model(
                vec![node(
                    "If",
                    "if",
                    &["c"],
                    &["y"],
                    vec![attr_graph(
                        "then_branch",
                        graph(GraphSpec {
                            name: "then".into(),
                            nodes: vec![node("MatMul", "mm", &["x", "w"], &["y"], vec![])],
                            initializers: vec![],
                            inputs: vec![],
                            outputs: vec![value_info("y", FLOAT, &[1, 3])],
                        }),
                    )],
                )],
                vec![tensor_f32("w", &[4, 3], &kaiming(12, 4, 5))],
                vec![value_info("x", FLOAT, &[1, 4])],
                vec![value_info("y", FLOAT, &[1, 3])],
            ),
        ),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn external_tensors_sharing_bytes_are_not_rewired_twice() {
    // Two weights whose external ranges overlap: rewiring both would write
    // one over the other, and the output would hold neither permutation.
    for (name, second_offset, rewired) in [
        ("overlapping", 16u64, 0),
        ("identical", 0, 0),
        ("adjacent", 32, 2),
    ] {
        let case = ExternalCase::new();
        let bytes = graph_model(
            vec![
                node(
                    "Gemm",
                    "fc1",
                    &["x", "w1"],
                    &["h"],
                    vec![attr_int("transB", 1)],
                ),
                node(
                    "Gemm",
                    "fc2",
                    &["h", "w2"],
                    &["y"],
                    vec![attr_int("transB", 1)],
                ),
            ],
            vec![
                tensor_external("w1", FLOAT, &[2, 4], "w.bin", 0, 32),
                tensor_external("w2", FLOAT, &[2, 4], "w.bin", second_offset, 32),
            ],
            vec![value_info("x", FLOAT, &[1, 4])],
            vec![value_info("y", FLOAT, &[1, 2])],
        );
        let input = write_temp(&case.dir(), "m.onnx", &bytes);
        let out_dir = case.root.path().join("out");
        let output = out_dir.join("m.onnx");
        let rep = rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap();
        assert_eq!(rep.tensors.len(), rewired, "{name}");
        if rewired == 0 {
            for s in &rep.skipped {
                assert_eq!(s.kind, SkipKind::Storage, "{name}");
                assert!(
                    s.reason.contains("shares external data bytes"),
                    "{name}: {}",
                    s.reason
                );
            }
        }
        let report = compare_files(&input, &output).unwrap();
        assert!(report.passed(), "{name}: {:?}", report.differences);
    }
}

/// The training-graph builder on models with one or two attributes or
/// inputs changed at random (axes, strides, pads, perm, group, an input
/// pointed at another tensor): an error or a graph, never a panic. Such
/// mutations first reached 24 places that panicked (shape arithmetic that
/// trusted the file); they are errors that name the node now.
#[test]
fn training_graphs_of_mutated_models_never_panic() {
    use pa_onnx::onnx::pb;
    use pa_onnx::train::{build_training_graph, TrainGraphOptions};
    use prost::Message;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/grads"))
        .unwrap()
        .map(|e| e.unwrap().path().join("model.onnx"))
        .chain(
            std::fs::read_dir(root.join("models/torch"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .filter(|p| p.extension().is_some_and(|e| e == "onnx") && p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let opts = TrainGraphOptions {
        batch_size: Some(2),
        ..Default::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut panics = Vec::new();
    for file in &files {
        let base = pb::ModelProto::decode(std::fs::read(file).unwrap().as_slice()).unwrap();
        for _ in 0..150 {
            let mut m = base.clone();
            let g = m.graph.as_mut().unwrap();
            let names: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
            let mut what = Vec::new();
            for _ in 0..rng.random_range(1..=2) {
                let at = rng.random_range(0..g.node.len());
                let node = &mut g.node[at];
                if !node.attribute.is_empty() && rng.random_bool(0.7) {
                    let k = rng.random_range(0..node.attribute.len());
                    let a = &mut node.attribute[k];
                    what.push(format!("{} {}", node.op_type, a.name));
                    if a.ints.is_empty() {
                        a.i = rng.random_range(-6..9);
                    } else {
                        let j = rng.random_range(0..a.ints.len());
                        a.ints[j] = rng.random_range(-6..9);
                        if rng.random_bool(0.3) {
                            a.ints.pop();
                        }
                    }
                } else if node.input.len() > 1 && !names.is_empty() {
                    let k = rng.random_range(0..node.input.len());
                    what.push(format!("{} input {k}", node.op_type));
                    node.input[k] = names[rng.random_range(0..names.len())].clone();
                }
            }
            let bytes = m.encode_to_vec();
            if catch_unwind(AssertUnwindSafe(|| build_training_graph(&bytes, &opts))).is_err() {
                panics.push(format!("{}: {what:?}", file.display()));
            }
        }
    }
    assert!(panics.is_empty(), "{} panics: {panics:#?}", panics.len());
}
