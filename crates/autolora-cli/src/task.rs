//! From a task name to batches: reads the task's files, tokenizes them with the model's
//! tokenizer, carves the search's validation set out of the training set, and builds the
//! batches of every split as tensors.

use std::path::Path;

use anyhow::{Context, Result, bail};
use autolora_data::batch::{Batch, BatchConfig, batches, eval_plan, training_plan};
use autolora_data::example::{TaskKind, TextSplit};
use autolora_data::glue::{GlueFile, GlueOptions, GlueTask};
use autolora_data::sentiment::SentimentTask;
use autolora_data::split::{SplitConfig, split, stratified_split};
use autolora_data::tokenize::{EncodedSet, Target, TextTokenizer};
use tch::Device;

use crate::batches::{DeviceBatch, StepBatches};
use crate::config::RunConfig;
use crate::e2e::GenerationSet;

/// What the task predicts and how it is scored.
#[derive(Debug, Clone)]
pub enum TaskSpec {
    /// Sequence labelling scored by entity-level F1 (conlleval / seqeval).
    Tagging {
        /// Tag names in id order (IOB2).
        labels: Vec<String>,
    },
    /// One class per sentence or pair.
    Classification {
        /// Class names in id order.
        labels: Vec<String>,
        /// The GLUE task whose official metrics apply; `None`: accuracy.
        glue: Option<GlueTask>,
    },
    /// One score per sentence or pair, scored by Pearson and Spearman correlation.
    Regression,
    /// Text generation with a causal language model (E2E), scored by BLEU and the E2E
    /// challenge's other metrics.
    Generation,
}

impl TaskSpec {
    /// The model head this task needs.
    pub fn model_task(&self) -> autolora_models::Task {
        match self {
            TaskSpec::Tagging { labels } => autolora_models::Task::TokenClassification {
                num_labels: labels.len() as i64,
            },
            TaskSpec::Classification { labels, .. } => {
                autolora_models::Task::SequenceClassification {
                    num_labels: labels.len() as i64,
                }
            }
            TaskSpec::Regression => autolora_models::Task::Regression,
            TaskSpec::Generation => autolora_models::Task::CausalLm,
        }
    }

    /// Name of the headline metric.
    pub fn metric_name(&self) -> &'static str {
        match self {
            TaskSpec::Tagging { .. } => "entity_f1",
            TaskSpec::Classification {
                glue: Some(GlueTask::Cola),
                ..
            } => "matthews",
            TaskSpec::Classification { .. } => "accuracy",
            TaskSpec::Regression => "pearson",
            TaskSpec::Generation => "bleu",
        }
    }
}

/// A split prepared for evaluation.
pub struct EvalSet {
    /// `dev`, `test`.
    pub name: String,
    /// Its batches, sorted by length (empty for generation tasks).
    pub batches: Vec<DeviceBatch>,
    /// Words whose tags were lost by truncation (scored as missed).
    pub truncated_words: usize,
    /// Prompts and references of a generation task.
    pub generation: Option<GenerationSet>,
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
    /// The evaluation splits: the official development set first (MNLI: matched, then
    /// mismatched), then the test set where it has labels.
    pub evals: Vec<EvalSet>,
}

impl TaskData {
    /// Loads the task named in `config.task`.
    pub fn load(config: &RunConfig, model_dir: &Path, device: Device) -> Result<Self> {
        let name = config.task.name.as_str();
        if name == "e2e" {
            return crate::e2e::load(config, model_dir, device);
        }
        let tokenizer_path = autolora_models::tokenizer_path(model_dir)
            .with_context(|| format!("{} has no tokenizer.json", model_dir.display()))?;
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, config.task.max_length)?;
        match name {
            "conll" | "conll2003" => load_conll(config, &tokenizer, device),
            "sentiment" | "sentiment-regression" => {
                load_sentiment(config, &tokenizer, device, name == "sentiment-regression")
            }
            _ => match GlueTask::from_name(name) {
                Ok(glue) => load_glue(config, &tokenizer, device, glue),
                Err(_) => bail!(
                    "unknown task `{name}`; known: conll, sentiment, sentiment-regression, \
                     cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, e2e"
                ),
            },
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
    let evals = vec![
        ("dev".into(), encode(&data.dev)?),
        ("test".into(), encode(&data.test)?),
    ];
    let spec = TaskSpec::Tagging {
        labels: labels.labels().to_vec(),
    };
    assemble(config, tokenizer.pad_id(), device, spec, train, evals)
}

/// The Rotten-Tomatoes snippets: sign of the score (binary) or the score (regression), on the
/// data crate's fixed seeded split.
fn load_sentiment(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: Device,
    regression: bool,
) -> Result<TaskData> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch("rotten-tomatoes")?,
    };
    let snippets = autolora_data::sentiment::RottenTomatoes::read_dir(&dir)?;
    let (task, spec) = if regression {
        (SentimentTask::Regression, TaskSpec::Regression)
    } else {
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let spec = TaskSpec::Classification { labels, glue: None };
        (SentimentTask::Binary, spec)
    };
    let splits = snippets.split(task);
    if splits.dropped() > 0 {
        println!(
            "sentiment: {} snippets with score exactly 0 left out of the binary task",
            splits.dropped()
        );
    }
    let train = encode_text(config, tokenizer, &splits.train)?;
    let evals = vec![
        ("dev".into(), encode_text(config, tokenizer, &splits.dev)?),
        ("test".into(), encode_text(config, tokenizer, &splits.test)?),
    ];
    assemble(config, tokenizer.pad_id(), device, spec, train, evals)
}

