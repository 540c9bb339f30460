//! `autolora predict`: a finished run's adapter, or an exported PEFT adapter on its base
//! model, on a new, unlabelled file of any supported format, one prediction per row in JSON
//! Lines, in file order, read and written a batch at a time (the output appears whole,
//! atomically, when every row is done).
//!
//! An adapter folder written by `autolora export` carries the run's settings
//! ([`EXPORTED_CONFIG`]: base model, task, columns, decoding) and its classes
//! ([`LABELS_FILE`]); PEFT ignores both. For an adapter from elsewhere a run file given with
//! `--config` names the base model and the task (`task.kind`, `task.columns`, `task.labels`).
//!
//! - classification: `{"line", "label", "probabilities": {class: p}}`;
//! - regression: `{"line", "score"}`;
//! - tagging: `{"line", "tokens", "tags"}` (one tag per word; words cut by `task.max_length`
//!   are tagged `O` and counted in `"truncated_words"`);
//! - causal LM: `{"line", "generated"}`, decoded as the run's `[generate]` says from a pair's
//!   prompt, a conversation (up to its last assistant turn) or a text.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use autolora_data::batch::collate;
use autolora_data::glue::GlueTask;
use autolora_data::inputs::{Input, InputColumns, InputRow, read_inputs};
use autolora_data::lm_encode::LmEncoder;
use autolora_data::tokenize::{Encoded, IGNORE_INDEX, Target, TextTokenizer};
use autolora_models::peft::apply_peft_adapter;
use autolora_models::{AttentionImpl, Model};
use serde_json::{Value, json};
use tch::{Device, Kind};

use crate::batches::DeviceBatch;
use crate::config::{FileTask, RunConfig};
use crate::run::ADAPTER_DIR;
use crate::session::{CONFIG_FILE, LABELS_FILE, device, load_base, model_dir};

/// What a run predicts.
enum Predicted {
    Classes(Vec<String>),
    Score,
    Tags(Vec<String>),
    Text,
}

/// The run's settings in an adapter folder `autolora export` writes.
pub const EXPORTED_CONFIG: &str = "autolora.toml";

/// Writes the predictions of the run or adapter `args` names for every row of its input.
pub fn run(args: &PredictArgs) -> Result<()> {
    let (input, output) = (args.input.as_path(), args.output.as_path());
    // Where the settings, the classes and the adapter are.
    let (mut config, labels_dir, adapter) = match (&args.run, &args.adapter) {
        (Some(run_dir), _) => {
            let config = RunConfig::resolve(Some(&run_dir.join(CONFIG_FILE)), &args.overrides)
                .with_context(|| {
                    format!("{} is not a finished run directory", run_dir.display())
                })?;
            (config, run_dir.clone(), run_dir.join(ADAPTER_DIR))
        }
        (None, Some(dir)) => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| dir.join(EXPORTED_CONFIG));
            if !path.exists() {
                bail!(
                    "{} has no {EXPORTED_CONFIG} (it was not written by `autolora export`): pass \
                     --config with a run file naming the base model ([model]) and the task \
                     (task.kind, task.columns, and task.labels for classes or tags)",
                    dir.display()
                );
            }
            (
                RunConfig::resolve(Some(&path), &args.overrides)?,
                dir.clone(),
                dir.clone(),
            )
        }
        (None, None) => bail!("predict needs --run DIR or --adapter DIR"),
    };
    if let Some(name) = &args.device {
        config.run.device = name.clone();
    }
    if config.run.threads > 0 {
        tch::set_num_threads(config.run.threads as i32);
    }
    let device = device(&config)?;
    let model_dir = model_dir(&config)?;
    let predicted = predicted(&config, &labels_dir)?;
    let task = match &predicted {
        Predicted::Classes(labels) => autolora_models::Task::SequenceClassification {
            num_labels: labels.len() as i64,
        },
        Predicted::Score => autolora_models::Task::Regression,
        Predicted::Tags(labels) => autolora_models::Task::TokenClassification {
            num_labels: labels.len() as i64,
        },
        Predicted::Text => autolora_models::Task::CausalLm,
    };
    let mut model = load_base(&config, &model_dir, device, task, AttentionImpl::Fused)?;
    apply_peft_adapter(model.as_mut(), &adapter)
        .with_context(|| format!("loading the adapter in {}", adapter.display()))?;
    let _guard = tch::no_grad_guard();
    let run = Prediction {
        config: &config,
        model_dir: &model_dir,
        model: model.as_ref(),
        device,
        input,
    };
    let mut written = 0;
    autolora_data::atomic::write_with(output, |file| {
        let mut out = std::io::BufWriter::new(file);
        let mut emit = |value: Value| -> Result<()> {
            writeln!(out, "{value}")?;
            written += 1;
            Ok(())
        };
        match &predicted {
            Predicted::Text => run.generated(&mut emit),
            _ => run.rows(&predicted, &mut emit),
        }
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        out.flush()
    })
    .with_context(|| format!("writing {}", output.display()))?;
    println!("{written} predictions written to {}", output.display());
    Ok(())
}

