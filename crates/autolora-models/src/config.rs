//! Reading a model directory's `config.json` and telling which architecture it describes.
//!
//! Each architecture has its own config struct with the Hugging Face field names (see
//! [`crate::bert::BertConfig`]); this module reads the JSON once, checks that the fields an
//! architecture cannot do without are present (all missing ones are named in one error), that
//! the keys its computation depends on hold values this crate implements (each architecture
//! lists them as `COMPUTATION_KEYS`; anything else is [`Error::UnsupportedConfig`], never a
//! silent default), and deserializes.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Name of the architecture config inside a model directory.
pub const CONFIG_FILE: &str = "config.json";

/// The architectures this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Architecture {
    /// BERT (`model_type: "bert"`).
    Bert,
    /// RoBERTa (`model_type: "roberta"`): BERT with offset position ids.
    Roberta,
    /// GPT-2 (`model_type: "gpt2"`): a decoder with `Conv1D` layers and a tied LM head.
    Gpt2,
    /// The Llama family (`model_type: "llama"`): RMSNorm, rotary embeddings, grouped-query
    /// attention, SwiGLU.
    Llama,
    /// Qwen2 / Qwen2.5 (`model_type: "qwen2"`): Llama with q/k/v biases (no o bias) and
    /// optional sliding-window attention on the upper layers.
    Qwen2,
    /// Qwen3 (`model_type: "qwen3"`): Llama with an RMSNorm on every query and key head.
    Qwen3,
    /// Mistral (`model_type: "mistral"`): Llama with sliding-window attention.
    Mistral,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: &'static [Architecture] = &[
        Architecture::Bert,
        Architecture::Roberta,
        Architecture::Gpt2,
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Mistral,
    ];

    /// The `model_type` string of Hugging Face configs.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::Roberta => "roberta",
            Architecture::Gpt2 => "gpt2",
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Mistral => "mistral",
        }
    }

    /// Whether the architecture is a decoder (causal attention, LM head).
    pub fn is_decoder(self) -> bool {
        self == Architecture::Gpt2 || self.is_llama_family()
    }

    /// Whether the architecture is Llama or one of the families built on its layers
    /// ([`crate::llama::Family`]).
    pub fn is_llama_family(self) -> bool {
        matches!(
            self,
            Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Mistral
        )
    }

    /// The class-name stem used in `architectures` (`BertForMaskedLM` -> `Bert`).
    pub fn class_stem(self) -> &'static str {
        match self {
            Architecture::Bert => "Bert",
            Architecture::Roberta => "Roberta",
            Architecture::Gpt2 => "GPT2",
            Architecture::Llama => "Llama",
            Architecture::Qwen2 => "Qwen2",
            Architecture::Qwen3 => "Qwen3",
            Architecture::Mistral => "Mistral",
        }
    }

    fn from_model_type(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.model_type() == s)
    }

    fn from_class_name(s: &str) -> Option<Self> {
        // Longest stem first would matter if one stem prefixed another; none does today.
        Self::ALL.iter().copied().find(|a| {
            s.strip_prefix(a.class_stem())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_uppercase))
        })
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// Which values of a config key the computation depends on are implemented.
///
/// Each architecture lists as `COMPUTATION_KEYS` the keys its `transformers` modeling code
/// computes with (beyond the required sizes), each with the values implemented: one list to
/// compare with a new `transformers` release. [`RawConfig::check_implemented`] refuses the
/// other values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implemented {
    /// Every value of the key's type (read into the architecture's config struct).
    Any,
    /// These strings only.
    OneOf(&'static [&'static str]),
    /// This boolean only.
    Only(bool),
}

/// The `config.json` keys transformers reads dropout probabilities from, across the supported
/// architectures (BERT/RoBERTa, GPT-2, Llama).
const DROPOUT_KEYS: &[&str] = &[
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "summary_first_dropout",
    "attention_dropout",
];

/// A parsed `config.json`, not yet tied to an architecture.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its top-level object.
    pub fields: Map<String, Value>,
}

