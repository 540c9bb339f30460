//! `autolora export`: the run's PEFT adapter, and optionally a merged full model in Hugging
//! Face format (zero-overhead inference, loadable with `from_pretrained` alone).
//!
//! The merged model is written by rewriting the base checkpoint tensor by tensor: every
//! adapted module's weight gets its update `s * B A` added (transposed for GPT-2's Conv1D
//! layout), keys are renamed to the layout of the task model (`<prefix><module>`), the task
//! head is added, and `config.json` names the task class and its labels. Everything else is
//! copied unchanged.

use std::path::Path;

use anyhow::{Context, Result};
use autolora_models::peft::apply_peft_adapter;
use autolora_models::weights::{SafeTensorStore, write_safetensors};
use autolora_models::{Architecture, AttentionImpl, Model, Task};
use tch::{Device, Kind, Tensor};

use crate::run::ADAPTER_DIR;
use crate::session::Session;
use crate::task::TaskSpec;

/// Key prefixes a base checkpoint may use.
const PREFIXES: &[&str] = &["bert.", "roberta.", "transformer.", "model.", ""];

/// Copies the run's adapter to `out` (PEFT format) and, with `merged`, writes the merged model.
pub fn run(session: &Session, out: &Path, merged: Option<&Path>) -> Result<()> {
    let adapter = session.path(ADAPTER_DIR);
    // Copied into a staging folder and renamed into place whole, so `out` never holds a new
    // config beside old weights.
    autolora_data::atomic::write_dir(out, |staging| -> Result<()> {
        for name in [
            autolora_models::peft::ADAPTER_CONFIG,
            autolora_models::peft::ADAPTER_WEIGHTS,
        ] {
            std::fs::copy(adapter.join(name), staging.join(name)).with_context(|| {
                format!(
                    "copying {} (run `autolora run` or `train` first)",
                    adapter.join(name).display()
                )
            })?;
        }
        Ok(())
    })?;
    println!("PEFT adapter written to {}", out.display());
    if let Some(dir) = merged {
        let mut model = session.load_model(AttentionImpl::Fused)?;
        apply_peft_adapter(model.as_mut(), &adapter)?;
        autolora_data::atomic::write_dir(dir, |staging| {
            write_merged(session, model.as_ref(), staging)
        })?;
        println!("merged model written to {}", dir.display());
    }
    Ok(())
}

fn write_merged(session: &Session, model: &dyn Model, dir: &Path) -> Result<()> {
    let store = SafeTensorStore::open_dir(&session.model_dir)?;
    let target_prefix = model.hf_prefix();
    let adapted: std::collections::BTreeMap<String, Tensor> = model
        .adapted_layers()
        .into_iter()
        .filter_map(|(name, layer)| {
            let adapter = layer.adapter()?;
            Some((
                format!("{name}.weight"),
                tch::no_grad(|| adapter.delta_weight()),
            ))
        })
        .collect();
    let transpose = model.peft_fan_in_fan_out();
    let mut tensors = Vec::new();
    for key in store.keys() {
        let local = PREFIXES
            .iter()
            .find_map(|p| key.strip_prefix(p).filter(|_| !p.is_empty()))
            .unwrap_or(key);
        let mut value = store.load(key, Kind::Float, Device::Cpu)?;
        if let Some(delta) = adapted.get(local) {
            let delta = delta.to_device(Device::Cpu).to_kind(Kind::Float);
            value = if transpose {
                value + delta.tr()
            } else {
                value + delta
            };
        }
        tensors.push((format!("{target_prefix}{local}"), value));
    }
    for p in model.head_params() {
        tensors.push((
            p.name.clone(),
            p.param.tensor().detach().to_device(Device::Cpu),
        ));
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;

    let config_path = session.model_dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )?;
    config["architectures"] = serde_json::json!([class_name(model)]);
    if let TaskSpec::Tagging { labels } | TaskSpec::Classification { labels, .. } =
        &session.data.spec
    {
        let id2label: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone().into()))
            .collect();
        let label2id: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i.into()))
            .collect();
        config["id2label"] = id2label.into();
        config["label2id"] = label2id.into();
    }
    if matches!(session.data.spec, TaskSpec::Regression) {
        config["num_labels"] = 1.into();
        config["problem_type"] = "regression".into();
    }
    autolora_data::atomic::write(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    for extra in [
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let from = session.model_dir.join(extra);
        if from.exists() {
            std::fs::copy(&from, dir.join(extra))?;
        }
    }
    Ok(())
}

/// The Hugging Face class of the task model, e.g. `BertForTokenClassification`.
fn class_name(model: &dyn Model) -> String {
    if model.architecture() == Architecture::Gpt2 && model.task() == Task::CausalLm {
        return "GPT2LMHeadModel".into(); // the one class that breaks the naming pattern
    }
    let stem = match model.architecture() {
        Architecture::Bert => "Bert",
        Architecture::Roberta => "Roberta",
        Architecture::Gpt2 => "GPT2",
        Architecture::Llama => "Llama",
        _ => "Auto",
    };
    let head = match model.task() {
        Task::TokenClassification { .. } => "ForTokenClassification",
        Task::SequenceClassification { .. } | Task::Regression => "ForSequenceClassification",
        Task::CausalLm => "ForCausalLM",
        Task::Encoder => "Model",
    };
    format!("{stem}{head}")
}
