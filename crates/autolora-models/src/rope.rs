//! Rotary position embeddings as Hugging Face's Llama computes them: inverse frequencies
//! `1 / theta^(2i/d)` (optionally rescaled: `linear`, `llama3`), angles `position * freq`
//! in f32, `cos`/`sin` of the angles concatenated twice, and the `rotate_half` convention
//! (the two halves of a head are the rotated pairs, not interleaved neighbours).
//!
//! [`RopeConfig::from_raw`] reads the settings from either config dialect.

use serde_json::{Map, Value};
use tch::{Kind, Tensor};

use crate::config::RawConfig;
use crate::{Error, Result};

/// Rotary settings, whichever `transformers` release wrote the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// Base of the frequencies (`rope_theta`).
    pub theta: f64,
    /// How the frequencies are rescaled (`rope_type` and its fields).
    pub scaling: RopeScaling,
}

/// The frequency rescaling of a `rope_type`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// `default`: none.
    None,
    /// `linear`: every frequency divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// `llama3`: long wavelengths divided by `factor`, short ones kept, the band in between
    /// interpolated (Llama 3.1).
    Llama3 {
        /// The divisor of long wavelengths.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are long.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are short.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: f64,
    },
}

impl Default for RopeConfig {
    /// `transformers`' default: base 10000, no rescaling.
    fn default() -> Self {
        RopeConfig {
            theta: 10000.0,
            scaling: RopeScaling::None,
        }
    }
}

/// The implemented `rope_type`s with the fields each may have besides `rope_type` (or the
/// older `type`), `rope_theta` and `partial_rotary_factor`: `transformers`' own lists
/// (`_validate_*_rope_parameters`). `transformers` only warns about other fields; here they
/// are refused, since a field this code does not know may be one a newer release computes
/// with.
const ROPE_TYPES: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("linear", &["factor"]),
    (
        "llama3",
        &[
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        ],
    ),
];

/// Fields every `rope_type` may have.
const COMMON_FIELDS: &[&str] = &["rope_type", "type", "rope_theta", "partial_rotary_factor"];

impl RopeConfig {
    /// Reads the rotary settings of `raw`. `transformers` 5 writes `rope_parameters` (with
    /// `rope_theta`, `rope_type` and the type's fields); 4.x wrote a top-level `rope_theta`
    /// and `rope_scaling` (the type and its fields). As in `transformers` 5, a non-null
    /// `rope_scaling` stands for `rope_parameters`, a `rope_theta` inside it for the top-level
    /// one, and `llama3`'s `original_max_position_embeddings` defaults to
    /// `max_position_embeddings`. Refused: a `rope_type` or field that is not implemented, a
    /// `partial_rotary_factor` other than 1, and two different thetas (4.x reads the top-level
    /// one, 5 the inner one).
    pub fn from_raw(raw: &RawConfig, max_position_embeddings: i64) -> Result<Self> {
        let (group, params) = match present(&raw.fields, "rope_scaling") {
            Some(v) => ("rope_scaling", Some(v)),
            None => ("rope_parameters", present(&raw.fields, "rope_parameters")),
        };
        let empty = Map::new();
        let params = match params {
            None => &empty,
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(raw.bad(format!("{group} should be an object, found {other}")));
            }
        };
        let inner = |key: &str| number(raw, params, key, &format!("{group}.{key}"));

        let (type_key, type_value) = ["rope_type", "type"]
            .into_iter()
            .find_map(|k| present(params, k).map(|v| (k, v.clone())))
            .unwrap_or(("rope_type", Value::from("default")));
        let Some(&(rope_type, fields)) = ROPE_TYPES
            .iter()
            .find(|(t, _)| type_value.as_str() == Some(*t))
        else {
            let names: Vec<&str> = ROPE_TYPES.iter().map(|(t, _)| *t).collect();
            return Err(raw.unsupported(
                format!("{group}.{type_key}"),
                &type_value,
                names.join(", "),
            ));
        };
        let allowed = [COMMON_FIELDS, fields].concat();
        if let Some((key, value)) = params
            .iter()
            .find(|(k, v)| !v.is_null() && !allowed.contains(&k.as_str()))
        {
            return Err(raw.unsupported(
                format!("{group}.{key}"),
                value,
                format!("for rope_type {rope_type:?}: {}", allowed.join(", ")),
            ));
        }
        for (key, map) in [
            (format!("{group}.partial_rotary_factor"), params),
            ("partial_rotary_factor".to_string(), &raw.fields),
        ] {
            if let Some(v) = present(map, "partial_rotary_factor")
                && v.as_f64() != Some(1.0)
            {
                return Err(raw.unsupported(key, v, "1 (rotation of the whole head)"));
            }
        }

