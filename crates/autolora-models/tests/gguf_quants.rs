//! Every quantized type the GGUF loader reads, dequantized block for block against the `gguf`
//! Python package (`tests/reference/gen_quant_blocks.py`, fixtures `tests/fixtures/gguf-quants`):
//! random blocks of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (any byte
//! pattern is a valid block, so every bit path is exercised; the f16 scales are random finite
//! values) and F16 / BF16, as tensors of mixed types in one file. The arithmetic is the
//! reference's, so every value must be bit-identical.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use autolora_models::gguf::{GgmlType, GgufFile, dequantize};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-quants")
        .join(name)
}

#[test]
fn every_type_dequantizes_bit_for_bit_as_the_gguf_package() -> Result<()> {
    let blocks = GgufFile::open(&fixture("blocks.gguf"))?;
    let expected = GgufFile::open(&fixture("expected.gguf"))?;
    let mut seen = Vec::new();
    for (name, info) in &blocks.tensors {
        let numel = info.numel() as usize;
        let ours = dequantize(name, info.ggml_type, blocks.data(info), numel)?;
        let reference = expected
            .tensors
            .get(name)
            .with_context(|| format!("{name} missing from expected.gguf"))?;
        ensure!(reference.ggml_type == GgmlType::F32, "{name}: expected F32");
        let want: Vec<f32> = expected
            .data(reference)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        ensure!(ours.len() == want.len(), "{name}: {} values", ours.len());
        let differ = ours
            .iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        if let Some(i) = differ {
            anyhow::bail!(
                "{name} ({}): element {i} (block {}) is {} here, {} in gguf",
                info.ggml_type.name(),
                i as u64 / info.ggml_type.block().0,
                ours[i],
                want[i]
            );
        }
        seen.push(info.ggml_type.name());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            "BF16", "F16", "Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K",
            "Q8_0"
        ]
    );
    Ok(())
}
