//! pa-onnx: preferential-attachment rewiring of the initial weights of ONNX
//! models, exact to the byte.
//!
//! Data flows one way, and each stage is a module that imports only the
//! stages before it:
//!
//! 1. [`onnx`] reads a model without copying its payloads, and writes a
//!    copy with chosen payloads replaced ([`onnx::patch`]);
//! 2. [`plan`] locates the dense and convolution weights and the matrix
//!    view of each;
//! 3. [`rewire`] is the method itself, pure functions over values and
//!    shapes (stated in `docs/algorithm.md`);
//! 4. [`pipeline`] drives read, plan, rewire and write for one file and
//!    makes the [`report`];
//! 5. [`verify`] proves that a file's weights are a permutation of
//!    another's, and runs both models through a [`backend`];
//! 6. [`train`] builds training graphs in plain ONNX and runs them;
//! 7. [`compare`] trains the original and the rewired model over seeds,
//!    paired, and reports whether rewiring helped.
//!
//! The usual entry points are re-exported here: [`rewire_file`] with
//! [`RewireOptions`], [`locate`] for the plan alone, and
//! [`verify::verify_files`]. `DESIGN.md` explains the design and has the
//! module map.
//!
//! ```no_run
//! use pa_onnx::{rewire_file, RewireOptions};
//! let report = rewire_file(
//!     "in.onnx".as_ref(),
//!     Some("out.onnx".as_ref()),
//!     &RewireOptions::default(),
//! )?;
//! println!("{} weights rewired", report.tensors.len());
//! # Ok::<(), pa_onnx::Error>(())
//! ```

#![deny(missing_docs)]

pub mod backend;
mod budget;
pub mod compare;
pub mod digest;
mod error;
pub mod fs;
pub(crate) mod npz;
pub mod onnx;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod rewire;
mod sort;
pub mod staging;
pub(crate) mod stats;
pub mod synth;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
pub use pipeline::{rewire_file, rewire_tensor, Payload, RewireOptions};
pub use plan::{locate, Plan, Selection};
