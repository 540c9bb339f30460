//! `autolora train`: LoRA training with fixed per-module ranks.
//!
//! The ranks come from a `ranks.json` (AutoLoRA's retrain) or are the same everywhere (plain
//! LoRA). Each module's scale is `lora_alpha / r_l`. The retrain starts from scratch (the
//! paper), or with `warm_start` from the search's weights pruned to the kept components.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::derive_seed;
use autolora_core::optim::{LrSchedule, OptimConfig, Optimizer, clip_grad_norm, gradients};
use autolora_core::{Adapter, LoraConfig, NamedParam};
use autolora_data::rng::stream;
use autolora_models::{AttentionImpl, Model};
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::evaluate::{self, Scores};
use crate::progress::Progress;
use crate::session::Session;

/// The fixed ranks of a training run: module path -> rank (modules absent are not adapted).
pub type RankPlan = BTreeMap<String, i64>;

/// A trained model and its scores.
pub struct TrainOutcome {
    /// The trained model (adapters attached, not merged).
    pub model: Box<dyn Model>,
    /// Dev (and test, when the task has one) scores.
    pub scores: Scores,
    /// Trainable parameters: LoRA factors and task head.
    pub trainable_params: i64,
    /// LoRA factors alone.
    pub lora_params: i64,
    /// Wall time of the training loop.
    pub seconds: f64,
}

#[derive(Serialize)]
struct TrainRecord {
    step: u64,
    loss: f64,
    lr: f64,
    tokens_per_second: f64,
    /// The gradients' norm before clipping (only with `train.max_grad_norm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    grad_norm: Option<f64>,
}

/// The best dev score so far and how many evaluations have not beaten it: what
/// `train.keep_best` and `train.patience` decide on. Saved in the checkpoint, so a resumed run
/// decides as the uninterrupted one.
struct BestWatch {
    higher_is_better: bool,
    best: Option<f64>,
    stale: u64,
    stopped: bool,
}

impl BestWatch {
    fn new(higher_is_better: bool) -> Self {
        BestWatch {
            higher_is_better,
            best: None,
            stale: 0,
            stopped: false,
        }
    }

    /// Whether `score` is better than the best so far.
    fn beats(&self, score: f64) -> bool {
        match self.best {
            None => true,
            Some(best) if self.higher_is_better => score > best,
            Some(best) => score < best,
        }
    }

    /// Records an evaluation; returns whether it is the new best.
    fn record(&mut self, score: f64, patience: Option<u64>) -> bool {
        let better = self.beats(score);
        if better {
            self.best = Some(score);
            self.stale = 0;
        } else {
            self.stale += 1;
            self.stopped = patience.is_some_and(|p| self.stale >= p);
        }
        better
    }

    fn save(&self, ckpt: &mut Checkpoint) {
        if let Some(best) = self.best {
            ckpt.set_value("best", best);
        }
        ckpt.set_value("stale", self.stale as f64);
        ckpt.set_value("stopped", f64::from(u8::from(self.stopped)));
    }

    fn restore(&mut self, ckpt: &Checkpoint) {
        self.best = ckpt.value("best");
        self.stale = ckpt.value("stale").unwrap_or(0.0) as u64;
        self.stopped = ckpt.value("stopped").is_some_and(|s| s != 0.0);
    }
}

/// `a + b` where either may be undefined (a parameter the loss does not reach).
fn add_defined(a: &tch::Tensor, b: tch::Tensor) -> tch::Tensor {
    match (a.defined(), b.defined()) {
        (true, true) => a + b,
        (true, false) => a.shallow_clone(),
        _ => b,
    }
}

/// Where a warm-started retrain starts: the search's adapters pruned to their kept
/// components, and the search's task head.
pub struct WarmStart {
    /// Per module, the pruned adapter (scale `alpha / r`).
    pub adapters: BTreeMap<String, Adapter>,
    /// The head's tensors by parameter name.
    pub head: BTreeMap<String, tch::Tensor>,
}

