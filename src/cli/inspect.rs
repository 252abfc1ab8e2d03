//! `pa-onnx inspect`: what would be rewired, and what would not and why.

use std::path::PathBuf;

use pa_onnx::onnx::fmt_dims;
use pa_onnx::onnx::Model;
use pa_onnx::plan::{CopyLayout, TieGroup, TieKind, Tied};
use serde::Serialize;

use super::{Printer, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model to inspect.
    model: PathBuf,
    /// Print a JSON object instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tied: TiedArgs,
}

/// `--tied`, shared by `inspect` and `rewire`.
#[derive(Debug, Clone, clap::Args)]
pub struct TiedArgs {
    /// Tied weights (an output projection that is the token embedding):
    /// `rewire` gives the whole group one permutation, through the dense
    /// use (and `verify` requires the tie kept); `skip` treats the tensors
    /// as unrelated, leaving a table Gather reads as it is.
    #[arg(long, value_enum, default_value = "rewire")]
    tied: TiedArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TiedArg {
    /// Keep ties: one permutation for the whole group.
    Rewire,
    /// Treat tied tensors as unrelated (Gather-read tables are left alone).
    Skip,
}

impl TiedArgs {
    /// The library's setting.
    pub fn resolve(&self) -> Tied {
        match self.tied {
            TiedArg::Rewire => Tied::Rewire,
            TiedArg::Skip => Tied::Skip,
        }
    }
}

#[derive(Serialize)]
struct Json<'a> {
    model: String,
    ir_version: Option<i64>,
    producer: &'a str,
    opsets: Vec<serde_json::Value>,
    #[serde(flatten)]
    plan: &'a pa_onnx::Plan,
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    let model = Model::open(&args.model)?;
    let plan = pa_onnx::plan::locate_with(&model, args.tied.resolve())?;
    if args.json {
        p.json(&Json {
            model: args.model.display().to_string(),
            ir_version: model.ir_version,
            producer: &model.producer,
            opsets: model
                .opsets
                .iter()
                .map(|(d, v)| serde_json::json!({"domain": d, "version": v}))
                .collect(),
            plan: &plan,
        });
        return Ok(Status::Ok);
    }
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|(d, v)| format!("{}{v}", if d.is_empty() { "" } else { d }))
        .collect();
    p.out(&format!(
        "{}: ir_version {}, producer {:?}, opset {}",
        args.model.display(),
        model.ir_version.unwrap_or(0),
        model.producer,
        opsets.join(" ")
    ));
    let total: u64 = plan.weights.iter().map(|w| w.rows * w.cols).sum();
    p.out(&format!(
        "\nweights: {} ({} values)",
        plan.weights.len(),
        total
    ));
    let mut rows = vec![[
        "NAME".to_string(),
        "OP".into(),
        "DTYPE".into(),
        "SHAPE".into(),
        "ROWS x COLS".into(),
        "STORAGE".into(),
    ]];
    for w in &plan.weights {
        rows.push([
            w.name.clone(),
            w.op.clone(),
            w.dtype.name(),
            fmt_dims(&w.shape),
            format!(
                "{} x {}{}",
                w.rows,
                w.cols,
                if w.transposed { " (transposed)" } else { "" }
            ),
            w.storage.clone(),
        ]);
    }
    p.out(&table(&rows));
    if !plan.ties.is_empty() {
        p.out(&format!("\n{}", ties(&plan.ties)));
    }
    if !plan.skipped.is_empty() {
        p.out(&format!("\nskipped: {}", plan.skipped.len()));
        let mut rows = vec![["NAME".to_string(), "REASON".into()]];
        for s in &plan.skipped {
            rows.push([s.name.clone(), s.reason.clone()]);
        }
        p.out(&table(&rows));
    }
    Ok(Status::Ok)
}

/// The tied groups as a table: one row per member, saying which tensor
/// is rewired and how each copy is laid out relative to it.
pub fn ties(groups: &[TieGroup]) -> String {
    let mut rows = vec![[
        "TENSOR".to_string(),
        "TIED".into(),
        "LAYOUT".into(),
        "READ BY".into(),
    ]];
    for g in groups {
        for m in &g.members {
            let tied = match (m.tensor == g.tensor, g.kind) {
                (true, TieKind::Shared) => "rewired (one tensor)".to_string(),
                (true, TieKind::Folded) => "rewired".to_string(),
                (false, _) => format!("copy of {}", g.rewired),
            };
            let layout = match m.layout {
                CopyLayout::Same => "same",
                CopyLayout::Transposed => "transposed",
            };
            let readers: Vec<String> = m
                .read_by
                .iter()
                .map(|c| format!("{} `{}`", c.op, c.node))
                .collect();
            rows.push([m.name.clone(), tied, layout.into(), readers.join(", ")]);
        }
    }
    format!(
        "tied: {} group(s), each rewired once through its dense use; every copy gets the same permutation\n{}",
        groups.len(),
        table(&rows)
    )
}

/// Left-aligned columns, two spaces apart, indented.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (i, c) in r.iter().enumerate() {
            line.push(' ');
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$} ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}
