//! The LoRA linear layer with AutoLoRA's selection variables.
//!
//! ```text
//! y = W x + b + s * ((dropout(x) A^T) * a) B^T
//! ```
//!
//! * `W` `[out, in]` and `b` `[out]` are the frozen base weights (f32, or bf16 on request).
//! * `A` `[k, in]` starts kaiming-uniform, `B` `[out, k]` starts at zero, so a freshly attached
//!   adapter leaves the model's output unchanged (invariant, tested).
//! * `a` `[k]` are the selection weights: `softmax(logits)` (the paper) or `sigmoid(logits)`
//!   (the paper's ablation), one logit vector per module. A plain LoRA adapter has no gate:
//!   `a = 1`.
//! * `s = lora_alpha / k`.

use tch::{Device, Kind, Tensor};

use crate::param::{Param, trainable};
use crate::{Error, Result};

/// How selection weights are computed from their logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// `a = softmax(logits)` over the module's k components (the paper).
    Softmax,
    /// `a_j = sigmoid(logit_j)` independently per component (the paper's ablation).
    Sigmoid,
}

impl Gate {
    /// The default selection threshold: `1/k` for softmax (uniform), `0.5` for sigmoid.
    pub fn default_threshold(self, k: i64) -> f64 {
        match self {
            Gate::Softmax => 1.0 / k as f64,
            Gate::Sigmoid => 0.5,
        }
    }
}

/// The selection variables of one module. Cloning shares the logits' slot.
#[derive(Debug)]
pub struct SelectionGate {
    /// Raw logits `[k]`, the outer optimisation variable.
    pub logits: Param,
    /// Softmax or sigmoid.
    pub gate: Gate,
    /// Optional 0/1 mask `[k]` multiplied into the weights (pruned components are 0).
    pub mask: Option<Tensor>,
}

impl Clone for SelectionGate {
    fn clone(&self) -> Self {
        SelectionGate {
            logits: self.logits.clone(),
            gate: self.gate,
            mask: self.mask.as_ref().map(Tensor::shallow_clone),
        }
    }
}

impl SelectionGate {
    /// Logits at zero (a uniform softmax), trainable, f32.
    pub fn new(k: i64, gate: Gate, device: Device) -> Self {
        Self::with_options(k, gate, (Kind::Float, device))
    }

    /// Logits at zero, trainable, of the given floating-point kind (f64 for gradient checks).
    pub fn with_options(k: i64, gate: Gate, options: (Kind, Device)) -> Self {
        SelectionGate {
            logits: trainable(Tensor::zeros([k], options)),
            gate,
            mask: None,
        }
    }

    /// The selection weights `a` `[k]`, differentiable with respect to the logits.
    pub fn weights(&self) -> Tensor {
        let logits = self.logits.tensor();
        let a = match self.gate {
            Gate::Softmax => logits.softmax(-1, logits.kind()),
            Gate::Sigmoid => logits.sigmoid(),
        };
        match &self.mask {
            Some(mask) => a * mask,
            None => a,
        }
    }
}

/// Settings of a LoRA adapter.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    /// Number of rank-1 components `k` (the paper: 8).
    pub rank: i64,
    /// `lora_alpha`; the update is scaled by `alpha / rank`.
    pub alpha: f64,
    /// Dropout probability on the adapter's input.
    pub dropout: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
        }
    }
}

impl LoraConfig {
    fn validate(&self) -> Result<()> {
        if self.rank < 1 {
            return Err(Error::InvalidConfig {
                what: "rank",
                why: format!("must be at least 1, got {}", self.rank),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidConfig {
                what: "dropout",
                why: format!("must be in [0, 1), got {}", self.dropout),
            });
        }
        Ok(())
    }
}

/// A LoRA adapter: factors `A`, `B`, scale, dropout and optional selection variables.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `A` `[r, in]`.
    pub a: Param,
    /// `B` `[out, r]`.
    pub b: Param,
    /// Selection variables; `None` for a plain (fixed-rank) adapter.
    pub gate: Option<SelectionGate>,
    /// The scale `s` applied to the update.
    pub scale: f64,
    /// Dropout probability on the adapter's input (training only).
    pub dropout: f64,
}

impl Adapter {
    /// A fresh adapter for a `[out, in]` layer: `A` kaiming-uniform (PyTorch's `a = sqrt(5)`
    /// default, bound `1/sqrt(in)`), `B` zeros, `s = alpha / rank`; with `gate`, selection
    /// logits at zero. Factors and logits are f32.
    pub fn new(
        in_features: i64,
        out_features: i64,
        config: &LoraConfig,
        gate: Option<Gate>,
        device: Device,
    ) -> Result<Self> {
        Self::with_options(
            in_features,
            out_features,
            config,
            gate,
            (Kind::Float, device),
        )
    }

