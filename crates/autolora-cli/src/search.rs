//! `autolora search`: the bilevel search for the selection weights, then rank selection.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::{BilevelSearch, Hypergradient, SearchConfig as EngineConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::{LoraConfig, NamedParam, Param};
use autolora_models::{AttentionImpl, Model};

use crate::checkpoint::Checkpoint;
use crate::config::{RunConfig, SearchConfig};
use crate::progress::Progress;
use crate::ranks::RanksFile;
use crate::session::Session;

/// File names inside the run directory.
pub const RANKS_FILE: &str = "ranks.json";
const CHECKPOINT: &str = "checkpoints/search.safetensors";
const METRICS: &str = "search_metrics.jsonl";

/// What the search produced.
pub struct SearchOutcome {
    /// The selected ranks and selection weights.
    pub ranks: RanksFile,
    /// Where they were written.
    pub path: PathBuf,
    /// The model as it stands at the end of the search (for a warm-started retrain).
    pub model: Box<dyn Model>,
}

/// Runs (or, with `resume`, continues) the search and writes `ranks.json` and the heatmap.
pub fn run(session: &Session, resume: bool) -> Result<SearchOutcome> {
    let config = &session.config;
    // Only the exact hypergradient differentiates twice; the fused attention kernel (no double
    // backward) serves the other modes.
    let attention = match config.search.hypergradient {
        Hypergradient::Exact => AttentionImpl::Eager,
        _ => AttentionImpl::Fused,
    };
    let mut model = session.load_model(attention)?;
    let lora = LoraConfig {
        rank: config.lora.k,
        alpha: config.lora.alpha,
        dropout: config.lora.dropout,
    };
    let adapted = model.inject_lora(&config.lora.targets, &lora, Some(config.lora.gate))?;
    tracing::info!(modules = adapted.len(), "selective LoRA attached");

    let schedule = crate::pruning::Schedule::of(&config.search, model.as_ref())?;
    // Pruning masks are search state like the logits (none without pruning).
    let masks = match schedule {
        Some(_) => crate::pruning::attach_masks(model.as_mut())?,
        None => Vec::new(),
    };
    let weights = model.trainable_params();
    let selection = model.selection_params();
    let mut engine = engine(config, &weights, &selection)?;

    let checkpoint_path = session.out_dir.join(CHECKPOINT);
    let metrics_path = session.out_dir.join(METRICS);
    if resume && checkpoint_path.exists() {
        let ckpt = Checkpoint::load(&checkpoint_path)?;
        ckpt.load_params("weights", &weights)?;
        ckpt.load_params("selection", &selection)?;
        ckpt.load_params("masks", &masks)?;
        ckpt.load_optimizer("inner", engine.inner_mut())?;
        ckpt.load_optimizer("outer", engine.outer_mut())?;
        engine.set_steps_done(ckpt.step()?);
        crate::metrics::truncate_after(&metrics_path, engine.steps_done())?;
        tracing::info!(step = engine.steps_done(), "search resumed");
    } else {
        // Nothing to resume from: start the metrics afresh too.
        crate::metrics::reset(&metrics_path)?;
    }

    let data = &session.data;
    let search = &config.search;
    let total = search.steps;
    let mut progress = Progress::new("search", total, engine.steps_done());
    let started = Instant::now();
    let mut tokens = 0i64;
    while engine.steps_done() < total {
        let step = engine.steps_done();
        let train_batch = data.search_train.at(step);
        let outer = is_outer_step(search, step);
        let failed = || {
            let (kind, key) = if outer {
                ("", "search.outer_lr` (or search.inner_lr")
            } else {
                ("(an inner step) ", "search.inner_lr")
            };
            format!(
                "search step {step} {kind}failed; the last good checkpoint is {}. Every step is \
                 a function of (seed, step), so resuming unchanged repeats this; resume with a \
                 smaller learning rate, e.g. `--resume --set {key}=... --accept-change {key}`",
                checkpoint_path.display()
            )
        };
        if !outer {
            let loss = engine
                .inner_step(|| train_batch.loss(model.as_ref(), true))
                .with_context(failed)?;
            tokens += train_batch.tokens;
            let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.advance(&format!("train {loss:.4} (inner step) {rate:.0} tok/s"));
            crate::metrics::append(
                &metrics_path,
                &serde_json::json!({"step": step, "train_loss": loss, "outer": false}),
            )?;
            prune_if_due(schedule.as_ref(), model.as_mut(), engine.steps_done())?;
            checkpoint_if_due(
                session,
                &engine,
                &[&weights, &selection, &masks],
                &checkpoint_path,
            )?;
            continue;
        }
        // The validation batches of outer step `step`: consecutive in the split's seeded order.
        let val_loss = || -> Result<tch::Tensor> {
            let mut sum = None;
            for j in 0..search.val_batches as u64 {
                let batch = data.search_val.at(step * search.val_batches as u64 + j);
                let loss = batch.loss(model.as_ref(), search.val_dropout)?;
                sum = Some(match sum {
                    None => loss,
                    Some(s) => s + loss,
                });
            }
            Ok(sum.expect("val_batches >= 1") / search.val_batches as f64)
        };
        let report = engine
            .step(|| train_batch.loss(model.as_ref(), true), val_loss)
            .with_context(failed)?;
        tokens += train_batch.tokens;
        let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
        progress.advance(&format!(
            "train {:.4} val {:.4} |hg| {:.2e} {:.0} tok/s",
            report.train_loss, report.val_loss, report.hypergradient_norm, rate
        ));
        crate::metrics::append(&metrics_path, &report)?;
        prune_if_due(schedule.as_ref(), model.as_mut(), engine.steps_done())?;
        checkpoint_if_due(
            session,
            &engine,
            &[&weights, &selection, &masks],
            &checkpoint_path,
        )?;
    }
    progress.finish();

    let calibration: Vec<_> = data
        .search_val
        .all()
        .iter()
        .take(crate::ranks::READOUT_BATCHES)
        .collect();
    let ranks = RanksFile::from_model(model.as_mut(), &config.lora, &config.search, &calibration)?;
    if ranks.modules.is_empty() {
        bail!("the model has no adapted modules");
    }
    let path = session.out_dir.join(RANKS_FILE);
    ranks.save(&path)?;
    ranks.draw_heatmap(&session.out_dir.join("ranks.svg"))?;
    Ok(SearchOutcome { ranks, path, model })
}

