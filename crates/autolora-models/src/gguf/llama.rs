//! A llama.cpp GGUF of the Llama family (`general.architecture` = `llama`, `qwen2` or
//! `qwen3`; llama.cpp writes Mistral models as `llama`) seen as a Hugging Face checkpoint:
//! tensor names translated (`blk.N.attn_q.weight` -> `model.layers.N.self_attn.q_proj.weight`),
//! shapes in PyTorch order, tensors dequantized on load, the query/key row permutation undone,
//! and a `config.json` built from the `<architecture>.*` metadata.
//!
//! For `llama` files, llama.cpp's converter reorders the rows of `q_proj` (and `k_proj`, with
//! the key/value head count) within each head from the rotate-half layout to interleaved pairs
//! (Qwen files keep Hugging Face's order):
//! `w.reshape(heads, 2, d/2, in).swapaxes(1, 2)`. Loading applies the inverse,
//! `w.reshape(heads, d/2, 2, in).swapaxes(1, 2)`, so the weights are exactly the original
//! Hugging Face ones and the rotary code needs no special case.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use tch::{Device, Kind, Tensor};

use super::file::{GgufFile, Value};
use super::quant::dequantize;
use crate::config::RawConfig;
use crate::weights::TensorSource;
use crate::{Error, Result};

/// How a stored tensor maps to a checkpoint key.
#[derive(Debug, Clone)]
struct Mapped {
    gguf: String,
    /// Heads to un-permute the rows with (query: attention heads; key: key/value heads).
    unpermute_heads: Option<i64>,
}

/// The GGUF tensors of a Llama under Hugging Face names; implements [`TensorSource`].
#[derive(Debug)]
pub struct GgufLlamaSource<'a> {
    file: &'a GgufFile,
    description: String,
    keys: BTreeMap<String, Mapped>,
}

/// `blk.N.<suffix>` -> `model.layers.N.<suffix>` per llama.cpp's tensor names.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The Hugging Face key of GGUF tensor `name` (`None` for names llama.cpp's Llama does not
/// use: they are kept under their own name and reported as unused).
fn hf_name(name: &str) -> Option<String> {
    let (stem, param) = name.rsplit_once('.')?;
    let mapped = match stem {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let rest = stem.strip_prefix("blk.")?;
            let (layer, module) = rest.split_once('.')?;
            layer.parse::<u32>().ok()?;
            let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == module)?;
            format!("model.layers.{layer}.{hf}")
        }
    };
    Some(format!("{mapped}.{param}"))
}

impl<'a> GgufLlamaSource<'a> {
    /// Indexes `file`'s tensors; `heads`/`kv_heads` drive the query/key un-permutation of a
    /// `llama` file.
    pub fn new(file: &'a GgufFile, heads: i64, kv_heads: i64) -> Self {
        let permuted = file
            .metadata
            .get("general.architecture")
            .and_then(Value::as_str)
            == Some("llama");
        let mut keys = BTreeMap::new();
        for name in file.tensors.keys() {
            let (key, unpermute_heads) = match hf_name(name) {
                Some(key) if permuted => {
                    let heads = if key.contains(".self_attn.q_proj.") {
                        Some(heads)
                    } else if key.contains(".self_attn.k_proj.") {
                        Some(kv_heads)
                    } else {
                        None
                    };
                    (key, heads)
                }
                Some(key) => (key, None),
                None => (name.clone(), None),
            };
            keys.insert(
                key,
                Mapped {
                    gguf: name.clone(),
                    unpermute_heads,
                },
            );
        }
        GgufLlamaSource {
            file,
            description: file.path().display().to_string(),
            keys,
        }
    }
}

