//! Optimizers written over tensors: SGD, Adam and AdamW.
//!
//! libtorch's own optimizers keep an opaque, non-differentiable state. The bilevel search needs
//! three things they cannot give:
//!
//! * [`Optimizer::lookahead`]: the updated weights `w' = step(w, g)` as a *differentiable*
//!   function of the gradients `g` (built with `create_graph` by the exact hypergradient), without
//!   touching any state;
//! * [`Optimizer::snapshot`] / [`Optimizer::restore`]: a copy of the trainable tensors and the
//!   moments only (never the frozen base weights), restored bit-exactly;
//! * the same arithmetic for the in-place [`Optimizer::step`] and the look-ahead, so that keeping
//!   a look-ahead step gives exactly the weights a normal step would.
//!
//! ## Adam's square root at zero
//!
//! Adam divides by `sqrt(v_hat) + eps`. Where a gradient entry is exactly zero on the first step
//! (LoRA's `A` while `B = 0`) `v = 0`, and `d sqrt(v)/dv = inf` meets `dv/dg = 0`: plain autograd
//! returns `inf * 0 = NaN`. Here the square root is evaluated as
//! `where(v > 0, sqrt(where(v > 0, v, 1)), 0)`: its *value* is exactly `sqrt(v)`, so the update
//! equals PyTorch's Adam bit for bit in exact arithmetic, and where `v = 0` the square root's
//! derivative is taken as 0 instead of NaN. That choice costs no accuracy: `v = 0` only happens
//! while every gradient so far was 0, where the update is `lr g / (|g| + eps)` (times bias
//! corrections), a function that *is* differentiable at `g = 0` with derivative `lr / eps`
//! whatever value the derivative of `|g|` is given (it is multiplied by `g = 0`). So the
//! look-ahead's derivative is the true one everywhere, and finite.
//!
//! One more small deviation: weight decay, step counting and bias correction follow
//! `torch.optim.Adam` / `AdamW` (per-parameter step counts, parameters without a gradient are
//! skipped), but the moments are updated out of place (`m' = b1 m + (1 - b1) g`), which can differ
//! from PyTorch's in-place `lerp_` in the last bit.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::param::Param;
use crate::{Error, Result};

/// The update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Plain gradient descent; weight decay is added to the gradient (L2).
    Sgd,
    /// Adam with bias correction; weight decay is added to the gradient (L2), as in PyTorch.
    #[default]
    Adam,
    /// Adam with decoupled weight decay (`w <- w (1 - lr wd)` before the Adam update).
    #[serde(rename = "adamw")]
    AdamW,
}

/// Settings of an [`Optimizer`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Adam's `(beta1, beta2)`; ignored by SGD.
    pub betas: (f64, f64),
    /// Adam's `eps`, added to `sqrt(v_hat)`; ignored by SGD.
    pub eps: f64,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl OptimConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn sgd(lr: f64) -> Self {
        OptimConfig {
            kind: OptimizerKind::Sgd,
            lr,
            ..Self::default()
        }
    }

    /// Adam with PyTorch's defaults and learning rate `lr`.
    pub fn adam(lr: f64) -> Self {
        OptimConfig {
            kind: OptimizerKind::Adam,
            lr,
            ..Self::default()
        }
    }

    /// AdamW with PyTorch's default betas and eps, learning rate `lr`, weight decay `wd`.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        OptimConfig {
            kind: OptimizerKind::AdamW,
            lr,
            weight_decay,
            ..Self::default()
        }
    }

    /// The search's outer optimizer as the authors set it: Adam, lr 3e-4, betas (0.5, 0.999).
    pub fn search_outer() -> Self {
        OptimConfig {
            betas: (0.5, 0.999),
            ..Self::adam(3e-4)
        }
    }

    /// The search's inner optimizer as the authors set it: Adam, lr 3e-4.
    pub fn search_inner() -> Self {
        Self::adam(3e-4)
    }

    /// Replaces the betas.
    pub fn with_betas(self, beta1: f64, beta2: f64) -> Self {
        OptimConfig {
            betas: (beta1, beta2),
            ..self
        }
    }

    /// Replaces the weight decay.
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        OptimConfig {
            weight_decay,
            ..self
        }
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &'static str, why: String| Err(Error::InvalidConfig { what, why });
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(
                "learning rate",
                format!("must be finite and >= 0, got {}", self.lr),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight decay",
                format!("must be finite and >= 0, got {}", self.weight_decay),
            );
        }
        if self.kind != OptimizerKind::Sgd {
            let (b1, b2) = self.betas;
            if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
                return bad("betas", format!("both must be in [0, 1), got ({b1}, {b2})"));
            }
            if !(self.eps.is_finite() && self.eps > 0.0) {
                return bad("eps", format!("must be finite and > 0, got {}", self.eps));
            }
        }
        Ok(())
    }
}

