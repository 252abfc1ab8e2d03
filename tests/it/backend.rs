//! Inference backends and inference verification, on tiny hand-built models.
//!
//! The models are built here from the crate's own protobuf messages
//! (`pa_onnx::onnx::pb`), so every test knows its exact weights and can
//! compute the expected outputs by hand. ONNX Runtime may be absent (it is
//! loaded from the `onnxruntime` wheel at run time): its tests then print
//! SKIPPED and check that the failure is reported as `Unavailable`, never as
//! a pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pa_onnx::backend::{self, BackendError, BackendKind, BackendOptions, HostTensor, TensorData};
use pa_onnx::onnx::pb::{
    self, tensor_shape_proto::dimension::Value as Dim, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use pa_onnx::onnx::DataType;
use pa_onnx::verify::inference::{compare_models, InferenceOptions, Status};
use prost::Message;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn weight(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: DataType::Float.code(),
        name: name.into(),
        raw_data: f32_bytes(values),
        ..Default::default()
    }
}

/// A float tensor type; a dimension given as a name is symbolic.
fn value_info(name: &str, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => Dim::DimValue(v),
                Err(_) => Dim::DimParam(d.to_string()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float.code(),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: pb::AttributeType::Int as i32,
        ..Default::default()
    }
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        r#type: pb::AttributeType::Float as i32,
        ..Default::default()
    }
}

fn model(graph: GraphProto, extra_opsets: &[(&str, i64)]) -> Vec<u8> {
    let mut opset_import = vec![OperatorSetIdProto {
        domain: String::new(),
        version: 17,
    }];
    for (domain, version) in extra_opsets {
        opset_import.push(OperatorSetIdProto {
            domain: domain.to_string(),
            version: *version,
        });
    }
    ModelProto {
        ir_version: 8,
        graph: Some(graph),
        opset_import,
        ..Default::default()
    }
    .encode_to_vec()
}

/// The MLP whose outputs are worked out by hand (see [`Y`]).
const W1: [f32; 12] = [
    0.1, -0.2, 0.3, //
    0.5, 0.4, -0.1, //
    -0.3, 0.2, 0.2, //
    0.05, -0.6, 0.25,
];
const B1: [f32; 4] = [0.1, -0.1, 0.05, 0.0];
const W2: [f32; 8] = [
    1.0, 0.0, //
    0.0, 1.0, //
    0.5, -0.5, //
    2.0, 2.0,
];
const B2: [f32; 2] = [0.01, -0.02];
const X: [f32; 6] = [1.0, 2.0, 3.0, -1.0, 0.5, 2.0];
/// y = relu(x W1^T + b1) W2 + b2, row by row:
/// x0 = [1, 2, 3]:    h = relu([0.7, 0.9, 0.75, -0.4]) -> y = [1.085, 0.505]
/// x1 = [-1, .5, 2]:  h = relu([0.5, -0.6, 0.85, 0.15]) -> y = [1.235, -0.145]
const Y: [f64; 4] = [1.085, 0.505, 1.235, -0.145];

