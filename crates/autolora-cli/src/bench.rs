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
//!
//! The base model is a Hugging Face folder (`--model-dir`, default the `minilm` asset), or,
//! where the weights cannot be had (a GPU machine with no model files), random weights of a
//! real model's shape: `--shape minilm|roberta-base`, or `--random-weights` with a folder that
//! holds only a BERT/RoBERTa `config.json`. Step time does not depend on the values of the
//! weights, only on their shapes and dtype; `--base-dtype bf16` stores the frozen base in bf16.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::{BilevelSearch, FiniteDifferenceForm, Hypergradient};
use autolora_core::optim::Optimizer;
use autolora_core::{Gate, LoraConfig};
use autolora_models::bert::BertConfig;
use autolora_models::encoder::EncoderModel;
use autolora_models::{
    Architecture, AttentionImpl, LoadOptions, Model, RawConfig, Task, TensorSource, load_model,
};
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

/// A built-in model shape (random weights), for machines without the model files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// all-MiniLM-L6-v2: BERT, hidden 384, 6 layers, 12 heads, intermediate 1536, vocab 30522.
    Minilm,
    /// roberta-base: hidden 768, 12 layers, 12 heads, intermediate 3072, vocab 50265.
    RobertaBase,
}

impl Shape {
    /// The model's `config.json`, as published with it.
    fn config(self) -> serde_json::Value {
        match self {
            // The same config.json the MiniLM asset writes for the real model.
            Shape::Minilm => serde_json::from_str(autolora_data::assets::MINILM_BERT_CONFIG)
                .expect("the MiniLM config constant is valid JSON"),
            Shape::RobertaBase => serde_json::json!({
                "model_type": "roberta",
                "hidden_size": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "intermediate_size": 3072,
                "vocab_size": 50265,
                "max_position_embeddings": 514,
                "type_vocab_size": 1,
                "hidden_act": "gelu",
                "layer_norm_eps": 1e-5,
                "hidden_dropout_prob": 0.1,
                "attention_probs_dropout_prob": 0.1,
                "pad_token_id": 1,
                "initializer_range": 0.02
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Minilm => "minilm",
            Shape::RobertaBase => "roberta-base",
        }
    }
}

/// Storage dtype of the frozen base matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaseDtype {
    /// 32-bit float (the computation kind).
    F32,
    /// bfloat16 (the usual choice on a GPU).
    Bf16,
    /// IEEE half precision.
    F16,
}

impl BaseDtype {
    fn kind(self) -> Option<Kind> {
        match self {
            BaseDtype::F32 => None,
            BaseDtype::Bf16 => Some(Kind::BFloat16),
            BaseDtype::F16 => Some(Kind::Half),
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
    #[arg(long, conflicts_with = "shape")]
    model_dir: Option<PathBuf>,
    /// A built-in model shape with random base weights, instead of a model folder.
    #[arg(long, value_enum)]
    shape: Option<Shape>,
    /// Draw the base weights at random with the shapes of `--model-dir`'s config.json (a BERT
    /// or RoBERTa config; the folder needs nothing else) instead of reading its weights.
    #[arg(long, requires = "model_dir")]
    random_weights: bool,
    /// Storage dtype of the frozen base matrices (embeddings, linear layers); layer norms, the
    /// head, LoRA weights, selection variables and activations stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    base_dtype: BaseDtype,
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
    /// The model folder, or `<shape> (random weights)`.
    model: String,
    base_dtype: BaseDtype,
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
    let base = BaseModel::from_args(args)?;
    let raw = &base.raw;
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
        base_kind: args.base_dtype.kind(),
        seed: args.seed,
        attention,
        dropout: None,
    };
    let task = Task::TokenClassification {
        num_labels: args.labels,
    };
    let mut model = base.load(task, &options)?;
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
        model: base.label.clone(),
        base_dtype: args.base_dtype,
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

/// The base model to time: a folder's checkpoint or random weights of a config's shapes.
struct BaseModel {
    raw: RawConfig,
    /// `Some(folder)` to read the checkpoint there; `None` for random weights.
    checkpoint: Option<PathBuf>,
    /// What the report calls it.
    label: String,
}

impl BaseModel {
    fn from_args(args: &BenchArgs) -> Result<Self> {
        if let Some(shape) = args.shape {
            let label = format!("{} (random weights)", shape.name());
            let path = PathBuf::from(format!("<built-in {} config>", shape.name()));
            let raw = RawConfig::parse(&path, &shape.config().to_string())?;
            return Ok(BaseModel {
                raw,
                checkpoint: None,
                label,
            });
        }
        let dir = match &args.model_dir {
            Some(dir) => dir.clone(),
            None => autolora_data::assets::fetch("minilm").context("fetching the minilm asset")?,
        };
        let raw = RawConfig::read_dir(&dir)?;
        if args.random_weights {
            return Ok(BaseModel {
                raw,
                checkpoint: None,
                label: format!("{} (random weights)", dir.display()),
            });
        }
        Ok(BaseModel {
            raw,
            label: dir.display().to_string(),
            checkpoint: Some(dir),
        })
    }

    fn load(&self, task: Task, options: &LoadOptions) -> Result<Box<dyn Model>> {
        if let Some(dir) = &self.checkpoint {
            return load_model(dir, task, options)
                .with_context(|| format!("loading the model from {}", dir.display()));
        }
        let architecture = self.raw.architecture()?;
        if !matches!(architecture, Architecture::Bert | Architecture::Roberta) {
            bail!(
                "{}: random weights are drawn for BERT and RoBERTa configs only, found {architecture}",
                self.raw.path.display()
            );
        }
        let config = BertConfig::from_raw(&self.raw)?;
        let weights = RandomWeights::new(&config, &self.raw.path);
        let model = EncoderModel::load(&self.raw, &weights, task, options)
            .with_context(|| format!("building {} with random weights", self.label))?;
        Ok(Box::new(model))
    }
}

/// Base weights in the Hugging Face BERT layout of a config, drawn on demand as a fresh
/// `transformers` model is initialised: N(0, initializer_range^2) embeddings and matrices,
/// zero biases, unit layer-norm scales. No pooler: the token-classification head needs none.
struct RandomWeights {
    description: String,
    shapes: BTreeMap<String, Vec<i64>>,
    std: f64,
}

impl RandomWeights {
    fn new(config: &BertConfig, config_path: &Path) -> Self {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let mut shapes = BTreeMap::new();
        let mut put = |name: String, shape: &[i64]| {
            shapes.insert(name, shape.to_vec());
        };
        for (table, rows) in [
            ("word_embeddings", config.vocab_size),
            ("position_embeddings", config.max_position_embeddings),
            ("token_type_embeddings", config.type_vocab_size),
        ] {
            put(format!("embeddings.{table}.weight"), &[rows, h]);
        }
        put("embeddings.LayerNorm.weight".into(), &[h]);
        put("embeddings.LayerNorm.bias".into(), &[h]);
        for n in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{n}");
            for (linear, fan_in, fan_out) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", h, i),
                ("output.dense", i, h),
            ] {
                put(format!("{p}.{linear}.weight"), &[fan_out, fan_in]);
                put(format!("{p}.{linear}.bias"), &[fan_out]);
            }
            for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
                put(format!("{p}.{norm}.weight"), &[h]);
                put(format!("{p}.{norm}.bias"), &[h]);
            }
        }
        RandomWeights {
            description: format!("random weights of {}", config_path.display()),
            shapes,
            std: config.initializer_range,
        }
    }
}

