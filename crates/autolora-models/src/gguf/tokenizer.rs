//! The byte-level BPE tokenizer stored in a GGUF file's metadata, rebuilt as a Hugging Face
//! `tokenizers::Tokenizer` (`tokenizer.ggml.model = "gpt2"`).
//!
//! * vocabulary: `tokenizer.ggml.tokens` (id = position), merges: `tokenizer.ggml.merges`
//!   (`"left right"`, by rank);
//! * `tokenizer.ggml.token_type` 3 (control) tokens become special added tokens, 4 (user
//!   defined) plain added tokens, so `<|im_start|>` is never split;
//! * pre-tokenizer, chosen by `tokenizer.ggml.pre` as llama.cpp chooses it: GPT-2's
//!   byte-level regex split (`default`, `gpt2`); for `smollm`, `starcoder` and `refact`, whose
//!   models split numbers into single digits first, a `Digits(individual)` step before it, as
//!   in those models' own `tokenizer.json`; for `qwen2` and `llama-bpe` (Llama 3) the models'
//!   own split regex (single digits, resp. runs of up to three) before a byte-level step
//!   without a regex of its own, as their `tokenizer.json` files write it. (`transformers`'
//!   GGUF conversion of a `llama` file ignores `pre` and never splits digits; on text without
//!   digits it agrees with the `smollm` split.) Other `pre` values fall back to the GPT-2
//!   split with a warning;
//! * `tokenizer.ggml.add_bos_token` prepends `bos_token_id`; decoding is byte-level.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::file::GgufFile;
use crate::{Error, Result};

/// `tokenizer.ggml.pre` values whose pre-tokenizer splits digits individually first.
const DIGIT_SPLITTING_PRE: &[&str] = &["smollm", "starcoder", "refact"];
/// `tokenizer.ggml.pre` values that are GPT-2's split alone.
const GPT2_PRE: &[&str] = &["default", "gpt2", "gpt-2"];
/// `tokenizer.ggml.pre` values with a split regex of their own (llama.cpp's
/// `llama-vocab.cpp`, the same as the models' `tokenizer.json`); the byte-level step after
/// them splits nothing.
const REGEX_PRE: &[(&str, &str)] = &[
    (
        "qwen2",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    (
        "llama-bpe",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];

/// Builds the tokenizer described by `file`'s `tokenizer.ggml.*` metadata.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let source_desc = file.path().display().to_string();
    let fail = |what: String| Error::Tokenizer {
        source_desc: source_desc.clone(),
        what,
    };
    let model = file
        .require("tokenizer.ggml.model")?
        .as_str()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(fail(format!(
            "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is supported"
        )));
    }
    let tokens = file.string_array("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = file
        .string_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| fail(format!("merge {i} {m:?} is not two space-separated tokens")))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i64> = match file.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .as_array()
            .map(|a| a.iter().map(|t| t.as_i64().unwrap_or(1)).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(fail(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| fail(format!("BPE model: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let pre = file
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let byte_level: PreTokenizerWrapper = ByteLevel::new(false, false, true).into();
    let regex = REGEX_PRE.iter().find(|(name, _)| *name == pre);
    let pre_tokenizer = if let Some((_, regex)) = regex {
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| fail(format!("pre-tokenizer regex for {pre:?}: {e}")))?;
        let bytes_only = ByteLevel::new(false, false, false).into();
        PreTokenizerWrapper::Sequence(Sequence::new(vec![split.into(), bytes_only]))
    } else if DIGIT_SPLITTING_PRE.contains(&pre) {
        PreTokenizerWrapper::Sequence(Sequence::new(vec![Digits::new(true).into(), byte_level]))
    } else {
        if !GPT2_PRE.contains(&pre) {
            tracing::warn!(
                pre,
                "unknown tokenizer.ggml.pre; using GPT-2's byte-level split"
            );
        }
        byte_level
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let special: Vec<AddedToken> = types
        .iter()
        .zip(&tokens)
        .filter(|(t, _)| **t == 3)
        .map(|(_, tok)| AddedToken::from(tok.to_string(), true))
        .collect();
    let user: Vec<AddedToken> = types
        .iter()
        .zip(&tokens)
        .filter(|(t, _)| **t == 4)
        .map(|(_, tok)| AddedToken::from(tok.to_string(), false))
        .collect();
    let special_count = special.len();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| fail(format!("special tokens: {e}")))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| fail(format!("user-defined tokens: {e}")))?;

    let add_bos = file
        .metadata
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if add_bos {
        let id = file.require_int("tokenizer.ggml.bos_token_id")?;
        let bos = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get(i))
            .ok_or_else(|| fail(format!("bos_token_id {id} is outside the vocabulary")))?;
        let template = TemplateProcessing::builder()
            .try_single(format!("{bos}:0 $A:0"))
            .and_then(|b| b.try_pair(format!("{bos}:0 $A:0 $B:1")))
            .map_err(|e| fail(format!("BOS template: {e}")))?
            .special_tokens(vec![(bos.to_string(), id as u32)])
            .build()
            .map_err(|e| fail(format!("BOS template: {e}")))?;
        tokenizer.with_post_processor(Some(template));
    }
    tracing::debug!(
        tokens = tokens.len(),
        special = special_count,
        pre,
        add_bos,
        "tokenizer rebuilt from GGUF metadata"
    );
    Ok(tokenizer)
}
