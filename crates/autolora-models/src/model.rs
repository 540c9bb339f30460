//! The interface every architecture implements, used by the command line and the search
//! engine alike.
//!
//! A [`Model`] is a frozen base network plus an optional trainable task head. Its linear
//! layers are [`LoraLinear`]s named by their Hugging Face module paths (without the
//! checkpoint prefix: `encoder.layer.0.attention.self.query`); LoRA adapters are attached to
//! the layers whose paths match a set of patterns ([`Model::inject_lora`]).

use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear, NamedParam};
use tch::{Device, Kind, Tensor};

use crate::config::Architecture;
use crate::decoder::CausalLm;
use crate::layers::AttentionImpl;
use crate::{Error, Result};

/// What a model computes on top of its base network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Task {
    /// The bare base network: no head, no logits.
    Encoder,
    /// One label per sequence; cross-entropy loss.
    SequenceClassification {
        /// Number of classes.
        num_labels: i64,
    },
    /// One real value per sequence (STS-B style); a one-output sequence head, MSE loss.
    Regression,
    /// One label per token; cross-entropy loss ignoring label -100.
    TokenClassification {
        /// Number of classes.
        num_labels: i64,
    },
    /// Next-token prediction; cross-entropy on shifted labels ignoring -100.
    CausalLm,
}

/// The label value that losses skip (padding, non-first sub-words), as in Hugging Face.
pub const IGNORE_INDEX: i64 = -100;

/// Inputs of [`Model::forward_t`]. Shapes: [batch, seq].
#[derive(Debug)]
pub struct ModelInput<'a> {
    /// Token ids, i64.
    pub input_ids: &'a Tensor,
    /// 1 for real tokens, 0 for padding (any integer or float kind).
    pub attention_mask: &'a Tensor,
    /// Segment ids (BERT's sentence A/B), i64; zeros when `None`.
    pub token_type_ids: Option<&'a Tensor>,
}

impl ModelInput<'_> {
    /// Checks ranks, kinds and that all inputs share one shape; returns (batch, seq).
    pub fn validate(&self) -> Result<(i64, i64)> {
        let size = self.input_ids.size();
        let [b, s] = size[..] else {
            return Err(Error::BadInput {
                name: "input_ids",
                why: format!("expected shape [batch, seq], found {size:?}"),
            });
        };
        if self.input_ids.kind() != Kind::Int64 {
            return Err(Error::BadInput {
                name: "input_ids",
                why: format!("expected kind Int64, found {:?}", self.input_ids.kind()),
            });
        }
        if self.attention_mask.size() != size {
            return Err(Error::BadInput {
                name: "attention_mask",
                why: format!(
                    "expected shape {size:?} (as input_ids), found {:?}",
                    self.attention_mask.size()
                ),
            });
        }
        if let Some(tt) = self.token_type_ids
            && (tt.size() != size || tt.kind() != Kind::Int64)
        {
            return Err(Error::BadInput {
                name: "token_type_ids",
                why: format!(
                    "expected Int64 of shape {size:?}, found {:?} of shape {:?}",
                    tt.kind(),
                    tt.size()
                ),
            });
        }
        Ok((b, s))
    }
}

/// Outputs of [`Model::forward_t`].
#[derive(Debug)]
pub struct ModelOutput {
    /// Last layer's hidden states [batch, seq, hidden].
    pub hidden_states: Tensor,
    /// BERT's pooler output tanh(W h_`[CLS]` + b) [batch, hidden], where the model has a pooler.
    pub pooled: Option<Tensor>,
    /// Task logits: [batch, num_labels] (sequence classification), [batch, 1] (regression),
    /// [batch, seq, num_labels] (token classification), [batch, seq, vocab] (causal LM);
    /// `None` for [`Task::Encoder`].
    pub logits: Option<Tensor>,
}

/// A base network with an optional task head; see the module docs.
pub trait Model {
    /// The architecture.
    fn architecture(&self) -> Architecture;

    /// The task the head computes.
    fn task(&self) -> Task;

    /// Device of the weights.
    fn device(&self) -> Device;

    /// Floating kind of the computation (f32, or f64 for gradient checks); LoRA and head
    /// weights have this kind.
    fn kind(&self) -> Kind;

    /// The key prefix of the base model in Hugging Face checkpoints and PEFT adapters
    /// (`"bert."`, `"roberta."`, ...), for export.
    fn hf_prefix(&self) -> &str;

