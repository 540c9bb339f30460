//! The tokenizer of a model folder (or GGUF file), its pad and end-of-text tokens and its
//! chat template.
//!
//! A folder normally holds a `tokenizer.json`. GPT-2 as OpenAI released it ships only the
//! byte-level BPE files `encoder.json` + `vocab.bpe` (the `gpt2-bpe` asset), the same data as
//! `vocab.json` + `merges.txt`; from those the tokenizer is built here exactly as Hugging
//! Face's `GPT2TokenizerFast` is: byte-level pre-tokenizer without a prefix space, byte-level
//! decoder, and `<|endoftext|>` as a special token. A llama.cpp GGUF model (the file, or a
//! folder holding one `.gguf` and no `config.json`) carries its tokenizer and end-of-text id
//! in its metadata.
//!
//! Batches are padded with the tokenizer's pad token; a tokenizer without one (GPT-2's, many
//! Llama files) pads with the end-of-text id, as transformers' fine-tuning recipes set
//! `pad_token = eos_token`. Padding positions are masked, so the choice never changes a score.
//!
//! The chat template is looked up as transformers does: `chat_template.jinja` in the folder,
//! else `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates of
//! which `default` is used), else a GGUF file's `tokenizer.chat_template`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use autolora_data::chat::ChatTemplate;
use autolora_data::tokenize::{TextTokenizer, pad_token};
use autolora_models::gguf::{GgufFile, tokenizer_from_gguf};
use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Vocabulary file names of a byte-level BPE, in the order tried.
const VOCAB_FILES: &[&str] = &["vocab.json", "encoder.json"];
/// Merge file names, in the order tried.
const MERGES_FILES: &[&str] = &["merges.txt", "vocab.bpe"];
/// End-of-text tokens tried when the model's config names none.
const EOS_TOKENS: &[&str] = &["<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>"];

/// Loads the folder's tokenizer with its own padding and truncation switched off (batches are
/// padded here and truncation is counted).
pub fn load(model_dir: &Path) -> Result<Tokenizer> {
    let mut tokenizer = read(model_dir)?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| anyhow!("switching truncation off: {e}"))?;
    Ok(tokenizer)
}

/// The tokenizer of the sentence and tagging tasks, cut to `max_length` tokens and padding
/// with the pad token, or else the end-of-text id (see the module docs).
pub fn text_tokenizer(model_dir: &Path, max_length: usize) -> Result<TextTokenizer> {
    let tokenizer = read(model_dir)?;
    let pad = match pad_token(&tokenizer) {
        Some(pad) => pad,
        None => {
            let eos = eos_ids(model_dir, &tokenizer)?[0];
            println!(
                "{}: the tokenizer has no pad token, so batches are padded with the end-of-text \
                 id {eos}",
                model_dir.display()
            );
            u32::try_from(eos).context("the end-of-text id is not a token id")?
        }
    };
    let origin = autolora_models::tokenizer_path(model_dir).unwrap_or(model_dir.to_path_buf());
    Ok(TextTokenizer::new(tokenizer, &origin, max_length, pad)?)
}

/// The folder's tokenizer as stored.
fn read(model_dir: &Path) -> Result<Tokenizer> {
    Ok(match autolora_models::tokenizer_path(model_dir) {
        Some(path) => Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("reading the tokenizer {}: {e}", path.display()))?,
        None => match autolora_models::gguf_file(model_dir) {
            Some(path) => {
                let file = GgufFile::open(&path)?;
                tokenizer_from_gguf(&file)?
            }
            None => from_bpe_files(model_dir)?,
        },
    })
}

