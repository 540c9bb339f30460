//! GPT-2 (Hugging Face `GPT2Model` layout, body of `GPT2LMHeadModel` and friends).
//!
//! Module paths equal checkpoint keys without the `transformer.` prefix: `wte`, `wpe`,
//! `h.N.ln_1`, `h.N.attn.c_attn` (query, key and value fused, [hidden, 3 hidden]),
//! `h.N.attn.c_proj`, `h.N.ln_2`, `h.N.mlp.c_fc`, `h.N.mlp.c_proj`, `ln_f`. GPT-2's `Conv1D`
//! stores its weight as [in, out]; it is transposed once at load into the [out, in] of a
//! [`LoraLinear`], so LoRA factors keep PEFT's `A` [r, in], `B` [out, r] either way.

use autolora_core::LoraLinear;
use tch::{Kind, Tensor};

use crate::config::{Architecture, Implemented, RawConfig, require_multiple, require_positive};
use crate::decoder::{
    BodyInput, DecoderBody, DecoderModel, DecoderSpec, HeadSpec, KvCache, TokenIds,
};
use crate::layers::{Activation, AttentionImpl, Embedding, LayerNorm, attention_scaled, dropout};
use crate::load::LoadOptions;
use crate::model::Task;
use crate::named_linears::{BlockLinears, stack_linears, stack_linears_mut};
use crate::weights::{TensorSource, WeightLoader};
use crate::{Error, Result};

fn default_act() -> Activation {
    Activation::GeluTanh
}
fn default_dropout() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_init_range() -> f64 {
    0.02
}
fn yes() -> bool {
    true
}

/// A GPT-2 `config.json` (Hugging Face field names; optional ones default as in
/// `transformers`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Size of the position-embedding table (the longest sequence).
    pub n_positions: i64,
    /// Width of the hidden states.
    pub n_embd: i64,
    /// Number of transformer blocks.
    pub n_layer: i64,
    /// Attention heads per block.
    pub n_head: i64,
    /// Width of the feed-forward layer; `4 * n_embd` when absent.
    #[serde(default)]
    pub n_inner: Option<i64>,
    /// Feed-forward activation (`gelu_new` in GPT-2).
    #[serde(default = "default_act")]
    pub activation_function: Activation,
    /// Dropout on the residual branches.
    #[serde(default = "default_dropout")]
    pub resid_pdrop: f64,
    /// Dropout on the embeddings.
    #[serde(default = "default_dropout")]
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "default_dropout")]
    pub attn_pdrop: f64,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Standard deviation of freshly initialised head weights.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Divide attention scores by `sqrt(head_dim)`.
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    /// Also divide attention scores by the block's index + 1.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Whether the LM head is the token embedding (always in released GPT-2 checkpoints).
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    /// Dropout before the token-classification head (0.1 when absent).
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// End-of-text token(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding token, if the checkpoint defines one.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

impl Gpt2Config {
    /// Fields a usable config must have.
    pub const REQUIRED: &'static [&'static str] =
        &["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"];

    /// The keys besides [`REQUIRED`](Self::REQUIRED) that `transformers`' `modeling_gpt2`
    /// computes with, and the values implemented. `reorder_and_upcast_attn` changes only the
    /// precision of half-precision attention (this crate computes in f32 or f64); the
    /// dropouts and `initializer_range` only matter in training; `add_cross_attention` only
    /// with an encoder, whose tensors the loader would report as unexpected.
    pub const COMPUTATION_KEYS: &'static [(&'static str, Implemented)] = &[
        ("n_inner", Implemented::Any),
        (
            "activation_function",
            Implemented::OneOf(Activation::HF_NAMES),
        ),
        ("layer_norm_epsilon", Implemented::Any),
        ("scale_attn_weights", Implemented::Any),
        ("scale_attn_by_inverse_layer_idx", Implemented::Any),
        ("reorder_and_upcast_attn", Implemented::Any),
        ("tie_word_embeddings", Implemented::Any),
    ];

    /// Parses and validates a raw config.
    pub fn from_raw(raw: &RawConfig) -> Result<Self> {
        raw.parse_checked(Self::REQUIRED, Self::COMPUTATION_KEYS, |c: &Gpt2Config| {
            require_multiple(("n_embd", c.n_embd), ("n_head", c.n_head))?;
            require_positive(&[
                ("vocab_size", c.vocab_size),
                ("n_positions", c.n_positions),
                ("n_embd", c.n_embd),
                ("n_layer", c.n_layer),
                ("n_inner", c.inner()),
            ])
        })
    }

    /// Width of the feed-forward layer.
    pub fn inner(&self) -> i64 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

