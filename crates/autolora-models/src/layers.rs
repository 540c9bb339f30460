//! Building blocks shared by the architectures: activations, layer norm, embeddings,
//! trainable head projections and attention.
//!
//! Every op here has a double backward in libtorch (the exact hypergradient differentiates
//! through the model twice), except [`AttentionImpl::Fused`], which is only for passes that
//! never take second derivatives.

use autolora_core::{NamedParam, Param};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use tch::{Kind, Tensor};

use crate::weights::WeightLoader;
use crate::{Error, Result};

/// A hidden activation, named as in Hugging Face configs (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` with the error function (HF `gelu`).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    #[serde(rename = "gelu_tanh")]
    GeluTanh,
    /// `max(x, 0)`.
    #[serde(rename = "relu")]
    Relu,
    /// `x * sigmoid(x)` (HF `silu`, `swish`).
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    /// `tanh(x)`.
    #[serde(rename = "tanh")]
    Tanh,
}

impl Activation {
    /// The Hugging Face names that deserialize to an activation (what `hidden_act` or
    /// `activation_function` may hold).
    pub const HF_NAMES: &'static [&'static str] = &[
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "gelu_fast",
        "relu",
        "silu",
        "swish",
        "tanh",
    ];

    /// Applies the activation.
    pub fn forward(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Dropout that is the identity outside training.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x.shallow_clone()
    }
}

/// Frozen layer normalisation over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `{name}.weight` and `{name}.bias` (or the legacy `gamma`/`beta`) of width `dim`.
    pub fn load(w: &mut WeightLoader, name: &str, dim: i64, eps: f64, kind: Kind) -> Result<Self> {
        let (wname, bname) = if !w.has(&format!("{name}.weight")) && w.has(&format!("{name}.gamma"))
        {
            (format!("{name}.gamma"), format!("{name}.beta"))
        } else {
            (format!("{name}.weight"), format!("{name}.bias"))
        };
        Ok(LayerNorm {
            weight: w.get(&wname, &[dim], kind)?,
            bias: w.get(&bname, &[dim], kind)?,
            eps,
        })
    }

    /// Normalises `x` [.., dim].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        x.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