fn find(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// GPT-2's tokenizer from `encoder.json`/`vocab.json` and `vocab.bpe`/`merges.txt`.
fn from_bpe_files(dir: &Path) -> Result<Tokenizer> {
    let (Some(vocab), Some(merges)) = (find(dir, VOCAB_FILES), find(dir, MERGES_FILES)) else {
        bail!(
            "{} has no tokenizer.json, nor a byte-level BPE vocabulary ({}) with merges ({})",
            dir.display(),
            VOCAB_FILES.join(" or "),
            MERGES_FILES.join(" or ")
        );
    };
    let (vocab_s, merges_s) = (vocab.display().to_string(), merges.display().to_string());
    let bpe = BPE::from_file(&vocab_s, &merges_s)
        .build()
        .map_err(|e| anyhow!("building the BPE from {vocab_s} and {merges_s}: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, false, true)));
    if tokenizer.token_to_id("<|endoftext|>").is_some() {
        tokenizer
            .add_special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
            .map_err(|e| anyhow!("adding <|endoftext|>: {e}"))?;
    }
    tracing::info!(vocab = %vocab_s, merges = %merges_s, "GPT-2 tokenizer built from BPE files");
    Ok(tokenizer)
}

/// The model's end-of-text ids: `eos_token_id` of its `config.json` (a number or a list), or
/// `tokenizer.ggml.eos_token_id` of a GGUF file, else the first known end-of-text token the
/// tokenizer has.
pub fn eos_ids(model_dir: &Path, tokenizer: &Tokenizer) -> Result<Vec<i64>> {
    let config_path = model_dir.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config_path) {
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let ids: Vec<i64> = match &config["eos_token_id"] {
            serde_json::Value::Number(n) => n.as_i64().into_iter().collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_i64()).collect(),
            _ => Vec::new(),
        };
        if !ids.is_empty() {
            return Ok(ids);
        }
    }
    if let Some(path) = autolora_models::gguf_file(model_dir) {
        let file = GgufFile::open(&path)?;
        if let Ok(id) = file.require_int("tokenizer.ggml.eos_token_id") {
            return Ok(vec![id]);
        }
    }
    EOS_TOKENS
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .map(|id| vec![i64::from(id)])
        .ok_or_else(|| {
            anyhow!(
                "{} names no eos_token_id and its tokenizer has none of {EOS_TOKENS:?}",
                config_path.display()
            )
        })
}

/// The model's chat template (see the module docs), compiled with the texts of its BOS and
/// EOS tokens; `None` when the model has none.
pub fn chat_template(model_dir: &Path, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>> {
    let config_path = model_dir.join("tokenizer_config.json");
    let config: Option<Value> = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", config_path.display()))?,
        ),
        Err(_) => None,
    };
    // `bos_token` / `eos_token`: a string, or an added-token object with its `content`.
    let special = |key: &str| -> Option<String> {
        let value = config.as_ref()?.get(key)?;
        value
            .as_str()
            .or_else(|| value.get("content")?.as_str())
            .map(str::to_string)
    };
    let jinja = model_dir.join("chat_template.jinja");
    if jinja.is_file() {
        let source = std::fs::read_to_string(&jinja)
            .with_context(|| format!("reading {}", jinja.display()))?;
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        return compile(&source, &jinja.display().to_string(), bos, eos).map(Some);
    }
    if let Some(template) = config.as_ref().and_then(|c| c.get("chat_template")) {
        let origin = format!("{}: chat_template", config_path.display());
        let source = match template {
            Value::String(source) => source.clone(),
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string)
                .with_context(|| {
                    format!("{origin} is a list of named templates without a `default` one")
                })?,
            other => bail!("{origin} is neither a string nor a list of templates: {other}"),
        };
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        return compile(&source, &origin, bos, eos).map(Some);
    }
    let Some(path) = autolora_models::gguf_file(model_dir) else {
        return Ok(None);
    };
    let file = GgufFile::open(&path)?;
    let Some(source) = file
        .metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    let token = |key: &str| -> Option<String> {
        let id = file.require_int(key).ok()?;
        tokenizer.id_to_token(u32::try_from(id).ok()?)
    };
    let origin = format!("{}: tokenizer.chat_template", path.display());
    compile(
        source,
        &origin,
        token("tokenizer.ggml.bos_token_id"),
        token("tokenizer.ggml.eos_token_id"),
    )
    .map(Some)
}

