//! Decoding an evaluation split's prompts and scoring the outputs against their references:
//! the E2E challenge's metrics for data-to-text, exact match and ROUGE-L for answers to the
//! user's prompts.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use autolora_data::metrics::{Meteor, accuracy, coco_tokenize, e2e_scores, rouge_l};
use autolora_models::generate::{GenerationConfig, generate};
use autolora_models::{CausalLm, Model};
use tokenizers::Tokenizer;

use crate::config::RunConfig;
use crate::progress::Progress;

/// An evaluation split decoded from prompts: one prompt per input.
pub struct GenerationSet {
    /// Prompt token ids, one per input.
    pub prompts: Vec<Vec<i64>>,
    /// The references of each prompt (E2E: every reference of the MR; answers: one).
    pub references: Vec<Vec<String>>,
    /// How to decode.
    pub config: GenerationConfig,
    /// Turns generated ids back into text.
    pub tokenizer: Arc<Tokenizer>,
    /// How the outputs are scored.
    pub scoring: Scoring,
}

/// The metrics of a generation split.
#[derive(Clone)]
pub enum Scoring {
    /// BLEU, NIST, METEOR (with the Java installation, when one was found), ROUGE-L and CIDEr,
    /// as the E2E challenge's script computes them.
    E2e {
        /// The METEOR installation.
        meteor: Option<Meteor>,
    },
    /// `exact_match` (the whitespace-normalised output equals the reference) and `rouge_l`
    /// (on PTB-tokenised, lowercased text) against the single reference.
    Answers,
}

/// The run file's `[generate]` decoding settings with the model's end-of-text ids.
pub fn decoding(config: &RunConfig, eos: &[i64]) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: config.generate.max_new_tokens,
        num_beams: config.generate.num_beams,
        length_penalty: config.generate.length_penalty,
        no_repeat_ngram_size: config.generate.no_repeat_ngram_size,
        eos_token_ids: eos.to_vec(),
    }
}

/// Decodes every prompt of `set` and scores the outputs; `empty_outputs` counts outputs with
/// no text.
pub fn score(model: &dyn Model, name: &str, set: &GenerationSet) -> Result<BTreeMap<String, f64>> {
    let hypotheses = decode_all(model, name, set)?;
    let empty = hypotheses.iter().filter(|h| h.is_empty()).count();
    let mut out = match &set.scoring {
        Scoring::E2e { meteor } => e2e_metrics(&hypotheses, &set.references, meteor.as_ref())?,
        Scoring::Answers => answer_metrics(&hypotheses, &set.references)?,
    };
    out.insert("empty_outputs".to_string(), empty as f64);
    Ok(out)
}

/// One output line per prompt (whitespace runs joined by one space, as the E2E script reads
/// its outputs), end-of-text tokens and special tokens left out.
fn decode_all(model: &dyn Model, name: &str, set: &GenerationSet) -> Result<Vec<String>> {
    let lm = model
        .as_causal_lm()
        .ok_or_else(|| anyhow!("generation needs a model with a language-model head"))?;
    let mut progress = Progress::new(&format!("gen {name}"), set.prompts.len() as u64, 0);
    let mut hypotheses = Vec::with_capacity(set.prompts.len());
    for prompt in &set.prompts {
        let (text, tokens) = decode_one(lm, prompt, &set.config, &set.tokenizer)?;
        tracing::debug!(split = name, output = %text, "generated");
        progress.advance(&format!("{tokens} tokens"));
        hypotheses.push(text);
    }
    progress.finish();
    Ok(hypotheses)
}

/// The output decoded from `prompt` as one line, and the number of tokens generated.
pub fn decode_one(
    lm: &dyn CausalLm,
    prompt: &[i64],
    config: &GenerationConfig,
    tokenizer: &Tokenizer,
) -> Result<(String, usize)> {
    let out = generate(lm, prompt, config)?;
    let ids: Vec<u32> = out
        .tokens
        .iter()
        .filter(|t| !config.eos_token_ids.contains(t))
        .map(|&t| u32::try_from(t).unwrap_or(0))
        .collect();
    let text = tokenizer
        .decode(&ids, true)
        .map_err(|e| anyhow!("decoding generated tokens: {e}"))?;
    Ok((
        text.split_whitespace().collect::<Vec<_>>().join(" "),
        out.tokens.len(),
    ))
}

fn e2e_metrics(
    hypotheses: &[String],
    references: &[Vec<String>],
    meteor: Option<&Meteor>,
) -> Result<BTreeMap<String, f64>> {
    let scores = match e2e_scores(hypotheses, references, meteor) {
        Ok(scores) => scores,
        // A METEOR failure (Java error) must not lose the other metrics.
        Err(err) if meteor.is_some() => {
            eprintln!("e2e: METEOR failed ({err}); reporting the other metrics");
            e2e_scores(hypotheses, references, None)?
        }
        Err(err) => return Err(err.into()),
    };
    let mut out = BTreeMap::new();
    out.insert("bleu".to_string(), scores.bleu);
    out.insert("nist".to_string(), scores.nist);
    if let Some(m) = scores.meteor {
        out.insert("meteor".to_string(), m);
    }
    out.insert("rouge_l".to_string(), scores.rouge_l);
    out.insert("cider".to_string(), scores.cider);
    Ok(out)
}

fn answer_metrics(
    hypotheses: &[String],
    references: &[Vec<String>],
) -> Result<BTreeMap<String, f64>> {
    let normalise = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let gold: Vec<String> = references
        .iter()
        .map(|r| r.first().map_or(String::new(), |r| normalise(r)))
        .collect();
    let exact = accuracy(hypotheses, &gold)?;
    let tokenized = |texts: &[String]| texts.iter().map(|t| coco_tokenize(t)).collect::<Vec<_>>();
    let refs: Vec<Vec<String>> = tokenized(&gold).into_iter().map(|r| vec![r]).collect();
    let rouge = rouge_l(&tokenized(hypotheses), &refs)?;
    Ok(BTreeMap::from([
        ("exact_match".to_string(), exact),
        ("rouge_l".to_string(), rouge),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_scored_on_normalised_text() -> Result<()> {
        let hypotheses = vec!["a good film".to_string(), "bad".to_string()];
        let references = vec![
            vec!["a  good film\n".to_string()],
            vec!["a bad film".to_string()],
        ];
        let scores = answer_metrics(&hypotheses, &references)?;
        assert_eq!(scores["exact_match"], 0.5);
        // Segment 2: LCS 1, precision 1, recall 1/3; F with beta 1.2.
        let (p, r, b2) = (1.0, 1.0 / 3.0, 1.44);
        let second = (1.0 + b2) * p * r / (r + b2 * p);
        assert!((scores["rouge_l"] - (1.0 + second) / 2.0).abs() < 1e-12);
        Ok(())
    }
}
