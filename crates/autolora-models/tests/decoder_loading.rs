//! Loading decoders: bad checkpoints, configs and GGUF files give errors naming the tensor
//! and the expected and found shapes (never a panic); bf16 base weights; and a GGUF file
//! written here from the tiny Llama fixture (llama.cpp layout: renamed tensors, permuted
//! query/key rows, metadata config) loads to exactly the safetensors model.

mod common;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use autolora_core::{Gate, LoraConfig};
use autolora_models::gguf::load_gguf;
use autolora_models::{
    Error, GenerationConfig, LoadOptions, ModelInput, Task, generate, load_model, write_safetensors,
};
use common::{copy_fixture, fixture, load, logits, reference, set_config, unsupported_key};
use tch::{Kind, Tensor};

fn checkpoint(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(Tensor::read_safetensors(dir.join("model.safetensors"))?)
}

/// The error loading `dir` as a causal LM gives.
fn load_err(dir: &Path) -> Error {
    common::load_err(dir, Task::CausalLm)
}

#[test]
fn missing_tensor_is_named() -> Result<()> {
    let tmp = copy_fixture("llama-tiny-gqa")?;
    let tensors: Vec<_> = checkpoint(tmp.path())?
        .into_iter()
        .filter(|(k, _)| k != "model.layers.1.mlp.up_proj.weight")
        .collect();
    write_safetensors(&tmp.path().join("model.safetensors"), &tensors)?;
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("model.layers.1.mlp.up_proj.weight"), "{msg}");
    // Untied config without lm_head.
    let tmp = copy_fixture("gpt2-tiny-lm")?;
    set_config(tmp.path(), "tie_word_embeddings", false.into())?;
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("lm_head.weight"), "{msg}");
    Ok(())
}

#[test]
fn wrong_shapes_name_expected_and_found() -> Result<()> {
    let tmp = copy_fixture("gpt2-tiny-lm")?;
    set_config(tmp.path(), "n_inner", 40.into())?;
    let err = load_err(tmp.path());
    let Error::ShapeMismatch {
        name,
        expected,
        found,
    } = &err
    else {
        panic!("expected a shape mismatch, got {err}");
    };
    // Conv1D shapes are reported in the checkpoint's [in, out] layout.
    assert_eq!(name, "transformer.h.0.mlp.c_fc.weight");
    assert_eq!(
        (expected.as_slice(), found.as_slice()),
        (&[32, 40][..], &[32, 37][..])
    );

    let tmp = copy_fixture("llama-tiny-gqa")?;
    set_config(tmp.path(), "num_key_value_heads", 4.into())?;
    let msg = load_err(tmp.path()).to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight")
            && msg.contains("[32, 32]")
            && msg.contains("[16, 32]"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn extra_layers_and_bad_configs_are_errors() -> Result<()> {
    let tmp = copy_fixture("llama-tiny-gqa")?;
    set_config(tmp.path(), "num_hidden_layers", 1.into())?;
    let err = load_err(tmp.path());
    assert!(matches!(err, Error::UnexpectedTensors { .. }), "{err}");
    assert!(err.to_string().contains("model.layers.1."), "{err}");

    let tmp = copy_fixture("llama-tiny-gqa")?;
    set_config(tmp.path(), "num_key_value_heads", 3.into())?;
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("num_key_value_heads"), "{msg}");

    let tmp = copy_fixture("llama-tiny-tied")?;
    set_config(
        tmp.path(),
        "rope_scaling",
        serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
    )?;
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("yarn"), "{msg}");

    let tmp = copy_fixture("gpt2-tiny-lm")?;
    let config = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&config)?.replace("\"n_embd\"", "\"n_embed_typo\"");
    std::fs::write(&config, text)?;
    let msg = load_err(tmp.path()).to_string();
    assert!(msg.contains("n_embd"), "{msg}");
    Ok(())
}