/// Gemm(transB) -> Relu -> MatMul -> Add, batch dimension symbolic.
fn mlp_graph(w2: &[f32]) -> GraphProto {
    let mut gemm = node("Gemm", &["x", "w1", "b1"], &["h1"]);
    gemm.attribute.push(int_attr("transB", 1));
    GraphProto {
        node: vec![
            gemm,
            node("Relu", &["h1"], &["h"]),
            node("MatMul", &["h", "w2"], &["m"]),
            node("Add", &["m", "b2"], &["y"]),
        ],
        name: "mlp".into(),
        initializer: vec![
            weight("w1", &[4, 3], &W1),
            weight("b1", &[4], &B1),
            weight("w2", &[4, 2], w2),
            weight("b2", &[2], &B2),
        ],
        input: vec![value_info("x", &["batch", "3"])],
        output: vec![value_info("y", &["batch", "2"])],
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn x_input() -> Vec<(String, HostTensor)> {
    vec![(
        "x".to_string(),
        HostTensor::new(vec![2, 3], TensorData::F32(X.to_vec())).unwrap(),
    )]
}

fn batch2() -> BackendOptions {
    BackendOptions {
        input_shapes: HashMap::from([("x".to_string(), vec![2, 3])]),
        intra_threads: Some(1),
        ..Default::default()
    }
}

fn assert_close(got: &HostTensor, want: &[f64], tol: f64) {
    let got = got.to_f64();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

/// Whether ONNX Runtime can be loaded here; when not, says SKIPPED and
/// checks that the failure is the `Unavailable` kind.
fn ort_available(test: &str) -> bool {
    match backend::ort_info(&BackendOptions::default()) {
        Ok(info) => {
            eprintln!(
                "{test}: ONNX Runtime {} from {} (via {}), providers {:?}",
                info.version,
                info.library.display(),
                info.found_via,
                info.providers
            );
            true
        }
        Err(e) => {
            assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
            eprintln!("SKIPPED {test}: ONNX Runtime not available: {e}");
            false
        }
    }
}

#[cfg(feature = "tract")]
#[test]
fn tract_runs_the_mlp_and_gives_the_hand_computed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    let mut session = backend::open(BackendKind::Tract, &path, &batch2()).unwrap();
    assert_eq!(session.provider_used(), "tract");
    assert_eq!(session.inputs()[0].name, "x");
    assert_eq!(session.inputs()[0].shape, vec![Some(2), Some(3)]);
    assert_eq!(session.outputs()[0].dim_names[0].as_deref(), Some("batch"));
    let out = session.run(&x_input()).unwrap();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.shape, vec![2, 2]);
    assert_close(&out[0].1, &Y, 1e-5);

    // Without an override the symbolic batch is 1, and other shapes are refused clearly.
    let mut one = backend::open(BackendKind::Tract, &path, &BackendOptions::default()).unwrap();
    let err = one.run(&x_input()).unwrap_err();
    assert!(matches!(err, BackendError::RunFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("shape"), "{err}");
    let first = vec![(
        "x".to_string(),
        HostTensor::new(vec![1, 3], TensorData::F32(X[..3].to_vec())).unwrap(),
    )];
    assert_close(&one.run(&first).unwrap()[0].1, &Y[..2], 1e-5);
}

#[test]
fn ort_cpu_gives_the_same_numbers_or_is_reported_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    if !ort_available("ort_cpu_gives_the_same_numbers") {
        let err = backend::open(BackendKind::OrtCpu, &path, &batch2())
            .err()
            .unwrap();
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err:?}");
        return;
    }
    let mut session = backend::open(BackendKind::OrtCpu, &path, &batch2()).unwrap();
    assert_eq!(session.provider_used(), "CPUExecutionProvider");
    assert_eq!(session.inputs()[0].shape, vec![None, Some(3)]);
    assert_eq!(session.inputs()[0].dim_names[0].as_deref(), Some("batch"));
    let out = session.run(&x_input()).unwrap();
    assert_eq!(out[0].1.shape, vec![2, 2]);
    assert_close(&out[0].1, &Y, 1e-5);

    let err = session
        .run(&[(
            "x".to_string(),
            HostTensor::new(vec![2, 3], TensorData::F64(vec![0.0; 6])).unwrap(),
        )])
        .unwrap_err();
    assert!(err.to_string().contains("expects f32"), "{err}");
}

#[test]
fn a_bogus_ort_library_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    let bogus = dir
        .path()
        .join("no-such-dir")
        .join("libonnxruntime.so.1.99.0");
    let opts = BackendOptions {
        ort_lib: Some(bogus.clone()),
        ..Default::default()
    };
    for kind in [BackendKind::OrtCpu, BackendKind::OrtCuda] {
        let err = backend::open(kind, &path, &opts).err().unwrap();
        assert!(matches!(err, BackendError::Unavailable { .. }), "{err:?}");
        if kind == BackendKind::OrtCpu || cfg!(feature = "cuda") {
            assert!(
                err.to_string().contains(&bogus.display().to_string()),
                "{err}"
            );
        }
    }
    let err = backend::ort_info(&opts).unwrap_err();
    assert!(
        err.to_string().contains(&bogus.display().to_string()),
        "{err}"
    );

    // A file that exists but is no library: refused by the loader, not a crash,
    // and (whether or not a real runtime is loaded already) the path is named.
    let fake = write(
        dir.path(),
        "libonnxruntime.so.1.99.0",
        b"not a shared library",
    );
    let opts = BackendOptions {
        ort_lib: Some(fake.clone()),
        ..Default::default()
    };
    let err = backend::open(BackendKind::OrtCpu, &path, &opts)
        .err()
        .unwrap();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&fake.display().to_string()),
        "{err}"
    );
}

