//! Text generation with a key/value cache: greedy decoding and beam search with a length
//! penalty and no-repeat-n-gram blocking, following Hugging Face `generate` step for step
//! (`early_stopping=False`), so that the same model gives the same tokens.
//!
//! The E2E protocol of the LoRA paper is [`GenerationConfig::e2e`]: 10 beams, length
//! penalty 0.9, no repeated 4-grams.
//!
//! Beam search, per step: log-softmax of the last logits (f32), banned n-grams set to
//! `-inf`, add each beam's running score, keep the best `2 * beams` continuations. Those
//! ending in EOS (or reaching the length limit) among the best `beams` become finished
//! hypotheses scored `sum log p / generated_len^length_penalty`; the best `beams` others
//! continue. The search stops when no running beam can beat the worst of `beams` finished
//! hypotheses (Hugging Face's heuristic: the best running score divided by the current
//! generated length to the penalty), or at the length limit. The best finished hypothesis
//! wins.

use tch::{Kind, Tensor};

use crate::decoder::{CausalLm, KvCache};
use crate::{Error, Result};

/// How to decode.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens (EOS included).
    pub max_new_tokens: usize,
    /// 1 for greedy decoding, more for beam search.
    pub num_beams: usize,
    /// Exponent of the generated length that finished beam scores are divided by (> 0
    /// favours longer outputs).
    pub length_penalty: f64,
    /// No n-gram of this size may occur twice in prompt + output (0 switches it off).
    pub no_repeat_ngram_size: usize,
    /// Tokens that end a sequence.
    pub eos_token_ids: Vec<i64>,
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize, eos_token_ids: Vec<i64>) -> Self {
        GenerationConfig {
            max_new_tokens,
            num_beams: 1,
            length_penalty: 1.0,
            no_repeat_ngram_size: 0,
            eos_token_ids,
        }
    }

    /// The E2E NLG protocol of the LoRA paper: beam 10, length penalty 0.9, no repeated
    /// 4-grams.
    pub fn e2e(max_new_tokens: usize, eos_token_ids: Vec<i64>) -> Self {
        GenerationConfig {
            max_new_tokens,
            num_beams: 10,
            length_penalty: 0.9,
            no_repeat_ngram_size: 4,
            eos_token_ids,
        }
    }

    fn validate(&self, prompt: &[i64]) -> Result<()> {
        let bad = |why: String| Error::InvalidArgument {
            what: "generation config",
            why,
        };
        if self.num_beams == 0 {
            return Err(bad("num_beams must be at least 1".into()));
        }
        if self.max_new_tokens == 0 {
            return Err(bad("max_new_tokens must be at least 1".into()));
        }
        if prompt.is_empty() {
            return Err(Error::BadInput {
                name: "prompt",
                why: "generation needs at least one prompt token".into(),
            });
        }
        Ok(())
    }
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens (the prompt excluded), ending with the EOS token if one was produced.
    pub tokens: Vec<i64>,
    /// Sum of the tokens' log-probabilities, divided by `len^length_penalty` for beam search.
    pub score: f64,
    /// Whether generation stopped at an EOS token (rather than the length limit).
    pub ended_with_eos: bool,
}

/// Generates a continuation of `prompt` (token ids) with greedy decoding or beam search.
pub fn generate(
    model: &dyn CausalLm,
    prompt: &[i64],
    config: &GenerationConfig,
) -> Result<Generation> {
    config.validate(prompt)?;
    if config.num_beams == 1 {
        greedy(model, prompt, config)
    } else {
        beam_search(model, prompt, config)
    }
}

/// Runs `ids` [b, s] through the model after `cache`, with absolute positions following the
/// cached ones; returns the last position's logits as f32 [b, vocab] on the CPU.
fn step(model: &dyn CausalLm, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
    let size = ids.size();
    let (b, s) = (size[0], size[1]);
    let past = cache.len();
    let device = ids.device();
    let mask = Tensor::f_ones([b, past + s], (Kind::Int64, device))?;
    let positions = Tensor::f_arange_start(past, past + s, (Kind::Int64, device))?
        .f_unsqueeze(0)?
        .f_expand([b, s], false)?;
    let logits = model.forward_cached(ids, &mask, &positions, cache)?;
    Ok(logits
        .f_select(1, s - 1)?
        .f_to_kind(Kind::Float)?
        .f_to(tch::Device::Cpu)?)
}

