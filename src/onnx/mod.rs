//! Reading ONNX files without copying their payloads, and writing them back
//! with only chosen payload bytes replaced.

pub mod dtype;
pub mod external;
pub mod model;
pub mod patch;
pub mod payload;
pub mod pb;
mod parse;
pub mod wire;

pub use dtype::DataType;
pub use model::{Graph, GraphKind, Model, Node, Storage, Tensor, TensorOwner};
