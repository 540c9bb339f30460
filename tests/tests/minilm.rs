//! The real all-MiniLM-L6-v2 (fetched from PyPI into the asset cache by autolora-data) run
//! through autolora-models' BERT: its known sentence similarity must come out.
//!
//! sentence-transformers embeds a sentence as the mean of its last hidden states over real
//! tokens; the cosine of "A man is eating food." and "A man is eating a piece of bread." is
//! 0.7553 for this model.

use anyhow::Result;
use autolora_data::assets;
use autolora_models::{LoadOptions, Model, ModelInput, Task, load_model};
use tch::{Kind, Tensor};
use tokenizers::Tokenizer;

const EXPECTED_COSINE: f64 = 0.7553;
const TOLERANCE: f64 = 1e-3;

/// Mean of the hidden states over the tokens of `text` [hidden].
fn embed(model: &dyn Model, tokenizer: &Tokenizer, text: &str) -> Result<Tensor> {
    let encoding = tokenizer
        .encode(text, true)
        .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
    let ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i as i64).collect();
    let types: Vec<i64> = encoding.get_type_ids().iter().map(|&i| i as i64).collect();
    let ids = Tensor::from_slice(&ids).unsqueeze(0);
    let types = Tensor::from_slice(&types).unsqueeze(0);
    let mask = ids.ones_like();
    let out = model.forward_t(
        &ModelInput {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: Some(&types),
        },
        false,
    )?;
    Ok(out
        .hidden_states
        .squeeze_dim(0)
        .mean_dim(0, false, Kind::Float))
}

#[test]
fn minilm_sentence_similarity() -> Result<()> {
    let dir = match assets::fetch(assets::MINILM) {
        Ok(dir) => dir,
        Err(e) => {
            println!(
                "SKIPPED minilm_sentence_similarity: the MiniLM asset is not in the cache and \
                 could not be fetched ({e}); run `cargo xtask download minilm-l6-v2` or set \
                 AUTOLORA_CACHE to a cache holding assets/{}",
                assets::MINILM
            );
            return Ok(());
        }
    };
    let _guard = tch::no_grad_guard();
    let model = load_model(&dir, Task::Encoder, &LoadOptions::default())?;
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("reading tokenizer.json: {e}"))?;
    // The shipped tokenizer.json pads and truncates to 128; one sentence at a time needs neither.
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let a = embed(model.as_ref(), &tokenizer, "A man is eating food.")?;
    let b = embed(
        model.as_ref(),
        &tokenizer,
        "A man is eating a piece of bread.",
    )?;
    let cosine = Tensor::cosine_similarity(&a, &b, 0, 1e-8).double_value(&[]);
    println!("MiniLM cosine = {cosine:.5} (expected {EXPECTED_COSINE} +- {TOLERANCE})");
    anyhow::ensure!(
        (cosine - EXPECTED_COSINE).abs() <= TOLERANCE,
        "cosine {cosine} is not {EXPECTED_COSINE} +- {TOLERANCE}"
    );
    let report = model.linear_layers().len();
    anyhow::ensure!(
        report == 6 * 6 + 1,
        "expected 37 linear layers, found {report}"
    );
    Ok(())
}
