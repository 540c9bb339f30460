//! The E2E data-to-text task on a causal language model (GPT-2, Llama), in the LoRA paper's
//! format.
//!
//! Training example, one per (MR, reference) row: `prompt + " " + reference + EOS`, where the
//! prompt is the linearised MR followed by the end-of-text token as separator (the LoRA
//! repository's `gpt2_encode.py`: context + `<|endoftext|>`, completion `" " + ref` +
//! `<|endoftext|>`). Labels are the input ids with -100 on the prompt, so the causal-LM loss
//! (shifted inside the model) counts only the reference and its closing EOS.
//!
//! Evaluation, one per distinct MR: the prompt is decoded with the configured beam search
//! (`[generate]`, by default the paper's protocol) and the output is scored against all
//! references of that MR with BLEU, NIST, METEOR (when Java and the jar are found), ROUGE-L
//! and CIDEr, as the E2E challenge's script does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use autolora_data::e2e::{E2eSplit, read_e2e};
use autolora_data::metrics::Meteor;
use autolora_data::tokenize::{Encoded, EncodedSet, IGNORE_INDEX, Target};
use tch::Device;
use tokenizers::Tokenizer;

use crate::config::RunConfig;
use crate::generation::{GenerationSet, Scoring};
use crate::task::{EvalSet, Role, TaskData, TaskSpec};

/// Test-file names tried, in order: the official release's test set with references, then a
/// `testset.csv` (used only if it has a `ref` column).
const TEST_FILES: &[&str] = &["testset_w_refs.csv", "testset.csv"];

/// Loads the E2E task: `trainset.csv`, `devset.csv` and the test set from `task.data_dir` (or
/// the `e2e` asset).
pub fn load(config: &RunConfig, model_dir: &Path, device: Device) -> Result<TaskData> {
    let dir = match &config.task.data_dir {
        Some(dir) => dir.clone(),
        None => autolora_data::assets::fetch(autolora_data::assets::E2E)?,
    };
    let tokenizer = Arc::new(crate::model_tokenizer::load(model_dir)?);
    let eos = crate::model_tokenizer::eos_ids(model_dir, &tokenizer)?;
    let encoder = PairEncoder {
        tokenizer: &tokenizer,
        separator: eos[0],
        max_length: config.task.max_length,
    };

    // Every file is read (and checked) before the slower tokenization starts.
    let train = read_e2e(&dir.join("trainset.csv"))?;
    let mut eval_files: Vec<(&str, PathBuf)> = vec![("dev", dir.join("devset.csv"))];
    match TEST_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()) {
        Some(path) => eval_files.push(("test", path)),
        None => eprintln!(
            "e2e: no test set ({}) in {}; scoring dev only",
            TEST_FILES.join(" or "),
            dir.display()
        ),
    }
    let eval_splits = eval_files
        .into_iter()
        .map(|(name, path)| Ok((name, path.clone(), read_e2e(&path)?)))
        .collect::<Result<Vec<_>>>()?;
    // One training example per (MR, reference) pair, grouped by MR: the search's validation
    // set takes whole MRs, so its inputs are never seen in its training part.
    let mut pairs: Vec<Pair> = train
        .instances
        .iter()
        .enumerate()
        .flat_map(|(group, i)| {
            i.references.iter().map(move |r| Pair {
                input: i.input.as_str(),
                reference: r.as_str(),
                line: i.line,
                group,
            })
        })
        .collect();
    crate::task::limit(&mut pairs, Role::Train, config);
    let groups: Vec<usize> = pairs.iter().map(|p| p.group).collect();
    let train_set = encoder.encode_pairs(&train.path, &pairs)?;
    if train_set.truncated > 0 {
        eprintln!(
            "e2e: {} of {} training examples cut to task.max_length = {} tokens",
            train_set.truncated,
            train_set.examples.len(),
            config.task.max_length
        );
    }

    let generation = crate::generation::decoding(config, &eos);
    let meteor = if config.generate.meteor {
        let found = Meteor::locate();
        if found.is_none() {
            eprintln!(
                "e2e: METEOR unavailable (needs `java` and meteor-1.5.jar; set {})",
                autolora_data::metrics::METEOR_JAR_ENV
            );
        }
        found
    } else {
        None
    };
    let mut evals = Vec::new();
    for (name, path, mut split) in eval_splits {
        if split.instances.iter().any(|i| i.references.is_empty()) {
            eprintln!(
                "e2e: {} has no references (inputs only); it is not scored",
                path.display()
            );
            continue;
        }
        crate::task::limit(&mut split.instances, Role::Eval, config);
        evals.push(EvalSet {
            name: name.to_string(),
            batches: Vec::new(),
            cut_tags: Vec::new(),
            generation: Some(GenerationSet {
                prompts: encoder.prompts(&split)?,
                references: split
                    .instances
                    .iter()
                    .map(|i| i.references.clone())
                    .collect(),
                config: generation.clone(),
                tokenizer: Arc::clone(&tokenizer),
                scoring: Scoring::E2e {
                    meteor: meteor.clone(),
                },
            }),
        });
    }
    let pad = u32::try_from(eos[0]).context("the end-of-text id is not a token id")?;
    let mut data = crate::task::assemble(
        config,
        pad,
        device,
        TaskSpec::Generation,
        train_set,
        Some(&groups),
        Vec::new(),
    )?;
    for set in &evals {
        let prompts = set.generation.as_ref().map_or(0, |g| g.prompts.len());
        let counts = crate::task::SplitCounts {
            examples: prompts,
            truncated: 0,
        };
        data.report.splits.insert(set.name.clone(), counts);
    }
    data.evals = evals;
    Ok(data)
}

