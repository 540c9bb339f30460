//! Writing a trained model's adapters as a Hugging Face PEFT LoRA adapter.
//!
//! `adapter_config.json` lists every adapted module in `rank_pattern` (its rank) and
//! `alpha_pattern` (`scale * rank`, so PEFT's `alpha / r` reproduces our scale exactly, also
//! for pruned adapters whose scale was folded into B); `adapter_model.safetensors` holds
//! `base_model.model.<prefix><module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]
//! plus the task head under `modules_to_save`, with the `{"format": "pt"}` metadata PEFT
//! expects. Selection gates must have been pruned away first (PEFT has no such thing).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, bail};
use autolora_models::Model;
use autolora_models::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use safetensors::tensor::{Dtype, TensorView};
use tch::{Device, Kind, Tensor};

const KEY_ROOT: &str = "base_model.model.";

/// Writes the adapter of `model` into `dir` (created if needed).
pub fn save(model: &dyn Model, dir: &Path, base_model: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let prefix = model.hf_prefix();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    let mut rank_pattern = BTreeMap::new();
    let mut alpha_pattern = BTreeMap::new();
    let mut dropout = 0.0;
    for (name, layer) in model.adapted_layers() {
        let Some(adapter) = layer.adapter() else {
            continue;
        };
        if adapter.gate.is_some() {
            bail!("module {name} still has selection variables: prune it before exporting");
        }
        let rank = adapter.rank();
        rank_pattern.insert(name.clone(), rank);
        alpha_pattern.insert(name.clone(), adapter.scale * rank as f64);
        dropout = adapter.dropout;
        tensors.push(f32_bytes(
            format!("{KEY_ROOT}{prefix}{name}.lora_A.weight"),
            &adapter.a.tensor(),
        ));
        tensors.push(f32_bytes(
            format!("{KEY_ROOT}{prefix}{name}.lora_B.weight"),
            &adapter.b.tensor(),
        ));
    }
    if rank_pattern.is_empty() {
        bail!("the model has no adapters to export");
    }
    let head = model.head_params();
    let mut modules_to_save: Vec<String> = head
        .iter()
        .map(|p| {
            p.name
                .rsplit_once('.')
                .map_or(p.name.clone(), |(m, _)| m.to_string())
        })
        .collect();
    modules_to_save.dedup();
    for p in &head {
        tensors.push(f32_bytes(
            format!("{KEY_ROOT}{}", p.name),
            &p.param.tensor(),
        ));
    }
    let r = *rank_pattern.values().max().expect("not empty");
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": task_type(model.task()),
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": alpha_pattern.values().next().copied().unwrap_or(r as f64),
        "lora_dropout": dropout,
        "target_modules": rank_pattern.keys().collect::<Vec<_>>(),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "modules_to_save": modules_to_save,
        "fan_in_fan_out": false,
        "bias": "none",
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
    });
    crate::atomic::write(
        &dir.join(ADAPTER_CONFIG),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, bytes, shape)| {
            Ok((
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let bytes = safetensors::serialize(views, Some(metadata))?;
    crate::atomic::write(&dir.join(ADAPTER_WEIGHTS), &bytes)
}

fn f32_bytes(name: String, t: &Tensor) -> (String, Vec<u8>, Vec<usize>) {
    let t = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.reshape([-1])).expect("an f32 tensor converts");
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    (name, bytes, shape)
}

fn task_type(task: autolora_models::Task) -> &'static str {
    use autolora_models::Task;
    match task {
        Task::TokenClassification { .. } => "TOKEN_CLS",
        Task::SequenceClassification { .. } | Task::Regression => "SEQ_CLS",
        Task::CausalLm => "CAUSAL_LM",
        Task::Encoder => "FEATURE_EXTRACTION",
    }
}