/// Tokens that would repeat an n-gram of `seq` (Hugging Face `NoRepeatNGramLogitsProcessor`).
pub fn banned_tokens(seq: &[i64], n: usize) -> Vec<i64> {
    if n == 0 || seq.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &seq[seq.len() + 1 - n..];
    seq.windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
}

fn ban(scores: &mut [f32], banned: &[i64]) {
    for &t in banned {
        if let Some(s) = usize::try_from(t).ok().and_then(|t| scores.get_mut(t)) {
            *s = f32::NEG_INFINITY;
        }
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.f_contiguous()?.f_view([-1])?)?)
}

fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let lp = logits.f_log_softmax(-1, Kind::Float)?;
    (0..lp.size()[0]).map(|r| to_vec(&lp.f_get(r)?)).collect()
}

fn greedy(model: &dyn CausalLm, prompt: &[i64], config: &GenerationConfig) -> Result<Generation> {
    let device = model.device();
    let mut cache = model.new_cache();
    let mut seq = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut score = 0.0f64;
    let mut next = Tensor::from_slice(prompt).f_view([1, -1])?.f_to(device)?;
    for _ in 0..config.max_new_tokens {
        let logits = step(model, &next, &mut cache)?;
        let mut lp = log_softmax_rows(&logits)?.remove(0);
        ban(&mut lp, &banned_tokens(&seq, config.no_repeat_ngram_size));
        // First maximum, as torch.argmax.
        let (best, &best_lp) =
            lp.iter()
                .enumerate()
                .fold((0, &f32::NEG_INFINITY), |acc, (i, v)| {
                    if *v > *acc.1 { (i, v) } else { acc }
                });
        let token = best as i64;
        score += f64::from(best_lp);
        tokens.push(token);
        seq.push(token);
        if config.eos_token_ids.contains(&token) {
            return Ok(Generation {
                tokens,
                score,
                ended_with_eos: true,
            });
        }
        next = Tensor::from_slice(&[token]).f_view([1, 1])?.f_to(device)?;
    }
    Ok(Generation {
        tokens,
        score,
        ended_with_eos: false,
    })
}

/// A finished hypothesis.
#[derive(Debug, Clone)]
struct Finished {
    tokens: Vec<i64>,
    score: f32,
    eos: bool,
}