        let theta = match (
            inner("rope_theta")?,
            number(raw, &raw.fields, "rope_theta", "rope_theta")?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(raw.bad(format!(
                    "rope_theta {b} and {group}.rope_theta {a} differ (transformers 4 reads the \
                     first, 5 the second)"
                )));
            }
            (a, b) => a.or(b).unwrap_or(RopeConfig::default().theta),
        };
        let need = |key: &str| {
            inner(key)?.ok_or_else(|| {
                raw.bad(format!(
                    "rope_type {rope_type:?} needs the field {group}.{key}"
                ))
            })
        };
        let scaling = match rope_type {
            "linear" => RopeScaling::Linear {
                factor: need("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: inner("original_max_position_embeddings")?
                    .unwrap_or(max_position_embeddings as f64),
            },
            _ => RopeScaling::None, // "default"
        };
        Ok(RopeConfig { theta, scaling })
    }
}

/// `map[key]` unless absent or `null` (which `transformers` reads as absent).
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// `map[key]` as a number, if present; `name` is how messages call it.
fn number(raw: &RawConfig, map: &Map<String, Value>, key: &str, name: &str) -> Result<Option<f64>> {
    present(map, key)
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| raw.bad(format!("{name} should be a number, found {v}")))
        })
        .transpose()
}

/// Precomputed inverse frequencies of one head width.
#[derive(Debug)]
pub struct Rotary {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
}

impl Rotary {
    /// Frequencies for heads of width `head_dim` with the base and rescaling of `rope`.
    pub fn new(head_dim: i64, rope: &RopeConfig) -> Result<Self> {
        if head_dim < 2 || head_dim % 2 != 0 {
            return Err(Error::InvalidArgument {
                what: "head_dim",
                why: format!("rotary embeddings need an even head width, got {head_dim}"),
            });
        }
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, tch::Device::Cpu))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(rope.theta, &exponents).reciprocal();
        Ok(Rotary {
            inv_freq: rescale(inv_freq, rope.scaling),
        })
    }

    /// `(cos, sin)` [b, s, head_dim] of `kind` for `positions` [b, s].
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let inv_freq = self.inv_freq.to_device(positions.device());
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let angles = Tensor::cat(&[&freqs, &freqs], -1);
        (angles.cos().to_kind(kind), angles.sin().to_kind(kind))
    }
}

/// Rotates `x` [b, heads, s, d] by the angles behind `cos`, `sin` [b, s, d].
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let d = x.size()[3];
    let half = d / 2;
    let rotated = Tensor::cat(&[-x.narrow(-1, half, d - half), x.narrow(-1, 0, half)], -1);
    x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1)
}

