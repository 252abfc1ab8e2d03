//! Interrupted runs: SIGINT and SIGTERM take back the staging files and
//! exit 130 and 143; what a SIGKILL leaves is reported by the next run
//! and removed by `pa-onnx clean`. (The registry under the signal handler,
//! and so `train-graph`'s small write, is unit-tested in `src/staging.rs`:
//! that write is over before a test could catch it.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::*;

/// Big enough that rewiring it takes a good part of a second, small
/// enough to make in a moment: 12 layers of 1024 x 1024 floats, 48 MiB.
const LAYERS: usize = 12;
const WIDTH: usize = 1024;

fn pa() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pa-onnx"));
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The staging files in `dir`.
fn staging_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(".pa-onnx-") && name.ends_with(".tmp")
        })
        .collect()
}

/// Starts `rewire` of a large model into `out_dir`, and sends `signal` as
/// soon as its first staging file is there.
fn rewire_interrupted(dir: &Path, out_dir: &Path, signal: i32) -> Output {
    let model = pa_onnx::synth::external_mlp(dir, "big.onnx", LAYERS, WIDTH).unwrap();
    let out = out_dir.join("big.onnx");
    let mut child: Child = pa()
        .args(["rewire", s(&model), s(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while staging_files(out_dir).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "rewire ended before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no staging file");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: sends a signal to our own child, which has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    child.wait_with_output().unwrap()
}

fn interrupt_removes_staging_files(signal: i32, name: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let o = rewire_interrupted(dir.path(), &out_dir, signal);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    let line = format!("interrupted by {name}: removed ");
    assert!(err.contains(&line), "{err}");
    let removed: usize = err
        .split(&line)
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(removed >= 1, "{err}");
    assert_eq!(staging_files(&out_dir), Vec::<PathBuf>::new());
}

#[test]
fn sigint_during_rewire_removes_staging_files_and_exits_130() {
    interrupt_removes_staging_files(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_during_rewire_removes_staging_files_and_exits_143() {
    interrupt_removes_staging_files(libc::SIGTERM, "SIGTERM", 143);
}

#[test]
fn sighup_during_rewire_removes_staging_files_and_exits_129() {
    interrupt_removes_staging_files(libc::SIGHUP, "SIGHUP", 129);
}

#[test]
fn after_a_sigkill_the_next_run_reports_the_leftover_and_clean_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let o = rewire_interrupted(dir.path(), &out_dir, libc::SIGKILL);
    assert_eq!(o.status.code(), None, "killed by a signal");
    let leftovers = staging_files(&out_dir);
    assert!(!leftovers.is_empty());

    // A staging file of a process still running (this one) and another
    // file: neither is stale.
    let live = out_dir.join(format!(".pa-onnx-{}-AbC123.tmp", std::process::id()));
    std::fs::write(&live, b"live").unwrap();
    let other = write_temp(&out_dir, "notes.txt", b"keep");

    let small = write_temp(dir.path(), "mlp.onnx", &mlp(8, 6, 3));
    let o = pa()
        .args(["rewire", s(&small), s(&out_dir.join("mlp.onnx"))])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.starts_with("warning: "), "{err}");
    for l in &leftovers {
        assert!(err.contains(s(l)), "{err}");
    }
    assert!(!err.contains(s(&live)), "{err}");
    assert!(
        err.contains(&format!("pa-onnx clean {}", s(&out_dir))),
        "{err}"
    );

    let o = pa().args(["clean", s(&out_dir)]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for l in &leftovers {
        assert!(text.contains(s(l)), "{text}");
        assert!(!l.exists());
    }
    assert_eq!(staging_files(&out_dir), vec![live.clone()]);
    assert!(other.exists() && out_dir.join("mlp.onnx").exists());

    // --all takes any staging file, and still nothing else.
    let o = pa().args(["clean", "--all", s(&out_dir)]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!live.exists() && other.exists());
}

#[test]
fn clean_of_a_folder_that_does_not_exist_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = pa()
        .args(["clean", s(&dir.path().join("missing"))])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}