impl RawConfig {
    /// Sets every dropout probability transformers reads from a config of the supported
    /// architectures (BERT/RoBERTa: hidden, attention, classifier; GPT-2: residual, embedding,
    /// attention, summary; Llama: attention) to `p`.
    pub fn set_dropout(&mut self, p: f64) {
        for key in DROPOUT_KEYS {
            self.fields.insert(key.to_string(), Value::from(p));
        }
    }

    /// Reads `dir/config.json`.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        if !path.is_file() {
            return Err(Error::BadConfig {
                path,
                what: "the file does not exist; a model directory needs the architecture's \
                       config.json (model_type, sizes) next to its weights"
                    .into(),
            });
        }
        Self::read(&path)
    }

    /// Reads a config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text (`path` is used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        match value {
            Value::Object(fields) => Ok(RawConfig {
                path: path.to_path_buf(),
                fields,
            }),
            _ => Err(Error::BadConfig {
                path: path.to_path_buf(),
                what: "the top level is not a JSON object".into(),
            }),
        }
    }

    /// The architecture named by `model_type`, or failing that by `architectures[0]`.
    pub fn architecture(&self) -> Result<Architecture> {
        let supported = || Architecture::ALL.iter().map(|a| a.model_type()).collect();
        if let Some(model_type) = self.fields.get("model_type").and_then(Value::as_str) {
            return Architecture::from_model_type(model_type).ok_or_else(|| {
                Error::UnknownArchitecture {
                    path: self.path.clone(),
                    found: model_type.to_string(),
                    supported: supported(),
                }
            });
        }
        let classes: Vec<&str> = self
            .fields
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(first) = classes.first() {
            return classes
                .iter()
                .find_map(|c| Architecture::from_class_name(c))
                .ok_or_else(|| Error::UnknownArchitecture {
                    path: self.path.clone(),
                    found: first.to_string(),
                    supported: supported(),
                });
        }
        let keys: Vec<&str> = self.fields.keys().map(String::as_str).collect();
        Err(Error::BadConfig {
            path: self.path.clone(),
            what: format!(
                "no `model_type` and no `architectures` field, so the architecture is unknown \
                 (keys found: {keys:?}); this looks like a non-architecture config (for \
                 instance a sentence-transformers pooling config): write the model's own \
                 Hugging Face config.json"
            ),
        })
    }

    /// The number of labels of a fine-tuned checkpoint's head: the size of `id2label`, or
    /// `num_labels`; `None` when the config has neither.
    pub fn num_labels(&self) -> Option<i64> {
        if let Some(map) = self.fields.get("id2label").and_then(Value::as_object) {
            return Some(map.len() as i64);
        }
        self.fields.get("num_labels").and_then(Value::as_i64)
    }

    /// Deserializes into an architecture's config after checking that every field in
    /// `required` is present (all missing ones are reported together).
    pub fn parse_as<T: DeserializeOwned>(&self, required: &[&str]) -> Result<T> {
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|f| !self.fields.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            return Err(Error::BadConfig {
                path: self.path.clone(),
                what: format!("missing required field(s) {missing:?}"),
            });
        }
        serde_json::from_value(Value::Object(self.fields.clone())).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })
    }

    /// Errors on the first of `keys` whose value is not implemented. Absent and `null` keys
    /// are fine: they take `transformers`' defaults, which are implemented.
    pub fn check_implemented(&self, keys: &[(&str, Implemented)]) -> Result<()> {
        for &(key, implemented) in keys {
            let Some(value) = self.fields.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let supported = match implemented {
                Implemented::Any => continue,
                Implemented::OneOf(names) if value.as_str().is_some_and(|s| names.contains(&s)) => {
                    continue;
                }
                Implemented::OneOf(names) => names.join(", "),
                Implemented::Only(b) if value.as_bool() == Some(b) => continue,
                Implemented::Only(b) => b.to_string(),
            };
            return Err(self.unsupported(key, value, supported));
        }
        Ok(())
    }

    /// [`Error::UnsupportedConfig`] for `key` = `value` in this file.
    pub(crate) fn unsupported(
        &self,
        key: impl Into<String>,
        value: &Value,
        supported: impl Into<String>,
    ) -> Error {
        Error::UnsupportedConfig {
            path: self.path.clone(),
            key: key.into(),
            value: value.to_string(),
            supported: supported.into(),
        }
    }

    /// [`Error::BadConfig`] naming this file.
    pub(crate) fn bad(&self, what: impl Into<String>) -> Error {
        Error::BadConfig {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// [`check_implemented`](Self::check_implemented) with `implemented`,
    /// [`parse_as`](Self::parse_as), then `check`: what it returns as wrong becomes a
    /// [`Error::BadConfig`] naming this file.
    pub(crate) fn parse_checked<T: DeserializeOwned>(
        &self,
        required: &[&str],
        implemented: &[(&str, Implemented)],
        check: impl FnOnce(&T) -> std::result::Result<(), String>,
    ) -> Result<T> {
        self.check_implemented(implemented)?;
        let config = self.parse_as(required)?;
        check(&config).map_err(|what| self.bad(what))?;
        Ok(config)
    }
}

/// Errors with the first of the config `fields` (name, value) that is below 1.
pub(crate) fn require_positive(fields: &[(&str, i64)]) -> std::result::Result<(), String> {
    match fields.iter().find(|(_, v)| *v < 1) {
        Some((name, v)) => Err(format!("{name} must be positive, found {v}")),
        None => Ok(()),
    }
}

/// Errors unless config field `value` is a multiple of the positive field `divisor` (each
/// given with its name).
pub(crate) fn require_multiple(
    (name, value): (&str, i64),
    (divisor_name, divisor): (&str, i64),
) -> std::result::Result<(), String> {
    if divisor < 1 || value % divisor != 0 {
        return Err(format!(
            "{name} {value} is not a multiple of {divisor_name} {divisor}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawConfig {
        RawConfig::parse(Path::new("config.json"), text).unwrap()
    }

    #[test]
    fn detects_by_model_type_then_class_name() {
        assert_eq!(
            raw(r#"{"model_type": "roberta"}"#).architecture().unwrap(),
            Architecture::Roberta
        );
        assert_eq!(
            raw(r#"{"architectures": ["BertForTokenClassification"]}"#)
                .architecture()
                .unwrap(),
            Architecture::Bert
        );
        for (class, arch) in [
            ("GPT2LMHeadModel", Architecture::Gpt2),
            ("LlamaForCausalLM", Architecture::Llama),
        ] {
            let text = format!(r#"{{"architectures": ["{class}"]}}"#);
            assert_eq!(raw(&text).architecture().unwrap(), arch);
        }
    }

    #[test]
    fn label_count_from_id2label() {
        let c = raw(r#"{"model_type": "bert", "id2label": {"0": "NEG", "1": "POS"}}"#);
        assert_eq!(c.num_labels(), Some(2));
        assert_eq!(raw(r#"{"model_type": "bert"}"#).num_labels(), None);
    }

    #[test]
    fn pooling_config_is_rejected_with_its_keys() {
        let err = raw(r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}"#)
            .architecture()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no `model_type`"), "{msg}");
        assert!(msg.contains("pooling_mode_mean_tokens"), "{msg}");
    }

    #[test]
    fn unknown_model_type_lists_supported() {
        let msg = raw(r#"{"model_type": "t5"}"#)
            .architecture()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"t5\"") && msg.contains("bert"), "{msg}");
    }

    #[test]
    fn all_missing_fields_are_named() {
        #[derive(Debug, serde::Deserialize)]
        struct Sizes {
            _a: Option<i64>,
        }
        let err = raw(r#"{"model_type": "bert", "hidden_size": 4}"#)
            .parse_as::<Sizes>(&["hidden_size", "vocab_size", "num_hidden_layers"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vocab_size") && err.contains("num_hidden_layers"),
            "{err}"
        );
    }
}