/// Trains adapters of the ranks in `plan` into a fresh model. `init` optionally supplies the
/// starting point (warm start); `name` names the run's files (`train`, `baseline-r4`, ...).
pub fn run(
    session: &Session,
    plan: &RankPlan,
    init: Option<&WarmStart>,
    name: &str,
    resume: bool,
) -> Result<TrainOutcome> {
    let config = &session.config;
    let model = prepared_model(session, plan, init)?;
    let params = model.trainable_params();
    let trainable_params: i64 = params.iter().map(|p| p.param.numel()).sum();
    let lora_params: i64 = model.lora_params().iter().map(|p| p.param.numel()).sum();

    let train = &config.train;
    let steps = train.steps;
    let schedule = LrSchedule::with_ratio(train.lr, train.warmup_ratio, steps, train.schedule);
    let mut optimizer = optimizer(train, &params)?;

    let checkpoint_path = session
        .out_dir
        .join(format!("checkpoints/{name}.safetensors"));
    let best_path = session
        .out_dir
        .join(format!("checkpoints/{name}-best.safetensors"));
    let metrics_path = session.out_dir.join(format!("{name}_metrics.jsonl"));
    let mut step = 0;
    let mut watch = BestWatch::new(session.data.spec.higher_is_better());
    if resume && checkpoint_path.exists() {
        let ckpt = Checkpoint::load(&checkpoint_path)?;
        ckpt.load_params("weights", &params)?;
        ckpt.load_optimizer("optimizer", &mut optimizer)?;
        step = ckpt.step()?;
        watch.restore(&ckpt);
        crate::metrics::truncate_after(&metrics_path, step)?;
        tracing::info!(step, "{name} resumed");
    } else {
        // Nothing to resume from: start the metrics afresh too.
        crate::metrics::reset(&metrics_path)?;
    }

    let mut progress = Progress::new(name, steps, step);
    let started = Instant::now();
    let mut tokens = 0i64;
    let accum = train.grad_accum.max(1);
    while step < steps && !watch.stopped {
        let lr = schedule.lr_at(step);
        optimizer.set_lr(lr)?;
        // One optimizer step from `accum` batches: the gradients of each loss / accum summed
        // (with one batch, exactly the plain step).
        let tensors: Vec<tch::Tensor> = params.iter().map(|p| p.param.tensor()).collect();
        let mut grads: Vec<tch::Tensor> = Vec::new();
        let mut value = 0.0;
        for micro in 0..accum {
            let index = step * accum + micro;
            tch::manual_seed(derive_seed(config.run.seed, index, stream::TRAIN_DROPOUT));
            let batch = session.data.train.at(index);
            let mut loss = batch.loss(model.as_ref(), true)?;
            if accum > 1 {
                loss = loss.f_div_scalar(accum as f64)?;
            }
            value += loss.double_value(&[]);
            tokens += batch.tokens;
            let micro_grads = gradients(&loss, &tensors, false)?;
            grads = if grads.is_empty() {
                micro_grads
            } else {
                grads
                    .iter()
                    .zip(micro_grads)
                    .map(|(a, b)| add_defined(a, b))
                    .collect()
            };
        }
        if !value.is_finite() {
            bail!(
                "{name}: the loss became {value} at step {step}; the last good checkpoint is {}. \
                 Every step is a function of (seed, step), so resuming unchanged repeats this; \
                 resume with a lower learning rate: `--resume --set train.lr=... \
                 --accept-change train.lr`",
                checkpoint_path.display()
            );
        }
        let grad_norm = match train.max_grad_norm {
            Some(max) => Some(clip_grad_norm(&mut grads, max)?.0),
            None => None,
        };
        optimizer.step(&grads)?;
        step += 1;
        let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.advance(&format!("loss {value:.4} lr {lr:.2e} {rate:.0} tok/s"));
        crate::metrics::append(
            &metrics_path,
            &TrainRecord {
                step: step - 1,
                loss: value,
                lr,
                tokens_per_second: rate,
                grad_norm,
            },
        )?;
        if train.eval_every > 0 && step % train.eval_every == 0 && step < steps {
            let dev = evaluate::split(model.as_ref(), &session.data.evals[0], &session.data.spec)?;
            let score = dev.get(session.data.spec.metric_name()).copied();
            crate::metrics::append(
                &metrics_path,
                &serde_json::json!({"step": step - 1, "dev": dev}),
            )?;
            if let Some(score) = score
                && watch.record(score, train.patience)
                && train.keep_best
            {
                let mut best = Checkpoint::default();
                best.set_step(step);
                best.put_params("weights", &params);
                best.save(&best_path)?;
            }
            if watch.stopped {
                println!(
                    "{name}: no better dev {} in {} evaluations; stopping at step {step}",
                    session.data.spec.metric_name(),
                    watch.stale
                );
            }
        }
        if step % config.run.checkpoint_every.max(1) == 0 || step == steps || watch.stopped {
            let mut ckpt = Checkpoint::default();
            ckpt.set_step(step);
            ckpt.put_params("weights", &params);
            ckpt.put_optimizer("optimizer", &optimizer);
            watch.save(&mut ckpt);
            ckpt.save(&checkpoint_path)?;
        }
    }
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    // The best evaluation's weights, where they beat the last ones.
    if train.keep_best && best_path.exists() {
        let best = Checkpoint::load(&best_path)?;
        let last = evaluate::split(model.as_ref(), &session.data.evals[0], &session.data.spec)?;
        let last = last.get(session.data.spec.metric_name()).copied();
        if last.is_none_or(|last| watch.beats(last)) {
            best.load_params("weights", &params)?;
            println!(
                "{name}: ending with the best evaluation's weights (step {})",
                best.step()?
            );
        }
    }
    let scores = evaluate::all(model.as_ref(), session)?;
    Ok(TrainOutcome {
        model,
        scores,
        trainable_params,
        lora_params,
        seconds,
    })
}

