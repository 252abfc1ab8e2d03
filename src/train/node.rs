//! Reading a model's nodes: attributes with their defaults, and the name an
//! error gives a node.
//!
//! Every operator rule reads attributes, and most fall back to the default
//! the ONNX spec states when an attribute is absent; as methods on the node
//! those reads say what they mean (`n.int_attr("axis", 0)`). The protobuf
//! type belongs to the ONNX module, so the methods come as an extension trait.

use crate::onnx::pb::{AttributeProto, NodeProto};
use crate::onnx::DataType;

use super::TrainError;

/// Attribute access and naming on a [`NodeProto`].
pub(crate) trait NodeExt {
    /// The attribute called `name`, if the node has it.
    fn attr(&self, name: &str) -> Option<&AttributeProto>;
    /// An integer attribute, or `default` when absent.
    fn int_attr(&self, name: &str, default: i64) -> i64;
    /// An element-type attribute (an ONNX type code), or `default` when absent.
    fn dtype_attr(&self, name: &str, default: DataType) -> DataType;
    /// A float attribute, or `default` when absent.
    fn float_attr(&self, name: &str, default: f32) -> f32;
    /// A list-of-integers attribute.
    fn ints_attr(&self, name: &str) -> Option<Vec<i64>>;
    /// A string attribute, decoded as UTF-8 (lossily).
    fn string_attr(&self, name: &str) -> Option<String>;
    /// A readable identity for the node in error messages.
    fn label(&self) -> String;
}

impl NodeExt for NodeProto {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }
    fn int_attr(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }
    fn dtype_attr(&self, name: &str, default: DataType) -> DataType {
        DataType::from_code(self.int_attr(name, default.code() as i64) as i32)
    }
    fn float_attr(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
    fn ints_attr(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
    fn string_attr(&self, name: &str) -> Option<String> {
        self.attr(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
    fn label(&self) -> String {
        if !self.name.is_empty() {
            self.name.clone()
        } else {
            format!(
                "<unnamed, output {}>",
                self.output.first().map(String::as_str).unwrap_or("?")
            )
        }
    }
}

/// The error for a node the builder cannot handle as it stands.
pub(crate) fn node_err(n: &NodeProto, msg: impl Into<String>) -> TrainError {
    TrainError::Node {
        node: n.label(),
        op: n.op_type.clone(),
        msg: msg.into(),
    }
}
