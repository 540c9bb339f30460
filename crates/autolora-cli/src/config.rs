//! The run file: one TOML document holding every setting of a run.
//!
//! Every field has a default, so a run file only names what it changes. Unknown keys are
//! rejected with the closest known key as a suggestion. The resolved settings (file +
//! command-line overrides) are written next to the run's outputs as `config.toml`, so every
//! result can be reproduced from its run directory alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use autolora_core::bilevel::{FiniteDifferenceForm, Hypergradient};
use autolora_core::optim::{Decay, OptimizerKind};
use serde::{Deserialize, Serialize};

/// All settings of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The pretrained model.
    pub model: ModelConfig,
    /// The task and its data.
    pub task: TaskConfig,
    /// The LoRA adapters.
    pub lora: LoraSettings,
    /// The bilevel rank search.
    pub search: SearchConfig,
    /// Training with fixed ranks (the retrain after the search, or plain LoRA).
    pub train: TrainConfig,
    /// Decoding for generation tasks (E2E).
    pub generate: GenerateConfig,
    /// Seed, device, threads, output folder.
    pub run: RunSettings,
}

/// The pretrained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A Hugging Face model directory (config.json, model.safetensors, tokenizer.json).
    pub dir: Option<PathBuf>,
    /// Or a named asset fetched into the cache (`minilm`).
    pub asset: Option<String>,
    /// Dtype of the frozen base weights: `f32`, or `bf16` (CUDA).
    pub base_dtype: String,
    /// Replaces every dropout probability of the model's config (hidden, attention and
    /// classifier dropout), e.g. `0` to train without dropout; unset: the config's.
    pub dropout: Option<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dir: None,
            asset: Some("minilm".into()),
            base_dtype: "f32".into(),
            dropout: None,
        }
    }
}

/// The task and its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// `conll` (entity F1), `sentiment` (Rotten-Tomatoes binary), a GLUE task name
    /// (`cola`, `sst2`, `mrpc`, `qqp`, `stsb`, `mnli`, `qnli`, `rte`), or `e2e`
    /// (data-to-text generation with a causal language model, BLEU).
    pub name: String,
    /// Folder with the task's files in their official layout; if unset, the task's asset.
    pub data_dir: Option<PathBuf>,
    /// Maximum tokens per example (longer ones are truncated and counted).
    pub max_length: usize,
    /// Use only the first N training examples (after shuffling with the run seed).
    pub train_limit: Option<usize>,
    /// Use only the first N evaluation examples.
    pub eval_limit: Option<usize>,
    /// The planted-rank task (`name = "planted"`).
    pub planted: PlantedSettings,
    /// Your own files instead of a built-in task (`name` is then not read):
    /// `text-classification`, `text-regression`, `token-classification` or `causal-lm`, read
    /// from `train_file` (and `dev_file`, `test_file`) in CSV, TSV, JSON Lines or Parquet.
    pub kind: Option<FileTask>,
    /// The training file of `kind`.
    pub train_file: Option<PathBuf>,
    /// The development file of `kind`; unset: `dev_fraction` of the training rows, held out
    /// with a seed of its own (the search's validation set is then carved from the rest).
    pub dev_file: Option<PathBuf>,
    /// An optional test file of `kind`, evaluated after the development set.
    pub test_file: Option<PathBuf>,
    /// The share of the training rows held out as the development set when `dev_file` is unset.
    pub dev_fraction: f64,
    /// Which columns of the files hold what.
    pub columns: ColumnSettings,
    /// The classes of `text-classification`, in id order; unset: the training file's labels,
    /// sorted (numerically when all are numbers). For `token-classification`: the names of
    /// integer tags (position = the integer), as `datasets` exports a `ClassLabel` column.
    pub labels: Option<Vec<String>>,
}

/// The task kinds read from the user's files (`task.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileTask {
    /// One class per text or text pair, scored by accuracy.
    TextClassification,
    /// One number per text or text pair, scored by Pearson and Spearman correlation.
    TextRegression,
    /// One tag per word, scored by entity F1.
    TokenClassification,
    /// Causal language modelling on prompt/completion pairs, conversations or plain text,
    /// scored by loss and perplexity (and, with `generate.evaluate`, exact match and ROUGE-L
    /// of decoded answers).
    CausalLm,
}