    /// [`Adapter::new`] with factors and logits of the given floating-point kind (f64 models
    /// for gradient checks; the base weight's kind must match it unless it is bf16).
    pub fn with_options(
        in_features: i64,
        out_features: i64,
        config: &LoraConfig,
        gate: Option<Gate>,
        options: (Kind, Device),
    ) -> Result<Self> {
        config.validate()?;
        let bound = 1.0 / (in_features as f64).sqrt();
        // Sampled without grad tracking, then marked trainable: a leaf.
        let a = tch::no_grad(|| {
            Tensor::empty([config.rank, in_features], options).uniform_(-bound, bound)
        });
        let b = Tensor::zeros([out_features, config.rank], options);
        Ok(Adapter {
            a: trainable(a),
            b: trainable(b),
            gate: gate.map(|g| SelectionGate::with_options(config.rank, g, options)),
            scale: config.alpha / config.rank as f64,
            dropout: config.dropout,
        })
    }

    /// Number of components (`r`, or `k` during search).
    pub fn rank(&self) -> i64 {
        self.a.size()[0]
    }

    /// The update `s * B diag(a) A` `[out, in]`.
    pub fn delta_weight(&self) -> Tensor {
        let b = self.b.tensor();
        let b = match &self.gate {
            Some(gate) => b * gate.weights().unsqueeze(0),
            None => b,
        };
        b.matmul(&self.a.tensor()) * self.scale
    }

    /// The adapter's contribution `s * ((dropout(x) A^T) * a) B^T` for input `x` `[.., in]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        let h = x.linear::<Tensor>(&self.a.tensor(), None);
        let h = match &self.gate {
            Some(gate) => h * gate.weights(),
            None => h,
        };
        h.linear::<Tensor>(&self.b.tensor(), None) * self.scale
    }
}

/// What a layer saw as input while recording: the second moment `sum_t x_t x_t^T` `[in, in]`
/// (f64, on the layer's device) over `rows` input rows. It gives `sum_t ||M x_t||^2 =
/// trace(M G M^T)` for any matrix `M` without keeping the activations (calibrating an update's
/// strength against the base weight's output on real data, data-driven initialisations).
#[derive(Debug)]
pub struct InputMoments {
    /// `sum_t x_t x_t^T` `[in, in]`, f64.
    pub gram: Tensor,
    /// Number of input rows `x_t` summed (every position of every input, padding included:
    /// record unpadded inputs to leave it out).
    pub rows: i64,
}

impl InputMoments {
    /// `sum_t ||M x_t||^2` for `m` `[out, in]`.
    pub fn output_energy(&self, m: &Tensor) -> f64 {
        let m = m.to_kind(Kind::Double).to_device(self.gram.device());
        (m.matmul(&self.gram) * &m)
            .sum(Kind::Double)
            .double_value(&[])
    }
}

/// A linear layer `y = W x + b`, frozen, with an optional LoRA [`Adapter`].
#[derive(Debug)]
pub struct LoraLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Adapter>,
    merged: bool,
    /// `Some` while recording input moments (see [`LoraLinear::record_inputs`]).
    recording: std::cell::RefCell<Option<InputMoments>>,
}

