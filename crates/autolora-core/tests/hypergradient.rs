//! The search engine's hypergradients against closed forms, exact Hessian-vector products and
//! finite differences, in f64; and its state handling (roll-back, errors, determinism).

mod common;

use std::convert::Infallible;
use std::rc::Rc;

use common::*;

use autolora_core::bilevel::{Hypergradient, SearchConfig, TRAIN_STREAM, VAL_STREAM, derive_seed};
use autolora_core::optim::{OptimConfig, Optimizer, gradients};
use autolora_core::param::trainable;
use autolora_core::{Error, Param};
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------------------------------------
// Ridge regression with selection weights on the features.
//
//   L_train(w, a) = |X (a . w) - y|^2 / 2n + mu/2 |w|^2,   L_val(w, a) = |Z (a . w) - t|^2 / 2m
//
// One SGD step: w' = w - eta grad_w, grad_w = a . u + mu w with r = X (a . w) - y, u = X^T r / n.
// With q = Z^T (Z (a . w') - t) / m:
//   direct term   dL_val/da |_{w'} = w' . q,      v = dL_val/dw' = a . q,
//   d grad_w / da = J = diag(u) + diag(a) (X^T X / n) diag(w),
//   hypergradient = w' . q - eta J^T v.

struct Ridge {
    problem: Problem,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    t: Tensor,
    mu: f64,
}

fn ridge() -> Ridge {
    tch::manual_seed(11);
    let (n, m, d) = (12, 10, 4);
    let x = Tensor::randn([n, d], F64);
    let y = Tensor::randn([n], F64);
    let z = Tensor::randn([m, d], F64);
    let t = Tensor::randn([m], F64);
    let w = trainable(Tensor::randn([d], F64));
    let a = trainable(Tensor::rand([d], F64) + 0.5);
    let mu = 0.1;
    let train = {
        let (w, a, x, y) = (w.clone(), a.clone(), x.shallow_clone(), y.shallow_clone());
        Rc::new(move || {
            let (w, a) = (w.tensor(), a.tensor());
            let r = x.mv(&(&a * &w)) - &y;
            r.square().sum(Kind::Double) / (2.0 * n as f64)
                + w.square().sum(Kind::Double) * (mu / 2.0)
        }) as Rc<dyn Fn() -> Tensor>
    };
    let val = {
        let (w, a, z, t) = (w.clone(), a.clone(), z.shallow_clone(), t.shallow_clone());
        Rc::new(move || {
            let r = z.mv(&(a.tensor() * w.tensor())) - &t;
            r.square().sum(Kind::Double) / (2.0 * m as f64)
        }) as Rc<dyn Fn() -> Tensor>
    };
    Ridge {
        problem: Problem {
            inner: vec![w],
            outer: vec![a],
            train,
            val,
        },
        x,
        y,
        z,
        t,
        mu,
    }
}

impl Ridge {
    /// (direct term, second-order term) of the closed form above; the hypergradient is their sum.
    fn analytic(&self, eta: f64) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let w = self.problem.inner[0].tensor().detach();
        let a = self.problem.outer[0].tensor().detach();
        let n = self.x.size()[0] as f64;
        let m = self.z.size()[0] as f64;
        let r = self.x.mv(&(&a * &w)) - &self.y;
        let u = self.x.tr().mv(&r) / n;
        let grad_w = &a * &u + &w * self.mu;
        let w_next = &w - grad_w * eta;
        let q = self.z.tr().mv(&(self.z.mv(&(&a * &w_next)) - &self.t)) / m;
        let direct = &w_next * &q;
        let v = &a * &q;
        let j = u.diag(0) + a.unsqueeze(1) * (self.x.tr().mm(&self.x) / n) * w.unsqueeze(0);
        let second = -(j.tr().mv(&v) * eta);
        (direct, second)
    }
}

#[test]
fn exact_mode_equals_analytic_one_step_unroll() {
    let _serial = serial();
    let ridge = ridge();
    let eta = 0.05;
    let exact = ridge
        .problem
        .hypergradient(OptimConfig::sgd(eta), config(Hypergradient::Exact));
    let (direct, second) = ridge.analytic(eta);
    let diff = max_abs_diff(&exact, &[direct + second]);
    eprintln!("exact vs analytic one-step unroll: max abs difference {diff:e}");
    assert!(diff < 1e-6, "exact vs analytic: {diff:e}");
}