fn beam_search(
    model: &dyn CausalLm,
    prompt: &[i64],
    config: &GenerationConfig,
) -> Result<Generation> {
    let device = model.device();
    let beams = config.num_beams;
    let vocab = model.vocab_size();
    let keep = 2.max(1 + config.eos_token_ids.len()) * beams;
    let mut cache = model.new_cache();
    // The prompt is run once and its cache copied to every beam.
    let prompt_ids = Tensor::from_slice(prompt).f_view([1, -1])?.f_to(device)?;
    let first = step(model, &prompt_ids, &mut cache)?;
    cache.select(&Tensor::f_zeros([beams as i64], (Kind::Int64, device))?)?;
    let mut logits = first.f_expand([beams as i64, vocab], false)?;
    let mut running: Vec<Vec<i64>> = vec![Vec::new(); beams];
    // Only the first beam is live at the start, so the beams do not all pick the same tokens.
    let mut running_scores: Vec<f32> = (0..beams)
        .map(|b| if b == 0 { 0.0 } else { -1e9 })
        .collect();
    let mut finished: Vec<Finished> = Vec::new();
    let mut improvable = true;
    for t in 0..config.max_new_tokens {
        let mut flat = Vec::with_capacity(beams * vocab as usize);
        for (b, mut lp) in log_softmax_rows(&logits)?.into_iter().enumerate() {
            let seq: Vec<i64> = prompt.iter().chain(&running[b]).copied().collect();
            ban(&mut lp, &banned_tokens(&seq, config.no_repeat_ngram_size));
            flat.extend(lp.into_iter().map(|v| v + running_scores[b]));
        }
        let (top_scores, top_index) =
            Tensor::from_slice(&flat).f_topk(keep as i64, -1, true, true)?;
        let top_scores = to_vec(&top_scores)?;
        let top_index = Vec::<i64>::try_from(&top_index)?;
        let last_step = t + 1 == config.max_new_tokens;
        let generated_len = (t + 1) as f64;
        let mut next_running = Vec::with_capacity(beams);
        let mut sources = Vec::with_capacity(beams);
        let mut stops = 0;
        for (rank, (&score, &index)) in top_scores.iter().zip(&top_index).enumerate() {
            let (beam, token) = ((index / vocab) as usize, index % vocab);
            let eos = config.eos_token_ids.contains(&token);
            let stop = eos || last_step;
            if stop {
                stops += 1;
                // Only the best `beams` candidates may finish; none once no improvement is
                // possible.
                if rank < beams && improvable {
                    let mut tokens = running[beam].clone();
                    tokens.push(token);
                    let penalised = score / generated_len.powf(config.length_penalty) as f32;
                    finished.push(Finished {
                        tokens,
                        score: penalised,
                        eos,
                    });
                }
            } else if next_running.len() < beams {
                let mut tokens = running[beam].clone();
                tokens.push(token);
                next_running.push((tokens, score));
                sources.push(beam as i64);
            }
        }
        // Stable: earlier (better or older) hypotheses win ties.
        finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        finished.truncate(beams);
        if stops == keep || next_running.is_empty() {
            break;
        }
        // Fewer live continuations than beams (only when most candidates stop): pad with
        // dead copies so the batch keeps its shape; their -1e9 scores never win.
        while next_running.len() < beams {
            let (tokens, _) = next_running[0].clone();
            next_running.push((tokens, -1e9 + f32::MIN_POSITIVE));
            sources.push(sources[0]);
        }
        running_scores = next_running.iter().map(|(_, s)| *s).collect();
        running = next_running.into_iter().map(|(t, _)| t).collect();
        if finished.len() == beams {
            let best_possible =
                running_scores[0] / generated_len.powf(config.length_penalty) as f32;
            let worst = finished.last().map_or(f32::NEG_INFINITY, |f| f.score);
            improvable = improvable && best_possible > worst;
        }
        if !improvable {
            break;
        }
        cache.select(&Tensor::from_slice(&sources).f_to(device)?)?;
        let last: Vec<i64> = running.iter().map(|r| *r.last().unwrap_or(&0)).collect();
        let next = Tensor::from_slice(&last)
            .f_view([beams as i64, 1])?
            .f_to(device)?;
        logits = step(model, &next, &mut cache)?;
    }
    let best = finished
        .into_iter()
        .next()
        .ok_or_else(|| Error::InvalidArgument {
            what: "generation",
            why: "beam search finished no hypothesis (all continuations were banned)".into(),
        })?;
    Ok(Generation {
        tokens: best.tokens,
        score: f64::from(best.score),
        ended_with_eos: best.eos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_blocking_matches_hugging_face_rules() {
        // The last token is 3; "3 4" occurred, so 4 is banned for bigrams.
        assert_eq!(banned_tokens(&[1, 3, 4, 2, 3], 2), vec![4]);
        // Trigram "2 3 x": the prefix (2, 3) never occurred before.
        assert!(banned_tokens(&[1, 3, 4, 2, 3], 3).is_empty());
        assert_eq!(banned_tokens(&[7, 8, 9, 7, 8], 3), vec![9]);
        // Unigrams ban everything seen; too short a sequence bans nothing.
        assert_eq!(banned_tokens(&[5, 6], 1), vec![5, 6]);
        assert!(banned_tokens(&[5], 3).is_empty());
    }
}
