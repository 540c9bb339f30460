//! `autolora bench`: the wall time of one training step or one search step on random tokens.
//!
//! One mode per process (`--mode plain|fo|fd|fd-norollback|exact`), so that the peak resident
//! memory it reports (`VmHWM`) belongs to that mode alone. The input is random token ids of
//! shape batch x seq, every position a real token (so this side and `xtask/bench/torch_steps.py`
//! do the same work), with a random label for every token. The steps are exactly the ones
//! `autolora train` and `autolora search` take: the plain step is rank-8 LoRA on query and
//! value with AdamW and fused attention; a search step is [`BilevelSearch::step`] with the
//! CLI's default settings (inner Adam 3e-4, outer Adam 1e-2 with betas 0.5/0.999, k = 8,
//! softmax gate) in the chosen hypergradient mode, fused attention except for the exact mode,
//! which needs the eager (double-differentiable) attention. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::{BilevelSearch, FiniteDifferenceForm, Hypergradient, SearchConfig};
use autolora_core::optim::{OptimConfig, Optimizer};
use autolora_core::{Gate, LoraConfig, NamedParam, Param};
use autolora_models::{AttentionImpl, LoadOptions, Model, RawConfig, Task, load_model};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::batches::DeviceBatch;

/// Which step `autolora bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    /// A plain LoRA training step (rank 8, AdamW, fused attention).
    Plain,
    /// A search step with the first-order hypergradient.
    Fo,
    /// A search step with the authors' finite-difference hypergradient and roll-back.
    Fd,
    /// A finite-difference search step that keeps the look-ahead step (no roll-back).
    FdNorollback,
    /// A search step with the exact one-step-unroll hypergradient (eager attention).
    Exact,
}

impl BenchMode {
    /// Forward+backward passes over a batch per step (`None` where passes differ in kind).
    fn passes(self) -> Option<u32> {
        match self {
            BenchMode::Plain => Some(1),
            // inner, validation, redo
            BenchMode::Fo => Some(3),
            // inner, validation, +eps, -eps, redo
            BenchMode::Fd => Some(5),
            BenchMode::FdNorollback => Some(4),
            // a double backward through the training pass: not comparable pass for pass
            BenchMode::Exact => None,
        }
    }
}

/// Settings of `autolora bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The step to time.
    #[arg(long, value_enum, default_value = "plain")]
    mode: BenchMode,
    /// Hugging Face model folder (config.json, model.safetensors); default: the `minilm` asset.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    batch: i64,
    /// Tokens per sequence (all real, no padding).
    #[arg(long, default_value_t = 64)]
    seq: i64,
    /// libtorch CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Token classes of the classification head.
    #[arg(long, default_value_t = 9)]
    labels: i64,
    /// Seed of the random tokens, the head and the adapters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// What `autolora bench` prints (field names shared with `xtask/bench/torch_steps.py`).
#[derive(Debug, Serialize)]
struct BenchReport {
    implementation: &'static str,
    mode: BenchMode,
    attention: &'static str,
    device: String,
    batch: i64,
    seq: i64,
    threads: i32,
    warmup: usize,
    steps: usize,
    step_seconds: Vec<f64>,
    median_step_seconds: f64,
    min_step_seconds: f64,
    tokens_per_step: i64,
    tokens_per_second: f64,
    passes: Option<u32>,
    trainable_params: i64,
    final_loss: f64,
    rss_after_load_mib: f64,
    rss_end_mib: f64,
    peak_rss_mib: f64,
}

