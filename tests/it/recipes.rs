//! The job-runner recipes in `docs/recipes/` run as written: each one's
//! shard and merge commands are executed here, with the runner's index
//! variable set as the runner would set it, on a small synthetic
//! comparison, and the merged report must hold every run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pa-onnx")
}

fn recipe(name: &str) -> String {
    std::fs::read_to_string(root().join("docs/recipes").join(name)).unwrap()
}

fn sh(script: &str, env: &[(&str, String)]) {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The merged report holds every run of `seeds` x 2 arms and nothing is missing.
fn merged(dir: &Path, seeds: usize) {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["runs"].as_array().unwrap().len(), seeds * 2);
    assert!(r["missing"].as_array().unwrap().is_empty());
}

/// The shell command that starts with `pa-onnx compare` in a YAML recipe,
/// with its folded continuation lines, as one line.
fn yaml_command(text: &str, start: &str) -> String {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(start));
    let first = lines.next().unwrap().trim().to_string();
    let rest: Vec<String> = lines
        .take_while(|l| {
            !l.trim_start().starts_with("- ") && !l.trim().ends_with(':') && !l.trim().is_empty()
        })
        .map(|l| l.trim().to_string())
        .collect();
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_slurm_recipe_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap().to_string();
    let env = |task: &str| {
        vec![
            ("PA_ONNX", bin().to_string()),
            ("OUT", out.clone()),
            ("SEEDS", "2".into()),
            ("EPOCHS", "1".into()),
            ("SLURM_ARRAY_TASK_ID", task.into()),
            ("SLURM_CPUS_PER_TASK", "1".into()),
        ]
    };
    let shard = recipe("slurm.sbatch");
    assert!(shard.contains("#SBATCH --array=0-3") && shard.contains("--shard \"auto/$SHARDS\""));
    for task in ["0", "1", "2", "3"] {
        sh(&shard, &env(task));
    }
    sh(&recipe("slurm-merge.sbatch"), &env("0"));
    merged(&dir.path().join("merged"), 2);
}

#[test]
fn the_kubernetes_and_github_actions_recipes_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let small = |cmd: String| {
        cmd.replace("pa-onnx ", &format!("{} ", bin()))
            .replace("--seeds 20", "--seeds 2 --epochs 1 --synthetic-size 256,64")
            .replace(
                "--seeds 8 --epochs 2",
                "--seeds 2 --epochs 1 --synthetic-size 256,64",
            )
    };
    // Kubernetes: the Indexed Job's command with JOB_COMPLETION_INDEX set per
    // pod, the volume replaced by a folder, then the merge Job's command.
    let k8s = small(yaml_command(
        &recipe("k8s-indexed-job.yaml"),
        "pa-onnx compare",
    ))
    .replace("/work/model.onnx", "models/compare/small_cnn.onnx")
    .replace("/work/data.npz", "synthetic")
    .replace("/work/runs", &format!("{d}/k8s"));
    for k in 0..4 {
        sh(&k8s, &[("JOB_COMPLETION_INDEX", k.to_string())]);
    }
    let merge = recipe("k8s-merge-job.yaml");
    let merge = merge
        .lines()
        .find(|l| l.contains("pa-onnx compare merge"))
        .unwrap()
        .split('"')
        .find(|p| p.contains("pa-onnx compare merge"))
        .unwrap()
        .replace("pa-onnx ", &format!("{} ", bin()))
        .replace("/work/runs", &format!("{d}/k8s"));
    sh(&merge, &[]);
    merged(&dir.path().join("k8s/merged"), 2);
    // GitHub Actions: each matrix entry's step, then the merge job's step
    // over the artifacts laid out as download-artifact lays them.
    let gha = recipe("github-actions.yml");
    let step =
        small(yaml_command(&gha, "pa-onnx compare models")).replace("runs/", &format!("{d}/gha/"));
    for k in 0..4 {
        sh(&step.replace("${{ matrix.shard }}", &k.to_string()), &[]);
    }
    let merge = gha
        .lines()
        .find(|l| l.contains("pa-onnx compare merge"))
        .unwrap()
        .trim()
        .trim_start_matches("- run: ")
        .replace("pa-onnx ", &format!("{} ", bin()))
        .replace("runs/", &format!("{d}/gha/"));
    sh(&merge, &[]);
    merged(&dir.path().join("gha/merged"), 2);
}

#[test]
fn the_gnu_parallel_recipe_runs_as_written() {
    if Command::new("parallel").arg("--version").output().is_err() {
        eprintln!("SKIPPED GNU parallel recipe: `parallel` is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = recipe("parallel.sh").replace(
        "--seeds 8 --epochs 2",
        "--seeds 2 --epochs 1 --synthetic-size 256,64",
    );
    sh(
        &script,
        &[
            ("PA_ONNX", bin().to_string()),
            ("OUT", dir.path().to_str().unwrap().to_string()),
        ],
    );
    merged(&dir.path().join("merged"), 2);
}
