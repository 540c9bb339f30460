//! `results.jsonl`: one line per finished run of the experiment.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Unit;
use crate::report;

/// The log's file name inside the plan's `out_dir`.
pub const LOG: &str = "results.jsonl";

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

/// The records so far.
#[derive(Debug, Default)]
pub struct Log {
    /// In the order they finished.
    pub records: Vec<Record>,
}

impl Log {
    /// Reads the log (empty when absent). A last line cut short by an interruption is reported
    /// and ignored, so its run is done again; a malformed line elsewhere is an error.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Log {
            records: load_lines(path)?,
        })
    }

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

    /// Appends a record to the file (one whole line per write) and to the log.
    pub fn append(&mut self, path: &Path, record: Record) -> Result<()> {
        append_line(path, &record)?;
        self.records.push(record);
        Ok(())
    }
}

/// Reads a JSON-lines log (empty when absent). A last line cut short by an interruption is
/// reported and ignored, so its run is done again; a malformed line elsewhere is an error.
pub(crate) fn load_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) if index + 1 == lines.len() && !text.ends_with('\n') => {
                println!(
                    "{}:{}: an unfinished last line ({e}); its run will be done again",
                    path.display(),
                    index + 1
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "{}:{}: expected one JSON record per line",
                        path.display(),
                        index + 1
                    )
                });
            }
        }
    }
    Ok(records)
}

/// Appends one record to a JSON-lines log as one whole line per write, synced to disk. A
/// last line cut short by an interruption (which [`load_lines`] ignores) is cut off first, so
/// the new line does not run on from it.
pub(crate) fn append_line<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    drop_unfinished_line(&mut file).with_context(|| format!("repairing {}", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Truncates `file` after its last newline when it does not end with one.
fn drop_unfinished_line(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)
}

/// The source tree's commit, marked `-dirty` when it has local edits (empty outside a git
/// checkout: the record then names no commit).
pub fn commit(root: &Path) -> String {
    let head = report::git(root, &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    match report::has_local_edits(root) {
        Ok(true) => format!("{head}-dirty"),
        _ => head,
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
        let path = dir.path().join(LOG);
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

    #[test]
    fn an_unfinished_last_line_is_dropped_and_a_broken_middle_line_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(LOG);
        let task = task();
        let whole = serde_json::to_string(&Record::new(
            &Unit {
                task: &task,
                seed: 1,
                arm: Arm::Search,
            },
            1.0,
            "abc",
        ))?;
        std::fs::write(&path, format!("{whole}\n{{\"task\": \"con"))?;
        assert_eq!(Log::load(&path)?.records.len(), 1);
        // The next record replaces the unfinished line.
        let mut log = Log::load(&path)?;
        log.append(&path, log.records[0].clone())?;
        assert_eq!(Log::load(&path)?.records.len(), 2);
        std::fs::write(&path, format!("{{\"task\": \"con\n{whole}\n"))?;
        let err = Log::load(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains(":1: expected one JSON record"),
            "{err:#}"
        );
        Ok(())
    }
}
