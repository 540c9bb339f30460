//! `cargo xtask recovery`: the planted-rank benchmark. Does the AutoLoRA search find where
//! capacity is needed when the answer is known?
//!
//! The `autolora` task `planted` builds a teacher, the real MiniLM plus low-rank updates of
//! known rank per module (a pattern file, `xtask/recovery/patterns/*.toml`) scaled to a
//! relative size rho, and a fixed random token head; the student (MiniLM with LoRA on every
//! linear layer, the same head) fits the teacher's token distributions with a KL loss. For
//! every seed, pattern and rho (a cell), the driver trains the oracle (LoRA of the planted
//! ranks, whose LoRA parameter count P becomes every search's budget), runs each search
//! variant of the plan and retrains its ranks, searches the control variant again on shuffled
//! targets, and trains the uniform rank closest to P and a random allocation of P, each in its
//! own run directory under the plan's `out_dir`. Each finished unit is appended to
//! `results.jsonl` there; a restarted driver skips what is recorded and resumes an interrupted
//! run from its checkpoint (`--resume`). The report (`summary.rs`) compares every allocation
//! with the planted ranks (`metrics.rs`).

mod metrics;
mod pattern;
mod records;
mod summary;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use autolora_data::rng::{derive_seed, stream};

use crate::driver;
use crate::experiment::{allocation, toml_path};
use crate::provision;
use pattern::Pattern;
use records::{Log, Planted, Record};

/// The plan of `cargo xtask recovery` (the full benchmark).
pub const PLAN: &str = "xtask/recovery/plan.toml";
/// The plan of `cargo xtask recovery --quick` (one small cell with a pass/fail check).
pub const QUICK_PLAN: &str = "xtask/recovery/quick.toml";

/// Settings the driver sets itself on every run; a plan may not override them.
const DRIVER_KEYS: &[&str] = &[
    "run.seed",
    "run.out_dir",
    "task.planted.pattern",
    "task.planted.rho",
    "task.planted.shuffle",
    "search.budget_params",
    "train.ranks",
];

/// The plan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The run file every unit shares (relative to the repository).
    pub config: PathBuf,
    /// Assets to download before the first run.
    #[serde(default)]
    pub assets: Vec<String>,
    /// Pattern files (relative to the repository); their stems name the report's sections
    /// and the run folders, so they must differ.
    pub patterns: Vec<PathBuf>,
    /// Relative sizes of the planted updates (`task.planted.rho`).
    pub rhos: Vec<f64>,
    /// Run seeds of the first rho (where the search is judged).
    pub seeds: Vec<u64>,
    /// Run seeds of every later rho (the sweep that finds where recovery stops working);
    /// none: `seeds`. Each one must be one of `seeds`.
    #[serde(default)]
    pub sweep_seeds: Option<Vec<u64>>,
    /// Where the run directories and `results.jsonl` go (relative to the repository).
    pub out_dir: PathBuf,
    /// The markdown file whose generated block holds the report; none: printed instead.
    #[serde(default)]
    pub report: Option<PathBuf>,
    /// The rows of the report as JSON.
    #[serde(default)]
    pub json: Option<PathBuf>,
    /// `key=value` settings applied to every run.
    #[serde(default)]
    pub overrides: Vec<String>,
    /// The search variants, in report order.
    #[serde(rename = "variant")]
    pub variants: Vec<Variant>,
    /// The variant whose search is also run on shuffled targets.
    #[serde(default)]
    pub control: Option<String>,
    /// Fail the run when the mean Spearman correlation of `gate_variant`'s searches is below
    /// this.
    #[serde(default)]
    pub pass_spearman: Option<f64>,
    /// The variant `pass_spearman` judges.
    #[serde(default)]
    pub gate_variant: Option<String>,
    /// The patterns' stems, filled by [`Plan::load`].
    #[serde(skip)]
    stems: Vec<String>,
}

/// A search variant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its name in folders, the log and the report.
    pub name: String,
    /// `key=value` settings of its searches (after the plan's; the retrain of its ranks runs
    /// under the plan's settings alone, as every other training arm).
    #[serde(default)]
    pub overrides: Vec<String>,
}

/// A pattern of the plan.
#[derive(Debug, Clone, Copy)]
pub struct PatternRef<'a> {
    /// The file (relative to the repository).
    pub path: &'a Path,
    /// Its stem.
    pub stem: &'a str,
}

