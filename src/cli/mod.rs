//! The command line: argument definitions and dispatch. Each subcommand's
//! module resolves its options, calls the library and prints; none of them
//! exits the process, they return a [`Status`].

mod clean;
mod compare;
mod doctor;
mod inspect;
mod printer;
mod rewire;
mod signals;
mod train_graph;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use printer::Printer;

/// A command's outcome: the library's typed errors (of whichever stage
/// failed) meet here and become one message and exit status 2.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done and every check passed.
    Ok,
    /// A check ran and failed (exit 1).
    CheckFailed,
}

/// Preferential-attachment rewiring of the initial weights of ONNX models.
#[derive(Debug, Parser)]
#[command(name = "pa-onnx", version, about, long_about = None)]
pub struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the dense and convolution weights of a model, and what is skipped and why.
    Inspect(inspect::Args),
    /// Rewire the weights of a model into a new file.
    Rewire(rewire::Args),
    /// Prove that CANDIDATE holds ORIGINAL's model with permuted weights.
    Verify(verify::Args),
    /// Show which inference backends are available, and where ONNX Runtime was found.
    Doctor(doctor::Args),
    /// Write the training graph of a model (loss and gradients in plain ONNX).
    TrainGraph(train_graph::Args),
    /// Remove the staging files that killed runs left in a folder.
    Clean(clean::Args),
    Compare(compare::Args),
}

/// Runs the command line and turns its outcome into an exit status:
/// 0 success, 1 a check failed, 2 usage, input or I/O error; 130, 143
/// and 129 when SIGINT, SIGTERM or SIGHUP interrupted it (see [`signals`]).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let printer = Printer::new(cli.quiet);
    signals::install(printer.clone());
    let result: Result<Status> = match cli.command {
        Command::Inspect(a) => inspect::run(a, &printer).map_err(Into::into),
        Command::Rewire(a) => rewire::run(a, &printer).map_err(Into::into),
        Command::Verify(a) => verify::run(a, &printer).map_err(Into::into),
        Command::Doctor(a) => doctor::run(a, &printer).map_err(Into::into),
        Command::TrainGraph(a) => train_graph::run(a, &printer),
        Command::Clean(a) => clean::run(a, &printer).map_err(Into::into),
        Command::Compare(a) => compare::run(a, &printer),
    };
    match result {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            printer.error(e.as_ref());
            ExitCode::from(2)
        }
    }
}

pub use pa_onnx::fs::{parent_dir, write_atomically};
pub use signals::warn_stale;