#[test]
fn cuda_is_never_a_silent_cpu_fallback() {
    let _cuda = crate::fixtures::cuda_lock(BackendKind::OrtCuda);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    match backend::open(BackendKind::OrtCuda, &path, &batch2()) {
        Ok(mut session) => {
            assert_eq!(session.provider_used(), "CUDAExecutionProvider");
            assert_close(&session.run(&x_input()).unwrap()[0].1, &Y, 1e-5);
        }
        Err(e) => {
            assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
            eprintln!("SKIPPED cuda run: {e}");
            if !cfg!(feature = "cuda") {
                assert!(e.to_string().contains("`cuda` feature"), "{e}");
            }
        }
    }
}

/// y = 2 * (x @ w) through `com.microsoft::FusedMatMul`, an ONNX Runtime
/// contrib op: tract cannot load it, ONNX Runtime runs it.
#[test]
fn a_contrib_op_fails_to_load_in_tract_but_runs_in_ort() {
    let w: Vec<f32> = vec![1.0, 2.0, 0.0, -1.0, 0.5, 0.5];
    let mut fused = node("FusedMatMul", &["x", "w"], &["y"]);
    fused.domain = "com.microsoft".into();
    fused.attribute.push(float_attr("alpha", 2.0));
    let graph = GraphProto {
        node: vec![fused],
        name: "contrib".into(),
        initializer: vec![weight("w", &[3, 2], &w)],
        input: vec![value_info("x", &["2", "3"])],
        output: vec![value_info("y", &["2", "2"])],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "contrib.onnx",
        &model(graph, &[("com.microsoft", 1)]),
    );

    let tract = backend::open(BackendKind::Tract, &path, &BackendOptions::default());
    if cfg!(feature = "tract") {
        let err = tract.err().expect("tract should not know FusedMatMul");
        assert!(matches!(err, BackendError::LoadFailed { .. }), "{err:?}");
        assert!(err.is_skippable());
    }

    if !ort_available("a_contrib_op_runs_in_ort") {
        return;
    }
    let mut session =
        backend::open(BackendKind::OrtCpu, &path, &BackendOptions::default()).unwrap();
    let out = session.run(&x_input()).unwrap();
    let mut want = Vec::new();
    for r in 0..2 {
        for c in 0..2 {
            let dot: f64 = (0..3)
                .map(|k| f64::from(X[r * 3 + k]) * f64::from(w[k * 2 + c]))
                .sum();
            want.push(2.0 * dot);
        }
    }
    assert_close(&out[0].1, &want, 1e-5);
}

/// The MLP with W1 in `mlp.onnx.data` beside the model, as large exports
/// store their weights.
fn external_mlp(dir: &Path) -> PathBuf {
    let mut graph = mlp_graph(&W2);
    let data = f32_bytes(&W1);
    std::fs::write(
        dir.join("mlp.onnx.data"),
        [vec![0u8; 16], data.clone()].concat(),
    )
    .unwrap();
    let w1 = &mut graph.initializer[0];
    w1.raw_data.clear();
    w1.data_location = pb::DataLocation::External as i32;
    for (key, value) in [
        ("location", "mlp.onnx.data".to_string()),
        ("offset", "16".to_string()),
        ("length", data.len().to_string()),
    ] {
        w1.external_data.push(StringStringEntryProto {
            key: key.into(),
            value,
        });
    }
    write(dir, "mlp.onnx", &model(graph, &[]))
}