/// Loads a `Conv1D` `{name}` (weight stored [in, out], bias `[out]`) as a [`LoraLinear`]
/// with weight [out, in].
pub fn load_conv1d(
    w: &mut WeightLoader,
    name: &str,
    in_features: i64,
    out_features: i64,
    storage: Kind,
) -> Result<LoraLinear> {
    let weight = w.get(
        &format!("{name}.weight"),
        &[in_features, out_features],
        storage,
    )?;
    let bias = w.get(&format!("{name}.bias"), &[out_features], storage)?;
    Ok(LoraLinear::new(
        weight.f_transpose(0, 1)?.f_contiguous()?,
        Some(bias),
    )?)
}

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    c_attn: LoraLinear,
    attn_proj: LoraLinear,
    ln_2: LayerNorm,
    c_fc: LoraLinear,
    mlp_proj: LoraLinear,
}

impl BlockLinears<4> for Block {
    const SUFFIXES: [&'static str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

    fn linears(&self) -> [&LoraLinear; 4] {
        [&self.c_attn, &self.attn_proj, &self.c_fc, &self.mlp_proj]
    }

    fn linears_mut(&mut self) -> [&mut LoraLinear; 4] {
        [
            &mut self.c_attn,
            &mut self.attn_proj,
            &mut self.c_fc,
            &mut self.mlp_proj,
        ]
    }
}

/// Top-level module names of the base model (for the loader's unexpected-tensor check).
pub const BASE_MODULES: &[&str] = &["wte", "wpe", "h", "ln_f"];

/// The GPT-2 body; all weights frozen.
#[derive(Debug)]
pub struct Gpt2Body {
    config: Gpt2Config,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    attention: AttentionImpl,
}

impl Gpt2Body {
    /// Loads the body: `kind` is the computation kind (layer norms too), `storage` the kind
    /// of the embeddings and linear layers.
    pub fn load(
        w: &mut WeightLoader,
        config: &Gpt2Config,
        kind: Kind,
        storage: Kind,
    ) -> Result<Self> {
        let h = config.n_embd;
        let eps = config.layer_norm_epsilon;
        // Old checkpoints carry the causal-mask buffers.
        w.ignore_suffix(".attn.bias");
        w.ignore_suffix(".attn.masked_bias");
        let wte = Embedding::load(w, "wte", config.vocab_size, h, storage, kind)?;
        let wpe = Embedding::load(w, "wpe", config.n_positions, h, storage, kind)?;
        let inner = config.inner();
        let mut blocks = Vec::with_capacity(config.n_layer as usize);
        for n in 0..config.n_layer {
            let p = format!("h.{n}");
            blocks.push(Block {
                ln_1: LayerNorm::load(w, &format!("{p}.ln_1"), h, eps, kind)?,
                c_attn: load_conv1d(w, &format!("{p}.attn.c_attn"), h, 3 * h, storage)?,
                attn_proj: load_conv1d(w, &format!("{p}.attn.c_proj"), h, h, storage)?,
                ln_2: LayerNorm::load(w, &format!("{p}.ln_2"), h, eps, kind)?,
                c_fc: load_conv1d(w, &format!("{p}.mlp.c_fc"), h, inner, storage)?,
                mlp_proj: load_conv1d(w, &format!("{p}.mlp.c_proj"), inner, h, storage)?,
            });
        }
        Ok(Gpt2Body {
            config: config.clone(),
            wte,
            wpe,
            blocks,
            ln_f: LayerNorm::load(w, "ln_f", h, eps, kind)?,
            attention: AttentionImpl::Eager,
        })
    }

