//! Reading ONNX files without copying their payloads, and writing them back
//! with only chosen payload bytes replaced.
//!
//! The reader ([`Model::open`]) walks the protobuf wire format and records
//! where every tensor's payload lies; [`payload`] reads and compares those
//! payloads; [`patch`] writes a copy of the file with some payloads
//! replaced and every other byte as it was. [`pb`] holds plain prost
//! messages for the code that needs whole messages (training graphs,
//! tests), and [`wire`] the low-level field walk under all of it.

mod dtype;
mod external;
mod model;
mod parse;
pub mod patch;
pub mod payload;
pub mod pb;
pub mod wire;

pub use dtype::{DataType, PackedField};
pub use external::ExternalStore;
pub use model::{
    fmt_dims, AttrValue, Attribute, Bytes, Graph, GraphKind, Model, Node, Storage, Tensor,
    TensorOwner,
};
