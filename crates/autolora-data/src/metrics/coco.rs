//! ROUGE-L and CIDEr(-D) as the MS-COCO caption evaluation code (`pycocoevalcap`) computes
//! them; the E2E challenge's script scores with that code.
//!
//! `pycocoevalcap` first runs Stanford's PTB tokenizer (Java, lowercasing) and drops
//! punctuation tokens. [`coco_tokenize`] reimplements the part of that tokenizer that matters
//! for ordinary English text (lowercasing; splitting off punctuation, brackets, quotes,
//! currency signs and the clitics `n't 's 're 've 'll 'd 'm`; dropping the punctuation tokens
//! `pycocoevalcap` drops). The golden test checks it token for token against the Java tokenizer
//! on the test sentences; exotic input (URLs, emoticons, abbreviations with inner periods)
//! may still split differently.

use std::collections::HashMap;

use super::bleu::check_references;
use super::classification::same_len;
use crate::error::Result;

/// Tokens `pycocoevalcap` removes after PTB tokenization (brackets and quotes become these).
const DROPPED: &[&str] = &[
    "''", "'", "``", "`", "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

const CLITICS: &[&str] = &["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"];

fn is_split_punct(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | '!'
            | '?'
            | ';'
            | ':'
            | '"'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '`'
            | '$'
            | '£'
            | '€'
            | '#'
            | '%'
            | '&'
    )
}

/// Splits one whitespace-free chunk PTB-style.
fn split_chunk(chunk: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = chunk.chars().collect();
    let (mut start, mut end) = (0, chars.len());
    let mut leading = Vec::new();
    // Leading punctuation and opening quotes.
    while start < end && (is_split_punct(chars[start]) || chars[start] == '\'') {
        let c = chars[start];
        // A digit after '.' or ',' keeps it (".5" stays one token).
        if (c == '.' || c == ',') && chars.get(start + 1).is_some_and(char::is_ascii_digit) {
            break;
        }
        leading.push(c.to_string());
        start += 1;
    }
    let mut trailing = Vec::new();
    while end > start {
        let c = chars[end - 1];
        let is_ellipsis = end - start >= 3 && chars[end - 3..end].iter().all(|&d| d == '.');
        if is_ellipsis {
            trailing.push("...".to_string());
            end -= 3;
        } else if is_split_punct(c) || (c == '\'' && end - start != 1) {
            trailing.push(c.to_string());
            end -= 1;
        } else {
            break;
        }
    }
    trailing.reverse();
    let word: String = chars[start..end].iter().collect();
    out.extend(leading);
    if !word.is_empty() {
        let lower = word.to_lowercase();
        match CLITICS
            .iter()
            .find(|c| lower.ends_with(*c) && lower.len() > c.len())
        {
            Some(clitic) => {
                let cut = word.len() - clitic.len();
                out.push(word[..cut].to_string());
                out.push(word[cut..].to_string());
            }
            None => out.push(word),
        }
    }
    out.extend(trailing);
}

