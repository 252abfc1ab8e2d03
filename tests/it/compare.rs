//! `compare`: paired training runs over seeds on the committed small CNN
//! and a built-in synthetic task, through the library and the CLI: the
//! report's numbers agree with each other, runs resume and refuse mixed
//! configurations, divergence is recorded, bad data is refused before any
//! training, and the plots are real files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pa_onnx::backend::BackendKind;
use pa_onnx::compare::{
    compare, Arm, CompareError, CompareOptions, CompareReport, Event, RunStatus,
};

fn small_cnn() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/compare/small_cnn.onnx")
}

/// A short comparison: 3 seeds, 2 epochs of 8 steps, one thread per run.
fn quick(out: &Path, backend: BackendKind) -> CompareOptions {
    let mut o = CompareOptions::new(small_cnn(), "synthetic", out.to_path_buf(), 3);
    o.backend = backend;
    o.recipe.epochs = 2;
    o.recipe.batch = 32;
    o.data.synthetic_size = (256, 96);
    o.threads = Some(1);
    o.jobs = 2;
    o.log_every = 4;
    o
}

/// Runs `opts`, or returns None (and says so) where ONNX Runtime is absent.
fn run(opts: &CompareOptions) -> Option<CompareReport> {
    match compare(opts, &["test".into()], &|_| {}) {
        Ok(r) => Some(r),
        Err(CompareError::Train(pa_onnx::train::TrainError::Backend(e))) if e.is_skippable() => {
            eprintln!("SKIPPED compare on {}: {e}", opts.backend);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[test]
fn a_comparison_reports_consistent_numbers_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let Some(report) = run(&quick(dir.path(), BackendKind::OrtCpu)) else {
        return;
    };
    assert_eq!(report.arms, ["original", "pa"]);
    assert_eq!(report.runs.len(), 6);
    assert!(report.missing.is_empty());
    for r in &report.runs {
        assert_eq!(r.status, RunStatus::Finished, "{r:?}");
        assert_eq!(r.epochs.len(), 2);
        assert_eq!(r.epochs[1].step, 16);
        assert_eq!(r.steps.len(), 4);
        for e in &r.epochs {
            assert!((0.0..=1.0).contains(&e.test_acc) && e.test_loss.is_finite());
        }
        assert_eq!(r.init.is_some(), r.arm == "pa");
        if let Some(init) = &r.init {
            assert!(init.variance_after < init.variance_before, "{init:?}");
        }
    }
    // The training learns something on the synthetic task.
    let acc: Vec<f64> = report.runs.iter().map(|r| r.epochs[1].test_acc).collect();
    assert!(mean(&acc) > 0.3, "mean final accuracy {}", mean(&acc));
    // Summaries follow from the runs.
    let m = &report.summary.metrics;
    let final_acc = m.iter().find(|m| m.metric == "final_test_acc").unwrap();
    for arm in ["original", "pa"] {
        let xs: Vec<f64> = report
            .runs
            .iter()
            .filter(|r| r.arm == arm)
            .map(|r| r.epochs[1].test_acc)
            .collect();
        let d = &final_acc.arms[arm];
        assert_eq!(d.n, 3);
        assert!((d.mean.unwrap() - mean(&xs)).abs() < 1e-12);
    }
    let pair = &final_acc.paired[0];
    assert_eq!(pair.arm, "pa");
    assert_eq!(pair.seeds, [0, 1, 2]);
    let diffs: Vec<f64> = (0..3)
        .map(|s| {
            let get = |arm: &str| {
                report
                    .runs
                    .iter()
                    .find(|r| r.arm == arm && r.seed == s)
                    .unwrap()
                    .epochs[1]
                    .test_acc
            };
            get("pa") - get("original")
        })
        .collect();
    assert!((pair.test.mean_diff.unwrap() - mean(&diffs)).abs() < 1e-12);
    assert_eq!(pair.test.wins + pair.test.ties + pair.test.losses, 3);
    assert!(pair.sentence.contains("pa"), "{}", pair.sentence);
    assert!(
        pair.sentence.contains("p < 0.05"),
        "3 seeds cannot reach p < 0.05: {}",
        pair.sentence
    );
    // The files.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["runs"].as_array().unwrap().len(), 6);
    assert_eq!(json["runs"][0]["epochs"][0]["epoch"], 1);
    let csv = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "seed,arm,epoch,step,split,metric,value");
    assert_eq!(lines.len(), 1 + 6 * (2 * 4 + 4 * 2));
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains(&pair.sentence));
    let svgs: Vec<&String> = report
        .plots
        .iter()
        .filter(|p| p.ends_with(".svg"))
        .collect();
    // Four curves, two scatters for the one arm, the strength histogram.
    assert_eq!(svgs.len(), 7, "{:?}", report.plots);
    for p in &report.plots {
        let bytes = std::fs::read(dir.path().join(p)).unwrap();
        assert!(bytes.len() > 500, "{p}");
        if p.ends_with(".svg") {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"));
            assert!(md.contains(p.as_str()));
        } else {
            assert!(bytes.starts_with(b"\x89PNG"), "{p}");
        }
    }
}