/// Gradients of a scalar `loss` with respect to `inputs` (`torch.autograd.grad`). Inputs the loss
/// does not depend on get an *undefined* tensor. With `create_graph` the gradients are themselves
/// differentiable (and the graph is kept).
pub fn gradients(loss: &Tensor, inputs: &[Tensor], create_graph: bool) -> Result<Vec<Tensor>> {
    Ok(Tensor::f_run_backward(
        &[loss],
        inputs,
        create_graph,
        create_graph,
    )?)
}

/// A copy of an optimizer's state: its trainable tensors and moments (never frozen weights).
#[derive(Debug)]
pub struct OptimizerSnapshot {
    /// Detached copies of the parameters, in the optimizer's order.
    pub params: Vec<Tensor>,
    /// Adam's first moments (empty for SGD).
    pub exp_avg: Vec<Tensor>,
    /// Adam's second moments (empty for SGD).
    pub exp_avg_sq: Vec<Tensor>,
    /// Steps taken per parameter (for bias correction).
    pub steps: Vec<u64>,
}

/// SGD / Adam / AdamW over a list of [`Param`] slots. See the module docs.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimConfig,
    params: Vec<Param>,
    // Moments are replaced, never mutated in place, so a snapshot may share them.
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    steps: Vec<u64>,
}

/// One parameter's update, as a pure function of its inputs.
struct Update {
    weight: Tensor,
    moments: Option<(Tensor, Tensor)>,
}

