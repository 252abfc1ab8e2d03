//! `pa-onnx clean DIR`: remove the staging files that killed runs left in
//! a folder (a run stopped by SIGKILL cannot remove its own).

use std::path::PathBuf;

use pa_onnx::Error;

use super::signals::size;
use super::{Printer, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to clean (its files only, not its subfolders).
    dir: PathBuf,
    /// Remove every staging file, also those of runs still going and of
    /// older versions, whose names do not say which process made them.
    #[arg(long)]
    all: bool,
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    let found = pa_onnx::staging::stale_in(&args.dir, args.all).map_err(|source| Error::Io {
        action: "cannot list",
        path: args.dir.clone(),
        source,
    })?;
    let mut removed = 0;
    let mut bytes = 0;
    for l in found {
        std::fs::remove_file(&l.path).map_err(|source| Error::Io {
            action: "cannot remove",
            path: l.path.clone(),
            source,
        })?;
        p.out(&format!("removed {} ({})", l.path.display(), size(l.size)));
        removed += 1;
        bytes += l.size;
    }
    p.out(&format!(
        "removed {removed} staging file(s), {} in all",
        size(bytes)
    ));
    Ok(Status::Ok)
}