/// Frozen root-mean-square normalisation (Llama's `RMSNorm`): computed in f32 (f64 for f64
/// inputs), then scaled by the weight, as Hugging Face does.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads `{name}.weight` of width `dim`.
    pub fn load(w: &mut WeightLoader, name: &str, dim: i64, eps: f64, kind: Kind) -> Result<Self> {
        Ok(RmsNorm {
            weight: w.get(&format!("{name}.weight"), &[dim], kind)?,
            eps,
        })
    }

    /// `weight * x / sqrt(mean(x^2) + eps)` over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let wide = if kind == Kind::Double {
            x.shallow_clone()
        } else {
            x.to_kind(Kind::Float)
        };
        let variance = wide.pow_tensor_scalar(2).mean_dim(-1, true, wide.kind());
        let normed = wide * (variance + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

/// A frozen embedding table, possibly stored in a narrower dtype than the computation.
#[derive(Debug)]
pub struct Embedding {
    table: Tensor,
    kind: Kind,
}

impl Embedding {
    /// Loads `{name}.weight` [count, dim] stored as `storage`; lookups return `kind`.
    pub fn load(
        w: &mut WeightLoader,
        name: &str,
        count: i64,
        dim: i64,
        storage: Kind,
        kind: Kind,
    ) -> Result<Self> {
        Ok(Embedding {
            table: w.get(&format!("{name}.weight"), &[count, dim], storage)?,
            kind,
        })
    }

    /// The table [count, dim] in its storage kind.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Number of rows.
    pub fn count(&self) -> i64 {
        self.table.size()[0]
    }

    /// Looks up `ids` (i64, any shape) -> [.., dim]. Ids out of range are an error.
    pub fn forward(&self, ids: &Tensor, input: &'static str) -> Result<Tensor> {
        let out = Tensor::f_embedding(&self.table, ids, -1, false, false).map_err(|e| {
            Error::BadInput {
                name: input,
                why: format!("id outside the table of {} rows ({e})", self.count()),
            }
        })?;
        Ok(if out.kind() == self.kind {
            out
        } else {
            out.to_kind(self.kind)
        })
    }
}

/// A trainable linear projection of a task head, `y = x W^T + b`, whose weights live in
/// [`Param`] slots so the search engine can read and swap them.
#[derive(Debug, Clone)]
pub struct HeadLinear {
    /// Module path (`classifier`, `classifier.out_proj`, `score`, ...).
    pub name: String,
    /// Weight [out, in].
    pub weight: Param,
    /// Bias `[out]`; `None` for bias-free heads (the decoders' `score`).
    pub bias: Option<Param>,
}

impl HeadLinear {
    /// Loads `{name}.weight`/`.bias` if the checkpoint has them (a fine-tuned head), else
    /// initialises like Hugging Face does (weight ~ N(0, std^2), bias 0) from `rng`.
    /// The tensors are trainable leaves of `kind`.
    pub fn load_or_init(
        w: &mut WeightLoader,
        name: &str,
        in_features: i64,
        out_features: i64,
        std: f64,
        rng: &mut HeadRng,
        kind: Kind,
    ) -> Result<Self> {
        Self::load_or_init_with(w, name, (in_features, out_features), true, std, rng, kind)
    }

    /// [`load_or_init`](Self::load_or_init) with the bias optional (`with_bias`).
    pub fn load_or_init_with(
        w: &mut WeightLoader,
        name: &str,
        (in_features, out_features): (i64, i64),
        with_bias: bool,
        std: f64,
        rng: &mut HeadRng,
        kind: Kind,
    ) -> Result<Self> {
        let device = w.device();
        let wkey = format!("{name}.weight");
        let bkey = format!("{name}.bias");
        let (weight, bias) = if w.has_root(&wkey) {
            tracing::debug!(head = name, "task head loaded from the checkpoint");
            let weight = w.get_root(&wkey, &[out_features, in_features], kind)?;
            let bias = if with_bias {
                Some(w.get_root(&bkey, &[out_features], kind)?)
            } else {
                None
            };
            (weight, bias)
        } else {
            let (weight, bias) = init_linear(in_features, out_features, std, rng, kind, device)?;
            (weight, with_bias.then_some(bias))
        };
        let trainable = |t: Tensor| Param::new(t.detach().set_requires_grad(true));
        Ok(HeadLinear {
            name: name.to_string(),
            weight: trainable(weight),
            bias: bias.map(trainable),
        })
    }

    /// `x W^T + b` for `x` [.., in].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.linear(&self.weight.tensor(), bias.as_ref())
    }

    /// `{name}.weight` and (if present) `{name}.bias`.
    pub fn named_params(&self) -> Vec<NamedParam> {
        let mut out = vec![NamedParam {
            name: format!("{}.weight", self.name),
            param: self.weight.clone(),
        }];
        if let Some(bias) = &self.bias {
            out.push(NamedParam {
                name: format!("{}.bias", self.name),
                param: bias.clone(),
            });
        }
        out
    }
}

/// Hugging Face's initialisation of a linear layer: weight [out, in] ~ N(0, std^2) drawn
/// from `rng`, bias `[out]` zero.
pub fn init_linear(
    in_features: i64,
    out_features: i64,
    std: f64,
    rng: &mut HeadRng,
    kind: Kind,
    device: tch::Device,
) -> Result<(Tensor, Tensor)> {
    let normal = Normal::new(0.0, std).map_err(|e| Error::InvalidArgument {
        what: "initializer_range",
        why: e.to_string(),
    })?;
    let values: Vec<f64> = (0..in_features * out_features)
        .map(|_| normal.sample(&mut rng.0))
        .collect();
    let weight = Tensor::from_slice(&values)
        .reshape([out_features, in_features])
        .to_kind(kind)
        .to_device(device);
    Ok((weight, Tensor::zeros([out_features], (kind, device))))
}

/// The seeded random stream task heads are initialised from (independent of libtorch's
/// global generator, so a head's initial values depend on the seed alone).
#[derive(Debug)]
pub struct HeadRng(rand_chacha::ChaCha8Rng);

impl HeadRng {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        HeadRng(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }
}

/// How attention probabilities are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionImpl {
    /// `softmax(Q K^T / sqrt(d) + mask) V` written out as matmul + softmax: supports
    /// second-order autograd (required by the exact hypergradient).
    #[default]
    Eager,
    /// libtorch's fused scaled-dot-product attention: faster, but it has no double backward,
    /// so use it only where no second derivative is taken.
    Fused,
}

/// Multi-head attention core on already projected, head-split tensors, scaled by
/// `1/sqrt(head_dim)`.
///
/// `q`: [b, heads, s_q, d]; `k`, `v`: [b, heads, s_k, d]; `mask_bias`: additive
/// [b, 1, 1 or s_q, s_k] (0 where attending is allowed, a very negative number elsewhere).
/// Returns [b, heads, s_q, d].
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask_bias: Option<&Tensor>,
    dropout_p: f64,
    train: bool,
    imp: AttentionImpl,
) -> Tensor {
    let head_dim = q.size()[3];
    let scale = (head_dim as f64).powf(-0.5);
    attention_scaled(q, k, v, mask_bias, scale, dropout_p, train, imp)
}

