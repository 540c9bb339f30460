//! Rotary position embeddings as Hugging Face's Llama computes them: inverse frequencies
//! `1 / theta^(2i/d)` (optionally rescaled: `linear`, `llama3`), angles `position * freq`
//! in f32, `cos`/`sin` of the angles concatenated twice, and the `rotate_half` convention
//! (the two halves of a head are the rotated pairs, not interleaved neighbours).

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// The `rope_scaling` object of a Llama config.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct RopeScaling {
    /// `default`, `linear` or `llama3` (older configs call the field `type`).
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scale factor (`linear`, `llama3`).
    #[serde(default)]
    pub factor: Option<f64>,
    /// `llama3`: low-frequency factor.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// `llama3`: high-frequency factor.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// `llama3`: the context length the model was pre-trained with.
    #[serde(default)]
    pub original_max_position_embeddings: Option<f64>,
}

/// Precomputed inverse frequencies of one head width.
#[derive(Debug)]
pub struct Rotary {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
}

impl Rotary {
    /// Frequencies for heads of width `head_dim` with base `theta` and optional scaling.
    pub fn new(head_dim: i64, theta: f64, scaling: Option<&RopeScaling>) -> Result<Self> {
        if head_dim < 2 || head_dim % 2 != 0 {
            return Err(Error::InvalidArgument {
                what: "head_dim",
                why: format!("rotary embeddings need an even head width, got {head_dim}"),
            });
        }
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, tch::Device::Cpu))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal();
        let inv_freq = match scaling {
            None => inv_freq,
            Some(s) => rescale(inv_freq, s)?,
        };
        Ok(Rotary { inv_freq })
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

fn rescale(inv_freq: Tensor, s: &RopeScaling) -> Result<Tensor> {
    let need = |v: Option<f64>, name: &'static str| {
        v.ok_or_else(|| Error::InvalidArgument {
            what: "rope_scaling",
            why: format!("rope_type {:?} needs the field {name}", s.rope_type),
        })
    };
    match s.rope_type.as_str() {
        "default" => Ok(inv_freq),
        "linear" => Ok(inv_freq / need(s.factor, "factor")?),
        "llama3" => {
            let factor = need(s.factor, "factor")?;
            let low = need(s.low_freq_factor, "low_freq_factor")?;
            let high = need(s.high_freq_factor, "high_freq_factor")?;
            let old = need(
                s.original_max_position_embeddings,
                "original_max_position_embeddings",
            )?;
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
            Ok(smoothed.where_self(&medium, &scaled))
        }
        other => Err(Error::InvalidArgument {
            what: "rope_scaling",
            why: format!(
                "rope_type {other:?} is not supported (supported: default, linear, llama3)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_zero() {
        let rope = Rotary::new(8, 10000.0, None).unwrap();
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
    fn unknown_scaling_is_an_error() {
        let s = RopeScaling {
            rope_type: "yarn".into(),
            factor: Some(2.0),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
        };
        let msg = Rotary::new(8, 1e4, Some(&s)).unwrap_err().to_string();
        assert!(msg.contains("yarn"), "{msg}");
    }
}
