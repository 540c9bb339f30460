//! BERT and RoBERTa with their task heads (Hugging Face layouts).
//!
//! | task | BERT | RoBERTa |
//! |---|---|---|
//! | sequence classification, regression | pooler -> dropout -> `classifier` | `[CLS]` -> dropout -> `classifier.dense` -> tanh -> dropout -> `classifier.out_proj` |
//! | token classification | dropout -> `classifier` | dropout -> `classifier` |
//!
//! A head found in the checkpoint (a fine-tuned model) is loaded; otherwise it is initialised
//! from the seed like `transformers` does (N(0, initializer_range^2), zero bias). Head weights
//! are trainable; the body is frozen.

use autolora_core::{LoraLinear, NamedParam};
use tch::{Device, Kind};

use crate::bert::{BASE_MODULES, BertConfig, BertModel, PoolerUse, PositionIds};
use crate::config::{Architecture, RawConfig};
use crate::layers::{AttentionImpl, HeadLinear, HeadRng, dropout};
use crate::load::LoadOptions;
use crate::model::{Model, ModelInput, ModelOutput, Task};
use crate::weights::{LoadReport, TensorSource, WeightLoader};
use crate::{Error, Result};

#[derive(Debug)]
enum Head {
    None,
    /// BERT: pooler output -> dropout -> classifier.
    Pooled {
        classifier: HeadLinear,
        p: f64,
    },
    /// RoBERTa: `[CLS]` -> dropout -> dense -> tanh -> dropout -> out_proj.
    Roberta {
        dense: HeadLinear,
        out_proj: HeadLinear,
        p: f64,
    },
    /// Per token: dropout -> classifier.
    Token {
        classifier: HeadLinear,
        p: f64,
    },
}

/// BERT or RoBERTa with an optional task head; implements [`Model`].
#[derive(Debug)]
pub struct EncoderModel {
    architecture: Architecture,
    task: Task,
    body: BertModel,
    head: Head,
    kind: Kind,
    device: Device,
    report: LoadReport,
}

impl EncoderModel {
    /// Builds the model of `raw` (a BERT or RoBERTa config) from `store`'s tensors.
    pub fn load(
        raw: &RawConfig,
        store: &dyn TensorSource,
        task: Task,
        options: &LoadOptions,
    ) -> Result<Self> {
        let architecture = raw.architecture()?;
        let config = BertConfig::from_raw(raw)?;
        let (prefixes, positions): (&[&str], _) = match architecture {
            Architecture::Bert => (&["bert.", ""], PositionIds::Absolute),
            Architecture::Roberta => (
                &["roberta.", ""],
                PositionIds::PaddingOffset {
                    pad: config.pad_token_id.unwrap_or(1),
                },
            ),
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::UnknownArchitecture {
                    path: raw.path.clone(),
                    found: other.to_string(),
                    supported: vec!["bert", "roberta"],
                });
            }
        };
        let kind = options.kind;
        let storage = options.base_kind.unwrap_or(kind);
        let mut w = WeightLoader::new(
            store,
            prefixes,
            "embeddings.word_embeddings.weight",
            BASE_MODULES,
            options.device,
        )?;
        let mut rng = HeadRng::new(options.seed);
        let pooler = match (architecture, task) {
            (_, Task::Encoder) => PoolerUse::IfPresent,
            (Architecture::Bert, Task::SequenceClassification { .. } | Task::Regression) => {
                PoolerUse::Required
            }
            _ => PoolerUse::None,
        };
        let mut body =
            BertModel::load(&mut w, &config, positions, kind, storage, pooler, &mut rng)?;
        body.set_attention(options.attention);
        let h = config.hidden_size;
        let std = config.initializer_range;
        let p = config.head_dropout();
        let mut linear = |w: &mut WeightLoader, name: &str, i: i64, o: i64| {
            HeadLinear::load_or_init(w, name, i, o, std, &mut rng, kind)
        };
        let head = match (task, architecture) {
            (Task::Encoder, _) => Head::None,
            (Task::CausalLm, _) => {
                return Err(Error::InvalidArgument {
                    what: "task",
                    why: format!("{architecture} is an encoder; it has no causal LM head"),
                });
            }
            (Task::SequenceClassification { num_labels: n }, _)
            | (Task::TokenClassification { num_labels: n }, _)
                if n < 1 =>
            {
                return Err(Error::InvalidArgument {
                    what: "num_labels",
                    why: format!("must be at least 1, got {n}"),
                });
            }
            (Task::SequenceClassification { .. } | Task::Regression, arch) => {
                let n = match task {
                    Task::SequenceClassification { num_labels } => num_labels,
                    _ => 1,
                };
                if arch == Architecture::Roberta {
                    Head::Roberta {
                        dense: linear(&mut w, "classifier.dense", h, h)?,
                        out_proj: linear(&mut w, "classifier.out_proj", h, n)?,
                        p,
                    }
                } else {
                    Head::Pooled {
                        classifier: linear(&mut w, "classifier", h, n)?,
                        p,
                    }
                }
            }
            (Task::TokenClassification { num_labels }, _) => Head::Token {
                classifier: linear(&mut w, "classifier", h, num_labels)?,
                p,
            },
        };
        let report = w.finish()?;
        tracing::info!(
            %architecture,
            layers = config.num_hidden_layers,
            hidden = h,
            prefix = report.prefix,
            tensors = report.loaded,
            "model loaded"
        );
        Ok(EncoderModel {
            architecture,
            task,
            body,
            head,
            kind,
            device: options.device,
            report,
        })
    }

    /// The body's config.
    pub fn config(&self) -> &BertConfig {
        self.body.config()
    }

    /// What loading found (prefix, unused checkpoint keys).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }
}

impl Model for EncoderModel {
    fn architecture(&self) -> Architecture {
        self.architecture
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

    /// `"bert."`/`"roberta."` with a task head (the layout of `*ForSequenceClassification`
    /// and friends), `""` for the bare encoder (`AutoModel`).
    fn hf_prefix(&self) -> &str {
        match (self.task, self.architecture) {
            (Task::Encoder, _) => "",
            (_, Architecture::Roberta) => "roberta.",
            _ => "bert.",
        }
    }

    fn default_lora_targets(&self) -> &'static [&'static str] {
        &["query", "value"]
    }

    fn set_attention(&mut self, imp: AttentionImpl) {
        self.body.set_attention(imp);
    }

    fn forward_t(&self, input: &ModelInput, train: bool) -> Result<ModelOutput> {
        let (hidden, pooled) = self.body.forward_t(input, train)?;
        let logits = match &self.head {
            Head::None => None,
            Head::Pooled { classifier, p } => {
                let pooled = pooled.as_ref().ok_or_else(|| Error::InvalidArgument {
                    what: "task",
                    why: "sequence classification needs a pooler".into(),
                })?;
                Some(classifier.forward(&dropout(pooled, *p, train)))
            }
            Head::Roberta { dense, out_proj, p } => {
                let cls = dropout(&hidden.select(1, 0), *p, train);
                let x = dropout(&dense.forward(&cls).tanh(), *p, train);
                Some(out_proj.forward(&x))
            }
            Head::Token { classifier, p } => Some(classifier.forward(&dropout(&hidden, *p, train))),
        };
        Ok(ModelOutput {
            hidden_states: hidden,
            pooled,
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
            Head::None => Vec::new(),
            Head::Pooled { classifier, .. } | Head::Token { classifier, .. } => {
                classifier.named_params()
            }
            Head::Roberta {
                dense, out_proj, ..
            } => {
                let mut v = dense.named_params();
                v.extend(out_proj.named_params());
                v
            }
        }
    }
}
