//! Entity-level precision, recall and F1 as conlleval and seqeval compute them: seqeval's
//! default mode ([`entity_scores`]) or its strict mode on IOB2 ([`Mode::StrictIob2`]).
//!
//! Chunks are read with conlleval's rules (seqeval's default mode copies them): a chunk starts
//! at `B-`, at an `I-` after `O`, or wherever the type changes; it ends before `B-`, `O`, or a
//! type change. So IOB1 and IOB2 inputs, and ill-formed sequences such as `O I-PER`, are scored
//! the same way the reference scripts score them. Sentences are joined with an `O` between
//! them, so no chunk crosses a sentence boundary. Scores are micro-averaged over all entities;
//! a ratio with a zero denominator is 0 (seqeval's `zero_division` default).
//!
//! Strict IOB2 (seqeval's `mode="strict", scheme=IOB2`): an entity is a `B-X` and the `I-X`
//! that follow it; an `I-` that continues nothing (after `O`, or after another type) is no
//! entity and ends the one before it.

use std::collections::{BTreeMap, HashSet};

use super::classification::same_len;
use crate::error::{Error, Result};

/// Precision, recall and F1 with their counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prf {
    /// Correct predicted entities / predicted entities.
    pub precision: f64,
    /// Correct predicted entities / gold entities.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Gold entities.
    pub gold: usize,
    /// Predicted entities.
    pub predicted: usize,
    /// Predicted entities that match a gold entity exactly (type, start, end).
    pub correct: usize,
}

impl Prf {
    fn from_counts(correct: usize, predicted: usize, gold: usize) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(correct, predicted);
        let recall = ratio(correct, gold);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Prf {
            precision,
            recall,
            f1,
            gold,
            predicted,
            correct,
        }
    }
}

fn borrow<S: AsRef<str>>(sentences: &[Vec<S>]) -> Vec<Vec<&str>> {
    sentences
        .iter()
        .map(|s| s.iter().map(AsRef::as_ref).collect())
        .collect()
}

/// Overall (micro) and per-type entity scores.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityScores {
    /// Micro-averaged over all entity types.
    pub overall: Prf,
    /// Per entity type, sorted by type name.
    pub per_type: BTreeMap<String, Prf>,
}

/// An entity: (type, first token, last token) in the joined sequence.
type Chunk = (String, usize, usize);

fn split_tag(tag: &str) -> (char, &str) {
    // seqeval: prefix is the first character, type is what follows the first '-' after it.
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let ty = rest.split_once('-').map_or(rest, |(_, t)| t);
    (prefix, if ty.is_empty() { "_" } else { ty })
}

fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != ty)
}

fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != ty)
}

/// The chunks of a sequence of sentences, seqeval's `get_entities`.
pub fn chunks<S: AsRef<str>>(sentences: &[Vec<S>]) -> Vec<(String, usize, usize)> {
    let mut joined: Vec<&str> = Vec::new();
    for sentence in sentences {
        joined.extend(sentence.iter().map(AsRef::as_ref));
        joined.push("O");
    }
    joined.push("O");
    let mut out: Vec<Chunk> = Vec::new();
    let (mut prev_tag, mut prev_type) = ('O', "_");
    let mut begin = 0;
    for (i, tag) in joined.iter().enumerate() {
        let (tag, ty) = split_tag(tag);
        if end_of_chunk(prev_tag, tag, prev_type, ty) {
            out.push((prev_type.to_string(), begin, i - 1));
        }
        if start_of_chunk(prev_tag, tag, prev_type, ty) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = ty;
    }
    out
}

/// How entities are read off the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// conlleval's rules, seqeval's default mode (see the module docs).
    #[default]
    Conlleval,
    /// seqeval's strict mode on IOB2 tags.
    StrictIob2,
}

/// The entities of a sequence of sentences in seqeval's strict IOB2 mode.
fn strict_iob2_chunks<S: AsRef<str>>(sentences: &[Vec<S>]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut offset = 0;
    for sentence in sentences {
        let mut open: Option<(&str, usize)> = None;
        for (i, tag) in sentence.iter().enumerate() {
            let tag = tag.as_ref();
            let (prefix, ty) = split_tag(tag);
            if prefix == 'I' && open.is_some_and(|(t, _)| t == ty) {
                continue;
            }
            if let Some((t, start)) = open.take() {
                out.push((t.to_string(), offset + start, offset + i - 1));
            }
            if prefix == 'B' {
                open = Some((ty, i));
            }
        }
        if let Some((t, start)) = open {
            out.push((t.to_string(), offset + start, offset + sentence.len() - 1));
        }
        // As `chunks` joins sentences: one position between them.
        offset += sentence.len() + 1;
    }
    out
}