#[test]
fn first_order_is_the_direct_term_and_misses_the_second_order_term() {
    let _serial = serial();
    let ridge = ridge();
    let eta = 0.05;
    let fo = ridge
        .problem
        .hypergradient(OptimConfig::sgd(eta), config(Hypergradient::FirstOrder));
    let exact = ridge
        .problem
        .hypergradient(OptimConfig::sgd(eta), config(Hypergradient::Exact));
    let (direct, second) = ridge.analytic(eta);
    assert!(max_abs_diff(&fo, std::slice::from_ref(&direct)) < 1e-10);
    // exact - first-order is exactly the second-order term, and that term is not negligible.
    let gap: Vec<Tensor> = vec![&exact[0] - &fo[0]];
    assert!(max_abs_diff(&gap, std::slice::from_ref(&second)) < 1e-10);
    assert!(max_abs(&[second]) > 1e-3 * max_abs(&[direct]));
}

#[test]
fn darts_form_equals_exact_mode_on_ridge() {
    let _serial = serial();
    // dL_train/da is quadratic in w here, so the central difference is exact up to rounding.
    let ridge = ridge();
    let eta = 0.05;
    let fd = ridge.problem.hypergradient(OptimConfig::sgd(eta), darts());
    let exact = ridge
        .problem
        .hypergradient(OptimConfig::sgd(eta), config(Hypergradient::Exact));
    let rel = max_abs_diff(&fd, &exact) / max_abs(&exact);
    eprintln!("darts vs exact: relative difference {rel:e}");
    assert!(rel < 1e-7, "darts vs exact: relative {rel:e}");
}

