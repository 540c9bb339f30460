//! Exporting searched-and-pruned adapters as a Hugging Face PEFT adapter: our own loader
//! reads it back to the same outputs, and (when the project's Python is provisioned) PyPI
//! `peft` loads it onto the `transformers` model with the same logits.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use autolora_core::prune::prune_layer;
use autolora_core::{Gate, LoraConfig, Param};
use autolora_models::Task;
use autolora_models::peft::{apply_peft_adapter, save_peft_adapter};
use common::{fixture, load, logits, reference, serial};
use tch::{Device, Kind, Tensor};

/// The project's reference Python, if provisioned.
fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("AUTOLORA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/autolora")))?;
    let python = cache.join("python/torch-2.11.0/bin/python");
    python.is_file().then_some(python)
}

fn perturb(param: &Param, std: f64) {
    let _guard = tch::no_grad_guard();
    let noise = Tensor::randn(param.size(), (Kind::Float, Device::Cpu)) * std;
    let _ = param.tensor().f_add_(&noise);
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn roundtrip(base: &str, task: Task) -> Result<()> {
    let _serial = serial();
    tch::manual_seed(3);
    let r = reference(base)?;
    let mut model = load(base, task)?;
    let lora = LoraConfig {
        rank: 4,
        alpha: 16.0,
        dropout: 0.1,
    };
    let adapted = model.inject_lora(&[], &lora, Some(Gate::Softmax))?;
    // As after a search: trained factors, non-uniform selection, a trained head.
    for p in model.lora_params() {
        perturb(&p.param, 0.3);
    }
    for p in model.selection_params() {
        perturb(&p.param, 1.0);
    }
    for p in model.head_params() {
        perturb(&p.param, 0.1);
    }
    // Prune to different ranks per module; the last module stays gated (folded on export).
    let kept: [&[usize]; 3] = [&[0], &[1, 3], &[0, 1, 2]];
    let expected: Vec<i64> = (0..adapted.len())
        .map(|i| kept.get(i).map_or(4, |k| k.len() as i64))
        .collect();
    for (name, keep) in adapted.iter().zip(kept) {
        let layer = model.lora_layer_mut(name).context("layer")?;
        prune_layer(layer, keep, 16.0)?;
    }
    let ours = logits(model.as_ref(), &r)?;
    let tmp = tempfile::tempdir()?;
    let out_dir = tmp.path().join("adapter");
    let summary = save_peft_adapter(model.as_ref(), &out_dir, Some("tiny"))?;
    let ranks: Vec<i64> = summary.ranks.iter().map(|(_, r)| *r).collect();
    assert_eq!(ranks, expected);

    let mut reloaded = load(base, task)?;
    apply_peft_adapter(reloaded.as_mut(), &out_dir)?;
    let back = logits(reloaded.as_ref(), &r)?;
    let diff = max_diff(&ours, &back);
    // The export folds the last module's gate into B, which rounds differently from the gated
    // forward: a few float32 roundings of the largest logit (measured: up to 4.5 of them).
    let largest = ours.abs().max().double_value(&[]);
    let tolerance = 16.0 * f64::from(f32::EPSILON) * largest.max(1.0);
    println!("{base}: exported and reloaded, max |diff| = {diff:.3e} (tolerance {tolerance:.1e})");
    ensure!(diff <= tolerance, "reloaded adapter differs by {diff}");

    let Some(python) = python() else {
        println!("SKIPPED the PEFT check: the project's Python is not provisioned");
        return Ok(());
    };
    let peft_out = tmp.path().join("peft_logits.safetensors");
    let status = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/check_peft_export.py"))
        .arg(fixture(base))
        .arg(&out_dir)
        .arg(fixture(base).join("reference.safetensors"))
        .arg(&peft_out)
        .arg(match task {
            Task::CausalLm => "causal-lm",
            _ => "seq-cls",
        })
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    ensure!(status.success(), "check_peft_export.py failed ({status})");
    let theirs: HashMap<String, Tensor> =
        Tensor::read_safetensors(&peft_out)?.into_iter().collect();
    let diff = max_diff(&ours, &theirs["logits"]);
    println!("{base}: PEFT (Python) on the exported adapter, max |diff| = {diff:.3e}");
    ensure!(diff < 1e-5, "PEFT's logits differ by {diff}");
    Ok(())
}

#[test]
fn bert_adapter_exports_to_peft() -> Result<()> {
    roundtrip("bert-tiny-seqcls", SEQ_CLS)
}

#[test]
fn roberta_adapter_exports_to_peft() -> Result<()> {
    roundtrip("roberta-tiny-seqcls", SEQ_CLS)
}

/// GPT-2's `c_attn` is a `Conv1D`: the adapter goes out with `fan_in_fan_out: true` and the
/// factors in PEFT's usual `A` [r, in], `B` [out, r] layout.
#[test]
fn gpt2_adapter_exports_to_peft() -> Result<()> {
    roundtrip("gpt2-tiny-lm", Task::CausalLm)
}

#[test]
fn llama_adapter_exports_to_peft() -> Result<()> {
    roundtrip("llama-tiny-gqa", Task::CausalLm)
}

#[test]
fn qwen2_adapter_exports_to_peft() -> Result<()> {
    roundtrip("qwen2-tiny-sliding", Task::CausalLm)
}

#[test]
fn qwen3_adapter_exports_to_peft() -> Result<()> {
    roundtrip("qwen3-tiny", Task::CausalLm)
}

#[test]
fn mistral_adapter_exports_to_peft() -> Result<()> {
    roundtrip("mistral-tiny", Task::CausalLm)
}

const SEQ_CLS: Task = Task::SequenceClassification { num_labels: 3 };
