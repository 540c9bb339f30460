//! Applying a Hugging Face PEFT LoRA adapter (`adapter_config.json` +
//! `adapter_model.safetensors`) to a [`Model`].
//!
//! Keys look like `base_model.model.<prefix><module path>.lora_A.weight` [r, in] and
//! `.lora_B.weight` [out, r]; ranks may differ per module (`rank_pattern`), and so may alpha
//! (`alpha_pattern`). The scale of each module is `alpha / r` (`alpha / sqrt(r)` with
//! rsLoRA). A task head saved through `modules_to_save` is copied into the model's head.
//! [`save_peft_adapter`] writes the same format, one rank and alpha per module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use autolora_core::{Adapter, Param};
use tch::Tensor;

use crate::model::{Model, Task, module_matches};
use crate::weights::{SafeTensorStore, write_safetensors};
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

/// What [`save_peft_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftExportSummary {
    /// Module path and rank of every exported adapter.
    pub ranks: Vec<(String, i64)>,
    /// Task-head tensors saved through `modules_to_save`.
    pub head_tensors: Vec<String>,
}

/// PEFT's `task_type` for a model's task.
fn peft_task_type(task: Task) -> &'static str {
    match task {
        Task::Encoder => "FEATURE_EXTRACTION",
        Task::SequenceClassification { .. } | Task::Regression => "SEQ_CLS",
        Task::TokenClassification { .. } => "TOKEN_CLS",
        Task::CausalLm => "CAUSAL_LM",
    }
}

/// Writes every adapter of `model` (and its task head) as a Hugging Face PEFT LoRA adapter
/// into `dir` (created if needed): `adapter_config.json` and `adapter_model.safetensors`.
///
/// Each module keeps its own rank and scale: `rank_pattern[path] = r`,
/// `alpha_pattern[path] = scale * r` (PEFT scales by `alpha / r`). A gated adapter is
/// exported with its selection weights folded into `B` (`B diag(a)`), so what PEFT computes
/// equals this model's forward pass; prune first to drop unselected components.
/// `base_model` goes into `base_model_name_or_path`.
pub fn save_peft_adapter(
    model: &dyn Model,
    dir: &Path,
    base_model: Option<&str>,
) -> Result<PeftExportSummary> {
    let prefix = model.hf_prefix();
    let mut tensors = Vec::new();
    let mut ranks = Vec::new();
    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    let mut dropout: f64 = 0.0;
    for (path, layer) in model.adapted_layers() {
        let Some(adapter) = layer.adapter() else {
            continue;
        };
        let _guard = tch::no_grad_guard();
        let r = adapter.rank();
        let b = match &adapter.gate {
            Some(gate) => adapter.b.tensor() * gate.weights().unsqueeze(0),
            None => adapter.b.tensor(),
        };
        let key = format!("{KEY_ROOT}{prefix}{path}");
        tensors.push((
            format!("{key}.lora_A.weight"),
            adapter.a.tensor().to_kind(tch::Kind::Float),
        ));
        tensors.push((format!("{key}.lora_B.weight"), b.to_kind(tch::Kind::Float)));
        rank_pattern.insert(path.clone(), r.into());
        alpha_pattern.insert(path.clone(), (adapter.scale * r as f64).into());
        dropout = dropout.max(adapter.dropout);
        ranks.push((path, r));
    }
    if ranks.is_empty() {
        return Err(Error::InvalidArgument {
            what: "model",
            why: "it has no LoRA adapters to export".into(),
        });
    }
    let mut head_tensors = Vec::new();
    let mut modules_to_save: Vec<String> = Vec::new();
    for p in model.head_params() {
        let module = p.name.split('.').next().unwrap_or(&p.name).to_string();
        if !modules_to_save.contains(&module) {
            modules_to_save.push(module);
        }
        let value = p.param.tensor().detach().to_kind(tch::Kind::Float);
        tensors.push((format!("{KEY_ROOT}{}", p.name), value));
        head_tensors.push(p.name);
    }
    let (first_path, first_rank) = &ranks[0];
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": peft_task_type(model.task()),
        "base_model_name_or_path": base_model,
        "r": first_rank,
        "lora_alpha": alpha_pattern[first_path],
        "lora_dropout": dropout,
        "target_modules": ranks.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "modules_to_save": if modules_to_save.is_empty() { None } else { Some(modules_to_save) },
        "fan_in_fan_out": model.peft_fan_in_fan_out(),
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "layers_to_transform": null,
        "layers_pattern": null,
        "revision": null,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|source| Error::Json {
        path: dir.join(ADAPTER_CONFIG),
        source,
    })?;
    // The config and the weights are replaced together: a kill never pairs one with the other's
    // previous version.
    crate::atomic::write_dir(dir, |staging| {
        let config_path = staging.join(ADAPTER_CONFIG);
        std::fs::write(&config_path, text + "\n").map_err(|source| Error::Io {
            path: config_path,
            source,
        })?;
        write_safetensors(&staging.join(ADAPTER_WEIGHTS), &tensors)
    })?;
    tracing::info!(modules = ranks.len(), dir = %dir.display(), "PEFT adapter written");
    Ok(PeftExportSummary {
        ranks,
        head_tensors,
    })
}
