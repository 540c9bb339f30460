//! From a task name to batches: reads the task's files, tokenizes them with the model's
//! tokenizer, carves the search's validation set out of the training set, and builds the
//! batches of every split as tensors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use autolora_data::batch::{Batch, BatchConfig, batches, eval_plan, training_plan};
use autolora_data::conll::TaggedFile;
use autolora_data::example::{TaskKind, TextSplit};
use autolora_data::glue::{GlueFile, GlueOptions, GlueTask};
use autolora_data::metrics::EntityMode;
use autolora_data::records::Format;
use autolora_data::rng::{derive_seed, stream};
use autolora_data::sentiment::SentimentTask;
use autolora_data::split::{Split, SplitConfig, grouped_split, split, stratified_split};
use autolora_data::tag_files::{TagColumns, check_tags, read_tagged_file};
use autolora_data::text_files::{RawTextFile, read_text_file};
use autolora_data::tokenize::{EncodedSet, Target, TextTokenizer};
use tch::Device;

use crate::batches::{DeviceBatch, StepBatches};
use crate::config::{FileTask, RunConfig};
use crate::generation::GenerationSet;

/// What the task predicts and how it is scored.
#[derive(Debug, Clone)]
pub enum TaskSpec {
    /// Sequence labelling scored by entity-level F1 (conlleval / seqeval).
    Tagging {
        /// Tag names in id order (IOB2).
        labels: Vec<String>,
        /// How entities are read: conlleval's rules for CoNLL (the recorded experiments'),
        /// seqeval's strict IOB2 mode for the user's files.
        mode: EntityMode,
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
    /// Causal language modelling on the user's files, scored by the mean loss per trained
    /// token and its perplexity (lower is better).
    LanguageModel,
    /// The planted-rank task: the teacher's token distributions over `classes` through a
    /// frozen random head scaled by `head_scale`, fitted by KL and scored by it (lower is
    /// better). See `planted.rs`.
    Planted {
        /// Width of the head.
        classes: i64,
        /// Factor on the freshly initialised head that gives its logits the planted task's
        /// spread on the base model.
        head_scale: f64,
    },
}

impl TaskSpec {
    /// The model head this task needs.
    pub fn model_task(&self) -> autolora_models::Task {
        match self {
            TaskSpec::Tagging { labels, .. } => autolora_models::Task::TokenClassification {
                num_labels: labels.len() as i64,
            },
            TaskSpec::Classification { labels, .. } => {
                autolora_models::Task::SequenceClassification {
                    num_labels: labels.len() as i64,
                }
            }
            TaskSpec::Regression => autolora_models::Task::Regression,
            TaskSpec::Generation | TaskSpec::LanguageModel => autolora_models::Task::CausalLm,
            TaskSpec::Planted { classes, .. } => autolora_models::Task::TokenClassification {
                num_labels: *classes,
            },
        }
    }

    /// Readies a freshly loaded model's head for this task: the planted task's head is scaled
    /// and frozen (the teacher's and every student's are the same, so only adapters can close
    /// the gap); other tasks train their head as loaded.
    pub fn prepare_head(&self, model: &dyn autolora_models::Model) {
        if let TaskSpec::Planted { head_scale, .. } = self {
            model.freeze_head();
            let _guard = tch::no_grad_guard();
            for p in model.head_params() {
                let _ = p.param.tensor().g_mul_scalar_(*head_scale);
            }
        }
    }

    /// The class or tag names in id order, for tasks that have them.
    pub fn labels(&self) -> Option<&[String]> {
        match self {
            TaskSpec::Tagging { labels, .. } | TaskSpec::Classification { labels, .. } => {
                Some(labels)
            }
            _ => None,
        }
    }

    /// Whether a larger headline metric is better (perplexity and KL are lower-is-better).
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, TaskSpec::LanguageModel | TaskSpec::Planted { .. })
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
            TaskSpec::LanguageModel => "perplexity",
            TaskSpec::Planted { .. } => "kl",
        }
    }
}

