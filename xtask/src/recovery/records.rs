//! `results.jsonl` of the recovery benchmark: one line per finished unit, and the readers of
//! what the `autolora` runs write (`planted.json`, `ranks.json`, `result.json`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::Unit;
use super::pattern::Pattern;
use crate::driver;
use crate::experiment::records::{Scores, read_json};

/// A module of the teacher, as `planted.json` lists it (and the oracle's record keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlantedModule {
    /// Full module name.
    pub name: String,
    /// The rank of its planted update (0: none).
    pub planted_rank: usize,
    /// LoRA parameters per unit of rank (`in + out` features).
    pub params_per_rank: i64,
}

/// `planted.json`, which every planted run writes (fields the driver does not use are
/// ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Planted {
    /// The relative size of the planted updates.
    pub rho: f64,
    /// LoRA parameters of the planted ranks.
    pub planted_params: i64,
    /// Every linear module, in model order.
    pub modules: Vec<PlantedModule>,
}

impl Planted {
    /// Reads `dir/planted.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("planted.json");
        serde_json::from_value(read_json(&path)?).with_context(|| {
            format!(
                "{}: expected the planted task's description",
                path.display()
            )
        })
    }
}

/// A finished unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The pattern file's stem.
    pub pattern: String,
    /// The planted updates' relative size.
    pub rho: f64,
    /// Run seed.
    pub seed: u64,
    /// [`super::Arm::label`].
    pub arm: String,
    /// Wall time of the whole `autolora` process.
    pub wall_seconds: f64,
    /// The source tree it ran from (`git rev-parse --short HEAD`, `-dirty` with local edits).
    pub commit: String,
    /// The plan's settings it ran under ([`super::Plan::settings_of`]): a record whose
    /// settings the plan no longer gives is stale, and its unit runs again.
    #[serde(default)]
    pub settings: Vec<String>,
    /// The allocation: every module of `planted.json`, in its order, with the rank this unit
    /// searched or trained with (0: no adapter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<(String, usize)>,
    /// Searches: the `search.budget_params` they ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_params: Option<i64>,
    /// The oracle only: the teacher's modules (planted ranks and parameters per rank).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planted: Vec<PlantedModule>,
    /// Training runs: scores per split (`dev`, `test`), metric -> value.
    #[serde(default, skip_serializing_if = "Scores::is_empty")]
    pub scores: Scores,
    /// Training runs: LoRA parameters as `result.json` counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_params: Option<i64>,
    /// Training runs: LoRA and head parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_params: Option<i64>,
    /// Training runs: the training loop's wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
}

impl Record {
    /// An empty record of `unit`, run under `settings`.
    pub fn new(unit: &Unit, settings: Vec<String>, wall_seconds: f64, commit: &str) -> Self {
        Record {
            pattern: unit.pattern.stem.to_string(),
            rho: unit.rho,
            seed: unit.seed,
            arm: unit.arm.label(),
            wall_seconds,
            commit: commit.to_string(),
            settings,
            ranks: Vec::new(),
            budget_params: None,
            planted: Vec::new(),
            scores: Scores::new(),
            lora_params: None,
            trainable_params: None,
            train_seconds: None,
        }
    }

    /// Fills the training fields from `train`'s `result.json`.
    pub fn read_result(&mut self, result_json: &Path) -> Result<()> {
        let result = read_json(result_json)?;
        let field = |key: &str| {
            result
                .get(key)
                .with_context(|| format!("{}: no `{key}`", result_json.display()))
        };
        self.scores = serde_json::from_value(field("scores")?.clone())
            .with_context(|| format!("{}: `scores`", result_json.display()))?;
        self.lora_params = Some(
            field("lora_params")?
                .as_i64()
                .with_context(|| format!("{}: `lora_params`", result_json.display()))?,
        );
        self.trainable_params = result.get("trainable_params").and_then(|v| v.as_i64());
        self.train_seconds = result.get("train_seconds").and_then(|v| v.as_f64());
        Ok(())
    }

