//! Scoring a model on an evaluation split with the task's official metric.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use autolora_models::{IGNORE_INDEX, Model};
use tch::{Kind, Tensor};

use crate::batches::DeviceBatch;
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
    match spec {
        TaskSpec::Tagging { labels, mode } => {
            let (gold, predicted) = tagging_predictions(set, labels, |batch| {
                Ok(logits(model, batch)?.argmax(-1, false))
            })?;
            let s = autolora_data::metrics::entity_scores_in(*mode, &predicted, &gold)?.overall;
            let truncated_words: usize = set.cut_tags.iter().map(Vec::len).sum();
            let mut out = BTreeMap::new();
            out.insert("entity_f1".to_string(), s.f1);
            out.insert("precision".to_string(), s.precision);
            out.insert("recall".to_string(), s.recall);
            out.insert("truncated_words".to_string(), truncated_words as f64);
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
        TaskSpec::Planted { .. } => Ok(BTreeMap::from([(
            "kl".to_string(),
            soft_target_kl(model, &set.batches).with_context(|| format!("scoring {}", set.name))?,
        )])),
        TaskSpec::LanguageModel => {
            let loss =
                token_loss(model, &set.batches).with_context(|| format!("scoring {}", set.name))?;
            let mut out = BTreeMap::from([
                ("loss".to_string(), loss),
                ("perplexity".to_string(), loss.exp()),
            ]);
            if let Some(generation) = &set.generation {
                out.extend(crate::generation::score(model, &set.name, generation)?);
            }
            Ok(out)
        }
        TaskSpec::Generation => match &set.generation {
            Some(generation) => crate::generation::score(model, &set.name, generation),
            None => anyhow::bail!(
                "the `{}` split of a generation task has no prompts to generate from",
                set.name
            ),
        },
    }
}

/// The causal-LM loss per trained token over every batch: each batch's mean weighted by the
/// tokens it predicts (labels after the first position that are not ignored), so the result
/// does not depend on how the rows were batched.
fn token_loss(model: &dyn Model, batches: &[DeviceBatch]) -> Result<f64> {
    let (mut sum, mut tokens) = (0.0, 0.0);
    for batch in batches {
        let seq = batch.labels.size()[1];
        let n = batch
            .labels
            .narrow(1, 1, seq - 1)
            .ne(IGNORE_INDEX)
            .sum(Kind::Double)
            .double_value(&[]);
        if n > 0.0 {
            sum += batch.loss(model, false)?.double_value(&[]) * n;
            tokens += n;
        }
    }
    anyhow::ensure!(tokens > 0.0, "no tokens to predict");
    Ok(sum / tokens)
}

/// KL from the batches' target distributions to the model's, averaged over every real token
/// of `batches` (a distillation task's score: 0 when the model matches its targets).
pub fn soft_target_kl(model: &dyn Model, batches: &[DeviceBatch]) -> Result<f64> {
    let (mut sum, mut rows) = (0.0, 0.0);
    for batch in batches {
        let n = batch
            .labels
            .sum_dim_intlist(-1, false, Kind::Float)
            .gt(0.0)
            .sum(Kind::Double)
            .double_value(&[]);
        sum += batch.loss(model, false)?.double_value(&[]) * n;
        rows += n;
    }
    anyhow::ensure!(rows > 0.0, "no tokens with a target distribution to score");
    Ok(sum / rows)
}

