//! The `causal-lm` kind: the user's prompt/completion pairs, conversations or plain texts on a
//! causal language model, trained on the completions, the assistant's turns or all text
//! (the data crate's `lm_files` and `lm_encode`), scored by loss and perplexity on the
//! evaluation splits and, with `generate.evaluate`, by exact match and ROUGE-L of the answers
//! decoded from their prompts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use autolora_data::lm_encode::LmEncoder;
use autolora_data::lm_files::{LmFile, read_lm_file};
use autolora_data::records::Format;
use tch::Device;

use crate::config::RunConfig;
use crate::generation::{GenerationSet, Scoring};
use crate::task::{Role, TaskData, TaskSpec, eval_splits, kept_rows};

/// Loads `task.train_file` (with `task.dev_file`, or a held-out share of the training rows,
/// and an optional `task.test_file`) for the model in `model_dir`.
pub fn load(config: &RunConfig, model_dir: &Path, device: Device) -> Result<TaskData> {
    let task = &config.task;
    let train_path = task
        .train_file
        .as_deref()
        .context("task.train_file is unset")?;
    let tokenizer = Arc::new(crate::model_tokenizer::load(model_dir)?);
    let eos = crate::model_tokenizer::eos_ids(model_dir, &tokenizer)?;
    let eos_id = u32::try_from(eos[0]).context("the end-of-text id is not a token id")?;
    let template = crate::model_tokenizer::chat_template(model_dir, &tokenizer)?;
    let columns = task.columns.lm_columns();
    let read = |path: &Path, role: Role| -> Result<LmFile> {
        Ok(read_lm_file(
            path,
            &columns,
            kept_rows(path, Format::of(path)?, role, config)?,
        )?)
    };

    let train = read(train_path, Role::Train)?;
    let (train, evals) = eval_splits(
        config,
        train,
        task.dev_file.as_deref(),
        task.test_file.as_deref(),
        |path| read(path, Role::Eval),
    )?;

    let encoder = LmEncoder {
        tokenizer: &tokenizer,
        eos: eos_id,
        max_length: task.max_length,
        template: template.as_ref(),
    };
    let encode = |file: &LmFile| -> Result<_> {
        let set = encoder.encode_file(file)?;
        if set.truncated > 0 {
            println!(
                "{}: {} of {} examples cut to task.max_length = {} tokens",
                file.path.display(),
                set.truncated,
                set.examples.len(),
                task.max_length
            );
        }
        Ok(set)
    };
    let train_set = encode(&train)?;
    let encoded = evals
        .iter()
        .map(|(name, file)| Ok((name.clone(), encode(file)?)))
        .collect::<Result<Vec<_>>>()?;
    let generation = if config.generate.evaluate {
        evals
            .iter()
            .map(|(_, file)| answers(&encoder, file, config, &eos, &tokenizer).map(Some))
            .collect::<Result<Vec<_>>>()?
    } else {
        evals.iter().map(|_| None).collect()
    };
    let mut data = crate::task::assemble(
        config,
        eos_id,
        device,
        TaskSpec::LanguageModel,
        train_set,
        None,
        encoded,
    )?;
    for (set, generation) in data.evals.iter_mut().zip(generation) {
        set.generation = generation;
    }
    Ok(data)
}

/// The prompts of `file`'s rows and the answers their outputs are scored against.
fn answers(
    encoder: &LmEncoder,
    file: &LmFile,
    config: &RunConfig,
    eos: &[i64],
    tokenizer: &Arc<tokenizers::Tokenizer>,
) -> Result<GenerationSet> {
    let (mut prompts, mut references) = (Vec::new(), Vec::new());
    for row in &file.rows {
        let (ids, answer) = encoder
            .answer_prompt(&file.path, row)
            .context("generate.evaluate decodes an answer to every evaluation row")?;
        prompts.push(ids.into_iter().map(i64::from).collect());
        references.push(vec![answer]);
    }
    Ok(GenerationSet {
        prompts,
        references,
        config: crate::generation::decoding(config, eos),
        tokenizer: Arc::clone(tokenizer),
        scoring: Scoring::Answers,
    })
}