fn rescale(inv_freq: Tensor, scaling: RopeScaling) -> Tensor {
    match scaling {
        RopeScaling::None => inv_freq,
        RopeScaling::Linear { factor } => inv_freq / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old,
        } => {
            let (low_wavelen, high_wavelen) = (old / low, old / high);
            let wavelen = inv_freq.reciprocal() * (2.0 * std::f64::consts::PI);
            // Long wavelengths are slowed down by `factor`, short ones kept, and the band in
            // between interpolated (Hugging Face `_compute_llama3_parameters`).
            let scaled = (&inv_freq / factor).where_self(&wavelen.gt(low_wavelen), &inv_freq);
            let smooth = (wavelen.reciprocal() * old - low) / (high - low);
            let smoothed = (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
            let medium = wavelen
                .ge(high_wavelen)
                .logical_and(&wavelen.le(low_wavelen));
            smoothed.where_self(&medium, &scaled)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn read(text: &str) -> Result<RopeConfig> {
        RopeConfig::from_raw(&RawConfig::parse(Path::new("config.json"), text)?, 64)
    }

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_zero() {
        let rope = Rotary::new(8, &RopeConfig::default()).unwrap();
        let x = Tensor::randn([1, 2, 3, 8], (Kind::Float, tch::Device::Cpu));
        let zero = Tensor::zeros([1, 3], (Kind::Int64, tch::Device::Cpu));
        let (c, s) = rope.cos_sin(&zero, Kind::Float);
        assert!(apply(&x, &c, &s).allclose(&x, 1e-6, 1e-6, false));
        let pos = Tensor::from_slice(&[3i64, 7, 11]).reshape([1, 3]);
        let (c, s) = rope.cos_sin(&pos, Kind::Float);
        let y = apply(&x, &c, &s);
        let norms = |t: &Tensor| t.square().sum_dim_intlist(-1, false, Kind::Float);
        assert!(norms(&y).allclose(&norms(&x), 1e-5, 1e-5, false));
    }

    #[test]
    fn both_dialects_read_the_same_settings() {
        let llama3 = RopeConfig {
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 16.0,
            },
        };
        let fields = r#""factor": 8.0, "low_freq_factor": 1, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16"#;
        let v4 = format!(
            r#"{{"rope_theta": 500000.0, "rope_scaling": {{"rope_type": "llama3", {fields}}}}}"#
        );
        let v5 = format!(
            r#"{{"rope_parameters": {{"rope_theta": 500000.0, "rope_type": "llama3", {fields}}}}}"#
        );
        assert_eq!(read(&v4).unwrap(), llama3);
        assert_eq!(read(&v5).unwrap(), llama3);
        let linear = RopeConfig {
            theta: 10000.0,
            scaling: RopeScaling::Linear { factor: 2.0 },
        };
        assert_eq!(
            read(r#"{"rope_scaling": {"type": "linear", "factor": 2}}"#).unwrap(),
            linear
        );
        let v5 =
            r#"{"rope_parameters": {"rope_type": "linear", "factor": 2, "rope_theta": 10000}}"#;
        assert_eq!(read(v5).unwrap(), linear);
        for default in [
            "{}",
            r#"{"rope_theta": 10000.0, "rope_scaling": null}"#,
            r#"{"rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}"#,
        ] {
            assert_eq!(read(default).unwrap(), RopeConfig::default(), "{default}");
        }
        // transformers 5 fills in llama3's pre-training length from the config.
        let v5 = r#"{"rope_parameters": {"rope_type": "llama3", "factor": 8,
            "low_freq_factor": 1, "high_freq_factor": 4}}"#;
        assert!(matches!(
            read(v5).unwrap().scaling,
            RopeScaling::Llama3 {
                original_max_position_embeddings: 64.0,
                ..
            }
        ));
    }

    /// The key and value an [`Error::UnsupportedConfig`] names.
    fn unsupported(text: &str) -> (String, String) {
        match read(text) {
            Err(Error::UnsupportedConfig { key, value, .. }) => (key, value),
            other => panic!("{text}: expected UnsupportedConfig, got {other:?}"),
        }
    }

    #[test]
    fn unimplemented_settings_are_errors_naming_the_key() {
        for (text, key, value) in [
            (
                r#"{"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}"#,
                "rope_parameters.rope_type",
                r#""yarn""#,
            ),
            (
                r#"{"rope_scaling": {"type": "dynamic", "factor": 2.0}}"#,
                "rope_scaling.type",
                r#""dynamic""#,
            ),
            (
                r#"{"rope_parameters": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                    "high_freq_factor": 4, "beta_fast": 32}}"#,
                "rope_parameters.beta_fast",
                "32",
            ),
            (
                r#"{"rope_parameters": {"rope_type": "default", "factor": 2.0}}"#,
                "rope_parameters.factor",
                "2.0",
            ),
            (
                r#"{"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}}"#,
                "rope_parameters.partial_rotary_factor",
                "0.5",
            ),
            (
                r#"{"partial_rotary_factor": 0.25}"#,
                "partial_rotary_factor",
                "0.25",
            ),
        ] {
            assert_eq!(unsupported(text), (key.to_string(), value.to_string()));
        }
        let msg = read(r#"{"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("default, linear, llama3"), "{msg}");
    }

    #[test]
    fn missing_fields_and_two_thetas_are_errors() {
        let msg = read(r#"{"rope_parameters": {"rope_type": "linear"}}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("rope_parameters.factor"), "{msg}");
        let msg = read(r#"{"rope_theta": 10000, "rope_parameters": {"rope_theta": 500000}}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("rope_parameters.rope_theta"), "{msg}");
        let msg = read(r#"{"rope_parameters": {"rope_theta": "big"}}"#)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("should be a number"), "{msg}");
    }
}