/// One method in one cell.
#[derive(Debug, Clone, Copy)]
pub enum Arm<'a> {
    /// LoRA of the planted ranks.
    Oracle,
    /// A variant's search under the oracle's parameter budget.
    Search(&'a Variant),
    /// Retraining with that search's ranks.
    Retrain(&'a Variant),
    /// The control variant's search on shuffled targets (search only).
    Control(&'a Variant),
    /// The uniform rank closest to the oracle's parameters.
    Uniform,
    /// A random allocation of the oracle's parameters.
    Random,
}

impl Arm<'_> {
    /// The arm's name in folders and in the log.
    pub fn label(&self) -> String {
        match self {
            Arm::Oracle => "oracle".into(),
            Arm::Search(v) => format!("search-{}", v.name),
            Arm::Retrain(v) => v.name.clone(),
            Arm::Control(_) => "control".into(),
            Arm::Uniform => "uniform".into(),
            Arm::Random => "random".into(),
        }
    }

    fn is_search(&self) -> bool {
        matches!(self, Arm::Search(_) | Arm::Control(_))
    }
}

/// One run of the benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// Its pattern.
    pub pattern: PatternRef<'a>,
    /// Its rho.
    pub rho: f64,
    /// Its seed.
    pub seed: u64,
    /// Its method.
    pub arm: Arm<'a>,
}

/// What the driver runs for one unit: `autolora <subcommand> --config .. --out <dir>` with
/// `--set` for each of `sets` (and `--resume` when the directory holds checkpoints).
#[derive(Debug)]
pub struct Invocation {
    /// `search` or `train`.
    pub subcommand: &'static str,
    /// The run directory.
    pub dir: PathBuf,
    /// `key=value` settings, in order (later ones win).
    pub sets: Vec<String>,
}

/// rho as the driver writes it, in folder names and as a TOML float (`0.05`, `1.0`).
pub fn rho_label(rho: f64) -> String {
    format!("{rho:?}")
}

