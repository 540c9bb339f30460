//! From a task name to batches: reads the task's files, tokenizes them with the model's
//! tokenizer, carves the search's validation set out of the training set, and builds the
//! batches of every split as tensors.

use std::path::Path;

use anyhow::{Context, Result, bail};
use autolora_data::batch::{Batch, BatchConfig, batches, eval_plan, training_plan};
use autolora_data::split::{SplitConfig, split};
use autolora_data::tokenize::{EncodedSet, TextTokenizer};
use tch::Device;

use crate::batches::{DeviceBatch, StepBatches};
use crate::config::RunConfig;

/// What the task predicts and how it is scored.
#[derive(Debug, Clone)]
pub enum TaskSpec {
    /// Sequence labelling scored by entity-level F1 (conlleval / seqeval).
    Tagging {
        /// Tag names in id order (IOB2).
        labels: Vec<String>,
    },
}

impl TaskSpec {
    /// The model head this task needs.
    pub fn model_task(&self) -> autolora_models::Task {
        match self {
            TaskSpec::Tagging { labels } => autolora_models::Task::TokenClassification {
                num_labels: labels.len() as i64,
            },
        }
    }

    /// Name of the headline metric.
    pub fn metric_name(&self) -> &'static str {
        match self {
            TaskSpec::Tagging { .. } => "entity_f1",
        }
    }
}

/// A split prepared for evaluation.
pub struct EvalSet {
    /// `dev`, `test`.
    pub name: String,
    /// Its batches, sorted by length.
    pub batches: Vec<DeviceBatch>,
    /// Words whose tags were lost by truncation (scored as missed).
    pub truncated_words: usize,
}

/// Every split of a task, as batches.
pub struct TaskData {
    /// What is predicted and how it is scored.
    pub spec: TaskSpec,
    /// The search's training part of the training set.
    pub search_train: StepBatches,
    /// The search's validation part of the training set (never the official dev set).
    pub search_val: StepBatches,
    /// The whole training set (retrain and plain LoRA).
    pub train: StepBatches,
    /// The official development set.
    pub dev: EvalSet,
    /// The official test set, when the task has labelled test data.
    pub test: Option<EvalSet>,
}

impl TaskData {
    /// Loads the task named in `config.task`.
    pub fn load(config: &RunConfig, model_dir: &Path, device: Device) -> Result<Self> {
        let tokenizer_path = autolora_models::tokenizer_path(model_dir)
            .with_context(|| format!("{} has no tokenizer.json", model_dir.display()))?;
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, config.task.max_length)?;
        match config.task.name.as_str() {
            "conll" | "conll2003" => load_conll(config, &tokenizer, device),
            other => bail!("unknown task `{other}`; known: conll"),
        }
    }
}

fn load_conll(config: &RunConfig, tokenizer: &TextTokenizer, device: Device) -> Result<TaskData> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch("conll2003")?,
    };
    let mut data = autolora_data::conll::Conll2003::read(&dir)?;
    let labels = data.label_set();
    limit(
        &mut data.train.sentences,
        config.task.train_limit,
        config.run.seed,
    );
    limit(
        &mut data.dev.sentences,
        config.task.eval_limit,
        config.run.seed,
    );
    limit(
        &mut data.test.sentences,
        config.task.eval_limit,
        config.run.seed,
    );
    let encode = |file: &autolora_data::conll::TaggedFile| {
        tokenizer.encode_tagged(&file.path, &file.sentences, &labels)
    };
    let train = encode(&data.train)?;
    let dev = encode(&data.dev)?;
    let test = encode(&data.test)?;
    let spec = TaskSpec::Tagging {
        labels: labels.labels().to_vec(),
    };
    assemble(config, tokenizer, device, spec, train, dev, Some(test))
}

/// Keeps the first `limit` items after a seeded shuffle (a reproducible random subset, in
/// the original order).
fn limit<T>(items: &mut Vec<T>, limit: Option<usize>, seed: u64) {
    let Some(limit) = limit else { return };
    if limit >= items.len() {
        return;
    }
    let mut keep = autolora_data::rng::permutation(items.len(), seed);
    keep.truncate(limit);
    keep.sort_unstable();
    let mut index = 0;
    let mut next = keep.into_iter().peekable();
    items.retain(|_| {
        let kept = next.peek() == Some(&index);
        if kept {
            next.next();
        }
        index += 1;
        kept
    });
}

fn assemble(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: Device,
    spec: TaskSpec,
    train: EncodedSet,
    dev: EncodedSet,
    test: Option<EncodedSet>,
) -> Result<TaskData> {
    let pad = tokenizer.pad_id();
    let seed = config.run.seed;
    let parts = split(
        train.examples.len(),
        &SplitConfig {
            validation_fraction: config.search.val_ratio,
            seed,
        },
    )?;
    let subset = |indices: &[usize]| EncodedSet {
        examples: indices.iter().map(|&i| train.examples[i].clone()).collect(),
        truncated: 0,
        truncated_words: 0,
    };
    let step_batches = |set: &EncodedSet, batch_size: usize, stream: u64| -> Result<StepBatches> {
        let plan = training_plan(set, &BatchConfig::new(batch_size, seed ^ stream), 0)?;
        StepBatches::new(to_device(batches(set, &plan, pad)?, device)?, seed ^ stream)
    };
    let eval_set = |name: &str, set: &EncodedSet| -> Result<EvalSet> {
        let plan = eval_plan(set, config.train.eval_batch_size)?;
        Ok(EvalSet {
            name: name.to_string(),
            batches: to_device(batches(set, &plan, pad)?, device)?,
            truncated_words: set.truncated_words,
        })
    };
    tracing::info!(
        train = train.examples.len(),
        search_train = parts.train.len(),
        search_val = parts.validation.len(),
        dev = dev.examples.len(),
        "task data ready"
    );
    Ok(TaskData {
        spec,
        search_train: step_batches(&subset(&parts.train), config.search.batch_size, 1)?,
        search_val: step_batches(&subset(&parts.validation), config.search.batch_size, 2)?,
        train: step_batches(&train, config.train.batch_size, 3)?,
        dev: eval_set("dev", &dev)?,
        test: test.map(|t| eval_set("test", &t)).transpose()?,
    })
}

fn to_device(batches: Vec<Batch>, device: Device) -> Result<Vec<DeviceBatch>> {
    batches
        .iter()
        .map(|b| DeviceBatch::new(b, device))
        .collect()
}