/// W1 lives in `mlp.onnx.data` beside the model, as large exports do.
#[test]
fn external_data_next_to_the_model_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = external_mlp(dir.path());

    let mut kinds = vec![];
    if cfg!(feature = "tract") {
        kinds.push(BackendKind::Tract);
    }
    if ort_available("external_data_next_to_the_model") {
        kinds.push(BackendKind::OrtCpu);
    }
    for kind in kinds {
        let mut session = backend::open(kind, &path, &batch2()).unwrap();
        assert_close(&session.run(&x_input()).unwrap()[0].1, &Y, 1e-5);
    }
}

fn compare_options() -> InferenceOptions {
    InferenceOptions {
        backend: BackendOptions {
            intra_threads: Some(1),
            ..Default::default()
        },
        seed: 3,
        ..Default::default()
    }
}

#[test]
fn compare_models_sees_a_changed_weight_and_backends_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let original = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    // A permutation within one row of W2, as rewiring does.
    let mut w2 = W2;
    w2.swap(4, 5);
    let candidate = write(dir.path(), "mlp.rewired.onnx", &model(mlp_graph(&w2), &[]));

    let report = compare_models(
        &original,
        &candidate,
        &[BackendKind::Tract, BackendKind::OrtCpu],
        &compare_options(),
    );
    eprintln!("{report}");
    assert!(report.error.is_none());
    assert_eq!(report.inputs[0].name, "x");
    assert_eq!(report.inputs[0].shape, vec![1, 3]);
    let tract = report.backend(BackendKind::Tract).unwrap();
    if cfg!(feature = "tract") {
        assert_eq!(tract.status, Status::Passed, "{:?}", tract.reason);
        assert_eq!(report.reference, Some(BackendKind::Tract));
        let y = &tract.outputs[0];
        assert_eq!((y.name.as_str(), y.dtype.as_str()), ("y", "f32"));
        assert_eq!(y.shape, vec![1, 2]);
        assert!(y.changed && y.max_abs_change > 1e-3);
        assert!(
            y.max_abs_err.is_none(),
            "the reference is not compared with itself"
        );
    }
    let ort = report.backend(BackendKind::OrtCpu).unwrap();
    if ort_available("compare_models_sees_a_changed_weight") {
        assert_eq!(ort.status, Status::Passed, "{:?}", ort.reason);
        assert_eq!(ort.provider_used.as_deref(), Some("CPUExecutionProvider"));
        let y = &ort.outputs[0];
        assert!(y.changed);
        if cfg!(feature = "tract") {
            assert!(y.max_abs_err.unwrap() < 1e-5, "{y:?}");
        }
    } else {
        assert_eq!(ort.status, Status::Skipped);
        assert!(
            ort.reason.as_deref().unwrap_or("").contains("ONNX Runtime"),
            "{:?}",
            ort.reason
        );
    }
    assert!(report.passed());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["backends"][0]["backend"], "tract");
}

#[test]
fn identical_models_fail_when_a_change_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let original = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    let copy = write(dir.path(), "copy.onnx", &model(mlp_graph(&W2), &[]));
    let backends = [BackendKind::Tract, BackendKind::OrtCpu];

    let report = compare_models(&original, &copy, &backends, &compare_options());
    assert!(!report.passed(), "{report}");
    let ran: Vec<_> = report
        .backends
        .iter()
        .filter(|b| b.status != Status::Skipped)
        .collect();
    assert!(!ran.is_empty());
    for b in ran {
        assert_eq!(b.status, Status::Failed);
        assert!(
            b.reason.as_deref().unwrap().contains("changed nothing"),
            "{:?}",
            b.reason
        );
        assert_eq!(b.outputs[0].max_abs_change, 0.0);
    }

    let opts = InferenceOptions {
        expect_change: false,
        ..compare_options()
    };
    let report = compare_models(&original, &copy, &backends, &opts);
    assert!(report.passed(), "{report}");
}

