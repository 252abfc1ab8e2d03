//! All terminal output goes through one printer, which knows whether the
//! user asked for quiet and renders errors as `error:` with their cause
//! chain and a hint.

use std::io::{IsTerminal, Write};

pub struct Printer {
    quiet: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Self {
        Printer { quiet }
    }

    /// Normal output, on stdout, unless quiet.
    pub fn out(&self, text: &str) {
        if !self.quiet {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{text}");
        }
    }

    /// Machine-readable output: always printed, quiet or not.
    pub fn json<T: serde::Serialize>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).expect("reports serialize");
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{text}");
    }

    /// Whether a progress bar makes sense (stderr is a terminal).
    pub fn progress_allowed(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    pub fn error(&self, e: &(dyn std::error::Error + 'static)) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            let _ = writeln!(err, "  Caused by: {s}");
            source = s.source();
        }
        if let Some(lib) = e.downcast_ref::<pa_onnx::Error>() {
            if let Some(h) = lib.hint() {
                let _ = writeln!(err, "hint: {h}");
            }
        }
    }
}