impl Optimizer {
    /// An optimizer over `params` (moments at zero).
    pub fn new(params: Vec<Param>, config: OptimConfig) -> Result<Self> {
        config.validate()?;
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.same_slot(p)) {
                return Err(Error::InvalidConfig {
                    what: "optimizer parameters",
                    why: format!("parameter {i} is listed twice"),
                });
            }
        }
        let (exp_avg, exp_avg_sq) = if config.kind == OptimizerKind::Sgd {
            (Vec::new(), Vec::new())
        } else {
            tch::no_grad(|| {
                let zeros: Vec<Tensor> = params.iter().map(|p| p.tensor().zeros_like()).collect();
                let zeros_sq = zeros.iter().map(Tensor::zeros_like).collect();
                (zeros, zeros_sq)
            })
        };
        let steps = vec![0; params.len()];
        Ok(Optimizer {
            config,
            params,
            exp_avg,
            exp_avg_sq,
            steps,
        })
    }

    /// The settings.
    pub fn config(&self) -> &OptimConfig {
        &self.config
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        let config = OptimConfig { lr, ..self.config };
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Steps taken by the most-updated parameter.
    pub fn steps_taken(&self) -> u64 {
        self.steps.iter().copied().max().unwrap_or(0)
    }

    fn check_grads(&self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::InvalidState(format!(
                "optimizer: {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        for (i, (g, p)) in grads.iter().zip(&self.params).enumerate() {
            if g.defined() && g.size() != p.size() {
                return Err(Error::ShapeMismatch {
                    name: format!("gradient of optimizer parameter {i}"),
                    expected: p.size(),
                    found: g.size(),
                });
            }
        }
        Ok(())
    }

    /// The update of parameter `i` from weight `w` and gradient `g`; differentiable in both.
    fn update(&self, i: usize, w: &Tensor, g: &Tensor) -> Update {
        let c = &self.config;
        match c.kind {
            OptimizerKind::Sgd => {
                let g = if c.weight_decay > 0.0 {
                    g + w * c.weight_decay
                } else {
                    g.shallow_clone()
                };
                Update {
                    weight: w - g * c.lr,
                    moments: None,
                }
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let (w, g) = match c.kind {
                    OptimizerKind::AdamW if c.weight_decay > 0.0 => {
                        (w * (1.0 - c.lr * c.weight_decay), g.shallow_clone())
                    }
                    OptimizerKind::Adam if c.weight_decay > 0.0 => {
                        (w.shallow_clone(), g + w * c.weight_decay)
                    }
                    _ => (w.shallow_clone(), g.shallow_clone()),
                };
                let (b1, b2) = c.betas;
                let m = &self.exp_avg[i] * b1 + &g * (1.0 - b1);
                let v = &self.exp_avg_sq[i] * b2 + &g * &g * (1.0 - b2);
                let t = (self.steps[i] + 1) as i32;
                let bias1 = 1.0 - b1.powi(t);
                let bias2 = 1.0 - b2.powi(t);
                let denom = safe_sqrt(&v) / bias2.sqrt() + c.eps;
                let weight = w - (&m / denom) * (c.lr / bias1);
                Update {
                    weight,
                    moments: Some((m, v)),
                }
            }
        }
    }

    /// One in-place update from `grads` (one per parameter, in order; an undefined gradient
    /// skips its parameter, like `None` in PyTorch). Runs under `no_grad`.
    pub fn step(&mut self, grads: &[Tensor]) -> Result<()> {
        self.check_grads(grads)?;
        let _guard = tch::no_grad_guard();
        for (i, g) in grads.iter().enumerate() {
            if !g.defined() {
                continue;
            }
            let mut w = self.params[i].tensor();
            let update = self.update(i, &w, &g.detach());
            w.f_copy_(&update.weight)?;
            if let Some((m, v)) = update.moments {
                self.exp_avg[i] = m;
                self.exp_avg_sq[i] = v;
            }
            self.steps[i] += 1;
        }
        Ok(())
    }

    /// Computes the gradients of `loss` with respect to the parameters and takes one [`step`].
    ///
    /// [`step`]: Optimizer::step
    pub fn minimize(&mut self, loss: &Tensor) -> Result<()> {
        let params: Vec<Tensor> = self.params.iter().map(Param::tensor).collect();
        let grads = gradients(loss, &params, false)?;
        self.step(&grads)
    }

    /// The weights one [`step`](Optimizer::step) with `grads` would produce, as tensors that
    /// stay differentiable with respect to `grads` (and the current weights); the state is not
    /// touched. A parameter with an undefined gradient comes back as its current tensor.
    pub fn lookahead(&self, grads: &[Tensor]) -> Result<Vec<Tensor>> {
        self.check_grads(grads)?;
        Ok(tch::with_grad(|| {
            grads
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let w = self.params[i].tensor();
                    if g.defined() {
                        self.update(i, &w, g).weight
                    } else {
                        w
                    }
                })
                .collect()
        }))
    }

    /// Copies the trainable tensors and the moments.
    pub fn snapshot(&self) -> OptimizerSnapshot {
        let _guard = tch::no_grad_guard();
        OptimizerSnapshot {
            params: self
                .params
                .iter()
                .map(|p| p.tensor().detach().copy())
                .collect(),
            exp_avg: self.exp_avg.iter().map(Tensor::shallow_clone).collect(),
            exp_avg_sq: self.exp_avg_sq.iter().map(Tensor::shallow_clone).collect(),
            steps: self.steps.clone(),
        }
    }

    /// Restores a [`snapshot`](Optimizer::snapshot) bit-exactly. The parameters keep their
    /// identity (their values are copied in place), so models holding them see the change.
    pub fn restore(&mut self, snapshot: &OptimizerSnapshot) -> Result<()> {
        let n = self.params.len();
        let moments = if self.config.kind == OptimizerKind::Sgd {
            0
        } else {
            n
        };
        if snapshot.params.len() != n
            || snapshot.steps.len() != n
            || snapshot.exp_avg.len() != moments
            || snapshot.exp_avg_sq.len() != moments
        {
            return Err(Error::InvalidState(format!(
                "optimizer restore: the snapshot holds {} parameters, the optimizer {n}",
                snapshot.params.len()
            )));
        }
        for (i, (p, s)) in self.params.iter().zip(&snapshot.params).enumerate() {
            if p.size() != s.size() {
                return Err(Error::ShapeMismatch {
                    name: format!("snapshot of optimizer parameter {i}"),
                    expected: p.size(),
                    found: s.size(),
                });
            }
        }
        let _guard = tch::no_grad_guard();
        for (p, s) in self.params.iter().zip(&snapshot.params) {
            p.tensor().f_copy_(s)?;
        }
        self.exp_avg = snapshot.exp_avg.iter().map(Tensor::shallow_clone).collect();
        self.exp_avg_sq = snapshot
            .exp_avg_sq
            .iter()
            .map(Tensor::shallow_clone)
            .collect();
        self.steps = snapshot.steps.clone();
        Ok(())
    }
}