#[test]
fn a_required_backend_that_cannot_run_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let original = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    let mut w2 = W2;
    w2.swap(0, 1);
    let candidate = write(dir.path(), "c.onnx", &model(mlp_graph(&w2), &[]));
    // A runtime library that does not exist: CUDA cannot run on any
    // machine, a GPU machine included.
    let mut opts = InferenceOptions {
        require: vec![BackendKind::OrtCuda],
        ..compare_options()
    };
    opts.backend.ort_lib = Some(dir.path().join("none").join("libonnxruntime.so.1.99.0"));
    let report = compare_models(&original, &candidate, &[BackendKind::Tract], &opts);
    let cuda = report
        .backend(BackendKind::OrtCuda)
        .expect("required backends always run");
    assert!(cuda.required);
    assert_eq!(cuda.status, Status::Failed);
    assert!(
        cuda.reason
            .as_deref()
            .unwrap()
            .starts_with("required, but skipped"),
        "{:?}",
        cuda.reason
    );
    assert!(!report.passed());
}

#[test]
fn a_candidate_that_does_not_load_fails_instead_of_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let original = write(dir.path(), "mlp.onnx", &model(mlp_graph(&W2), &[]));
    let broken = write(dir.path(), "broken.onnx", b"\x08\x08\x3a\xff\xff\xff\x0f");
    let report = compare_models(
        &original,
        &broken,
        &[BackendKind::Tract],
        &compare_options(),
    );
    if cfg!(feature = "tract") {
        let tract = report.backend(BackendKind::Tract).unwrap();
        assert_eq!(tract.status, Status::Failed, "{report}");
        assert!(tract
            .reason
            .as_deref()
            .unwrap()
            .contains("candidate does not load"));
    }
    assert!(!report.passed());
}

/// The committed PyTorch exports run the same on every backend available
/// here (original against itself: this checks the backends, not rewiring).
#[test]
fn committed_models_agree_across_backends() {
    let _cuda = crate::fixtures::cuda_lock(BackendKind::OrtCuda);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("torch");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIPPED committed_models_agree_across_backends: no {}",
            dir.display()
        );
        return;
    };
    let mut models: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    let opts = InferenceOptions {
        expect_change: false,
        ..compare_options()
    };
    for path in models {
        let report = compare_models(
            &path,
            &path,
            &[
                BackendKind::Tract,
                BackendKind::OrtCpu,
                BackendKind::OrtCuda,
            ],
            &opts,
        );
        eprintln!("{}:\n{report}", path.display());
        for b in &report.backends {
            assert_ne!(b.status, Status::Failed, "{}: {report}", path.display());
        }
    }
}

/// The probe copies that expose the rewired layers' outputs live in a
/// temporary folder; a model's external data must be found from there too.
#[test]
fn the_rewired_layers_of_a_model_with_external_data_are_probed() {
    let dir = tempfile::tempdir().unwrap();
    let original = external_mlp(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let candidate = out_dir.join("mlp.onnx");
    pa_onnx::pipeline::rewire_file(
        &original,
        Some(&candidate),
        &pa_onnx::pipeline::RewireOptions::default(),
    )
    .unwrap();
    let mut backends = vec![BackendKind::Tract];
    if ort_available("the_rewired_layers_of_a_model_with_external_data") {
        backends.push(BackendKind::OrtCpu);
    }
    let opts = pa_onnx::verify::VerifyOptions {
        backends,
        inference: compare_options(),
        tied: Default::default(),
    };
    let report = pa_onnx::verify::verify_files(&original, &candidate, &opts).unwrap();
    assert!(report.passed(), "{report}");
    let inference = report.inference.as_ref().unwrap();
    assert!(inference.notes.is_empty(), "{report}");
    for b in &inference.backends {
        assert_eq!(b.status, Status::Passed, "{report}");
        assert!(b.notes.is_empty(), "{report}");
        let probed: Vec<&str> = b
            .probes
            .iter()
            .flat_map(|p| p.weights.iter().map(String::as_str))
            .collect();
        for t in &report.structure.permuted {
            assert!(probed.contains(&t.as_str()), "{t} not probed: {report}");
        }
        assert!(b.probes.iter().any(|p| p.output.changed), "{report}");
    }
}
