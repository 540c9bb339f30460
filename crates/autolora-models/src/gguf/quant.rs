//! GGML storage types and dequantization to f32.
//!
//! Dequantized: F32, F16, BF16, the 32-element block formats
//! * `Q8_0`: f16 scale `d`, 32 × i8 `q`; `x = d * q`.
//! * `Q4_0`: f16 `d`, 16 bytes of nibbles; element `j < 16` is the low nibble of byte `j`,
//!   element `16 + j` its high nibble; `x = d * (q - 8)`.
//! * `Q4_1`: f16 `d`, f16 minimum `m`, nibbles as `Q4_0`; `x = d * q + m`.
//! * `Q5_0`: f16 `d`, 32 high bits (u32, bit `j` for element `j`), nibbles as `Q4_0`;
//!   `x = d * (q - 16)` with `q` the 5-bit value.
//! * `Q5_1`: f16 `d`, f16 `m`, high bits and nibbles as `Q5_0`; `x = d * q + m`.
//!
//! and the 256-element "K-quants" (super-blocks of 16 or 8 sub-blocks with quantized scales),
//! the types of llama.cpp's `Q2_K` ... `Q6_K` files, `Q4_K_M` the most downloaded:
//! * `Q2_K`: 16 bytes of 4-bit scale / 4-bit minimum pairs, 64 bytes of 2-bit values, f16 `d`
//!   and `dmin`; `x = d * scale * q - dmin * min` per sub-block of 16.
//! * `Q3_K`: 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of 6-bit scales, f16
//!   `d`; `x = d * (scale - 32) * q` with `q = low - 4 * (1 - high)`, sub-blocks of 16.
//! * `Q4_K`: f16 `d`, `dmin`, 12 bytes of 6-bit scales and minimums, 128 bytes of nibbles;
//!   `x = d * scale * q - dmin * min` per sub-block of 32.
//! * `Q5_K`: as `Q4_K` with 32 bytes of high bits before the nibbles.
//! * `Q6_K`: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 i8 scales, f16 `d`;
//!   `x = d * scale * (q - 32)` per sub-block of 16.
//!
//! The bit layouts and the arithmetic are the reference's (llama.cpp's `dequantize_row_*`,
//! the `gguf` Python package's `dequantize_blocks`): the same f32 products and differences in
//! the same order, so the values are bit-identical to theirs (checked block for block on
//! random blocks, `tests/gguf_quants.rs`). Other types are known by size (so a file holding
//! them still opens) but rejected on load.

use half::{bf16, f16};

use crate::{Error, Result};

/// What [`dequantize`] accepts.
pub const SUPPORTED: &str =
    "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

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
    /// 5-bit blocks of 32 with an f16 scale, offset 16.
    Q5_0,
    /// 5-bit blocks of 32 with an f16 scale and f16 minimum.
    Q5_1,
    /// 2-bit super-blocks of 256 (16 sub-blocks, 4-bit scales and minimums).
    Q2K,
    /// 3-bit super-blocks of 256 (16 sub-blocks, 6-bit scales).
    Q3K,
    /// 4-bit super-blocks of 256 (8 sub-blocks, 6-bit scales and minimums).
    Q4K,
    /// 5-bit super-blocks of 256 (8 sub-blocks, 6-bit scales and minimums).
    Q5K,
    /// 6-bit super-blocks of 256 (16 sub-blocks, 8-bit scales).
    Q6K,
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
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            9 => GgmlType::Other("Q8_1", 9, 32, 36),
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
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
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
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Other(name, ..) => name,
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Bit `bit` of the little-endian bit field `bytes` (bit 0: the low bit of byte 0).
fn bit_at(bytes: &[u8], bit: usize) -> u8 {
    (bytes[bit / 8] >> (bit % 8)) & 1
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a `Q4_K` / `Q5_K` super-block,
/// from its 12 packed bytes (llama.cpp's `get_scale_min_k4`).
fn scale_min_k4(packed: &[u8], j: usize) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    };
    (f32::from(scale), f32::from(min))
}

