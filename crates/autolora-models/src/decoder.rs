//! Decoder-only language models (GPT-2, Llama) behind one [`Model`]: the architecture
//! supplies a [`DecoderBody`], this module adds the task head, the causal mask and the
//! key/value cache used by generation ([`CausalLm`]).
//!
//! | task | head (Hugging Face class) | reads |
//! |---|---|---|
//! | causal LM | `lm_head` [vocab, hidden], or the token embedding when tied (`*ForCausalLM`, `GPT2LMHeadModel`) | every position |
//! | sequence classification, regression | `score` without bias (`*ForSequenceClassification`) | the last token whose attention mask is 1 |
//! | token classification | dropout, then `classifier` (GPT-2) or `score` (Llama) with bias | every position |
//!
//! The training forward ([`Model::forward_t`]) and the cached step ([`CausalLm::forward_cached`])
//! run the same layers; the cached step only appends the new keys and values to the cache
//! and masks with the cached positions included, so both give the same logits.

use autolora_core::{LoraLinear, NamedParam};
use tch::{Device, Kind, Tensor};

use crate::bert::check_id_range;
use crate::config::Architecture;
use crate::layers::{AttentionImpl, HeadLinear, HeadRng, causal_mask_bias, dropout};
use crate::load::LoadOptions;
use crate::model::{Model, ModelInput, ModelOutput, Task};
use crate::weights::{LoadReport, TensorSource, WeightLoader};
use crate::{Error, Result};

/// A token id or a list of them (`eos_token_id` is a list in Llama 3 configs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(i64),
    /// Several ids.
    Many(Vec<i64>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// Keys and values of the positions seen so far, per layer: [batch, kv_heads, past, head_dim]
/// (before grouped-query heads are repeated).
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: (0..layers).map(|_| None).collect(),
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.size()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the new keys and values `k`, `v` [b, kv_heads, s, d] of layer `layer` and
    /// returns all of them (cached then new).
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidArgument {
                what: "key/value cache",
                why: format!("layer {layer} is beyond the cache's layer count"),
            })?;
        let (k, v) = match slot.take() {
            Some((pk, pv)) => (Tensor::f_cat(&[pk, k], 2)?, Tensor::f_cat(&[pv, v], 2)?),
            None => (k, v),
        };
        *slot = Some((k.shallow_clone(), v.shallow_clone()));
        Ok((k, v))
    }

    /// Keeps batch rows `rows` (i64 `[n]`, repeats allowed) of every layer: beam search
    /// reorders its hypotheses this way.
    pub fn select(&mut self, rows: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.f_index_select(0, rows)?;
            *v = v.f_index_select(0, rows)?;
        }
        Ok(())
    }
}

/// Inputs of one body pass.
#[derive(Debug)]
pub struct BodyInput<'a> {
    /// New token ids [b, s].
    pub ids: &'a Tensor,
    /// Their absolute positions [b, s] (i64).
    pub positions: &'a Tensor,
    /// Additive attention bias [b, 1, s, past + s] (see [`causal_mask_bias`]).
    pub mask_bias: &'a Tensor,
    /// The same bias with the body's sliding window ([`DecoderBody::sliding_window`]) for
    /// the layers that slide; `None` when none does.
    pub window_mask_bias: Option<&'a Tensor>,
    /// Switches dropout on.
    pub train: bool,
}

/// The network under a decoder's head: embeddings, causal transformer layers, final norm.
pub trait DecoderBody: std::fmt::Debug {
    /// Number of transformer layers (one cache slot each).
    fn num_layers(&self) -> usize;
    /// Width of the hidden states.
    fn hidden_size(&self) -> i64;
    /// Rows of the token embedding.
    fn vocab_size(&self) -> i64;
    /// The token embedding [vocab, hidden] (storage kind), for a tied LM head.
    fn token_embedding(&self) -> &Tensor;
    /// Final hidden states [b, s, hidden] after the last norm. With `cache`, the new keys
    /// and values are appended to it and the queries attend to the cached ones too.
    fn forward(&self, input: &BodyInput, cache: Option<&mut KvCache>) -> Result<Tensor>;
    /// Every linear layer with its module path (no checkpoint prefix), in model order.
    fn linear_layers(&self) -> Vec<(String, &LoraLinear)>;
    /// Mutable access to the same layers.
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)>;
    /// Selects the attention implementation.
    fn set_attention(&mut self, imp: AttentionImpl);
    /// The attention window of the layers that slide, if any do.
    fn sliding_window(&self) -> Option<i64> {
        None
    }
}