/// The task head's output on a batch.
fn logits(model: &dyn Model, batch: &DeviceBatch) -> Result<Tensor> {
    model
        .forward_t(&batch.input(), false)?
        .logits
        .ok_or_else(|| anyhow::anyhow!("the model has no task head"))
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
        let logits = logits(model, batch)?;
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

/// Word-level gold and predicted tags of every sentence, in batch order: the positions the
/// labels mark (first sub-token of each word), then the words truncation cut, predicted "O".
/// So an entity cut off counts as missed and one cut short as wrong, as conlleval and seqeval
/// score the whole sentence. `predict` gives a batch's label ids, [b, s].
fn tagging_predictions(
    set: &EvalSet,
    labels: &[String],
    predict: impl Fn(&DeviceBatch) -> Result<Tensor>,
) -> Result<(Vec<Tags>, Vec<Tags>)> {
    let (mut gold, mut predicted) = (Vec::new(), Vec::new());
    let mut cut_tags = set.cut_tags.iter();
    for batch in &set.batches {
        let pred = predict(batch)?.to_kind(Kind::Int64);
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
            let cut = cut_tags
                .next()
                .context("a batch row without its cut tags")?;
            g_tags.extend(cut.iter().map(|&g| labels[g as usize].clone()));
            p_tags.resize(g_tags.len(), "O".to_string());
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use autolora_data::metrics::entity_scores;
    use tch::Device;

    use super::*;
    use crate::config::RunConfig;
    use crate::task::TaskData;

    /// Two sentences. At 7 tokens ([CLS], 5 words, [SEP]; every word is one token of the tiny
    /// vocabulary) the first loses "Labs in Oslo .": ORG "Nordic Media Labs" is cut short,
    /// LOC "Oslo" cut off. The second fits, and is shorter, so it comes first in its batch.
    const SENTENCES: &str = "\
Maria NNP B-NP B-PER
Costa NNP I-NP I-PER
visited VBD B-VP O
Nordic NNP B-NP B-ORG
Media NNP I-NP I-ORG
Labs NNP I-NP I-ORG
in IN B-PP O
Oslo NNP B-NP B-LOC
. . O O

Anna NNP B-NP B-PER
Berg NNP I-NP I-PER
left VBD B-VP O
. . O O

";

    #[test]
    fn words_cut_by_truncation_are_scored_as_missed() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("train.txt"), SENTENCES.repeat(4))?;
        for file in ["valid.txt", "test.txt"] {
            std::fs::write(dir.path().join(file), SENTENCES)?;
        }
        let mut config = RunConfig::default();
        config.task.name = "conll".into();
        config.task.data_dir = Some(dir.path().to_path_buf());
        config.task.max_length = 7;
        let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let data = TaskData::load(&config, &model_dir, Device::Cpu)?;
        let TaskSpec::Tagging { labels, .. } = &data.spec else {
            panic!("CoNLL is a tagging task");
        };
        // Every word the model sees predicted right.
        let (gold, predicted) = tagging_predictions(&data.evals[1], labels, |batch| {
            Ok(batch.labels.clamp_min(0))
        })?;
        assert_eq!(gold[1][5..], ["I-ORG", "O", "B-LOC", "O"]);
        assert_eq!(predicted[1][5..], ["O"; 4]);
        let s = entity_scores(&predicted, &gold)?.overall;
        // seqeval 1.2.2 on the whole sentences, the cut words predicted O: 4 gold entities,
        // 3 predicted, 2 right (the two PER).
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.precision, 2.0 / 3.0), "precision {}", s.precision);
        assert!(close(s.recall, 0.5), "recall {}", s.recall);
        assert!(close(s.f1, 4.0 / 7.0), "f1 {}", s.f1);
        Ok(())
    }

    #[test]
    fn language_model_loss_is_per_token_whatever_the_batching() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pairs.jsonl");
        // Completions of different lengths, so batch means differ from the token mean.
        let rows: Vec<String> = (0..9)
            .map(|i| {
                let answer = "so ".repeat(1 + i % 4);
                format!("{{\"prompt\": \"row {i}: \", \"completion\": \"{answer}\"}}")
            })
            .collect();
        std::fs::write(&path, rows.join("\n"))?;
        let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2");
        let model = autolora_models::load_model(
            &model_dir,
            autolora_models::Task::CausalLm,
            &autolora_models::LoadOptions::default(),
        )?;
        let mut config = RunConfig::default();
        config.task.kind = Some(crate::config::FileTask::CausalLm);
        config.task.train_file = Some(path.clone());
        config.task.dev_file = Some(path);
        let mut losses = Vec::new();
        for batch_size in [1, 4, 9] {
            config.train.eval_batch_size = batch_size;
            let data = TaskData::load(&config, &model_dir, Device::Cpu)?;
            let scores = split(model.as_ref(), &data.evals[0], &data.spec)?;
            losses.push(scores["loss"]);
        }
        assert!(
            losses.iter().all(|l| (l - losses[0]).abs() < 1e-5),
            "{losses:?}"
        );
        Ok(())
    }
}