/// Dequantizes one block of a K-quant type into `out` (256 values).
fn dequantize_k(ty: GgmlType, block: &[u8], out: &mut Vec<f32>) {
    match ty {
        GgmlType::Q2K => {
            let (scales, qs) = (&block[..16], &block[16..80]);
            let (d, dmin) = (f16_at(block, 80), f16_at(block, 82));
            // Element `128 h + 32 s + j` is bits `2 s` of byte `32 h + j`.
            for i in 0..256 {
                let (h, s, j) = (i / 128, (i % 128) / 32, i % 32);
                let q = (qs[32 * h + j] >> (2 * s)) & 3;
                let sub = scales[i / 16];
                let dl = d * f32::from(sub & 0x0f);
                let ml = dmin * f32::from(sub >> 4);
                out.push(dl * f32::from(q) - ml);
            }
        }
        GgmlType::Q3K => {
            let (hmask, qs, packed) = (&block[..32], &block[32..96], &block[96..108]);
            let d = f16_at(block, 108);
            let scale = |s: usize| {
                let low = (packed[s % 8] >> (4 * (s / 8))) & 0x0f;
                let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
                f32::from((low | (high << 4)) as i8 - 32)
            };
            for i in 0..256 {
                let (h, s, j) = (i / 128, (i % 128) / 32, i % 32);
                let low = ((qs[32 * h + j] >> (2 * s)) & 3) as i8;
                // The high bit of element `32 b + j` is bit `b` of byte `j`; set means no offset.
                let high = ((hmask[j] >> (i / 32)) & 1) ^ 1;
                let q = low - ((high << 2) as i8);
                out.push((d * scale(i / 16)) * f32::from(q));
            }
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let packed = &block[4..16];
            let (high, qs) = match ty {
                GgmlType::Q5K => (Some(&block[16..48]), &block[48..176]),
                _ => (None, &block[16..144]),
            };
            for i in 0..256 {
                // Element `64 c + 32 s + j` is nibble `s` of byte `32 c + j`.
                let (c, s, j) = (i / 64, (i % 64) / 32, i % 32);
                let mut q = (qs[32 * c + j] >> (4 * s)) & 0x0f;
                if let Some(high) = high {
                    q |= ((high[j] >> (i / 32)) & 1) << 4;
                }
                let (scale, min) = scale_min_k4(packed, i / 32);
                out.push((d * scale) * f32::from(q) - dmin * min);
            }
        }
        GgmlType::Q6K => {
            let (ql, qh, scales) = (&block[..128], &block[128..192], &block[192..208]);
            let d = f16_at(block, 208);
            for i in 0..256 {
                // Element `128 h + 64 s + j` (j < 64): nibble `s` of low byte `64 h + j`; its
                // high part: bits `2 t` of byte `32 h + j % 32`, t = (i % 128) / 32.
                let (h, s, j) = (i / 128, (i % 128) / 64, i % 64);
                let low = (ql[64 * h + j] >> (4 * s)) & 0x0f;
                let t = (i % 128) / 32;
                let high = (qh[32 * h + i % 32] >> (2 * t)) & 3;
                let q = (low | (high << 4)) as i8 - 32;
                let scale = f32::from(scales[i / 16] as i8);
                out.push((d * scale) * f32::from(q));
            }
        }
        _ => unreachable!("not a K-quant type"),
    }
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
    let block_bytes = ty.block().1 as usize;
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
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            for block in bytes.chunks_exact(block_bytes) {
                let d = f16_at(block, 0);
                let (m, rest) = match ty {
                    GgmlType::Q5_1 => (Some(f16_at(block, 2)), &block[4..]),
                    _ => (None, &block[2..]),
                };
                let (high, qs) = (&rest[..4], &rest[4..]);
                for i in 0..32 {
                    let low = (qs[i % 16] >> (4 * (i / 16))) & 0x0f;
                    let q = low | (bit_at(high, i) << 4);
                    out.push(match m {
                        Some(m) => d * f32::from(q) + m,
                        None => d * f32::from(q as i8 - 16),
                    });
                }
            }
        }
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
            for block in bytes.chunks_exact(block_bytes) {
                dequantize_k(ty, block, &mut out);
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
        let k = GgmlType::from_id(15, "x").unwrap();
        let err = dequantize("blk.0.ffn_up.weight", k, &[0; 292], 256).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("Q8_K") && msg.contains("Q4_K"), "{msg}");
        assert!(GgmlType::from_id(99, "y").is_err());
    }
}