/// Settings that change the computation and are not implemented are errors naming the key, in
/// either config dialect: a rotary type, a rotary field that `transformers` would only warn
/// about, a rotation of part of each head, an activation.
#[test]
fn unimplemented_decoder_settings_name_the_key() -> Result<()> {
    let yarn = serde_json::json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 500000.0,
        "original_max_position_embeddings": 16});
    let llama3_with_attention_factor = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
        "rope_theta": 500000.0, "attention_factor": 1.5});
    for (dir, key, value, named) in [
        (
            "llama-tiny-tf5",
            "rope_parameters",
            yarn,
            "rope_parameters.rope_type",
        ),
        (
            "llama-tiny-tf5",
            "rope_parameters",
            llama3_with_attention_factor,
            "rope_parameters.attention_factor",
        ),
        (
            "llama-tiny-gqa",
            "rope_scaling",
            serde_json::json!({"type": "dynamic", "factor": 2.0}),
            "rope_scaling.type",
        ),
        (
            "llama-tiny-gqa",
            "partial_rotary_factor",
            0.5.into(),
            "partial_rotary_factor",
        ),
        (
            "llama-tiny-gqa",
            "hidden_act",
            "gelu_10".into(),
            "hidden_act",
        ),
        (
            "gpt2-tiny-lm",
            "activation_function",
            "quick_gelu".into(),
            "activation_function",
        ),
    ] {
        let tmp = copy_fixture(dir)?;
        set_config(tmp.path(), key, value)?;
        assert_eq!(unsupported_key(load_err(tmp.path())), named, "{dir}");
    }
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> Result<()> {
    let model = load("gpt2-tiny-lm", Task::CausalLm)?;
    // Beyond GPT-2's 32 positions.
    let long = Tensor::ones([1, 40], (Kind::Int64, tch::Device::Cpu));
    let err = model
        .forward_t(
            &ModelInput {
                input_ids: &long,
                attention_mask: &long,
                token_type_ids: None,
            },
            false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("position"), "{err}");
    let ids = Tensor::from_slice(&[3i64, 64]).reshape([1, 2]);
    let err = model
        .forward_t(
            &ModelInput {
                input_ids: &ids,
                attention_mask: &ids.ones_like(),
                token_type_ids: None,
            },
            false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("0..64"), "{err}");
    let lm = model.as_causal_lm().context("LM")?;
    assert!(generate(lm, &[], &GenerationConfig::greedy(3, vec![])).is_err());
    // A classifier has no LM to generate with.
    let seq = load(
        "gpt2-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
    )?;
    assert!(seq.as_causal_lm().is_none());
    Ok(())
}

#[test]
fn bf16_base_weights_in_decoders() -> Result<()> {
    for dir in ["gpt2-tiny-lm", "llama-tiny-gqa", "llama-tiny-tied"] {
        let r = reference(dir)?;
        let options = LoadOptions {
            base_kind: Some(Kind::BFloat16),
            ..LoadOptions::default()
        };
        let mut model = load_model(&fixture(dir), Task::CausalLm, &options)?;
        for (name, layer) in model.linear_layers() {
            ensure!(
                layer.weight().kind() == Kind::BFloat16,
                "{dir}: {name} stored as {:?}",
                layer.weight().kind()
            );
        }
        model.inject_lora(&[], &LoraConfig::default(), Some(Gate::Softmax))?;
        for p in model
            .trainable_params()
            .iter()
            .chain(&model.selection_params())
        {
            ensure!(
                p.param.tensor().kind() == Kind::Float,
                "{dir}: {} not f32",
                p.name
            );
        }
        let ours = logits(model.as_ref(), &r)?;
        ensure!(ours.kind() == Kind::Float);
        let scale = r["logits"].abs().max().double_value(&[]);
        let diff = (&ours - &r["logits"]).abs().max().double_value(&[]);
        println!("{dir} bf16 base: max |logit diff| {diff:.3e} (logits up to {scale:.2})");
        ensure!(
            diff < 0.05 * scale,
            "{dir}: bf16 storage moved logits by {diff}"
        );
        let lm = model.as_causal_lm().context("LM")?;
        let out = generate(lm, &[5, 6, 7], &GenerationConfig::greedy(3, vec![]))?;
        ensure!(out.tokens.len() == 3);
    }
    Ok(())
}