#[test]
fn exact_mode_equals_central_difference_of_unrolled_loss_through_adam() {
    let _serial = serial();
    // Independent of any autograd: perturb one selection variable, redo the Adam look-ahead,
    // evaluate the validation loss; compare with the exact mode's derivative.
    let ridge = ridge();
    let inner = OptimConfig::adam(0.05);
    let exact = ridge
        .problem
        .hypergradient(inner, config(Hypergradient::Exact));
    let unrolled = || -> f64 {
        let mut opt = Optimizer::new(ridge.problem.inner.clone(), inner).unwrap();
        let snap = opt.snapshot();
        opt.minimize(&(ridge.problem.train)()).unwrap();
        let loss = tch::no_grad(|| (ridge.problem.val)()).double_value(&[]);
        opt.restore(&snap).unwrap();
        loss
    };
    let a = ridge.problem.outer[0].tensor();
    let h = 1e-5;
    for j in 0..a.size()[0] {
        let shift = |delta: f64| {
            let _guard = tch::no_grad_guard();
            let _ = a.get(j).f_add_scalar_(delta).unwrap();
        };
        shift(h);
        let plus = unrolled();
        shift(-2.0 * h);
        let minus = unrolled();
        shift(h);
        let numeric = (plus - minus) / (2.0 * h);
        let analytic = exact[0].double_value(&[j]);
        assert!(
            (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
            "component {j}: central difference {numeric}, exact mode {analytic}"
        );
    }
}

/// The authors' estimate with the finite difference replaced by an exact Hessian-vector
/// product (double backward) at w', using the same dropout seeds as the engine.
fn implicit_reference(problem: &Problem, inner: OptimConfig, seed: u64) -> Vec<Tensor> {
    let mut opt = Optimizer::new(problem.inner.clone(), inner).unwrap();
    let snap = opt.snapshot();
    let w: Vec<Tensor> = problem.inner.iter().map(Param::tensor).collect();
    let a: Vec<Tensor> = problem.outer.iter().map(Param::tensor).collect();
    tch::manual_seed(derive_seed(seed, 0, TRAIN_STREAM));
    opt.minimize(&(problem.train)()).unwrap();
    tch::manual_seed(derive_seed(seed, 0, VAL_STREAM));
    let inputs: Vec<Tensor> = a.iter().chain(&w).map(Tensor::shallow_clone).collect();
    let mut all = gradients(&(problem.val)(), &inputs, false).unwrap();
    let v = all.split_off(a.len());
    tch::manual_seed(derive_seed(seed, 0, TRAIN_STREAM));
    let gw = gradients(&(problem.train)(), &w, true).unwrap();
    let dot = gw
        .iter()
        .zip(&v)
        .map(|(g, v)| (g * v).sum(Kind::Double))
        .fold(Tensor::zeros([], F64), |s, x| s + x);
    let mixed = gradients(&dot, &a, false).unwrap();
    opt.restore(&snap).unwrap();
    all.iter().zip(&mixed).map(|(d, m)| d - m).collect()
}

#[test]
fn authors_form_equals_exact_hessian_vector_product_on_ridge() {
    let _serial = serial();
    let ridge = ridge();
    let inner = OptimConfig::adam(0.05);
    let fd = ridge
        .problem
        .hypergradient(inner, config(Hypergradient::FiniteDifference));
    let reference = implicit_reference(&ridge.problem, inner, 7);
    let rel = max_abs_diff(&fd, &reference) / max_abs(&reference);
    eprintln!("authors' form vs HVP: relative difference {rel:e}");
    assert!(rel < 1e-7, "authors' form vs HVP: relative {rel:e}");
}

#[test]
fn darts_form_approximates_exact_mode_with_dropout() {
    let _serial = serial();
    // Same dropout mask for w + eps v and w - eps v (and the inner step), else the difference
    // would divide mask noise by 2 eps. Nonlinear: central-difference error O(eps^2) (measured
    // about 1e-6 relative here).
    let net = lora_net(false, 0.2, Kind::Double, Device::Cpu);
    let inner = OptimConfig::sgd(0.1);
    let fd = net.problem.hypergradient(inner, darts());
    let exact = net
        .problem
        .hypergradient(inner, config(Hypergradient::Exact));
    let rel = max_abs_diff(&fd, &exact) / max_abs(&exact);
    eprintln!("darts vs exact: relative difference {rel:e}");
    assert!(rel < 1e-4, "darts vs exact: relative {rel:e}");
}

#[test]
fn authors_form_equals_exact_hessian_vector_product_with_dropout() {
    let _serial = serial();
    // Nonlinear in w: the central difference carries an O(eps^2) truncation error (measured
    // about 1e-5 relative here), hence a looser tolerance than on the quadratic ridge problem.
    let net = lora_net(false, 0.2, Kind::Double, Device::Cpu);
    let inner = OptimConfig::adam(0.01);
    let fd = net
        .problem
        .hypergradient(inner, config(Hypergradient::FiniteDifference));
    let reference = implicit_reference(&net.problem, inner, 7);
    let rel = max_abs_diff(&fd, &reference) / max_abs(&reference);
    eprintln!("authors' form vs HVP: relative difference {rel:e}");
    assert!(rel < 1e-4, "authors' form vs HVP: relative {rel:e}");
}

#[test]
fn exact_mode_through_adam_has_no_nan_when_b_is_zero() {
    let _serial = serial();
    // B = 0: A's first gradient is exactly 0, so Adam's v = 0 for all of A.
    let net = lora_net(true, 0.1, Kind::Float, Device::Cpu);
    let mut engine = net
        .problem
        .engine(OptimConfig::adam(3e-4), config(Hypergradient::Exact));
    let (train, val) = net.problem.losses();
    let estimate = engine.hypergradient(train, val).unwrap();
    let values = Vec::<f64>::try_from(estimate.grads[0].to_kind(Kind::Double)).unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    for _ in 0..3 {
        let (train, val) = net.problem.losses();
        let report = engine.step(train, val).unwrap();
        assert!(report.hypergradient_norm.is_finite());
    }
    assert!(
        net.problem
            .values()
            .iter()
            .all(|t| t.isfinite().all().int64_value(&[]) == 1)
    );
}

#[test]
fn hypergradient_leaves_the_state_bit_exact() {
    let _serial = serial();
    for mode in [
        config(Hypergradient::FirstOrder),
        config(Hypergradient::FiniteDifference),
        darts(),
        config(Hypergradient::Exact),
    ] {
        let net = lora_net(false, 0.1, Kind::Float, Device::Cpu);
        let mut engine = net.problem.engine(OptimConfig::adam(1e-2), mode);
        // One real step first, so the moments are non-zero.
        let (train, val) = net.problem.losses();
        engine.step(train, val).unwrap();
        let before = net.problem.values();
        let snapshot = engine.snapshot();
        let (train, val) = net.problem.losses();
        engine.hypergradient(train, val).unwrap();
        assert!(bit_equal(&before, &net.problem.values()), "{mode:?}");
        assert!(bit_equal(
            &snapshot.inner.exp_avg,
            &engine.snapshot().inner.exp_avg
        ));
        assert!(net.problem.inner.iter().all(|p| p.tensor().is_leaf()));
    }
}

#[test]
fn non_finite_validation_loss_rolls_back_everything() {
    let _serial = serial();
    let net = lora_net(false, 0.1, Kind::Float, Device::Cpu);
    let mut engine = net
        .problem
        .engine(OptimConfig::adam(1e-2), config(Hypergradient::Exact));
    let (train, val) = net.problem.losses();
    engine.step(train, val).unwrap();
    let before = net.problem.values();
    let (train, _) = net.problem.losses();
    let val = net.problem.val.clone();
    let err = engine
        .step(train, move || Ok::<_, Infallible>(val() * f64::NAN))
        .unwrap_err();
    assert!(matches!(err, Error::NonFinite { step: 1, .. }), "{err}");
    assert!(bit_equal(&before, &net.problem.values()));
    assert_eq!(engine.steps_done(), 1);
    assert!(net.problem.inner.iter().all(|p| p.tensor().is_leaf()));
}

#[test]
fn rollback_redoes_the_inner_step_with_the_new_selection() {
    let _serial = serial();
    for mode in [Hypergradient::FiniteDifference, Hypergradient::Exact] {
        let net = lora_net(false, 0.1, Kind::Float, Device::Cpu);
        let inner = OptimConfig::adam(1e-2);
        let start = net.problem.values();
        let mut engine = net.problem.engine(inner, config(mode));
        let (train, val) = net.problem.losses();
        engine.step(train, val).unwrap();
        let after = net.problem.values();
        let n = net.problem.inner.len();
        assert!(
            !bit_equal(&start[n..], &after[n..]),
            "the selection must move"
        );
        // Reference: the start weights, the new selection, one inner step with the step's seed.
        tch::no_grad(|| {
            for (p, s) in net.problem.inner.iter().zip(&start) {
                p.tensor().copy_(s);
            }
        });
        let mut opt = Optimizer::new(net.problem.inner.clone(), inner).unwrap();
        tch::manual_seed(derive_seed(7, 0, TRAIN_STREAM));
        opt.minimize(&(net.problem.train)()).unwrap();
        assert!(
            bit_equal(&after[..n], &net.problem.values()[..n]),
            "{mode:?}"
        );
    }
}

#[test]
fn without_rollback_the_lookahead_step_is_kept() {
    let _serial = serial();
    // Exact and first-order modes keep the same look-ahead step (taken with the old selection).
    let mut kept = Vec::new();
    for mode in [Hypergradient::FirstOrder, Hypergradient::Exact] {
        let net = lora_net(false, 0.1, Kind::Float, Device::Cpu);
        let search = SearchConfig {
            rollback: false,
            ..config(mode)
        };
        let mut engine = net.problem.engine(OptimConfig::adam(1e-2), search);
        let (train, val) = net.problem.losses();
        let report = engine.step(train, val).unwrap();
        assert_eq!(report.redo_train_loss, None);
        kept.push(net.problem.values().into_iter().take(3).collect::<Vec<_>>());
    }
    assert!(bit_equal(&kept[0], &kept[1]));
}

#[test]
fn a_step_is_deterministic_given_the_seed() {
    let _serial = serial();
    let run = |seed: u64| {
        let net = lora_net(false, 0.3, Kind::Float, Device::Cpu);
        let search = SearchConfig {
            seed,
            ..config(Hypergradient::FiniteDifference)
        };
        let mut engine = net.problem.engine(OptimConfig::adam(1e-2), search);
        for _ in 0..3 {
            // Draw from torch's generator between steps: the engine's reseeding must not care.
            let _ = Tensor::rand([3], F64);
            let (train, val) = net.problem.losses();
            engine.step(train, val).unwrap();
        }
        net.problem.values()
    };
    assert!(bit_equal(&run(1), &run(1)));
    assert!(
        !bit_equal(&run(1), &run(2)),
        "dropout masks must depend on the seed"
    );
}

#[test]
fn resumed_run_reproduces_the_steps() {
    let _serial = serial();
    let net = lora_net(false, 0.3, Kind::Float, Device::Cpu);
    let search = config(Hypergradient::FiniteDifference);
    let mut engine = net.problem.engine(OptimConfig::adam(1e-2), search);
    let (train, val) = net.problem.losses();
    engine.step(train, val).unwrap();
    let snapshot = engine.snapshot();
    let (train, val) = net.problem.losses();
    let first = engine.step(train, val).unwrap();
    let after_first = net.problem.values();
    // "Resume": restore the saved tensors and moments, then repeat step 1.
    engine.restore(&snapshot).unwrap();
    assert_eq!(engine.steps_done(), 1);
    let (train, val) = net.problem.losses();
    let again = engine.step(train, val).unwrap();
    assert_eq!(first, again);
    assert!(bit_equal(&after_first, &net.problem.values()));
}

#[test]
fn a_search_lowers_the_validation_loss_and_moves_the_selection() {
    let _serial = serial();
    let net = lora_net(false, 0.0, Kind::Float, Device::Cpu);
    let mut engine = net
        .problem
        .engine(OptimConfig::adam(1e-2), config(Hypergradient::Exact));
    let mut reports = Vec::new();
    for _ in 0..30 {
        let (train, val) = net.problem.losses();
        reports.push(engine.step(train, val).unwrap());
    }
    assert!(reports[29].val_loss < reports[0].val_loss, "{reports:?}");
    let weights = net
        .layer
        .adapter()
        .unwrap()
        .gate
        .as_ref()
        .unwrap()
        .weights();
    let sum = weights.sum(Kind::Float).double_value(&[]);
    assert!((sum - 1.0).abs() < 1e-5);
}

/// With `max_grad_norm` below the gradient's norm, an SGD inner step of rate `eta` is the
/// unclipped step of rate `eta c` (`c = max / (|g| + 1e-6)`): the exact and the DARTS
/// hypergradients through the clipped look-ahead equal the unclipped ones at that rate, and
/// a clipping norm above |g| changes nothing.
#[test]
fn clipped_inner_steps_are_steps_of_the_scaled_rate() {
    let _serial = serial();
    let ridge = ridge();
    let eta = 0.05;
    let w = ridge.problem.inner[0].tensor();
    let g = {
        let loss = (ridge.problem.train)();
        autolora_core::optim::gradients(&loss, &[w], false).unwrap()
    };
    let norm = g[0].norm().double_value(&[]);
    let max = norm / 3.0;
    let c = max / (norm + 1e-6);
    for base in [config(Hypergradient::Exact), darts()] {
        let clipped = SearchConfig {
            max_grad_norm: Some(max),
            ..base
        };
        let ours = ridge.problem.hypergradient(OptimConfig::sgd(eta), clipped);
        let scaled = ridge.problem.hypergradient(OptimConfig::sgd(eta * c), base);
        let rel = max_abs_diff(&ours, &scaled) / max_abs(&scaled);
        eprintln!(
            "{:?}: clipped vs scaled rate, relative {rel:e}",
            base.hypergradient
        );
        assert!(rel < 1e-7, "{rel:e}");
        let loose = SearchConfig {
            max_grad_norm: Some(norm * 10.0),
            ..base
        };
        let unclipped = ridge.problem.hypergradient(OptimConfig::sgd(eta), base);
        let same = ridge.problem.hypergradient(OptimConfig::sgd(eta), loose);
        assert!(max_abs_diff(&same, &unclipped) == 0.0);
    }
}
