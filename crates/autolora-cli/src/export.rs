//! `autolora export`: the run's PEFT adapter, and optionally a merged full model in Hugging
//! Face format (zero-overhead inference, loadable with `from_pretrained` alone).
//!
//! The merged model is the base checkpoint rewritten tensor by tensor in the layout of the
//! task's Hugging Face class: base-network keys under the class's prefix (`model.`, `bert.`,
//! ...), heads at the root (`lm_head`, `score`, `classifier`). Every adapted module's weight
//! gets its update `s * B A` added (transposed for GPT-2's Conv1D layout), the trained task
//! head is added, and `config.json` names the task class and its labels. Base tensors keep
//! the dtype they are stored in. The file is written one tensor at a time (read, merge,
//! convert, write, drop), so besides the adapted model the export holds one tensor, never a
//! merged copy of the model. It is one file: large models are not sharded. A GGUF base is
//! dequantized into the same layout, an HF Llama folder in f32 with the config and tokenizer
//! rebuilt from its metadata.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use autolora_core::Adapter;
use autolora_models::config::CONFIG_FILE;
use autolora_models::gguf::{GgufFile, GgufLlamaSource, config_from_metadata, tokenizer_from_gguf};
use autolora_models::gpt2::Gpt2Config;
use autolora_models::llama::LlamaConfig;
use autolora_models::load::TOKENIZER_FILE;
use autolora_models::peft::apply_peft_adapter;
use autolora_models::weights::{SINGLE_FILE, safetensors_dtype};
use autolora_models::{
    Architecture, AttentionImpl, Model, RawConfig, SafeTensorStore, Task, TensorSource,
};
use safetensors::tensor::{Metadata, TensorInfo};
use tch::{Device, Kind, Tensor};

use crate::run::ADAPTER_DIR;
use crate::session::Session;
use crate::task::TaskSpec;

/// Key prefixes a base checkpoint may use for its base network.
const PREFIXES: &[&str] = &["bert.", "roberta.", "transformer.", "model."];