/// The column names of `task.kind`'s files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnSettings {
    /// The text (the first of a pair).
    pub text: String,
    /// The second text of a pair; unset: the column `text_pair` where a file has one.
    pub text_pair: Option<String>,
    /// The label.
    pub label: String,
    /// The words of a sentence (token classification).
    pub tokens: String,
    /// One tag per word (token classification).
    pub tags: String,
    /// The prompt of a prompt/completion pair (causal LM; not trained on).
    pub prompt: String,
    /// The completion of a pair (causal LM; trained on).
    pub completion: String,
    /// A conversation: a list of `{role, content}` objects (causal LM; trained on the
    /// assistant's turns). Plain text (trained on entirely) is read from `text`.
    pub messages: String,
}

impl Default for ColumnSettings {
    fn default() -> Self {
        let columns = autolora_data::text_files::TextColumns::default();
        let tagging = autolora_data::tag_files::TagColumns::default();
        let lm = autolora_data::lm_files::LmColumns::default();
        ColumnSettings {
            text: columns.text,
            text_pair: columns.text_pair,
            label: columns.label,
            tokens: tagging.tokens,
            tags: tagging.tags,
            prompt: lm.prompt,
            completion: lm.completion,
            messages: lm.messages,
        }
    }
}

impl ColumnSettings {
    /// The data crate's form for token classification.
    pub fn tag_columns(&self) -> autolora_data::tag_files::TagColumns {
        autolora_data::tag_files::TagColumns {
            tokens: self.tokens.clone(),
            tags: self.tags.clone(),
        }
    }

    /// The data crate's form for causal LM.
    pub fn lm_columns(&self) -> autolora_data::lm_files::LmColumns {
        autolora_data::lm_files::LmColumns {
            prompt: self.prompt.clone(),
            completion: self.completion.clone(),
            messages: self.messages.clone(),
            text: self.text.clone(),
        }
    }

    /// The data crate's form for sentence tasks.
    pub fn text_columns(&self) -> autolora_data::text_files::TextColumns {
        autolora_data::text_files::TextColumns {
            text: self.text.clone(),
            text_pair: self.text_pair.clone(),
            label: self.label.clone(),
        }
    }
}

/// The planted-rank task: a teacher made of the base model plus updates of known rank per
/// module (`dW = s U V^T`, random orthonormal `U`, `V`), whose token distributions through a
/// fixed random head the student fits (KL) with the same frozen head; CoNLL-2003 sentences
/// (`task.data_dir` or the asset) are the text. The ground truth for the search.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlantedSettings {
    /// The planted ranks: a TOML file with a `[ranks]` table of module path -> rank (modules
    /// not listed: 0).
    pub pattern: Option<PathBuf>,
    /// Strength of every planted update: `||dW h|| / ||W h||` over the calibration tokens.
    pub rho: f64,
    /// Classes of the random head (the width of the distributions the student fits).
    pub classes: i64,
    /// Shuffle the targets across tokens (the control: nothing left to recover).
    pub shuffle: bool,
}

impl Default for PlantedSettings {
    fn default() -> Self {
        PlantedSettings {
            pattern: None,
            rho: 0.05,
            classes: 64,
            shuffle: false,
        }
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            name: "conll".into(),
            data_dir: None,
            max_length: 128,
            train_limit: None,
            eval_limit: None,
            planted: PlantedSettings::default(),
            kind: None,
            train_file: None,
            dev_file: None,
            test_file: None,
            dev_fraction: 0.1,
            columns: ColumnSettings::default(),
            labels: None,
        }
    }
}

/// The LoRA adapters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSettings {
    /// Module-name patterns to adapt, or `"all-linear"` (every linear layer of the network,
    /// as PEFT's `target_modules = "all-linear"`); a list or one string. Empty means the
    /// architecture's default (query/value for BERT and RoBERTa, c_attn for GPT-2,
    /// q_proj/v_proj for Llama).
    #[serde(deserialize_with = "one_or_many")]
    pub targets: Vec<String>,
    /// Components per module during the search (`k`; the paper uses 8).
    pub k: i64,
    /// `lora_alpha`: the update is scaled by alpha / rank.
    pub alpha: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
    /// Selection gate: `sigmoid` per component (the default; the paper's ablation) or
    /// `softmax` over a module's components (the paper).
    pub gate: autolora_core::Gate,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings {
            targets: Vec::new(),
            k: 8,
            alpha: 16.0,
            dropout: 0.1,
            gate: autolora_core::Gate::Sigmoid,
        }
    }
}

