//! Pre-split words through a byte-level BPE tokenizer laid out as RoBERTa's, against
//! transformers: `reference/byte_level_words.json`, written by
//! `reference/gen_byte_level_words.py` with the tokenizer in `reference/tiny-roberta/`.

mod common;

use autolora_data::tokenize::{Target, TextTokenizer};
use common::reference_dir;
use serde_json::Value;

fn reference() -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(reference_dir().join("byte_level_words.json"))?;
    Ok(serde_json::from_str(&text)?)
}

fn tokenizer(max_len: usize) -> anyhow::Result<TextTokenizer> {
    let path = reference_dir().join("tiny-roberta/tokenizer.json");
    Ok(TextTokenizer::from_file(&path, max_len)?)
}

#[test]
fn words_match_transformers_with_add_prefix_space() -> anyhow::Result<()> {
    for case in reference()?["cases"].as_array().unwrap() {
        let words: Vec<String> = serde_json::from_value(case["words"].clone())?;
        let max_len = case["max_length"].as_u64().map_or(512, |n| n as usize);
        // Word i labelled i: the labels show where each word's first sub-token is.
        let labels: Vec<i64> = (0..words.len() as i64).collect();
        let encoded = tokenizer(max_len)?.encode_words(&words, &labels)?;
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone())?;
        assert_eq!(encoded.input_ids, ids, "{words:?}");
        let aligned: Vec<i64> = serde_json::from_value(case["labels"].clone())?;
        let kept = aligned.iter().filter(|&&l| l >= 0).count();
        assert_eq!(encoded.target, Target::Tokens(aligned), "{words:?}");
        assert_eq!(encoded.cut_tags, labels[kept..], "{words:?}");
        assert_eq!(encoded.truncated, kept < words.len(), "{words:?}");
    }
    Ok(())
}

#[test]
fn text_keeps_the_shipped_pre_tokenizer() -> anyhow::Result<()> {
    let tokenizer = tokenizer(512)?;
    for case in reference()?["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone())?;
        assert_eq!(tokenizer.encode_text(text, None)?.input_ids, ids, "{text}");
    }
    Ok(())
}