/// `sqrt(v)` for `v >= 0` whose derivative is 0 instead of NaN where `v = 0` (module docs).
fn safe_sqrt(v: &Tensor) -> Tensor {
    let positive = v.gt(0.0);
    let inside = v.where_self(&positive, &v.ones_like());
    inside.sqrt().where_self(&positive, &v.zeros_like())
}

/// The shape of the learning rate after its linear warm-up, as Hugging Face's schedulers
/// draw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Linear to 0 at the last step (`get_linear_schedule_with_warmup`; the paper's recipe).
    #[default]
    Linear,
    /// Half a cosine to 0 at the last step (`get_cosine_schedule_with_warmup`).
    Cosine,
    /// The peak rate to the end (`get_constant_schedule_with_warmup`).
    Constant,
}

/// A learning-rate schedule: linear warm-up to the peak, then the [`Decay`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The learning rate reached at the end of the warm-up.
    pub peak_lr: f64,
    /// Warm-up length in optimizer steps.
    pub warmup_steps: u64,
    /// Total number of optimizer steps.
    pub total_steps: u64,
    /// What follows the warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// A schedule over `total_steps` whose warm-up is `ceil(warmup_ratio * total_steps)` steps
    /// (the paper's recipe: ratio 0.06, linear decay).
    pub fn with_ratio(peak_lr: f64, warmup_ratio: f64, total_steps: u64, decay: Decay) -> Self {
        let warmup = (warmup_ratio.clamp(0.0, 1.0) * total_steps as f64).ceil() as u64;
        LrSchedule {
            peak_lr,
            warmup_steps: warmup,
            total_steps,
            decay,
        }
    }

    /// The rate for the optimizer step that follows `step` completed steps (so step 0 of a
    /// warm-up runs at rate 0, as in Hugging Face).
    pub fn lr_at(&self, step: u64) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
            let done = step.saturating_sub(self.warmup_steps) as f64 / span;
            match self.decay {
                Decay::Linear => {
                    let left = self.total_steps.saturating_sub(step) as f64;
                    (left / span).max(0.0)
                }
                Decay::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * done).cos())).max(0.0),
                Decay::Constant => 1.0,
            }
        };
        self.peak_lr * factor
    }
}

