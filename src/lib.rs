//! pa-onnx: preferential-attachment rewiring of the initial weights of ONNX
//! models, exact to the byte.
//!
//! Data flows one way: [`onnx`] reads a model without copying payloads,
//! [`plan`] locates the dense and convolution weights and their matrix view,
//! [`rewire`] rearranges each weight's values (as order keys), [`pipeline`]
//! writes the patched file through [`onnx::patch`], and [`verify`] proves the
//! result is a permutation of the input (and runs it, through [`backend`]).

#![warn(missing_docs)]

pub mod backend;
pub mod budget;
pub mod digest;
pub mod error;
pub mod fs;
pub(crate) mod npz;
pub mod onnx;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod rewire;
mod sort;
pub(crate) mod stats;
pub mod synth;
pub mod train;
pub mod verify;

pub use error::{Error, Result};
pub use pipeline::{rewire_file, rewire_tensor, Payload, RewireOptions};
pub use plan::{locate, Plan, Selection};
