//! `cargo xtask experiment`: AutoLoRA against fixed-rank LoRA and against a random allocation
//! of the same total rank, on real data, over several seeds; resumable across interruptions.
//!
//! The plan (`xtask/experiment/plan.toml`) names the tasks (each a run file), the seeds and
//! the fixed ranks. For every seed, then every task, the driver runs `autolora search`, then
//! `autolora train` with the searched ranks, with each fixed rank and with a random allocation
//! of the searched total, each in its own run directory under the plan's `out_dir`. Each
//! finished run is appended to `results.jsonl` there; a restarted driver skips what is
//! recorded and continues an interrupted run from its checkpoint (`--resume`). `report`
//! turns the log into the generated part of `docs/results.md` and its figures.

pub(crate) mod allocation;
mod plot;
pub(crate) mod records;
pub(crate) mod summary;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::{driver, provision};
pub use records::Record;

/// The experiment's plan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Run seeds; each one draws its own training subset, search split, initialisation and
    /// dropout.
    pub seeds: Vec<u64>,
    /// The fixed-rank LoRA baselines.
    pub fixed_ranks: Vec<i64>,
    /// Whether to train a random allocation of AutoLoRA's total rank.
    pub random_allocation: bool,
    /// Where the run directories and `results.jsonl` go (relative to the repository).
    pub out_dir: PathBuf,
    /// The markdown file whose generated block holds the report (relative to the repository);
    /// the figures go beside it.
    pub report: PathBuf,
    /// The tasks, in the order they run for each seed.
    #[serde(rename = "task")]
    pub tasks: Vec<TaskPlan>,
}

/// One task of the plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskPlan {
    /// Short name (folder names, figure names).
    pub name: String,
    /// Heading in the report.
    pub title: String,
    /// The run file every method of this task shares (relative to the repository).
    pub config: PathBuf,
    /// The score the report compares (a key of the run's scores, e.g. `entity_f1`).
    pub metric: String,
    /// Assets to download before the first run.
    pub assets: Vec<String>,
}

/// One method in one (task, seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The AutoLoRA search (writes ranks.json).
    Search,
    /// Retraining with the searched ranks.
    AutoLora,
    /// Fixed-rank LoRA.
    Fixed(i64),
    /// A random allocation of the searched total rank.
    Random,
}

impl Arm {
    /// The arm's name in folders and in the log.
    pub fn label(self) -> String {
        match self {
            Arm::Search => "search".into(),
            Arm::AutoLora => "autolora".into(),
            Arm::Fixed(r) => format!("r{r}"),
            Arm::Random => "random".into(),
        }
    }
}

/// One run of the experiment.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// Its task.
    pub task: &'a TaskPlan,
    /// Its seed.
    pub seed: u64,
    /// Its method.
    pub arm: Arm,
}

impl Plan {
    /// Reads a plan file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let plan: Plan = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        if plan.seeds.is_empty() || plan.tasks.is_empty() {
            bail!(
                "{}: the plan needs at least one seed and one task",
                path.display()
            );
        }
        Ok(plan)
    }

    /// Every run, seed by seed (so that a partial experiment covers every task and method).
    pub fn units(&self) -> Vec<Unit<'_>> {
        let mut arms = vec![Arm::Search, Arm::AutoLora];
        arms.extend(self.fixed_ranks.iter().map(|&r| Arm::Fixed(r)));
        if self.random_allocation {
            arms.push(Arm::Random);
        }
        let mut units = Vec::new();
        for &seed in &self.seeds {
            for task in &self.tasks {
                units.extend(arms.iter().map(|&arm| Unit { task, seed, arm }));
            }
        }
        units
    }

    fn seed_dir(&self, root: &Path, task: &TaskPlan, seed: u64) -> PathBuf {
        root.join(&self.out_dir)
            .join(&task.name)
            .join(format!("seed-{seed}"))
    }
}

/// Runs what the log lacks (of the named tasks; all when none are named), then writes the
/// report. Drivers for different tasks may run at the same time: each appends whole lines.
pub fn run(plan_path: &Path, cli: &Path, only: &[String]) -> Result<()> {
    let root = provision::repo_root();
    let plan = Plan::load(plan_path)?;
    if let Some(unknown) = only
        .iter()
        .find(|n| !plan.tasks.iter().any(|t| &t.name == *n))
    {
        bail!("{}: no task named `{unknown}`", plan_path.display());
    }
    let out = root.join(&plan.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let binary = driver::install_binary(cli, &out)?;
    let log_path = out.join(driver::LOG);
    let mut log = records::Log::load(&log_path)?;
    let units: Vec<Unit> = plan
        .units()
        .into_iter()
        .filter(|u| only.is_empty() || only.contains(&u.task.name))
        .collect();
    let commit = driver::commit(&root);
    driver::drive(
        &units,
        &mut log,
        &log_path,
        "runs",
        |log, unit| log.find(unit).is_some(),
        |unit| format!("{} seed {} {}", unit.task.name, unit.seed, unit.arm.label()),
        |unit, log| run_unit(&root, &plan, &binary, unit, log, &commit),
    )?;
    report(plan_path)
}

/// Writes the report from the log as it stands.
pub fn report(plan_path: &Path) -> Result<()> {
    let root = provision::repo_root();
    let plan = Plan::load(plan_path)?;
    let log = records::Log::load(&root.join(&plan.out_dir).join(driver::LOG))?;
    summary::write(&root, &plan, &log)
}

fn run_unit(
    root: &Path,
    plan: &Plan,
    binary: &Path,
    unit: &Unit,
    log: &records::Log,
    commit: &str,
) -> Result<Record> {
    let seed_dir = plan.seed_dir(root, unit.task, unit.seed);
    let dir = seed_dir.join(unit.arm.label());
    let search_ranks = seed_dir.join(Arm::Search.label()).join("ranks.json");
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .arg(if unit.arm == Arm::Search {
            "search"
        } else {
            "train"
        })
        .arg("--config")
        .arg(root.join(&unit.task.config))
        .arg("--out")
        .arg(&dir)
        .args(["--set", &format!("run.seed={}", unit.seed)]);
    // What `train` gets as `train.ranks`, and the ranks file (if any) its record lists.
    let (ranks, ranks_file) = match unit.arm {
        Arm::Search => (None, None),
        Arm::AutoLora => (Some(toml_path(&search_ranks)), Some(search_ranks.clone())),
        Arm::Fixed(r) => (Some(r.to_string()), None),
        Arm::Random => {
            let searched = log
                .find(&Unit {
                    arm: Arm::Search,
                    ..*unit
                })
                .context("the random allocation needs the search's ranks")?;
            let path = seed_dir.join("random-ranks.json");
            allocation::write_random(&search_ranks, &path, unit, searched)?;
            (Some(toml_path(&path)), Some(path))
        }
    };
    if let Some(ranks) = ranks {
        cmd.args(["--set", &format!("train.ranks={ranks}")]);
    }
    // A run directory with a checkpoint is an interrupted run: continue it.
    if dir.join("checkpoints").is_dir() {
        cmd.arg("--resume");
    }
    let started = Instant::now();
    provision::run(&mut cmd)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    match unit.arm {
        Arm::Search => Record::search(unit, &dir.join("ranks.json"), wall_seconds, commit),
        _ => Record::train(
            unit,
            &dir.join("result.json"),
            ranks_file.as_deref(),
            wall_seconds,
            commit,
        ),
    }
}

/// A path as a TOML string (the `--set` value syntax).
pub(crate) fn toml_path(path: &Path) -> String {
    Value::String(path.display().to_string()).to_string()
}
