//! autolora-core's search engine in exact mode (second-order autograd through one unrolled
//! SGD step) runs through the causal-LM forward of GPT-2 and Llama, in f64, and its
//! hypergradient matches central finite differences of the unrolled validation loss
//!
//! ```text
//! H(a) = L_val(w - lr * dL_train(w, a)/dw, a)
//! ```
//!
//! where `w` are the LoRA factors and `a` the selection logits. Causal masking, rotary
//! embeddings, grouped-query attention and the tied LM head are all inside the differentiated
//! graph.

mod common;

use anyhow::{Result, ensure};
use autolora_models::{IGNORE_INDEX, Task};
use common::bilevel::{
    Batch, central_difference, exact_engine, gated_f64_model, unrolled_val_loss,
};
use common::serial;
use tch::{Kind, Tensor};

/// `b` rows of `s` tokens (the last padded from `pad_from` on), labelled with themselves
/// (-100 on padding).
fn batch(b: i64, s: i64, pad_from: i64) -> Batch {
    Batch::random((b, s), pad_from, 0, |ids, mask| {
        ids.where_self(&mask.ne(0), &Tensor::from(IGNORE_INDEX))
    })
}

fn check(dir: &str) -> Result<()> {
    let _serial = serial();
    let model = gated_f64_model(dir, Task::CausalLm, 11)?;
    let train = batch(3, 6, 4);
    let val = batch(2, 5, 3);
    let a = model.selection_params();
    let w = model.trainable_params();
    ensure!(w.iter().all(|p| p.param.tensor().kind() == Kind::Double));

    let mut search = exact_engine(&w, &a)?;
    let estimate =
        search.hypergradient(|| train.loss(model.as_ref()), || val.loss(model.as_ref()))?;

    let mut worst: f64 = 0.0;
    let mut largest: f64 = 0.0;
    for (m, p) in a.iter().enumerate() {
        let logit = p.param.tensor();
        for j in 0..logit.size()[0] {
            let fd = central_difference(&logit, j, || {
                Ok(unrolled_val_loss(model.as_ref(), &w, &train, &val, false)?.double_value(&[]))
            })?;
            let ours = estimate.grads[m].double_value(&[j]);
            worst = worst.max((ours - fd).abs() / fd.abs().max(1e-3));
            largest = largest.max(ours.abs());
        }
    }
    println!(
        "{}: engine's exact hypergradient vs finite differences over {} modules, worst relative \
         error {worst:.2e} (largest component {largest:.2e})",
        common::fixture(dir).display(),
        a.len()
    );
    ensure!(worst < 1e-6, "exact hypergradient off by {worst:e}");
    ensure!(largest > 1e-4, "hypergradient vanishes ({largest:e})");
    // A full step moves the selection and keeps everything finite.
    let before: Vec<Tensor> = a.iter().map(|p| p.param.tensor().detach().copy()).collect();
    let report = search.step(|| train.loss(model.as_ref()), || val.loss(model.as_ref()))?;
    ensure!(report.hypergradient_norm.is_finite() && report.hypergradient_norm > 0.0);
    ensure!(
        a.iter()
            .zip(&before)
            .any(|(p, old)| !p.param.tensor().equal(old)),
        "the search step left the selection unchanged"
    );
    Ok(())
}

#[test]
fn exact_hypergradient_through_gpt2() -> Result<()> {
    check("gpt2-tiny-lm")
}

#[test]
fn exact_hypergradient_through_llama_gqa() -> Result<()> {
    check("llama-tiny-gqa")
}

#[test]
fn exact_hypergradient_through_tied_llama() -> Result<()> {
    check("llama-tiny-tied")
}

#[test]
fn exact_hypergradient_through_qwen2_with_a_sliding_layer() -> Result<()> {
    check("qwen2-tiny-sliding")
}

#[test]
fn exact_hypergradient_through_qwen3_head_norms() -> Result<()> {
    check("qwen3-tiny")
}

#[test]
fn exact_hypergradient_through_mistral_window() -> Result<()> {
    check("mistral-tiny")
}
