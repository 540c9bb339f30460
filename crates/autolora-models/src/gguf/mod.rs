//! Llama-family models (`general.architecture` `llama`, `qwen2`, `qwen3`) from llama.cpp GGUF
//! files (v2/v3): weights dequantized from F32, F16,
//! BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K
//! (bit-identical to the `gguf` Python package), the query/key permutation undone, the config
//! and the byte-level BPE tokenizer rebuilt from the metadata.
//!
//! ```no_run
//! use autolora_models::gguf::load_gguf;
//! use autolora_models::{LoadOptions, Model, Task};
//!
//! # fn main() -> autolora_models::Result<()> {
//! let path = std::path::Path::new("SmolLM2-135M-Instruct.Q4_1.gguf");
//! let loaded = load_gguf(path, Task::CausalLm, &LoadOptions::default())?;
//! let ids = loaded.tokenizer.encode("The capital of France is", false).unwrap();
//! println!("{} layers, first ids {:?}", loaded.model.linear_layers().len() / 7, &ids.get_ids()[..3]);
//! # Ok(())
//! # }
//! ```

mod file;
mod llama;
mod quant;
mod tokenizer;

use std::path::Path;

pub use file::{GgufFile, TensorInfo, Value};
pub use llama::{GgufLlamaSource, config_from_metadata, unpermute};
pub use quant::{GgmlType, SUPPORTED, dequantize};
pub use tokenizer::tokenizer_from_gguf;

use crate::config::{CONFIG_FILE, RawConfig};
use crate::decoder::DecoderModel;
use crate::llama::LlamaConfig;
use crate::load::{LoadOptions, TOKENIZER_FILE};
use crate::model::Task;
use crate::{Error, Result};

/// A model loaded from a GGUF file with what was rebuilt from its metadata.
#[derive(Debug)]
pub struct GgufModel {
    /// The model.
    pub model: DecoderModel,
    /// The equivalent Hugging Face `config.json`.
    pub config: RawConfig,
    /// The tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
}

impl GgufModel {
    /// Writes `config.json` and `tokenizer.json` into `dir` (created if needed), so that the
    /// rebuilt config and tokenizer can be inspected or reused.
    pub fn write_companions(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config_path = dir.join(CONFIG_FILE);
        let text =
            serde_json::to_string_pretty(&self.config.fields).map_err(|source| Error::Json {
                path: config_path.clone(),
                source,
            })?;
        std::fs::write(&config_path, text + "\n").map_err(io(&config_path))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        self.tokenizer
            .save(&tokenizer_path, true)
            .map_err(|e| Error::Tokenizer {
                source_desc: tokenizer_path.display().to_string(),
                what: format!("writing: {e}"),
            })
    }
}

/// Loads the Llama in GGUF file `path` for `task`, with its config and tokenizer.
pub fn load_gguf(path: &Path, task: Task, options: &LoadOptions) -> Result<GgufModel> {
    options.validate()?;
    let file = GgufFile::open(path)?;
    let mut config = config_from_metadata(&file)?;
    if let Some(p) = options.dropout {
        config.set_dropout(p);
    }
    let llama = LlamaConfig::from_raw(&config)?;
    let source = GgufLlamaSource::new(&file, llama.num_attention_heads, llama.kv_heads());
    let model = crate::llama::load_with_config(&llama, &source, task, options)?;
    let tokenizer = tokenizer_from_gguf(&file)?;
    tracing::info!(
        path = %path.display(),
        layers = llama.num_hidden_layers,
        vocab = llama.vocab_size,
        "GGUF model loaded"
    );
    Ok(GgufModel {
        model,
        config,
        tokenizer,
    })
}