/// A split prepared for evaluation.
pub struct EvalSet {
    /// `dev`, `test`.
    pub name: String,
    /// Its batches, sorted by length (empty for generation tasks).
    pub batches: Vec<DeviceBatch>,
    /// Per row of `batches`, in order: the tag ids of the words truncation cut from its
    /// sentence (scored as missed; empty for untagged examples).
    pub cut_tags: Vec<Vec<i64>>,
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
    /// The planted task's teacher, as recorded in the run directory's `planted.json`.
    pub planted: Option<crate::planted::PlantedReport>,
    /// What each split holds and what was left out or cut, for the run's summary.
    pub report: DataReport,
}

/// The examples of every split, those `task.max_length` cut, and the rows a loader left out by
/// a stated rule: the `data` block of `summary.json`, so nothing is dropped unseen.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DataReport {
    /// Per split (`train`, then the evaluation splits).
    pub splits: std::collections::BTreeMap<String, SplitCounts>,
    /// Rows left out, per rule (for example the sentiment task's snippets scored exactly 0).
    pub skipped: std::collections::BTreeMap<String, usize>,
}

/// One split's counts.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SplitCounts {
    /// Examples (generation splits: prompts).
    pub examples: usize,
    /// Examples cut to `task.max_length`.
    pub truncated: usize,
}

impl SplitCounts {
    fn of(set: &EncodedSet) -> Self {
        SplitCounts {
            examples: set.examples.len(),
            truncated: set.truncated,
        }
    }
}

impl TaskData {
    /// Loads the task named in `config.task`.
    pub fn load(config: &RunConfig, model_dir: &Path, device: Device) -> Result<Self> {
        let name = config.task.name.as_str();
        if name == "e2e" && config.task.kind.is_none() {
            return crate::e2e::load(config, model_dir, device);
        }
        if config.task.kind == Some(FileTask::CausalLm) {
            return crate::lm_task::load(config, model_dir, device);
        }
        let tokenizer = crate::model_tokenizer::text_tokenizer(model_dir, config.task.max_length)?;
        let text = |sets| load_text(config, &tokenizer, device, sets);
        match config.task.kind {
            Some(FileTask::TokenClassification) => {
                load_tagging(config, &tokenizer, device, &TagFiles::of_run(config)?)
            }
            Some(kind) => text(user_text_sets(config, kind)?),
            None => match name {
                "conll" | "conll2003" => {
                    load_tagging(config, &tokenizer, device, &TagFiles::conll2003(config)?)
                }
                "planted" => crate::planted::load(config, &tokenizer, model_dir, device),
                "sentiment" => text(sentiment_sets(config, false)?),
                "sentiment-regression" => text(sentiment_sets(config, true)?),
                _ => match GlueTask::from_name(name) {
                    Ok(glue) => text(glue_sets(config, glue)?),
                    Err(_) => bail!(
                        "unknown task `{name}`; known: conll, sentiment, sentiment-regression, \
                         cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, e2e, planted"
                    ),
                },
            },
        }
    }
}

/// The files of a token-classification task and how to read them: the user's (`task.kind`)
/// or CoNLL-2003's (the `conll` preset). Both take one path from file to batches.
pub struct TagFiles {
    train: PathBuf,
    /// `None`: `task.dev_fraction` of the training rows are held out.
    dev: Option<PathBuf>,
    test: Option<PathBuf>,
    /// `None`: each file's extension tells.
    format: Option<Format>,
    columns: TagColumns,
    /// Names of integer tags.
    tag_names: Option<Vec<String>>,
    mode: EntityMode,
}

impl TagFiles {
    /// The run's own files: `task.train_file`, `task.dev_file`, `task.test_file`, scored in
    /// seqeval's strict IOB2 mode.
    fn of_run(config: &RunConfig) -> Result<Self> {
        let task = &config.task;
        Ok(TagFiles {
            train: task
                .train_file
                .clone()
                .context("task.train_file is unset")?,
            dev: task.dev_file.clone(),
            test: task.test_file.clone(),
            format: None,
            columns: task.columns.tag_columns(),
            tag_names: task.labels.clone(),
            mode: EntityMode::StrictIob2,
        })
    }

