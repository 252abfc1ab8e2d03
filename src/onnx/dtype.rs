//! ONNX tensor element types (the `TensorProto.DataType` enumeration).
//!
//! Only the facts pa-onnx needs: the numeric code, a printable name, the
//! byte width in `raw_data`, and which packed field holds the type when the
//! payload is not raw.

/// An ONNX element type code, kept as the raw number so that types added by
/// future ONNX versions pass through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataType(pub i32);

/// Where a non-raw payload of a given type is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedField {
    /// `float_data` (field 4): little-endian f32 words.
    Float,
    /// `int32_data` (field 5): varints.
    Int32,
    /// `int64_data` (field 7): varints.
    Int64,
    /// `double_data` (field 10): little-endian f64 words.
    Double,
    /// `uint64_data` (field 11): varints.
    Uint64,
    /// `string_data` (field 6).
    String,
}

impl DataType {
    pub const FLOAT: DataType = DataType(1);
    pub const UINT8: DataType = DataType(2);
    pub const INT8: DataType = DataType(3);
    pub const INT32: DataType = DataType(6);
    pub const INT64: DataType = DataType(7);
    pub const STRING: DataType = DataType(8);
    pub const BOOL: DataType = DataType(9);
    pub const FLOAT16: DataType = DataType(10);
    pub const DOUBLE: DataType = DataType(11);
    pub const BFLOAT16: DataType = DataType(16);

    pub fn name(self) -> String {
        let s = match self.0 {
            1 => "float32",
            2 => "uint8",
            3 => "int8",
            4 => "uint16",
            5 => "int16",
            6 => "int32",
            7 => "int64",
            8 => "string",
            9 => "bool",
            10 => "float16",
            11 => "float64",
            12 => "uint32",
            13 => "uint64",
            14 => "complex64",
            15 => "complex128",
            16 => "bfloat16",
            17 => "float8e4m3fn",
            18 => "float8e4m3fnuz",
            19 => "float8e5m2",
            20 => "float8e5m2fnuz",
            21 => "uint4",
            22 => "int4",
            23 => "float4e2m1",
            24 => "float8e8m0",
            25 => "uint2",
            26 => "int2",
            0 => "undefined",
            other => return format!("dtype{other}"),
        };
        s.to_string()
    }

    /// Types pa-onnx rewires: real floating point of 16 bits or more.
    pub fn is_rewirable_float(self) -> bool {
        matches!(self.0, 1 | 10 | 11 | 16)
    }

    /// Bits per element in `raw_data`, when known.
    pub fn bits(self) -> Option<u64> {
        Some(match self.0 {
            1 | 6 | 12 => 32,
            2 | 3 | 9 | 17..=20 | 24 => 8,
            4 | 5 | 10 | 16 => 16,
            7 | 11 | 13 | 14 => 64,
            15 => 128,
            21..=23 => 4,
            25 | 26 => 2,
            _ => return None,
        })
    }

    /// Bytes per element for whole-byte types.
    pub fn byte_width(self) -> Option<usize> {
        self.bits().filter(|b| b % 8 == 0).map(|b| (b / 8) as usize)
    }

    /// Bytes `n` elements take in `raw_data` (sub-byte types are packed).
    pub fn raw_len(self, n: u64) -> Option<u64> {
        let bits = self.bits()?;
        n.checked_mul(bits).map(|b| b.div_ceil(8))
    }

    /// The typed field that holds this type when `raw_data` is not used, and
    /// how many entries of it one element takes (complex numbers take two).
    pub fn packed_field(self) -> Option<(PackedField, u64)> {
        Some(match self.0 {
            1 => (PackedField::Float, 1),
            14 => (PackedField::Float, 2),
            11 => (PackedField::Double, 1),
            15 => (PackedField::Double, 2),
            2..=6 | 9 | 10 | 16..=20 | 24 => (PackedField::Int32, 1),
            7 => (PackedField::Int64, 1),
            12 | 13 => (PackedField::Uint64, 1),
            8 => (PackedField::String, 1),
            _ => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}