/// Undoes llama.cpp's per-head row interleaving of a query/key weight [out, ..] or bias
/// `[out]`.
pub fn unpermute(t: &Tensor, heads: i64) -> Result<Tensor> {
    let shape = t.size();
    let out = shape[0];
    if heads < 1 || out % (2 * heads) != 0 {
        return Err(Error::ShapeMismatch {
            name: format!("query/key rows (a multiple of 2 x {heads} heads)"),
            expected: vec![2 * heads, -1],
            found: shape,
        });
    }
    let mut split = vec![heads, out / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    Ok(t.f_reshape(&split)?.f_transpose(1, 2)?.f_reshape(&shape)?)
}

impl TensorSource for GgufLlamaSource<'_> {
    fn description(&self) -> &str {
        &self.description
    }

    fn keys(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    fn shape(&self, key: &str) -> Option<Vec<i64>> {
        let mapped = self.keys.get(key)?;
        Some(self.file.tensors.get(&mapped.gguf)?.torch_shape())
    }

    fn load(&self, key: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let missing = || Error::MissingTensor {
            name: key.to_string(),
            key: key.to_string(),
            source_desc: self.description.clone(),
        };
        let mapped = self.keys.get(key).ok_or_else(missing)?;
        let info = self.file.tensors.get(&mapped.gguf).ok_or_else(missing)?;
        let values = dequantize(
            &info.name,
            info.ggml_type,
            self.file.data(info),
            info.numel() as usize,
        )?;
        let mut t = Tensor::f_from_slice(&values)?.f_reshape(info.torch_shape())?;
        if let Some(heads) = mapped.unpermute_heads {
            t = unpermute(&t, heads)?;
        }
        Ok(t.f_to_kind(kind)?.f_to(device)?)
    }
}

/// The GGUF architectures read, with the `model_type` and class of each.
const ARCHITECTURES: &[(&str, &str, &str)] = &[
    ("llama", "llama", "LlamaForCausalLM"),
    ("qwen2", "qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "qwen3", "Qwen3ForCausalLM"),
];

/// The Hugging Face `config.json` of the model in `file`, from its `<architecture>.*` and
/// `tokenizer.ggml.*` metadata (as `transformers` maps them). The LM head is tied when the
/// file has no `output.weight`.
pub fn config_from_metadata(file: &GgufFile) -> Result<RawConfig> {
    let arch = file
        .require("general.architecture")?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(&(arch, model_type, class)) = ARCHITECTURES.iter().find(|(a, ..)| *a == arch) else {
        return Err(Error::UnknownArchitecture {
            path: file.path().to_path_buf(),
            found: arch,
            supported: ARCHITECTURES.iter().map(|(a, ..)| *a).collect(),
        });
    };
    if file.tensors.contains_key("rope_freqs.weight") {
        return Err(Error::BadConfig {
            path: file.path().to_path_buf(),
            what: "the file carries rope_freqs.weight (Llama 3.1 rotary rescaling stored as a \
                   tensor), which is not supported"
                .into(),
        });
    }
    let key = |name: &str| format!("{arch}.{name}");
    let int = |name: &str| file.require_int(&key(name));
    let float = |name: &str| -> Result<f64> {
        let v = file.require(&key(name))?;
        v.as_f64().ok_or_else(|| Error::BadConfig {
            path: file.path().to_path_buf(),
            what: format!(
                "GGUF metadata {} should be a number, found {v:?}",
                key(name)
            ),
        })
    };
    let hidden = int("embedding_length")?;
    let heads = int("attention.head_count")?;
    let vocab = match file.metadata.get(&key("vocab_size")) {
        Some(v) => v.as_i64().unwrap_or(0),
        None => file
            .tensors
            .get("token_embd.weight")
            .map_or(0, |t| t.torch_shape()[0]),
    };
    let head_dim = match file.metadata.get(&key("attention.key_length")) {
        Some(v) => v.as_i64().unwrap_or(0),
        None => match file.metadata.get(&key("rope.dimension_count")) {
            Some(v) => v.as_i64().unwrap_or(0),
            None => hidden / heads.max(1),
        },
    };
    let optional_int = |key: &str| file.metadata.get(key).and_then(|v| v.as_i64());
    let mut fields: Map<String, Json> = json!({
        "model_type": model_type,
        "architectures": [class],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": int("feed_forward_length")?,
        "num_hidden_layers": int("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": optional_int(&key("attention.head_count_kv")).unwrap_or(heads),
        "head_dim": head_dim,
        "max_position_embeddings": optional_int(&key("context_length")).unwrap_or(2048),
        "rms_norm_eps": float("attention.layer_norm_rms_epsilon")?,
        "rope_theta": file.metadata.get(&key("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10000.0),
        "hidden_act": "silu",
        "tie_word_embeddings": !file.tensors.contains_key("output.weight"),
        "attention_bias": file.tensors.contains_key("blk.0.attn_q.bias"),
        "torch_dtype": "float32",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if arch == "qwen2" {
        // Qwen2's biases are fixed (q, k, v), not a config key.
        fields.remove("attention_bias");
    }
    if let Some(scaling) = rope_scaling(file, arch, head_dim)? {
        fields.insert("rope_scaling".into(), scaling);
    }
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = optional_int(gguf_key) {
            fields.insert(hf_key.into(), id.into());
        }
    }
    if let Some(name) = file.metadata.get("general.name").and_then(|v| v.as_str()) {
        fields.insert("_name_or_path".into(), name.into());
    }
    Ok(RawConfig {
        path: file.path().to_path_buf(),
        fields,
    })
}

/// The `rope_scaling` (4.x dialect, which every `transformers` reads) of llama.cpp's rotary
/// metadata. llama.cpp divides positions by `rope.scaling.factor` (or the older
/// `rope.scale_linear`) unless `rope.scaling.type` is `none`; its default type is `linear`.
/// Refused: the other types (`yarn`, `longrope`), an `attn_factor` (it scales queries and
/// keys), and a rotation of part of each head (`rope.dimension_count` below the head width).
fn rope_scaling(file: &GgufFile, arch: &str, head_dim: i64) -> Result<Option<Json>> {
    let meta = |key: &str| file.metadata.get(&format!("{arch}.{key}"));
    let unsupported = |key: &str, value: &Value, supported: String| {
        let value = match value.as_str() {
            Some(s) => format!("{s:?}"),
            None => value
                .as_f64()
                .map_or(format!("{value:?}"), |f| f.to_string()),
        };
        Error::UnsupportedConfig {
            path: file.path().to_path_buf(),
            key: format!("{arch}.{key}"),
            value,
            supported,
        }
    };
    if let Some(v) = meta("rope.dimension_count")
        && v.as_i64() != Some(head_dim)
    {
        let supported = format!("{head_dim}, the head width");
        return Err(unsupported("rope.dimension_count", v, supported));
    }
    if let Some(v) = meta("rope.scaling.attn_factor")
        && v.as_f64() != Some(1.0)
    {
        return Err(unsupported("rope.scaling.attn_factor", v, "1".into()));
    }
    let linear = meta("rope.scaling.factor")
        .or_else(|| meta("rope.scale_linear"))
        .and_then(Value::as_f64)
        .filter(|f| *f != 0.0 && *f != 1.0)
        .map(|factor| json!({"rope_type": "linear", "factor": factor}));
    match meta("rope.scaling.type").map(|v| (v, v.as_str())) {
        None | Some((_, Some("linear"))) => Ok(linear),
        Some((_, Some("none"))) => Ok(None),
        Some((v, _)) => Err(unsupported("rope.scaling.type", v, "none, linear".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            hf_name("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        // llama.cpp: w.reshape(h, 2, d/2, in).swapaxes(1, 2).reshape(out, in)
        let (heads, d, inp) = (3i64, 4i64, 5i64);
        let w =
            Tensor::arange(heads * d * inp, (Kind::Float, Device::Cpu)).reshape([heads * d, inp]);
        let permuted = w
            .reshape([heads, 2, d / 2, inp])
            .transpose(1, 2)
            .reshape([heads * d, inp]);
        assert!(!permuted.equal(&w));
        assert!(unpermute(&permuted, heads).unwrap().equal(&w));
        let bias = Tensor::arange(heads * d, (Kind::Float, Device::Cpu));
        let pb = bias
            .reshape([heads, 2, d / 2])
            .transpose(1, 2)
            .reshape([heads * d]);
        assert!(unpermute(&pb, heads).unwrap().equal(&bias));
        assert!(unpermute(&w, 5).is_err());
    }
}