/// Runs the benchmark and prints its JSON report on stdout.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.batch < 1 || args.seq < 1 || args.steps < 1 || args.threads < 1 || args.labels < 2 {
        bail!(
            "bench needs batch, seq, steps and threads >= 1 and labels >= 2 \
             (got batch {}, seq {}, steps {}, threads {}, labels {})",
            args.batch,
            args.seq,
            args.steps,
            args.threads,
            args.labels
        );
    }
    tch::set_num_threads(args.threads);
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
        "cuda" => bail!("--device cuda, but libtorch sees no CUDA device"),
        other => bail!("--device must be cpu or cuda, got `{other}`"),
    };
    let model_dir = match &args.model_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch("minilm").context("fetching the minilm asset")?,
    };
    let raw = RawConfig::read_dir(&model_dir)?;
    let vocab = raw
        .fields
        .get("vocab_size")
        .and_then(serde_json::Value::as_i64)
        .with_context(|| format!("{}: no integer vocab_size", raw.path.display()))?;
    // Ids from 1000 up are ordinary word pieces in BERT vocabularies (below: special tokens).
    let low = if vocab > 2000 { 1000 } else { 0 };

    // Drawn first, in the same order as the Python script, so both sides see the same tokens.
    tch::manual_seed(args.seed as i64);
    let train = random_batch(low, vocab, args, device);
    let val = random_batch(low, vocab, args, device);

    let attention = if args.mode == BenchMode::Exact {
        AttentionImpl::Eager
    } else {
        AttentionImpl::Fused
    };
    let options = LoadOptions {
        device,
        kind: Kind::Float,
        base_kind: None,
        seed: args.seed,
        attention,
    };
    let task = Task::TokenClassification {
        num_labels: args.labels,
    };
    let mut model = load_model(&model_dir, task, &options)
        .with_context(|| format!("loading the model from {}", model_dir.display()))?;
    tch::manual_seed(args.seed as i64);
    let mut stepper = Stepper::new(model.as_mut(), args)?;
    let trainable_params = model
        .trainable_params()
        .iter()
        .map(|p| p.param.numel())
        .sum::<i64>()
        + model
            .selection_params()
            .iter()
            .map(|p| p.param.numel())
            .sum::<i64>();
    let rss_after_load_mib = memory_mib("VmRSS")?;

    let mut step_seconds = Vec::with_capacity(args.steps);
    let mut final_loss = f64::NAN;
    for i in 0..args.warmup + args.steps {
        let started = Instant::now();
        final_loss = stepper.step(model.as_ref(), &train, &val, i as u64)?;
        if device != Device::Cpu {
            tch::Cuda::synchronize(0);
        }
        let elapsed = started.elapsed().as_secs_f64();
        if i >= args.warmup {
            step_seconds.push(elapsed);
        }
        tracing::info!(step = i, seconds = elapsed, loss = final_loss, "bench step");
    }
    let median_step_seconds = median(&step_seconds);
    let min_step_seconds = step_seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let tokens_per_step = args.batch * args.seq;
    let report = BenchReport {
        implementation: "autolora",
        mode: args.mode,
        attention: match attention {
            AttentionImpl::Eager => "eager",
            AttentionImpl::Fused => "fused",
        },
        device: format!("{device:?}"),
        batch: args.batch,
        seq: args.seq,
        threads: tch::get_num_threads(),
        warmup: args.warmup,
        steps: args.steps,
        step_seconds,
        median_step_seconds,
        min_step_seconds,
        tokens_per_step,
        tokens_per_second: tokens_per_step as f64 / median_step_seconds,
        passes: args.mode.passes(),
        trainable_params,
        final_loss,
        rss_after_load_mib,
        rss_end_mib: memory_mib("VmRSS")?,
        peak_rss_mib: memory_mib("VmHWM")?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Random ids in `low..vocab`, every position attended, a random label per token.
fn random_batch(low: i64, vocab: i64, args: &BenchArgs, device: Device) -> DeviceBatch {
    let shape = [args.batch, args.seq];
    let ids = Tensor::randint_low(low, vocab, shape, (Kind::Int64, Device::Cpu));
    let labels = Tensor::randint_low(0, args.labels, shape, (Kind::Int64, Device::Cpu));
    DeviceBatch {
        attention_mask: ids.ones_like().to(device),
        token_type_ids: Some(ids.zeros_like().to(device)),
        input_ids: ids.to(device),
        labels: labels.to(device),
        tokens: args.batch * args.seq,
    }
}

/// The state one kind of step needs.
enum Stepper {
    Plain(Optimizer),
    Search(Box<BilevelSearch>),
}

impl Stepper {
    /// Attaches the adapters of `args.mode` to `model` and builds its optimizers.
    fn new(model: &mut dyn Model, args: &BenchArgs) -> Result<Self> {
        let targets = ["query".to_string(), "value".to_string()];
        let lora = LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.1,
        };
        if args.mode == BenchMode::Plain {
            model.inject_lora(&targets, &lora, None)?;
            let optimizer = Optimizer::new(
                slots(&model.trainable_params()),
                OptimConfig::adamw(5e-4, 0.01),
            )?;
            return Ok(Stepper::Plain(optimizer));
        }
        model.inject_lora(&targets, &lora, Some(Gate::Softmax))?;
        let inner = Optimizer::new(
            slots(&model.trainable_params()),
            OptimConfig::search_inner(),
        )?;
        let outer = Optimizer::new(
            slots(&model.selection_params()),
            OptimConfig {
                lr: 1e-2,
                ..OptimConfig::search_outer()
            },
        )?;
        let hypergradient = match args.mode {
            BenchMode::Fo => Hypergradient::FirstOrder,
            BenchMode::Exact => Hypergradient::Exact,
            _ => Hypergradient::FiniteDifference,
        };
        let config = SearchConfig {
            hypergradient,
            fd_form: FiniteDifferenceForm::Implicit,
            rollback: args.mode != BenchMode::FdNorollback,
            seed: args.seed,
            ..SearchConfig::default()
        };
        Ok(Stepper::Search(Box::new(BilevelSearch::new(
            inner, outer, config,
        )?)))
    }

    /// One step; returns the training loss.
    fn step(
        &mut self,
        model: &dyn Model,
        train: &DeviceBatch,
        val: &DeviceBatch,
        index: u64,
    ) -> Result<f64> {
        match self {
            Stepper::Plain(optimizer) => {
                // As `autolora train` does: a reproducible dropout mask per step.
                tch::manual_seed(autolora_core::bilevel::derive_seed(0, index, 7));
                let loss = train.loss(model, true)?;
                let value = loss.double_value(&[]);
                optimizer.minimize(&loss)?;
                Ok(value)
            }
            Stepper::Search(engine) => {
                let report = engine.step(|| train.loss(model, true), || val.loss(model, true))?;
                Ok(report.train_loss)
            }
        }
    }
}

fn slots(params: &[NamedParam]) -> Vec<Param> {
    params.iter().map(|p| p.param.clone()).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// A `kB` line of `/proc/self/status` (`VmRSS`: resident now, `VmHWM`: peak), in MiB.
fn memory_mib(key: &str) -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .with_context(|| format!("/proc/self/status has no {key} line"))?;
    let kib: f64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("/proc/self/status: {key} is not a kB count: {line:?}"))?;
    Ok(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn reads_resident_memory() -> Result<()> {
        let now = memory_mib("VmRSS")?;
        let peak = memory_mib("VmHWM")?;
        assert!(
            now > 0.0 && peak >= now,
            "VmRSS {now} MiB, VmHWM {peak} MiB"
        );
        Ok(())
    }
}