impl Plan {
    /// Reads and checks a plan file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let mut plan: Plan = toml::from_str(text)?;
        ensure!(
            !plan.seeds.is_empty()
                && !plan.patterns.is_empty()
                && !plan.rhos.is_empty()
                && !plan.variants.is_empty(),
            "the plan needs at least one pattern, rho, seed and variant"
        );
        let mut seeds = plan.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        ensure!(seeds.len() == plan.seeds.len(), "a seed is listed twice");
        if let Some(sweep) = &plan.sweep_seeds {
            ensure!(
                !sweep.is_empty() && sweep.iter().all(|s| seeds.contains(s)),
                "sweep_seeds must be some of seeds ({:?}), got {sweep:?}",
                plan.seeds
            );
            let mut unique = sweep.clone();
            unique.sort_unstable();
            unique.dedup();
            ensure!(unique.len() == sweep.len(), "a sweep seed is listed twice");
        }
        for (i, rho) in plan.rhos.iter().enumerate() {
            ensure!(
                rho.is_finite() && *rho > 0.0,
                "rho must be a finite number > 0, got {rho}"
            );
            ensure!(
                !plan.rhos[..i].iter().any(|r| records::same_rho(*r, *rho)),
                "rho {rho} is listed twice"
            );
        }
        for path in &plan.patterns {
            // `train.ranks` reads a `.toml` path as a pattern file, anything else as ranks.json.
            ensure!(
                path.extension().is_some_and(|e| e == "toml"),
                "pattern {}: pattern files end in .toml (the oracle trains with it as \
                 train.ranks, which reads other paths as ranks.json)",
                path.display()
            );
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .with_context(|| format!("pattern {}: no file name", path.display()))?
                .to_string();
            ensure!(
                is_folder_name(&stem),
                "pattern {}: its stem `{stem}` must be letters, digits, `-`, `_` or `.`",
                path.display()
            );
            ensure!(
                !plan.stems.contains(&stem),
                "two patterns share the stem `{stem}` (it names their folders and sections)"
            );
            plan.stems.push(stem);
        }
        for (i, variant) in plan.variants.iter().enumerate() {
            let name = &variant.name;
            ensure!(
                is_folder_name(name),
                "variant `{name}`: names are letters, digits, `-`, `_` or `.`"
            );
            ensure!(
                !["oracle", "control", "uniform", "random"].contains(&name.as_str())
                    && !name.starts_with("search-"),
                "variant `{name}`: the name is taken by another arm"
            );
            ensure!(
                !plan.variants[..i].iter().any(|v| &v.name == name),
                "two variants are named `{name}`"
            );
            check_overrides(&variant.overrides).with_context(|| format!("variant `{name}`"))?;
        }
        check_overrides(&plan.overrides).context("the plan's overrides")?;
        if let Some(control) = &plan.control {
            ensure!(
                plan.variant(control).is_some(),
                "control: no variant named `{control}`"
            );
        }
        match (&plan.pass_spearman, &plan.gate_variant) {
            (None, None) => {}
            (Some(pass), Some(variant)) => {
                ensure!(pass.is_finite(), "pass_spearman must be a number");
                ensure!(
                    plan.variant(variant).is_some(),
                    "gate_variant: no variant named `{variant}`"
                );
            }
            _ => bail!("pass_spearman and gate_variant go together"),
        }
        Ok(plan)
    }

    /// The variant named `name`.
    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// The patterns, with their stems.
    pub fn patterns(&self) -> impl Iterator<Item = PatternRef<'_>> {
        self.patterns
            .iter()
            .zip(&self.stems)
            .map(|(path, stem)| PatternRef { path, stem })
    }

    /// Every unit: rho by rho in plan order (so a partial benchmark has the first rho of the
    /// plan with every pattern and seed), then seed, then pattern; within a cell the oracle,
    /// each variant's search and retrain, the control, uniform and random.
    pub fn units(&self) -> Vec<Unit<'_>> {
        let mut arms = vec![Arm::Oracle];
        for variant in &self.variants {
            arms.push(Arm::Search(variant));
            arms.push(Arm::Retrain(variant));
        }
        if let Some(control) = self.control.as_deref().and_then(|c| self.variant(c)) {
            arms.push(Arm::Control(control));
        }
        arms.push(Arm::Uniform);
        arms.push(Arm::Random);
        // rho by rho in plan order, then seed by seed: the first rho of the plan is complete
        // (every pattern, every seed) before the next one starts.
        let mut units = Vec::new();
        for &rho in &self.rhos {
            for &seed in self.seeds_of(rho) {
                for pattern in self.patterns() {
                    units.extend(arms.iter().map(|&arm| Unit {
                        pattern,
                        rho,
                        seed,
                        arm,
                    }));
                }
            }
        }
        units
    }

    /// The seeds that `rho` runs: `seeds` for the first rho, `sweep_seeds` for the others.
    pub fn seeds_of(&self, rho: f64) -> &[u64] {
        match &self.sweep_seeds {
            Some(sweep) if !records::same_rho(rho, self.rhos[0]) => sweep,
            _ => &self.seeds,
        }
    }

    /// Every (rho, seed) pair the plan runs, in its order.
    pub fn rho_seeds(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.rhos
            .iter()
            .flat_map(move |&rho| self.seeds_of(rho).iter().map(move |&seed| (rho, seed)))
    }

    /// The folder of one (pattern, rho, seed) cell.
    pub fn cell_dir(&self, root: &Path, stem: &str, rho: f64, seed: u64) -> PathBuf {
        root.join(&self.out_dir)
            .join(stem)
            .join(format!("rho-{}", rho_label(rho)))
            .join(format!("seed-{seed}"))
    }

    fn unit_dir(&self, root: &Path, unit: &Unit) -> PathBuf {
        self.cell_dir(root, unit.pattern.stem, unit.rho, unit.seed)
            .join(unit.arm.label())
    }

    /// The settings of the plan that `arm`'s runs depend on, as its records keep them: the
    /// plan's overrides, then (searches, their retrains and the control) the variant's.
    pub fn settings_of(&self, arm: &Arm) -> Vec<String> {
        let mut settings = self.overrides.clone();
        if let Arm::Search(variant) | Arm::Retrain(variant) | Arm::Control(variant) = arm {
            settings.extend(variant.overrides.iter().cloned());
        }
        settings
    }

    /// Where the random arm's allocation goes (a pattern file).
    /// The ranks a variant's retrain trains: its search's ranks.json, or, where the search's
    /// folder is gone (a fresh checkout keeps the log, not the run folders), the rank table
    /// [`run_unit`] writes beside it from the search's record.
    fn searched_ranks(&self, root: &Path, unit: &Unit, variant: &Variant) -> PathBuf {
        let folder = self
            .cell_dir(root, unit.pattern.stem, unit.rho, unit.seed)
            .join(Arm::Search(variant).label());
        let json = folder.join("ranks.json");
        if json.is_file() {
            json
        } else {
            folder.join("ranks.toml")
        }
    }

    fn random_pattern(&self, root: &Path, unit: &Unit) -> PathBuf {
        self.cell_dir(root, unit.pattern.stem, unit.rho, unit.seed)
            .join("random-ranks.toml")
    }

    /// The run file with the plan's overrides applied as the CLI applies `--set` (dotted keys,
    /// TOML values, bare words as strings): what the report states and where `lora.k` comes
    /// from.
    pub fn settings(&self, root: &Path) -> Result<toml::Table> {
        let path = root.join(&self.config);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        for item in &self.overrides {
            let (key, value) = item.split_once('=').context("checked at load")?;
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            let parts: Vec<&str> = key.trim().split('.').collect();
            let mut section = &mut table;
            for part in &parts[..parts.len() - 1] {
                section = section
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .with_context(|| format!("override `{item}`: `{part}` is not a section"))?;
            }
            section.insert(parts[parts.len() - 1].to_string(), value);
        }
        Ok(table)
    }

    /// Components per module of the searches (`lora.k`, default 8): the random allocation's
    /// ceiling.
    fn k(&self, root: &Path) -> Result<usize> {
        match setting(&self.settings(root)?, "lora.k") {
            None => Ok(8),
            Some(value) => value
                .as_integer()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k >= 1)
                .with_context(|| format!("lora.k must be a positive integer, got {value}")),
        }
    }

    /// Reads what the plan names before anything runs: the run file and every pattern.
    fn check_files(&self, root: &Path) -> Result<()> {
        self.settings(root)?;
        for path in &self.patterns {
            Pattern::load(&root.join(path))?;
        }
        Ok(())
    }

    /// The command of `unit`. `oracle` is the oracle's record of the unit's cell, which every
    /// arm but the oracle needs (its parameter count is the budget).
    pub fn invocation(
        &self,
        root: &Path,
        unit: &Unit,
        oracle: Option<&Record>,
    ) -> Result<Invocation> {
        let mut sets = vec![format!("run.seed={}", unit.seed)];
        sets.extend(self.overrides.iter().cloned());
        sets.push(format!(
            "task.planted.pattern={}",
            toml_path(&root.join(unit.pattern.path))
        ));
        sets.push(format!("task.planted.rho={}", rho_label(unit.rho)));
        sets.push(format!(
            "task.planted.shuffle={}",
            matches!(unit.arm, Arm::Control(_))
        ));
        let budget = || -> Result<i64> {
            let oracle = oracle.context("this arm needs the oracle's record")?;
            oracle
                .lora_params
                .context("the oracle's record lacks lora_params")
        };
        match unit.arm {
            Arm::Oracle => sets.push(format!(
                "train.ranks={}",
                toml_path(&root.join(unit.pattern.path))
            )),
            Arm::Search(variant) | Arm::Control(variant) => {
                sets.extend(variant.overrides.iter().cloned());
                sets.push(format!("search.budget_params={}", budget()?));
            }
            Arm::Retrain(variant) => {
                let ranks = self.searched_ranks(root, unit, variant);
                sets.push(format!("train.ranks={}", toml_path(&ranks)));
            }
            Arm::Uniform => {
                let oracle = oracle.context("the uniform arm needs the oracle's record")?;
                let per_rank: i64 = oracle.planted.iter().map(|m| m.params_per_rank).sum();
                let rank = metrics::uniform_rank(budget()?, per_rank)?;
                sets.push(format!("train.ranks={rank}"));
            }
            Arm::Random => sets.push(format!(
                "train.ranks={}",
                toml_path(&self.random_pattern(root, unit))
            )),
        }
        Ok(Invocation {
            subcommand: if unit.arm.is_search() {
                "search"
            } else {
                "train"
            },
            dir: self.unit_dir(root, unit),
            sets,
        })
    }

    /// The random arm's allocation: `random_ranks` of the oracle's parameter count over the
    /// teacher's modules, ranks 0..=k, seeded by the run seed and the cell's pattern and rho.
    pub fn random_allocation(
        &self,
        unit: &Unit,
        oracle: &Record,
        k: usize,
    ) -> Result<Vec<(String, usize)>> {
        let costs: Vec<i64> = oracle.planted.iter().map(|m| m.params_per_rank).collect();
        let budget = oracle
            .lora_params
            .context("the oracle's record lacks lora_params")?;
        let index = allocation::fnv1a(&format!(
            "{}/rho-{}",
            unit.pattern.stem,
            rho_label(unit.rho)
        ));
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(unit.seed, index, stream::RANDOM_ALLOCATION));
        let ranks = allocation::random_ranks(&costs, budget, 0, k, &mut rng)?;
        Ok(oracle
            .planted
            .iter()
            .map(|m| m.name.clone())
            .zip(ranks)
            .collect())
    }
}