/// Buffers some checkpoints carry that the loaders skip and `transformers` does not save
/// (non-persistent): written, they would be unexpected keys.
const BUFFERS: &[&str] = &[
    "embeddings.position_ids",
    "embeddings.token_type_ids",
    ".attn.bias",
    ".attn.masked_bias",
    "rotary_emb.inv_freq",
];

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
        // What `autolora predict --adapter` needs beside the weights; PEFT reads neither.
        std::fs::write(
            staging.join(crate::predict::EXPORTED_CONFIG),
            session.config.to_toml()?,
        )?;
        if let Some(labels) = session.data.spec.labels() {
            std::fs::write(
                staging.join(crate::session::LABELS_FILE),
                serde_json::to_string_pretty(labels)?,
            )?;
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
    let weights = dir.join(SINGLE_FILE);
    let raw = match autolora_models::gguf_file(&session.model_dir) {
        Some(path) => {
            let file = GgufFile::open(&path)?;
            let raw = config_from_metadata(&file)?;
            let llama = LlamaConfig::from_raw(&raw)?;
            let source = GgufLlamaSource::new(&file, llama.num_attention_heads, llama.kv_heads());
            // Dequantized values are f32 (a quantized block has no smaller exact dtype), as
            // the rebuilt config says (`torch_dtype`).
            write_weights(model, &raw, &source, |_| Ok(Kind::Float), &weights)?;
            let tokenizer = tokenizer_from_gguf(&file)?
                .to_string(true)
                .map_err(|e| anyhow!("serializing the tokenizer of {}: {e}", path.display()))?;
            autolora_data::atomic::write(&dir.join(TOKENIZER_FILE), tokenizer.as_bytes())?;
            raw
        }
        None => {
            let store = SafeTensorStore::open_dir(&session.model_dir)?;
            let raw = RawConfig::read_dir(&session.model_dir)?;
            let stored = |key: &str| Ok(store.stored_kind(key)?);
            write_weights(model, &raw, &store, stored, &weights)?;
            for extra in [
                TOKENIZER_FILE,
                "vocab.txt",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ] {
                let from = session.model_dir.join(extra);
                if from.exists() {
                    std::fs::copy(&from, dir.join(extra))
                        .with_context(|| format!("copying {}", from.display()))?;
                }
            }
            raw
        }
    };

    let mut config = serde_json::Value::Object(raw.fields);
    config["architectures"] = serde_json::json!([class_name(model)]);
    if let Some(labels) = session.data.spec.labels() {
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
        &dir.join(CONFIG_FILE),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    Ok(())
}

/// How base checkpoint keys map to the keys of the task's Hugging Face class.
struct Layout {
    /// The checkpoint's base-network prefix (`""` for a bare base model).
    from: &'static str,
    /// The task class's base-network prefix ([`Model::hf_prefix`]).
    to: String,
    /// Whether the class has a pooler (`BertModel`, `RobertaModel`,
    /// `BertForSequenceClassification`; the other heads are built without one).
    pooler: bool,
    /// Whether the class has a `lm_head.weight` of its own (an untied causal LM).
    lm_head: bool,
}

impl Layout {
    fn new(model: &dyn Model, raw: &RawConfig, source: &dyn TensorSource) -> Result<Self> {
        let keys = source.keys();
        let from = PREFIXES
            .iter()
            .copied()
            .find(|p| keys.iter().any(|k| k.starts_with(p)))
            .unwrap_or("");
        let task = model.task();
        let architecture = model.architecture();
        let tied = if architecture.is_llama_family() {
            LlamaConfig::from_raw(raw)?.tie_word_embeddings
        } else if architecture == Architecture::Gpt2 {
            Gpt2Config::from_raw(raw)?.tie_word_embeddings
        } else {
            true // encoders have no LM head
        };
        let pooled = matches!(task, Task::SequenceClassification { .. } | Task::Regression);
        Ok(Layout {
            from,
            to: model.hf_prefix().to_string(),
            pooler: task == Task::Encoder || (model.architecture() == Architecture::Bert && pooled),
            lm_head: task == Task::CausalLm && !tied,
        })
    }

    /// The class's key for checkpoint key `key`, with the name inside the base network
    /// (which adapters use), or `None` when the class has no such tensor: buffers, a pooler
    /// it lacks, a tied LM head, and root tensors other than its LM head (pre-training
    /// heads, or the base's own head: the task head is written from the model).
    fn target<'k>(&self, key: &'k str) -> Option<(String, &'k str)> {
        if BUFFERS.iter().any(|b| key.ends_with(b)) {
            return None;
        }
        if key == "lm_head.weight" {
            return self.lm_head.then(|| (key.to_string(), key));
        }
        match key.strip_prefix(self.from)? {
            local if local.starts_with("pooler.") && !self.pooler => None,
            local => Some((format!("{}{local}", self.to), local)),
        }
    }
}

/// Where a tensor of the merged checkpoint comes from.
enum Origin<'m> {
    /// A base tensor by checkpoint key, with the adapter whose update it receives.
    Base {
        key: String,
        adapter: Option<&'m Adapter>,
    },
    /// A trained task-head tensor.
    Head(Tensor),
}

