//! The bilevel search engine: one search step updates the selection variables `a` to lower the
//! validation loss *after* an inner training step of the LoRA weights `w`.
//!
//! The engine is model-agnostic. It holds the inner optimizer (over `w`: LoRA factors, task
//! head) and the outer optimizer (over the selection logits), and calls two loss closures that
//! run the model on whatever tensors currently sit in the [`Param`] slots: one on the step's
//! training batch, one on its validation batch. One [`BilevelSearch::step`]:
//!
//! 1. snapshots the trainable tensors and both optimizers' moments (never frozen weights);
//! 2. computes `L_train(w, a)` and `g = dL_train/dw`, and the look-ahead `w' = step(w, g)`;
//! 3. computes the hypergradient `dL_val(w'(a), a)/da` (see [`Hypergradient`]);
//! 4. takes the outer step on `a`;
//! 5. rolls `w` and the inner optimizer back to the snapshot and redoes the inner step with the
//!    new `a` (or, with `rollback = false`, keeps the look-ahead step: one pass fewer).
//!
//! A non-finite loss or hypergradient returns [`Error::NonFinite`] and leaves every parameter
//! and moment exactly as it was before the step.
//!
//! ## Randomness
//!
//! Before each loss evaluation the engine reseeds libtorch's global generators (CPU and CUDA)
//! with a seed derived from `(run seed, step index, stream)`: every evaluation on the training
//! batch within one step (the inner step, the two perturbed evaluations of the finite difference
//! and the redo) uses the *same* seed, hence the same dropout mask; the validation evaluation
//! uses another. A resumed run that sets [`BilevelSearch::set_steps_done`] reproduces the steps
//! exactly without any saved generator state. Code that draws other random numbers from torch
//! between steps should seed its own draws. The generators are global to the process: run one
//! search per process at a time (tensors are not `Sync` anyway).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::optim::{Optimizer, OptimizerSnapshot, gradients};
use crate::param::Param;
use crate::{Error, Result};

/// How the hypergradient `dL_val/da` is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hypergradient {
    /// `dL_val/da` at the look-ahead weights `w'`, ignoring how `w'` depends on `a`.
    /// Two forward+backward passes plus the redo.
    FirstOrder,
    /// The authors' finite-difference estimate of the second-order term (see
    /// [`FiniteDifferenceForm`]). Four passes plus the redo.
    #[default]
    FiniteDifference,
    /// Differentiates through the unrolled step `w' = step(w, dL_train(w, a)/dw)` with
    /// second-order autograd. The model must support double backward (no fused attention).
    Exact,
}

/// Where the finite difference of [`Hypergradient::FiniteDifference`] is taken. With
/// `v = dL_val/dw'`, `eps = radius / ||v||` and `g± = dL_train(w±, a)/da` on the same training
/// batch with the same dropout mask:
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FiniteDifferenceForm {
    /// The authors' code: `w± = w' ± eps v`, hypergradient `dL_val/da - (g+ - g-) / (2 eps)`,
    /// with no learning-rate factor. This estimates the implicit-differentiation hypergradient
    /// with the inverse Hessian replaced by the identity.
    #[default]
    Implicit,
    /// The DARTS paper: `w± = w ± eps v` (before the inner step), hypergradient
    /// `dL_val/da - lr (g+ - g-) / (2 eps)`. For an SGD inner step this approximates the exact
    /// one-step-unroll hypergradient.
    Darts,
}

/// Settings of the search engine.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// The hypergradient.
    pub hypergradient: Hypergradient,
    /// The finite difference's form (only for [`Hypergradient::FiniteDifference`]).
    pub fd_form: FiniteDifferenceForm,
    /// The finite difference's radius: `eps = fd_radius / ||v||` (the authors: 0.01).
    pub fd_radius: f64,
    /// Roll back and redo the inner step with the updated selection (the authors' default);
    /// `false` keeps the look-ahead step.
    pub rollback: bool,
    /// The run's seed, from which every step's dropout seeds are derived.
    pub seed: u64,
    /// Clip the inner gradients' joint norm to this before every inner step
    /// ([`clip_grad_norm`](crate::optim::clip_grad_norm)); `None`: no clipping. The look-ahead
    /// is the clipped step, so the exact hypergradient differentiates through `w - lr c g`
    /// with the factor `c` held constant, and the finite difference's second-order term is
    /// scaled by `c`.
    pub max_grad_norm: Option<f64>,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            hypergradient: Hypergradient::FiniteDifference,
            fd_form: FiniteDifferenceForm::Implicit,
            fd_radius: 0.01,
            rollback: true,
            seed: 0,
            max_grad_norm: None,
        }
    }
}

