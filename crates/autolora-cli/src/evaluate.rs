//! Scoring a model on an evaluation split with the task's official metric.

use std::collections::BTreeMap;

use anyhow::Result;
use autolora_models::{IGNORE_INDEX, Model};
use tch::{Kind, Tensor};

use crate::session::Session;
use crate::task::{EvalSet, TaskSpec};

/// Metric name -> value, per split name.
pub type Scores = BTreeMap<String, BTreeMap<String, f64>>;

/// Scores `model` on the dev split and, when the task has one, the test split.
pub fn all(model: &dyn Model, session: &Session) -> Result<Scores> {
    let mut scores = Scores::new();
    for set in &session.data.evals {
        scores.insert(set.name.clone(), split(model, set, &session.data.spec)?);
    }
    Ok(scores)
}

/// Scores `model` on one split.
pub fn split(model: &dyn Model, set: &EvalSet, spec: &TaskSpec) -> Result<BTreeMap<String, f64>> {
    let _guard = tch::no_grad_guard();
    if let Some(generation) = &set.generation {
        return crate::e2e::score(model, &set.name, generation);
    }
    match spec {
        TaskSpec::Tagging { labels } => {
            let (gold, predicted) = tagging_predictions(model, set, labels)?;
            let s = autolora_data::metrics::entity_scores(&predicted, &gold)?.overall;
            let mut out = BTreeMap::new();
            out.insert("entity_f1".to_string(), s.f1);
            out.insert("precision".to_string(), s.precision);
            out.insert("recall".to_string(), s.recall);
            out.insert("truncated_words".to_string(), set.truncated_words as f64);
            Ok(out)
        }
        TaskSpec::Classification { glue, .. } => {
            let (predicted, gold) =
                sequence_outputs(model, set, |logits| logits.argmax(-1, false))?;
            let predicted: Vec<usize> = predicted.iter().map(|&p| p as usize).collect();
            let gold: Vec<usize> = gold.iter().map(|&g| g as usize).collect();
            let pairs = match glue {
                Some(task) => task.score_classes(&predicted, &gold)?,
                None => vec![(
                    "accuracy",
                    autolora_data::metrics::accuracy(&predicted, &gold)?,
                )],
            };
            Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }
        TaskSpec::Regression => {
            let (predicted, gold) = sequence_outputs(model, set, |logits| logits.reshape([-1]))?;
            let mut out = BTreeMap::new();
            out.insert(
                "pearson".to_string(),
                autolora_data::metrics::pearson(&predicted, &gold)?,
            );
            out.insert(
                "spearman".to_string(),
                autolora_data::metrics::spearman(&predicted, &gold)?,
            );
            Ok(out)
        }
        TaskSpec::Generation => anyhow::bail!(
            "the `{}` split of a generation task has no prompts to generate from",
            set.name
        ),
    }
}

/// Per-example predictions (`reduce` turns the logits into one value per example) and gold
/// labels, as f64.
fn sequence_outputs(
    model: &dyn Model,
    set: &EvalSet,
    reduce: impl Fn(&Tensor) -> Tensor,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut predicted, mut gold) = (Vec::new(), Vec::new());
    for batch in &set.batches {
        let out = model.forward_t(&batch.input(), false)?;
        let logits = out
            .logits
            .ok_or_else(|| anyhow::anyhow!("the model has no task head"))?;
        let cpu = |t: Tensor| {
            Vec::<f64>::try_from(
                t.to_device(tch::Device::Cpu)
                    .to_kind(Kind::Double)
                    .reshape([-1]),
            )
        };
        predicted.extend(cpu(reduce(&logits))?);
        gold.extend(cpu(batch.labels.shallow_clone())?);
    }
    Ok((predicted, gold))
}

/// One sentence's tags.
type Tags = Vec<String>;

/// Word-level gold and predicted tags: the positions the labels mark (first sub-token of
/// each word), in example order.
fn tagging_predictions(
    model: &dyn Model,
    set: &EvalSet,
    labels: &[String],
) -> Result<(Vec<Tags>, Vec<Tags>)> {
    let (mut gold, mut predicted) = (Vec::new(), Vec::new());
    for batch in &set.batches {
        let out = model.forward_t(&batch.input(), false)?;
        let logits = out
            .logits
            .ok_or_else(|| anyhow::anyhow!("the model has no task head"))?;
        let pred = logits.argmax(-1, false).to_kind(Kind::Int64);
        let (b, s) = (pred.size()[0], pred.size()[1]);
        let pred = rows(&pred, b, s)?;
        let gold_ids = rows(&batch.labels, b, s)?;
        for (p_row, g_row) in pred.iter().zip(&gold_ids) {
            let mut g_tags = Vec::new();
            let mut p_tags = Vec::new();
            for (&p, &g) in p_row.iter().zip(g_row) {
                if g == IGNORE_INDEX {
                    continue;
                }
                g_tags.push(labels[g as usize].clone());
                p_tags.push(labels[p as usize].clone());
            }
            gold.push(g_tags);
            predicted.push(p_tags);
        }
    }
    Ok((gold, predicted))
}

fn rows(t: &Tensor, b: i64, s: i64) -> Result<Vec<Vec<i64>>> {
    let flat = Vec::<i64>::try_from(t.to_device(tch::Device::Cpu).reshape([-1]))?;
    Ok((0..b as usize)
        .map(|i| flat[i * s as usize..(i + 1) * s as usize].to_vec())
        .collect())
}
