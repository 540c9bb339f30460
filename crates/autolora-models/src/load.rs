//! Loading any supported model from a Hugging Face model directory.

use std::path::{Path, PathBuf};

use tch::{Device, Kind};

use crate::config::{Architecture, RawConfig};
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
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            kind: Kind::Float,
            base_kind: None,
            seed: 0,
            attention: AttentionImpl::Eager,
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
        Ok(())
    }
}

/// Reads `dir`'s config.json, detects the architecture and loads the weights
/// (`model.safetensors` or a sharded checkpoint) for `task`.
pub fn load_model(dir: &Path, task: Task, options: &LoadOptions) -> Result<Box<dyn Model>> {
    options.validate()?;
    let raw = RawConfig::read_dir(dir)?;
    let architecture = raw.architecture()?;
    let store = SafeTensorStore::open_dir(dir)?;
    tracing::debug!(%architecture, dir = %dir.display(), "loading model");
    match architecture {
        Architecture::Bert | Architecture::Roberta => {
            Ok(Box::new(EncoderModel::load(&raw, &store, task, options)?))
        }
        Architecture::Gpt2 => Ok(Box::new(gpt2::load(&raw, &store, task, options)?)),
        Architecture::Llama => Ok(Box::new(llama::load(&raw, &store, task, options)?)),
    }
}

/// `dir/tokenizer.json` if it exists.
pub fn tokenizer_path(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(TOKENIZER_FILE);
    path.is_file().then_some(path)
}