    /// Whether the base linear layers store [in, out] (GPT-2's `Conv1D`): PEFT's
    /// `fan_in_fan_out` flag for exported adapters. The LoRA factors themselves are always
    /// `A` [r, in] and `B` [out, r].
    fn peft_fan_in_fan_out(&self) -> bool {
        false
    }

    /// Module-name patterns LoRA targets by default (the paper's choice for this
    /// architecture).
    fn default_lora_targets(&self) -> &'static [&'static str];

    /// Selects eager (double-backward capable) or fused attention.
    fn set_attention(&mut self, imp: AttentionImpl);

    /// Runs the model. `train` switches dropout on.
    fn forward_t(&self, input: &ModelInput, train: bool) -> Result<ModelOutput>;

    /// Every linear layer LoRA can target, by module path, in model order.
    fn linear_layers(&self) -> Vec<(String, &LoraLinear)>;

    /// Mutable access to the same layers.
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut LoraLinear)>;

    /// The task head's trainable parameters (`classifier.weight`, ...).
    fn head_params(&self) -> Vec<NamedParam>;

    /// This model as a step-by-step language model for generation, if it has an LM head.
    fn as_causal_lm(&self) -> Option<&dyn CausalLm> {
        None
    }

    /// The task loss for `logits` as returned by [`forward_t`](Self::forward_t):
    /// cross-entropy ignoring [`IGNORE_INDEX`] (labels i64), MSE (regression, labels
    /// float `[batch]`), or, for a classifier given float labels of the logits' shape (a
    /// distribution per example or token: distillation), `KL(labels || softmax(logits))`
    /// averaged over the rows whose labels are not all zero.
    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        task_loss(self.task(), logits, labels)
    }

    /// Attaches a fresh adapter (`A` kaiming-uniform, `B` zero) to every linear layer whose
    /// path matches one of `patterns` (see [`module_matches`]; [`ALL_LINEAR`] matches every
    /// linear layer of the network); an empty slice means
    /// [`default_lora_targets`](Self::default_lora_targets). With `gate`, each adapter gets
    /// selection variables. Returns the adapted module paths. A pattern matching no layer is
    /// an error.
    fn inject_lora(
        &mut self,
        patterns: &[String],
        config: &LoraConfig,
        gate: Option<Gate>,
    ) -> Result<Vec<String>> {
        let patterns: Vec<String> = if patterns.is_empty() {
            self.default_lora_targets()
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            patterns.to_vec()
        };
        let (device, kind) = (self.device(), self.kind());
        let names: Vec<String> = self.linear_layers().into_iter().map(|(n, _)| n).collect();
        for p in patterns.iter().filter(|p| *p != ALL_LINEAR) {
            if !names.iter().any(|n| module_matches(n, p)) {
                return Err(Error::InvalidArgument {
                    what: "LoRA target pattern",
                    why: format!(
                        "{p:?} matches no linear layer of this {} model (layers look like {:?})",
                        self.architecture(),
                        names.first().map(String::as_str).unwrap_or("")
                    ),
                });
            }
        }
        let mut adapted = Vec::new();
        for (name, layer) in self.linear_layers_mut() {
            if !patterns
                .iter()
                .any(|p| p == ALL_LINEAR || module_matches(&name, p))
            {
                continue;
            }
            let adapter = Adapter::with_options(
                layer.in_features(),
                layer.out_features(),
                config,
                gate,
                (kind, device),
            )?;
            layer.attach(adapter)?;
            adapted.push(name);
        }
        tracing::info!(modules = adapted.len(), ?patterns, "LoRA adapters attached");
        Ok(adapted)
    }

    /// The linear layer at module path `name`.
    fn lora_layer(&self, name: &str) -> Option<&LoraLinear> {
        self.linear_layers()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
    }

    /// Mutable access to the linear layer at module path `name` (to replace its adapter by a
    /// pruned one, merge it, ...).
    fn lora_layer_mut(&mut self, name: &str) -> Option<&mut LoraLinear> {
        self.linear_layers_mut()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
    }

    /// The layers that carry an adapter, by module path.
    fn adapted_layers(&self) -> Vec<(String, &LoraLinear)> {
        self.linear_layers()
            .into_iter()
            .filter(|(_, l)| l.adapter().is_some())
            .collect()
    }

    /// LoRA factors of every adapter: `{path}.lora_A` [r, in] and `{path}.lora_B` [out, r].
    fn lora_params(&self) -> Vec<NamedParam> {
        let mut out = Vec::new();
        for (name, layer) in self.linear_layers() {
            if let Some(adapter) = layer.adapter() {
                out.push(NamedParam {
                    name: format!("{name}.lora_A"),
                    param: adapter.a.clone(),
                });
                out.push(NamedParam {
                    name: format!("{name}.lora_B"),
                    param: adapter.b.clone(),
                });
            }
        }
        out
    }

    /// The inner-loop variables: LoRA factors then the task head (unless frozen).
    fn trainable_params(&self) -> Vec<NamedParam> {
        let mut out = self.lora_params();
        out.extend(
            self.head_params()
                .into_iter()
                .filter(|p| p.param.tensor().requires_grad()),
        );
        out
    }

    /// Freezes the task head: its tensors stop requiring gradients and leave
    /// [`trainable_params`](Self::trainable_params) (a fixed head that only the adapters can
    /// work through, as in distillation onto a given head).
    fn freeze_head(&self) {
        for p in self.head_params() {
            let frozen = p.param.tensor().detach();
            let _trainable = p.param.replace(frozen);
        }
    }

    /// The outer-loop variables: each gated adapter's selection logits `[k]`, named by the
    /// module path.
    fn selection_params(&self) -> Vec<NamedParam> {
        self.linear_layers()
            .into_iter()
            .filter_map(|(name, layer)| {
                let gate = layer.adapter()?.gate.as_ref()?;
                Some(NamedParam {
                    name,
                    param: gate.logits.clone(),
                })
            })
            .collect()
    }
}

