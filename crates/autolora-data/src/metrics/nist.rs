//! Corpus NIST as NLTK's `corpus_nist` computes it, on `13a` tokens.
//!
//! NLTK's NIST is not `mteval-v13a.pl`'s (which the E2E challenge's script runs), and the two
//! give different numbers on multi-reference data: NLTK scores each segment against its single
//! best reference per n-gram order and takes that reference's length for the length penalty,
//! while mteval clips n-gram counts against all references together and uses the average
//! reference length. Information weights agree (both from n-gram counts over all references).
//! This function follows NLTK, the reference available on PyPI, so that it can be tested to
//! 1e-6; results are therefore comparable with NLTK's, not with published mteval NIST numbers.

use std::collections::HashMap;

use super::bleu::{check_references, preprocess};
use super::classification::same_len;
use crate::error::Result;

fn counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut c = HashMap::new();
    for gram in tokens.windows(n) {
        *c.entry(gram).or_insert(0) += 1;
    }
    c
}

/// NIST length penalty (Doddington 2002, eq. 3): 0.5 when the system is 2/3 of the reference
/// length, 1 from equal length on.
fn length_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    let ratio = hyp_len as f64 / ref_len as f64;
    if ratio > 0.0 && ratio < 1.0 {
        let beta = 0.5f64.ln() / 1.5f64.ln().powi(2);
        (beta * ratio.ln().powi(2)).exp()
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

/// Corpus NIST with n-grams up to `max_n` (NLTK's default and mteval's: 5). An n-gram order
/// for which no hypothesis is long enough contributes 0 (NLTK divides by zero there).
pub fn corpus_nist<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
    max_n: usize,
    lowercase: bool,
) -> Result<f64> {
    same_len("NIST", hypotheses.len(), references.len())?;
    check_references("NIST", references)?;
    let hyps: Vec<Vec<String>> = hypotheses
        .iter()
        .map(|h| preprocess(h.as_ref(), lowercase))
        .collect();
    let refs: Vec<Vec<Vec<String>>> = references
        .iter()
        .map(|rs| {
            rs.iter()
                .map(|r| preprocess(r.as_ref(), lowercase))
                .collect()
        })
        .collect();

    let mut freq: HashMap<&[String], usize> = HashMap::new();
    let mut total_ref_words = 0usize;
    for r in refs.iter().flatten() {
        for n in 1..=max_n {
            for (gram, c) in counts(r, n) {
                *freq.entry(gram).or_insert(0) += c;
            }
        }
        total_ref_words += r.len();
    }
    let info = |gram: &[String]| -> f64 {
        let prefix = &gram[..gram.len() - 1];
        let numerator = match freq.get(prefix) {
            Some(&c) if !prefix.is_empty() => c,
            _ => total_ref_words,
        };
        (numerator as f64 / freq[gram] as f64).log2()
    };

    let mut precision_sum = 0.0;
    let (mut l_ref, mut l_sys) = (0usize, 0usize);
    for n in 1..=max_n {
        let (mut numerator_sum, mut denominator_sum) = (0.0, 0usize);
        for (hyp, rs) in hyps.iter().zip(&refs) {
            let hyp_counts = counts(hyp, n);
            let denominator: usize = hyp_counts.values().sum();
            // NLTK keeps the max of (precision, numerator, denominator, ref_len) tuples.
            let mut best: Option<(f64, f64, usize, usize)> = None;
            for r in rs {
                let ref_counts = counts(r, n);
                let numerator: f64 = hyp_counts
                    .iter()
                    .filter_map(|(g, &c)| ref_counts.get(g).map(|&rc| info(g) * c.min(rc) as f64))
                    .sum();
                let precision = if denominator == 0 {
                    0.0
                } else {
                    numerator / denominator as f64
                };
                let candidate = (precision, numerator, denominator, r.len());
                let better = match best {
                    None => true,
                    Some(b) => candidate.partial_cmp(&b) == Some(std::cmp::Ordering::Greater),
                };
                if better {
                    best = Some(candidate);
                }
            }
            if let Some((_, numerator, denominator, ref_len)) = best {
                numerator_sum += numerator;
                denominator_sum += denominator;
                l_ref += ref_len;
                l_sys += hyp.len();
            }
        }
        if denominator_sum > 0 {
            precision_sum += numerator_sum / denominator_sum as f64;
        }
    }
    Ok(precision_sum * length_penalty(l_ref, l_sys))
}
