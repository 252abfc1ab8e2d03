//! All terminal output goes through one printer, which knows whether the
//! user asked for quiet and renders errors as `error:` with their cause
//! chain and a hint.

use std::io::{IsTerminal, Write};

/// The one way the command line writes to the terminal.
#[derive(Debug, Clone)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// A printer that prints nothing but errors when `quiet`.
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

    /// Progress of a long run, on stderr (stdout stays for results),
    /// unless quiet.
    pub fn info(&self, text: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    }

    /// A warning, on stderr, unless quiet.
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "warning: {text}");
        }
    }

    /// A line on stderr that is printed quiet or not (what an interrupted
    /// run did before it exited).
    pub fn notice(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// Whether a progress bar makes sense (stderr is a terminal).
    pub fn progress_allowed(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// Renders an error as uv does: one `error:` line, then each cause
    /// that says something new as `Caused by:`, then the hints of every
    /// error in the chain. A cause whose text its parent already quoted
    /// (an I/O error inside "cannot open x: ...") is not repeated.
    pub fn error(&self, e: &(dyn std::error::Error + 'static)) {
        let mut err = std::io::stderr().lock();
        let mut said = e.to_string();
        let _ = writeln!(err, "error: {said}");
        let mut hints = Vec::new();
        let mut current = Some(e);
        while let Some(cause) = current {
            let text = cause.to_string();
            if !said.contains(&text) {
                let _ = writeln!(err, "  Caused by: {text}");
                said.push('\n');
                said.push_str(&text);
            }
            for h in hints_of(cause) {
                if !hints.contains(&h) {
                    hints.push(h);
                }
            }
            current = cause.source();
        }
        for h in hints {
            let _ = writeln!(err, "hint: {h}");
        }
    }
}

/// The hints a library error carries, whichever stage's type it is.
fn hints_of(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(lib) = e.downcast_ref::<pa_onnx::Error>() {
        hints.extend(lib.hint());
    }
    if let Some(train) = e.downcast_ref::<pa_onnx::train::TrainError>() {
        hints.extend(train.hint());
    }
    if let Some(cmp) = e.downcast_ref::<pa_onnx::compare::CompareError>() {
        hints.extend(cmp.hint());
    }
    hints
}
