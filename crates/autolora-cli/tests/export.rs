//! `autolora export --merged` on tiny fixtures: a LoRA is trained for a few steps with
//! `autolora train`, exported merged, and the folder is checked against the task's Hugging
//! Face class: its keys (read here), our own loader, and, when the project's Python is
//! installed, PyPI `transformers` loading it alone (`tests/reference/merged_check.py`: no
//! missing or unexpected keys, the logits of the base model with the adapter, to 1e-4 as the
//! PEFT round trip of `tests/cli.rs`).
//!
//! Fixtures (`tests/reference/make_llama_fixtures.py`, `make_qwen_fixtures.py` for `tiny-qwen2`,
//! `tiny-qwen3` and `tiny-mistral`): `tiny-llama`, an untied Llama with
//! grouped-query attention, and `tiny-llama-gguf`, the same weights as a llama.cpp GGUF file
//! (Q8_0/F16/F32, query/key rows permuted). `tiny-bert` and `tiny-gpt2` come from
//! `make_fixtures.py`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, ensure};
use autolora_models::peft::apply_peft_adapter;
use autolora_models::{LoadOptions, ModelInput, SafeTensorStore, Task, load_model};
use tch::{Device, Kind, Tensor};

mod common;
use common::{autolora, fixtures, ok, reference_python, reference_script};

/// Largest logit difference allowed between two implementations of one f32 model.
const TOLERANCE: f32 = 1e-4;
/// Token ids the logits are compared on (inside every fixture's vocabulary).
const IDS: &[i64] = &[2, 17, 42, 9, 33, 5, 51, 3];

/// Trains a rank-2 LoRA (`targets`) on `model_dir` for `task` in `dir/run` and exports it
/// merged to `dir/merged`, which is returned.
fn train_and_export(
    dir: &Path,
    model_dir: &Path,
    (task, data): (&str, &str),
    targets: &str,
) -> Result<PathBuf> {
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[model]
dir = "{model}"

[task]
name = "{task}"
data_dir = "{data}"
max_length = 64
eval_limit = 2

[lora]
targets = {targets}
dropout = 0.0

[train]
ranks = 2
steps = 4
batch_size = 8
lr = 0.05
eval_batch_size = 8

[generate]
num_beams = 1
max_new_tokens = 2
meteor = false

[run]
seed = 3
device = "cpu"
threads = 1
out_dir = "{out}"
"#,
            model = model_dir.display(),
            data = fixtures().join(data).display(),
            out = dir.join("run").display(),
        ),
    )?;
    let config = config.to_str().context("path")?;
    ok(autolora(&["train", "--config", config])?)?;
    let (adapter, merged) = (dir.join("adapter"), dir.join("merged"));
    let (adapter, merged) = (adapter.to_str().unwrap(), merged.to_str().unwrap());
    ok(autolora(&[
        "export",
        "--config",
        config,
        "--adapter",
        adapter,
        "--merged",
        merged,
    ])?)?;
    Ok(dir.join("merged"))
}