/// A causal language model that can decode step by step with a key/value cache.
pub trait CausalLm: Model {
    /// Vocabulary size (width of the logits).
    fn vocab_size(&self) -> i64;

    /// An empty cache sized for this model.
    fn new_cache(&self) -> KvCache;

    /// Logits [b, s, vocab] for the new tokens `ids` [b, s] at `positions` [b, s], attending
    /// to the cached positions and to themselves; `attention_mask` [b, past + s] covers both.
    /// The cache is extended by the new positions.
    fn forward_cached(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor>;
}

#[derive(Debug)]
enum Head {
    None,
    /// Logits over the vocabulary; `None` means tied to the token embedding.
    Lm {
        weight: Option<Tensor>,
    },
    /// `score` on the last real token.
    Sequence {
        score: HeadLinear,
    },
    /// Per-token classifier.
    Token {
        classifier: HeadLinear,
        p: f64,
    },
}

/// How an architecture names and shapes its heads.
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec {
    /// Whether the LM head is the token embedding (`tie_word_embeddings`).
    pub tied: bool,
    /// Name of the token-classification head (`classifier` for GPT-2, `score` for Llama).
    pub token_head: &'static str,
    /// Dropout before the token-classification head.
    pub token_dropout: f64,
    /// Standard deviation of freshly initialised head weights.
    pub init_std: f64,
}

/// Architecture facts the generic model needs.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpec {
    /// The architecture.
    pub architecture: Architecture,
    /// Base-model key prefix with a head (`"transformer."`, `"model."`).
    pub prefix: &'static str,
    /// Whether the checkpoint's linear layers are stored [in, out] (GPT-2 `Conv1D`).
    pub fan_in_fan_out: bool,
    /// The paper's LoRA targets.
    pub default_targets: &'static [&'static str],
}

/// A decoder body with its task head; implements [`Model`] and [`CausalLm`].
#[derive(Debug)]
pub struct DecoderModel {
    spec: DecoderSpec,
    task: Task,
    body: Box<dyn DecoderBody>,
    head: Head,
    kind: Kind,
    device: Device,
    report: LoadReport,
}

impl DecoderModel {
    /// Adds the head of `task` (loaded from `w`'s checkpoint when present, else seeded from
    /// `seed`) to `body`; `kind` is the computation kind, `storage` that of the large frozen
    /// matrices. Then checks that the checkpoint held nothing unexpected.
    pub fn assemble(
        spec: DecoderSpec,
        body: Box<dyn DecoderBody>,
        mut w: WeightLoader,
        task: Task,
        heads: HeadSpec,
        (kind, storage, seed): (Kind, Kind, u64),
    ) -> Result<Self> {
        let h = body.hidden_size();
        let vocab = body.vocab_size();
        let mut rng = HeadRng::new(seed);
        let std = heads.init_std;
        let positive = |n: i64| -> Result<()> {
            if n < 1 {
                return Err(Error::InvalidArgument {
                    what: "num_labels",
                    why: format!("must be at least 1, got {n}"),
                });
            }
            Ok(())
        };
        let head = match task {
            Task::Encoder => Head::None,
            Task::CausalLm => {
                if heads.tied {
                    Head::Lm { weight: None }
                } else {
                    Head::Lm {
                        weight: Some(w.get_root("lm_head.weight", &[vocab, h], storage)?),
                    }
                }
            }
            Task::SequenceClassification { .. } | Task::Regression => {
                let n = match task {
                    Task::SequenceClassification { num_labels } => num_labels,
                    _ => 1,
                };
                positive(n)?;
                Head::Sequence {
                    score: HeadLinear::load_or_init_with(
                        &mut w,
                        "score",
                        (h, n),
                        false,
                        std,
                        &mut rng,
                        kind,
                    )?,
                }
            }
            Task::TokenClassification { num_labels } => {
                positive(num_labels)?;
                Head::Token {
                    classifier: HeadLinear::load_or_init_with(
                        &mut w,
                        heads.token_head,
                        (h, num_labels),
                        true,
                        std,
                        &mut rng,
                        kind,
                    )?,
                    p: heads.token_dropout,
                }
            }
        };
        let report = w.finish()?;
        tracing::info!(
            architecture = %spec.architecture,
            layers = body.num_layers(),
            hidden = h,
            prefix = report.prefix,
            tensors = report.loaded,
            "model loaded"
        );
        let device = body.token_embedding().device();
        Ok(DecoderModel {
            spec,
            task,
            body,
            head,
            kind,
            device,
            report,
        })
    }