/// The bilevel rank search.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The configuration that fills the search settings a run file leaves unset (see
    /// [`Preset`]).
    pub preset: Preset,
    /// `first-order`, `finite-difference` (the authors') or `exact`.
    pub hypergradient: Hypergradient,
    /// Finite-difference form: `implicit` (the authors': perturb w', no learning-rate factor)
    /// or `darts` (perturb w, scale by the inner learning rate).
    pub fd_form: FiniteDifferenceForm,
    /// Roll back the look-ahead inner step and redo it with the new selection (the authors'
    /// default); `false` keeps the look-ahead step and saves one of five passes.
    pub rollback: bool,
    /// Inner optimizer (LoRA weights and task head).
    pub inner_optimizer: OptimizerKind,
    /// Inner learning rate.
    pub inner_lr: f64,
    /// Outer optimizer on the selection logits: `adam` (the authors': every step moves each
    /// logit by about `outer_lr`, whatever the hypergradient's size) or `sgd` (steps in
    /// proportion to the hypergradient).
    pub outer_optimizer: OptimizerKind,
    /// Outer learning rate on the selection logits.
    pub outer_lr: f64,
    /// Outer Adam betas.
    pub outer_betas: (f64, f64),
    /// Number of search steps (warm-up and inner-only steps included).
    pub steps: u64,
    /// Steps at the start that train the LoRA weights and head with the selection frozen
    /// (inner steps only), so the hypergradient measures trained adapters rather than their
    /// initialisation. The default preset sets three quarters of `steps` where a run file
    /// leaves it unset; 0: the paper (outer steps from the first step).
    pub warmup_steps: u64,
    /// After the warm-up, an outer (bilevel) step every N steps; the others are inner steps.
    pub outer_every: u64,
    /// Gradual pruning (`crate::pruning`): after the warm-up, every N steps mask out the
    /// lowest-weighted components until the kept ones fit a budget shrinking on a cubic schedule
    /// to `budget_params` (or `budget`) at `prune_until`. 0: no pruning during the search, the
    /// ranks are read once at the end (the paper).
    pub prune_every: u64,
    /// The step at which gradual pruning reaches the budget (default: the last step); the
    /// steps after it train the kept components only.
    pub prune_until: Option<u64>,
    /// Validation batches averaged in each outer step's validation loss.
    pub val_batches: usize,
    /// Dropout in the validation loss (the authors' code: on; off scores the validation batch
    /// as evaluation does).
    pub val_dropout: bool,
    /// Batch size of the train and validation batches.
    pub batch_size: usize,
    /// Fraction of the training set held out as the search's validation set.
    pub val_ratio: f64,
    /// Keep components whose selection weight reaches this (default 1/k for softmax,
    /// 0.5 for sigmoid).
    pub threshold: Option<f64>,
    /// Instead of a threshold, keep this many components in total across modules.
    pub budget: Option<usize>,
    /// Instead of a threshold, keep the highest-weighted components across modules while their
    /// LoRA parameters (in + out features per unit of rank) fit this many.
    pub budget_params: Option<i64>,
    /// Every module keeps at least this many components.
    pub min_rank: usize,
    /// What the ranks are read from: `selection` (the selection weights, AutoLoRA),
    /// `singular-values` (of the trained updates; with `warmup_steps = steps`, train-then-SVD)
    /// or `ablation` (each unit of rank of the trained updates scored by the validation loss it
    /// gains).
    pub readout: crate::ranks::Readout,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            preset: Preset::Default,
            hypergradient: Hypergradient::FiniteDifference,
            fd_form: FiniteDifferenceForm::Implicit,
            rollback: true,
            inner_optimizer: OptimizerKind::Adam,
            inner_lr: 3e-4,
            outer_optimizer: OptimizerKind::Adam,
            outer_lr: 1e-2,
            outer_betas: (0.5, 0.999),
            steps: 400,
            warmup_steps: 300,
            outer_every: 1,
            prune_every: 0,
            prune_until: None,
            val_batches: 2,
            val_dropout: false,
            batch_size: 16,
            val_ratio: 0.3,
            threshold: None,
            budget: None,
            budget_params: None,
            min_rank: 1,
            readout: crate::ranks::Readout::Selection,
        }
    }
}