/// The logits of the model in `model_dir` for `task`, with the PEFT adapter in `adapter` if
/// given, on [`IDS`], flattened.
fn logits(model_dir: &Path, task: Task, adapter: Option<&Path>) -> Result<Vec<f32>> {
    let mut model = load_model(model_dir, task, &LoadOptions::default())?;
    if let Some(adapter) = adapter {
        apply_peft_adapter(model.as_mut(), adapter)?;
    }
    let ids = Tensor::from_slice(IDS).view([1, -1]);
    let out = model.forward_t(
        &ModelInput {
            input_ids: &ids,
            attention_mask: &ids.ones_like(),
            token_type_ids: None,
        },
        false,
    )?;
    Ok(Vec::try_from(
        out.logits.context("no logits")?.reshape([-1]),
    )?)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks the merged model as a run of `task` on `base` (a model folder or GGUF folder):
/// our loader gives the logits of the base with the run's adapter (to `ours_tolerance`),
/// which differ from the base's own; and `transformers` loads the folder with no missing or
/// unexpected keys and gives the logits our loader gives it. Returns the largest differences
/// (merged vs adapted in our loader, transformers vs ours) for the test's message.
fn check_merged(
    base: &Path,
    merged: &Path,
    run: &Path,
    task: Task,
    ours_tolerance: f32,
) -> Result<(f32, Option<f32>)> {
    let adapted = logits(base, task, Some(&run.join("adapter")))?;
    let plain = logits(base, task, None)?;
    let ours = logits(merged, task, None)?;
    let merge_diff = max_diff(&ours, &adapted);
    ensure!(
        merge_diff <= ours_tolerance,
        "merged vs adapted logits differ by {merge_diff}"
    );
    ensure!(
        max_diff(&adapted, &plain) > 1e-2,
        "the adapter barely changes the model: the test would not see a lost update"
    );
    let Some(python) = reference_python() else {
        eprintln!(
            "SKIPPED the transformers check: the reference Python is not installed (run `cargo xtask setup`)"
        );
        return Ok((merge_diff, None));
    };
    let script = reference_script("merged_check.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(merged);
    cmd.args(IDS.iter().map(i64::to_string));
    let report: serde_json::Value = serde_json::from_str(&ok(cmd.output()?)?)?;
    for what in ["missing", "unexpected", "mismatched"] {
        ensure!(
            report[what].as_array().is_some_and(Vec::is_empty),
            "transformers reports {what} keys: {}",
            report[what]
        );
    }
    let theirs: Vec<f32> = serde_json::from_value(report["logits"].clone())?;
    let diff = max_diff(&ours, &theirs);
    ensure!(
        diff < TOLERANCE,
        "transformers vs our logits of the merged model: {diff}"
    );
    Ok((merge_diff, Some(diff)))
}

fn keys(store: &SafeTensorStore) -> BTreeSet<String> {
    store.keys().map(str::to_string).collect()
}

const LLAMA_TARGETS: &str = r#"["q_proj", "k_proj", "v_proj", "down_proj"]"#;

#[test]
fn merged_untied_llama_has_its_own_lm_head_and_loads_in_transformers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = fixtures().join("tiny-llama");
    let merged = train_and_export(dir.path(), &base, ("e2e", "e2e"), LLAMA_TARGETS)?;

    let written = keys(&SafeTensorStore::open_dir(&merged)?);
    let source = keys(&SafeTensorStore::open_dir(&base)?);
    assert_eq!(
        written, source,
        "LlamaForCausalLM's keys, lm_head at the root"
    );
    assert!(written.contains("lm_head.weight"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json"))?)?;
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert!(merged.join("tokenizer.json").is_file());

    let run = dir.path().join("run");
    let (merge, transformers) = check_merged(&base, &merged, &run, Task::CausalLm, 1e-5)?;
    println!("merged vs adapted (ours) {merge:.1e}, transformers vs ours {transformers:?}");
    Ok(())
}

/// Qwen2 (q/k/v biases, tied head), Qwen3 (per-head q/k norms, untied head) and Mistral (a
/// window of 3 tokens) merge into their own classes' layouts, which transformers loads alone
/// (`make_qwen_fixtures.py`).
#[test]
fn merged_qwen_and_mistral_models_load_in_transformers() -> Result<()> {
    for (name, class) in [
        ("tiny-qwen2", "Qwen2ForCausalLM"),
        ("tiny-qwen3", "Qwen3ForCausalLM"),
        ("tiny-mistral", "MistralForCausalLM"),
    ] {
        let dir = tempfile::tempdir()?;
        let base = fixtures().join(name);
        let merged = train_and_export(dir.path(), &base, ("e2e", "e2e"), LLAMA_TARGETS)?;
        let written = keys(&SafeTensorStore::open_dir(&merged)?);
        let source = keys(&SafeTensorStore::open_dir(&base)?);
        assert_eq!(written, source, "{class}'s keys");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(merged.join("config.json"))?)?;
        assert_eq!(config["architectures"][0], class);
        let run = dir.path().join("run");
        let (merge, transformers) = check_merged(&base, &merged, &run, Task::CausalLm, 1e-5)?;
        println!(
            "{name}: merged vs adapted (ours) {merge:.1e}, transformers vs ours {transformers:?}"
        );
    }
    Ok(())
}

/// `tiny-llama` with every tensor stored in bf16, and a tokenizer that pads with its
/// end-of-text token (GPT-2's BPE has no padding token; sequence classification needs one).
fn bf16_copy(dir: &Path) -> Result<PathBuf> {
    let from = fixtures().join("tiny-llama");
    let to = dir.join("tiny-llama-bf16");
    std::fs::create_dir_all(&to)?;
    let store = SafeTensorStore::open_dir(&from)?;
    let tensors = store
        .keys()
        .map(|k| Ok((k.to_string(), store.load(k, Kind::BFloat16, Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    autolora_models::write_safetensors(&to.join("model.safetensors"), &tensors)?;
    let config = std::fs::read_to_string(from.join("config.json"))?
        .replace(r#""dtype": "float32""#, r#""dtype": "bfloat16""#);
    std::fs::write(to.join("config.json"), config)?;
    let mut tokenizer = tokenizers::Tokenizer::from_file(from.join("tokenizer.json"))
        .map_err(|e| anyhow!("{e}"))?;
    tokenizer.with_padding(Some(tokenizers::PaddingParams {
        pad_id: 0,
        pad_token: "<|endoftext|>".into(),
        ..Default::default()
    }));
    tokenizer
        .save(to.join("tokenizer.json"), false)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(to)
}

#[test]
fn bf16_base_is_merged_in_bf16_with_an_f32_head() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = bf16_copy(dir.path())?;
    let merged = train_and_export(dir.path(), &base, ("sst2", "glue/SST-2"), LLAMA_TARGETS)?;
    let task = Task::SequenceClassification { num_labels: 2 };

    let source = SafeTensorStore::open_dir(&base)?;
    let written = SafeTensorStore::open_dir(&merged)?;
    let body: BTreeSet<String> = keys(&source)
        .into_iter()
        .filter(|k| k != "lm_head.weight")
        .collect();
    let expected: BTreeSet<String> = body
        .iter()
        .cloned()
        .chain(["score.weight".into()])
        .collect();
    assert_eq!(
        keys(&written),
        expected,
        "LlamaForSequenceClassification's keys"
    );
    for key in &body {
        assert_eq!(written.stored_kind(key)?, Kind::BFloat16, "{key}");
    }
    assert_eq!(written.stored_kind("score.weight")?, Kind::Float);

    // Untouched tensors are copied bit for bit; an adapted one is the f32 sum rounded once.
    let bits = |store: &SafeTensorStore, key: &str| store.load(key, Kind::BFloat16, Device::Cpu);
    let norm = "model.layers.0.input_layernorm.weight";
    assert!(bits(&written, norm)?.equal(&bits(&source, norm)?));
    let mut model = load_model(&base, task, &LoadOptions::default())?;
    apply_peft_adapter(model.as_mut(), &dir.path().join("run/adapter"))?;
    let layer = "layers.1.self_attn.k_proj";
    let delta = tch::no_grad(|| {
        let layer = model.lora_layer(layer).context("layer")?;
        Ok::<_, anyhow::Error>(layer.adapter().context("adapter")?.delta_weight())
    })?;
    let key = format!("model.{layer}.weight");
    let expected = (source.load(&key, Kind::Float, Device::Cpu)? + delta).to_kind(Kind::BFloat16);
    assert!(bits(&written, &key)?.equal(&expected), "{key}");
    assert!(
        !expected.equal(&bits(&source, &key)?),
        "{key} got its update"
    );

    // Merged weights rounded to bf16 move the logits by about 2^-9 of their size.
    let run = dir.path().join("run");
    let (merge, transformers) = check_merged(&base, &merged, &run, task, 5e-3)?;
    println!("merged vs adapted (ours) {merge:.1e}, transformers vs ours {transformers:?}");
    Ok(())
}

#[test]
fn gguf_base_is_merged_into_an_hf_llama_folder() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = fixtures().join("tiny-llama-gguf");
    let merged = train_and_export(dir.path(), &base, ("e2e", "e2e"), LLAMA_TARGETS)?;

    let written = SafeTensorStore::open_dir(&merged)?;
    let hf = keys(&SafeTensorStore::open_dir(&fixtures().join("tiny-llama"))?);
    assert_eq!(keys(&written), hf, "the keys transformers saves");
    for key in &hf {
        assert_eq!(written.stored_kind(key)?, Kind::Float, "{key}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json"))?)?;
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["num_key_value_heads"], 2);
    assert_eq!(config["tie_word_embeddings"], false);

    // The tokenizer rebuilt from the metadata is the one the run used.
    let gguf = autolora_models::gguf::GgufFile::open(&base.join("tiny-llama.gguf"))?;
    let theirs = autolora_models::gguf::tokenizer_from_gguf(&gguf)?;
    let ours = tokenizers::Tokenizer::from_file(merged.join("tokenizer.json"))
        .map_err(|e| anyhow!("{e}"))?;
    let text = "The Copper Pot is a cheap pub near the Museum.";
    let ids = |t: &tokenizers::Tokenizer| -> Result<Vec<u32>> {
        Ok(t.encode(text, true)
            .map_err(|e| anyhow!("{e}"))?
            .get_ids()
            .to_vec())
    };
    assert_eq!(ids(&ours)?, ids(&theirs)?);

    // Dequantized and un-permuted as our GGUF loader does, so the logits agree to rounding.
    let run = dir.path().join("run");
    let (merge, transformers) = check_merged(&base, &merged, &run, Task::CausalLm, 1e-5)?;
    println!("merged vs adapted (ours) {merge:.1e}, transformers vs ours {transformers:?}");
    Ok(())
}

#[test]
fn merged_bert_and_gpt2_have_their_task_class_keys() -> Result<()> {
    // (fixture, task, data, targets, task class, heads the class has at the root)
    let cases = [
        (
            "tiny-bert",
            ("conll", "conll"),
            Task::TokenClassification { num_labels: 9 },
            r#"["query", "value"]"#,
            "BertForTokenClassification",
            vec!["classifier.bias", "classifier.weight"],
        ),
        (
            "tiny-gpt2",
            ("e2e", "e2e"),
            Task::CausalLm,
            r#"["c_attn"]"#,
            "GPT2LMHeadModel",
            vec![],
        ),
    ];
    for (fixture, task_data, task, targets, class, heads) in cases {
        let dir = tempfile::tempdir()?;
        let base = fixtures().join(fixture);
        let merged = train_and_export(dir.path(), &base, task_data, targets)?;
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(merged.join("config.json"))?)?;
        assert_eq!(config["architectures"][0], class);
        let written = keys(&SafeTensorStore::open_dir(&merged)?);
        let prefix = if fixture == "tiny-bert" {
            "bert."
        } else {
            "transformer."
        };
        let (body, root): (BTreeSet<&String>, BTreeSet<&String>) =
            written.iter().partition(|k| k.starts_with(prefix));
        assert_eq!(root.into_iter().collect::<Vec<_>>(), heads, "{fixture}");
        // BertForTokenClassification has no pooler; GPT-2's head is tied, not stored.
        assert!(body.iter().all(|k| !k.contains("pooler")), "{fixture}");
        assert!(!body.is_empty());
        let run = dir.path().join("run");
        let (merge, transformers) = check_merged(&base, &merged, &run, task, 1e-5)?;
        println!(
            "{fixture}: merged vs adapted (ours) {merge:.1e}, transformers vs ours {transformers:?}"
        );
    }
    Ok(())
}
