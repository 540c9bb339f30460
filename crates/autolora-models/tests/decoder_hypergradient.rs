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

use std::path::Path;

use anyhow::{Result, ensure};
use autolora_core::bilevel::{BilevelSearch, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::{Gate, LoraConfig, NamedParam, Param};
use autolora_models::{IGNORE_INDEX, LoadOptions, Model, ModelInput, Task, load_model};
use tch::{Device, Kind, Tensor};

const LR: f64 = 0.5;
const STEP: f64 = 1e-5;

/// libtorch's generator is process-global: the tests run one at a time so each sees the same
/// numbers on every run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Batch {
    ids: Tensor,
    mask: Tensor,
    labels: Tensor,
}

impl Batch {
    /// `b` rows of `s` random tokens; the last row is padded from `pad_from` on.
    fn random(b: i64, s: i64, pad_from: i64) -> Batch {
        let ids = Tensor::randint_low(3, 64, [b, s], (Kind::Int64, Device::Cpu));
        let mask = Tensor::ones([b, s], (Kind::Int64, Device::Cpu));
        let _ = mask.get(b - 1).narrow(0, pad_from, s - pad_from).fill_(0);
        let ids = ids.where_self(&mask.ne(0), &Tensor::from(0i64));
        let labels = ids.where_self(&mask.ne(0), &Tensor::from(IGNORE_INDEX));
        Batch { ids, mask, labels }
    }

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

/// `L_val` after one SGD step on `L_train` (no graph kept); the model's slots are restored.
fn unrolled_val_loss(
    model: &dyn Model,
    w: &[NamedParam],
    train: &Batch,
    val: &Batch,
) -> Result<f64> {
    let leaves: Vec<Tensor> = w.iter().map(|p| p.param.tensor()).collect();
    let l_train = train.loss(model)?;
    let grads = Tensor::run_backward(&[&l_train], &leaves, false, false);
    for ((p, leaf), g) in w.iter().zip(&leaves).zip(&grads) {
        let _ = p.param.replace((leaf - g * LR).detach());
    }
    let l_val = val.loss(model).map(|l| l.double_value(&[]));
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

fn check(dir: &str) -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed(11);
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let options = LoadOptions {
        kind: Kind::Double,
        ..LoadOptions::default()
    };
    let mut model = load_model(&dir, Task::CausalLm, &options)?;
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
    };
    let adapted = model.inject_lora(&[], &lora, Some(Gate::Softmax))?;
    ensure!(!adapted.is_empty());
    // Non-zero B (else dL/da vanishes) and non-uniform selection logits.
    for p in model.lora_params() {
        if p.name.ends_with("lora_B") {
            set_random(&p.param, 0.3);
        }
    }
    for p in model.selection_params() {
        set_random(&p.param, 1.0);
    }
    let train = Batch::random(3, 6, 4);
    let val = Batch::random(2, 5, 3);
    let a = model.selection_params();
    let w = model.trainable_params();
    ensure!(w.iter().all(|p| p.param.tensor().kind() == Kind::Double));

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
    let mut largest: f64 = 0.0;
    for (m, p) in a.iter().enumerate() {
        let logit = p.param.tensor();
        for j in 0..logit.size()[0] {
            let value_at = |delta: f64| -> Result<f64> {
                tch::no_grad(|| {
                    let _ = logit.get(j).f_add_(&Tensor::from(delta));
                });
                let v = unrolled_val_loss(model.as_ref(), &w, &train, &val);
                tch::no_grad(|| {
                    let _ = logit.get(j).f_sub_(&Tensor::from(delta));
                });
                v
            };
            let fd = (value_at(STEP)? - value_at(-STEP)?) / (2.0 * STEP);
            let ours = estimate.grads[m].double_value(&[j]);
            worst = worst.max((ours - fd).abs() / fd.abs().max(1e-3));
            largest = largest.max(ours.abs());
        }
    }
    println!(
        "{}: engine's exact hypergradient vs finite differences over {} modules, worst relative \
         error {worst:.2e} (largest component {largest:.2e})",
        dir.display(),
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