fn compile(
    source: &str,
    origin: &str,
    bos: Option<String>,
    eos: Option<String>,
) -> Result<ChatTemplate> {
    let (bos, eos) = (bos.unwrap_or_default(), eos.unwrap_or_default());
    tracing::info!(%origin, "chat template");
    Ok(ChatTemplate::new(source, origin, &bos, &eos)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer.encode(text, true).unwrap().get_ids().to_vec()
    }

    #[test]
    fn bpe_files_make_a_byte_level_tokenizer() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("encoder.json"),
            r#"{"<|endoftext|>": 0, "h": 1, "i": 2, "Ġ": 3, "hi": 4, "Ġhi": 5}"#,
        )?;
        std::fs::write(dir.path().join("vocab.bpe"), "#version: 0.2\nh i\nĠ hi\n")?;
        let tokenizer = load(dir.path())?;
        assert_eq!(ids(&tokenizer, "hi hi<|endoftext|>"), [4, 5, 0]);
        let text = tokenizer
            .decode(&[4, 5, 0], true)
            .map_err(|e| anyhow!("{e}"))?;
        assert_eq!(text, "hi hi");
        assert_eq!(eos_ids(dir.path(), &tokenizer)?, [0]);
        Ok(())
    }

    #[test]
    fn real_gpt2_files_give_gpt2_ids() -> Result<()> {
        let Ok(dir) = autolora_data::assets::cache_root().map(|c| c.join("assets/gpt2-bpe")) else {
            return Ok(());
        };
        if !dir.join("encoder.json").exists() {
            eprintln!("SKIPPED: the gpt2-bpe asset is not cached (cargo xtask download gpt2-bpe)");
            return Ok(());
        }
        let tokenizer = load(&dir)?;
        // As GPT2TokenizerFast encodes them.
        assert_eq!(ids(&tokenizer, "Hello world"), [15496, 995]);
        assert_eq!(ids(&tokenizer, "<|endoftext|>"), [50256]);
        Ok(())
    }

    #[test]
    fn config_eos_ids_win() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"eos_token_id": [5, 7]}"#,
        )?;
        let tokenizer = Tokenizer::new(BPE::default());
        assert_eq!(eos_ids(dir.path(), &tokenizer)?, [5, 7]);
        Ok(())
    }

    #[test]
    fn chat_templates_are_found_where_transformers_looks() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let tokenizer = Tokenizer::new(BPE::default());
        assert!(chat_template(dir.path(), &tokenizer)?.is_none());
        let hello = [autolora_data::chat::Message {
            role: "user".into(),
            content: "hi".into(),
        }];
        let config = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &config,
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}"#,
        )?;
        let found = chat_template(dir.path(), &tokenizer)?.expect("a template");
        assert_eq!(found.render(&hello, false)?, "<s>hi</s>");
        std::fs::write(
            &config,
            r#"{"chat_template": [{"name": "tool_use", "template": "tools"},
                                  {"name": "default", "template": "{{ messages[0].role }}"}]}"#,
        )?;
        let found = chat_template(dir.path(), &tokenizer)?.expect("a template");
        assert_eq!(found.render(&hello, false)?, "user");
        // The separate file wins over the config's.
        std::fs::write(
            dir.path().join("chat_template.jinja"),
            "[{{ messages[0].content }}]",
        )?;
        let found = chat_template(dir.path(), &tokenizer)?.expect("a template");
        assert_eq!(found.render(&hello, false)?, "[hi]");
        std::fs::remove_file(dir.path().join("chat_template.jinja"))?;
        std::fs::write(
            &config,
            r#"{"chat_template": [{"name": "tool_use", "template": "x"}]}"#,
        )?;
        let err = chat_template(dir.path(), &tokenizer)
            .err()
            .expect("no default");
        assert!(err.to_string().contains("without a `default`"), "{err}");
        Ok(())
    }
}