impl SearchConfig {
    /// Checks the values' ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.fd_radius.is_finite() && self.fd_radius > 0.0) {
            return Err(Error::InvalidConfig {
                what: "finite-difference radius",
                why: format!("must be finite and > 0, got {}", self.fd_radius),
            });
        }
        if let Some(norm) = self.max_grad_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(Error::InvalidConfig {
                what: "inner gradient clipping norm",
                why: format!("must be finite and > 0, got {norm}"),
            });
        }
        Ok(())
    }
}

/// What one search step measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's index (0-based).
    pub step: u64,
    /// `L_train(w, a)` before the inner step.
    pub train_loss: f64,
    /// `L_val(w', a)` at the look-ahead weights.
    pub val_loss: f64,
    /// The hypergradient's global L2 norm.
    pub hypergradient_norm: f64,
    /// The finite difference's `eps` (finite-difference mode with `v != 0` only).
    pub fd_eps: Option<f64>,
    /// `L_train(w, a_new)` of the redone inner step (with roll-back only).
    pub redo_train_loss: Option<f64>,
}

/// A hypergradient computed without changing any state ([`BilevelSearch::hypergradient`]).
#[derive(Debug)]
pub struct HypergradientEstimate {
    /// `dL_val/da`, one tensor per selection parameter (zeros where `a` has no influence).
    pub grads: Vec<Tensor>,
    /// `L_train(w, a)`.
    pub train_loss: f64,
    /// `L_val(w', a)`.
    pub val_loss: f64,
    /// The finite difference's `eps`, if one was taken.
    pub fd_eps: Option<f64>,
}

/// The state a search step may roll back to.
#[derive(Debug)]
pub struct SearchSnapshot {
    /// The inner optimizer's parameters and moments.
    pub inner: OptimizerSnapshot,
    /// The selection variables and the outer optimizer's moments.
    pub outer: OptimizerSnapshot,
    /// Steps done.
    pub steps_done: u64,
}

/// The error type loss closures may return (anything convertible, `anyhow::Error` included).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type LossFn<'a> = dyn FnMut() -> Result<Tensor> + 'a;

/// The seed stream of every evaluation on a step's training batch (see [`derive_seed`]).
pub const TRAIN_STREAM: u64 = 1;
/// The seed stream of the evaluation on a step's validation batch (see [`derive_seed`]).
pub const VAL_STREAM: u64 = 2;

/// The libtorch seed the engine sets before an evaluation of `stream` ([`TRAIN_STREAM`] or
/// [`VAL_STREAM`]) in step `step` of a run seeded with `run_seed` (SplitMix64 mixing), so each
/// step's dropout masks are reproducible from those three numbers alone.
pub fn derive_seed(run_seed: u64, step: u64, stream: u64) -> i64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let z = mix(mix(mix(run_seed) ^ step) ^ stream);
    // libtorch takes the seed as a signed integer; keep it non-negative for readability in logs.
    (z >> 1) as i64
}

/// The bilevel search engine. See the module docs.
#[derive(Debug)]
pub struct BilevelSearch {
    inner: Optimizer,
    outer: Optimizer,
    config: SearchConfig,
    steps_done: u64,
}

/// The look-ahead part of a step (steps 2 and 3 of the module docs).
struct Lookahead {
    hyper: Vec<Tensor>,
    train_loss: f64,
    val_loss: f64,
    fd_eps: Option<f64>,
    /// Detached inner gradients at `w` (exact mode keeps the look-ahead step from them).
    inner_grads: Vec<Tensor>,
}