    /// Loads the decoder `spec` describes from `store`, whose base keys carry `spec.prefix`
    /// or no prefix: `probe` (a base tensor name) tells which, `base_modules` are the
    /// top-level module names of the base model (for the unexpected-tensor check).
    /// `load_body(loader, kind, storage)` loads the body; then the head of `task` is added
    /// as in [`assemble`](Self::assemble).
    pub(crate) fn load_with<B: DecoderBody + 'static>(
        spec: DecoderSpec,
        store: &dyn TensorSource,
        (probe, base_modules): (&str, &[&str]),
        task: Task,
        options: &LoadOptions,
        heads: HeadSpec,
        load_body: impl FnOnce(&mut WeightLoader, Kind, Kind) -> Result<B>,
    ) -> Result<Self> {
        let kind = options.kind;
        let storage = options.base_kind.unwrap_or(kind);
        let mut w = WeightLoader::new(
            store,
            &[spec.prefix, ""],
            probe,
            base_modules,
            options.device,
        )?;
        let mut body = load_body(&mut w, kind, storage)?;
        body.set_attention(options.attention);
        Self::assemble(
            spec,
            Box::new(body),
            w,
            task,
            heads,
            (kind, storage, options.seed),
        )
    }

    /// What loading found (prefix, unused checkpoint keys).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Whether the LM head is the token embedding.
    pub fn lm_head_is_tied(&self) -> bool {
        matches!(self.head, Head::Lm { weight: None })
    }

    fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let Head::Lm { weight } = &self.head else {
            return Err(Error::InvalidArgument {
                what: "task",
                why: format!("{:?} has no language-model head", self.task),
            });
        };
        let weight = weight
            .as_ref()
            .unwrap_or_else(|| self.body.token_embedding());
        Ok(if weight.kind() == hidden.kind() {
            hidden.f_linear::<Tensor>(weight, None)?
        } else {
            hidden
                .f_to_kind(weight.kind())?
                .f_linear::<Tensor>(weight, None)?
                .f_to_kind(hidden.kind())?
        })
    }

    fn run_body(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        cache: Option<&mut KvCache>,
        train: bool,
    ) -> Result<Tensor> {
        check_id_range(ids, self.body.vocab_size(), "input_ids")?;
        let s = ids.size()[1];
        let mask_bias = causal_mask_bias(attention_mask, s, None, self.kind);
        let window_mask_bias = self
            .body
            .sliding_window()
            .map(|w| causal_mask_bias(attention_mask, s, Some(w), self.kind));
        self.body.forward(
            &BodyInput {
                ids,
                positions,
                mask_bias: &mask_bias,
                window_mask_bias: window_mask_bias.as_ref(),
                train,
            },
            cache,
        )
    }
}

/// Errors unless input `name` has shape `expected`, which the message shows as `described`.
fn expect_shape(name: &'static str, t: &Tensor, expected: &[i64], described: &str) -> Result<()> {
    if t.size() != expected {
        return Err(Error::BadInput {
            name,
            why: format!("expected {described}, found {:?}", t.size()),
        });
    }
    Ok(())
}