/// What one `predict` call reads.
struct Prediction<'a> {
    config: &'a RunConfig,
    model_dir: &'a Path,
    model: &'a dyn Model,
    device: Device,
    input: &'a Path,
}

impl Prediction<'_> {
    /// Decodes a continuation of every row (a causal-LM run).
    fn generated(&self, emit: &mut impl FnMut(Value) -> Result<()>) -> Result<()> {
        let tokenizer = crate::model_tokenizer::load(self.model_dir)?;
        let eos = crate::model_tokenizer::eos_ids(self.model_dir, &tokenizer)?;
        let template = crate::model_tokenizer::chat_template(self.model_dir, &tokenizer)?;
        let encoder = LmEncoder {
            tokenizer: &tokenizer,
            eos: u32::try_from(eos[0])?,
            max_length: self.config.task.max_length,
            template: template.as_ref(),
        };
        let decoding = crate::generation::decoding(self.config, &eos);
        let lm = self
            .model
            .as_causal_lm()
            .ok_or_else(|| anyhow!("the model has no language-model head"))?;
        let columns = InputColumns::Lm(self.config.task.columns.lm_columns());
        for row in read_inputs(self.input, &columns)? {
            let row = row?;
            let Input::Prompt(example) = &row.input else {
                bail!("a causal-LM input expected");
            };
            let ids = encoder
                .prompt(example)
                .with_context(|| format!("{}:{}", self.input.display(), row.line))?;
            let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
            let (text, _) = crate::generation::decode_one(lm, &ids, &decoding, &tokenizer)?;
            emit(json!({"line": row.line, "generated": text}))?;
        }
        Ok(())
    }

    /// Classes, scores or tags of every row, a batch of `train.eval_batch_size` rows at a time.
    fn rows(
        &self,
        predicted: &Predicted,
        emit: &mut impl FnMut(Value) -> Result<()>,
    ) -> Result<()> {
        let tokenizer =
            crate::model_tokenizer::text_tokenizer(self.model_dir, self.config.task.max_length)?;
        let columns = &self.config.task.columns;
        let columns = match predicted {
            Predicted::Tags(_) => InputColumns::Words(columns.tag_columns()),
            _ => InputColumns::Text(columns.text_columns()),
        };
        let mut rows = read_inputs(self.input, &columns)?;
        loop {
            let chunk: Vec<InputRow> = rows
                .by_ref()
                .take(self.config.train.eval_batch_size.max(1))
                .collect::<std::result::Result<_, _>>()?;
            if chunk.is_empty() {
                return Ok(());
            }
            for value in predict_batch(self.model, &tokenizer, predicted, &chunk, self.device)? {
                emit(value)?;
            }
        }
    }
}

/// The kind of the run's task and its classes or tags: `labels.json` in `dir` (the run
/// directory or the exported adapter), else `task.labels`.
fn predicted(config: &RunConfig, dir: &Path) -> Result<Predicted> {
    let kind = match config.task.kind {
        Some(kind) => kind,
        None => match config.task.name.as_str() {
            "conll" | "conll2003" => FileTask::TokenClassification,
            "sentiment" => FileTask::TextClassification,
            "sentiment-regression" => FileTask::TextRegression,
            "e2e" => bail!(
                "predict decodes causal-LM runs on the user's files (task.kind = \"causal-lm\"); \
                 an e2e run's prompts are linearised MRs with a separator, which `autolora eval` \
                 decodes on the E2E files"
            ),
            "planted" => bail!("the planted task has no predictions to make on new files"),
            name => match GlueTask::from_name(name)?.kind() {
                autolora_data::example::TaskKind::Classification { .. } => {
                    FileTask::TextClassification
                }
                autolora_data::example::TaskKind::Regression => FileTask::TextRegression,
            },
        },
    };
    let labels = || -> Result<Vec<String>> {
        let path = dir.join(LABELS_FILE);
        if !path.exists() {
            return config.task.labels.clone().with_context(|| {
                format!(
                    "{} has no {LABELS_FILE} and task.labels is unset: list the classes or tags \
                     in id order in task.labels",
                    dir.display()
                )
            });
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the run's classes from {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    Ok(match kind {
        FileTask::TextClassification => Predicted::Classes(labels()?),
        FileTask::TextRegression => Predicted::Score,
        FileTask::TokenClassification => Predicted::Tags(labels()?),
        FileTask::CausalLm => Predicted::Text,
    })
}

