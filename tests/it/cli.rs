//! The command line as users run it: exit statuses, messages, and what is
//! (not) left on disk.

use std::path::Path;
use std::process::{Command, Output};

use crate::fixtures::*;

fn pa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pa-onnx"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inspect_json_lists_weights_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(8, 6, 3));
    let o = pa(&["inspect", s(&m), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = v["weights"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    for key in ["name", "op", "dtype", "shape", "rows", "cols", "storage"] {
        assert!(w[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["skipped"][0]["name"], "b1");
    assert!(v["skipped"][0]["reason"].as_str().unwrap().contains("bias"));
    let o = pa(&["inspect", s(&m)]);
    assert!(stdout(&o).contains("weights: 2"), "{}", stdout(&o));
}

#[test]
fn verify_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = mlp(8, 6, 3);
    let m = write_temp(dir.path(), "a.onnx", &bytes);
    let o = pa(&["verify", s(&m), s(&m)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // One weight value changed: exit 1, the tensor named.
    let model = pa_onnx::onnx::Model::open(&m).unwrap();
    let w1 = model.tensors.iter().find(|t| t.name == "w1").unwrap();
    let pa_onnx::onnx::Storage::Raw(r) = &w1.storage else {
        panic!()
    };
    let mut changed = bytes.clone();
    changed[r.start] ^= 1;
    let c = write_temp(dir.path(), "changed.onnx", &changed);
    let o = pa(&["verify", s(&m), s(&c)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("`w1`"), "{}", stdout(&o));

    // Truncated: exit 2, one line.
    let t = write_temp(dir.path(), "trunc.onnx", &bytes[..bytes.len() / 2]);
    let o = pa(&["verify", s(&m), s(&t)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.lines().next().unwrap().contains("malformed"), "{err}");
}

#[test]
fn rewire_then_verify_and_reproducibility_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(32, 24, 10));
    let out = |n: &str| dir.path().join(n);
    let run = |name: &str, threads: &str, seed: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_pa-onnx"))
            .args(["rewire", s(&m), s(&out(name)), "--seed", seed, "--quiet"])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "--quiet printed {}", stdout(&o));
        std::fs::read(out(name)).unwrap()
    };
    let a = run("a.onnx", "1", "5");
    let b = run("b.onnx", "2", "5");
    let c = run("c.onnx", "2", "6");
    assert_eq!(a, b, "thread count changed the output");
    assert_ne!(a, c, "seed had no effect");
    let o = pa(&["verify", s(&m), s(&out("a.onnx")), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["structure"]["permuted"].as_array().unwrap().len(), 2);
}

#[test]
fn vector_code_and_portable_code_give_the_same_bytes() {
    // Rows of 1000 and 300 take the AVX-512 sorts (where the CPU has them)
    // with a split and networks; the 2 x 17000 layer is too wide for the
    // packed column words and takes the 64-bit path in any case.
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("wide.onnx", mlp(1000, 300, 40)),
        ("flat.onnx", mlp(17000, 2, 700)),
    ] {
        let m = write_temp(dir.path(), name, &bytes);
        let run = |out: &str, portable: bool| {
            let out = dir.path().join(out);
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pa-onnx"));
            cmd.args(["rewire", s(&m), s(&out), "--quiet"]);
            if portable {
                cmd.env("PA_ONNX_PORTABLE", "1");
            }
            let o = cmd.output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            std::fs::read(out).unwrap()
        };
        let (vector, plain) = (run("vector.onnx", false), run("plain.onnx", true));
        assert_ne!(vector, bytes, "{name}: nothing was rewired");
        assert_eq!(vector, plain, "{name}: the vector code changed the output");
    }
}

#[test]
fn rewire_report_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(16, 12, 4));
    let out = dir.path().join("out.onnx");
    let rep = dir.path().join("report.json");
    let o = pa(&["rewire", s(&m), s(&out), "--report", s(&rep), "--seed", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("strength variance"), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    assert_eq!(v["seed"], 3);
    assert_eq!(v["method"], "pa");
    // The digests are those of the files as they lie on disk.
    let digest = |p: &std::path::Path| pa_onnx::digest::sha256_hex(&std::fs::read(p).unwrap());
    assert_eq!(v["input"]["sha256"].as_str().unwrap(), digest(&m));
    assert_eq!(v["output"]["sha256"].as_str().unwrap(), digest(&out));
    assert_eq!(v["tensors"].as_array().unwrap().len(), 2);
    let t = &v["tensors"][0];
    for k in ["name", "op", "shape", "rows", "cols", "before", "after"] {
        assert!(t.get(k).is_some(), "missing {k}");
    }
    assert!(v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "b1"));

    let dry = dir.path().join("dry.onnx");
    let o = pa(&["rewire", s(&m), s(&dry), "--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!dry.exists(), "--dry-run wrote a file");
    assert!(
        stdout(&o).contains("would rewire 2 tensors"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rewire_selection_options() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(16, 12, 4));
    let json = |args: &[&str]| {
        let mut all = vec!["rewire", s(&m), "--dry-run", "--json"];
        all.extend_from_slice(args);
        let o = pa(&all);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(json(&["--op", "Gemm"]), ["w1"]);
    assert_eq!(json(&["--exclude", "^w1$"]), ["w2"]);
    assert_eq!(json(&["--include", "fc2"]), ["w2"]);
    assert_eq!(json(&["--min-size", "100"]), ["w1"]);
    let o = pa(&["rewire", s(&m), "--dry-run", "--include", "("]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--include"), "{}", stderr(&o));
    let o = pa(&["rewire", s(&m), "--dry-run", "--op", "Gather"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_input_gives_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.onnx", vec![]),
        ("text.onnx", b"this is not a model at all".to_vec()),
        ("truncated.onnx", mlp(8, 6, 3)[..100].to_vec()),
    ];
    for (name, bytes) in cases {
        let p = write_temp(dir.path(), name, &bytes);
        let out = dir.path().join(format!("{name}.out"));
        let o = pa(&["rewire", s(&p), s(&out)]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{name}: {}", stderr(&o));
        assert!(!out.exists(), "{name}: output written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: temporary files left");
    }
    let o = pa(&["inspect", s(&dir.path().join("missing.onnx"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.onnx"));
}

#[test]
fn doctor_reports_backends() {
    let o = pa(&["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tract"]["available"], true);
    if v["ort"]["available"] == true {
        assert!(v["ort_version"].as_str().unwrap().starts_with('1'));
        assert!(v["ort_providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "CPUExecutionProvider"));
    } else {
        eprintln!("SKIPPED: ONNX Runtime not found: {}", v["ort"]["reason"]);
        assert!(v["ort"]["reason"].as_str().is_some());
    }
    let o = pa(&["doctor", "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("/nonexistent/libonnxruntime.so"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_with_backends_and_required_skips() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(16, 12, 4));
    let out = dir.path().join("out.onnx");
    let o = pa(&["rewire", s(&m), s(&out), "--verify", "tract"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("inference: PASSED"), "{}", stdout(&o));

    let o = pa(&[
        "verify",
        s(&m),
        s(&out),
        "--backends",
        "tract,ort-cpu",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let backends = v["inference"]["backends"].as_array().unwrap();
    let tract = backends.iter().find(|b| b["backend"] == "tract").unwrap();
    assert_eq!(tract["status"], "passed");
    let ort = backends.iter().find(|b| b["backend"] == "ort-cpu").unwrap();
    if ort["status"] == "skipped" {
        eprintln!("SKIPPED: ort-cpu: {}", ort["reason"]);
    } else {
        assert_eq!(ort["status"], "passed", "{ort}");
    }

    // A backend that cannot be had is a skip, and a failure once required.
    // A runtime library that does not exist makes ort-cuda unavailable on
    // any machine, a GPU machine included.
    let lib = dir.path().join("none").join("libonnxruntime.so.1.99.0");
    let o = pa(&[
        "verify",
        s(&m),
        s(&out),
        "--backends",
        "tract,ort-cuda",
        "--ort-lib",
        s(&lib),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("skipped"), "{}", stdout(&o));
    let o = pa(&[
        "verify",
        s(&m),
        s(&out),
        "--backends",
        "tract",
        "--require",
        "ort-cuda",
        "--ort-lib",
        s(&lib),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Identical files: the rewrite did not take effect.
    let o = pa(&["verify", s(&m), s(&m), "--backends", "tract"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let o = pa(&[
        "verify",
        s(&m),
        s(&m),
        "--backends",
        "tract",
        "--allow-unchanged",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let o = pa(&["verify", s(&m), s(&out), "--backends", "onnxjs"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `rewire --verify` runs what `verify` runs: after its own summary it
/// prints the very lines `verify` prints for the same files and options,
/// and its JSON holds the very object `verify --json` prints.
#[test]
fn rewire_verify_prints_what_verify_prints() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(16, 12, 4));
    let out = dir.path().join("out.onnx");
    let options = ["--input-seed", "3", "--atol", "1e-5"];

    let mut rewire = vec!["rewire", s(&m), s(&out), "--verify", "tract"];
    rewire.extend(options);
    let o = pa(&rewire);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let rewired = stdout(&o);
    let mut verify = vec!["verify", s(&m), s(&out), "--backends", "tract"];
    verify.extend(options);
    let v = pa(&verify);
    assert_eq!(v.status.code(), Some(0), "{}{}", stdout(&v), stderr(&v));
    let verified = stdout(&v);
    assert!(verified.starts_with("structure: "), "{verified}");
    assert!(verified.ends_with("inference: PASSED\n"), "{verified}");
    let (own, lines) = rewired.split_at(rewired.len() - verified.len());
    assert_eq!(lines, verified, "rewire --verify printed:\n{rewired}");
    assert!(own.starts_with("rewired 2 tensors of "), "{rewired}");
    assert!(!own.contains("structure: "), "{rewired}");

    rewire.push("--json");
    let o = pa(&rewire);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let rewired: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    verify.push("--json");
    let v = pa(&verify);
    let verified: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(rewired["verify"], verified);
}

#[test]
fn train_graph_writes_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/torch/mlp.onnx");
    let out = dir.path().join("train.onnx");
    let o = pa(&["train-graph", s(&input), s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m = pa_onnx::onnx::Model::open(&out).unwrap();
    let main = &m.graphs[0];
    assert!(main.outputs.iter().any(|o| o == "loss"));
    assert!(
        main.outputs.iter().any(|o| o == "fc1.weight_grad"),
        "{:?}",
        main.outputs
    );
    assert!(main.inputs.iter().any(|i| i == "labels"));
    let o = pa(&["train-graph", s(&input), s(&input)]);
    assert_eq!(o.status.code(), Some(2), "overwrote its input");
}

/// `--target onnxruntime` keeps BatchNormalization operators (fed the batch
/// statistics); the portable graph has none, so tract can load it.
#[test]
fn train_graph_target_decides_the_batch_norm_form() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let input =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/torch/cnn_bn_unfused.onnx");
    let count = |target: &str| {
        let out = dir.path().join(format!("{target}.onnx"));
        let o = pa(&["train-graph", s(&input), s(&out), "--target", target]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let m = pa_onnx::onnx::pb::ModelProto::decode(&std::fs::read(&out).unwrap()[..]).unwrap();
        let g = m.graph.unwrap();
        g.node
            .iter()
            .filter(|n| n.op_type == "BatchNormalization")
            .count()
    };
    assert_eq!(count("portable"), 0);
    assert!(count("onnxruntime") > 0);
    let o = pa(&["train-graph", s(&input), "x.onnx", "--target", "tensorrt"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 4's acceptance: every committed model, rewired, verifies on tract
/// and ONNX Runtime CPU (each backend passes, or is skipped with a reason
/// when it cannot load that model or is not installed).
#[test]
fn every_committed_model_rewired_verifies_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let mut ort_compared = 0;
    for (i, m) in crate::roundtrip::committed_models().iter().enumerate() {
        let out = dir.path().join(format!("{i}.onnx"));
        let o = pa(&["rewire", s(m), s(&out), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", m.display(), stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        // A model whose weights all have one row or column, or that has
        // none pa-onnx rewires (Einsum), runs unchanged.
        let changed = report["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["rows"].as_u64() > Some(1) && t["cols"].as_u64() > Some(1));
        let mut args = vec![
            "verify",
            s(m),
            s(&out),
            "--backends",
            "tract,ort-cpu",
            "--json",
        ];
        if !changed {
            args.push("--allow-unchanged");
        }
        let o = pa(&args);
        assert_eq!(o.status.code(), Some(0), "{}: {}", m.display(), stdout(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for b in v["inference"]["backends"].as_array().unwrap() {
            match b["status"].as_str().unwrap() {
                "skipped" => eprintln!(
                    "SKIPPED {} on {}: {}",
                    m.display(),
                    b["backend"],
                    b["reason"]
                ),
                "passed" if b["backend"] == "ort-cpu" && v["inference"]["reference"] == "tract" => {
                    // The cross-backend error is reported per output.
                    assert!(b["outputs"][0]["max_abs_err"].is_number(), "{b}");
                    ort_compared += 1;
                }
                status => assert_eq!(status, "passed", "{b}"),
            }
        }
    }
    eprintln!("tract and ONNX Runtime compared on {ort_compared} rewired models");
}

#[test]
fn absent_onnx_runtime_is_skipped_and_fails_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "mlp.onnx", &mlp(16, 12, 4));
    let out = dir.path().join("out.onnx");
    assert_eq!(pa(&["rewire", s(&m), s(&out)]).status.code(), Some(0));
    let bogus = dir.path().join("no-such-libonnxruntime.so");
    let args = [
        "verify",
        s(&m),
        s(&out),
        "--backends",
        "tract,ort-cpu",
        "--ort-lib",
        s(&bogus),
    ];
    let o = pa(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("skipped"), "{}", stdout(&o));
    let mut required = args.to_vec();
    required.extend(["--require", "ort-cpu"]);
    let o = pa(&required);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

#[test]
fn a_missing_input_names_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothere.onnx");
    let o = pa(&["rewire", s(&missing), s(&dir.path().join("out.onnx"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.starts_with("error: cannot open"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("Caused by"), "{err}");
}

#[test]
fn a_training_error_prints_its_hint_on_a_line_of_its_own() {
    use pa_onnx::onnx::pb;
    use pb::tensor_shape_proto::dimension::Value;
    use prost::Message;
    let mut m = pb::ModelProto::decode(mlp(8, 6, 3).as_slice()).unwrap();
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("the input is a tensor");
    };
    t.shape.as_mut().unwrap().dim[0].value = Some(Value::DimParam("batch".into()));
    let dir = tempfile::tempdir().unwrap();
    let model = write_temp(dir.path(), "dynamic.onnx", &m.encode_to_vec());
    let o = pa(&["train-graph", s(&model), s(&dir.path().join("train.onnx"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains("batch"),
        "{err}"
    );
    assert!(!first.contains("hint"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("hint: ") && l.contains("batch size")),
        "{err}"
    );
}

/// Issue 19: an untrained model's final outputs can be blind to its hidden
/// weights (a zero-initialised head, activations that vanish with depth).
/// `verify` finds the rewiring in the outputs of the rewired layers, passes,
/// and says the outputs are blind; a model against itself still fails.
#[test]
fn verify_sees_the_rewiring_in_the_rewired_layers_when_the_outputs_are_blind() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/blind");
    for name in ["vit_zero_head", "deep_cnn_vanishing"] {
        let m = root.join(format!("{name}.onnx"));
        let out = dir.path().join(format!("{name}.onnx"));
        let o = pa(&["rewire", s(&m), s(&out)]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));

        let args = ["verify", s(&m), s(&out), "--backends", "tract,ort-cpu"];
        let o = pa(&[&args[..], &["--json"]].concat());
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stdout(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let backends = v["inference"]["backends"].as_array().unwrap();
        let mut ran = 0;
        for b in backends.iter().filter(|b| b["status"] == "passed") {
            ran += 1;
            let outputs = b["outputs"].as_array().unwrap();
            assert!(outputs.iter().all(|o| o["changed"] == false), "{name}: {b}");
            let probes = b["probes"].as_array().unwrap();
            assert!(
                probes.iter().any(|p| p["output"]["changed"] == true),
                "{name}: {b}"
            );
            // Every rewired tensor's layer is probed.
            let probed: Vec<&str> = probes
                .iter()
                .flat_map(|p| p["weights"].as_array().unwrap())
                .filter_map(|w| w.as_str())
                .collect();
            for t in v["structure"]["permuted"].as_array().unwrap() {
                assert!(
                    probed.contains(&t.as_str().unwrap()),
                    "{name}: {t} not probed"
                );
            }
            assert!(
                b["notes"].to_string().contains("blind at initialisation"),
                "{name}: {b}"
            );
        }
        assert!(ran > 0, "{name}: no backend ran: {v}");
        assert_eq!(backends[0]["backend"], "tract", "{name}: {v}");
        assert_eq!(backends[0]["status"], "passed", "{name}: {v}");

        let o = pa(&args);
        let text = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {text}");
        assert!(
            text.contains("final outputs unchanged (blind at initialisation"),
            "{text}"
        );
        assert!(text.contains("rewired layers' outputs changed"), "{text}");
        assert!(text.contains("    layer "), "{text}");

        // Nothing rewired: neither the outputs nor any layer can change.
        let o = pa(&["verify", s(&m), s(&m), "--backends", "tract,ort-cpu"]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stdout(&o));
        let o = pa(&[
            "verify",
            s(&m),
            s(&m),
            "--backends",
            "tract",
            "--allow-unchanged",
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stdout(&o));
    }
}

/// Issue 19: the tied group is listed by `inspect` (text and JSON) and by
/// `rewire`; `verify` says it is kept (exit 0), and a candidate where only
/// the dense copy was permuted (`rewire --tied skip`) fails it (exit 1)
/// unless `verify --tied skip` is asked for.
#[test]
fn tied_groups_in_inspect_rewire_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_temp(dir.path(), "gpt2.onnx", &gpt2_folded());
    let o = pa(&["inspect", s(&m), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ties"][0]["rewired"], "lm_head");
    assert_eq!(v["ties"][0]["members"][1]["name"], "wte");
    assert_eq!(v["ties"][0]["members"][1]["layout"], "transposed");
    let text = stdout(&pa(&["inspect", s(&m)]));
    assert!(text.contains("copy of lm_head  transposed"), "{text}");
    let text = stdout(&pa(&["inspect", s(&m), "--tied", "skip"]));
    assert!(!text.contains("tied:"), "{text}");

    let (tied, skip) = (dir.path().join("tied.onnx"), dir.path().join("skip.onnx"));
    let o = pa(&["rewire", s(&m), s(&tied), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ties"][0]["kind"], "folded");
    let o = pa(&["verify", s(&m), s(&tied)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("kept: permuted as one"),
        "{}",
        stdout(&o)
    );

    let o = pa(&["rewire", s(&m), s(&skip), "--tied", "skip"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("tied:"), "{}", stdout(&o));
    let o = pa(&["verify", s(&m), s(&skip)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("the tie is broken"), "{}", stdout(&o));
    let o = pa(&["verify", s(&m), s(&skip), "--tied", "skip"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