/// A named configuration of the search. A preset fills the settings the run file (and the
/// command line's `--set`) leave unset; whatever they set wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The settings that won on the planted-rank benchmark (docs/results.md): sigmoid gates, a
    /// warm-up of three quarters of the steps (300 of 400) before the bilevel steps, the
    /// validation loss in evaluation mode over two batches. These are the fields' own defaults;
    /// the preset fills the warm-up, which follows `steps`.
    #[default]
    Default,
    /// The paper's configuration, as the authors' code runs it: softmax gates, bilevel steps
    /// from the first of 300 steps, one validation batch scored with dropout on. Every run file
    /// written before presets existed resolves as it did with this preset.
    Paper,
}

impl Preset {
    /// The `(section, key, value)` settings the preset fills where the run file `doc` leaves
    /// them unset.
    fn settings(self, doc: &toml::Table) -> Vec<(&'static str, &'static str, toml::Value)> {
        use toml::Value;
        match self {
            Preset::Default => {
                let steps = doc
                    .get("search")
                    .and_then(|search| search.get("steps"))
                    .and_then(Value::as_integer)
                    .unwrap_or(SearchConfig::default().steps as i64);
                vec![("search", "warmup_steps", Value::Integer(steps * 3 / 4))]
            }
            Preset::Paper => vec![
                ("lora", "gate", Value::String("softmax".into())),
                ("search", "steps", Value::Integer(300)),
                ("search", "warmup_steps", Value::Integer(0)),
                ("search", "val_batches", Value::Integer(1)),
                ("search", "val_dropout", Value::Boolean(true)),
            ],
        }
    }

    /// Fills `doc` (a run file as a table) with the settings of the preset it names.
    fn fill(doc: &mut toml::Table) -> Result<()> {
        let named = doc
            .get("search")
            .and_then(|search| search.get("preset"))
            .cloned();
        let preset = match named {
            Some(value) => value.try_into::<Preset>().map_err(|e| {
                anyhow::anyhow!("search.preset: {e} (expected \"default\" or \"paper\")")
            })?,
            None => Preset::Default,
        };
        for (section, key, value) in preset.settings(doc) {
            let table = doc
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .with_context(|| format!("`{section}` is not a section"))?;
            table.entry(key).or_insert(value);
        }
        Ok(())
    }
}

/// Where the fixed ranks of a training run come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RankSource {
    /// The same rank for every module.
    Uniform(i64),
    /// A `ranks.json` written by `search` (or the word `search` inside `run`), or a TOML
    /// rank table.
    File(PathBuf),
}

/// Training with fixed ranks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The ranks: an integer, the path of a ranks.json, or of a TOML file with a `[ranks]`
    /// table of module path -> rank (modules not listed are not adapted).
    pub ranks: RankSource,
    /// Start from the pruned search weights instead of from scratch (the paper retrains
    /// from scratch).
    pub warm_start: bool,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Fraction of the steps spent warming the learning rate up linearly (then `schedule`).
    pub warmup_ratio: f64,
    /// The learning rate after the warm-up: `linear` to 0, `cosine` to 0, or `constant`.
    pub schedule: Decay,
    /// Clip the gradients' joint L2 norm to this before each optimizer step (unset: no
    /// clipping; Hugging Face's Trainer clips at 1.0 by default).
    pub max_grad_norm: Option<f64>,
    /// Batches whose gradients are summed (each loss divided by this) into one optimizer
    /// step: the effective batch is `batch_size * grad_accum`.
    pub grad_accum: u64,
    /// Number of optimizer steps.
    pub steps: u64,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Evaluate on the dev split every N steps (0: only at the end), in eval mode.
    pub eval_every: u64,
    /// Keep the weights of the best of those evaluations (by the task's headline metric) and
    /// end with them, as the Trainer's `load_best_model_at_end`.
    pub keep_best: bool,
    /// Stop after this many evaluations in a row without a better dev score (unset: never).
    pub patience: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            ranks: RankSource::Uniform(4),
            warm_start: false,
            optimizer: OptimizerKind::AdamW,
            lr: 5e-4,
            weight_decay: 0.0,
            warmup_ratio: 0.06,
            schedule: Decay::Linear,
            max_grad_norm: None,
            grad_accum: 1,
            steps: 600,
            batch_size: 16,
            eval_batch_size: 64,
            eval_every: 0,
            keep_best: false,
            patience: None,
        }
    }
}