/// The training optimizer of the run file's settings over `params`; `autolora bench` times
/// the same one.
pub fn optimizer(train: &TrainConfig, params: &[NamedParam]) -> Result<Optimizer> {
    Ok(Optimizer::new(
        crate::search::slots(params),
        OptimConfig {
            kind: train.optimizer,
            lr: train.lr,
            weight_decay: train.weight_decay,
            ..OptimConfig::default()
        },
    )?)
}

/// A fresh model with the adapters of `plan` attached, before any step; with `init`, the
/// warm start's adapters and head.
pub fn prepared_model(
    session: &Session,
    plan: &RankPlan,
    init: Option<&WarmStart>,
) -> Result<Box<dyn Model>> {
    let mut model = session.load_model(AttentionImpl::Fused)?;
    attach_plan(
        model.as_mut(),
        plan,
        &session.config,
        init.map(|w| &w.adapters),
    )?;
    if let Some(warm) = init {
        let _guard = tch::no_grad_guard();
        for p in model.head_params() {
            let value = warm
                .head
                .get(&p.name)
                .with_context(|| format!("the warm start has no head tensor `{}`", p.name))?;
            p.param.tensor().f_copy_(value)?;
        }
    }
    Ok(model)
}

/// Attaches a plain adapter of rank `plan[name]` to every planned module (`init` supplies
/// warm-start adapters).
fn attach_plan(
    model: &mut dyn Model,
    plan: &RankPlan,
    config: &crate::config::RunConfig,
    init: Option<&BTreeMap<String, Adapter>>,
) -> Result<()> {
    let (device, kind) = (model.device(), model.kind());
    for (name, &rank) in plan {
        if rank == 0 {
            continue;
        }
        let layer = model
            .linear_layers_mut()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l)
            .with_context(|| format!("the ranks name module `{name}`, which this model lacks"))?;
        let adapter = match init.and_then(|m| m.get(name)) {
            Some(warm) => warm.clone(),
            None => Adapter::with_options(
                layer.in_features(),
                layer.out_features(),
                &LoraConfig {
                    rank,
                    alpha: config.lora.alpha,
                    dropout: config.lora.dropout,
                },
                None,
                (kind, device),
            )?,
        };
        layer.attach(adapter)?;
    }
    Ok(())
}

/// A uniform plan: `rank` on every module the config targets.
pub fn uniform_plan(session: &Session, rank: i64) -> Result<RankPlan> {
    let mut model = session.load_model(AttentionImpl::Fused)?;
    let lora = LoraConfig {
        rank: rank.max(1),
        alpha: session.config.lora.alpha,
        dropout: session.config.lora.dropout,
    };
    let names = model.inject_lora(&session.config.lora.targets, &lora, None)?;
    Ok(names.into_iter().map(|n| (n, rank)).collect())
}