    /// The score of `metric` on `split`.
    pub fn score(&self, split: &str, metric: &str) -> Option<f64> {
        self.scores.get(split)?.get(metric).copied()
    }

    /// The rank of each of `modules` in this record's allocation (0 where it lists none).
    pub fn ranks_of(&self, modules: &[PlantedModule]) -> Vec<usize> {
        let ranks: HashMap<&str, usize> =
            self.ranks.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        modules
            .iter()
            .map(|m| ranks.get(m.name.as_str()).copied().unwrap_or(0))
            .collect()
    }
}

/// The planted ranks as an allocation (the oracle's).
pub fn planted_allocation(planted: &[PlantedModule]) -> Vec<(String, usize)> {
    planted
        .iter()
        .map(|m| (m.name.clone(), m.planted_rank))
        .collect()
}

/// A pattern file's ranks over the teacher's modules; a module it names that the teacher
/// lacks is an error.
pub fn pattern_allocation(
    pattern: &Pattern,
    path: &Path,
    planted: &[PlantedModule],
) -> Result<Vec<(String, usize)>> {
    let names: Vec<&str> = planted.iter().map(|m| m.name.as_str()).collect();
    let unknown = pattern.unknown(&names);
    ensure!(
        unknown.is_empty(),
        "{} names modules the model does not have: {}",
        path.display(),
        unknown.join(", ")
    );
    Ok(planted
        .iter()
        .map(|m| (m.name.clone(), pattern.rank(&m.name)))
        .collect())
}

/// A search's `ranks.json` over the teacher's modules (0 for a module it does not list); a
/// module it lists that the teacher lacks is an error.
pub fn ranks_json_allocation(
    path: &Path,
    planted: &[PlantedModule],
) -> Result<Vec<(String, usize)>> {
    #[derive(Deserialize)]
    struct Module {
        name: String,
        rank: usize,
    }
    #[derive(Deserialize)]
    struct RanksFile {
        modules: Vec<Module>,
    }
    let file: RanksFile = serde_json::from_value(read_json(path)?).with_context(|| {
        format!(
            "{}: expected `modules` of `name` and `rank`",
            path.display()
        )
    })?;
    let mut ranks = HashMap::new();
    for module in file.modules {
        if !planted.iter().any(|m| m.name == module.name) {
            bail!(
                "{}: module `{}` is not in the teacher's planted.json",
                path.display(),
                module.name
            );
        }
        ranks.insert(module.name, module.rank);
    }
    Ok(planted
        .iter()
        .map(|m| (m.name.clone(), ranks.get(&m.name).copied().unwrap_or(0)))
        .collect())
}

/// LoRA parameters of `ranks` over `modules`.
pub fn allocation_params(modules: &[PlantedModule], ranks: &[usize]) -> i64 {
    modules
        .iter()
        .zip(ranks)
        .map(|(m, &r)| m.params_per_rank * r as i64)
        .sum()
}