/// The target pattern that selects every linear layer of the network, as PEFT's
/// `target_modules = "all-linear"` does: the attention and feed-forward projections of every
/// block (and BERT's pooler where the task uses it), never the task head or the language-model
/// head, which are trained in full. (PEFT excludes a head only for causal LMs and sequence
/// classifiers; for token classification it would also adapt the `classifier`, which here is
/// trained in full instead.)
pub const ALL_LINEAR: &str = "all-linear";

/// Whether module path `name` matches `pattern`, with Hugging Face PEFT's list semantics:
/// the pattern equals the path or is a dotted suffix of it (`query` matches
/// `encoder.layer.0.attention.self.query`, `self.query` too). A `*` component matches any
/// one component (`layer.*.attention.self.value`).
pub fn module_matches(name: &str, pattern: &str) -> bool {
    let name: Vec<&str> = name.split('.').collect();
    let pattern: Vec<&str> = pattern.split('.').collect();
    if pattern.len() > name.len() {
        return false;
    }
    name[name.len() - pattern.len()..]
        .iter()
        .zip(&pattern)
        .all(|(n, p)| *p == "*" || n == p)
}

/// The loss of `task` (see [`Model::loss`]).
pub fn task_loss(task: Task, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let ce = |logits: &Tensor, labels: &Tensor| -> Result<Tensor> {
        let n = *logits.size().last().unwrap_or(&0);
        Ok(logits.f_reshape([-1, n])?.f_cross_entropy_loss::<Tensor>(
            &labels.f_reshape([-1])?,
            None,
            tch::Reduction::Mean,
            IGNORE_INDEX,
            0.0,
        )?)
    };
    match task {
        Task::Encoder => Err(Error::InvalidArgument {
            what: "task",
            why: "a bare encoder has no loss; choose a task head".into(),
        }),
        Task::SequenceClassification { .. } | Task::TokenClassification { .. }
            if labels.is_floating_point() && labels.size() == logits.size() =>
        {
            soft_target_loss(logits, labels)
        }
        Task::SequenceClassification { .. } | Task::TokenClassification { .. } => {
            if labels.kind() != Kind::Int64 {
                return Err(Error::BadInput {
                    name: "labels",
                    why: format!("class labels must be Int64, found {:?}", labels.kind()),
                });
            }
            ce(logits, labels)
        }
        Task::Regression => {
            let pred = logits.f_reshape([-1])?;
            let target = labels.f_to_kind(pred.kind())?.f_reshape([-1])?;
            Ok(pred.f_mse_loss(&target, tch::Reduction::Mean)?)
        }
        Task::CausalLm => {
            let s = logits.size();
            if s.len() != 3 || labels.size() != s[..2] {
                return Err(Error::BadInput {
                    name: "labels",
                    why: format!(
                        "expected [batch, seq] for logits {s:?}, found {:?}",
                        labels.size()
                    ),
                });
            }
            let shifted = logits.f_narrow(1, 0, s[1] - 1)?;
            let targets = labels.f_narrow(1, 1, s[1] - 1)?;
            ce(&shifted, &targets)
        }
    }
}

