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

mod common;

use anyhow::{Result, ensure};
use autolora_models::{Model, Task};
use common::bilevel::{
    Batch, central_difference, exact_engine, gated_f64_model, unrolled_val_loss,
};
use common::serial;
use tch::{Device, Kind, Tensor};

/// `b` rows of `s` tokens (the last padded with `pad_id` from `pad_from` on), random labels
/// of three classes.
fn batch(b: i64, s: i64, pad_from: i64, pad_id: i64) -> Batch {
    Batch::random((b, s), pad_from, pad_id, |_, _| {
        Tensor::randint(3, [b], (Kind::Int64, Device::Cpu))
    })
}

/// The model of [`gated_f64_model`] with a three-class sequence head, plus a training and a
/// validation batch.
fn setup(dir: &str, pad_id: i64) -> Result<(Box<dyn Model>, Batch, Batch)> {
    let model = gated_f64_model(dir, Task::SequenceClassification { num_labels: 3 }, 7)?;
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
    let h_first = unrolled_val_loss(model.as_ref(), &w, &train, &val, false)?;
    let first_order = Tensor::run_backward(&[&h_first], &logits, false, false);

    let mut worst: f64 = 0.0;
    let mut second_order_share: f64 = 0.0;
    for (m, logit) in logits.iter().enumerate() {
        for j in 0..logit.size()[0] {
            let fd = central_difference(logit, j, || {
                Ok(unrolled_val_loss(model.as_ref(), &w, &train, &val, false)?.double_value(&[]))
            })?;
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
    let mut search = exact_engine(&w, &a)?;
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