    /// CoNLL-2003's column files in `task.data_dir` (or the asset): `train.txt`, `valid.txt`
    /// (the development set) and `test.txt`, scored by conlleval's rules as the recorded
    /// experiments were.
    fn conll2003(config: &RunConfig) -> Result<Self> {
        let dir = match &config.task.data_dir {
            Some(dir) => dir.clone(),
            None => autolora_data::assets::fetch("conll2003")?,
        };
        Ok(TagFiles {
            train: dir.join("train.txt"),
            dev: Some(dir.join("valid.txt")),
            test: Some(dir.join("test.txt")),
            format: Some(Format::Conll),
            columns: TagColumns::default(),
            tag_names: None,
            mode: EntityMode::Conlleval,
        })
    }

    fn format(&self, path: &Path) -> Result<Format> {
        Ok(match self.format {
            Some(format) => format,
            None => Format::of(path)?,
        })
    }
}

fn load_tagging(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: Device,
    files: &TagFiles,
) -> Result<TaskData> {
    let sets = tagged_sets(config, tokenizer, files)?;
    let spec = TaskSpec::Tagging {
        labels: sets.labels,
        mode: files.mode,
    };
    assemble(
        config,
        tokenizer.pad_id(),
        device,
        spec,
        sets.train,
        None,
        sets.evals,
    )
}

/// A tagging task's splits, limited and tokenized.
pub struct TaggedSets {
    /// Tag names in id order (the training file's).
    pub labels: Vec<String>,
    /// The training set.
    pub train: EncodedSet,
    /// `dev`, then `test` where there is one.
    pub evals: Vec<(String, EncodedSet)>,
}

/// CoNLL-2003's splits (`task.data_dir` or the asset), limited and tokenized.
pub fn conll_sets(config: &RunConfig, tokenizer: &TextTokenizer) -> Result<TaggedSets> {
    tagged_sets(config, tokenizer, &TagFiles::conll2003(config)?)
}

/// Reads the files of a tagging task (only the rows the limits keep), holds out the
/// development set where there is no file for it, and tokenizes every split with the
/// training file's tag set.
fn tagged_sets(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    files: &TagFiles,
) -> Result<TaggedSets> {
    let read = |path: &Path, role: Role| -> Result<TaggedFile> {
        let format = files.format(path)?;
        Ok(read_tagged_file(
            path,
            format,
            &files.columns,
            files.tag_names.as_deref(),
            kept_rows(path, format, role, config)?,
        )?)
    };
    let train = read(&files.train, Role::Train)?;
    let labels = train.label_set();
    let (train, evals) = eval_splits(
        config,
        train,
        files.dev.as_deref(),
        files.test.as_deref(),
        |path| read(path, Role::Eval),
    )?;
    let encode = |file: &TaggedFile| -> Result<EncodedSet> {
        check_tags(file, &labels)?;
        Ok(tokenizer.encode_tagged(&file.path, &file.sentences, &labels)?)
    };
    Ok(TaggedSets {
        train: encode(&train)?,
        evals: evals
            .iter()
            .map(|(name, file)| Ok((name.clone(), encode(file)?)))
            .collect::<Result<Vec<_>>>()?,
        labels: labels.labels().to_vec(),
    })
}