/// Whether search step `step` updates the selection (a bilevel step) or only the LoRA weights
/// and head: the warm-up's steps and, after it, all but every `outer_every`-th are inner steps.
pub fn is_outer_step(search: &SearchConfig, step: u64) -> bool {
    step >= search.warmup_steps && (step - search.warmup_steps) % search.outer_every.max(1) == 0
}

/// Cuts the search's components to the pruning schedule's budget if a cut falls after `done`
/// steps.
fn prune_if_due(
    schedule: Option<&crate::pruning::Schedule>,
    model: &mut dyn Model,
    done: u64,
) -> Result<()> {
    let Some((schedule, budget)) = schedule.and_then(|s| Some((s, s.budget_after(done)?))) else {
        return Ok(());
    };
    let left = schedule.cut(model, budget)?;
    tracing::info!(step = done, budget, components = left, "pruned");
    Ok(())
}

/// Writes the search checkpoint after a step if the run's interval (or the last step) says so:
/// `state` is the LoRA weights and head, the selection logits and the pruning masks.
fn checkpoint_if_due(
    session: &Session,
    engine: &BilevelSearch,
    [weights, selection, masks]: &[&[NamedParam]; 3],
    path: &std::path::Path,
) -> Result<()> {
    let done = engine.steps_done();
    if done % session.config.run.checkpoint_every.max(1) != 0 && done != session.config.search.steps
    {
        return Ok(());
    }
    let mut ckpt = Checkpoint::default();
    ckpt.set_step(done);
    ckpt.put_params("weights", weights);
    ckpt.put_params("selection", selection);
    ckpt.put_params("masks", masks);
    ckpt.put_optimizer("inner", engine.inner());
    ckpt.put_optimizer("outer", engine.outer());
    ckpt.save(path)
}

/// The search engine with the run file's settings over `weights` (LoRA factors and head,
/// inner problem) and `selection` (selection logits, outer problem); `autolora bench` times
/// the same engine.
pub fn engine(
    config: &RunConfig,
    weights: &[NamedParam],
    selection: &[NamedParam],
) -> Result<BilevelSearch> {
    let search = &config.search;
    let inner = Optimizer::new(
        slots(weights),
        OptimConfig {
            kind: search.inner_optimizer,
            lr: search.inner_lr,
            ..OptimConfig::search_inner()
        },
    )?;
    let (beta1, beta2) = search.outer_betas;
    let outer = Optimizer::new(
        slots(selection),
        OptimConfig {
            kind: search.outer_optimizer,
            lr: search.outer_lr,
            ..OptimConfig::search_outer()
        }
        .with_betas(beta1, beta2),
    )?;
    Ok(BilevelSearch::new(
        inner,
        outer,
        EngineConfig {
            hypergradient: search.hypergradient,
            fd_form: search.fd_form,
            rollback: search.rollback,
            seed: config.run.seed,
            // The training run's clipping, on the search's inner steps too.
            max_grad_norm: config.train.max_grad_norm,
            ..EngineConfig::default()
        },
    )?)
}

/// Parameter slots of named parameters.
pub fn slots(params: &[NamedParam]) -> Vec<Param> {
    params.iter().map(|p| p.param.clone()).collect()
}