/// The predictions of one batch of sentence or tagging rows, in row order.
fn predict_batch(
    model: &dyn Model,
    tokenizer: &TextTokenizer,
    predicted: &Predicted,
    rows: &[InputRow],
    device: Device,
) -> Result<Vec<Value>> {
    let encoded = rows
        .iter()
        .map(|row| {
            Ok(match &row.input {
                // Every word's first sub-token is marked (label 0): where its tag is read.
                Input::Words(words) => tokenizer.encode_words(words, &vec![0; words.len()])?,
                Input::Text { text_a, text_b } => {
                    let mut e = tokenizer.encode_text(text_a, text_b.as_deref())?;
                    // Batches carry a label; predictions never read it.
                    e.target = Target::Class(0);
                    e
                }
                Input::Prompt(_) => bail!("a sentence or tagging input expected"),
            })
        })
        .collect::<Result<Vec<Encoded>>>()?;
    let indices: Vec<usize> = (0..encoded.len()).collect();
    let batch = DeviceBatch::new(&collate(&encoded, &indices, tokenizer.pad_id())?, device)?;
    let logits = model
        .forward_t(&batch.input(), false)?
        .logits
        .ok_or_else(|| anyhow!("the model has no task head"))?
        .to_device(Device::Cpu)
        .to_kind(Kind::Float);
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let row_logits = logits.get(i as i64);
        let value = match (predicted, &row.input) {
            (Predicted::Classes(labels), _) => {
                let p = Vec::<f64>::try_from(row_logits.softmax(-1, Kind::Double))?;
                let best = (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0);
                let probabilities: serde_json::Map<String, Value> = labels
                    .iter()
                    .cloned()
                    .zip(p.iter().map(|&v| json!(v)))
                    .collect();
                json!({"line": row.line, "label": labels[best], "probabilities": probabilities})
            }
            (Predicted::Score, _) => {
                json!({"line": row.line, "score": row_logits.reshape([-1]).double_value(&[0])})
            }
            (Predicted::Tags(labels), Input::Words(words)) => {
                let Target::Tokens(marks) = &encoded[i].target else {
                    bail!("words are encoded with token labels");
                };
                let best = Vec::<i64>::try_from(row_logits.argmax(-1, false))?;
                let mut tags: Vec<&str> = marks
                    .iter()
                    .zip(&best)
                    .filter(|(m, _)| **m != IGNORE_INDEX)
                    .map(|(_, &b)| labels[b as usize].as_str())
                    .collect();
                let cut = words.len() - tags.len();
                tags.resize(words.len(), "O");
                let mut value = json!({"line": row.line, "tokens": words, "tags": tags});
                if cut > 0 {
                    value["truncated_words"] = json!(cut);
                }
                value
            }
            _ => bail!("a tagging run reads words"),
        };
        out.push(value);
    }
    Ok(out)
}

/// The `predict` command's arguments.
#[derive(clap::Args)]
pub struct PredictArgs {
    /// A finished run's directory (its config.toml, labels.json and adapter/).
    #[arg(long, required_unless_present = "adapter", conflicts_with = "adapter")]
    pub run: Option<PathBuf>,
    /// An exported PEFT adapter folder instead of a run: `autolora export --adapter`'s (with
    /// the run's settings and classes beside it) or any PEFT LoRA adapter with `--config`.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// With --adapter: a run file naming the base model and the task (default: the adapter
    /// folder's autolora.toml).
    #[arg(long, requires = "adapter")]
    pub config: Option<PathBuf>,
    /// Override a setting, e.g. `--set model.dir=path/to/base` where the base model has moved
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The file to predict on: CSV, TSV, JSON Lines or Parquet, with the columns the run was
    /// trained on (labels not needed).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the predictions (JSON Lines).
    #[arg(long)]
    pub output: PathBuf,
    /// `cpu`, `cuda` or `auto` instead of the run's device.
    #[arg(long)]
    pub device: Option<String>,
}