/// Decoding for generation tasks: the E2E protocol of the LoRA paper by default (beam 10,
/// length penalty 0.9, no repeated 4-gram).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Beams of the beam search (1: greedy decoding).
    pub num_beams: usize,
    /// Upper bound on generated tokens per input (end-of-text included).
    pub max_new_tokens: usize,
    /// Finished beams are scored `sum log p / length^length_penalty`.
    pub length_penalty: f64,
    /// No n-gram of this size may occur twice in prompt + output (0: off).
    pub no_repeat_ngram_size: usize,
    /// Score METEOR through its Java implementation when Java and the jar are found.
    pub meteor: bool,
    /// `task.kind = "causal-lm"`: also decode an answer to every evaluation prompt (a pair's
    /// prompt; a conversation up to its last assistant turn) and score it against the
    /// reference by exact match and ROUGE-L. Slow: one decode per row. E2E always decodes.
    pub evaluate: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        // The LoRA repository's E2E decoding length (`--eval_len 64`).
        let protocol = autolora_models::generate::GenerationConfig::e2e(64, Vec::new());
        GenerateConfig {
            num_beams: protocol.num_beams,
            max_new_tokens: protocol.max_new_tokens,
            length_penalty: protocol.length_penalty,
            no_repeat_ngram_size: protocol.no_repeat_ngram_size,
            meteor: true,
            evaluate: false,
        }
    }
}

/// Seed, device, threads, outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Seed of everything random (data order, initialisation, dropout).
    pub seed: u64,
    /// `cpu`, `cuda` or `auto`.
    pub device: String,
    /// CPU threads for libtorch (0: libtorch's default).
    pub threads: usize,
    /// The run directory.
    pub out_dir: PathBuf,
    /// Write a checkpoint every N steps (search and training).
    pub checkpoint_every: u64,
    /// `run` also trains fixed-rank LoRA with the parameter count closest to AutoLoRA's.
    pub compare_fixed_rank: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            seed: 42,
            device: "auto".into(),
            threads: 0,
            out_dir: PathBuf::from("runs/default"),
            checkpoint_every: 50,
            compare_fixed_rank: true,
        }
    }
}

impl RunConfig {
    /// Reads a run file. Unknown keys are an error naming the closest known key.
    pub fn load(path: &Path) -> Result<Self> {
        Self::resolve(Some(path), &[])
    }

