//! Applying a Hugging Face PEFT LoRA adapter (`adapter_config.json` +
//! `adapter_model.safetensors`) to a [`Model`].
//!
//! Keys look like `base_model.model.<prefix><module path>.lora_A.weight` [r, in] and
//! `.lora_B.weight` [out, r]; ranks may differ per module (`rank_pattern`), and so may alpha
//! (`alpha_pattern`). The scale of each module is `alpha / r` (`alpha / sqrt(r)` with
//! rsLoRA). A task head saved through `modules_to_save` is copied into the model's head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use autolora_core::{Adapter, Param};
use tch::Tensor;

use crate::model::{Model, module_matches};
use crate::weights::SafeTensorStore;
use crate::{Error, Result};

/// Name of PEFT's adapter config.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// Name of PEFT's adapter weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

const KEY_ROOT: &str = "base_model.model.";

/// The fields of `adapter_config.json` that decide the forward pass.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PeftLoraConfig {
    /// Must be `"LORA"`.
    pub peft_type: String,
    /// Default rank.
    pub r: i64,
    /// Default alpha.
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Per-module ranks (keys matched as dotted suffixes of module paths).
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, i64>,
    /// Per-module alphas (same matching).
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// rsLoRA scaling `alpha / sqrt(r)`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Whether the base layer stores [in, out] (GPT-2 Conv1D); the LoRA factors are stored
    /// the same way either way.
    #[serde(default)]
    pub fan_in_fan_out: bool,
}

impl PeftLoraConfig {
    /// The alpha of module `path`.
    pub fn alpha_for(&self, path: &str) -> f64 {
        self.alpha_pattern
            .iter()
            .find(|(k, _)| module_matches(path, k))
            .map(|(_, &a)| a)
            .unwrap_or(self.lora_alpha)
    }

    /// The rank the config declares for module `path`.
    pub fn rank_for(&self, path: &str) -> i64 {
        self.rank_pattern
            .iter()
            .find(|(k, _)| module_matches(path, k))
            .map(|(_, &r)| r)
            .unwrap_or(self.r)
    }
}

/// Reads `dir`'s adapter and attaches it to `model` (replacing any adapters on the same
/// layers). Returns the adapted module paths. Every `lora_` tensor must belong to a linear
/// layer of the model with matching shapes; ranks must equal the config's.
pub fn apply_peft_adapter(model: &mut dyn Model, dir: &Path) -> Result<Vec<String>> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let config: PeftLoraConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    if config.peft_type != "LORA" {
        return Err(Error::BadConfig {
            path: config_path,
            what: format!(
                "peft_type is {:?}; only \"LORA\" is supported",
                config.peft_type
            ),
        });
    }
    let store = SafeTensorStore::open_files(&[dir.join(ADAPTER_WEIGHTS)])?;
    let prefix = model.hf_prefix().to_string();
    let (device, kind) = (model.device(), model.kind());
    // Module path as the model names it, from a key's middle part.
    let module_of = |key: &str, suffix: &str| -> Option<String> {
        let rest = key.strip_prefix(KEY_ROOT)?.strip_suffix(suffix)?;
        Some(rest.strip_prefix(&prefix).unwrap_or(rest).to_string())
    };
    let mut used = BTreeSet::new();
    let mut adapted = Vec::new();
    for (path, layer) in model.linear_layers_mut() {
        let key_a = format!("{KEY_ROOT}{prefix}{path}.lora_A.weight");
        let key_b = format!("{KEY_ROOT}{prefix}{path}.lora_B.weight");
        let (key_a, key_b) = if store.contains(&key_a) {
            (key_a, key_b)
        } else {
            // A bare-encoder adapter has no prefix even when the model has a head.
            let a = format!("{KEY_ROOT}{path}.lora_A.weight");
            if !store.contains(&a) {
                continue;
            }
            (a, format!("{KEY_ROOT}{path}.lora_B.weight"))
        };
        let r = config.rank_for(&path);
        let check = |key: &str, expected: [i64; 2]| -> Result<Tensor> {
            let found = store.shape(key).ok_or_else(|| Error::MissingTensor {
                name: format!("{path} LoRA factor"),
                key: key.to_string(),
                source_desc: store.description().to_string(),
            })?;
            if found != expected {
                return Err(Error::ShapeMismatch {
                    name: key.to_string(),
                    expected: expected.to_vec(),
                    found: found.to_vec(),
                });
            }
            store.load(key, kind, device)
        };
        let a = check(&key_a, [r, layer.in_features()])?;
        let b = check(&key_b, [layer.out_features(), r])?;
        let alpha = config.alpha_for(&path);
        let scale = if config.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        layer.attach(Adapter {
            a: Param::new(a.set_requires_grad(true)),
            b: Param::new(b.set_requires_grad(true)),
            gate: None,
            scale,
            dropout: config.lora_dropout,
        })?;
        used.insert(key_a);
        used.insert(key_b);
        adapted.push(path);
    }
    // Task-head tensors saved through `modules_to_save`.
    let head: BTreeMap<String, Param> = model
        .head_params()
        .into_iter()
        .map(|p| (p.name, p.param))
        .collect();
    for key in store.keys() {
        if used.contains(key) {
            continue;
        }
        let Some(name) = key
            .strip_prefix(KEY_ROOT)
            .map(|k| k.replace(".modules_to_save", ""))
        else {
            continue;
        };
        if let Some(param) = head.get(&name) {
            let value = store.load(key, kind, device)?;
            if value.size() != param.size() {
                return Err(Error::ShapeMismatch {
                    name: key.to_string(),
                    expected: param.size(),
                    found: value.size(),
                });
            }
            tch::no_grad(|| param.tensor().f_copy_(&value))?;
            used.insert(key.to_string());
        }
    }
    let unexpected: Vec<String> = store
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|k| {
            let module = module_of(k, ".lora_A.weight").or_else(|| module_of(k, ".lora_B.weight"));
            match module {
                Some(m) => format!("{k} (no linear layer {m:?} in the model)"),
                None => k.to_string(),
            }
        })
        .collect();
    if !unexpected.is_empty() {
        return Err(Error::UnexpectedTensors { names: unexpected });
    }
    tracing::info!(modules = adapted.len(), dir = %dir.display(), "PEFT adapter applied");
    Ok(adapted)
}
