//! BERT (Hugging Face `BertModel` layout), also the body of RoBERTa.
//!
//! Module paths equal checkpoint keys without the `bert.` / `roberta.` prefix:
//! `embeddings.{word,position,token_type}_embeddings`, `embeddings.LayerNorm`,
//! `encoder.layer.N.attention.self.{query,key,value}`, `encoder.layer.N.attention.output.dense`,
//! `encoder.layer.N.attention.output.LayerNorm`, `encoder.layer.N.intermediate.dense`,
//! `encoder.layer.N.output.dense`, `encoder.layer.N.output.LayerNorm`, `pooler.dense`.
//! RoBERTa differs only in its position ids ([`PositionIds::PaddingOffset`]).

use autolora_core::LoraLinear;
use tch::{Kind, Tensor};

use crate::config::{Implemented, RawConfig, require_multiple, require_positive};
use crate::layers::{
    Activation, AttentionImpl, Embedding, HeadRng, LayerNorm, attention, dropout, init_linear,
    padding_mask_bias,
};
use crate::model::ModelInput;
use crate::named_linears::{BlockLinears, stack_linears, stack_linears_mut};
use crate::weights::WeightLoader;
use crate::{Error, Result};

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_max_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-12
}

/// A BERT or RoBERTa `config.json` (Hugging Face field names; optional ones default as in
/// `transformers`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: i64,
    /// Width of the hidden states.
    pub hidden_size: i64,
    /// Number of transformer layers.
    pub num_hidden_layers: i64,
    /// Attention heads per layer.
    pub num_attention_heads: i64,
    /// Width of the feed-forward layer.
    pub intermediate_size: i64,
    /// Feed-forward activation.
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// Dropout on hidden states.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Size of the position-embedding table.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: i64,
    /// Size of the segment-embedding table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    /// Standard deviation of freshly initialised head weights.
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Layer-norm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id (RoBERTa's position ids are offset by it).
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Dropout before the classifier; `hidden_dropout_prob` when absent.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
}

impl BertConfig {
    /// Fields a usable config must have (the sizes; everything else has a default).
    pub const REQUIRED: &'static [&'static str] = &[
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
    ];

    /// The keys besides [`REQUIRED`](Self::REQUIRED) that `transformers`' `modeling_bert`
    /// and `modeling_roberta` compute with, and the values implemented:
    /// `position_embedding_type` is gone from `transformers` 5 (whose BERT is absolute only)
    /// but 4.x computes relative ones; `is_decoder` makes the self-attention causal. The
    /// dropouts and `initializer_range` only matter in training.
    pub const COMPUTATION_KEYS: &'static [(&'static str, Implemented)] = &[
        ("hidden_act", Implemented::OneOf(Activation::HF_NAMES)),
        ("layer_norm_eps", Implemented::Any),
        ("max_position_embeddings", Implemented::Any),
        ("type_vocab_size", Implemented::Any),
        ("pad_token_id", Implemented::Any),
        ("position_embedding_type", Implemented::OneOf(&["absolute"])),
        ("is_decoder", Implemented::Only(false)),
    ];

    /// Parses and validates a raw config.
    pub fn from_raw(raw: &RawConfig) -> Result<Self> {
        raw.parse_checked(Self::REQUIRED, Self::COMPUTATION_KEYS, |c: &BertConfig| {
            require_multiple(
                ("hidden_size", c.hidden_size),
                ("num_attention_heads", c.num_attention_heads),
            )?;
            require_positive(&[
                ("vocab_size", c.vocab_size),
                ("hidden_size", c.hidden_size),
                ("num_hidden_layers", c.num_hidden_layers),
                ("intermediate_size", c.intermediate_size),
                ("max_position_embeddings", c.max_position_embeddings),
                ("type_vocab_size", c.type_vocab_size),
            ])
        })
    }

    /// Dropout in front of classification heads.
    pub fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

/// How position ids are derived from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// `0, 1, 2, ...` (BERT).
    Absolute,
    /// RoBERTa: non-padding tokens count up from `pad + 1`, padding tokens get `pad`
    /// (Hugging Face `create_position_ids_from_input_ids`).
    PaddingOffset {
        /// The padding token id (1 for RoBERTa).
        pad: i64,
    },
}

impl PositionIds {
    /// Position ids [b, s] for `input_ids` [b, s].
    pub fn compute(self, input_ids: &Tensor) -> Tensor {
        match self {
            PositionIds::Absolute => {
                let size = input_ids.size();
                Tensor::arange(size[1], (Kind::Int64, input_ids.device()))
                    .unsqueeze(0)
                    .expand(&size, false)
            }
            PositionIds::PaddingOffset { pad } => {
                // Decided from the ids, not the attention mask, exactly as transformers does.
                let mask = input_ids.ne(pad).to_kind(Kind::Int64);
                mask.cumsum(1, Kind::Int64) * &mask + pad
            }
        }
    }

