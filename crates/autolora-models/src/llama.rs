//! The Llama family (Hugging Face `LlamaModel` layout, body of `LlamaForCausalLM` and
//! friends): RMSNorm, rotary embeddings, grouped-query attention, SwiGLU feed-forward.
//!
//! Qwen2 / Qwen2.5, Qwen3 and Mistral share these layers and differ by a few facts, a
//! [`Family`]: which projections have biases, an RMSNorm on each query and key head (Qwen3,
//! `self_attn.{q,k}_norm`), and which layers attend through a sliding window (Mistral: all of
//! them when `sliding_window` is set; Qwen: `layer_types`, or the layers from
//! `max_window_layers` on when `use_sliding_window`). Window semantics are transformers
//! 4.57.1's, and 5.25.0's (checked on fixtures saved by each): query column `i` sees key
//! columns `j` with `i - window < j <= i`.
//!
//! Module paths equal checkpoint keys without the `model.` prefix: `embed_tokens`,
//! `layers.N.input_layernorm`, `layers.N.self_attn.{q,k,v,o}_proj`,
//! `layers.N.post_attention_layernorm`, `layers.N.mlp.{gate,up,down}_proj`, `norm`. The LM
//! head is `lm_head` (outside the prefix) or, with `tie_word_embeddings`, the token
//! embedding.

use autolora_core::LoraLinear;
use tch::{Kind, Tensor};

use crate::Result;
use crate::bert::load_linear;
use crate::config::{Architecture, Implemented, RawConfig, require_multiple, require_positive};
use crate::decoder::{
    BodyInput, DecoderBody, DecoderModel, DecoderSpec, HeadSpec, KvCache, TokenIds,
};
use crate::layers::{Activation, AttentionImpl, Embedding, RmsNorm, attention};
use crate::load::LoadOptions;
use crate::model::Task;
use crate::named_linears::{BlockLinears, stack_linears, stack_linears_mut};
use crate::rope::{self, RopeConfig, Rotary};
use crate::weights::{TensorSource, WeightLoader};

fn default_act() -> Activation {
    Activation::Silu
}
fn default_max_positions() -> i64 {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_init_range() -> f64 {
    0.02
}

/// A Llama `config.json` (Hugging Face field names; optional ones default as in
/// `transformers`). Build it with [`from_raw`](Self::from_raw). Not `Serialize`: it holds
/// the rotary settings resolved from either dialect, not the keys they came from.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: i64,
    /// Query heads per layer.
    pub num_attention_heads: i64,
    /// Key/value heads per layer (grouped-query attention); `num_attention_heads` when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    /// Width of one head; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<i64>,
    /// Feed-forward gate activation (`silu`).
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// The context length the model was trained for (informational: rotary embeddings have
    /// no table).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: i64,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base and rescaling, read from either config dialect by
    /// [`RopeConfig::from_raw`] in [`from_raw`](Self::from_raw) (serde alone would leave
    /// the default).
    #[serde(skip)]
    pub rope: RopeConfig,
    /// Whether the q/k/v/o projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the feed-forward projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Dropout on attention probabilities.
    #[serde(default)]
    pub attention_dropout: f64,
    /// Whether the LM head is the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Standard deviation of freshly initialised head weights.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Dropout before the token-classification head (0.1 when absent).
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// Beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token, if any.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Width of the attention window of the layers that slide (Mistral, Qwen).
    #[serde(default)]
    pub sliding_window: Option<i64>,
    /// Qwen: whether `sliding_window` applies at all.
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Qwen: layers below this index attend fully when `layer_types` is absent (28 when absent).
    #[serde(default)]
    pub max_window_layers: Option<i64>,
    /// Qwen: `full_attention` or `sliding_attention` per layer.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Which member of the family the config describes (from `model_type`).
    #[serde(skip)]
    pub family: Family,
}

/// The members of the Llama family and the facts that tell them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// Llama: biases as `attention_bias` and `mlp_bias` say, no sliding window.
    #[default]
    Llama,
    /// Qwen2 / Qwen2.5: q/k/v biases, none on o or the feed-forward.
    Qwen2,
    /// Qwen3: biases as `attention_bias` says, RMSNorm on each query and key head.
    Qwen3,
    /// Mistral: no biases, every layer slides when `sliding_window` is set.
    Mistral,
}