/// A GLUE task from its official folder (`task.data_dir`, or the task's asset). GLUE's test
/// labels are not public, so the dev files are the evaluation splits.
fn load_glue(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: Device,
    glue: GlueTask,
) -> Result<TaskData> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch(glue.asset_name())?,
    };
    let options = GlueOptions::default();
    let train = encode_text(
        config,
        tokenizer,
        &glue.read(&dir, GlueFile::Train, options)?,
    )?;
    let evals = glue
        .eval_files()
        .iter()
        .map(|&file| {
            let split = glue.read(&dir, file, options)?;
            let name = match file {
                GlueFile::DevMismatched => "dev_mismatched",
                _ => "dev",
            };
            Ok((name.to_string(), encode_text(config, tokenizer, &split)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = match glue.kind() {
        TaskKind::Classification { labels } => TaskSpec::Classification {
            labels,
            glue: Some(glue),
        },
        TaskKind::Regression => TaskSpec::Regression,
    };
    assemble(config, tokenizer.pad_id(), device, spec, train, evals)
}

/// Tokenizes a sentence-level split after applying the configured subset limit.
fn encode_text(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    split: &TextSplit,
) -> Result<EncodedSet> {
    let mut examples = split.examples.clone();
    let is_train = split
        .path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("train"));
    let cap = if is_train {
        config.task.train_limit
    } else {
        config.task.eval_limit
    };
    limit(&mut examples, cap, config.run.seed);
    Ok(tokenizer.encode_examples(&examples)?)
}

/// Keeps the first `limit` items after a seeded shuffle (a reproducible random subset, in
/// the original order).
pub fn limit<T>(items: &mut Vec<T>, limit: Option<usize>, seed: u64) {
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

/// Splits the training set for the search and builds the batches of every split; `pad` fills
/// the padding positions.
pub fn assemble(
    config: &RunConfig,
    pad: u32,
    device: Device,
    spec: TaskSpec,
    train: EncodedSet,
    evals: Vec<(String, EncodedSet)>,
) -> Result<TaskData> {
    let seed = config.run.seed;
    let split_config = SplitConfig {
        validation_fraction: config.search.val_ratio,
        seed,
    };
    // Classification: hold out the same fraction of every class.
    let classes: Option<Vec<usize>> = train
        .examples
        .iter()
        .map(|e| match e.target {
            Target::Class(c) => Some(c as usize),
            _ => None,
        })
        .collect();
    let parts = match classes {
        Some(classes) if !classes.is_empty() => stratified_split(&classes, &split_config)?,
        _ => split(train.examples.len(), &split_config)?,
    };
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
            generation: None,
        })
    };
    tracing::info!(
        train = train.examples.len(),
        search_train = parts.train.len(),
        search_val = parts.validation.len(),
        "task data ready"
    );
    Ok(TaskData {
        spec,
        search_train: step_batches(&subset(&parts.train), config.search.batch_size, 1)?,
        search_val: step_batches(&subset(&parts.validation), config.search.batch_size, 2)?,
        train: step_batches(&train, config.train.batch_size, 3)?,
        evals: evals
            .iter()
            .map(|(name, set)| eval_set(name, set))
            .collect::<Result<_>>()?,
    })
}

fn to_device(batches: Vec<Batch>, device: Device) -> Result<Vec<DeviceBatch>> {
    batches
        .iter()
        .map(|b| DeviceBatch::new(b, device))
        .collect()
}