/// Entity-level scores of predicted tag sequences against gold ones (one `Vec` per sentence),
/// in seqeval's default mode.
pub fn entity_scores<S: AsRef<str>, T: AsRef<str>>(
    predictions: &[Vec<S>],
    gold: &[Vec<T>],
) -> Result<EntityScores> {
    entity_scores_in(Mode::Conlleval, predictions, gold)
}

/// Entity-level scores as [`entity_scores`], with entities read in `mode`.
pub fn entity_scores_in<S: AsRef<str>, T: AsRef<str>>(
    mode: Mode,
    predictions: &[Vec<S>],
    gold: &[Vec<T>],
) -> Result<EntityScores> {
    same_len("entity F1 (sentences)", predictions.len(), gold.len())?;
    for (i, (p, g)) in predictions.iter().zip(gold).enumerate() {
        if p.len() != g.len() {
            return Err(Error::invalid(
                format!("entity F1, sentence {i}"),
                format!("{} predicted tags (one per gold tag)", g.len()),
                format!("{} tags", p.len()),
            ));
        }
    }
    let read = |sentences: &[Vec<&str>]| -> HashSet<Chunk> {
        match mode {
            Mode::Conlleval => chunks(sentences).into_iter().collect(),
            Mode::StrictIob2 => strict_iob2_chunks(sentences).into_iter().collect(),
        }
    };
    let gold_chunks = read(&borrow(gold));
    let pred_chunks = read(&borrow(predictions));
    let correct = gold_chunks.intersection(&pred_chunks).count();
    let overall = Prf::from_counts(correct, pred_chunks.len(), gold_chunks.len());

    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for chunk in &gold_chunks {
        counts.entry(chunk.0.clone()).or_default().2 += 1;
    }
    for chunk in &pred_chunks {
        let entry = counts.entry(chunk.0.clone()).or_default();
        entry.1 += 1;
        if gold_chunks.contains(chunk) {
            entry.0 += 1;
        }
    }
    let per_type = counts
        .into_iter()
        .map(|(ty, (c, p, g))| (ty, Prf::from_counts(c, p, g)))
        .collect();
    Ok(EntityScores { overall, per_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(tags: &str) -> Vec<String> {
        tags.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn strict_iob2_entities_start_at_b() {
        // As seqeval's Entities(..., IOB2) reads them (end inclusive here).
        let c = strict_iob2_chunks(&[s("O I-PER B-PER I-PER I-PER B-PER I-LOC I-LOC")]);
        assert_eq!(c, vec![("PER".into(), 2, 4), ("PER".into(), 5, 5)]);
        let c = strict_iob2_chunks(&[s("I-PER I-PER"), s("B-LOC")]);
        assert_eq!(c, vec![("LOC".into(), 3, 3)]);
    }

    #[test]
    fn conlleval_chunk_rules() {
        // I- after O starts a chunk; a type change splits; B- splits adjacent same-type chunks.
        let c = chunks(&[s("O I-PER I-PER B-PER I-LOC O B-ORG")]);
        assert_eq!(
            c,
            vec![
                ("PER".into(), 1, 2),
                ("PER".into(), 3, 3),
                ("LOC".into(), 4, 4),
                ("ORG".into(), 6, 6)
            ]
        );
        // No chunk crosses a sentence boundary.
        let c = chunks(&[s("B-PER"), s("I-PER")]);
        assert_eq!(c, vec![("PER".into(), 0, 0), ("PER".into(), 2, 2)]);
    }

    #[test]
    fn exact_match_is_required() {
        let gold = [s("B-PER I-PER O B-LOC")];
        let pred = [s("B-PER O O B-LOC")];
        let scores = entity_scores(&pred, &gold).unwrap();
        assert_eq!(scores.overall.correct, 1);
        assert_eq!(scores.overall.precision, 0.5);
        assert_eq!(scores.overall.recall, 0.5);
        assert_eq!(scores.per_type["LOC"].f1, 1.0);
        assert_eq!(scores.per_type["PER"].f1, 0.0);
        assert!(entity_scores(&[s("O")], &gold).is_err());
    }
}