/// A sentence-level task's splits before tokenization, limits applied: from the user's files
/// or from a preset (the sentiment snippets, a GLUE folder). All take one path to batches,
/// [`load_text`].
struct TextSets {
    spec: TaskSpec,
    train: TextSplit,
    /// `dev` (MNLI: then `dev_mismatched`), then `test` where there is one.
    evals: Vec<(String, TextSplit)>,
    /// Rows left out by a stated rule, and how many.
    skipped: Option<(&'static str, usize)>,
}

/// Tokenizes every split of `sets` and builds the batches.
fn load_text(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    device: Device,
    sets: TextSets,
) -> Result<TaskData> {
    let encode = |split: &TextSplit| -> Result<EncodedSet> {
        split.require_labels()?;
        Ok(tokenizer.encode_examples(&split.examples)?)
    };
    let train = encode(&sets.train)?;
    let evals = sets
        .evals
        .iter()
        .map(|(name, split)| Ok((name.clone(), encode(split)?)))
        .collect::<Result<Vec<_>>>()?;
    let pad = tokenizer.pad_id();
    let mut data = assemble(config, pad, device, sets.spec, train, None, evals)?;
    if let Some((rule, count)) = sets.skipped {
        data.report.skipped.insert(rule.into(), count);
    }
    Ok(data)
}

/// The sentiment preset: the Rotten-Tomatoes snippets' sign (binary) or score (regression),
/// on the data crate's fixed seeded split.
fn sentiment_sets(config: &RunConfig, regression: bool) -> Result<TextSets> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch("rotten-tomatoes")?,
    };
    let snippets = autolora_data::sentiment::RottenTomatoes::read_dir(&dir)?;
    let (task, spec) = if regression {
        (SentimentTask::Regression, TaskSpec::Regression)
    } else {
        let labels = autolora_data::sentiment::LABELS.map(String::from).to_vec();
        let spec = TaskSpec::Classification { labels, glue: None };
        (SentimentTask::Binary, spec)
    };
    let splits = snippets.split(task);
    let dropped = splits.dropped();
    if dropped > 0 {
        println!("sentiment: {dropped} snippets with score exactly 0 left out of the binary task");
    }
    let limited = |mut split: TextSplit, role: Role| {
        limit(&mut split.examples, role, config);
        split
    };
    Ok(TextSets {
        spec,
        train: limited(splits.train, Role::Train),
        evals: vec![
            ("dev".into(), limited(splits.dev, Role::Eval)),
            ("test".into(), limited(splits.test, Role::Eval)),
        ],
        skipped: (dropped > 0).then_some((
            "snippets scored exactly 0 (neither class of the binary task)",
            dropped,
        )),
    })
}