#[test]
fn arms_see_the_same_batches_and_masks() {
    // The rewired arm is the original file itself: with the same data
    // order, augmentation and dropout masks, every number must match.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = quick(dir.path(), BackendKind::OrtCpu);
    opts.recipe.flip = true;
    opts.recipe.crop_pad = 1;
    opts.seeds = vec![5, 6];
    opts.arms = vec![Arm::File { path: small_cnn() }];
    let Some(report) = run(&opts) else { return };
    for seed in [5, 6] {
        let get = |arm: &str| {
            report
                .runs
                .iter()
                .find(|r| r.arm == arm && r.seed == seed)
                .unwrap()
        };
        assert_eq!(get("original").epochs.len(), 2);
        let strip = |r: &pa_onnx::compare::RunRecord| {
            (
                r.epochs
                    .iter()
                    .map(|e| (e.train_loss, e.test_acc, e.test_loss))
                    .collect::<Vec<_>>(),
                r.steps.clone(),
            )
        };
        assert_eq!(strip(get("original")), strip(get("rewired")));
    }
    let final_acc = report
        .summary
        .metrics
        .iter()
        .find(|m| m.metric == "final_test_loss")
        .unwrap();
    assert_eq!(final_acc.paired[0].test.ties, 2);
    // Different seeds do give different runs.
    let a = report.runs.iter().find(|r| r.seed == 5).unwrap();
    let b = report.runs.iter().find(|r| r.seed == 6).unwrap();
    assert_ne!(a.epochs[0].train_loss, b.epochs[0].train_loss);
}

#[test]
fn a_rerun_resumes_and_a_changed_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = quick(dir.path(), BackendKind::OrtCpu);
    let Some(first) = run(&opts) else { return };
    // An interrupted comparison: one finished run is lost.
    let lost = dir.path().join("runs/pa-seed1.json");
    std::fs::remove_file(&lost).unwrap();
    let pending = Mutex::new(None);
    let report = compare(&opts, &["test".into()], &|e| {
        if let Event::Planned { pending: p, .. } = e {
            *pending.lock().unwrap() = Some(p);
        }
    })
    .unwrap();
    assert_eq!(
        *pending.lock().unwrap(),
        Some(1),
        "only the lost run is trained again"
    );
    // Same seed, same thread count: the retrained run is the same to the bit.
    let strip = |r: &CompareReport| {
        r.runs
            .iter()
            .map(|r| {
                (
                    r.seed,
                    r.arm.clone(),
                    r.epochs
                        .iter()
                        .map(|e| (e.train_loss, e.test_loss, e.test_acc))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&report));
    // More seeds extend the comparison and keep the finished runs.
    let mut more = opts.clone();
    more.seeds = vec![0, 1, 2, 3];
    let n = Mutex::new(0);
    compare(&more, &[], &|e| {
        if let Event::Finished(_) = e {
            *n.lock().unwrap() += 1;
        }
    })
    .unwrap();
    assert_eq!(*n.lock().unwrap(), 2);
    // Another learning rate is another experiment.
    let mut other = opts.clone();
    other.recipe.lr = 0.01;
    match compare(&other, &[], &|_| {}) {
        Err(e @ CompareError::ConfigChanged { .. }) => {
            assert!(e.to_string().contains("recipe.lr"), "{e}");
            assert!(e.hint().unwrap().contains("--out"));
        }
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.runs.len())),
    }
}