/// [`attention`] with an explicit score scale (GPT-2 can also divide by the layer index).
#[allow(clippy::too_many_arguments)]
pub fn attention_scaled(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask_bias: Option<&Tensor>,
    scale: f64,
    dropout_p: f64,
    train: bool,
    imp: AttentionImpl,
) -> Tensor {
    match imp {
        AttentionImpl::Eager => {
            let scores = q.matmul(&k.transpose(-1, -2)) * scale;
            let scores = match mask_bias {
                Some(m) => scores + m,
                None => scores,
            };
            let probs = scores.softmax(-1, scores.kind());
            dropout(&probs, dropout_p, train).matmul(v)
        }
        AttentionImpl::Fused => Tensor::scaled_dot_product_attention(
            q,
            k,
            v,
            mask_bias,
            if train { dropout_p } else { 0.0 },
            false,
            scale,
            false,
        ),
    }
}

/// The additive attention bias [b, 1, 1, s] from a 0/1 padding mask [b, s]: 0 where the
/// mask is 1, the kind's most negative finite value where it is 0 (as Hugging Face does).
pub fn padding_mask_bias(mask: &Tensor, kind: Kind) -> Tensor {
    let min = most_negative(kind);
    let keep = mask.to_kind(kind).unsqueeze(1).unsqueeze(1);
    (keep.ones_like() - keep) * min
}

/// The additive bias [b, 1, q, k] of causal attention over a cache: `q` new queries at
/// absolute positions `k - q .. k` may attend to key `j` when `j <= ` their position and
/// `mask[b, j]` is 1 (`mask`: 0/1 [b, k] covering cached and new tokens), and with a sliding
/// `window` when `j > ` their position `- window`. Disallowed entries get the kind's most
/// negative finite value.
pub fn causal_mask_bias(mask: &Tensor, queries: i64, window: Option<i64>, kind: Kind) -> Tensor {
    let keys = mask.size()[1];
    let device = mask.device();
    let q_pos = Tensor::arange_start(keys - queries, keys, (Kind::Int64, device)).unsqueeze(1);
    let k_pos = Tensor::arange(keys, (Kind::Int64, device)).unsqueeze(0);
    // [q, k] & [b, 1, 1, k] -> [b, 1, q, k]
    let mut causal = k_pos.le_tensor(&q_pos);
    if let Some(window) = window {
        // transformers' sliding-window overlay: kv_idx > q_idx - window.
        causal = causal.logical_and(&k_pos.gt_tensor(&(&q_pos - window)));
    }
    let causal = causal.unsqueeze(0).unsqueeze(0);
    let allowed = causal.logical_and(&mask.ne(0).unsqueeze(1).unsqueeze(1));
    let zero = Tensor::zeros([], (kind, device));
    let min = Tensor::full([], most_negative(kind), (kind, device));
    zero.where_self(&allowed, &min)
}

/// The most negative finite value of a floating kind (Hugging Face's mask value).
pub fn most_negative(kind: Kind) -> f64 {
    match kind {
        Kind::Double => f64::MIN,
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.389_531_389_251_535e38,
        _ => f32::MIN as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eager_and_fused_attention_agree() {
        tch::manual_seed(0);
        let q = Tensor::randn([2, 3, 5, 4], (Kind::Double, tch::Device::Cpu));
        let k = Tensor::randn([2, 3, 5, 4], (Kind::Double, tch::Device::Cpu));
        let v = Tensor::randn([2, 3, 5, 4], (Kind::Double, tch::Device::Cpu));
        let mask = Tensor::from_slice(&[1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1]).reshape([2, 5]);
        let bias = padding_mask_bias(&mask, Kind::Double);
        let a = attention(&q, &k, &v, Some(&bias), 0.0, false, AttentionImpl::Eager);
        let b = attention(&q, &k, &v, Some(&bias), 0.0, false, AttentionImpl::Fused);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "max difference {diff}");
    }

    #[test]
    fn activations_parse_hf_names() {
        let parse = |s: &str| serde_json::from_str::<Activation>(&format!("\"{s}\"")).unwrap();
        assert_eq!(parse("gelu"), Activation::Gelu);
        assert_eq!(parse("gelu_new"), Activation::GeluTanh);
        assert_eq!(parse("swish"), Activation::Silu);
        for name in Activation::HF_NAMES {
            parse(name);
        }
    }
}