impl BilevelSearch {
    /// An engine with `inner` over the LoRA weights (and task head) and `outer` over the
    /// selection logits. The two parameter lists must not share a slot.
    pub fn new(inner: Optimizer, outer: Optimizer, config: SearchConfig) -> Result<Self> {
        config.validate()?;
        for (i, p) in inner.params().iter().enumerate() {
            if outer.params().iter().any(|q| q.same_slot(p)) {
                return Err(Error::InvalidConfig {
                    what: "search parameters",
                    why: format!("inner parameter {i} is also a selection parameter"),
                });
            }
        }
        if outer.params().is_empty() || inner.params().is_empty() {
            return Err(Error::InvalidConfig {
                what: "search parameters",
                why: format!(
                    "{} inner and {} selection parameters; both lists must be non-empty",
                    inner.params().len(),
                    outer.params().len()
                ),
            });
        }
        Ok(BilevelSearch {
            inner,
            outer,
            config,
            steps_done: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SearchConfig {
        &self.config
    }

    /// The inner optimizer (over the LoRA weights).
    pub fn inner(&self) -> &Optimizer {
        &self.inner
    }

    /// The inner optimizer, mutable (learning-rate schedules).
    pub fn inner_mut(&mut self) -> &mut Optimizer {
        &mut self.inner
    }

    /// The outer optimizer (over the selection logits).
    pub fn outer(&self) -> &Optimizer {
        &self.outer
    }

    /// The outer optimizer, mutable.
    pub fn outer_mut(&mut self) -> &mut Optimizer {
        &mut self.outer
    }

    /// Steps done so far (the index of the next step).
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Sets the step counter, e.g. when resuming a run (the seeds derive from it).
    pub fn set_steps_done(&mut self, steps: u64) {
        self.steps_done = steps;
    }

    /// Copies every trainable tensor and moment of both optimizers.
    pub fn snapshot(&self) -> SearchSnapshot {
        SearchSnapshot {
            inner: self.inner.snapshot(),
            outer: self.outer.snapshot(),
            steps_done: self.steps_done,
        }
    }

    /// Restores a [`snapshot`](BilevelSearch::snapshot) bit-exactly.
    pub fn restore(&mut self, snapshot: &SearchSnapshot) -> Result<()> {
        self.inner.restore(&snapshot.inner)?;
        self.outer.restore(&snapshot.outer)?;
        self.steps_done = snapshot.steps_done;
        Ok(())
    }

    /// One search step (module docs) with `train` evaluating the step's training batch and
    /// `val` its validation batch; both return a scalar loss.
    pub fn step<T, V, E1, E2>(&mut self, mut train: T, mut val: V) -> Result<StepReport>
    where
        T: FnMut() -> std::result::Result<Tensor, E1>,
        V: FnMut() -> std::result::Result<Tensor, E2>,
        E1: Into<BoxError>,
        E2: Into<BoxError>,
    {
        let mut train = || train().map_err(|e| loss_error("training", e));
        let mut val = || val().map_err(|e| loss_error("validation", e));
        let snapshot = self.snapshot();
        let leaves = self.inner_leaves();
        let span = tracing::debug_span!("search_step", step = self.steps_done);
        let _enter = span.enter();
        let result = self.step_from(&snapshot, &mut train, &mut val);
        if result.is_err() {
            self.put_back(&leaves);
            self.restore(&snapshot)?;
        }
        result
    }

    /// A step of the inner problem alone, the selection left as it is: the training loss
    /// and its gradient with the step's training seed, then the inner optimizer's step. A
    /// search warms the LoRA weights up with these before its first outer step, or takes them
    /// between outer steps. Returns the training loss; on error every parameter and moment is
    /// as before.
    pub fn inner_step<T, E>(&mut self, mut train: T) -> Result<f64>
    where
        T: FnMut() -> std::result::Result<Tensor, E>,
        E: Into<BoxError>,
    {
        let mut train = || train().map_err(|e| loss_error("training", e));
        let w = self.inner_leaves();
        let (loss, value) = self.evaluate(&mut train, "training loss", TRAIN_STREAM)?;
        let mut grads = defined_or_zeros(gradients(&loss, &w, false)?, &w);
        check_finite(&grads, "training gradient", self.steps_done)?;
        self.clip(&mut grads)?;
        self.inner.step(&grads)?;
        self.steps_done += 1;
        Ok(value)
    }

    /// The hypergradient the next [`step`](BilevelSearch::step) would use, leaving every
    /// parameter and moment as it was (for diagnostics and tests).
    pub fn hypergradient<T, V, E1, E2>(
        &mut self,
        mut train: T,
        mut val: V,
    ) -> Result<HypergradientEstimate>
    where
        T: FnMut() -> std::result::Result<Tensor, E1>,
        V: FnMut() -> std::result::Result<Tensor, E2>,
        E1: Into<BoxError>,
        E2: Into<BoxError>,
    {
        let mut train = || train().map_err(|e| loss_error("training", e));
        let mut val = || val().map_err(|e| loss_error("validation", e));
        let snapshot = self.snapshot();
        let leaves = self.inner_leaves();
        let result = self.lookahead(&snapshot, &mut train, &mut val);
        self.put_back(&leaves);
        self.restore(&snapshot)?;
        let look = result?;
        Ok(HypergradientEstimate {
            grads: look.hyper,
            train_loss: look.train_loss,
            val_loss: look.val_loss,
            fd_eps: look.fd_eps,
        })
    }

    fn step_from(
        &mut self,
        snapshot: &SearchSnapshot,
        train: &mut LossFn<'_>,
        val: &mut LossFn<'_>,
    ) -> Result<StepReport> {
        let step = self.steps_done;
        let look = self.lookahead(snapshot, train, val)?;
        let hypergradient_norm = global_norm(&look.hyper)?;
        self.outer.step(&look.hyper)?;
        let redo_train_loss = if self.config.rollback {
            self.inner.restore(&snapshot.inner)?;
            let w = self.inner_leaves();
            let (loss, value) = self.evaluate(train, "training loss (redo)", TRAIN_STREAM)?;
            let mut grads = gradients(&loss, &w, false)?;
            self.clip(&mut grads)?;
            self.inner.step(&grads)?;
            Some(value)
        } else {
            if self.config.hypergradient == Hypergradient::Exact {
                // The look-ahead was only computed, not taken; take it now (same arithmetic).
                self.inner.step(&look.inner_grads)?;
            }
            None
        };
        self.steps_done += 1;
        let report = StepReport {
            step,
            train_loss: look.train_loss,
            val_loss: look.val_loss,
            hypergradient_norm,
            fd_eps: look.fd_eps,
            redo_train_loss,
        };
        tracing::debug!(?report, "search step");
        Ok(report)
    }

    /// Steps 2 and 3. Afterwards the inner weights hold `w'` and the inner optimizer has taken
    /// its step (first-order and finite-difference modes), or both are untouched (exact mode).
    fn lookahead(
        &mut self,
        snapshot: &SearchSnapshot,
        train: &mut LossFn<'_>,
        val: &mut LossFn<'_>,
    ) -> Result<Lookahead> {
        let w = self.inner_leaves();
        let a: Vec<Tensor> = self.outer.params().iter().map(Param::tensor).collect();
        let exact = self.config.hypergradient == Hypergradient::Exact;
        let (train_loss_t, train_loss) = self.evaluate(train, "training loss", TRAIN_STREAM)?;
        let g = gradients(&train_loss_t, &w, exact)?;
        drop(train_loss_t);
        // Copies when clipping scales them in place: a detached gradient shares `g`'s storage.
        let copy = self.config.max_grad_norm.is_some();
        let mut inner_grads: Vec<Tensor> = g
            .iter()
            .map(|g| match (g.defined(), copy) {
                (true, true) => g.detach().copy(),
                (true, false) => g.detach(),
                (false, _) => Tensor::new(),
            })
            .collect();
        // The step taken is the clipped one; `c` is a constant of this step.
        let c = self.clip(&mut inner_grads)?;

        if exact {
            let g: Vec<Tensor> = if c < 1.0 {
                g.iter()
                    .map(|g| if g.defined() { g * c } else { Tensor::new() })
                    .collect()
            } else {
                g
            };
            let w_next = self.inner.lookahead(&g)?;
            for (p, t) in self.inner.params().iter().zip(w_next) {
                let _leaf = p.replace(t); // still held in `w`
            }
            let result = self
                .evaluate(val, "validation loss", VAL_STREAM)
                .and_then(|(loss, value)| Ok((gradients(&loss, &a, false)?, value)));
            self.put_back(&w);
            let (hyper, val_loss) = result?;
            let hyper = defined_or_zeros(hyper, &a);
            check_finite(&hyper, "hypergradient", self.steps_done)?;
            return Ok(Lookahead {
                hyper,
                train_loss,
                val_loss,
                fd_eps: None,
                inner_grads,
            });
        }

        self.inner.step(&inner_grads)?;
        let (val_loss_t, val_loss) = self.evaluate(val, "validation loss", VAL_STREAM)?;
        let fd = self.config.hypergradient == Hypergradient::FiniteDifference;
        let inputs: Vec<Tensor> = if fd {
            a.iter().chain(&w).map(Tensor::shallow_clone).collect()
        } else {
            a.iter().map(Tensor::shallow_clone).collect()
        };
        let mut all = defined_or_zeros(gradients(&val_loss_t, &inputs, false)?, &inputs);
        drop(val_loss_t);
        let v = all.split_off(a.len());
        let direct = all;
        let mut fd_eps = None;
        let hyper = if fd {
            let v_norm = global_norm(&v)?;
            if !v_norm.is_finite() {
                return Err(Error::NonFinite {
                    what: "validation gradient norm",
                    value: v_norm,
                    step: self.steps_done,
                });
            }
            if v_norm == 0.0 {
                // No direction to differentiate along: the second-order term is zero.
                direct
            } else {
                let eps = self.config.fd_radius / v_norm;
                fd_eps = Some(eps);
                let second = self.mixed_term(snapshot, train, &w, &a, &v, eps, c)?;
                direct.iter().zip(&second).map(|(d, s)| d - s).collect()
            }
        } else {
            direct
        };
        check_finite(&hyper, "hypergradient", self.steps_done)?;
        Ok(Lookahead {
            hyper,
            train_loss,
            val_loss,
            fd_eps,
            inner_grads,
        })
    }

    /// The finite-difference second-order term `(g+ - g-) / (2 eps)` (times the inner learning
    /// rate in the DARTS form), times the inner step's clipping factor `clip`. Leaves the inner
    /// weights at `w'` (where they were).
    #[allow(clippy::too_many_arguments)]
    fn mixed_term(
        &mut self,
        snapshot: &SearchSnapshot,
        train: &mut LossFn<'_>,
        w: &[Tensor],
        a: &[Tensor],
        v: &[Tensor],
        eps: f64,
        clip: f64,
    ) -> Result<Vec<Tensor>> {
        let w_next: Vec<Tensor> = tch::no_grad(|| w.iter().map(|t| t.detach().copy()).collect());
        let (centre, factor) = match self.config.fd_form {
            FiniteDifferenceForm::Implicit => (&w_next, clip),
            FiniteDifferenceForm::Darts => (&snapshot.inner.params, self.inner.lr() * clip),
        };
        let mut at = |sign: f64, this: &mut Self| -> Result<Vec<Tensor>> {
            tch::no_grad(|| -> Result<()> {
                for ((leaf, c), d) in w.iter().zip(centre).zip(v) {
                    leaf.shallow_clone().f_copy_(&(c + d * (sign * eps)))?;
                }
                Ok(())
            })?;
            let what = if sign > 0.0 {
                "training loss at w + eps v"
            } else {
                "training loss at w - eps v"
            };
            let (loss, _) = this.evaluate(train, what, TRAIN_STREAM)?;
            Ok(defined_or_zeros(gradients(&loss, a, false)?, a))
        };
        let plus = at(1.0, self)?;
        let minus = at(-1.0, self)?;
        tch::no_grad(|| -> Result<()> {
            for (leaf, saved) in w.iter().zip(&w_next) {
                leaf.shallow_clone().f_copy_(saved)?;
            }
            Ok(())
        })?;
        Ok(plus
            .iter()
            .zip(&minus)
            .map(|(p, m)| (p - m) * (factor / (2.0 * eps)))
            .collect())
    }

    /// Clips inner gradients as the settings say; returns the factor applied (1 without
    /// clipping).
    fn clip(&self, grads: &mut [Tensor]) -> Result<f64> {
        Ok(match self.config.max_grad_norm {
            Some(max) => crate::optim::clip_grad_norm(grads, max)?.1,
            None => 1.0,
        })
    }

    /// Reseeds libtorch for `stream` of the current step, runs `f` and checks the loss is a
    /// finite scalar.
    fn evaluate(
        &self,
        f: &mut LossFn<'_>,
        what: &'static str,
        stream: u64,
    ) -> Result<(Tensor, f64)> {
        tch::manual_seed(derive_seed(self.config.seed, self.steps_done, stream));
        let loss = f()?;
        if loss.numel() != 1 {
            return Err(Error::ShapeMismatch {
                name: format!("{what} (must be a scalar)"),
                expected: vec![],
                found: loss.size(),
            });
        }
        let value = loss.f_double_value(&vec![0; loss.dim()])?;
        if !value.is_finite() {
            return Err(Error::NonFinite {
                what,
                value,
                step: self.steps_done,
            });
        }
        Ok((loss, value))
    }

    fn inner_leaves(&self) -> Vec<Tensor> {
        self.inner.params().iter().map(Param::tensor).collect()
    }

    fn put_back(&self, leaves: &[Tensor]) {
        for (p, t) in self.inner.params().iter().zip(leaves) {
            let _lookahead = p.replace(t.shallow_clone());
        }
    }
}

fn loss_error(which: &'static str, e: impl Into<BoxError>) -> Error {
    Error::Loss {
        which,
        source: e.into(),
    }
}

fn defined_or_zeros(grads: Vec<Tensor>, like: &[Tensor]) -> Vec<Tensor> {
    grads
        .into_iter()
        .zip(like)
        .map(|(g, p)| {
            if g.defined() {
                g
            } else {
                p.detach().zeros_like()
            }
        })
        .collect()
}

/// `sqrt(sum of squares)` over a list of tensors, in f64.
fn global_norm(tensors: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0;
    for t in tensors {
        sum += t.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
    }
    Ok(sum.sqrt())
}

fn check_finite(tensors: &[Tensor], what: &'static str, step: u64) -> Result<()> {
    let norm = global_norm(tensors)?;
    if norm.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            what,
            value: norm,
            step,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_use_kebab_case_names() {
        let config = SearchConfig {
            hypergradient: Hypergradient::FirstOrder,
            fd_form: FiniteDifferenceForm::Darts,
            ..SearchConfig::default()
        };
        let json = serde_json::to_string(&config).expect("serialize");
        assert!(json.contains(r#""hypergradient":"first-order""#), "{json}");
        assert!(json.contains(r#""fd_form":"darts""#), "{json}");
        let back: SearchConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, config);
        let partial: SearchConfig =
            serde_json::from_str(r#"{"hypergradient": "finite-difference"}"#).expect("defaults");
        assert_eq!(partial, SearchConfig::default());
        assert!(serde_json::from_str::<SearchConfig>(r#"{"mode": "exact"}"#).is_err());
    }

    #[test]
    fn seeds_differ_by_step_and_stream() {
        let s = derive_seed(1, 0, TRAIN_STREAM);
        assert_eq!(s, derive_seed(1, 0, TRAIN_STREAM));
        assert_ne!(s, derive_seed(1, 0, VAL_STREAM));
        assert_ne!(s, derive_seed(1, 1, TRAIN_STREAM));
        assert_ne!(s, derive_seed(2, 0, TRAIN_STREAM));
        assert!(s >= 0);
    }
}