/// A GLUE preset from its official folder (`task.data_dir`, or the task's asset). GLUE's test
/// labels are not public, so the dev files are the evaluation splits.
fn glue_sets(config: &RunConfig, glue: GlueTask) -> Result<TextSets> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch(glue.asset_name())?,
    };
    let read = |file: GlueFile, role: Role| -> Result<TextSplit> {
        let mut split = glue.read(&dir, file, GlueOptions::default())?;
        limit(&mut split.examples, role, config);
        Ok(split)
    };
    let train = read(GlueFile::Train, Role::Train)?;
    let evals = glue
        .eval_files()
        .iter()
        .map(|&file| {
            let name = match file {
                GlueFile::DevMismatched => "dev_mismatched",
                _ => "dev",
            };
            Ok((name.to_string(), read(file, Role::Eval)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = match glue.kind() {
        TaskKind::Classification { labels } => TaskSpec::Classification {
            labels,
            glue: Some(glue),
        },
        TaskKind::Regression => TaskSpec::Regression,
    };
    Ok(TextSets {
        spec,
        train,
        evals,
        skipped: None,
    })
}

/// The user's text classification or regression files (`task.kind`): the training file, the
/// development file (or a seeded share of the training rows) and an optional test file.
fn user_text_sets(config: &RunConfig, kind: FileTask) -> Result<TextSets> {
    let task = &config.task;
    let train_path = task
        .train_file
        .as_deref()
        .context("task.train_file is unset")?;
    let columns = task.columns.text_columns();
    let read = |path: &Path, role: Role| -> Result<RawTextFile> {
        Ok(read_text_file(
            path,
            &columns,
            kept_rows(path, Format::of(path)?, role, config)?,
        )?)
    };
    let train = read(train_path, Role::Train)?;
    let classes = match kind {
        FileTask::TextClassification => {
            let labels = match &task.labels {
                Some(labels) => labels.clone(),
                None => train.class_names(),
            };
            if labels.len() < 2 {
                bail!(
                    "{}: text classification needs at least two classes, found {labels:?}",
                    train_path.display()
                );
            }
            Some(labels)
        }
        _ => None,
    };
    let to_split = |file: &RawTextFile| -> Result<TextSplit> {
        Ok(match &classes {
            Some(classes) => file.classification(classes)?,
            None => file.regression()?,
        })
    };
    let train = to_split(&train)?;
    train.require_labels()?;
    let (train, evals) = eval_splits(
        config,
        train,
        task.dev_file.as_deref(),
        task.test_file.as_deref(),
        |path| to_split(&read(path, Role::Eval)?),
    )?;
    let spec = match classes {
        Some(labels) => TaskSpec::Classification { labels, glue: None },
        None => TaskSpec::Regression,
    };
    Ok(TextSets {
        spec,
        train,
        evals,
        skipped: None,
    })
}

/// Which rows of the `format` file `path` the limit of `role` keeps, as a filter on row
/// indices for a reader that streams the file: the subset [`limit`] keeps (the file is
/// counted first).
pub fn kept_rows(
    path: &Path,
    format: Format,
    role: Role,
    config: &RunConfig,
) -> Result<impl FnMut(usize) -> bool> {
    let kept = match role.cap(config) {
        Some(_) => subset(autolora_data::records::count(path, format)?, role, config),
        None => None,
    };
    let mut next = kept.map(|k| k.into_iter().peekable());
    Ok(move |index| match next.as_mut() {
        None => true,
        Some(next) => next.next_if_eq(&index).is_some(),
    })
}

/// Rows read from a data file, of which a subset can be taken: what [`eval_splits`] holds a
/// development set out of.
pub trait Selectable: Sized {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// The rows at `indices`, in that order.
    fn select(&self, indices: &[usize]) -> Self;
    /// Each row's class, where a held-out share keeps the class balance.
    fn classes(&self) -> Option<Vec<usize>> {
        None
    }
}

impl Selectable for TaggedFile {
    fn rows(&self) -> usize {
        self.sentences.len()
    }
    fn select(&self, indices: &[usize]) -> Self {
        TaggedFile::select(self, indices)
    }
}

impl Selectable for TextSplit {
    fn rows(&self) -> usize {
        self.examples.len()
    }
    fn select(&self, indices: &[usize]) -> Self {
        TextSplit::select(self, indices)
    }
    fn classes(&self) -> Option<Vec<usize>> {
        self.class_ids()
    }
}

impl Selectable for autolora_data::lm_files::LmFile {
    fn rows(&self) -> usize {
        self.rows.len()
    }
    fn select(&self, indices: &[usize]) -> Self {
        autolora_data::lm_files::LmFile::select(self, indices)
    }
}

/// The evaluation splits of a task on files, in order: the development file (`read`), or
/// without one a share of the training rows held out ([`held_out_dev`]); then the test file
/// where there is one. Returns the training rows left and the named splits.
pub fn eval_splits<T: Selectable>(
    config: &RunConfig,
    train: T,
    dev: Option<&Path>,
    test: Option<&Path>,
    read: impl Fn(&Path) -> Result<T>,
) -> Result<(T, Vec<(String, T)>)> {
    let (train, dev) = match dev {
        Some(path) => (train, read(path)?),
        None => {
            let parts = held_out_dev(config, train.rows(), train.classes().as_deref())?;
            (train.select(&parts.train), train.select(&parts.validation))
        }
    };
    let mut evals = vec![("dev".to_string(), dev)];
    if let Some(path) = test {
        evals.push(("test".into(), read(path)?));
    }
    Ok((train, evals))
}

/// Without a `task.dev_file`: `task.dev_fraction` of the `n` training rows (per class where
/// `classes` are given) held out as the development set, with a seed of its own.
pub fn held_out_dev(config: &RunConfig, n: usize, classes: Option<&[usize]>) -> Result<Split> {
    let task = &config.task;
    let held_out = SplitConfig {
        validation_fraction: task.dev_fraction,
        seed: derive_seed(config.run.seed, 0, stream::DEV_SPLIT),
    };
    let parts = match classes {
        Some(classes) => stratified_split(classes, &held_out)?,
        None => split(n, &held_out)?,
    };
    println!(
        "{}: no task.dev_file, so {} of its {n} rows (task.dev_fraction = {}) are the \
         development set",
        task.train_file
            .as_deref()
            .unwrap_or(Path::new(""))
            .display(),
        parts.validation.len(),
        task.dev_fraction
    );
    Ok(parts)
}

/// What a split is used for, which decides its size limit (`task.train_limit` or
/// `task.eval_limit`). Every loader names the role of each split it reads: file names do not
/// tell (the sentiment task's three splits come from one file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The training set (the search's train and validation parts are carved out of it).
    Train,
    /// A development or test set.
    Eval,
}

impl Role {
    fn cap(self, config: &RunConfig) -> Option<usize> {
        match self {
            Role::Train => config.task.train_limit,
            Role::Eval => config.task.eval_limit,
        }
    }
}

/// Keeps the first N items (the limit of `role`) after a shuffle seeded by the run seed and
/// the role: a reproducible random subset, in the original order.
pub fn limit<T>(items: &mut Vec<T>, role: Role, config: &RunConfig) {
    let Some(keep) = subset(items.len(), role, config) else {
        return;
    };
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

/// The indices (ascending) of the reproducible random subset of `n` items that the limit of
/// `role` keeps; `None` when the limit keeps everything.
fn subset(n: usize, role: Role, config: &RunConfig) -> Option<Vec<usize>> {
    let limit = role.cap(config)?;
    if limit >= n {
        return None;
    }
    let seed = derive_seed(config.run.seed, role as u64, stream::SUBSET);
    let mut keep = autolora_data::rng::permutation(n, seed);
    keep.truncate(limit);
    keep.sort_unstable();
    Some(keep)
}

/// Splits the training set for the search and builds the batches of every split; `pad` fills
/// the padding positions. `groups` (one id per training example) marks examples that share an
/// input, which the search's split keeps on one side.
pub fn assemble(
    config: &RunConfig,
    pad: u32,
    device: Device,
    spec: TaskSpec,
    train: EncodedSet,
    groups: Option<&[usize]>,
    evals: Vec<(String, EncodedSet)>,
) -> Result<TaskData> {
    let seed = config.run.seed;
    let split_config = SplitConfig {
        validation_fraction: config.search.val_ratio,
        seed: derive_seed(seed, 0, stream::SEARCH_SPLIT),
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
    let parts = match (groups, classes) {
        (Some(groups), _) => grouped_split(groups, &split_config)?,
        (None, Some(classes)) if !classes.is_empty() => stratified_split(&classes, &split_config)?,
        _ => split(train.examples.len(), &split_config)?,
    };
    let subset = |indices: &[usize]| EncodedSet {
        examples: indices.iter().map(|&i| train.examples[i].clone()).collect(),
        truncated: 0,
        truncated_words: 0,
    };
    let step_batches = |set: &EncodedSet, batch_size: usize, stream: u64| -> Result<StepBatches> {
        let batching = BatchConfig::new(batch_size, derive_seed(seed, 0, stream));
        let plan = training_plan(set, &batching, 0)?;
        StepBatches::new(to_device(batches(set, &plan, pad)?, device)?, seed, stream)
    };
    let eval_set = |name: &str, set: &EncodedSet| -> Result<EvalSet> {
        let plan = eval_plan(set, config.train.eval_batch_size)?;
        Ok(EvalSet {
            name: name.to_string(),
            batches: to_device(batches(set, &plan, pad)?, device)?,
            // Rows follow the plan (sorted by length), not the file.
            cut_tags: plan
                .iter()
                .flatten()
                .map(|&i| set.examples[i].cut_tags.clone())
                .collect(),
            generation: None,
        })
    };
    tracing::info!(
        train = train.examples.len(),
        search_train = parts.train.len(),
        search_val = parts.validation.len(),
        "task data ready"
    );
    let mut report = DataReport::default();
    report
        .splits
        .insert("train".into(), SplitCounts::of(&train));
    for (name, set) in &evals {
        report.splits.insert(name.clone(), SplitCounts::of(set));
    }
    Ok(TaskData {
        report,
        spec,
        search_train: step_batches(
            &subset(&parts.train),
            config.search.batch_size,
            stream::SEARCH_TRAIN_BATCHES,
        )?,
        search_val: step_batches(
            &subset(&parts.validation),
            config.search.batch_size,
            stream::SEARCH_VAL_BATCHES,
        )?,
        train: step_batches(&train, config.train.batch_size, stream::TRAIN_BATCHES)?,
        evals: evals
            .iter()
            .map(|(name, set)| eval_set(name, set))
            .collect::<Result<_>>()?,
        planted: None,
    })
}

fn to_device(batches: Vec<Batch>, device: Device) -> Result<Vec<DeviceBatch>> {
    batches
        .iter()
        .map(|b| DeviceBatch::new(b, device))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn rows(batches: &[DeviceBatch]) -> i64 {
        batches.iter().map(|b| b.input_ids.size()[0]).sum()
    }

    /// FNV-1a over every value a task hands to training and evaluation: the batches of each
    /// split in order (token ids, masks, segment ids, labels), the words truncation cut, the
    /// class or tag names and the data report.
    fn digest(data: &TaskData) -> Result<String> {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        let mut batches: Vec<&DeviceBatch> = Vec::new();
        for steps in [&data.search_train, &data.search_val, &data.train] {
            batches.extend(steps.all());
        }
        for set in &data.evals {
            eat(set.name.as_bytes());
            if let Some(generation) = &set.generation {
                eat(format!("{:?}{:?}", generation.prompts, generation.references).as_bytes());
            }
            batches.extend(&set.batches);
            for cut in &set.cut_tags {
                eat(format!("{cut:?}").as_bytes());
            }
        }
        for batch in batches {
            let mut tensors = vec![&batch.input_ids, &batch.attention_mask, &batch.labels];
            tensors.extend(batch.token_type_ids.as_ref());
            for tensor in tensors {
                let flat = tensor.reshape([-1]);
                let values: Vec<u8> = match flat.kind() {
                    tch::Kind::Float => Vec::<f32>::try_from(&flat)?
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                    _ => Vec::<i64>::try_from(&flat)?
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                };
                eat(format!("{:?}", tensor.size()).as_bytes());
                eat(&values);
            }
        }
        eat(format!("{:?}", data.spec.labels()).as_bytes());
        eat(serde_json::to_string(&data.report)?.as_bytes());
        Ok(format!("{hash:016x}"))
    }

    /// The built-in tasks' encodings, subsets and search splits as the loaders that wrote the
    /// recorded experiments produced them (pinned before the built-in tasks became presets of
    /// the own-file loaders): the real CoNLL-2003 and Rotten-Tomatoes files through MiniLM's
    /// tokenizer with the limits the experiments use, and the GLUE and E2E fixtures.
    #[test]
    fn built_in_tasks_encode_exactly_as_the_recorded_experiments() -> Result<()> {
        let minilm = autolora_data::assets::fetch(autolora_data::assets::MINILM)?;
        let tiny = fixtures().join("tiny-bert");
        let gpt2 = fixtures().join("tiny-gpt2");
        // (task, data folder (None: the asset), tokenizer, train limit, pins for seeds 0 and 1)
        type Case<'a> = (
            &'a str,
            Option<PathBuf>,
            &'a Path,
            Option<usize>,
            [&'a str; 2],
        );
        let cases: [Case; 7] = [
            (
                "conll",
                None,
                &minilm,
                Some(2000),
                ["8ecc0f412453d8a6", "62931ffd700cbfd4"],
            ),
            (
                "sentiment",
                None,
                &minilm,
                Some(2000),
                ["f964691bdfc231aa", "a52cf24415c5bc69"],
            ),
            (
                "sentiment-regression",
                None,
                &minilm,
                Some(1000),
                ["2b6663707338fae9", "8d3d28bf99da249a"],
            ),
            (
                "sst2",
                Some(fixtures().join("glue/SST-2")),
                &tiny,
                None,
                ["672d80f3aa48bd86", "67b9946104ad642c"],
            ),
            (
                "mrpc",
                Some(fixtures().join("glue/MRPC")),
                &tiny,
                Some(10),
                ["10246d2a88dbdbb6", "d5936645dcc63aac"],
            ),
            (
                "stsb",
                Some(fixtures().join("glue/STS-B")),
                &tiny,
                None,
                ["1be46b160b04d2a9", "51e0e3555213443d"],
            ),
            (
                "e2e",
                Some(fixtures().join("e2e")),
                &gpt2,
                None,
                ["a6f33dfb0aa45ebf", "086685c46ebaa44e"],
            ),
        ];
        for (name, data_dir, model, train_limit, pins) in cases {
            for (seed, pin) in pins.into_iter().enumerate() {
                let mut config = RunConfig::default();
                config.task.name = name.into();
                config.task.data_dir = data_dir.clone();
                config.task.train_limit = train_limit;
                config.task.eval_limit = train_limit.map(|n| n / 4);
                config.run.seed = seed as u64;
                let data = TaskData::load(&config, model, Device::Cpu)?;
                assert_eq!(digest(&data)?, pin, "{name}, seed {seed}");
            }
        }
        Ok(())
    }

    #[test]
    fn limits_follow_the_split_role_not_the_file_name() -> Result<()> {
        // The sentiment task's three splits come from one file.
        let mut config = RunConfig::default();
        config.task.name = "sentiment".into();
        config.task.data_dir = Some(fixtures().join("sentiment"));
        config.task.train_limit = Some(12);
        config.task.eval_limit = Some(3);
        let data = TaskData::load(&config, &fixtures().join("tiny-bert"), Device::Cpu)?;
        assert_eq!(rows(data.train.all()), 12);
        for set in &data.evals {
            assert_eq!(rows(&set.batches), 3, "{}", set.name);
        }
        Ok(())
    }

    #[test]
    fn a_limit_on_a_file_read_row_by_row_keeps_the_subset_limit_keeps() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("train.jsonl");
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{{\"text\": \"anna met ole\", \"label\": {}}}", i % 2))
            .collect();
        std::fs::write(&path, lines.join("\n"))?;
        let mut config = RunConfig::default();
        config.task.kind = Some(FileTask::TextClassification);
        config.task.train_file = Some(path.clone());
        config.task.train_limit = Some(20);
        let columns = config.task.columns.text_columns();
        let kept = subset(40, Role::Train, &config).expect("a limit below the row count");
        let mut next = kept.iter().copied().peekable();
        let streamed = read_text_file(&path, &columns, |i| next.next_if_eq(&i).is_some())?;
        let mut all = read_text_file(&path, &columns, |_| true)?.examples;
        limit(&mut all, Role::Train, &config);
        assert_eq!(streamed.examples, all);
        assert_eq!(all.len(), 20);
        // The development set is held out of the 20 rows kept, the search's split of the rest.
        let data = TaskData::load(&config, &fixtures().join("tiny-bert"), Device::Cpu)?;
        assert_eq!(rows(data.train.all()), 18);
        assert_eq!(rows(&data.evals[0].batches), 2);
        Ok(())
    }
}