/// Writes the merged weights of `model` (base tensors from `source`, stored as
/// `stored_kind` says) to the safetensors file `path`, one tensor at a time.
fn write_weights(
    model: &dyn Model,
    raw: &RawConfig,
    source: &dyn TensorSource,
    stored_kind: impl Fn(&str) -> Result<Kind>,
    path: &Path,
) -> Result<()> {
    let layout = Layout::new(model, raw, source)?;
    let mut adapters: BTreeMap<String, &Adapter> = model
        .adapted_layers()
        .into_iter()
        .filter_map(|(name, layer)| Some((format!("{name}.weight"), layer.adapter()?)))
        .collect();
    let mut planned = Vec::new();
    for key in source.keys() {
        let Some((name, local)) = layout.target(key) else {
            continue;
        };
        planned.push(Planned {
            name,
            kind: stored_kind(key)?,
            shape: source.shape(key).context("a listed key has a shape")?,
            origin: Origin::Base {
                key: key.to_string(),
                adapter: adapters.remove(local),
            },
        });
    }
    if let Some(name) = adapters.keys().next() {
        bail!(
            "the adapted weight {name} is not in the base checkpoint {}",
            source.description()
        );
    }
    for p in model.head_params() {
        let t = p.param.tensor().detach().to_device(Device::Cpu);
        planned.push(Planned {
            name: p.name,
            kind: t.kind(),
            shape: t.size(),
            origin: Origin::Head(t),
        });
    }
    let transpose = model.peft_fan_in_fan_out();
    write_streamed(path, planned, |origin, kind| match origin {
        Origin::Head(t) => Ok(t),
        Origin::Base { key, adapter: None } => Ok(source.load(&key, kind, Device::Cpu)?),
        Origin::Base {
            key,
            adapter: Some(adapter),
        } => {
            let delta = tch::no_grad(|| adapter.delta_weight())
                .to_device(Device::Cpu)
                .to_kind(Kind::Float);
            let delta = if transpose { delta.tr() } else { delta };
            // The f32 update is added in f32 and the sum rounded once to the stored dtype:
            // what PEFT's `merge_and_unload` does (`weight.data += delta` with an f32 delta
            // computes in f32 and writes back in the weight's dtype).
            let weight = source.load(&key, Kind::Float, Device::Cpu)?;
            Ok((weight + delta).to_kind(kind))
        }
    })
}

/// A tensor of a safetensors file, known by name, kind and shape before its values are.
struct Planned<O> {
    name: String,
    kind: Kind,
    shape: Vec<i64>,
    origin: O,
}

/// Writes the safetensors file `path` without holding its tensors together. The header is
/// computed up front from the planned names, kinds and shapes exactly as the safetensors
/// crate's `serialize` builds it: tensors ordered by descending dtype alignment, then by name
/// (so every tensor starts aligned), `{"format": "pt"}` metadata, the JSON padded with spaces
/// to a multiple of 8 bytes after its 8-byte little-endian length. Then `make(origin, kind)`
/// is called for each tensor in file order, and its bytes are written before the next one
/// is made.
fn write_streamed<O>(
    path: &Path,
    planned: Vec<Planned<O>>,
    mut make: impl FnMut(O, Kind) -> Result<Tensor>,
) -> Result<()> {
    let mut planned = planned
        .into_iter()
        .map(|p| {
            let dtype = safetensors_dtype(p.kind)
                .with_context(|| format!("{}: {:?} has no safetensors dtype", p.name, p.kind))?;
            Ok((dtype, p))
        })
        .collect::<Result<Vec<_>>>()?;
    planned.sort_by(|(ld, l), (rd, r)| rd.cmp(ld).then_with(|| l.name.cmp(&r.name)));
    let mut names = HashSet::new();
    let mut infos = Vec::with_capacity(planned.len());
    let mut offset = 0;
    for (dtype, p) in &planned {
        ensure!(names.insert(&p.name), "tensor {} is planned twice", p.name);
        let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
        let len = shape.iter().product::<usize>() * p.kind.elt_size_in_bytes();
        let data_offsets = (offset, offset + len);
        offset += len;
        infos.push((
            p.name.clone(),
            TensorInfo {
                dtype: *dtype,
                shape,
                data_offsets,
            },
        ));
    }
    let format = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut header = serde_json::to_string(&Metadata::new(Some(format), infos)?)?.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');

    let mut bytes = |p: Planned<O>| -> Result<Vec<u8>> {
        let t = make(p.origin, p.kind)?.contiguous();
        ensure!(
            t.kind() == p.kind && t.size() == p.shape,
            "{}: planned {:?} {:?}, made {:?} {:?}",
            p.name,
            p.kind,
            p.shape,
            t.kind(),
            t.size()
        );
        let mut buf = vec![0u8; t.numel() * p.kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut buf, t.numel())?;
        Ok(buf)
    };
    autolora_data::atomic::write_with(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for (_, p) in planned {
            out.write_all(&bytes(p).map_err(std::io::Error::other)?)?;
        }
        out.flush()
    })?;
    Ok(())
}