impl LoraLinear {
    /// Wraps frozen base weights: `weight` `[out, in]`, `bias` `[out]`. Gradients are switched off.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let size = weight.size();
        if size.len() != 2 {
            return Err(Error::ShapeMismatch {
                name: "linear weight (must be [out, in])".into(),
                expected: vec![-1, -1],
                found: size,
            });
        }
        if let Some(bias) = &bias
            && bias.size() != [size[0]]
        {
            return Err(Error::ShapeMismatch {
                name: "linear bias".into(),
                expected: vec![size[0]],
                found: bias.size(),
            });
        }
        Ok(LoraLinear {
            weight: weight.set_requires_grad(false),
            bias: bias.map(|b| b.set_requires_grad(false)),
            adapter: None,
            merged: false,
            recording: std::cell::RefCell::new(None),
        })
    }

    /// Starts accumulating the moments of this layer's inputs over the following forward
    /// passes (restarting if already recording), without gradients.
    pub fn record_inputs(&self) {
        let n = self.in_features();
        let gram = Tensor::zeros([n, n], (Kind::Double, self.weight.device()));
        self.recording.replace(Some(InputMoments { gram, rows: 0 }));
    }

    /// Stops recording and returns what was recorded (`None` if not recording).
    pub fn take_input_moments(&self) -> Option<InputMoments> {
        self.recording.take()
    }

    /// Input width.
    pub fn in_features(&self) -> i64 {
        self.weight.size()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    /// The frozen base weight `[out, in]` (includes the update while merged).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The frozen bias `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The attached adapter, if any.
    pub fn adapter(&self) -> Option<&Adapter> {
        self.adapter.as_ref()
    }

    /// Whether the adapter's update is currently folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Attaches `adapter`, replacing any previous one (which is returned).
    pub fn attach(&mut self, adapter: Adapter) -> Result<Option<Adapter>> {
        if self.merged {
            return Err(Error::InvalidState(
                "cannot attach an adapter to a merged layer; unmerge first".into(),
            ));
        }
        let r = adapter.rank();
        let expect = |name: &str, p: &Param, shape: [i64; 2]| -> Result<()> {
            if p.size() != shape {
                return Err(Error::ShapeMismatch {
                    name: name.into(),
                    expected: shape.to_vec(),
                    found: p.size(),
                });
            }
            Ok(())
        };
        expect("lora_A", &adapter.a, [r, self.in_features()])?;
        expect("lora_B", &adapter.b, [self.out_features(), r])?;
        if let Some(gate) = &adapter.gate
            && gate.logits.size() != [r]
        {
            return Err(Error::ShapeMismatch {
                name: "selection logits".into(),
                expected: vec![r],
                found: gate.logits.size(),
            });
        }
        Ok(self.adapter.replace(adapter))
    }

    /// Removes and returns the adapter (unmerging first if needed).
    pub fn detach(&mut self) -> Result<Option<Adapter>> {
        if self.merged {
            self.unmerge()?;
        }
        Ok(self.adapter.take())
    }

    /// `y = W x + b + adapter(x)` for `x` `[.., in]`. A bf16 base runs its matmul in bf16 and
    /// returns `x`'s dtype.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(moments) = self.recording.borrow_mut().as_mut() {
            let _guard = tch::no_grad_guard();
            let rows = x.reshape([-1, self.in_features()]).to_kind(Kind::Double);
            moments.gram += rows.tr().matmul(&rows);
            moments.rows += rows.size()[0];
        }
        let base = if self.weight.kind() == x.kind() {
            x.linear(&self.weight, self.bias.as_ref())
        } else {
            x.to_kind(self.weight.kind())
                .linear(&self.weight, self.bias.as_ref())
                .to_kind(x.kind())
        };
        match (&self.adapter, self.merged) {
            (Some(adapter), false) => base + adapter.forward_t(x, train),
            _ => base,
        }
    }

    /// Folds the adapter's update into the base weight (zero-overhead inference).
    pub fn merge(&mut self) -> Result<()> {
        let delta = self.delta_for_merge("merge")?;
        // In place; the returned alias of the weight is not needed.
        let _ = tch::no_grad(|| self.weight.f_add_(&delta))?;
        self.merged = true;
        Ok(())
    }

    /// Subtracts the adapter's update from the base weight again.
    pub fn unmerge(&mut self) -> Result<()> {
        if !self.merged {
            return Err(Error::InvalidState(
                "unmerge: the layer is not merged".into(),
            ));
        }
        self.merged = false;
        let delta = self.delta_for_merge("unmerge")?;
        let _ = tch::no_grad(|| self.weight.f_sub_(&delta))?;
        Ok(())
    }

    fn delta_for_merge(&self, what: &str) -> Result<Tensor> {
        if self.merged {
            return Err(Error::InvalidState(format!(
                "{what}: the layer is already merged"
            )));
        }
        let adapter = self
            .adapter
            .as_ref()
            .ok_or_else(|| Error::InvalidState(format!("{what}: the layer has no adapter")))?;
        Ok(tch::no_grad(|| adapter.delta_weight()).to_kind(self.weight.kind()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::gradients;

    const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

    fn layer_with(gate: Option<Gate>, dropout: f64) -> Result<(LoraLinear, Adapter)> {
        let mut layer = LoraLinear::new(Tensor::randn([4, 6], F64), Some(Tensor::randn([4], F64)))?;
        let config = LoraConfig {
            rank: 3,
            alpha: 6.0,
            dropout,
        };
        let adapter = Adapter::with_options(6, 4, &config, gate, F64)?;
        layer.attach(adapter.clone())?;
        Ok((layer, adapter))
    }

    #[test]
    fn recorded_input_moments_give_the_output_energy_of_any_matrix() -> Result<()> {
        let layer = LoraLinear::new(
            Tensor::from_slice(&[1.0f64, 2.0, 0.0, -1.0, 0.5, 3.0]).reshape([2, 3]),
            None,
        )?;
        let x1 = Tensor::from_slice(&[1.0f64, 0.0, 2.0, -1.0, 1.0, 1.0]).reshape([1, 2, 3]);
        let x2 = Tensor::from_slice(&[0.5f64, 0.5, -2.0]).reshape([1, 1, 3]);
        assert!(layer.take_input_moments().is_none());
        layer.record_inputs();
        let _ = layer.forward_t(&x1, false);
        let _ = layer.forward_t(&x2, false);
        let moments = layer.take_input_moments().expect("recording");
        assert_eq!(moments.rows, 3);
        // sum_t ||W x_t||^2 by hand: W x = (1, 5), (1, 4.5), (1.5, -6.25).
        let expect = 1.0 + 25.0 + 1.0 + 20.25 + 2.25 + 39.0625;
        assert!((moments.output_energy(layer.weight()) - expect).abs() < 1e-12);
        // Recording stopped: later passes add nothing.
        let _ = layer.forward_t(&x1, false);
        assert!(layer.take_input_moments().is_none());
        Ok(())
    }

    #[test]
    fn fresh_adapter_leaves_the_output_unchanged() -> Result<()> {
        let _serial = crate::serial_rng();
        tch::manual_seed(1);
        let (mut layer, _) = layer_with(Some(Gate::Softmax), 0.5)?;
        let x = Tensor::randn([5, 6], F64);
        let with = layer.forward_t(&x, true);
        layer.detach()?;
        assert!(with.equal(&layer.forward_t(&x, true)));
        Ok(())
    }

    /// Central finite differences of `sum(R * layer(x))` against autograd for A, B and the
    /// logits, with the dropout mask fixed by reseeding before every evaluation.
    fn check_gradients(gate: Gate, dropout: f64) -> Result<()> {
        tch::manual_seed(2);
        let (layer, adapter) = layer_with(Some(gate), dropout)?;
        tch::no_grad(|| {
            let _ = adapter.b.tensor().normal_(0.0, 1.0);
            let _ = adapter
                .gate
                .as_ref()
                .expect("gate")
                .logits
                .tensor()
                .normal_(0.0, 1.0);
        });
        let x = Tensor::randn([5, 6], F64);
        let r = Tensor::randn([5, 4], F64);
        let objective = || {
            tch::manual_seed(99);
            (layer.forward_t(&x, true) * &r).sum(Kind::Double)
        };
        let params = [
            adapter.a.tensor(),
            adapter.b.tensor(),
            adapter.gate.as_ref().expect("gate").logits.tensor(),
        ];
        let grads = gradients(&objective(), &params, false)?;
        let h = 1e-6;
        for (p, g) in params.iter().zip(&grads) {
            let flat = p.view([-1]);
            for i in 0..flat.size()[0] {
                let shift = |d: f64| {
                    let _guard = tch::no_grad_guard();
                    let _ = flat.get(i).f_add_scalar_(d);
                };
                shift(h);
                let plus = tch::no_grad(objective).double_value(&[]);
                shift(-2.0 * h);
                let minus = tch::no_grad(objective).double_value(&[]);
                shift(h);
                let numeric = (plus - minus) / (2.0 * h);
                let analytic = g.view([-1]).double_value(&[i]);
                assert!(
                    (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
                    "{gate:?}, dropout {dropout}, entry {i}: numeric {numeric}, autograd {analytic}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let _serial = crate::serial_rng();
        check_gradients(Gate::Softmax, 0.0)?;
        check_gradients(Gate::Sigmoid, 0.0)?;
        check_gradients(Gate::Softmax, 0.3)
    }

    #[test]
    fn plain_adapter_update_is_scaled_b_times_a() -> Result<()> {
        let _serial = crate::serial_rng();
        tch::manual_seed(3);
        let (layer, adapter) = layer_with(None, 0.0)?;
        let _ = tch::no_grad(|| adapter.b.tensor().normal_(0.0, 1.0));
        let x = Tensor::randn([2, 6], F64);
        let delta = adapter.b.tensor().matmul(&adapter.a.tensor()) * 2.0; // s = 6 / 3
        let expected = x.linear(&(layer.weight() + delta), layer.bias());
        assert!(
            layer
                .forward_t(&x, false)
                .allclose(&expected, 1e-12, 1e-12, false)
        );
        Ok(())
    }

    #[test]
    fn shapes_and_settings_are_checked() {
        let _serial = crate::serial_rng();
        let mut layer = LoraLinear::new(Tensor::zeros([4, 6], F64), None).expect("layer");
        let wrong =
            Adapter::with_options(5, 4, &LoraConfig::default(), None, F64).expect("adapter");
        assert!(matches!(
            layer.attach(wrong),
            Err(Error::ShapeMismatch { .. })
        ));
        let bad = LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        };
        assert!(Adapter::new(6, 4, &bad, None, Device::Cpu).is_err());
        assert!(LoraLinear::new(Tensor::zeros([4], F64), None).is_err());
        assert!(layer.unmerge().is_err());
    }
}