/// The value of a dotted key in a table.
fn setting<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

fn is_folder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

fn check_overrides(overrides: &[String]) -> Result<()> {
    for item in overrides {
        let (key, _) = item
            .split_once('=')
            .with_context(|| format!("override `{item}`: expected KEY=VALUE"))?;
        let key = key.trim();
        ensure!(
            !key.is_empty() && key.split('.').all(|p| !p.is_empty()),
            "override `{item}`: expected a dotted key"
        );
        ensure!(
            !DRIVER_KEYS.contains(&key),
            "override `{item}`: the driver sets `{key}` itself"
        );
    }
    Ok(())
}

/// Runs what the log lacks, writes the report, then applies the plan's pass/fail check.
pub fn run(plan_path: &Path, cli: &Path) -> Result<()> {
    run_in(&provision::repo_root(), plan_path, cli)
}

fn run_in(root: &Path, plan_path: &Path, cli: &Path) -> Result<()> {
    let plan = Plan::load(plan_path)?;
    plan.check_files(root)?;
    let k = plan.k(root)?;
    let out = root.join(&plan.out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let binary = driver::install_binary(cli, &out)?;
    let log_path = out.join(driver::LOG);
    let mut log = Log::load(&log_path)?;
    for stale in log.drop_stale(&plan) {
        // Its run folder holds the old settings' checkpoints, which a resume would refuse.
        let dir = plan
            .cell_dir(root, &stale.pattern, stale.rho, stale.seed)
            .join(&stale.arm);
        println!(
            "{} rho {} seed {} {}: recorded under other settings than the plan's; it runs again",
            stale.pattern,
            rho_label(stale.rho),
            stale.seed,
            stale.arm
        );
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the stale run {}", dir.display()))?;
        }
    }
    let commit = driver::commit(root);
    driver::drive(
        &plan.units(),
        &mut log,
        &log_path,
        "units",
        |log, unit| log.find(unit).is_some(),
        |unit| {
            format!(
                "{} rho {} seed {} {}",
                unit.pattern.stem,
                rho_label(unit.rho),
                unit.seed,
                unit.arm.label()
            )
        },
        |unit, log| run_unit(root, &plan, &binary, unit, log, k, &commit),
    )?;
    summary::write(root, plan_path, &plan, &log)?;
    summary::check_pass(&plan, &log)
}