/// Whether two recorded values of rho are the same setting (JSON may move a float by an ulp).
pub fn same_rho(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

/// The records so far (`results.jsonl` in the plan's `out_dir`).
pub type Log = driver::Log<Record>;

impl Log {
    /// The record of `unit`, if it finished.
    pub fn find(&self, unit: &Unit) -> Option<&Record> {
        self.get(unit.pattern.stem, unit.rho, unit.seed, &unit.arm.label())
    }

    /// Takes out of the log (not out of its file) every record of `plan`'s units that ran
    /// under other settings than the plan now gives them, and returns them: their units run
    /// again, and the report reads the new records.
    pub fn drop_stale(&mut self, plan: &super::Plan) -> Vec<Record> {
        let units = plan.units();
        let (stale, current) = std::mem::take(&mut self.records)
            .into_iter()
            .partition(|r| {
                units.iter().any(|u| {
                    u.pattern.stem == r.pattern
                        && same_rho(u.rho, r.rho)
                        && u.seed == r.seed
                        && u.arm.label() == r.arm
                        && plan.settings_of(&u.arm) != r.settings
                })
            });
        self.records = current;
        stale
    }

    /// The record of one arm in one (pattern, rho, seed) cell.
    pub fn get(&self, pattern: &str, rho: f64, seed: u64, arm: &str) -> Option<&Record> {
        self.records.iter().find(|r| {
            r.pattern == pattern && same_rho(r.rho, rho) && r.seed == seed && r.arm == arm
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted() -> Vec<PlantedModule> {
        ["a", "b", "c"]
            .iter()
            .zip([0, 4, 2])
            .map(|(name, rank)| PlantedModule {
                name: name.to_string(),
                planted_rank: rank,
                params_per_rank: 10,
            })
            .collect()
    }

    #[test]
    fn allocations_cover_every_planted_module_in_order() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ranks.json");
        std::fs::write(
            &path,
            r#"{"format_version":1,"k":8,"modules":[{"name":"c","rank":3,"kept":[0,1,2]},
                {"name":"a","rank":1}],"params_per_rank":{"a":10,"c":10}}"#,
        )?;
        let ranks = ranks_json_allocation(&path, &planted())?;
        assert_eq!(
            ranks,
            [
                ("a".to_string(), 1),
                ("b".to_string(), 0),
                ("c".to_string(), 3)
            ]
        );
        std::fs::write(&path, r#"{"modules":[{"name":"pooler","rank":1}]}"#)?;
        let err = ranks_json_allocation(&path, &planted()).unwrap_err();
        assert!(format!("{err:#}").contains("`pooler`"), "{err:#}");

        let pattern = Pattern::parse("[ranks]\n\"b\" = 4\n\"a\" = 0\n")?;
        let ranks = pattern_allocation(&pattern, &path, &planted())?;
        assert_eq!(ranks.iter().map(|r| r.1).collect::<Vec<_>>(), [0, 4, 0]);
        let stray = Pattern::parse("[ranks]\n\"z\" = 4\n")?;
        assert!(pattern_allocation(&stray, &path, &planted()).is_err());
        assert_eq!(allocation_params(&planted(), &[1, 0, 3]), 40);
        Ok(())
    }

    #[test]
    fn planted_json_reads_with_extra_fields() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("planted.json"),
            r#"{"pattern":"p.toml","rho":0.05,"planted_params":40,"modules":[
                {"name":"a","planted_rank":0,"params_per_rank":10,"scale":0.0,"ratio":0.0},
                {"name":"b","planted_rank":4,"params_per_rank":10,"scale":1.5,"ratio":0.05}]}"#,
        )?;
        let planted = Planted::read(dir.path())?;
        assert_eq!((planted.rho, planted.planted_params), (0.05, 40));
        assert_eq!(planted.modules[1].planted_rank, 4);
        Ok(())
    }

    #[test]
    fn a_record_lists_ranks_by_name() {
        let mut record = Record {
            pattern: "p".into(),
            rho: 0.1,
            seed: 1,
            arm: "oracle".into(),
            wall_seconds: 1.0,
            commit: String::new(),
            settings: Vec::new(),
            ranks: vec![("c".into(), 2), ("a".into(), 1)],
            budget_params: None,
            planted: Vec::new(),
            scores: Scores::new(),
            lora_params: None,
            trainable_params: None,
            train_seconds: None,
        };
        assert_eq!(record.ranks_of(&planted()), [1, 0, 2]);
        record
            .scores
            .insert("dev".into(), [("kl".into(), 0.5)].into());
        let line = serde_json::to_string(&record).expect("serializes");
        assert!(
            !line.contains("lora_params") && !line.contains("planted\""),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).expect("reads back");
        assert_eq!(back.score("dev", "kl"), Some(0.5));
        assert!(same_rho(back.rho, 0.1));
    }
}