    /// The config.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }
}

impl DecoderBody for Gpt2Body {
    fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    fn hidden_size(&self) -> i64 {
        self.config.n_embd
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size
    }

    fn token_embedding(&self) -> &Tensor {
        self.wte.table()
    }

    fn forward(&self, input: &BodyInput, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let c = &self.config;
        let size = input.ids.size();
        let (b, s) = (size[0], size[1]);
        if input.positions.numel() > 0 {
            let max = input.positions.max().int64_value(&[]);
            if max >= c.n_positions {
                return Err(Error::BadInput {
                    name: "input_ids",
                    why: format!(
                        "position {max} is beyond GPT-2's {} positions",
                        c.n_positions
                    ),
                });
            }
        }
        let x = self.wte.forward(input.ids, "input_ids")?
            + self.wpe.forward(input.positions, "position_ids")?;
        let mut x = dropout(&x, c.embd_pdrop, input.train);
        let heads = c.n_head;
        let head_dim = c.n_embd / heads;
        let split = |t: &Tensor| t.view([b, s, heads, head_dim]).transpose(1, 2);
        for (n, block) in self.blocks.iter().enumerate() {
            let a = block.ln_1.forward(&x);
            let qkv = block.c_attn.forward_t(&a, input.train).split(c.n_embd, -1);
            let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => cache.append(n, k, v)?,
                None => (k, v),
            };
            let mut scale = 1.0;
            if c.scale_attn_weights {
                scale /= (head_dim as f64).sqrt();
            }
            if c.scale_attn_by_inverse_layer_idx {
                scale /= (n + 1) as f64;
            }
            let ctx = attention_scaled(
                &q,
                &k,
                &v,
                Some(input.mask_bias),
                scale,
                c.attn_pdrop,
                input.train,
                self.attention,
            )
            .transpose(1, 2)
            .contiguous()
            .view([b, s, c.n_embd]);
            let attn = block.attn_proj.forward_t(&ctx, input.train);
            // Not `+=`: that would add in place into a tensor autograd saved.
            x = &x + dropout(&attn, c.resid_pdrop, input.train);
            let m = block.c_fc.forward_t(&block.ln_2.forward(&x), input.train);
            let m = block
                .mlp_proj
                .forward_t(&c.activation_function.forward(&m), input.train);
            x = &x + dropout(&m, c.resid_pdrop, input.train);
        }
        Ok(self.ln_f.forward(&x))
    }

    fn linear_layers(&self) -> Vec<(String, &LoraLinear)> {
        stack_linears("h", &self.blocks)
    }

    fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        stack_linears_mut("h", &mut self.blocks)
    }

    fn set_attention(&mut self, imp: AttentionImpl) {
        self.attention = imp;
    }
}

/// Architecture facts of GPT-2: `transformer.` prefix, `Conv1D` layout, LoRA on `c_attn`.
pub const SPEC: DecoderSpec = DecoderSpec {
    architecture: Architecture::Gpt2,
    prefix: "transformer.",
    fan_in_fan_out: true,
    default_targets: &["c_attn"],
};

/// Builds GPT-2 with the head of `task` from `store` (keys with or without `transformer.`).
pub fn load(
    raw: &RawConfig,
    store: &dyn TensorSource,
    task: Task,
    options: &LoadOptions,
) -> Result<DecoderModel> {
    let config = Gpt2Config::from_raw(raw)?;
    let heads = HeadSpec {
        tied: config.tie_word_embeddings,
        token_head: "classifier",
        token_dropout: config.classifier_dropout.unwrap_or(0.1),
        init_std: config.initializer_range,
    };
    DecoderModel::load_with(
        SPEC,
        store,
        ("wte.weight", BASE_MODULES),
        task,
        options,
        heads,
        |w, kind, storage| Gpt2Body::load(w, &config, kind, storage),
    )
}
