//! GGML storage types and dequantization to f32.
//!
//! Dequantized: F32, F16, BF16 and the 32-element block formats
//! * `Q8_0`: f16 scale `d`, 32 × i8 `q`; `x = d * q`.
//! * `Q4_0`: f16 `d`, 16 bytes of nibbles; element `j < 16` is the low nibble of byte `j`,
//!   element `16 + j` its high nibble; `x = d * (q - 8)`.
//! * `Q4_1`: f16 `d`, f16 minimum `m`, nibbles as `Q4_0`; `x = d * q + m`.
//!
//! The arithmetic is the reference's (llama.cpp's `dequantize_row_*`, the `gguf` Python
//! package): one f32 multiply (and add), so the values are bit-identical to theirs. Other
//! types are known by size (so a file holding them still opens) but rejected on load.

use half::{bf16, f16};

use crate::{Error, Result};

/// What [`dequantize`] accepts.
pub const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1";

/// A tensor's storage type (ggml type id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks of 32 with an f16 scale.
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale, offset 8.
    Q4_0,
    /// 4-bit blocks of 32 with an f16 scale and f16 minimum.
    Q4_1,
    /// A type that is recognised by its size but not dequantized: (name, id, elements per
    /// block, bytes per block).
    Other(&'static str, u32, u64, u64),
}

impl GgmlType {
    /// The type with ggml id `id`; `tensor` names the tensor in the error for an unknown id.
    pub fn from_id(id: u32, tensor: &str) -> Result<Self> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            6 => GgmlType::Other("Q5_0", 6, 32, 22),
            7 => GgmlType::Other("Q5_1", 7, 32, 24),
            9 => GgmlType::Other("Q8_1", 9, 32, 36),
            10 => GgmlType::Other("Q2_K", 10, 256, 84),
            11 => GgmlType::Other("Q3_K", 11, 256, 110),
            12 => GgmlType::Other("Q4_K", 12, 256, 144),
            13 => GgmlType::Other("Q5_K", 13, 256, 176),
            14 => GgmlType::Other("Q6_K", 14, 256, 210),
            15 => GgmlType::Other("Q8_K", 15, 256, 292),
            24 => GgmlType::Other("I8", 24, 1, 1),
            25 => GgmlType::Other("I16", 25, 1, 2),
            26 => GgmlType::Other("I32", 26, 1, 4),
            27 => GgmlType::Other("I64", 27, 1, 8),
            28 => GgmlType::Other("F64", 28, 1, 8),
            other => {
                return Err(Error::UnsupportedQuantization {
                    name: tensor.to_string(),
                    ggml_type: format!("id {other} (unknown)"),
                    supported: SUPPORTED,
                });
            }
        })
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Other(_, _, elements, bytes) => (elements, bytes),
        }
    }

    /// Bytes taken by `numel` elements; `None` if they are not a whole number of blocks.
    pub fn byte_size(self, numel: u64) -> Option<u64> {
        let (elements, bytes) = self.block();
        (numel % elements == 0).then(|| numel / elements * bytes)
    }

    /// The type's name as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Bf16 => "BF16",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Other(name, ..) => name,
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Dequantizes `bytes` holding `numel` elements of type `ty` to f32. `name` is used in
/// errors: an unsupported type, or a byte count that does not match.
pub fn dequantize(name: &str, ty: GgmlType, bytes: &[u8], numel: usize) -> Result<Vec<f32>> {
    let expected = ty.byte_size(numel as u64);
    if expected != Some(bytes.len() as u64) {
        return Err(Error::ShapeMismatch {
            name: format!("{name} (bytes of {numel} {} elements)", ty.name()),
            expected: vec![expected.map_or(-1, |b| b as i64)],
            found: vec![bytes.len() as i64],
        });
    }
    let mut out = Vec::with_capacity(numel);
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Bf16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(34) {
                let d = f16_at(block, 0);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_0 => {
            for block in bytes.chunks_exact(18) {
                let d = f16_at(block, 0);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| d * f32::from((q & 0x0f) as i8 - 8)));
                out.extend(qs.iter().map(|&q| d * f32::from((q >> 4) as i8 - 8)));
            }
        }
        GgmlType::Q4_1 => {
            for block in bytes.chunks_exact(20) {
                let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        GgmlType::Other(type_name, id, ..) => {
            return Err(Error::UnsupportedQuantization {
                name: name.to_string(),
                ggml_type: format!("{type_name} (id {id})"),
                supported: SUPPORTED,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_blocks_put_low_nibbles_first() {
        // d = 0.5, m = -1; byte j holds low nibble j % 16 and high nibble 15 - j % 16.
        let mut block = Vec::new();
        block.extend(half(0.5));
        block.extend(half(-1.0));
        block.extend((0u8..16).map(|j| j | ((15 - j) << 4)));
        let x = dequantize("t", GgmlType::Q4_1, &block, 32).unwrap();
        assert_eq!(x[0], -1.0);
        assert_eq!(x[3], 0.5 * 3.0 - 1.0);
        assert_eq!(x[16], 0.5 * 15.0 - 1.0);
        let q40: Vec<u8> = half(2.0)
            .into_iter()
            .chain(block[4..].iter().copied())
            .collect();
        let y = dequantize("t", GgmlType::Q4_0, &q40, 32).unwrap();
        assert_eq!((y[0], y[16], y[31]), (-16.0, 14.0, -16.0));
    }

    #[test]
    fn q8_0_scales_signed_bytes() {
        let mut block = half(0.25).to_vec();
        block.extend((0..32).map(|j: i32| (j - 16) as i8 as u8));
        let x = dequantize("t", GgmlType::Q8_0, &block, 32).unwrap();
        assert_eq!((x[0], x[16], x[31]), (-4.0, 0.0, 3.75));
    }

    #[test]
    fn wrong_sizes_and_types_are_errors() {
        let err = dequantize("blk.0.attn_q.weight", GgmlType::Q4_1, &[0; 19], 32).unwrap_err();
        assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
        let k = GgmlType::from_id(12, "x").unwrap();
        let err = dequantize("blk.0.ffn_up.weight", k, &[0; 144], 256).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Q4_K") && msg.contains("Q4_1"), "{msg}");
        assert!(GgmlType::from_id(99, "y").is_err());
    }
}