impl TensorSource for RandomWeights {
    fn description(&self) -> &str {
        &self.description
    }

    fn keys(&self) -> Vec<&str> {
        self.shapes.keys().map(String::as_str).collect()
    }

    fn shape(&self, key: &str) -> Option<Vec<i64>> {
        self.shapes.get(key).cloned()
    }

    fn load(&self, key: &str, kind: Kind, device: Device) -> autolora_models::Result<Tensor> {
        let shape = self
            .shapes
            .get(key)
            .ok_or_else(|| autolora_models::Error::MissingTensor {
                name: key.to_string(),
                key: key.to_string(),
                source_desc: self.description.clone(),
            })?;
        // Drawn in f32 on the target device (fast on a GPU), then cast to the storage kind.
        let options = (Kind::Float, device);
        let tensor = if key.ends_with("LayerNorm.weight") {
            Tensor::f_ones(shape.as_slice(), options)?
        } else if key.ends_with(".bias") {
            Tensor::f_zeros(shape.as_slice(), options)?
        } else {
            Tensor::f_randn(shape.as_slice(), options)?.f_mul_scalar(self.std)?
        };
        Ok(tensor.f_to_kind(kind)?)
    }
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
    /// The optimizer and the run seed of the dropout masks.
    Plain(Optimizer, u64),
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
        // The optimizers and engine of `autolora train` and `search` with their default
        // settings, so the bench times what a run does.
        let run = crate::config::RunConfig::default();
        if args.mode == BenchMode::Plain {
            model.inject_lora(&targets, &lora, None)?;
            let optimizer = crate::train::optimizer(&run.train, &model.trainable_params())?;
            return Ok(Stepper::Plain(optimizer, args.seed));
        }
        model.inject_lora(&targets, &lora, Some(Gate::Softmax))?;
        let hypergradient = match args.mode {
            BenchMode::Fo => Hypergradient::FirstOrder,
            BenchMode::Exact => Hypergradient::Exact,
            _ => Hypergradient::FiniteDifference,
        };
        let mut config = run.clone();
        config.search = crate::config::SearchConfig {
            hypergradient,
            fd_form: FiniteDifferenceForm::Implicit,
            rollback: args.mode != BenchMode::FdNorollback,
            ..run.search
        };
        config.run.seed = args.seed;
        let engine = crate::search::engine(
            &config,
            &model.trainable_params(),
            &model.selection_params(),
        )?;
        Ok(Stepper::Search(Box::new(engine)))
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
            Stepper::Plain(optimizer, seed) => {
                // As `autolora train` does: a reproducible dropout mask per step.
                tch::manual_seed(autolora_core::bilevel::derive_seed(
                    *seed,
                    index,
                    autolora_data::rng::stream::TRAIN_DROPOUT,
                ));
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

    /// Base parameters of the built-in shapes, without the pooler the token head does not use:
    /// the published totals (all-MiniLM-L6-v2 22,713,216; roberta-base 124,645,632) less the
    /// pooler (hidden^2 + hidden).
    #[test]
    fn built_in_shapes_have_the_published_parameter_counts() -> Result<()> {
        for (shape, published) in [
            (Shape::Minilm, 22_713_216_i64),
            (Shape::RobertaBase, 124_645_632),
        ] {
            let raw = RawConfig::parse(Path::new("built-in"), &shape.config().to_string())?;
            let config = BertConfig::from_raw(&raw)?;
            let weights = RandomWeights::new(&config, &raw.path);
            let count: i64 = weights
                .keys()
                .iter()
                .map(|k| weights.shape(k).unwrap().iter().product::<i64>())
                .sum();
            let h = config.hidden_size;
            assert_eq!(count, published - (h * h + h), "{shape:?}");
        }
        Ok(())
    }

    /// A config-only model with random weights and a bf16 base loads, uses every drawn
    /// tensor, and trains: the loss is finite and has gradients on the head.
    #[test]
    fn random_weights_build_a_trainable_model_with_a_bf16_base() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 37, "vocab_size": 64,
                "max_position_embeddings": 40, "type_vocab_size": 1, "pad_token_id": 1}"#,
        )?;
        let base = BaseModel {
            raw: RawConfig::read_dir(dir.path())?,
            checkpoint: None,
            label: "tiny".into(),
        };
        let options = LoadOptions {
            base_kind: BaseDtype::Bf16.kind(),
            attention: AttentionImpl::Fused,
            ..LoadOptions::default()
        };
        tch::manual_seed(0);
        let model = base.load(Task::TokenClassification { num_labels: 3 }, &options)?;
        let ids = Tensor::randint_low(3, 64, [2, 5], (Kind::Int64, Device::Cpu));
        let batch = DeviceBatch {
            attention_mask: ids.ones_like(),
            token_type_ids: None,
            labels: Tensor::randint_low(0, 3, [2, 5], (Kind::Int64, Device::Cpu)),
            input_ids: ids,
            tokens: 10,
        };
        let loss = batch.loss(model.as_ref(), true)?;
        assert!(loss.double_value(&[]).is_finite());
        let head: Vec<Tensor> = model
            .trainable_params()
            .iter()
            .map(|p| p.param.tensor())
            .collect();
        let grads = autolora_core::optim::gradients(&loss, &head, false)?;
        assert!(grads.iter().all(|g| g.defined()));
        Ok(())
    }

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
