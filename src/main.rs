//! The `pa-onnx` command: parse, run, map the outcome to an exit status.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