/// A little GGUF v3 writer: metadata and F32 tensors.
mod gguf_writer {
    pub enum Meta {
        U32(u32),
        F32(f32),
        Bool(bool),
        Str(String),
        Strings(Vec<String>),
        I32s(Vec<i32>),
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// `tensors`: (name, dims fastest-first, ggml type, raw bytes).
    pub fn write(meta: &[(&str, Meta)], tensors: &[(String, Vec<u64>, u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((meta.len() as u64).to_le_bytes());
        for (key, value) in meta {
            string(&mut out, key);
            match value {
                Meta::U32(v) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
                Meta::F32(v) => {
                    out.extend(6u32.to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
                Meta::Bool(v) => {
                    out.extend(7u32.to_le_bytes());
                    out.push(u8::from(*v));
                }
                Meta::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(&mut out, s);
                }
                Meta::Strings(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for s in items {
                        string(&mut out, s);
                    }
                }
                Meta::I32s(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for v in items {
                        out.extend(v.to_le_bytes());
                    }
                }
            }
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, bytes) in tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset += (bytes.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        for (bytes, at) in tensors.iter().map(|t| &t.3).zip(offsets) {
            let start = out.len() as u64;
            assert_eq!(start % 32, 0);
            let _ = at;
            out.extend(bytes);
            while out.len() % 32 != 0 {
                out.push(0);
            }
        }
        out
    }
}

/// The llama-tiny-gqa fixture written the way llama.cpp's converter would (F32 tensors), with
/// `extra` metadata.
fn tiny_llama_gguf(extra: Vec<(&str, gguf_writer::Meta)>) -> Result<Vec<u8>> {
    tiny_gguf("llama", "llama-tiny-gqa", extra)
}

/// The tiny checkpoint `fixture_name` (4 query heads, 2 key/value heads) as llama.cpp writes
/// an `arch` file: its tensor names, and for `llama` the query/key rows permuted.
fn tiny_gguf(
    arch: &str,
    fixture_name: &str,
    extra: Vec<(&str, gguf_writer::Meta)>,
) -> Result<Vec<u8>> {
    use gguf_writer::Meta;
    let (heads, kv_heads) = (4i64, 2i64);
    let mut tensors = Vec::new();
    for (key, t) in checkpoint(&fixture(fixture_name))? {
        let name = key
            .replace("model.embed_tokens", "token_embd")
            .replace("model.norm", "output_norm")
            .replace("lm_head", "output")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("self_attn.q_norm", "attn_q_norm")
            .replace("self_attn.k_norm", "attn_k_norm")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        let h = if arch != "llama" || name.contains("_norm") {
            None
        } else if name.contains("attn_q") {
            Some(heads)
        } else if name.contains("attn_k") {
            Some(kv_heads)
        } else {
            None
        };
        let size = t.size();
        let t = match h {
            // llama.cpp: w.reshape(h, 2, d/2, in).swapaxes(1, 2)
            Some(h) => {
                let mut split = vec![h, 2, size[0] / h / 2];
                split.extend_from_slice(&size[1..]);
                t.reshape(&split).transpose(1, 2).reshape(&size)
            }
            None => t,
        };
        let values = Vec::<f32>::try_from(t.contiguous().view([-1]))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims: Vec<u64> = size.iter().rev().map(|&d| d as u64).collect();
        tensors.push((name, dims, 0u32, bytes));
    }
    // A vocabulary with one merge ("t" + "1" -> "t1").
    let tokens: Vec<String> = ["t", "1", "t1"]
        .into_iter()
        .map(String::from)
        .chain((3..64).map(|i| format!("x{i}")))
        .collect();
    let key = |name: &str| format!("{arch}.{name}");
    let hyper = [
        (key("block_count"), Meta::U32(2)),
        (key("context_length"), Meta::U32(64)),
        (key("embedding_length"), Meta::U32(32)),
        (key("feed_forward_length"), Meta::U32(48)),
        (key("attention.head_count"), Meta::U32(4)),
        (key("attention.head_count_kv"), Meta::U32(2)),
        (key("rope.freq_base"), Meta::F32(10000.0)),
        (key("attention.layer_norm_rms_epsilon"), Meta::F32(1e-6)),
    ];
    let mut meta: Vec<(&str, Meta)> = hyper.into_iter().map(|(k, v)| (&*k.leak(), v)).collect();
    meta.extend([
        ("general.architecture", Meta::Str(arch.into())),
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.tokens", Meta::Strings(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(vec![1; 64])),
        ("tokenizer.ggml.merges", Meta::Strings(vec!["t 1".into()])),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(false)),
    ]);
    meta.extend(extra);
    Ok(gguf_writer::write(&meta, &tensors))
}

/// Qwen2 (q/k/v biases) and Qwen3 (per-head q/k norms, head_dim 16 given as key_length) GGUF
/// files, in llama.cpp's unpermuted Qwen layout, load to transformers' logits.
#[test]
fn qwen_gguf_files_load_to_the_same_models() -> Result<()> {
    use gguf_writer::Meta;
    let dir = tempfile::tempdir()?;
    for (arch, name, extra) in [
        ("qwen2", "qwen2-tiny", vec![]),
        (
            "qwen3",
            "qwen3-tiny",
            vec![
                ("qwen3.attention.key_length", Meta::U32(16)),
                ("qwen3.attention.value_length", Meta::U32(16)),
            ],
        ),
    ] {
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, tiny_gguf(arch, name, extra)?)?;
        let loaded = load_gguf(&path, Task::CausalLm, &LoadOptions::default())?;
        assert_eq!(loaded.config.fields["model_type"], arch);
        let r = reference(name)?;
        let diff = (logits(&loaded.model, &r)? - &r["logits"])
            .abs()
            .max()
            .double_value(&[]);
        println!("{name} GGUF vs transformers: max |logit diff| = {diff:.3e}");
        ensure!(diff <= 1e-5, "{name}: {diff}");
    }
    Ok(())
}

#[test]
fn gguf_layout_loads_to_the_same_model() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, tiny_llama_gguf(vec![])?)?;
    let loaded = load_gguf(&path, Task::CausalLm, &LoadOptions::default())?;
    assert!(!loaded.model.lm_head_is_tied());
    assert_eq!(loaded.config.fields["num_key_value_heads"], 2);
    let r = reference("llama-tiny-gqa")?;
    let ours = logits(&loaded.model, &r)?;
    let diff = (&ours - &r["logits"]).abs().max().double_value(&[]);
    println!("tiny GGUF vs transformers: max |logit diff| = {diff:.3e}");
    ensure!(diff <= 1e-5, "{diff}");
    // `load_model` takes the file, or a directory holding just it.
    for target in [path.as_path(), dir.path()] {
        let model = load_model(target, Task::CausalLm, &LoadOptions::default())?;
        let diff = (logits(model.as_ref(), &r)? - &r["logits"])
            .abs()
            .max()
            .double_value(&[]);
        ensure!(diff <= 1e-5, "{}: {diff}", target.display());
    }
    Ok(())
}

#[test]
fn truncated_and_unsupported_gguf_are_errors() -> Result<()> {
    let bytes = tiny_llama_gguf(vec![])?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cut.gguf");
    // Cut in the header, in the metadata, in the tensor infos and in the data.
    for cut in [10, 200, bytes.len() / 2, bytes.len() - 40] {
        std::fs::write(&path, &bytes[..cut])?;
        let err = load_gguf(&path, Task::CausalLm, &LoadOptions::default()).unwrap_err();
        let msg = err.to_string();
        println!("cut at {cut}: {msg}");
        assert!(matches!(err, Error::Gguf { .. }), "cut at {cut}: {msg}");
    }
    std::fs::write(&path, b"GGML and some more bytes")?;
    let msg = load_gguf(&path, Task::CausalLm, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("magic"), "{msg}");

    // Re-type one tensor as Q8_K (id 15, 292 bytes per 256 elements; llama.cpp's intermediate
    // type, never stored in model files): the file opens, the load names the tensor and the type.
    let mut retyped = bytes.clone();
    let name = b"blk.1.ffn_up.weight";
    let at = retyped
        .windows(name.len())
        .position(|w| w == name)
        .context("tensor info")?;
    // name, rank (u32), 2 dims (u64 each), then the type.
    let type_at = at + name.len() + 4 + 16;
    retyped[type_at..type_at + 4].copy_from_slice(&15u32.to_le_bytes());
    std::fs::write(&path, &retyped)?;
    let err = load_gguf(&path, Task::CausalLm, &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("blk.1.ffn_up.weight") && msg.contains("Q8_K"),
        "{msg}"
    );
    Ok(())
}

/// llama.cpp's linear rotary scaling becomes the config's `rope_scaling`; the rotary metadata
/// that is not implemented is an error naming the key.
#[test]
fn gguf_rope_metadata() -> Result<()> {
    use gguf_writer::Meta;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rope.gguf");
    let load = |extra| -> Result<_> {
        std::fs::write(&path, tiny_llama_gguf(extra)?)?;
        Ok(load_gguf(&path, Task::CausalLm, &LoadOptions::default()))
    };
    let linear = load(vec![
        ("llama.rope.scaling.type", Meta::Str("linear".into())),
        ("llama.rope.scaling.factor", Meta::F32(4.0)),
    ])??;
    assert_eq!(
        linear.config.fields["rope_scaling"],
        serde_json::json!({"rope_type": "linear", "factor": 4.0})
    );
    let none = load(vec![
        ("llama.rope.scaling.type", Meta::Str("none".into())),
        ("llama.rope.scaling.factor", Meta::F32(4.0)),
    ])??;
    assert!(!none.config.fields.contains_key("rope_scaling"));

    let yarn = vec![("llama.rope.scaling.type", Meta::Str("yarn".into()))];
    let attn = vec![("llama.rope.scaling.attn_factor", Meta::F32(1.5))];
    let partial = vec![
        ("llama.attention.key_length", Meta::U32(8)),
        ("llama.rope.dimension_count", Meta::U32(4)),
    ];
    for (extra, key) in [
        (yarn, "llama.rope.scaling.type"),
        (attn, "llama.rope.scaling.attn_factor"),
        (partial, "llama.rope.dimension_count"),
    ] {
        let err = load(extra)?.err().context("loaded")?;
        assert_eq!(unsupported_key(err), key);
    }
    Ok(())
}
