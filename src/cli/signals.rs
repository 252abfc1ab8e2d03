//! What an interrupted run does: a CI timeout's SIGTERM, a terminal's
//! Ctrl-C (SIGINT) or a closed terminal's SIGHUP would otherwise leave the
//! staging files, as large as the model, beside the output. The first
//! signal removes every staging file not yet renamed into place, says so
//! and exits 128 + the signal's number; a second one while that runs ends
//! the process at once. Also the report of staging files that a killed
//! run (SIGKILL, which cannot be handled) left behind.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::Printer;

/// The signals that interrupt a run, with their names.
const HANDLED: [(i32, &str); 3] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")];

/// Installs the handlers: a thread waits for the first signal, cleans up
/// and exits. Where they cannot be installed, signals keep their default
/// action (the run stops and its staging files stay for `pa-onnx clean`).
pub fn install(printer: Printer) {
    let cleaning = Arc::new(AtomicBool::new(false));
    for (sig, _) in HANDLED {
        // Order matters: the shutdown checks the flag before this signal
        // sets it, so only a second signal ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, cleaning.clone());
        let _ = signal_hook::flag::register(sig, cleaning.clone());
    }
    let Ok(mut signals) = Signals::new(HANDLED.map(|(sig, _)| sig)) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let removed = pa_onnx::staging::interrupt();
            let name = HANDLED
                .iter()
                .find(|(s, _)| *s == sig)
                .map_or("a signal", |(_, n)| n);
            printer.notice(&format!(
                "interrupted by {name}: removed {removed} staging file(s)"
            ));
            exit_now(128 + sig);
        }
    });
}

/// Ends the process from the signal thread. `std::process::exit` would run
/// the C library's exit handlers, which tear down ONNX Runtime's globals
/// while other threads may still be inside a session (a training run of
/// `compare`), and the process then dies of a crash instead of exiting
/// with its status. The staging files are already removed and stderr is
/// unbuffered; stdout is flushed first.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    #[cfg(target_os = "linux")]
    // SAFETY: _exit only ends the process; it touches no Rust state.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(target_os = "linux"))]
    std::process::exit(code)
}

/// Warns about staging files in `dir` that processes no longer running
/// left behind, with their sizes and how to remove them.
pub fn warn_stale(printer: &Printer, dir: &Path) {
    let Ok(stale) = pa_onnx::staging::stale_in(dir, false) else {
        return;
    };
    if stale.is_empty() {
        return;
    }
    let total: u64 = stale.iter().map(|l| l.size).sum();
    let mut text = format!(
        "{} staging file(s) of earlier runs that were killed, {} in all:",
        stale.len(),
        size(total)
    );
    for l in &stale {
        text.push_str(&format!("\n  {} ({})", l.path.display(), size(l.size)));
    }
    text.push_str(&format!(
        "\nhint: remove them with `pa-onnx clean {}`",
        dir.display()
    ));
    printer.warn(&text);
}

/// A size as people read it (binary units, as `ls -h` and `du -h` use).
pub fn size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
