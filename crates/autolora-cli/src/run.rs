//! `autolora run`: search, retrain with the found ranks, evaluate, export, and compare with
//! fixed-rank LoRA of about the same size; plus the helpers `train` and `eval` share.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use autolora_core::prune::prune_adapter;
use autolora_models::peft::{apply_peft_adapter, save_peft_adapter};
use autolora_models::{AttentionImpl, Model};
use serde::Serialize;

use crate::evaluate::{self, Scores};
use crate::ranks::RanksFile;
use crate::search;
use crate::session::Session;
use crate::train::{self, RankPlan, TrainOutcome};

/// Folder of the final adapter inside the run directory.
pub const ADAPTER_DIR: &str = "adapter";

#[derive(Serialize)]
struct Summary<'a> {
    autolora: Entry<'a>,
    baseline: Option<Entry<'a>>,
    total_rank: usize,
    modules: usize,
    uniform_modules: usize,
}

/// One trained adapter's result: the rows of `summary.json` and the whole of `train`'s
/// `result.json`.
#[derive(Serialize)]
pub struct Entry<'a> {
    label: String,
    scores: &'a Scores,
    trainable_params: i64,
    lora_params: i64,
    train_seconds: f64,
}

impl<'a> Entry<'a> {
    /// The entry of a finished training run.
    pub fn new(label: String, outcome: &'a TrainOutcome) -> Self {
        Entry {
            label,
            scores: &outcome.scores,
            trainable_params: outcome.trainable_params,
            lora_params: outcome.lora_params,
            train_seconds: outcome.seconds,
        }
    }
}

/// The whole pipeline (see the module docs).
pub fn run(session: &Session, resume: bool) -> Result<()> {
    let searched = search::run(session, resume)?;
    let ranks = &searched.ranks;
    println!(
        "\nlearned ranks ({}):\n{}",
        searched.path.display(),
        ranks.table()
    );
    let plan: RankPlan = ranks
        .modules
        .iter()
        .map(|m| (m.name.clone(), m.rank as i64))
        .collect();
    let warm = if session.config.train.warm_start {
        Some(pruned_adapters(searched.model.as_ref(), ranks)?)
    } else {
        None
    };
    drop(searched.model);
    let autolora = train::run(session, &plan, warm.as_ref(), "retrain", resume)?;
    save_adapter(session, autolora.model.as_ref(), ADAPTER_DIR)?;

    // Fixed-rank LoRA with the parameter count closest to AutoLoRA's, same steps and settings.
    let baseline = if session.config.run.compare_fixed_rank {
        let rank = closest_uniform_rank(ranks, &plan, session.config.lora.k);
        let plan: RankPlan = plan.keys().map(|n| (n.clone(), rank)).collect();
        let outcome = train::run(session, &plan, None, &format!("lora-r{rank}"), resume)?;
        Some((rank, outcome))
    } else {
        None
    };

    let summary = Summary {
        autolora: Entry::new("AutoLoRA".into(), &autolora),
        baseline: baseline
            .as_ref()
            .map(|(r, o)| Entry::new(format!("LoRA r={r}"), o)),
        total_rank: ranks.total_rank(),
        modules: ranks.modules.len(),
        uniform_modules: ranks.still_uniform().len(),
    };
    crate::atomic::write(
        &session.path("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!("\n{}", summary_table(session, &summary));
    println!("run directory: {}", session.out_dir.display());
    Ok(())
}

/// The uniform rank whose LoRA parameter count is closest to the searched plan's. The
/// adapted modules share one shape (query/value projections), so the count is proportional
/// to the total rank.
fn closest_uniform_rank(ranks: &RanksFile, plan: &RankPlan, k: i64) -> i64 {
    let total: i64 = plan.values().sum();
    let modules = ranks.modules.len().max(1) as i64;
    (1..=k.max(1))
        .min_by_key(|r| (r * modules - total).abs())
        .unwrap_or(1)
}

/// The searched adapters pruned to their kept components (the warm start).
fn pruned_adapters(
    model: &dyn Model,
    ranks: &RanksFile,
) -> Result<BTreeMap<String, autolora_core::Adapter>> {
    let layers: BTreeMap<String, _> = model.adapted_layers().into_iter().collect();
    ranks
        .modules
        .iter()
        .map(|m| {
            let layer = layers
                .get(&m.name)
                .with_context(|| format!("searched model lacks module {}", m.name))?;
            let adapter = layer.adapter().expect("adapted layers have adapters");
            Ok((m.name.clone(), prune_adapter(adapter, &m.kept)?))
        })
        .collect()
}

/// Writes the model's adapter as a PEFT adapter into the run directory.
pub fn save_adapter(session: &Session, model: &dyn Model, name: &str) -> Result<()> {
    let dir = session.path(name);
    let base = session.model_dir.display().to_string();
    save_peft_adapter(model, &dir, Some(&base))
        .with_context(|| format!("writing the adapter into {}", dir.display()))?;
    println!("adapter written to {}", dir.display());
    Ok(())
}

/// Loads the run directory's adapter into a fresh model and scores it.
pub fn evaluate_saved(session: &Session) -> Result<Scores> {
    let mut model = session.load_model(AttentionImpl::Fused)?;
    let dir = session.path(ADAPTER_DIR);
    apply_peft_adapter(model.as_mut(), &dir)
        .with_context(|| format!("loading the adapter in {}", dir.display()))?;
    evaluate::all(model.as_ref(), session)
}

/// Prints a training outcome's scores.
pub fn print_scores(label: &str, outcome: &TrainOutcome) {
    println!(
        "{label}: trainable parameters {} (LoRA {}), {:.0} s",
        outcome.trainable_params, outcome.lora_params, outcome.seconds
    );
    for (split, metrics) in &outcome.scores {
        let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!("  {split}: {}", line.join(", "));
    }
}

fn summary_table(session: &Session, summary: &Summary) -> String {
    let metric = session.data.spec.metric_name();
    let splits: Vec<&str> = session
        .data
        .evals
        .iter()
        .map(|e| e.name.as_str())
        .take(2)
        .collect();
    let column = |i: usize| {
        splits
            .get(i)
            .map_or("-".to_string(), |s| format!("{s} {metric}"))
    };
    let mut out = format!(
        "{:<14} {:>12} {:>12} {:>18} {:>18} {:>8}\n",
        "method",
        "LoRA params",
        "trainable",
        column(0),
        column(1),
        "train s"
    );
    let score = |s: &Scores, split: &str| {
        s.get(split)
            .and_then(|m| m.get(metric))
            .map_or("-".to_string(), |v| format!("{:.4}", v))
    };
    for entry in std::iter::once(&summary.autolora).chain(summary.baseline.as_ref()) {
        out += &format!(
            "{:<14} {:>12} {:>12} {:>18} {:>18} {:>8.0}\n",
            entry.label,
            entry.lora_params,
            entry.trainable_params,
            score(entry.scores, splits.first().copied().unwrap_or("-")),
            score(entry.scores, splits.get(1).copied().unwrap_or("-")),
            entry.train_seconds
        );
    }
    out
}