    /// The largest position id a sequence of length `s` can produce.
    fn max_id(self, s: i64) -> i64 {
        match self {
            PositionIds::Absolute => s - 1,
            PositionIds::PaddingOffset { pad } => pad + s,
        }
    }
}

/// Errors unless every id in `ids` lies in `0..limit`.
pub fn check_id_range(ids: &Tensor, limit: i64, name: &'static str) -> Result<()> {
    if ids.numel() == 0 {
        return Ok(());
    }
    let (min, max) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
    if min < 0 || max >= limit {
        return Err(Error::BadInput {
            name,
            why: format!("ids must lie in 0..{limit}, found values from {min} to {max}"),
        });
    }
    Ok(())
}

/// Loads a frozen linear layer `{name}` [out, in] with bias, weights stored as `storage`.
pub fn load_linear(
    w: &mut WeightLoader,
    name: &str,
    in_features: i64,
    out_features: i64,
    storage: Kind,
) -> Result<LoraLinear> {
    let weight = w.get(
        &format!("{name}.weight"),
        &[out_features, in_features],
        storage,
    )?;
    let bias = w.get(&format!("{name}.bias"), &[out_features], storage)?;
    Ok(LoraLinear::new(weight, Some(bias))?)
}

#[derive(Debug)]
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

#[derive(Debug)]
struct Layer {
    query: LoraLinear,
    key: LoraLinear,
    value: LoraLinear,
    attention_output: LoraLinear,
    attention_norm: LayerNorm,
    intermediate: LoraLinear,
    output: LoraLinear,
    output_norm: LayerNorm,
}

