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
use crate::train::{self, RankPlan, TrainOutcome, WarmStart};

/// Folder of the final adapter inside the run directory.
pub const ADAPTER_DIR: &str = "adapter";

#[derive(Serialize)]
struct Summary<'a> {
    autolora: Entry<'a>,
    baseline: Option<Entry<'a>>,
    total_rank: usize,
    modules: usize,
    uniform_modules: usize,
    data: &'a crate::task::DataReport,
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
    let plan = ranks.plan();
    let warm = if session.config.train.warm_start {
        Some(warm_start(
            searched.model.as_ref(),
            ranks,
            session.config.lora.alpha,
        )?)
    } else {
        None
    };
    drop(searched.model);
    let autolora = train::run(session, &plan, warm.as_ref(), "retrain", resume)?;
    save_adapter(session, autolora.model.as_ref(), ADAPTER_DIR)?;

    // Fixed-rank LoRA with the parameter count closest to AutoLoRA's, same steps and settings.
    let baseline = if session.config.run.compare_fixed_rank {
        let rank = closest_uniform_rank(ranks, session.config.lora.k)?;
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
        data: &session.data.report,
    };
    autolora_data::atomic::write(
        &session.path("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!("\n{}", summary_table(session, &summary));
    println!("run directory: {}", session.out_dir.display());
    Ok(())
}

/// The uniform rank whose LoRA parameter count is closest to the searched allocation's
/// (counted per module, since adapted modules may differ in shape: grouped-query key/value
/// projections, feed-forward layers).
fn closest_uniform_rank(ranks: &RanksFile, k: i64) -> Result<i64> {
    let searched = ranks.lora_params(|m| m.rank as i64)?;
    let mut best = (i64::MAX, 1);
    for r in 1..=k.max(1) {
        let gap = (ranks.lora_params(|_| r)? - searched).abs();
        if gap < best.0 {
            best = (gap, r);
        }
    }
    Ok(best.1)
}

/// The warm start of a retrain: the searched adapters pruned to their kept components (scale
/// `alpha / r`, as every plain adapter) and the searched task head.
fn warm_start(model: &dyn Model, ranks: &RanksFile, alpha: f64) -> Result<WarmStart> {
    let layers: BTreeMap<String, _> = model.adapted_layers().into_iter().collect();
    let adapters = ranks
        .modules
        .iter()
        .filter(|m| m.rank > 0) // rank 0: no adapter at all
        .map(|m| {
            let layer = layers
                .get(&m.name)
                .with_context(|| format!("searched model lacks module {}", m.name))?;
            let adapter = layer.adapter().expect("adapted layers have adapters");
            Ok((m.name.clone(), prune_adapter(adapter, &m.kept, alpha)?))
        })
        .collect::<Result<_>>()?;
    let head = model
        .head_params()
        .into_iter()
        .map(|p| (p.name, p.param.tensor().detach().copy()))
        .collect();
    Ok(WarmStart { adapters, head })
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::RunConfig;
    use crate::session::Intent;

    #[test]
    fn the_fixed_rank_baseline_matches_parameters_not_total_rank() -> Result<()> {
        use autolora_core::selection::{ModuleSelection, Uniformity};
        // Two small modules (k/v of grouped-query attention, 768 per rank) at rank 8 and one
        // large feed-forward module (2112 per rank) at rank 1: 14,400 parameters. Matching the
        // total rank (17 over 3 modules) would pick r = 6 (21,888); r = 4 (14,592) is closest.
        let module = |name: &str, rank: usize| ModuleSelection {
            name: name.into(),
            rank,
            kept: (0..rank).collect(),
            weights: vec![0.125; 8],
            uniformity: Uniformity {
                max_min_ratio: 1.0,
                normalized_entropy: 1.0,
            },
        };
        let ranks = RanksFile {
            format_version: crate::ranks::FORMAT_VERSION,
            k: 8,
            gate: autolora_core::Gate::Softmax,
            readout: Default::default(),
            selection: Default::default(),
            modules: vec![module("l.0.k", 8), module("l.0.v", 8), module("l.0.up", 1)],
            params_per_rank: [("l.0.k", 768), ("l.0.v", 768), ("l.0.up", 2112)]
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
        };
        assert_eq!(ranks.lora_params(|m| m.rank as i64)?, 14_400);
        assert_eq!(closest_uniform_rank(&ranks, 8)?, 4);
        Ok(())
    }

    #[test]
    fn a_warm_started_retrain_starts_where_the_pruned_search_ended() -> Result<()> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let out = tempfile::tempdir()?;
        let mut config = RunConfig::default();
        config.model.dir = Some(fixtures.join("tiny-bert"));
        config.task.data_dir = Some(fixtures.join("conll"));
        config.task.max_length = 32;
        config.lora.k = 4;
        config.search.steps = 6;
        // Set in code, not parsed: the preset's warm-up (three quarters of the steps) is not
        // filled in, so the test names its own.
        config.search.warmup_steps = 3;
        config.search.batch_size = 8;
        config.search.outer_lr = 0.1;
        config.search.inner_lr = 1e-2;
        config.run.device = "cpu".into();
        config.run.out_dir = out.path().to_path_buf();
        let session = Session::open(config, &Intent::Start)?;
        let mut searched = search::run(&session, false)?;
        let warm = warm_start(searched.model.as_ref(), &searched.ranks, 16.0)?;
        let plan = searched.ranks.plan();
        let retrain = train::prepared_model(&session, &plan, Some(&warm))?;
        for (name, layer) in retrain.adapted_layers() {
            let adapter = layer.adapter().expect("an adapter");
            assert_eq!(
                adapter.scale,
                16.0 / plan[&name] as f64,
                "{name}: scale alpha / r"
            );
        }

        // The search's model with its unselected components pruned away.
        for (name, layer) in searched.model.linear_layers_mut() {
            if let Some(m) = searched.ranks.modules.iter().find(|m| m.name == name) {
                autolora_core::prune::prune_layer(layer, &m.kept, 16.0)?;
            }
        }
        let batch = &session.data.evals[0].batches[0];
        let logits = |model: &dyn Model| -> Result<tch::Tensor> {
            let _guard = tch::no_grad_guard();
            Ok(model
                .forward_t(&batch.input(), false)?
                .logits
                .expect("a head"))
        };
        let (expected, got) = (logits(searched.model.as_ref())?, logits(retrain.as_ref())?);
        let gap = (&expected - &got).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "logits differ by {gap}");
        // The search moved the head and the adapters: the check is not of two fresh models.
        let fresh = train::prepared_model(&session, &plan, None)?;
        let moved = (&expected - logits(fresh.as_ref())?)
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            moved > 1e-4,
            "the searched model equals a fresh one ({moved})"
        );
        Ok(())
    }
}
