//! Element types as the raw ONNX type codes the training graph is written in.
//!
//! The builder reads and writes `elem_type`/`data_type` fields of the
//! protobuf directly, so it works with their `i32` codes; keeping every code
//! it names here leaves one place to change when the crate gets a single
//! element-type enum.

use crate::onnx::pb::DataType;

/// 32-bit float: parameters, gradients, losses.
pub(crate) const F32: i32 = DataType::Float as i32;
/// 64-bit integer: shapes, axes, class labels.
pub(crate) const I64: i32 = DataType::Int64 as i32;
/// Boolean: comparisons and masks.
pub(crate) const BOOL: i32 = DataType::Bool as i32;

pub(crate) fn is_float(dtype: i32) -> bool {
    dtype == F32
        || dtype == DataType::Double as i32
        || dtype == DataType::Float16 as i32
        || dtype == DataType::Bfloat16 as i32
}
