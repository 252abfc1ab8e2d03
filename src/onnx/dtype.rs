//! ONNX tensor element types (the `TensorProto.DataType` enumeration): the
//! one spelling of an element type in the whole crate.
//!
//! The protobuf messages carry the type as a raw `i32`; it becomes a
//! [`DataType`] where it is read ([`DataType::from_code`]) and goes back to
//! a number only where a message is written ([`DataType::code`]). Codes that
//! a later ONNX version adds survive as [`DataType::Other`], so a model
//! that uses them still passes through untouched.

/// An ONNX element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // The variants are the ONNX names.
pub enum DataType {
    Undefined,
    Float,
    Uint8,
    Int8,
    Uint16,
    Int16,
    Int32,
    Int64,
    String,
    Bool,
    Float16,
    Double,
    Uint32,
    Uint64,
    Complex64,
    Complex128,
    Bfloat16,
    Float8E4M3Fn,
    Float8E4M3Fnuz,
    Float8E5M2,
    Float8E5M2Fnuz,
    Uint4,
    Int4,
    Float4E2M1,
    Float8E8M0,
    Uint2,
    Int2,
    /// A code this version of pa-onnx does not know.
    Other(i32),
}

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

/// Every named type with its code and printable name, in code order.
const TABLE: [(DataType, i32, &str); 27] = [
    (DataType::Undefined, 0, "undefined"),
    (DataType::Float, 1, "float32"),
    (DataType::Uint8, 2, "uint8"),
    (DataType::Int8, 3, "int8"),
    (DataType::Uint16, 4, "uint16"),
    (DataType::Int16, 5, "int16"),
    (DataType::Int32, 6, "int32"),
    (DataType::Int64, 7, "int64"),
    (DataType::String, 8, "string"),
    (DataType::Bool, 9, "bool"),
    (DataType::Float16, 10, "float16"),
    (DataType::Double, 11, "float64"),
    (DataType::Uint32, 12, "uint32"),
    (DataType::Uint64, 13, "uint64"),
    (DataType::Complex64, 14, "complex64"),
    (DataType::Complex128, 15, "complex128"),
    (DataType::Bfloat16, 16, "bfloat16"),
    (DataType::Float8E4M3Fn, 17, "float8e4m3fn"),
    (DataType::Float8E4M3Fnuz, 18, "float8e4m3fnuz"),
    (DataType::Float8E5M2, 19, "float8e5m2"),
    (DataType::Float8E5M2Fnuz, 20, "float8e5m2fnuz"),
    (DataType::Uint4, 21, "uint4"),
    (DataType::Int4, 22, "int4"),
    (DataType::Float4E2M1, 23, "float4e2m1"),
    (DataType::Float8E8M0, 24, "float8e8m0"),
    (DataType::Uint2, 25, "uint2"),
    (DataType::Int2, 26, "int2"),
];

impl DataType {
    /// The type of an ONNX type code.
    pub fn from_code(code: i32) -> DataType {
        match usize::try_from(code).ok().and_then(|i| TABLE.get(i)) {
            Some(&(t, _, _)) => t,
            None => DataType::Other(code),
        }
    }

    /// The ONNX type code, as the protobuf messages carry it.
    pub fn code(self) -> i32 {
        match self {
            DataType::Other(code) => code,
            t => TABLE
                .iter()
                .find(|&&(u, _, _)| u == t)
                .map_or(0, |&(_, c, _)| c),
        }
    }

    /// The printable name (`float32`, `bfloat16`, ...; `dtypeN` for an
    /// unknown code N).
    pub fn name(self) -> String {
        match self {
            DataType::Other(code) => format!("dtype{code}"),
            t => TABLE[t.code() as usize].2.to_string(),
        }
    }

    /// Types pa-onnx rewires: real floating point of 16 bits or more.
    pub fn is_rewirable_float(self) -> bool {
        self.is_float()
    }

    /// Real floating point types of 16 bits or more: the ones the training
    /// graph differentiates and whose division does not truncate.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::Float | DataType::Float16 | DataType::Double | DataType::Bfloat16
        )
    }

    /// The value of an element's bits (in the low 16, 32 or 64 bits) as
    /// f64, exact, for the types [`DataType::is_rewirable_float`] accepts;
    /// None for the others.
    pub fn float_value(self, bits: u64) -> Option<f64> {
        Some(match self {
            DataType::Float => f32::from_bits(bits as u32) as f64,
            DataType::Float16 => half::f16::from_bits(bits as u16).to_f64(),
            DataType::Bfloat16 => half::bf16::from_bits(bits as u16).to_f64(),
            DataType::Double => f64::from_bits(bits),
            _ => return None,
        })
    }

    /// Bits per element in `raw_data`, when known.
    pub fn bits(self) -> Option<u64> {
        Some(match self.code() {
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
        Some(match self.code() {
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

/// Reports and `--json` output name a type as [`DataType::name`] does.
impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for code in -1..40 {
            let t = DataType::from_code(code);
            assert_eq!(t.code(), code);
            assert!(!t.name().is_empty());
        }
        assert_eq!(DataType::from_code(16), DataType::Bfloat16);
        assert_eq!(DataType::Double.name(), "float64");
        assert_eq!(DataType::from_code(99).name(), "dtype99");
    }
}
