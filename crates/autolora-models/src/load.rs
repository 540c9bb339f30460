//! Loading any supported model from a Hugging Face model directory.

use std::path::{Path, PathBuf};

use tch::{Device, Kind};

use crate::config::{Architecture, CONFIG_FILE, RawConfig};
use crate::encoder::EncoderModel;
use crate::layers::AttentionImpl;
use crate::model::{Model, Task};
use crate::weights::SafeTensorStore;
use crate::{Error, Result};
use crate::{gpt2, llama};

/// Name of the tokenizer file inside a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Where the weights go.
    pub device: Device,
    /// Computation kind: layer norms, task head, LoRA weights and activations
    /// (`Kind::Float`; `Kind::Double` for gradient checks).
    pub kind: Kind,
    /// Storage kind of the large frozen matrices (embedding tables, linear layers), e.g.
    /// `Kind::BFloat16` on CUDA; `None` keeps `kind`.
    pub base_kind: Option<Kind>,
    /// Seed of freshly initialised head weights.
    pub seed: u64,
    /// Attention implementation (eager supports second-order autograd).
    pub attention: AttentionImpl,
    /// Replaces every dropout probability of the network and its head (the `config.json`
    /// keys of [`RawConfig::set_dropout`]); `None` keeps the config's.
    pub dropout: Option<f64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            kind: Kind::Float,
            base_kind: None,
            seed: 0,
            attention: AttentionImpl::Eager,
            dropout: None,
        }
    }
}

impl LoadOptions {
    /// Checks that the kinds are usable.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.kind, Kind::Float | Kind::Double) {
            return Err(Error::InvalidArgument {
                what: "kind",
                why: format!(
                    "the computation kind must be Float or Double, got {:?}",
                    self.kind
                ),
            });
        }
        if let Some(k) = self.base_kind
            && !matches!(k, Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half)
        {
            return Err(Error::InvalidArgument {
                what: "base_kind",
                why: format!("must be a floating kind, got {k:?}"),
            });
        }
        if let Some(p) = self.dropout
            && !(0.0..1.0).contains(&p)
        {
            return Err(Error::InvalidArgument {
                what: "dropout",
                why: format!("must be in [0, 1), got {p}"),
            });
        }
        Ok(())
    }
}

/// Reads `dir`'s config.json, detects the architecture and loads the weights
/// (`model.safetensors` or a sharded checkpoint) for `task`.
///
/// A llama.cpp GGUF file also loads: `dir` may be the `.gguf` file itself, or a directory
/// without `config.json` that holds exactly one `.gguf` file (see [`crate::gguf`], whose
/// [`load_gguf`](crate::gguf::load_gguf) also returns the tokenizer).
pub fn load_model(dir: &Path, task: Task, options: &LoadOptions) -> Result<Box<dyn Model>> {
    options.validate()?;
    if let Some(file) = gguf_file(dir) {
        return Ok(Box::new(
            crate::gguf::load_gguf(&file, task, options)?.model,
        ));
    }
    let mut raw = RawConfig::read_dir(dir)?;
    if let Some(p) = options.dropout {
        raw.set_dropout(p);
    }
    let architecture = raw.architecture()?;
    let store = SafeTensorStore::open_dir(dir)?;
    tracing::debug!(%architecture, dir = %dir.display(), "loading model");
    match architecture {
        Architecture::Bert | Architecture::Roberta => {
            Ok(Box::new(EncoderModel::load(&raw, &store, task, options)?))
        }
        Architecture::Gpt2 => Ok(Box::new(gpt2::load(&raw, &store, task, options)?)),
        Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Mistral => {
            Ok(Box::new(llama::load(&raw, &store, task, options)?))
        }
    }
}

/// Checks, without reading any weights, that `dir` holds a model [`load_model`] can load: a
/// GGUF file whose header and metadata parse, or a `config.json` of a supported architecture
/// beside safetensors files whose headers parse. Cheap, so a command can report a broken
/// model before it spends time on the data.
pub fn check_model(dir: &Path) -> Result<()> {
    if let Some(file) = gguf_file(dir) {
        let gguf = crate::gguf::GgufFile::open(&file)?;
        crate::gguf::config_from_metadata(&gguf)?;
        return Ok(());
    }
    RawConfig::read_dir(dir)?.architecture()?;
    SafeTensorStore::open_dir(dir)?;
    Ok(())
}

/// The GGUF file `path` names: the path itself if it is a `.gguf` file, else the only `.gguf`
/// file of a directory that has no `config.json` (the rule [`load_model`] follows; `None`
/// for a Hugging Face folder).
pub fn gguf_file(path: &Path) -> Option<PathBuf> {
    let is_gguf = |p: &Path| p.is_file() && p.extension().is_some_and(|e| e == "gguf");
    if is_gguf(path) {
        return Some(path.to_path_buf());
    }
    if !path.is_dir() || path.join(CONFIG_FILE).exists() {
        return None;
    }
    let mut found = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_gguf(p));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// `dir/tokenizer.json` if it exists.
pub fn tokenizer_path(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(TOKENIZER_FILE);
    path.is_file().then_some(path)
}