/// Scales `grads` in place so that their joint L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does (factor `max_norm / (norm + 1e-6)`, capped at 1;
/// undefined gradients are skipped). Returns the norm before clipping and the factor applied.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<(f64, f64)> {
    let _guard = tch::no_grad_guard();
    let norms: Vec<Tensor> = grads
        .iter()
        .filter(|g| g.defined())
        .map(|g| g.norm())
        .collect();
    if norms.is_empty() {
        return Ok((0.0, 1.0));
    }
    let total = Tensor::f_stack(&norms, 0)?.norm();
    let factor = (max_norm / (&total + 1e-6)).clamp_max(1.0);
    for g in grads.iter_mut().filter(|g| g.defined()) {
        let _ = g.f_mul_(&factor)?;
    }
    Ok((total.double_value(&[]), factor.double_value(&[])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::param::trainable;
    use tch::{Device, Kind, nn, nn::OptimizerConfig};

    fn quadratic_loss(w: &Tensor, target: &Tensor) -> Tensor {
        (w - target).square().sum(w.kind()) + w.sum(w.kind()) * 0.3
    }

    /// Our Adam / AdamW against libtorch's (`torch::optim::Adam` / `AdamW`) over a few steps.
    fn compare_with_libtorch(config: OptimConfig) -> Result<()> {
        tch::manual_seed(3);
        let init = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let target = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let ours = trainable(init.copy());
        let mut opt = Optimizer::new(vec![ours.clone()], config)?;
        let vs = nn::VarStore::new(Device::Cpu);
        let theirs = vs.root().var_copy("w", &init);
        let (b1, b2) = config.betas;
        let mut reference = match config.kind {
            OptimizerKind::Adam => nn::Adam {
                beta1: b1,
                beta2: b2,
                wd: config.weight_decay,
                eps: config.eps,
                amsgrad: false,
            }
            .build(&vs, config.lr)?,
            OptimizerKind::AdamW => nn::AdamW {
                beta1: b1,
                beta2: b2,
                wd: config.weight_decay,
                eps: config.eps,
                amsgrad: false,
            }
            .build(&vs, config.lr)?,
            OptimizerKind::Sgd => nn::Sgd {
                wd: config.weight_decay,
                ..Default::default()
            }
            .build(&vs, config.lr)?,
        };
        for _ in 0..6 {
            opt.minimize(&quadratic_loss(&ours.tensor(), &target))?;
            reference.backward_step(&quadratic_loss(&theirs, &target));
        }
        let diff = (ours.tensor() - &theirs).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{config:?}: max difference {diff}");
        Ok(())
    }

    #[test]
    fn matches_libtorch_optimizers() -> Result<()> {
        let _serial = crate::serial_rng();
        compare_with_libtorch(OptimConfig::adam(0.05))?;
        compare_with_libtorch(OptimConfig::adam(0.05).with_weight_decay(0.1))?;
        compare_with_libtorch(OptimConfig::adamw(0.05, 0.1).with_betas(0.5, 0.99))?;
        compare_with_libtorch(OptimConfig::sgd(0.1).with_weight_decay(0.01))
    }

    #[test]
    fn lookahead_equals_step_and_leaves_state() -> Result<()> {
        let _serial = crate::serial_rng();
        for config in [
            OptimConfig::sgd(0.1),
            OptimConfig::adam(0.01),
            OptimConfig::adamw(0.01, 0.1),
        ] {
            let p = trainable(Tensor::from_slice(&[1.0f64, -2.0, 0.5]));
            let mut opt = Optimizer::new(vec![p.clone()], config)?;
            opt.minimize(&p.tensor().square().sum(Kind::Double))?;
            let before = opt.snapshot();
            let grad = Tensor::from_slice(&[0.3f64, 0.0, -1.0]);
            let ahead = opt.lookahead(std::slice::from_ref(&grad))?;
            assert!(
                p.tensor().equal(&before.params[0]),
                "lookahead mutated the weight"
            );
            assert_eq!(opt.steps, before.steps);
            opt.step(&[grad])?;
            assert!(p.tensor().equal(&ahead[0].detach()), "{config:?}");
        }
        Ok(())
    }

    #[test]
    fn adam_lookahead_has_no_nan_at_zero_gradient() -> Result<()> {
        let _serial = crate::serial_rng();
        // d w'/d g through Adam where g = 0 and v = 0 (the first step of LoRA's A when B = 0).
        let p = trainable(Tensor::from_slice(&[1.0f64, 2.0]));
        let opt = Optimizer::new(vec![p], OptimConfig::adam(0.1))?;
        let x = Tensor::from_slice(&[0.0f64, 0.7]).set_requires_grad(true);
        let g = &x * 1.0;
        let ahead = opt.lookahead(&[g])?;
        let dx = gradients(&ahead[0].sum(Kind::Double), &[x], false)?;
        let values = Vec::<f64>::try_from(&dx[0])?;
        assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
        // At g = 0 the update is lr g / (|g| + eps): derivative -lr / eps.
        assert!((values[0] + 0.1 / 1e-8).abs() < 1e-9 * 1e7, "{values:?}");
        // Where v > 0 the derivative is the true one. On a first step w' = w - lr g / (|g| + eps),
        // whose derivative in g is -lr eps / (|g| + eps)^2, about -2e-9 here.
        assert!(values[1].abs() < 1e-6, "{values:?}");
        Ok(())
    }

    #[test]
    fn snapshot_restore_is_bit_exact() -> Result<()> {
        let _serial = crate::serial_rng();
        let p = trainable(Tensor::randn([4, 3], (Kind::Float, Device::Cpu)));
        let mut opt = Optimizer::new(vec![p.clone()], OptimConfig::adamw(0.1, 0.01))?;
        opt.minimize(&p.tensor().square().sum(Kind::Float))?;
        let snap = opt.snapshot();
        let w0 = p.tensor().copy();
        let m0 = opt.exp_avg[0].copy();
        for _ in 0..3 {
            opt.minimize(&p.tensor().sin().sum(Kind::Float))?;
        }
        opt.restore(&snap)?;
        assert!(p.tensor().equal(&w0));
        assert!(opt.exp_avg[0].equal(&m0));
        assert_eq!(opt.steps, vec![1]);
        Ok(())
    }

    #[test]
    fn kind_names() {
        let _serial = crate::serial_rng();
        let config: OptimConfig =
            serde_json::from_str(r#"{"kind": "adamw", "lr": 1e-4, "weight_decay": 0.01}"#)
                .expect("deserialize");
        assert_eq!(config, OptimConfig::adamw(1e-4, 0.01));
        assert_eq!(
            serde_json::to_string(&OptimizerKind::Sgd).expect("json"),
            r#""sgd""#
        );
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let _serial = crate::serial_rng();
        assert!(OptimConfig::adam(-1.0).validate().is_err());
        assert!(
            OptimConfig::adam(0.1)
                .with_betas(1.0, 0.9)
                .validate()
                .is_err()
        );
        let p = trainable(Tensor::zeros([2], (Kind::Float, Device::Cpu)));
        assert!(Optimizer::new(vec![p.clone(), p], OptimConfig::sgd(0.1)).is_err());
    }

    #[test]
    fn clipping_scales_the_joint_norm_as_torch_does() -> Result<()> {
        let mut grads = vec![
            Tensor::from_slice(&[3.0f64, 4.0]),
            Tensor::new(),
            Tensor::from_slice(&[12.0f64]),
        ];
        let (norm, applied) = clip_grad_norm(&mut grads, 6.5)?;
        assert!((norm - 13.0).abs() < 1e-12);
        assert_eq!(applied, 6.5 / (13.0 + 1e-6));
        let factor = 6.5 / (13.0 + 1e-6);
        assert_eq!(
            Vec::<f64>::try_from(&grads[0])?,
            [3.0 * factor, 4.0 * factor]
        );
        assert!(!grads[1].defined());
        // Below the limit nothing changes.
        let (norm, applied) = clip_grad_norm(&mut grads, 100.0)?;
        assert!((norm - 6.5).abs() < 1e-5);
        assert_eq!(applied, 1.0);
        assert_eq!(Vec::<f64>::try_from(&grads[2])?, [12.0 * factor]);
        Ok(())
    }

    #[test]
    fn warmup_schedules() {
        let _serial = crate::serial_rng();
        let s = LrSchedule::with_ratio(1.0, 0.1, 100, Decay::Linear);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(5) - 0.5).abs() < 1e-12);
        assert!((s.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(55) - 0.5).abs() < 1e-12);
        assert_eq!(s.lr_at(100), 0.0);
        assert_eq!(s.lr_at(200), 0.0);
        // Hugging Face's cosine and constant schedules with the same warm-up.
        let cosine = LrSchedule::with_ratio(1.0, 0.1, 100, Decay::Cosine);
        assert_eq!(cosine.lr_at(5), s.lr_at(5));
        assert!((cosine.lr_at(55) - 0.5).abs() < 1e-12);
        let quarter = 0.5 * (1.0 + (std::f64::consts::PI * 22.0 / 90.0).cos());
        assert!((cosine.lr_at(32) - quarter).abs() < 1e-12);
        assert!(cosine.lr_at(100).abs() < 1e-12);
        let constant = LrSchedule::with_ratio(1.0, 0.1, 100, Decay::Constant);
        assert!((constant.lr_at(5) - 0.5).abs() < 1e-12);
        assert_eq!((constant.lr_at(10), constant.lr_at(99)), (1.0, 1.0));
    }
}