/// Writes the report from the log as it stands.
pub fn report(plan_path: &Path) -> Result<()> {
    let root = provision::repo_root();
    let plan = Plan::load(plan_path)?;
    let mut log = Log::load(&root.join(&plan.out_dir).join(driver::LOG))?;
    log.drop_stale(&plan);
    summary::write(&root, plan_path, &plan, &log)
}

fn run_unit(
    root: &Path,
    plan: &Plan,
    binary: &Path,
    unit: &Unit,
    log: &Log,
    k: usize,
    commit: &str,
) -> Result<Record> {
    let oracle = match unit.arm {
        Arm::Oracle => None,
        _ => Some(
            log.find(&Unit {
                arm: Arm::Oracle,
                ..*unit
            })
            .context("the oracle runs first in every cell")?,
        ),
    };
    if let (Arm::Random, Some(oracle)) = (unit.arm, oracle) {
        let ranks = plan.random_allocation(unit, oracle, k)?;
        let path = plan.random_pattern(root, unit);
        let comment = format!(
            "A random allocation of the oracle's {} LoRA parameters (cargo xtask recovery):\n\
             pattern {}, rho {}, seed {}, ranks 0..={k}.",
            oracle.lora_params.unwrap_or(0),
            unit.pattern.stem,
            rho_label(unit.rho),
            unit.seed
        );
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating {}", folder.display()))?;
        }
        autolora_data::atomic::write(&path, pattern::render(&comment, &ranks).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Arm::Retrain(variant) = unit.arm {
        let path = plan.searched_ranks(root, unit, variant);
        if !path.is_file() {
            let search = log
                .find(&Unit {
                    arm: Arm::Search(variant),
                    ..*unit
                })
                .context("a retrain runs after its search")?;
            let comment = format!(
                "The ranks of {}'s search, from its record in {} (its run folder is gone).",
                variant.name,
                driver::LOG
            );
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
            }
            autolora_data::atomic::write(
                &path,
                pattern::render(&comment, &search.ranks).as_bytes(),
            )
            .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let invocation = plan.invocation(root, unit, oracle)?;
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .arg(invocation.subcommand)
        .arg("--config")
        .arg(root.join(&plan.config))
        .arg("--out")
        .arg(&invocation.dir);
    for item in &invocation.sets {
        cmd.args(["--set", item]);
    }
    // A run directory with a checkpoint is an interrupted run: continue it.
    if invocation.dir.join("checkpoints").is_dir() {
        cmd.arg("--resume");
    }
    let started = Instant::now();
    provision::run(&mut cmd)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    record_unit(
        root,
        plan,
        unit,
        oracle,
        &invocation.dir,
        wall_seconds,
        commit,
    )
}

/// The record of a finished unit, from the files its run wrote, after checking that the
/// run's teacher is the cell's.
fn record_unit(
    root: &Path,
    plan: &Plan,
    unit: &Unit,
    oracle: Option<&Record>,
    dir: &Path,
    wall_seconds: f64,
    commit: &str,
) -> Result<Record> {
    let planted = Planted::read(dir)?;
    ensure!(
        records::same_rho(planted.rho, unit.rho),
        "{}: planted.json has rho {}, the driver asked for {}",
        dir.display(),
        planted.rho,
        unit.rho
    );
    let mut record = Record::new(unit, plan.settings_of(&unit.arm), wall_seconds, commit);
    let modules = match oracle {
        None => &planted.modules,
        Some(oracle) => {
            let same = planted.modules.len() == oracle.planted.len()
                && planted
                    .modules
                    .iter()
                    .zip(&oracle.planted)
                    .all(|(a, b)| a.name == b.name && a.planted_rank == b.planted_rank);
            ensure!(
                same,
                "{}: planted.json's modules or planted ranks differ from the oracle's run",
                dir.display()
            );
            &oracle.planted
        }
    };
    record.ranks = match unit.arm {
        Arm::Oracle => {
            let path = root.join(unit.pattern.path);
            let pattern = Pattern::load(&path)?;
            let from_pattern = records::pattern_allocation(&pattern, &path, modules)?;
            let planted_ranks = records::planted_allocation(modules);
            ensure!(
                from_pattern == planted_ranks,
                "{}: planted.json's planted ranks are not those of {}",
                dir.display(),
                path.display()
            );
            record.planted = planted.modules.clone();
            planted_ranks
        }
        Arm::Search(_) | Arm::Control(_) => {
            record.budget_params = oracle.and_then(|o| o.lora_params);
            records::ranks_json_allocation(&dir.join("ranks.json"), modules)?
        }
        Arm::Retrain(variant) => {
            let path = plan.searched_ranks(root, unit, variant);
            if path.extension().is_some_and(|e| e == "toml") {
                records::pattern_allocation(&Pattern::load(&path)?, &path, modules)?
            } else {
                records::ranks_json_allocation(&path, modules)?
            }
        }
        Arm::Uniform => {
            let per_rank: i64 = modules.iter().map(|m| m.params_per_rank).sum();
            let budget = oracle.and_then(|o| o.lora_params).unwrap_or(0);
            let rank = metrics::uniform_rank(budget, per_rank)?;
            modules.iter().map(|m| (m.name.clone(), rank)).collect()
        }
        Arm::Random => {
            let path = plan.random_pattern(root, unit);
            records::pattern_allocation(&Pattern::load(&path)?, &path, modules)?
        }
    };
    if !unit.arm.is_search() {
        record.read_result(&dir.join("result.json"))?;
        let counted = records::allocation_params(modules, &record.ranks_of(modules));
        if record.lora_params != Some(counted) {
            println!(
                "warning: {} reports {:?} LoRA parameters; its ranks over planted.json's modules \
                 count {counted}",
                dir.join("result.json").display(),
                record.lora_params
            );
        }
    }
    if matches!(unit.arm, Arm::Oracle) && record.lora_params != Some(planted.planted_params) {
        println!(
            "warning: the oracle trained {:?} LoRA parameters, planted.json counts {}; the \
             searches' budget is the former",
            record.lora_params, planted.planted_params
        );
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