/// The index of the last position whose mask is 1, per row ([b] i64; 0 for an empty row).
fn last_real_token(mask: &Tensor) -> Result<Tensor> {
    let s = mask.size()[1];
    let positions = Tensor::f_arange(s, (Kind::Int64, mask.device()))?;
    Ok((mask.f_ne(0)?.f_to_kind(Kind::Int64)? * positions).f_argmax(-1, false)?)
}

impl Model for DecoderModel {
    fn architecture(&self) -> Architecture {
        self.spec.architecture
    }

    fn task(&self) -> Task {
        self.task
    }

    fn device(&self) -> Device {
        self.device
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    /// The base prefix (`"transformer."`, `"model."`) with a head, `""` for the bare body.
    fn hf_prefix(&self) -> &str {
        match self.task {
            Task::Encoder => "",
            _ => self.spec.prefix,
        }
    }

    fn peft_fan_in_fan_out(&self) -> bool {
        self.spec.fan_in_fan_out
    }

    fn default_lora_targets(&self) -> &'static [&'static str] {
        self.spec.default_targets
    }

    fn set_attention(&mut self, imp: AttentionImpl) {
        self.body.set_attention(imp);
    }

    /// Causal attention over the whole sequence at positions `0..s` (as Hugging Face's
    /// forward without `position_ids`); `token_type_ids` must be `None`.
    fn forward_t(&self, input: &ModelInput, train: bool) -> Result<ModelOutput> {
        let (b, s) = input.validate()?;
        if input.token_type_ids.is_some() {
            return Err(Error::BadInput {
                name: "token_type_ids",
                why: format!("{} has no segment embeddings", self.spec.architecture),
            });
        }
        let positions = Tensor::f_arange(s, (Kind::Int64, input.input_ids.device()))?
            .f_unsqueeze(0)?
            .f_expand([b, s], false)?;
        let hidden = self.run_body(
            input.input_ids,
            input.attention_mask,
            &positions,
            None,
            train,
        )?;
        let logits = match &self.head {
            Head::None => None,
            Head::Lm { .. } => Some(self.lm_logits(&hidden)?),
            Head::Sequence { score } => {
                let last = last_real_token(input.attention_mask)?;
                let rows = Tensor::f_arange(b, (Kind::Int64, hidden.device()))?;
                let pooled = hidden.f_index(&[Some(rows), Some(last)])?;
                Some(score.forward(&pooled))
            }
            Head::Token { classifier, p } => Some(classifier.forward(&dropout(&hidden, *p, train))),
        };
        Ok(ModelOutput {
            hidden_states: hidden,
            pooled: None,
            logits,
        })
    }

    fn linear_layers(&self) -> Vec<(String, &LoraLinear)> {
        self.body.linear_layers()
    }

    fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        self.body.linear_layers_mut()
    }

    fn head_params(&self) -> Vec<NamedParam> {
        match &self.head {
            Head::None | Head::Lm { .. } => Vec::new(),
            Head::Sequence { score } => score.named_params(),
            Head::Token { classifier, .. } => classifier.named_params(),
        }
    }

    fn as_causal_lm(&self) -> Option<&dyn CausalLm> {
        matches!(self.head, Head::Lm { .. }).then_some(self as &dyn CausalLm)
    }
}

impl CausalLm for DecoderModel {
    fn vocab_size(&self) -> i64 {
        self.body.vocab_size()
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.body.num_layers())
    }

    fn forward_cached(
        &self,
        ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let size = ids.size();
        let expect_mask = [size[0], cache.len() + size.get(1).copied().unwrap_or(0)];
        if size.len() != 2 || ids.kind() != Kind::Int64 {
            return Err(Error::BadInput {
                name: "input_ids",
                why: format!(
                    "expected Int64 [batch, seq], found {:?} {size:?}",
                    ids.kind()
                ),
            });
        }
        expect_shape(
            "attention_mask",
            attention_mask,
            &expect_mask,
            &format!("[batch, cached + new] = {expect_mask:?}"),
        )?;
        expect_shape(
            "position_ids",
            positions,
            &size,
            &format!("{size:?} (as input_ids)"),
        )?;
        let _guard = tch::no_grad_guard();
        let hidden = self.run_body(ids, attention_mask, positions, Some(cache), false)?;
        self.lm_logits(&hidden)
    }
}
