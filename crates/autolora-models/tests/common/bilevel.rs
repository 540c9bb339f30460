//! The setting of the hypergradient tests: a tiny f64 model with gated LoRA, random padded
//! batches, the validation loss after one unrolled SGD step
//!
//! ```text
//! H(a) = L_val(w - lr * dL_train(w, a)/dw, a)
//! ```
//!
//! and central finite differences of it in the selection logits `a`.

use anyhow::{Result, ensure};
use autolora_core::bilevel::{BilevelSearch, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::{Gate, LoraConfig, NamedParam, Param};
use autolora_models::{LoadOptions, Model, ModelInput, Task, load_model};
use tch::{Device, Kind, Tensor};

use super::fixture;

/// Rate of the unrolled SGD step.
pub const LR: f64 = 0.5;
/// Step of the central differences.
pub const STEP: f64 = 1e-5;

/// A batch of token ids with its mask and labels.
pub struct Batch {
    /// Token ids [b, s].
    pub ids: Tensor,
    /// Attention mask [b, s].
    pub mask: Tensor,
    /// Labels for the model's task.
    pub labels: Tensor,
}

impl Batch {
    /// `b` rows of `s` random token ids in 3..64; the last row is padded with `pad_id` from
    /// `pad_from` on, so masking is part of the graph. `labels(ids, mask)` draws or derives
    /// the labels after the ids are drawn.
    pub fn random(
        (b, s): (i64, i64),
        pad_from: i64,
        pad_id: i64,
        labels: impl FnOnce(&Tensor, &Tensor) -> Tensor,
    ) -> Batch {
        let ids = Tensor::randint_low(3, 64, [b, s], (Kind::Int64, Device::Cpu));
        let mask = Tensor::ones([b, s], (Kind::Int64, Device::Cpu));
        let _ = mask.get(b - 1).narrow(0, pad_from, s - pad_from).fill_(0);
        let ids = ids.where_self(&mask.ne(0), &Tensor::from(pad_id));
        let labels = labels(&ids, &mask);
        Batch { ids, mask, labels }
    }

    /// The model's task loss on this batch (eval mode).
    pub fn loss(&self, model: &dyn Model) -> Result<Tensor> {
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

/// Replaces `param` by a fresh f64 leaf drawn from N(0, std^2).
pub fn set_random(param: &Param, std: f64) {
    let fresh =
        (Tensor::randn(param.size(), (Kind::Double, Device::Cpu)) * std).set_requires_grad(true);
    let _ = param.replace(fresh);
}

/// Fixture `dir` in f64 with the head of `task` and gated LoRA (rank 4, alpha 8) on its
/// default targets, after seeding libtorch with `seed`. `B` is zero at injection, which would
/// make the adapters (and dL/da) vanish: it is drawn non-zero, and the selection logits are
/// moved away from uniform.
pub fn gated_f64_model(dir: &str, task: Task, seed: i64) -> Result<Box<dyn Model>> {
    tch::manual_seed(seed);
    tch::set_num_threads(1);
    let options = LoadOptions {
        kind: Kind::Double,
        ..LoadOptions::default()
    };
    let mut model = load_model(&fixture(dir), task, &options)?;
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
    };
    let adapted = model.inject_lora(&[], &lora, Some(Gate::Softmax))?;
    ensure!(!adapted.is_empty());
    for p in model.lora_params() {
        if p.name.ends_with("lora_B") {
            set_random(&p.param, 0.3);
        }
    }
    for p in model.selection_params() {
        set_random(&p.param, 1.0);
    }
    Ok(model)
}

/// `L_val` after one SGD step of rate [`LR`] on `L_train`; the model's slots are restored.
/// With `create_graph` the step is differentiable (the exact hypergradient flows through
/// it); without, the look-ahead weights are constants (the first-order hypergradient, and
/// plain values for finite differences).
pub fn unrolled_val_loss(
    model: &dyn Model,
    w: &[NamedParam],
    train: &Batch,
    val: &Batch,
    create_graph: bool,
) -> Result<Tensor> {
    let leaves: Vec<Tensor> = w.iter().map(|p| p.param.tensor()).collect();
    let l_train = train.loss(model)?;
    let grads = Tensor::run_backward(&[&l_train], &leaves, create_graph, create_graph);
    for ((p, leaf), g) in w.iter().zip(&leaves).zip(&grads) {
        let step = leaf - g * LR;
        let _ = p
            .param
            .replace(if create_graph { step } else { step.detach() });
    }
    let l_val = val.loss(model);
    for (p, leaf) in w.iter().zip(leaves) {
        let _ = p.param.replace(leaf);
    }
    l_val
}

/// autolora-core's search engine in exact mode, with an SGD inner step of rate [`LR`] on `w`
/// and the search's outer optimizer on `a`.
pub fn exact_engine(w: &[NamedParam], a: &[NamedParam]) -> Result<BilevelSearch> {
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
    Ok(BilevelSearch::new(inner, outer, config)?)
}

/// The central difference (step [`STEP`]) of `f` in component `j` of the leaf `logit`, which
/// is moved in place and put back.
pub fn central_difference(logit: &Tensor, j: i64, f: impl Fn() -> Result<f64>) -> Result<f64> {
    let value_at = |delta: f64| -> Result<f64> {
        tch::no_grad(|| {
            let _ = logit.get(j).f_add_(&Tensor::from(delta));
        });
        let v = f();
        tch::no_grad(|| {
            let _ = logit.get(j).f_sub_(&Tensor::from(delta));
        });
        v
    };
    Ok((value_at(STEP)? - value_at(-STEP)?) / (2.0 * STEP))
}
