//! The `autolora` command: AutoLoRA rank search, retraining, evaluation and export, driven by
//! one TOML run file (see `config.rs`), with `--set key=value` overrides.

mod batches;
mod bench;
mod checkpoint;
mod config;
mod e2e;
mod evaluate;
mod export;
mod generation;
mod heatmap;
mod lm_task;
mod metrics;
mod model_tokenizer;
mod planted;
mod predict;
mod progress;
mod pruning;
mod ranks;
mod run;
mod search;
mod session;
mod task;
mod train;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use config::{RankSource, RunConfig};
use session::{Intent, Session};

#[derive(Parser)]
#[command(
    name = "autolora",
    version,
    about = "Rank-adaptive LoRA by meta-learning (AutoLoRA)"
)]
struct Cli {
    /// Log more (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Learn the selection weights by bilevel search and write ranks.json and the heatmap.
    Search(RunArgs),
    /// Train LoRA with fixed ranks (train.ranks: an integer or a ranks.json).
    Train(RunArgs),
    /// Score the trained adapter of a run directory on the dev and test splits.
    Eval(RunArgs),
    /// Search, retrain with the found ranks, evaluate (and compare with fixed-rank LoRA).
    Run(RunArgs),
    /// Write the run's adapter (HF PEFT format) and optionally the merged full model (HF format).
    Export {
        #[command(flatten)]
        run: RunArgs,
        /// Folder for the PEFT adapter.
        #[arg(long)]
        adapter: PathBuf,
        /// Also write the base model with the adapter merged in, to this folder.
        #[arg(long)]
        merged: Option<PathBuf>,
    },
    /// Time one training or search step on random tokens and print it as JSON.
    Bench(bench::BenchArgs),
    /// A finished run's adapter, or an exported one on its base model, on a new file: one
    /// prediction per row, as JSON Lines.
    Predict(predict::PredictArgs),
    /// Print a ranks.json as a table and draw its heatmap.
    Ranks {
        /// The ranks file.
        path: PathBuf,
        /// Where to draw the heatmap (SVG).
        #[arg(long)]
        heatmap: Option<PathBuf>,
    },
}

/// Settings shared by the commands that run a model.
#[derive(Args)]
struct RunArgs {
    /// The run file (TOML); without it, the defaults (MiniLM on CoNLL-2003).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Override a setting, e.g. `--set search.steps=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue an interrupted run from its last checkpoint (with the settings it was started
    /// with).
    #[arg(long)]
    resume: bool,
    /// With --resume: accept a changed setting, e.g. `--set train.lr=1e-4 --accept-change
    /// train.lr` after a non-finite loss (repeatable; recorded in the run's resumes.jsonl).
    #[arg(long = "accept-change", value_name = "KEY", requires = "resume")]
    accept_change: Vec<String>,
    /// Device: cpu, cuda or auto (overrides run.device).
    #[arg(long)]
    device: Option<String>,
    /// CPU threads for libtorch (overrides run.threads).
    #[arg(long)]
    threads: Option<usize>,
    /// The run directory (overrides run.out_dir).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

impl RunArgs {
    /// The session of a command that writes results (`search`, `train`, `run`).
    fn open(&self) -> Result<Session> {
        let intent = if self.resume {
            Intent::Resume {
                accepted: self.accept_change.clone(),
            }
        } else {
            Intent::Start
        };
        Session::open(self.resolve()?, &intent)
    }

    /// The session of a command that reads a run directory (`eval`, `export`).
    fn open_run(&self) -> Result<Session> {
        let explicit = self.config.is_some() || !self.overrides.is_empty();
        Session::open(self.resolve()?, &Intent::Read { explicit })
    }

    fn resolve(&self) -> Result<RunConfig> {
        let mut config = RunConfig::resolve(self.config.as_deref(), &self.overrides)?;
        if let Some(device) = &self.device {
            config.run.device = device.clone();
        }
        if let Some(threads) = self.threads {
            config.run.threads = threads;
        }
        if let Some(out) = &self.out {
            config.run.out_dir = out.clone();
        }
        Ok(config)
    }
}

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = dispatch(cli.command) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Search(args) => {
            let session = args.open()?;
            let outcome = search::run(&session, args.resume)?;
            println!("{}", outcome.ranks.table());
            println!("ranks written to {}", outcome.path.display());
            Ok(())
        }
        Command::Train(args) => {
            let session = args.open()?;
            let plan = match &session.config.train.ranks {
                RankSource::Uniform(r) => train::uniform_plan(&session, *r)?,
                RankSource::File(path) => ranks::read_plan(path)?,
            };
            let outcome = train::run(&session, &plan, None, "train", args.resume)?;
            run::save_adapter(&session, outcome.model.as_ref(), "adapter")?;
            run::print_scores("LoRA", &outcome);
            // The scores as data, for scripts that compare runs.
            let entry = run::Entry::new("LoRA".into(), &outcome);
            Ok(autolora_data::atomic::write(
                &session.path("result.json"),
                serde_json::to_string_pretty(&entry)?.as_bytes(),
            )?)
        }
        Command::Eval(args) => {
            let session = args.open_run()?;
            let scores = run::evaluate_saved(&session)?;
            println!("{}", serde_json::to_string_pretty(&scores)?);
            Ok(())
        }
        Command::Run(args) => {
            let session = args.open()?;
            run::run(&session, args.resume)
        }
        Command::Export {
            run,
            adapter,
            merged,
        } => {
            let session = run.open_run()?;
            export::run(&session, &adapter, merged.as_deref())
        }
        Command::Bench(args) => bench::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Ranks { path, heatmap } => {
            let ranks = ranks::RanksFile::load(&path)?;
            print!("{}", ranks.table());
            if let Some(out) = heatmap {
                ranks
                    .draw_heatmap(&out)
                    .with_context(|| format!("drawing {}", out.display()))?;
                println!("heatmap written to {}", out.display());
            }
            Ok(())
        }
    }
}