/// PTB-style tokens of `text`, lowercased, with `pycocoevalcap`'s punctuation removed, joined
/// by single spaces.
pub fn coco_tokenize(text: &str) -> String {
    let mut tokens = Vec::new();
    for chunk in text.to_lowercase().split_whitespace() {
        split_chunk(chunk, &mut tokens);
    }
    tokens
        .into_iter()
        .map(|t| match t.as_str() {
            "(" | "[" => "-lrb-".to_string(),
            ")" | "]" => "-rrb-".to_string(),
            "{" => "-lcb-".to_string(),
            "}" => "-rcb-".to_string(),
            "\"" => "''".to_string(),
            // Stanford's PTB tokenizer normalises the pound sign to '#'.
            "£" => "#".to_string(),
            _ => t,
        })
        .filter(|t| !DROPPED.contains(&t.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Longest common subsequence length of two token lists.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ROUGE-L (F-measure with beta 1.2 of the best precision and best recall over references),
/// averaged over segments, on already tokenized strings (split on single spaces), as
/// `pycocoevalcap.rouge.Rouge` computes it.
pub fn rouge_l<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
) -> Result<f64> {
    same_len("ROUGE-L", hypotheses.len(), references.len())?;
    check_references("ROUGE-L", references)?;
    const BETA: f64 = 1.2;
    let mut total = 0.0;
    for (hyp, refs) in hypotheses.iter().zip(references) {
        // Python's str.split(" "): an empty string is one empty token.
        let candidate: Vec<&str> = hyp.as_ref().split(' ').collect();
        let (mut precision, mut recall) = (0.0f64, 0.0f64);
        for r in refs {
            let reference: Vec<&str> = r.as_ref().split(' ').collect();
            let common = lcs(&reference, &candidate) as f64;
            precision = precision.max(common / candidate.len() as f64);
            recall = recall.max(common / reference.len() as f64);
        }
        if precision != 0.0 && recall != 0.0 {
            total += (1.0 + BETA * BETA) * precision * recall / (recall + BETA * BETA * precision);
        }
    }
    Ok(total / hypotheses.len() as f64)
}

type Grams<'a> = HashMap<Vec<&'a str>, f64>;

/// A segment's tf-idf n-gram vectors, norms and (bigram) length.
struct Vector<'a> {
    weights: [HashMap<&'a Vec<&'a str>, f64>; 4],
    norm: [f64; 4],
    length: f64,
}

fn vectorise<'a>(counts: &'a Grams<'a>, df: &HashMap<&Vec<&str>, f64>, ref_len: f64) -> Vector<'a> {
    let mut v = Vector {
        weights: Default::default(),
        norm: [0.0; 4],
        length: 0.0,
    };
    for (gram, &tf) in counts {
        let n = gram.len() - 1;
        let d = df.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
        let w = tf * (ref_len - d);
        v.weights[n].insert(gram, w);
        v.norm[n] += w * w;
        // pycocoevalcap counts bigrams here (`if n == 1`), not words; kept for equal scores.
        if n == 1 {
            v.length += tf;
        }
    }
    for x in &mut v.norm {
        *x = x.sqrt();
    }
    v
}

fn cook(text: &str) -> Grams<'_> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut counts = HashMap::new();
    for n in 1..=4 {
        for gram in words.windows(n) {
            *counts.entry(gram.to_vec()).or_insert(0.0) += 1.0;
        }
    }
    counts
}

/// CIDEr-D (n = 1..4, sigma 6, clipped, scaled by 10) averaged over segments, on already
/// tokenized strings, as `pycocoevalcap.cider.Cider` computes it. Document frequencies come
/// from the references of the scored corpus itself, so the score depends on the whole corpus.
/// The length used by the Gaussian penalty is, as in `pycocoevalcap`, the number of bigrams.
pub fn cider<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> Result<f64> {
    same_len("CIDEr", hypotheses.len(), references.len())?;
    check_references("CIDEr", references)?;
    const SIGMA: f64 = 6.0;
    let tests: Vec<Grams> = hypotheses.iter().map(|h| cook(h.as_ref())).collect();
    let refs: Vec<Vec<Grams>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| cook(r.as_ref())).collect())
        .collect();
    let mut df: HashMap<&Vec<&str>, f64> = HashMap::new();
    for rs in &refs {
        let mut seen: Vec<&Vec<&str>> = rs.iter().flat_map(|r| r.keys()).collect();
        seen.sort_unstable();
        seen.dedup();
        for gram in seen {
            *df.entry(gram).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (refs.len() as f64).ln();
    let mut total = 0.0;
    for (test, rs) in tests.iter().zip(&refs) {
        let hyp = vectorise(test, &df, ref_len);
        let mut score = [0.0f64; 4];
        for r in rs {
            let reference = vectorise(r, &df, ref_len);
            let delta = hyp.length - reference.length;
            for (n, slot) in score.iter_mut().enumerate() {
                let mut value: f64 = hyp.weights[n]
                    .iter()
                    .map(|(gram, &w)| {
                        let rw = reference.weights[n].get(gram).copied().unwrap_or(0.0);
                        w.min(rw) * rw
                    })
                    .sum();
                if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
                    value /= hyp.norm[n] * reference.norm[n];
                }
                *slot += value * (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
            }
        }
        total += score.iter().sum::<f64>() / 4.0 / rs.len() as f64 * 10.0;
    }
    Ok(total / hypotheses.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptb_like_tokens() {
        assert_eq!(
            coco_tokenize("The Eagle doesn't serve French food, it's \"cheap\" (£20-25)."),
            "the eagle does n't serve french food it 's cheap # 20-25"
        );
        assert_eq!(coco_tokenize("Wait... what?"), "wait what");
    }

    #[test]
    fn rouge_l_of_identical_text_is_one() {
        let r = rouge_l(&["a b c"], &[vec!["a b c", "x"]]).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
    }
}
