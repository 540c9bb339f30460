//! `results.jsonl`: one line per finished run of the experiment.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Unit;
use crate::driver;

/// Scores per split (`dev`, `test`), metric name -> value.
pub type Scores = BTreeMap<String, BTreeMap<String, f64>>;

/// A finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Task name (the plan's).
    pub task: String,
    /// Run seed.
    pub seed: u64,
    /// [`super::Arm::label`].
    pub arm: String,
    /// Wall time of the whole `autolora` process (loading, training or search, scoring).
    pub wall_seconds: f64,
    /// The source tree it ran from (`git rev-parse --short HEAD`, `-dirty` with local edits).
    pub commit: String,
    /// Per module in model order: name and rank (search, AutoLoRA and random runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<(String, usize)>,
    /// The search's selection weights per module: max/min ratio and normalised entropy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uniformity: Vec<(f64, f64)>,
    /// Training runs: the scores.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: Scores,
    /// Training runs: LoRA parameters.
    #[serde(default)]
    pub lora_params: i64,
    /// Training runs: LoRA and head parameters.
    #[serde(default)]
    pub trainable_params: i64,
    /// Training runs: the training loop's wall time.
    #[serde(default)]
    pub train_seconds: f64,
}

impl Record {
    fn new(unit: &Unit, wall_seconds: f64, commit: &str) -> Self {
        Record {
            task: unit.task.name.clone(),
            seed: unit.seed,
            arm: unit.arm.label(),
            wall_seconds,
            commit: commit.to_string(),
            ranks: Vec::new(),
            uniformity: Vec::new(),
            scores: Scores::new(),
            lora_params: 0,
            trainable_params: 0,
            train_seconds: 0.0,
        }
    }

    /// A finished search, from its `ranks.json`.
    pub fn search(unit: &Unit, ranks_json: &Path, wall_seconds: f64, commit: &str) -> Result<Self> {
        let ranks = read_json(ranks_json)?;
        let mut record = Record::new(unit, wall_seconds, commit);
        record.ranks = module_ranks(&ranks, ranks_json)?;
        record.uniformity = modules(&ranks, ranks_json)?
            .iter()
            .map(|m| {
                let stat = |key: &str| {
                    // A weight of exactly 0 makes the ratio infinite (written as null).
                    m["uniformity"][key].as_f64().unwrap_or(f64::INFINITY)
                };
                (stat("max_min_ratio"), stat("normalized_entropy"))
            })
            .collect();
        Ok(record)
    }

    /// A finished training run, from `train`'s `result.json` (and the ranks it trained with).
    pub fn train(
        unit: &Unit,
        result_json: &Path,
        ranks_json: Option<&Path>,
        wall_seconds: f64,
        commit: &str,
    ) -> Result<Self> {
        let result = read_json(result_json)?;
        let mut record = Record::new(unit, wall_seconds, commit);
        let field = |key: &str| {
            result
                .get(key)
                .with_context(|| format!("{}: no `{key}`", result_json.display()))
        };
        record.scores = serde_json::from_value(field("scores")?.clone())
            .with_context(|| format!("{}: `scores`", result_json.display()))?;
        record.lora_params = field("lora_params")?.as_i64().unwrap_or(0);
        record.trainable_params = field("trainable_params")?.as_i64().unwrap_or(0);
        record.train_seconds = field("train_seconds")?.as_f64().unwrap_or(f64::NAN);
        if let Some(path) = ranks_json {
            record.ranks = module_ranks(&read_json(path)?, path)?;
        }
        Ok(record)
    }

    /// The score of `metric` on `split`.
    pub fn score(&self, split: &str, metric: &str) -> Option<f64> {
        self.scores.get(split)?.get(metric).copied()
    }

    /// Sum of the ranks.
    pub fn total_rank(&self) -> usize {
        self.ranks.iter().map(|(_, r)| r).sum()
    }
}

/// The records so far (`results.jsonl` in the plan's `out_dir`).
pub type Log = driver::Log<Record>;

impl Log {
    /// The record of `unit`, if it finished.
    pub fn find(&self, unit: &Unit) -> Option<&Record> {
        let arm = unit.arm.label();
        self.records
            .iter()
            .find(|r| r.task == unit.task.name && r.seed == unit.seed && r.arm == arm)
    }

    /// The records of one task and arm, by seed.
    pub fn of(&self, task: &str, arm: &str) -> Vec<&Record> {
        let mut found: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.task == task && r.arm == arm)
            .collect();
        found.sort_by_key(|r| r.seed);
        found
    }
}

/// Reads a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: expected JSON", path.display()))
}

fn modules<'a>(ranks: &'a Value, path: &Path) -> Result<&'a Vec<Value>> {
    ranks["modules"]
        .as_array()
        .with_context(|| format!("{}: expected a `modules` list", path.display()))
}

fn module_ranks(ranks: &Value, path: &Path) -> Result<Vec<(String, usize)>> {
    modules(ranks, path)?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = m["name"].as_str();
            let rank = m["rank"].as_u64();
            match (name, rank) {
                (Some(name), Some(rank)) => Ok((name.to_string(), rank as usize)),
                _ => anyhow::bail!(
                    "{}: module {i} lacks a `name` string or a `rank` integer",
                    path.display()
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Arm, TaskPlan};

    fn task() -> TaskPlan {
        TaskPlan {
            name: "conll".into(),
            title: "CoNLL".into(),
            config: "x.toml".into(),
            metric: "entity_f1".into(),
            assets: Vec::new(),
        }
    }

    #[test]
    fn appended_records_are_found_after_a_reload() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(driver::LOG);
        let task = task();
        let unit = Unit {
            task: &task,
            seed: 2,
            arm: Arm::Fixed(4),
        };
        let mut log = Log::load(&path)?;
        assert!(log.find(&unit).is_none());
        let mut record = Record::new(&unit, 12.5, "abc");
        record
            .scores
            .insert("dev".into(), [("entity_f1".into(), 0.5)].into());
        log.append(&path, record)?;
        let reloaded = Log::load(&path)?;
        let found = reloaded.find(&unit).expect("recorded");
        assert_eq!((found.arm.as_str(), found.seed), ("r4", 2));
        assert_eq!(found.score("dev", "entity_f1"), Some(0.5));
        assert!(reloaded.find(&Unit { seed: 3, ..unit }).is_none());
        Ok(())
    }
}