impl BlockLinears<6> for Layer {
    const SUFFIXES: [&'static str; 6] = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];

    fn linears(&self) -> [&LoraLinear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }

    fn linears_mut(&mut self) -> [&mut LoraLinear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}

/// The BERT body: embeddings, transformer layers and (where the checkpoint has one) the
/// pooler. All weights frozen.
#[derive(Debug)]
pub struct BertModel {
    config: BertConfig,
    positions: PositionIds,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    pooler: Option<LoraLinear>,
    attention: AttentionImpl,
    kind: Kind,
}

/// Top-level module names of the base model (for the loader's unexpected-tensor check).
pub const BASE_MODULES: &[&str] = &["embeddings", "encoder", "pooler"];

/// Whether the task class has a pooler (Hugging Face's `add_pooling_layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolerUse {
    /// The head reads it (BERT's sequence classification and regression).
    Required,
    /// Returned when the checkpoint has one (the bare encoder, `BertModel`).
    IfPresent,
    /// None (token classification; RoBERTa's heads read the first token instead).
    None,
}

impl BertModel {
    /// Loads the body. `kind` is the computation kind (layer norms too); `storage` the kind of
    /// the large frozen matrices (embeddings, linear layers), e.g. bf16 on CUDA. `pooler` says
    /// whether the task class has a pooler; with [`PoolerUse::Required`] and none in the
    /// checkpoint, a frozen pooler is initialised from `rng` (as Hugging Face does) and a
    /// warning is logged.
    pub fn load(
        w: &mut WeightLoader,
        config: &BertConfig,
        positions: PositionIds,
        kind: Kind,
        storage: Kind,
        pooler: PoolerUse,
        rng: &mut HeadRng,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        w.ignore_suffix("embeddings.position_ids");
        w.ignore_suffix("embeddings.token_type_ids");
        let embeddings = Embeddings {
            word: Embedding::load(
                w,
                "embeddings.word_embeddings",
                config.vocab_size,
                h,
                storage,
                kind,
            )?,
            position: Embedding::load(
                w,
                "embeddings.position_embeddings",
                config.max_position_embeddings,
                h,
                storage,
                kind,
            )?,
            token_type: Embedding::load(
                w,
                "embeddings.token_type_embeddings",
                config.type_vocab_size,
                h,
                storage,
                kind,
            )?,
            norm: LayerNorm::load(w, "embeddings.LayerNorm", h, eps, kind)?,
        };
        let i = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for n in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            layers.push(Layer {
                query: load_linear(w, &format!("{p}.attention.self.query"), h, h, storage)?,
                key: load_linear(w, &format!("{p}.attention.self.key"), h, h, storage)?,
                value: load_linear(w, &format!("{p}.attention.self.value"), h, h, storage)?,
                attention_output: load_linear(
                    w,
                    &format!("{p}.attention.output.dense"),
                    h,
                    h,
                    storage,
                )?,
                attention_norm: LayerNorm::load(
                    w,
                    &format!("{p}.attention.output.LayerNorm"),
                    h,
                    eps,
                    kind,
                )?,
                intermediate: load_linear(w, &format!("{p}.intermediate.dense"), h, i, storage)?,
                output: load_linear(w, &format!("{p}.output.dense"), i, h, storage)?,
                output_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps, kind)?,
            });
        }
        let pooler = match (pooler, w.has("pooler.dense.weight")) {
            (PoolerUse::Required | PoolerUse::IfPresent, true) => {
                Some(load_linear(w, "pooler.dense", h, h, storage)?)
            }
            (PoolerUse::Required, false) => {
                tracing::warn!("checkpoint has no pooler; initialising a fresh frozen one");
                let (weight, bias) =
                    init_linear(h, h, config.initializer_range, rng, storage, w.device())?;
                Some(LoraLinear::new(weight, Some(bias))?)
            }
            // The task class has no pooler (token classification, RoBERTa's heads): the
            // checkpoint's is left out, so it is neither computed nor a LoRA target.
            (PoolerUse::None, true) => {
                w.ignore_suffix("pooler.dense.weight");
                w.ignore_suffix("pooler.dense.bias");
                None
            }
            (_, false) => None,
        };
        Ok(BertModel {
            config: config.clone(),
            positions,
            embeddings,
            layers,
            pooler,
            attention: AttentionImpl::Eager,
            kind,
        })
    }

    /// The config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Selects the attention implementation.
    pub fn set_attention(&mut self, imp: AttentionImpl) {
        self.attention = imp;
    }

    /// Every linear layer with its module path.
    pub fn linear_layers(&self) -> Vec<(String, &LoraLinear)> {
        let mut out = stack_linears("encoder.layer", &self.layers);
        if let Some(p) = &self.pooler {
            out.push(("pooler.dense".to_string(), p));
        }
        out
    }

    /// Mutable access to the same layers.
    pub fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = stack_linears_mut("encoder.layer", &mut self.layers);
        if let Some(p) = &mut self.pooler {
            out.push(("pooler.dense".to_string(), p));
        }
        out
    }

    /// Whether a pooler is present.
    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }

    /// Runs the body: last hidden states [b, s, h] and the pooled `[CLS]` state [b, h] (if the
    /// model has a pooler).
    pub fn forward_t(&self, input: &ModelInput, train: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (b, s) = input.validate()?;
        let max_id = self.positions.max_id(s);
        if max_id >= self.config.max_position_embeddings {
            return Err(Error::BadInput {
                name: "input_ids",
                why: format!(
                    "sequence length {s} needs position id {max_id}, but the model has {} positions",
                    self.config.max_position_embeddings
                ),
            });
        }
        let ids = input.input_ids;
        // Checked here because an out-of-range id on CUDA is a device-side assert that takes
        // the whole process down, not an error.
        check_id_range(ids, self.config.vocab_size, "input_ids")?;
        let positions = self.positions.compute(ids);
        let token_types = match input.token_type_ids {
            Some(t) => {
                check_id_range(t, self.config.type_vocab_size, "token_type_ids")?;
                t.shallow_clone()
            }
            None => ids.zeros_like(),
        };
        let e = &self.embeddings;
        let x = e.word.forward(ids, "input_ids")?
            + e.position.forward(&positions, "input_ids")?
            + e.token_type.forward(&token_types, "token_type_ids")?;
        let p_hidden = self.config.hidden_dropout_prob;
        let mut x = dropout(&e.norm.forward(&x), p_hidden, train);
        // As transformers does with SDPA: no mask bias when every token is real (an add per
        // layer saved, and the attention kernel may take its unmasked path).
        let mask = (input.attention_mask.f_all()?.int64_value(&[]) == 0)
            .then(|| padding_mask_bias(input.attention_mask, self.kind));
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let split = |t: Tensor| t.view([b, s, heads, head_dim]).transpose(1, 2);
        for layer in &self.layers {
            let q = split(layer.query.forward_t(&x, train));
            let k = split(layer.key.forward_t(&x, train));
            let v = split(layer.value.forward_t(&x, train));
            let ctx = attention(
                &q,
                &k,
                &v,
                mask.as_ref(),
                self.config.attention_probs_dropout_prob,
                train,
                self.attention,
            )
            .transpose(1, 2)
            .contiguous()
            .view([b, s, self.config.hidden_size]);
            let attn = layer.attention_output.forward_t(&ctx, train);
            let attn = layer
                .attention_norm
                .forward(&(dropout(&attn, p_hidden, train) + &x));
            let inter = self
                .config
                .hidden_act
                .forward(&layer.intermediate.forward_t(&attn, train));
            let out = layer.output.forward_t(&inter, train);
            x = layer
                .output_norm
                .forward(&(dropout(&out, p_hidden, train) + &attn));
        }
        let pooled = self
            .pooler
            .as_ref()
            .map(|p| p.forward_t(&x.select(1, 0), train).tanh());
        Ok((x, pooled))
    }
}
