//! `cargo xtask <job>`: the project's automation, written in Rust so it runs wherever cargo does.
//!
//! Every job provisions what it needs first, so each works on a fresh machine.

mod bench;
mod download;
mod driver;
mod experiment;
mod gpu;
mod own_data;
mod provision;
mod recovery;
mod report;

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use clap::{Parser, Subcommand};

use provision::Flavor;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "autolora project automation")]
struct Cli {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Install libtorch 2.11.0 (PyPI wheel) into the cache and link it into the repository.
    Setup {
        /// Cache folder to install into (default: $AUTOLORA_CACHE, $XDG_CACHE_HOME/autolora or ~/.cache/autolora).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Which environment to install.
        #[arg(long, value_enum, default_value = "full")]
        flavor: Flavor,
        /// Only install and check that libtorch loads; leave the repository's `.libtorch` link alone.
        #[arg(long)]
        no_link: bool,
    },
    /// Download real assets (models, data sets) into the cache, checking their sha256.
    Download {
        /// Asset names (see `cargo xtask download list`), `all`, or `list`.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// The main job: AutoLoRA on the real MiniLM and CoNLL-2003 (search, retrain, evaluate),
    /// next to fixed-rank LoRA with about the same number of parameters.
    Demo {
        /// A few steps on a small subset: checks the whole path in about a minute.
        #[arg(long)]
        smoke: bool,
        /// Extra `key=value` settings for the run file (e.g. `search.steps=100`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Time our training and search steps against PyTorch + PEFT and the authors' recipe
    /// (alternately, one process at a time); writes target/bench/report.json and docs/bench.md.
    Bench {
        /// The main point only (batch 32 x seq 64), fewer timed steps, reported under
        /// target/bench/ (docs/bench.md keeps the full run).
        #[arg(long)]
        quick: bool,
        /// libtorch CPU threads on both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// AutoLoRA against fixed-rank LoRA and a random allocation of the same total rank, on
    /// real data over several seeds (resumable: finished runs are recorded and skipped); writes
    /// the generated part of docs/results.md.
    Experiment {
        /// The plan: tasks, seeds, fixed ranks.
        #[arg(long, default_value = "xtask/experiment/plan.toml")]
        plan: PathBuf,
        /// Only write the report from the runs recorded so far.
        #[arg(long)]
        report_only: bool,
        /// Run only this task of the plan (repeatable); a driver per task can run at once.
        #[arg(long = "task", value_name = "NAME")]
        tasks: Vec<String>,
    },
    /// The planted-rank benchmark: does the AutoLoRA search recover the ranks of low-rank
    /// updates planted in a teacher MiniLM, against the planted ranks themselves, a uniform rank
    /// and a random allocation of the same parameters (resumable like `experiment`); writes its
    /// block of docs/results.md and docs/recovery.json.
    Recovery {
        /// The quick check (xtask/recovery/quick.toml): one small cell; fails when the search's
        /// ranks do not follow the planted ones.
        #[arg(long, conflicts_with = "plan")]
        quick: bool,
        /// The plan (default: xtask/recovery/plan.toml).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Only write the report from the units recorded so far.
        #[arg(long)]
        report: bool,
    },
    /// Your own files, shown on real data: writes CoNLL-2003 as JSON Lines, the Rotten-Tomatoes
    /// sentences as CSV and Parquet and as a chat file, and runs each run file of
    /// xtask/own-data/ on them (docs/own-data.md).
    OwnData {
        /// A few steps on small subsets.
        #[arg(long)]
        smoke: bool,
    },
    /// Build the `cuda`-feature binaries for the GPU check (xtask/gpu/check.sh), pack them into
    /// .gpu-carry/ under the 64 MiB a device call may carry, and print that call.
    GpuPack {
        /// Build with the release profile (default: the dev profile `cargo xtask bench` uses).
        #[arg(long)]
        release: bool,
    },
    /// Provision libtorch, then run the whole test suite (extra arguments go to `cargo test`).
    Test {
        /// Arguments passed through to `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().job {
        Job::Setup {
            cache,
            flavor,
            no_link,
        } => {
            let cache = match cache {
                Some(dir) => dir,
                None => provision::cache_root()?,
            };
            let env = provision::ensure(&cache, flavor)?;
            provision::verify(&env)?;
            if !no_link {
                provision::link_into_repo(&env.libtorch)?;
            }
            println!(
                "libtorch {} ready at {}",
                provision::TORCH_VERSION,
                env.libtorch.display()
            );
            Ok(())
        }
        Job::Download { names } => download::run(&names),
        Job::Demo { smoke, overrides } => demo(smoke, &overrides),
        Job::OwnData { smoke } => {
            setup_default()?;
            let assets = ["minilm", "conll2003", "rotten-tomatoes", "smollm2"];
            download::run(&assets.map(String::from))?;
            own_data::run(&build_cli()?, smoke)
        }
        Job::Bench { quick, threads } => bench::run(quick, threads),
        Job::Experiment {
            plan,
            report_only,
            tasks,
        } => {
            let plan = provision::repo_root().join(plan);
            if report_only {
                return experiment::report(&plan);
            }
            setup_default()?;
            let assets: Vec<String> = experiment::Plan::load(&plan)?
                .tasks
                .iter()
                .flat_map(|t| t.assets.iter().cloned())
                .collect();
            download::run(&assets)?;
            experiment::run(&plan, &build_cli()?, &tasks)
        }
        Job::Recovery {
            quick,
            plan,
            report,
        } => {
            let default = if quick {
                recovery::QUICK_PLAN
            } else {
                recovery::PLAN
            };
            let plan = provision::repo_root().join(plan.unwrap_or_else(|| default.into()));
            if report {
                return recovery::report(&plan);
            }
            setup_default()?;
            download::run(&recovery::Plan::load(&plan)?.assets)?;
            recovery::run(&plan, &build_cli()?)
        }
        Job::GpuPack { release } => {
            setup_default()?;
            gpu::pack(release)
        }
        Job::Test { args } => {
            setup_default()?;
            // The real assets the integration tests check (they would skip without them).
            download::run(&TEST_ASSETS.map(String::from))?;
            provision::run(
                Command::new(cargo())
                    .current_dir(provision::repo_root())
                    .args(["test", "--workspace"])
                    .args(args),
            )
        }
    }
}

/// Provisions the default (full) environment into the default cache and links it, unless the
/// user brought their own libtorch.
fn setup_default() -> Result<()> {
    if provision::user_libtorch().is_some() {
        return Ok(());
    }
    let env = provision::ensure(&provision::cache_root()?, Flavor::Full)?;
    provision::link_into_repo(&env.libtorch)
}

/// Real models and data sets the test suite reads.
const TEST_ASSETS: [&str; 5] = [
    "minilm-l6-v2",
    "conll2003",
    "rotten-tomatoes",
    "smollm2-135m",
    "gpt2-bpe",
];

/// Settings that shrink the demo to a smoke test of the whole path.
const SMOKE_OVERRIDES: &[&str] = &[
    "search.steps=4",
    "train.steps=4",
    "task.train_limit=64",
    "task.eval_limit=32",
    "run.out_dir=\"runs/demo-smoke\"",
];

fn demo(smoke: bool, overrides: &[String]) -> Result<()> {
    setup_default()?;
    download::run(&["minilm".to_string(), "conll2003".to_string()])?;
    let root = provision::repo_root();
    let mut cmd = Command::new(build_cli()?);
    cmd.current_dir(&root)
        .args(["run", "--config"])
        .arg(root.join("xtask").join("demo.toml"));
    let smoke_overrides = if smoke { SMOKE_OVERRIDES } else { &[] };
    for item in smoke_overrides
        .iter()
        .copied()
        .chain(overrides.iter().map(String::as_str))
    {
        cmd.args(["--set", item]);
    }
    provision::run(&mut cmd)
}

/// Builds the `autolora` binary and returns its path. The dev profile shares its libtorch
/// wrapper build with the tests (a release build would compile it again); libtorch does the
/// heavy lifting either way.
fn build_cli() -> Result<PathBuf> {
    let root = provision::repo_root();
    // Not quiet: the first build compiles the libtorch wrapper for minutes, and a newcomer
    // should see it happen.
    provision::run(
        Command::new(cargo())
            .current_dir(&root)
            .args(["build", "-p", "autolora-cli"]),
    )?;
    Ok(target_dir().join("debug").join("autolora"))
}

/// Cargo's target folder (`CARGO_TARGET_DIR`, else `<repo>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| provision::repo_root().join("target"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