/// One (MR, reference) training pair.
#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    input: &'a str,
    reference: &'a str,
    /// Line of the MR's first row in the file.
    line: usize,
    /// Index of the MR in the file (pairs of one MR share it).
    group: usize,
}

/// Tokenizes prompts and (prompt, reference) training pairs.
struct PairEncoder<'a> {
    tokenizer: &'a Tokenizer,
    separator: i64,
    max_length: usize,
}

impl PairEncoder<'_> {
    fn ids(&self, text: &str, special: bool) -> Result<Vec<i64>> {
        let encoding = self
            .tokenizer
            .encode(text, special)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?;
        Ok(encoding.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The linearised MR (with the tokenizer's own special tokens, e.g. Llama's BOS) and the
    /// separator.
    fn prompt(&self, input: &str) -> Result<Vec<i64>> {
        let mut ids = self.ids(input, true)?;
        ids.push(self.separator);
        Ok(ids)
    }

    fn prompts(&self, split: &E2eSplit) -> Result<Vec<Vec<i64>>> {
        split
            .instances
            .iter()
            .map(|i| self.prompt(&i.input))
            .collect()
    }

    /// `prompt + " " + reference + EOS`, labels -100 on the prompt; cut to the maximum length
    /// (counted as truncated). A prompt that leaves no room for the reference is an error.
    fn encode_pairs(&self, path: &Path, pairs: &[Pair]) -> Result<EncodedSet> {
        let mut examples = Vec::with_capacity(pairs.len());
        let mut truncated = 0;
        for &Pair {
            input,
            reference,
            line,
            ..
        } in pairs
        {
            let prompt = self.prompt(input)?;
            let mut completion = self.ids(&format!(" {reference}"), false)?;
            completion.push(self.separator);
            if prompt.len() >= self.max_length {
                bail!(
                    "{} line {line}: the MR takes {} tokens, which leaves no room for its \
                     reference within task.max_length = {}",
                    path.display(),
                    prompt.len(),
                    self.max_length
                );
            }
            let mut ids: Vec<i64> = prompt.iter().chain(&completion).copied().collect();
            let mut labels: Vec<i64> = std::iter::repeat_n(IGNORE_INDEX, prompt.len())
                .chain(completion.iter().copied())
                .collect();
            let cut = ids.len() > self.max_length;
            ids.truncate(self.max_length);
            labels.truncate(self.max_length);
            truncated += usize::from(cut);
            examples.push(Encoded {
                input_ids: ids
                    .iter()
                    .map(|&i| u32::try_from(i).context("a token id beyond u32"))
                    .collect::<Result<_>>()?,
                token_type_ids: vec![0; labels.len()],
                target: Target::Tokens(labels),
                truncated: cut,
                cut_tags: Vec::new(),
            });
        }
        Ok(EncodedSet {
            examples,
            truncated,
            truncated_words: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn fixture_tokenizer() -> Result<Tokenizer> {
        crate::model_tokenizer::load(&fixtures().join("tiny-gpt2"))
    }

    fn pair<'a>(input: &'a str, reference: &'a str) -> Pair<'a> {
        Pair {
            input,
            reference,
            line: 2,
            group: 0,
        }
    }

    /// The prompt tokens (label -100, not padding) of every row of `batches`.
    fn prompts(batches: &crate::batches::StepBatches) -> Result<Vec<Vec<i64>>> {
        let mut out = Vec::new();
        for b in batches.all() {
            let ids = Vec::<Vec<i64>>::try_from(&b.input_ids)?;
            let labels = Vec::<Vec<i64>>::try_from(&b.labels)?;
            let mask = Vec::<Vec<i64>>::try_from(&b.attention_mask)?;
            for ((ids, labels), mask) in ids.iter().zip(&labels).zip(&mask) {
                out.push(
                    (0..ids.len())
                        .filter(|&t| labels[t] == IGNORE_INDEX && mask[t] == 1)
                        .map(|t| ids[t])
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    #[test]
    fn search_validation_holds_out_whole_meaning_representations() -> Result<()> {
        let mut config = RunConfig::default();
        config.task.data_dir = Some(fixtures().join("e2e"));
        config.search.batch_size = 4;
        config.generate.meteor = false;
        for seed in 0..4 {
            config.run.seed = seed;
            let data = load(&config, &fixtures().join("tiny-gpt2"), Device::Cpu)?;
            let train: std::collections::HashSet<Vec<i64>> =
                prompts(&data.search_train)?.into_iter().collect();
            let val = prompts(&data.search_val)?;
            assert!(!val.is_empty());
            assert!(
                val.iter().all(|p| !train.contains(p)),
                "seed {seed}: an MR of the search's validation set is also in its training part"
            );
        }
        Ok(())
    }

    #[test]
    fn training_pairs_mask_the_prompt_and_end_with_eos() -> Result<()> {
        let tokenizer = fixture_tokenizer()?;
        let encoder = PairEncoder {
            tokenizer: &tokenizer,
            separator: 0,
            max_length: 128,
        };
        let input = "name : Blue Finch | eatType : pub";
        let reference = "Blue Finch is a pub.";
        let set = encoder.encode_pairs(Path::new("x.csv"), &[pair(input, reference)])?;
        let example = &set.examples[0];
        let prompt = encoder.prompt(input)?;
        assert_eq!(
            *prompt.last().unwrap(),
            0,
            "the prompt ends with the separator"
        );
        let Target::Tokens(labels) = &example.target else {
            panic!("token labels expected")
        };
        let ids: Vec<i64> = example.input_ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(ids[..prompt.len()], prompt[..]);
        assert!(labels[..prompt.len()].iter().all(|&l| l == IGNORE_INDEX));
        assert_eq!(labels[prompt.len()..], ids[prompt.len()..]);
        assert_eq!(*ids.last().unwrap(), 0, "the example ends with EOS");
        let completion: Vec<u32> = example.input_ids[prompt.len()..ids.len() - 1].to_vec();
        let text = tokenizer
            .decode(&completion, true)
            .map_err(|e| anyhow!("{e}"))?;
        assert_eq!(text, format!(" {reference}"));
        assert_eq!(set.truncated, 0);

        // Cut to the maximum length and counted; a prompt without room is an error.
        let short = PairEncoder {
            max_length: prompt.len() + 2,
            ..encoder
        };
        let set = short.encode_pairs(Path::new("x.csv"), &[pair(input, reference)])?;
        assert_eq!(
            (set.truncated, set.examples[0].len()),
            (1, prompt.len() + 2)
        );
        let tight = PairEncoder {
            max_length: prompt.len(),
            ..encoder
        };
        let err = tight
            .encode_pairs(Path::new("x.csv"), &[pair(input, reference)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.csv line 2") && err.contains("max_length"),
            "{err}"
        );
        Ok(())
    }
}