/// `KL(p || softmax(logits))` per row of the last dimension, averaged over the rows where `p`
/// is not all zero (padding); `p` holds probabilities of `logits`' shape.
fn soft_target_loss(logits: &Tensor, p: &Tensor) -> Result<Tensor> {
    let n = *logits.size().last().unwrap_or(&0);
    let p = p.f_to_kind(logits.kind())?.f_reshape([-1, n])?;
    let log_q = logits
        .f_reshape([-1, n])?
        .f_log_softmax(-1, logits.kind())?;
    // 0 log 0 = 0: the clamp only touches entries that p multiplies by zero.
    let log_p = p.f_clamp_min(1e-30)?.f_log()?;
    let kl_rows = (&p * (log_p - log_q)).f_sum_dim_intlist(-1, false, logits.kind())?;
    let rows = p
        .f_sum_dim_intlist(-1, false, logits.kind())?
        .f_gt(0.0)?
        .f_sum(logits.kind())?
        .f_clamp_min(1.0)?;
    Ok(kl_rows.f_sum(logits.kind())? / rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_peft_suffix_rules() {
        let q = "encoder.layer.0.attention.self.query";
        assert!(module_matches(q, "query"));
        assert!(module_matches(q, "self.query"));
        assert!(module_matches(q, "layer.*.attention.self.query"));
        assert!(module_matches(q, q));
        assert!(!module_matches(q, "uery"));
        assert!(!module_matches(q, "value"));
        assert!(!module_matches("pooler.dense", "encoder.pooler.dense"));
    }

    #[test]
    fn losses_ignore_padding_labels() -> Result<()> {
        let logits = Tensor::from_slice(&[2.0f64, 0.0, 0.0, 3.0]).reshape([1, 2, 2]);
        let labels = Tensor::from_slice(&[0i64, IGNORE_INDEX]).reshape([1, 2]);
        let loss = task_loss(
            Task::TokenClassification { num_labels: 2 },
            &logits,
            &labels,
        )?;
        // Only the first token counts: -log(e^2 / (e^2 + 1)).
        let expect = -(2f64.exp() / (2f64.exp() + 1.0)).ln();
        assert!((loss.double_value(&[]) - expect).abs() < 1e-12);
        let pred = Tensor::from_slice(&[1.0f64, 2.0]).reshape([2, 1]);
        let target = Tensor::from_slice(&[0.0f32, 4.0]);
        let mse = task_loss(Task::Regression, &pred, &target)?.double_value(&[]);
        assert!((mse - 2.5).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn soft_labels_give_the_kl_divergence_over_unpadded_rows() -> Result<()> {
        // Two tokens; the second is padding (all-zero target) and must not count.
        let logits = Tensor::from_slice(&[1.0f64, 0.0, 5.0, -5.0]).reshape([1, 2, 2]);
        let target = Tensor::from_slice(&[0.25f64, 0.75, 0.0, 0.0]).reshape([1, 2, 2]);
        let task = Task::TokenClassification { num_labels: 2 };
        let kl = task_loss(task, &logits, &target)?.double_value(&[]);
        let q1 = 1f64.exp() / (1f64.exp() + 1.0);
        let expect = 0.25 * (0.25 / q1).ln() + 0.75 * (0.75 / (1.0 - q1)).ln();
        assert!((kl - expect).abs() < 1e-12, "{kl} vs {expect}");
        // Zero exactly when the student's distribution is the target's, zeros in it included.
        let target = logits.softmax(-1, Kind::Double);
        assert!(task_loss(task, &logits, &target)?.double_value(&[]).abs() < 1e-12);
        let one_hot = Tensor::from_slice(&[1.0f64, 0.0]).reshape([1, 1, 2]);
        let sharp = Tensor::from_slice(&[0.0f64, -1e4]).reshape([1, 1, 2]);
        assert!(task_loss(task, &sharp, &one_hot)?.double_value(&[]).abs() < 1e-12);
        Ok(())
    }
}