#[test]
fn a_diverging_run_is_recorded_and_the_comparison_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = quick(dir.path(), BackendKind::OrtCpu);
    opts.recipe.lr = 1e12;
    opts.recipe.momentum = 0.0;
    opts.seeds = vec![0, 1];
    let Some(report) = run(&opts) else { return };
    assert_eq!(report.runs.len(), 4);
    let diverged: Vec<_> = report
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Diverged)
        .collect();
    assert!(!diverged.is_empty(), "a learning rate of 1e12 must diverge");
    for r in &diverged {
        assert!(r.diverged_at.is_some());
        assert!(report.summary.diverged[&r.arm].contains(&r.seed));
    }
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("Diverged"));
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(
        !json.contains("NaN") && !json.contains("inf"),
        "report.json must stay valid JSON"
    );
}

#[test]
fn the_portable_graph_compares_on_tract() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = quick(dir.path(), BackendKind::Tract);
    opts.seeds = vec![0];
    opts.recipe.epochs = 1;
    let report = run(&opts).expect("tract is built in");
    assert_eq!(report.runs.len(), 2);
    assert!(report.runs.iter().all(|r| r.status == RunStatus::Finished));
}

/// Writes a `.npy` file of f32 or i64 values.
fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

fn bad_data_error(dir: &Path, data: &str) -> String {
    let out = dir.join("out");
    let opts = CompareOptions::new(small_cnn(), data, out.clone(), 2);
    let err = compare(&opts, &[], &|_| panic!("no run may start on bad data"))
        .expect_err("bad data is refused");
    assert!(matches!(err, CompareError::Data(_)), "{err}");
    assert!(!out.join("runs").exists(), "nothing is written on bad data");
    err.to_string()
}

#[test]
fn bad_data_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f32s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
            .collect()
    };
    let i64s = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    // Samples of the wrong shape: 7x7 images for an 8x8 model.
    npy(&d.join("x7.npy"), "<f4", &[100, 1, 7, 7], &f32s(100 * 49));
    npy(&d.join("y.npy"), "<i8", &[100], &i64s(&[3; 100]));
    let e = bad_data_error(
        d,
        &format!(
            "{},{}",
            d.join("x7.npy").display(),
            d.join("y.npy").display()
        ),
    );
    assert!(e.contains("7") && e.contains("8"), "{e}");
    // A label beyond the model's 10 outputs.
    npy(&d.join("x.npy"), "<f4", &[100, 1, 8, 8], &f32s(100 * 64));
    let mut labels = vec![1i64; 100];
    labels[42] = 10;
    npy(&d.join("y10.npy"), "<i8", &[100], &i64s(&labels));
    let e = bad_data_error(
        d,
        &format!(
            "{},{}",
            d.join("x.npy").display(),
            d.join("y10.npy").display()
        ),
    );
    assert!(e.contains("10"), "{e}");
    // A truncated file.
    let full = std::fs::read(d.join("x.npy")).unwrap();
    std::fs::write(d.join("cut.npy"), &full[..full.len() / 2]).unwrap();
    let e = bad_data_error(
        d,
        &format!(
            "{},{}",
            d.join("cut.npy").display(),
            d.join("y.npy").display()
        ),
    );
    assert!(e.contains("cut.npy"), "{e}");
}

