//! Models from other exporters (tf2onnx, jax2onnx, paddle2onnx, skl2onnx):
//! each `models/manifest_<family>.json` lists, per committed file, the
//! weights its export script found by walking the ONNX graph (and checked
//! against the framework's own parameters). For every file the locator must
//! agree exactly, rewiring must keep the structure with every real matrix
//! permuted, and the rewired file must pass onnx.checker (full_check) when a
//! Python with `onnx` is available. The PyTorch exports (models/manifest.json)
//! get the same checker step.

use std::path::{Path, PathBuf};
use std::process::Command;

use pa_onnx::onnx::Model;
use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::plan::locate;
use pa_onnx::verify::structure::compare_files;

const FAMILIES: [&str; 4] = ["keras", "jax", "paddle", "sklearn"];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

struct Expected {
    name: String,
    op: String,
    rows: u64,
    cols: u64,
    transposed: bool,
    axes: Option<Vec<usize>>,
}

struct Entry {
    path: PathBuf,
    weights: Vec<Expected>,
    not_weights: Vec<String>,
}

fn read_manifest(path: &Path, base: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            path: base.join(e["model"].as_str().unwrap()),
            weights: e["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| Expected {
                    name: w["name"].as_str().unwrap().to_string(),
                    op: w["op"].as_str().unwrap().to_string(),
                    rows: w["rows"].as_u64().unwrap(),
                    cols: w["cols"].as_u64().unwrap(),
                    transposed: w["transposed"].as_bool().unwrap(),
                    axes: w.get("axes").map(|a| {
                        a.as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_u64().unwrap() as usize)
                            .collect()
                    }),
                })
                .collect(),
            not_weights: e["not_weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_string())
                .collect(),
        })
        .collect()
}

/// The families whose manifest is present, with their entries.
fn family_manifests() -> Vec<(&'static str, Vec<Entry>)> {
    let root = models_dir();
    FAMILIES
        .iter()
        .filter_map(|f| {
            let m = root.join(format!("manifest_{f}.json"));
            if m.exists() {
                Some((*f, read_manifest(&m, &root)))
            } else {
                eprintln!("SKIPPED: {} not present", m.display());
                None
            }
        })
        .collect()
}

/// (a) The locator finds exactly the manifest's weights and orientations.
fn check_locate(e: &Entry) {
    let m = Model::open(&e.path).unwrap_or_else(|err| panic!("{}: {err}", e.path.display()));
    let p = locate(&m).unwrap();
    let mut want: Vec<_> = e
        .weights
        .iter()
        .map(|w| (w.name.clone(), w.op.clone(), w.rows, w.cols, w.transposed))
        .collect();
    let mut got: Vec<_> = p
        .weights
        .iter()
        .map(|w| (w.name.clone(), w.op.clone(), w.rows, w.cols, w.transposed))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(
        got,
        want,
        "{}: located weights (skipped: {:?})",
        e.path.display(),
        p.skipped
    );
    for w in &e.weights {
        if let Some(axes) = &w.axes {
            let found = p.weights.iter().find(|x| x.name == w.name).unwrap();
            assert_eq!(
                &found.axes,
                axes,
                "{}: axes of {}",
                e.path.display(),
                w.name
            );
        }
    }
    for name in &e.not_weights {
        assert!(
            p.skipped.iter().any(|s| &s.name == name),
            "{}: {name} should be skipped",
            e.path.display()
        );
    }
}

/// (b) Rewiring keeps the structure and permutes every real matrix.
fn check_rewire(e: &Entry, out: &Path) {
    rewire_file(&e.path, Some(out), &RewireOptions::default())
        .unwrap_or_else(|err| panic!("{}: {err}", e.path.display()));
    let s = compare_files(&e.path, out).unwrap();
    assert!(s.passed(), "{}: {:?}", e.path.display(), s.differences);
    for w in e.weights.iter().filter(|w| w.rows > 1 && w.cols > 1) {
        assert!(
            s.permuted.contains(&w.name),
            "{}: {} ({}x{}) not permuted; permuted: {:?}",
            e.path.display(),
            w.name,
            w.rows,
            w.cols,
            s.permuted
        );
    }
}

/// A Python interpreter that can import `onnx`: the repository's .venv
/// first, then python3 on PATH.
fn python_with_onnx() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let candidates = [venv, PathBuf::from("python3")];
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import onnx"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

const CHECKER: &str = "import sys, onnx\n\
for p in sys.argv[1:]:\n    onnx.checker.check_model(p, full_check=True)\n\
print('ok', len(sys.argv) - 1)\n";

/// (c) onnx.checker with full_check on the given files, in one subprocess.
/// Returns false (after saying so) when no Python with onnx exists.
fn onnx_check(files: &[PathBuf]) -> bool {
    let Some(py) = python_with_onnx() else {
        eprintln!("SKIPPED: onnx checker (no python onnx)");
        return false;
    };
    let out = Command::new(&py)
        .arg("-c")
        .arg(CHECKER)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx.checker failed ({}):\n{}{}",
        py.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "onnx checker passed on {} rewired files ({})",
        files.len(),
        py.display()
    );
    true
}

fn rewire_all(entries: &[Entry], dir: &Path) -> Vec<PathBuf> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let stem = e.path.file_name().unwrap().to_string_lossy();
            let out = dir.join(format!("{i}_{stem}"));
            check_rewire(e, &out);
            out
        })
        .collect()
}

#[test]
fn exporter_models_match_their_manifests() {
    let families = family_manifests();
    for (family, entries) in &families {
        assert!(!entries.is_empty(), "manifest_{family}.json is empty");
        for e in entries {
            check_locate(e);
        }
        eprintln!(
            "{family}: {} models located as in the manifest",
            entries.len()
        );
    }
}

#[test]
fn exporter_models_rewire_and_pass_the_onnx_checker() {
    let families = family_manifests();
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for (family, entries) in &families {
        let sub = dir.path().join(family);
        std::fs::create_dir_all(&sub).unwrap();
        outputs.extend(rewire_all(entries, &sub));
    }
    if !outputs.is_empty() {
        onnx_check(&outputs);
    }
}

#[test]
fn rewired_torch_exports_pass_the_onnx_checker() {
    let root = models_dir();
    let entries: Vec<Entry> = read_manifest(&root.join("manifest.json"), &root.join("torch"));
    assert!(entries.len() >= 10);
    let dir = tempfile::tempdir().unwrap();
    let outputs = rewire_all(&entries, dir.path());
    onnx_check(&outputs);
}
