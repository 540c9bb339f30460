//! The exact one-step-unroll hypergradient through BERT and RoBERTa, in f64, checked against
//! central finite differences.
//!
//! With LoRA weights and head `w`, selection logits `a`, and one SGD inner step of rate `lr`:
//!
//! ```text
//! H(a) = L_val(w - lr * dL_train(w, a)/dw, a)
//! ```
//!
//! `dH/da` needs second-order autograd through the whole model (attention included): the
//! gradient of `L_train` is built with `create_graph`, the look-ahead weights are swapped into
//! the model's parameter slots, and `L_val` is differentiated back to `a`.

use std::path::Path;

use anyhow::{Result, ensure};
use autolora_core::bilevel::{BilevelSearch, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::{Gate, LoraConfig, NamedParam, Param};
use autolora_models::{LoadOptions, Model, ModelInput, Task, load_model};
use tch::{Device, Kind, Tensor};

const LR: f64 = 0.5;

/// libtorch's generator is process-global and the tests of this file draw from it: they run
/// one at a time so each sees the same numbers on every run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
const STEP: f64 = 1e-5;

struct Batch {
    ids: Tensor,
    mask: Tensor,
    labels: Tensor,
}

impl Batch {
    fn loss(&self, model: &dyn Model) -> Result<Tensor> {
        let out = model.forward_t(
            &ModelInput {
                input_ids: &self.ids,
                attention_mask: &self.mask,
                token_type_ids: None,
            },
            false,
        )?;
        Ok(model.loss(out.logits.as_ref().unwrap(), &self.labels)?)
    }
}

fn batch(b: i64, s: i64, pad_from: i64, pad_id: i64) -> Batch {
    let ids = Tensor::randint_low(3, 64, [b, s], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([b, s], (Kind::Int64, Device::Cpu));
    // The last row is padded from `pad_from` on, so masking is part of the graph.
    let _ = mask.get(b - 1).narrow(0, pad_from, s - pad_from).fill_(0);
    let ids = ids.where_self(&mask.ne(0), &Tensor::from(pad_id));
    let labels = Tensor::randint(3, [b], (Kind::Int64, Device::Cpu));
    Batch { ids, mask, labels }
}

/// `L_val` after one differentiable SGD step on `L_train`; the model's slots are restored.
fn unrolled_val_loss(
    model: &dyn Model,
    w: &[NamedParam],
    train: &Batch,
    val: &Batch,
    create_graph: bool,
) -> Result<Tensor> {
    let leaves: Vec<Tensor> = w.iter().map(|p| p.param.tensor()).collect();
    let l_train = train.loss(model)?;
    let grads = Tensor::run_backward(&[&l_train], &leaves, true, create_graph);
    for ((p, leaf), g) in w.iter().zip(&leaves).zip(&grads) {
        let _ = p.param.replace(leaf - g * LR);
    }
    let l_val = val.loss(model);
    for (p, leaf) in w.iter().zip(leaves) {
        let _ = p.param.replace(leaf);
    }
    l_val
}

fn set_random(param: &Param, std: f64) {
    let fresh =
        (Tensor::randn(param.size(), (Kind::Double, Device::Cpu)) * std).set_requires_grad(true);
    let _ = param.replace(fresh);
}

/// A tiny f64 model with gated LoRA on its default targets, non-zero `B` and non-uniform
/// selection logits, plus a training and a validation batch.
fn setup(dir: &str, pad_id: i64) -> Result<(Box<dyn Model>, Batch, Batch)> {
    tch::manual_seed(7);
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let options = LoadOptions {
        kind: Kind::Double,
        ..LoadOptions::default()
    };
    let mut model = load_model(
        &dir,
        Task::SequenceClassification { num_labels: 3 },
        &options,
    )?;
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
    };
    model.inject_lora(&[], &lora, Some(Gate::Softmax))?;
    // B = 0 at injection would make the adapters (and dL/da) vanish; draw them non-zero, and
    // move the selection away from uniform.
    for p in model.lora_params() {
        if p.name.ends_with("lora_B") {
            set_random(&p.param, 0.3);
        }
    }
    for p in model.selection_params() {
        set_random(&p.param, 1.0);
    }
    let train = batch(3, 6, 4, pad_id);
    let val = batch(2, 5, 3, pad_id);
    Ok((model, train, val))
}

fn check(dir: &str, pad_id: i64) -> Result<()> {
    let (model, train, val) = setup(dir, pad_id)?;
    let a = model.selection_params();
    let w = model.trainable_params();
    ensure!(w.iter().all(|p| p.param.tensor().kind() == Kind::Double));

    let logits: Vec<Tensor> = a.iter().map(|p| p.param.tensor()).collect();
    let h = unrolled_val_loss(model.as_ref(), &w, &train, &val, true)?;
    let exact = Tensor::run_backward(&[&h], &logits, false, false);

    // The same loss with the look-ahead weights held fixed: the first-order hypergradient.
    let first_order = {
        let leaves: Vec<Tensor> = w.iter().map(|p| p.param.tensor()).collect();
        let l_train = train.loss(model.as_ref())?;
        let grads = Tensor::run_backward(&[&l_train], &leaves, false, false);
        for ((p, leaf), g) in w.iter().zip(&leaves).zip(&grads) {
            let _ = p.param.replace((leaf - g * LR).detach());
        }
        let l_val = val.loss(model.as_ref())?;
        for (p, leaf) in w.iter().zip(leaves) {
            let _ = p.param.replace(leaf);
        }
        Tensor::run_backward(&[&l_val], &logits, false, false)
    };

    let mut worst: f64 = 0.0;
    let mut second_order_share: f64 = 0.0;
    for (m, logit) in logits.iter().enumerate() {
        for j in 0..logit.size()[0] {
            let value_at = |delta: f64| -> Result<f64> {
                tch::no_grad(|| {
                    let _ = logit.get(j).f_add_(&Tensor::from(delta));
                });
                let v = unrolled_val_loss(model.as_ref(), &w, &train, &val, false)?;
                tch::no_grad(|| {
                    let _ = logit.get(j).f_sub_(&Tensor::from(delta));
                });
                Ok(v.double_value(&[]))
            };
            let fd = (value_at(STEP)? - value_at(-STEP)?) / (2.0 * STEP);
            let ours = exact[m].double_value(&[j]);
            let fo = first_order[m].double_value(&[j]);
            worst = worst.max((ours - fd).abs() / fd.abs().max(1e-3));
            second_order_share = second_order_share.max((ours - fo).abs() / ours.abs().max(1e-3));
        }
    }
    println!(
        "{dir}: exact vs finite difference, worst relative error {worst:.2e}; \
         largest relative share of the second-order term {second_order_share:.2e}"
    );
    ensure!(worst < 1e-6, "exact hypergradient off by {worst:e}");
    // The unrolled path matters: otherwise this test would not exercise double backward.
    ensure!(
        second_order_share > 1e-2,
        "second-order term negligible ({second_order_share:e})"
    );
    Ok(())
}

#[test]
fn exact_hypergradient_through_bert() -> Result<()> {
    let _serial = serial();
    check("bert-tiny-seqcls", 0)
}

#[test]
fn exact_hypergradient_through_roberta() -> Result<()> {
    let _serial = serial();
    check("roberta-tiny-seqcls", 1)
}

/// autolora-core's search engine, exact mode with an SGD inner step, computes the same
/// hypergradient as the hand-written unroll above, and leaves the model as it found it.
#[test]
fn search_engine_exact_mode_runs_through_the_model() -> Result<()> {
    let _serial = serial();
    let (model, train, val) = setup("bert-tiny-seqcls", 0)?;
    let a = model.selection_params();
    let w = model.trainable_params();
    let logits: Vec<Tensor> = a.iter().map(|p| p.param.tensor()).collect();
    let h = unrolled_val_loss(model.as_ref(), &w, &train, &val, true)?;
    let manual = Tensor::run_backward(&[&h], &logits, false, false);

    let before: Vec<Tensor> = w.iter().map(|p| p.param.tensor().detach().copy()).collect();
    let inner = Optimizer::new(
        w.iter().map(|p| p.param.clone()).collect(),
        OptimConfig::sgd(LR),
    )?;
    let outer = Optimizer::new(
        a.iter().map(|p| p.param.clone()).collect(),
        OptimConfig::search_outer(),
    )?;
    let config = SearchConfig {
        hypergradient: Hypergradient::Exact,
        ..SearchConfig::default()
    };
    let mut search = BilevelSearch::new(inner, outer, config)?;
    let estimate =
        search.hypergradient(|| train.loss(model.as_ref()), || val.loss(model.as_ref()))?;
    let mut worst: f64 = 0.0;
    for (ours, theirs) in manual.iter().zip(&estimate.grads) {
        worst = worst.max((ours - theirs).abs().max().double_value(&[]));
    }
    println!("engine vs hand-written unroll: max |diff| = {worst:.2e}");
    ensure!(
        worst < 1e-10,
        "engine and manual exact hypergradients differ by {worst:e}"
    );
    for (p, old) in w.iter().zip(&before) {
        ensure!(p.param.tensor().equal(old), "{} changed", p.name);
    }
    // A full step moves the selection logits and keeps everything finite.
    let report = search.step(|| train.loss(model.as_ref()), || val.loss(model.as_ref()))?;
    ensure!(report.hypergradient_norm.is_finite() && report.hypergradient_norm > 0.0);
    Ok(())
}