impl Family {
    /// The family of `architecture`, if it is one.
    pub fn of(architecture: Architecture) -> Option<Self> {
        match architecture {
            Architecture::Llama => Some(Family::Llama),
            Architecture::Qwen2 => Some(Family::Qwen2),
            Architecture::Qwen3 => Some(Family::Qwen3),
            Architecture::Mistral => Some(Family::Mistral),
            _ => None,
        }
    }

    /// The architecture (for `model_type` and class names).
    pub fn architecture(self) -> Architecture {
        match self {
            Family::Llama => Architecture::Llama,
            Family::Qwen2 => Architecture::Qwen2,
            Family::Qwen3 => Architecture::Qwen3,
            Family::Mistral => Architecture::Mistral,
        }
    }
}

impl LlamaConfig {
    /// Fields a usable config must have.
    pub const REQUIRED: &'static [&'static str] = &[
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ];

    /// The keys besides [`REQUIRED`](Self::REQUIRED) that `transformers`' `modeling_llama`
    /// computes with, and the values implemented. The rotary keys (`rope_parameters`, or
    /// `rope_theta` + `rope_scaling`, and `partial_rotary_factor`) are checked by
    /// [`RopeConfig::from_raw`]. Not listed: `pretraining_tp` and `sliding_window`, which
    /// Llama's modeling code does not read (the sliding-window keys are read for Mistral and
    /// Qwen), and the dropouts and `initializer_range`, which only matter in training.
    pub const COMPUTATION_KEYS: &'static [(&'static str, Implemented)] = &[
        ("hidden_act", Implemented::OneOf(Activation::HF_NAMES)),
        ("rms_norm_eps", Implemented::Any),
        ("num_key_value_heads", Implemented::Any),
        ("head_dim", Implemented::Any),
        ("attention_bias", Implemented::Any),
        ("mlp_bias", Implemented::Any),
        ("tie_word_embeddings", Implemented::Any),
        ("sliding_window", Implemented::Any),
        ("use_sliding_window", Implemented::Any),
        ("max_window_layers", Implemented::Any),
        ("layer_types", Implemented::Any),
    ];

    /// Parses and validates a raw config (of any member of the family, by `model_type`).
    pub fn from_raw(raw: &RawConfig) -> Result<Self> {
        let mut config: Self =
            raw.parse_checked(Self::REQUIRED, Self::COMPUTATION_KEYS, Self::validate)?;
        config.rope = RopeConfig::from_raw(raw, config.max_position_embeddings)?;
        config.family = Family::of(raw.architecture()?).ok_or_else(|| {
            raw.bad(format!(
                "model_type {} is not a Llama-family architecture",
                raw.architecture()
                    .map_or_else(|_| "?".into(), |a| a.to_string())
            ))
        })?;
        if let Some(types) = &config.layer_types {
            if types.len() as i64 != config.num_hidden_layers {
                return Err(raw.bad(format!(
                    "layer_types has {} entries for {} layers",
                    types.len(),
                    config.num_hidden_layers
                )));
            }
            if let Some(t) = types
                .iter()
                .find(|t| !["full_attention", "sliding_attention"].contains(&t.as_str()))
            {
                return Err(raw.bad(format!(
                    "layer_types holds {t:?}; implemented: full_attention, sliding_attention"
                )));
            }
        }
        if config.sliding_window.is_some_and(|w| w < 1) {
            return Err(raw.bad("sliding_window must be positive".to_string()));
        }
        Ok(config)
    }

    /// Whether the q/k/v and the o projections have biases.
    pub fn attention_biases(&self) -> (bool, bool) {
        match self.family {
            Family::Llama | Family::Qwen3 => (self.attention_bias, self.attention_bias),
            Family::Qwen2 => (true, false),
            Family::Mistral => (false, false),
        }
    }

    /// Whether the feed-forward projections have biases.
    pub fn feed_forward_bias(&self) -> bool {
        self.family == Family::Llama && self.mlp_bias
    }

    /// The attention window of layer `n`; `None`: it attends to every earlier position.
    pub fn window(&self, n: i64) -> Option<i64> {
        match self.family {
            Family::Llama => None,
            Family::Mistral => self.sliding_window,
            Family::Qwen2 | Family::Qwen3 => {
                let window = self.sliding_window.filter(|_| self.use_sliding_window)?;
                let slides = match &self.layer_types {
                    Some(types) => types[n as usize] == "sliding_attention",
                    None => n >= self.max_window_layers.unwrap_or(28),
                };
                slides.then_some(window)
            }
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        require_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_width()),
        ])?;
        let heads = ("num_attention_heads", self.num_attention_heads);
        if self.head_dim.is_none() {
            require_multiple(("hidden_size", self.hidden_size), heads)?;
        }
        require_multiple(heads, ("num_key_value_heads", self.kv_heads()))?;
        if self.head_width() % 2 != 0 {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_width()
            ));
        }
        Ok(())
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_width(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

#[derive(Debug)]
struct Layer {
    input_norm: RmsNorm,
    /// Qwen3: RMSNorm over each query and key head.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Whether the layer attends through the sliding window.
    slides: bool,
    q: LoraLinear,
    k: LoraLinear,
    v: LoraLinear,
    o: LoraLinear,
    post_norm: RmsNorm,
    gate: LoraLinear,
    up: LoraLinear,
    down: LoraLinear,
}

impl BlockLinears<7> for Layer {
    const SUFFIXES: [&'static str; 7] = [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ];

    fn linears(&self) -> [&LoraLinear; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    fn linears_mut(&mut self) -> [&mut LoraLinear; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

/// Loads a linear layer with or without bias.
fn linear(
    w: &mut WeightLoader,
    name: &str,
    (i, o): (i64, i64),
    bias: bool,
    storage: Kind,
) -> Result<LoraLinear> {
    if bias {
        load_linear(w, name, i, o, storage)
    } else {
        let weight = w.get(&format!("{name}.weight"), &[o, i], storage)?;
        Ok(LoraLinear::new(weight, None)?)
    }
}

/// Top-level module names of the base model (for the loader's unexpected-tensor check).
pub const BASE_MODULES: &[&str] = &["embed_tokens", "layers", "norm"];

/// The Llama body; all weights frozen.
#[derive(Debug)]
pub struct LlamaBody {
    config: LlamaConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rotary: Rotary,
    attention: AttentionImpl,
    kind: Kind,
}

impl LlamaBody {
    /// Loads the body: `kind` is the computation kind (norms too), `storage` the kind of the
    /// embedding and linear layers.
    pub fn load(
        w: &mut WeightLoader,
        config: &LlamaConfig,
        kind: Kind,
        storage: Kind,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let (heads, kv, d) = (
            config.num_attention_heads,
            config.kv_heads(),
            config.head_width(),
        );
        let eps = config.rms_norm_eps;
        let ((qkv_b, o_b), mb) = (config.attention_biases(), config.feed_forward_bias());
        let i = config.intermediate_size;
        // Older checkpoints save the rotary frequencies; they are recomputed from the config.
        w.ignore_suffix("rotary_emb.inv_freq");
        let embed = Embedding::load(w, "embed_tokens", config.vocab_size, h, storage, kind)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for n in 0..config.num_hidden_layers {
            let p = format!("layers.{n}");
            let at = |s: &str| format!("{p}.{s}");
            let qk_norm = match config.family {
                Family::Qwen3 => Some((
                    RmsNorm::load(w, &at("self_attn.q_norm"), d, eps, kind)?,
                    RmsNorm::load(w, &at("self_attn.k_norm"), d, eps, kind)?,
                )),
                _ => None,
            };
            layers.push(Layer {
                input_norm: RmsNorm::load(w, &at("input_layernorm"), h, eps, kind)?,
                qk_norm,
                slides: config.window(n).is_some(),
                q: linear(w, &at("self_attn.q_proj"), (h, heads * d), qkv_b, storage)?,
                k: linear(w, &at("self_attn.k_proj"), (h, kv * d), qkv_b, storage)?,
                v: linear(w, &at("self_attn.v_proj"), (h, kv * d), qkv_b, storage)?,
                o: linear(w, &at("self_attn.o_proj"), (heads * d, h), o_b, storage)?,
                post_norm: RmsNorm::load(w, &at("post_attention_layernorm"), h, eps, kind)?,
                gate: linear(w, &at("mlp.gate_proj"), (h, i), mb, storage)?,
                up: linear(w, &at("mlp.up_proj"), (h, i), mb, storage)?,
                down: linear(w, &at("mlp.down_proj"), (i, h), mb, storage)?,
            });
        }
        Ok(LlamaBody {
            config: config.clone(),
            embed,
            layers,
            norm: RmsNorm::load(w, "norm", h, eps, kind)?,
            rotary: Rotary::new(d, &config.rope)?,
            attention: AttentionImpl::Eager,
            kind,
        })
    }

    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
}

/// Repeats each key/value head `n` times along dim 1 ([b, kv, s, d] -> [b, kv * n, s, d]),
/// so query head `j` meets key/value head `j / n` (Hugging Face `repeat_kv`).
fn repeat_kv(x: Tensor, n: i64) -> Tensor {
    if n == 1 {
        return x;
    }
    let s = x.size();
    x.unsqueeze(2)
        .expand([s[0], s[1], n, s[2], s[3]], false)
        .reshape([s[0], s[1] * n, s[2], s[3]])
}

impl DecoderBody for LlamaBody {
    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size
    }

    fn token_embedding(&self) -> &Tensor {
        self.embed.table()
    }

    fn forward(&self, input: &BodyInput, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let c = &self.config;
        let size = input.ids.size();
        let (b, s) = (size[0], size[1]);
        let (heads, kv, d) = (c.num_attention_heads, c.kv_heads(), c.head_width());
        let mut x = self.embed.forward(input.ids, "input_ids")?;
        let (cos, sin) = self.rotary.cos_sin(input.positions, self.kind);
        let train = input.train;
        for (n, layer) in self.layers.iter().enumerate() {
            let a = layer.input_norm.forward(&x);
            let split = |t: Tensor, h: i64| t.view([b, s, h, d]).transpose(1, 2);
            let (mut q, mut k) = (
                split(layer.q.forward_t(&a, train), heads),
                split(layer.k.forward_t(&a, train), kv),
            );
            if let Some((q_norm, k_norm)) = &layer.qk_norm {
                // Over the head width, the last dimension either side of the transpose.
                (q, k) = (q_norm.forward(&q), k_norm.forward(&k));
            }
            let q = rope::apply(&q, &cos, &sin);
            let k = rope::apply(&k, &cos, &sin);
            let v = split(layer.v.forward_t(&a, train), kv);
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => cache.append(n, k, v)?,
                None => (k, v),
            };
            let ctx = attention(
                &q,
                &repeat_kv(k, heads / kv),
                &repeat_kv(v, heads / kv),
                Some(match (layer.slides, input.window_mask_bias) {
                    (true, Some(windowed)) => windowed,
                    _ => input.mask_bias,
                }),
                c.attention_dropout,
                train,
                self.attention,
            )
            .transpose(1, 2)
            .contiguous()
            .view([b, s, heads * d]);
            // Not `+=`: that would add in place into a tensor autograd saved.
            x = &x + layer.o.forward_t(&ctx, train);
            let m = layer.post_norm.forward(&x);
            let gated = c.hidden_act.forward(&layer.gate.forward_t(&m, train))
                * layer.up.forward_t(&m, train);
            x = &x + layer.down.forward_t(&gated, train);
        }
        Ok(self.norm.forward(&x))
    }

    fn linear_layers(&self) -> Vec<(String, &LoraLinear)> {
        stack_linears("layers", &self.layers)
    }

    fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        stack_linears_mut("layers", &mut self.layers)
    }

    fn set_attention(&mut self, imp: AttentionImpl) {
        self.attention = imp;
    }

    fn sliding_window(&self) -> Option<i64> {
        // Every sliding layer has the config's one window.
        (0..self.config.num_hidden_layers).find_map(|n| self.config.window(n))
    }
}

/// Architecture facts of a Llama-family member: `model.` prefix, [out, in] linears, LoRA on
/// q/v.
pub fn spec(family: Family) -> DecoderSpec {
    DecoderSpec {
        architecture: family.architecture(),
        prefix: "model.",
        fan_in_fan_out: false,
        default_targets: &["q_proj", "v_proj"],
    }
}

/// Builds a Llama with the head of `task` from `store` (keys with or without `model.`).
pub fn load(
    raw: &RawConfig,
    store: &dyn TensorSource,
    task: Task,
    options: &LoadOptions,
) -> Result<DecoderModel> {
    let config = LlamaConfig::from_raw(raw)?;
    load_with_config(&config, store, task, options)
}

/// [`load`] with an already parsed config (a GGUF file builds it from its metadata).
pub fn load_with_config(
    config: &LlamaConfig,
    store: &dyn TensorSource,
    task: Task,
    options: &LoadOptions,
) -> Result<DecoderModel> {
    let heads = HeadSpec {
        tied: config.tie_word_embeddings,
        token_head: "score",
        token_dropout: config.classifier_dropout.unwrap_or(0.1),
        init_std: config.initializer_range,
    };
    DecoderModel::load_with(
        spec(config.family),
        store,
        ("embed_tokens.weight", BASE_MODULES),
        task,
        options,
        heads,
        |w, kind, storage| LlamaBody::load(w, config, kind, storage),
    )
}