fn pa() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_pa-onnx"))
}

fn ort_available() -> bool {
    let o = pa().args(["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["ort"]["available"] == true
}

#[test]
fn ctrl_c_keeps_finished_runs_and_the_rerun_resumes() {
    if !ort_available() {
        eprintln!("SKIPPED interrupted compare: ONNX Runtime is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = small_cnn();
    let args = [
        "compare",
        model.to_str().unwrap(),
        "--data",
        "synthetic",
        "--synthetic-size",
        "3072,64",
        "--seeds",
        "4",
        "--epochs",
        "2",
        "--batch",
        "32",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut child = pa()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runs = out.join("runs");
    let start = std::time::Instant::now();
    while std::fs::read_dir(&runs).map_or(0, |d| d.count()) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "compare ended before the first run finished"
        );
        assert!(
            start.elapsed().as_secs() < 120,
            "no run finished in two minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!kept.is_empty() && kept.len() < 8, "{kept:?}");
    for f in &kept {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(".json"), "a staging file was left: {name}");
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(rec["status"], "finished");
    }
    let o = pa().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "resuming: {} of 8 runs already finished",
            kept.len()
        )),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("better on"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 8);
}

#[test]
fn the_command_refuses_bad_data_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = pa()
        .args(["compare", small_cnn().to_str().unwrap(), "--data"])
        .arg(dir.path().join("missing.npz"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: data:"), "{err}");
    assert!(
        err.contains("missing.npz") && err.contains("hint:"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on bad data");
    let o = pa()
        .args([
            "compare",
            small_cnn().to_str().unwrap(),
            "--data",
            "synthetic",
            "--arms",
            "nonsense",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown arm `nonsense`"));
}

#[test]
fn saved_models_differ_from_the_input_only_in_trained_tensors() {
    use pa_onnx::onnx::pb::ModelProto;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = quick(dir.path(), BackendKind::Tract);
    opts.seeds = vec![0];
    opts.recipe.epochs = 1;
    opts.save_models = true;
    let report = run(&opts).expect("tract is built in");
    let input = std::fs::read(small_cnn()).unwrap();
    let blank = |bytes: &[u8]| {
        let mut m = ModelProto::decode(bytes).unwrap();
        let g = m.graph.as_mut().unwrap();
        let mut payloads = std::collections::BTreeMap::new();
        for t in &mut g.initializer {
            payloads.insert(t.name.clone(), std::mem::take(&mut t.raw_data));
        }
        (m.encode_to_vec(), payloads)
    };
    let (frame, before) = blank(&input);
    for arm in ["original", "pa"] {
        let saved = std::fs::read(dir.path().join(format!("models/{arm}-seed0.onnx"))).unwrap();
        assert_eq!(saved.len(), input.len());
        let (saved_frame, after) = blank(&saved);
        assert_eq!(saved_frame, frame, "{arm}: only payloads may change");
        for name in ["conv1.weight", "fc2.bias", "bn1.running_mean"] {
            assert_ne!(before[name], after[name], "{arm}: {name} was trained");
        }
        assert_eq!(before["dropout.ratio"], after["dropout.ratio"]);
    }
    assert_eq!(report.runs.len(), 2);
}

#[test]
fn a_model_exported_for_batch_one_trains_at_another_batch_size() {
    // The TorchScript export of this CNN fixes the batch axis at 1.
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/torch/cnn_bn_unfused.onnx");
    let mut opts = CompareOptions::new(model, "synthetic", dir.path().to_path_buf(), 1);
    opts.backend = BackendKind::Tract;
    opts.recipe.batch = 16;
    opts.recipe.epochs = 1;
    opts.data.synthetic_size = (64, 32);
    let report = run(&opts).expect("tract is built in");
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[0].epochs[0].step, 4);
    assert_eq!(report.data.sample_shape, [1, 28, 28]);
}

/// Runs the CLI's `compare` with the quick settings into `out`, plus `extra`.
fn cli_compare(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let model = small_cnn();
    let mut c = pa();
    c.args([
        "compare",
        model.to_str().unwrap(),
        "--data",
        "synthetic",
        "--synthetic-size",
        "256,64",
    ])
    .args([
        "--seeds",
        "3",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--threads",
        "1",
        "--backend",
        "tract",
    ])
    .arg("--out")
    .arg(out)
    .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A run's arm, seed, and per epoch its training loss, test loss and accuracy.
type RunNumbers = (String, u64, Vec<(f64, f64, f64)>);

fn numbers(dir: &Path) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let mut runs: Vec<RunNumbers> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let epochs = x["epochs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["train_loss"].as_f64().unwrap(),
                        e["test_loss"].as_f64().unwrap(),
                        e["test_acc"].as_f64().unwrap(),
                    )
                })
                .collect();
            (
                x["arm"].as_str().unwrap().to_string(),
                x["seed"].as_u64().unwrap(),
                epochs,
            )
        })
        .collect();
    runs.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    serde_json::json!({"runs": runs, "summary": r["summary"]})
}

#[test]
fn shards_merged_equal_the_unsharded_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
    };
    ok(cli_compare(&d.join("full"), &[], &[]));
    ok(cli_compare(&d.join("s0"), &["--shard", "0/3"], &[]));
    let o = cli_compare(
        &d.join("s1"),
        &["--shard", "auto/3"],
        &[("PA_ONNX_SHARD_INDEX", "1")],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("index from PA_ONNX_SHARD_INDEX"));
    ok(o);
    assert!(
        !d.join("s1/report.json").exists(),
        "a shard leaves the report to merge"
    );
    let merge = |dirs: &[&str], extra: &[&str]| {
        let mut c = pa();
        c.args(["compare", "merge"]);
        for x in dirs {
            c.arg(d.join(x));
        }
        c.arg("--out")
            .arg(d.join("merged"))
            .args(extra)
            .output()
            .unwrap()
    };
    // Shard 2 has not run: its runs are missing.
    let o = merge(&["s0", "s1"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("2 runs are missing") && err.contains("--allow-missing"),
        "{err}"
    );
    ok(merge(&["s0", "s1"], &["--allow-missing"]));
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("merged/report.json")).unwrap()).unwrap();
    assert_eq!(partial["missing"].as_array().unwrap().len(), 2);
    ok(cli_compare(&d.join("s2"), &["--shard", "2/3"], &[]));
    ok(merge(&["s0", "s1", "s2"], &[]));
    assert_eq!(numbers(&d.join("merged")), numbers(&d.join("full")));
    // A run in two folders with different results.
    std::fs::create_dir_all(d.join("tampered/runs")).unwrap();
    for f in ["config.json", "plan.json"] {
        std::fs::copy(d.join("s0").join(f), d.join("tampered").join(f)).unwrap();
    }
    let name = std::fs::read_dir(d.join("s0/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let text = std::fs::read_to_string(d.join("s0/runs").join(&name)).unwrap();
    let changed = text
        .replacen("\"test_acc\": ", "\"test_acc\": 0.0123", 1)
        .replacen("0.01230.", "0.0123", 1);
    assert_ne!(changed, text);
    std::fs::write(d.join("tampered/runs").join(&name), changed).unwrap();
    let o = merge(&["s0", "tampered"], &["--allow-missing"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("with different results"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A shard of another comparison.
    ok(cli_compare(
        &d.join("other"),
        &["--shard", "1/3", "--lr", "0.01"],
        &[],
    ));
    let o = merge(&["s0", "other"], &["--allow-missing"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not shards of one comparison") && err.contains("recipe.lr"),
        "{err}"
    );
}