/// The Hugging Face class of the task model, e.g. `BertForTokenClassification`.
fn class_name(model: &dyn Model) -> String {
    if model.architecture() == Architecture::Gpt2 && model.task() == Task::CausalLm {
        return "GPT2LMHeadModel".into(); // the one class that breaks the naming pattern
    }
    let stem = model.architecture().class_stem();
    let head = match model.task() {
        Task::TokenClassification { .. } => "ForTokenClassification",
        Task::SequenceClassification { .. } | Task::Regression => "ForSequenceClassification",
        Task::CausalLm => "ForCausalLM",
        Task::Encoder => "Model",
    };
    format!("{stem}{head}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors of every dtype the writer handles, a scalar and an empty one among them, in an
    /// order the file does not keep. The values are a fixed function of the position, not draws
    /// from the global generator, which tests on other threads advance at the same time.
    fn tensors() -> Vec<(String, Tensor)> {
        let f32 = |shape: &[i64]| {
            let n: i64 = shape.iter().product();
            (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.73 + 0.1)
                .sin()
                .reshape(shape)
        };
        vec![
            ("z.bf16".into(), f32(&[3, 5]).to_kind(Kind::BFloat16)),
            ("a.f16".into(), f32(&[7]).to_kind(Kind::Half)),
            ("m.f32".into(), f32(&[2, 3, 4])),
            ("b.bf16".into(), f32(&[1]).to_kind(Kind::BFloat16)),
            ("scalar.f64".into(), f32(&[]).to_kind(Kind::Double)),
            ("empty.f32".into(), f32(&[0, 4])),
            ("ids".into(), Tensor::arange(5, (Kind::Int64, Device::Cpu))),
        ]
    }

    #[test]
    fn streamed_file_is_what_the_safetensors_crate_writes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("streamed.safetensors");
        let planned = tensors()
            .into_iter()
            .map(|(name, t)| Planned {
                name,
                kind: t.kind(),
                shape: t.size(),
                origin: t,
            })
            .collect();
        let mut made = 0;
        write_streamed(&path, planned, |t, kind| {
            made += 1;
            assert_eq!(t.kind(), kind);
            Ok(t)
        })?;
        assert_eq!(made, tensors().len());

        // Byte for byte the reference serializer's output (header, order, padding, data).
        let reference = dir.path().join("reference.safetensors");
        autolora_models::write_safetensors(&reference, &tensors())?;
        assert_eq!(std::fs::read(&path)?, std::fs::read(&reference)?);

        // And it reads back: names, stored dtypes, values.
        let store = SafeTensorStore::open_files(&[path])?;
        assert_eq!(store.keys().count(), tensors().len());
        for (name, t) in tensors() {
            assert_eq!(store.stored_kind(&name)?, t.kind(), "{name}");
            assert!(
                store.load(&name, t.kind(), Device::Cpu)?.equal(&t),
                "{name}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_tensor_unlike_its_plan_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad.safetensors");
        let plan = |kind| Planned {
            name: "w".into(),
            kind,
            shape: vec![2],
            origin: (),
        };
        let made = |_, _| Ok(Tensor::zeros([2], (Kind::Float, Device::Cpu)));
        assert!(write_streamed(&path, vec![plan(Kind::BFloat16)], made).is_err());
        assert!(!path.exists(), "no file is left behind");
        let twice = vec![plan(Kind::Float), plan(Kind::Float)];
        assert!(write_streamed(&path, twice, made).is_err());
        write_streamed(&path, vec![plan(Kind::Float)], made)?;
        assert!(path.exists());
        Ok(())
    }
}
