//! Corpus BLEU with several references per segment, as sacreBLEU computes it with its `13a`
//! tokenizer (the tokenization of `mteval-v13a.pl`, which the E2E challenge's script runs).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::classification::same_len;
use crate::error::{Error, Result};

/// sacreBLEU's `TokenizerRegexp` rules, in order.
static RULES_13A: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("fixed pattern");
    [
        // Symbols: { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /
        (
            re(r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40/])"),
            " $1 ",
        ),
        // Period and comma unless preceded by a digit.
        (re(r"([^0-9])([.,])"), "${1} ${2} "),
        // Period and comma unless followed by a digit.
        (re(r"([.,])([^0-9])"), " ${1} ${2}"),
        // Dash after a digit.
        (re(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

/// sacreBLEU's `13a` tokenization of one segment (after its `rstrip`), as a token list.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line
        .trim_end()
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, replacement) in RULES_13A.iter() {
        line = re.replace_all(&line, *replacement).into_owned();
    }
    line.split_whitespace().map(str::to_string).collect()
}

/// Tokenizes for BLEU/NIST: optional lowercasing, then `13a`.
pub(crate) fn preprocess(line: &str, lowercase: bool) -> Vec<String> {
    if lowercase {
        tokenize_13a(&line.to_lowercase())
    } else {
        tokenize_13a(line)
    }
}

/// A corpus BLEU score with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU on sacreBLEU's 0-100 scale.
    pub score: f64,
    /// Modified n-gram precisions (0-100), n = 1..4, with sacreBLEU's `exp` smoothing.
    pub precisions: [f64; 4],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Total hypothesis length in tokens.
    pub sys_len: usize,
    /// Total closest-reference length in tokens.
    pub ref_len: usize,
}

type Counts<'a> = HashMap<&'a [String], usize>;

fn ngram_counts(tokens: &[String], max_n: usize) -> Counts<'_> {
    let mut counts = HashMap::new();
    for n in 1..=max_n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) fn check_references<S: AsRef<str>>(what: &str, references: &[Vec<S>]) -> Result<()> {
    if let Some(i) = references.iter().position(Vec::is_empty) {
        return Err(Error::invalid(
            format!("{what} references of segment {i}"),
            "at least one reference",
            "none",
        ));
    }
    Ok(())
}

/// Closest reference length, ties going to the shorter one (sacreBLEU).
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            None => Some((diff, len)),
            Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
            keep => keep,
        };
    }
    best.map_or(0, |(_, len)| len)
}

/// Corpus BLEU of `hypotheses` against `references[i]` (one or more per segment), as
/// `sacrebleu.corpus_bleu(hyps, ref_streams, tokenize="13a", lowercase=lowercase)` computes it
/// (exponential smoothing, no effective order).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
    lowercase: bool,
) -> Result<Bleu> {
    same_len("BLEU", hypotheses.len(), references.len())?;
    check_references("BLEU", references)?;
    let mut correct = [0usize; 4];
    let mut total = [0usize; 4];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (hyp, refs) in hypotheses.iter().zip(references) {
        let hyp = preprocess(hyp.as_ref(), lowercase);
        let refs: Vec<Vec<String>> = refs
            .iter()
            .map(|r| preprocess(r.as_ref(), lowercase))
            .collect();
        let mut max_ref: Counts = HashMap::new();
        for r in &refs {
            for (gram, count) in ngram_counts(r, 4) {
                let slot = max_ref.entry(gram).or_insert(0);
                *slot = (*slot).max(count);
            }
        }
        let lens: Vec<usize> = refs.iter().map(Vec::len).collect();
        ref_len += closest_ref_len(hyp.len(), &lens);
        sys_len += hyp.len();
        for (gram, count) in ngram_counts(&hyp, 4) {
            let n = gram.len() - 1;
            total[n] += count;
            correct[n] += count.min(max_ref.get(gram).copied().unwrap_or(0));
        }
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len))
}

/// sacreBLEU's `BLEU.compute_bleu` with `smooth_method="exp"`.
fn compute_bleu(correct: [usize; 4], total: [usize; 4], sys_len: usize, ref_len: usize) -> Bleu {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; 4];
    let done = |score| Bleu {
        score,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    };
    if correct.iter().all(|&c| c == 0) {
        return done(0.0);
    }
    let mut smooth = 1.0;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // sacreBLEU floors log(0) at -9999999999 rather than failing.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let score = brevity_penalty * (precisions.iter().map(|&p| log(p)).sum::<f64>() / 4.0).exp();
    Bleu {
        score,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_rules() {
        assert_eq!(
            tokenize_13a("It costs £20-25, (cheap) and 3.5 out of 5."),
            [
                "It", "costs", "£20", "-", "25", ",", "(", "cheap", ")", "and", "3.5", "out", "of",
                "5", "."
            ]
        );
        assert_eq!(tokenize_13a("a &amp; b&quot;"), ["a", "&", "b", "\""]);
    }

    #[test]
    fn identical_corpus_scores_100() {
        let hyp = ["the cat sat on the mat"];
        let refs = [vec!["the cat sat on the mat"]];
        let b = corpus_bleu(&hyp, &refs, false).unwrap();
        assert!((b.score - 100.0).abs() < 1e-9);
        assert!(corpus_bleu(&hyp, &[Vec::<&str>::new()], false).is_err());
    }
}
