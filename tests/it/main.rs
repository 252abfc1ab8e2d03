//! The integration tests: one binary, a module per stage of the data flow.
//!
//! One binary links the crate once, and the modules share the fixtures.
//! A new test goes in the module of the stage it checks:
//!
//! - `locate`: which tensors are weights and the matrix view of each
//!   (docs/algorithm.md section 1), on hand-built graphs and committed
//!   exports.
//! - `algorithm`: the rewiring math itself, on matrices: the invariants of
//!   docs/algorithm.md sections 2-5 and the statistical effect against the
//!   reference figures.
//! - `roundtrip`: exactness of reading and writing whole files: an identity
//!   write is byte-identical, a rewrite changes only rewired payloads, and
//!   the structural proof on files pa-onnx did not write. It also lists the
//!   committed models for other modules (`committed_models`).
//! - `hostile`: broken, malicious and degenerate input (truncated files,
//!   lying shapes, escaping external data, NaN weights, fuzz regressions):
//!   a named error or a correct result, never a panic, nothing left on disk.
//! - `exporters`: the committed models of other frameworks against their
//!   `models/manifest_<family>.json`, and onnx.checker on rewired files.
//! - `backend`: the inference backends (tract, ONNX Runtime on CPU and CUDA)
//!   and inference verification, on tiny models with hand-computed outputs.
//! - `cli`: the `pa-onnx` binary as users run it: exit statuses, messages,
//!   options, and what is (not) left on disk. Library behaviour belongs in
//!   the module of its stage; a test here checks what the command line adds.
//! - `train`: training graphs against PyTorch autograd fixtures
//!   (`tests/fixtures/grads/`), the training loops and the two trainers.
//! - `train_rules`: the gradient rule of one operator, on a tiny model with
//!   a gradient worked out by hand, one file per operator under
//!   `train_rules/` (strided Slice, Gather, Max/Min), the shared tiny-model
//!   builder and runner in its `mod.rs`.
//! - `compare`: paired training runs (`pa-onnx compare`) on the committed
//!   small CNN and a synthetic task: the report's consistency, resuming,
//!   divergence, bad data, plots.
//! - `recipes`: the job-runner recipes of `docs/recipes/` (Slurm,
//!   Kubernetes, GitHub Actions, GNU parallel), run as written.
//! - `signals`: interrupted runs (SIGINT, SIGTERM, SIGHUP, SIGKILL): exit
//!   statuses, messages, and no staging file left; `pa-onnx clean`.
//! - `fixtures`: no tests; the byte-level ONNX encoder and the helpers that
//!   several modules share.

mod algorithm;
mod backend;
mod cli;
mod compare;
mod exporters;
mod fixtures;
mod hostile;
mod locate;
mod recipes;
pub mod roundtrip;
mod signals;
mod train;
mod train_rules;