    /// The settings of a run: the run file at `path` (none: every default), then the
    /// `key=value` overrides, then the search preset they name filling what both leave unset.
    pub fn resolve(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let Some(path) = path else {
            return Self::parse_with("", overrides);
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse_with(&text, overrides)
            .with_context(|| format!("in run file {}", path.display()))
    }

    /// Parses a run file's text with `key=value` overrides (dotted keys, TOML values; bare
    /// words are strings), e.g. `search.steps=100` or `task.name=sentiment`.
    pub fn parse_with(text: &str, overrides: &[String]) -> Result<Self> {
        // The file alone first, so that its mistakes are reported with their line.
        toml::from_str::<RunConfig>(text).map_err(suggest)?;
        let mut doc: toml::Table = toml::from_str(text).map_err(suggest)?;
        for item in overrides {
            set(&mut doc, item)?;
        }
        Preset::fill(&mut doc)?;
        let config = toml::Value::Table(doc).try_into().map_err(suggest);
        if overrides.is_empty() {
            config
        } else {
            config.with_context(|| format!("applying overrides {overrides:?}"))
        }
    }

    /// The resolved settings as TOML.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let train = &self.train;
        if train.grad_accum == 0 {
            bail!("train.grad_accum must be at least 1");
        }
        if let Some(norm) = train.max_grad_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            bail!("train.max_grad_norm must be a positive number, got {norm}");
        }
        if (train.keep_best || train.patience.is_some()) && train.eval_every == 0 {
            bail!(
                "train.keep_best and train.patience choose among evaluations: set train.eval_every"
            );
        }
        if train.patience == Some(0) {
            bail!("train.patience must be at least 1 (unset: never stop early)");
        }
        if !(0.0..1.0).contains(&self.search.val_ratio) || self.search.val_ratio == 0.0 {
            bail!(
                "search.val_ratio must be in (0, 1), got {}",
                self.search.val_ratio
            );
        }
        if self.search.outer_every == 0 || self.search.val_batches == 0 {
            bail!(
                "search.outer_every and search.val_batches must be at least 1, got {} and {}",
                self.search.outer_every,
                self.search.val_batches
            );
        }
        let task = &self.task;
        if task.kind.is_some() {
            if task.train_file.is_none() {
                bail!("task.kind reads your own files: set task.train_file (and task.dev_file)");
            }
            if task.data_dir.is_some() {
                bail!(
                    "task.data_dir belongs to the built-in tasks; with task.kind the files are \
                     task.train_file, task.dev_file and task.test_file"
                );
            }
            if !(task.dev_fraction > 0.0 && task.dev_fraction < 1.0) {
                bail!(
                    "task.dev_fraction must be in (0, 1), got {}",
                    task.dev_fraction
                );
            }
        } else if task.train_file.is_some() || task.dev_file.is_some() || task.test_file.is_some() {
            bail!(
                "task.train_file, task.dev_file and task.test_file are read by task.kind \
                 (text-classification, text-regression or token-classification); set it"
            );
        }
        if self.search.prune_every > 0 {
            let search = &self.search;
            let until = search.prune_until.unwrap_or(search.steps);
            if search.budget.is_none() && search.budget_params.is_none() {
                bail!(
                    "search.prune_every prunes down to a budget: set search.budget_params (or \
                     search.budget)"
                );
            }
            if until <= search.warmup_steps || until > search.steps {
                bail!(
                    "search.prune_until ({until}) must fall after the warm-up \
                     (search.warmup_steps = {}) and within search.steps ({})",
                    search.warmup_steps,
                    search.steps
                );
            }
        }
        if self.search.budget.is_some() && self.search.budget_params.is_some() {
            bail!("set search.budget (components) or search.budget_params (parameters), not both");
        }
        if self.search.readout == crate::ranks::Readout::Selection
            && self.search.steps > 0
            && self.search.warmup_steps >= self.search.steps
        {
            bail!(
                "search.warmup_steps ({}) leaves no bilevel step in search.steps ({}): the \
                 selection weights would stay where they started; lower the warm-up, or read \
                 the ranks off the trained updates (search.readout = \"singular-values\")",
                self.search.warmup_steps,
                self.search.steps
            );
        }
        if let Some(p) = self.model.dropout
            && !(0.0..1.0).contains(&p)
        {
            bail!("model.dropout must be in [0, 1), got {p}");
        }
        if self.search.readout.reads_updates() {
            let readout = serde_json::to_string(&self.search.readout)?;
            if self.search.budget.is_none() && self.search.budget_params.is_none() {
                bail!(
                    "search.readout = {readout} compares modules globally: set \
                     search.budget_params (or search.budget)"
                );
            }
            if self.train.warm_start {
                bail!(
                    "train.warm_start prunes the search's adapters to their kept components, \
                     which search.readout = {readout} does not select"
                );
            }
        }
        if self.lora.k < 1 {
            bail!("lora.k must be at least 1, got {}", self.lora.k);
        }
        if !["cpu", "cuda", "auto"].contains(&self.run.device.as_str()) {
            bail!(
                "run.device must be cpu, cuda or auto, got `{}`",
                self.run.device
            );
        }
        if self.generate.num_beams == 0 || self.generate.max_new_tokens == 0 {
            bail!(
                "generate.num_beams and generate.max_new_tokens must be at least 1, got {} and {}",
                self.generate.num_beams,
                self.generate.max_new_tokens
            );
        }
        if self.model.dir.is_none() && self.model.asset.is_none() {
            bail!("set model.dir (a Hugging Face model folder) or model.asset (e.g. \"minilm\")");
        }
        Ok(())
    }
}

