//! Pruning a selective adapter to a compact plain adapter of its kept components.
//!
//! With kept indices `K`, the compact adapter is
//!
//! ```text
//! A' = A[K, :]            B' = (s / s') * B[:, K] * a[K]            s' = alpha / |K|, no gate
//! ```
//!
//! so `s' B' A' x = s B diag(a masked to K) A x`: the compact layer reproduces the selective
//! layer with the unselected components masked out (`a_j = 0`), exactly up to rounding, and
//! keeps the scale rule of every plain adapter (`alpha / r`), so a warm-started retrain and an
//! exported PEFT adapter (`lora_alpha = alpha`) treat it like a fresh one. The adapter's dropout
//! is kept.

use tch::Tensor;

use crate::lora::{Adapter, LoraLinear};
use crate::param::trainable;
use crate::{Error, Result};

/// The compact adapter of `adapter`'s components `kept` (ascending, distinct, non-empty), with
/// scale `alpha / kept.len()`. The new factors are fresh trainable leaves; `adapter` is not
/// changed.
pub fn prune_adapter(adapter: &Adapter, kept: &[usize], alpha: f64) -> Result<Adapter> {
    let k = adapter.rank();
    if kept.is_empty() {
        return Err(Error::InvalidConfig {
            what: "kept components",
            why: "at least one component must be kept".into(),
        });
    }
    if let Some(w) = kept.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::InvalidConfig {
            what: "kept components",
            why: format!(
                "indices must be ascending and distinct, found {} then {}",
                w[0], w[1]
            ),
        });
    }
    if let Some(&j) = kept.iter().find(|&&j| j as i64 >= k) {
        return Err(Error::InvalidConfig {
            what: "kept components",
            why: format!("index {j} is out of range for an adapter of {k} components"),
        });
    }
    let _guard = tch::no_grad_guard();
    let a = adapter.a.tensor();
    let index = Tensor::from_slice(&kept.iter().map(|&j| j as i64).collect::<Vec<_>>())
        .to_device(a.device());
    let a_kept = a.f_index_select(0, &index)?.detach().copy();
    let b = adapter.b.tensor();
    let scale = alpha / kept.len() as f64;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::InvalidConfig {
            what: "lora alpha",
            why: format!("must be positive, got {alpha}"),
        });
    }
    let mut b_kept = b.f_index_select(1, &index)? * (adapter.scale / scale);
    if let Some(gate) = &adapter.gate {
        let weights = gate.weights().f_index_select(0, &index)?.to_kind(b.kind());
        b_kept *= weights.unsqueeze(0);
    }
    Ok(Adapter {
        a: trainable(a_kept),
        b: trainable(b_kept.detach()),
        gate: None,
        scale,
        dropout: adapter.dropout,
    })
}

/// Replaces `layer`'s adapter by its compact form ([`prune_adapter`], scale `alpha / r`) and
/// returns the old one.
pub fn prune_layer(layer: &mut LoraLinear, kept: &[usize], alpha: f64) -> Result<Adapter> {
    let adapter = layer
        .adapter()
        .ok_or_else(|| Error::InvalidState("prune: the layer has no adapter".into()))?;
    if layer.is_merged() {
        return Err(Error::InvalidState(
            "prune: the layer is merged; unmerge first".into(),
        ));
    }
    let compact = prune_adapter(adapter, kept, alpha)?;
    let old = layer.attach(compact)?;
    old.ok_or_else(|| Error::InvalidState("prune: the layer lost its adapter".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{Gate, LoraConfig};
    use tch::{Device, Kind};

    fn selective_layer() -> Result<(LoraLinear, Adapter)> {
        tch::manual_seed(21);
        let opts = (Kind::Double, Device::Cpu);
        let mut layer =
            LoraLinear::new(Tensor::randn([5, 7], opts), Some(Tensor::randn([5], opts)))?;
        let config = LoraConfig {
            rank: 6,
            alpha: 12.0,
            dropout: 0.0,
        };
        let adapter = Adapter::with_options(7, 5, &config, Some(Gate::Softmax), opts)?;
        tch::no_grad(|| {
            let _ = adapter.b.tensor().normal_(0.0, 1.0);
            let gate = adapter.gate.as_ref().expect("gate");
            let _ = gate.logits.tensor().normal_(0.0, 1.0);
        });
        layer.attach(adapter.clone())?;
        Ok((layer, adapter))
    }

    #[test]
    fn compact_layer_equals_masked_selective_layer() -> Result<()> {
        let _serial = crate::serial_rng();
        let (mut layer, adapter) = selective_layer()?;
        let kept = [1usize, 2, 5];
        let x = Tensor::randn([4, 7], (Kind::Double, Device::Cpu));
        // The selective layer with the unselected components masked out.
        let mut mask = vec![0.0f64; 6];
        kept.iter().for_each(|&j| mask[j] = 1.0);
        let mut masked = adapter.clone();
        if let Some(gate) = masked.gate.as_mut() {
            gate.mask = Some(Tensor::from_slice(&mask));
        }
        layer.attach(masked)?;
        let expected = layer.forward_t(&x, false);
        layer.attach(adapter)?;
        let old = prune_layer(&mut layer, &kept, 12.0)?;
        assert_eq!(old.rank(), 6);
        let compact = layer.adapter().expect("compact adapter");
        assert_eq!(compact.rank(), 3);
        assert_eq!(
            compact.scale,
            12.0 / 3.0,
            "a plain adapter's scale is alpha / r"
        );
        assert!(compact.gate.is_none());
        let got = layer.forward_t(&x, false);
        assert!(got.allclose(&expected, 1e-10, 1e-12, false));
        Ok(())
    }

    #[test]
    fn merge_and_unmerge_round_trip() -> Result<()> {
        let _serial = crate::serial_rng();
        let (mut layer, _) = selective_layer()?;
        prune_layer(&mut layer, &[0, 3], 16.0)?;
        let x = Tensor::randn([3, 7], (Kind::Double, Device::Cpu));
        let base = layer.weight().copy();
        let before = layer.forward_t(&x, false);
        layer.merge()?;
        assert!(
            layer
                .forward_t(&x, false)
                .allclose(&before, 1e-10, 1e-12, false)
        );
        assert!(layer.merge().is_err(), "merging twice must fail");
        layer.unmerge()?;
        assert!(layer.weight().allclose(&base, 1e-12, 1e-12, false));
        assert!(
            layer
                .forward_t(&x, false)
                .allclose(&before, 1e-10, 1e-12, false)
        );
        Ok(())
    }

    #[test]
    fn bad_indices_are_rejected() -> Result<()> {
        let _serial = crate::serial_rng();
        let (_, adapter) = selective_layer()?;
        assert!(prune_adapter(&adapter, &[], 16.0).is_err());
        assert!(prune_adapter(&adapter, &[2, 1], 16.0).is_err());
        assert!(prune_adapter(&adapter, &[1, 1], 16.0).is_err());
        assert!(prune_adapter(&adapter, &[6], 16.0).is_err());
        Ok(())
    }
}