/// Sets one `key=value` override in a run file's table.
fn set(doc: &mut toml::Table, item: &str) -> Result<()> {
    let (key, value) = item
        .split_once('=')
        .with_context(|| format!("override `{item}`: expected KEY=VALUE"))?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .map(|mut t| t.remove("v").expect("just parsed"))
        .unwrap_or_else(|_| toml::Value::String(value.to_string()));
    let mut table = doc;
    let parts: Vec<&str> = key.trim().split('.').collect();
    for part in &parts[..parts.len() - 1] {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("override `{item}`: `{part}` is not a section"))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// A TOML error with a suggestion for an unknown key.
fn suggest(error: toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", with_suggestion(&error.to_string()))
}

/// A list of strings, or one string as a list of one (`targets = "all-linear"`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Adds "did you mean `x`?" to serde's unknown-field message.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), candidate))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, candidate)) => format!("{message}\ndid you mean `{candidate}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() -> Result<()> {
        let config = RunConfig::default();
        let back = RunConfig::parse_with(&config.to_toml()?, &[])?;
        assert_eq!(back.to_toml()?, config.to_toml()?);
        Ok(())
    }

    #[test]
    fn unknown_key_gets_a_suggestion() {
        let err = RunConfig::parse_with("[search]\nstesp = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `stesp`"), "{err}");
        assert!(err.contains("did you mean `steps`?"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_paper_preset_fills_only_what_the_run_file_leaves_unset() -> Result<()> {
        let default = RunConfig::parse_with("", &[])?;
        assert_eq!(default.lora.gate, autolora_core::Gate::Sigmoid);
        assert_eq!(
            (default.search.steps, default.search.warmup_steps),
            (400, 300)
        );
        assert_eq!(default.search.val_batches, 2);
        assert!(!default.search.val_dropout);
        let shorter = RunConfig::parse_with("[search]\nsteps = 80\n", &[])?;
        assert_eq!(
            shorter.search.warmup_steps, 60,
            "the warm-up follows the steps"
        );

        let paper = RunConfig::parse_with("[search]\npreset = \"paper\"\nval_batches = 3\n", &[])?;
        assert_eq!(paper.lora.gate, autolora_core::Gate::Softmax);
        assert_eq!((paper.search.steps, paper.search.warmup_steps), (300, 0));
        assert!(paper.search.val_dropout);
        assert_eq!(paper.search.val_batches, 3, "the file's own setting wins");

        // On the command line too, and the resolved settings reload as they are.
        let set = RunConfig::parse_with("[search]\nsteps = 50\n", &["search.preset=paper".into()])?;
        assert_eq!((set.search.steps, set.search.warmup_steps), (50, 0));
        let saved = RunConfig::parse_with(&set.to_toml()?, &[])?;
        assert_eq!(saved.to_toml()?, set.to_toml()?);

        let err = RunConfig::parse_with("[search]\npreset = \"papr\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        Ok(())
    }

    #[test]
    fn overrides_replace_values_and_reject_unknown_keys() -> Result<()> {
        let config = RunConfig::parse_with(
            "",
            &[
                "search.steps=7".into(),
                "task.name=sentiment".into(),
                "train.ranks=\"runs/x/ranks.json\"".into(),
            ],
        )?;
        assert_eq!(config.search.steps, 7);
        assert_eq!(config.task.name, "sentiment");
        assert_eq!(
            config.train.ranks,
            RankSource::File("runs/x/ranks.json".into())
        );
        assert!(RunConfig::parse_with("", &["search.nope=1".into()]).is_err());
        let config = RunConfig::parse_with("", &["lora.targets=all-linear".into()])?;
        assert_eq!(config.lora.targets, ["all-linear"]);
        let listed = RunConfig::parse_with("[lora]\ntargets = [\"query\", \"value\"]\n", &[])?;
        assert_eq!(listed.lora.targets, ["query", "value"]);
        Ok(())
    }
}
