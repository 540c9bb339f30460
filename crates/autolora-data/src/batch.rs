//! Dynamic padding and length-bucketed batches.
//!
//! A [`Batch`] is plain row-major data: `input_ids`, `attention_mask` and `token_type_ids` are
//! `batch_size * seq_len` values laid out as `[batch, seq_len]`, where `seq_len` is the length
//! of the batch's longest example (dynamic padding). A caller builds a tensor with one copy:
//!
//! ```ignore
//! let ids = Tensor::from_slice(&batch.input_ids).view([batch.batch_size as i64, batch.seq_len as i64]);
//! ```
//!
//! Labels follow the task: per token (`[batch, seq_len]`, padding and ignored sub-tokens are
//! [`IGNORE_INDEX`]), per example class ids (`[batch]`), or per example scores (`[batch]`).
//!
//! Training order is "bucketed shuffling": the examples are shuffled with a seed derived from
//! the run's seed and the epoch, cut into pools of `pool_batches` batches, each pool is sorted
//! by length and cut into batches, and the batches are shuffled again. Batches then hold
//! examples of similar length (little padding) while the order stays random and reproducible.

use crate::error::{Error, Result};
use crate::rng::{derive_seed, permutation, shuffle};
use crate::tokenize::{Encoded, EncodedSet, IGNORE_INDEX, Target};

/// The labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// One label per token, `[batch, seq_len]` row-major; [`IGNORE_INDEX`] where the loss must
    /// not look (padding, special tokens, non-first sub-tokens).
    Tokens(Vec<i64>),
    /// One class id per example, `[batch]`.
    Classes(Vec<i64>),
    /// One score per example, `[batch]`.
    Scores(Vec<f32>),
}

/// A padded batch, row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids, padded with the tokenizer's pad id.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 on padding).
    pub token_type_ids: Vec<i64>,
    /// Gold labels.
    pub labels: Labels,
    /// Number of examples.
    pub batch_size: usize,
    /// Padded length (the longest example's length).
    pub seq_len: usize,
    /// Position of each row's example in the encoded set (to map predictions back).
    pub indices: Vec<usize>,
}

impl Batch {
    /// The `[batch_size, seq_len]` shape as `i64`s, ready for a tensor `view`.
    pub fn shape(&self) -> [i64; 2] {
        [self.batch_size as i64, self.seq_len as i64]
    }
}

/// Pads the examples at `indices` into one batch.
pub fn collate(examples: &[Encoded], indices: &[usize], pad_id: u32) -> Result<Batch> {
    if indices.is_empty() {
        return Err(Error::invalid("batch", "at least one example", "none"));
    }
    let rows: Vec<&Encoded> = indices
        .iter()
        .map(|&i| {
            examples.get(i).ok_or_else(|| {
                Error::invalid(
                    "batch index",
                    format!("below {}", examples.len()),
                    i.to_string(),
                )
            })
        })
        .collect::<Result<_>>()?;
    let batch_size = rows.len();
    let seq_len = rows.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut input_ids = vec![i64::from(pad_id); batch_size * seq_len];
    let mut attention_mask = vec![0i64; batch_size * seq_len];
    let mut token_type_ids = vec![0i64; batch_size * seq_len];
    for (r, row) in rows.iter().enumerate() {
        let base = r * seq_len;
        for (t, (&id, &ty)) in row.input_ids.iter().zip(&row.token_type_ids).enumerate() {
            input_ids[base + t] = i64::from(id);
            token_type_ids[base + t] = i64::from(ty);
            attention_mask[base + t] = 1;
        }
    }
    // A batch feeds a loss or a metric: a missing label must never become class 0.
    if let Some(r) = rows.iter().position(|row| row.target == Target::None) {
        return Err(unlabelled(indices[r]));
    }
    let labels = match &rows[0].target {
        Target::Tokens(_) => {
            let mut labels = vec![IGNORE_INDEX; batch_size * seq_len];
            for (r, row) in rows.iter().enumerate() {
                let Target::Tokens(tags) = &row.target else {
                    return Err(mixed());
                };
                labels[r * seq_len..r * seq_len + tags.len()].copy_from_slice(tags);
            }
            Labels::Tokens(labels)
        }
        Target::Class(_) => Labels::Classes(
            rows.iter()
                .map(|row| match row.target {
                    Target::Class(c) => Ok(c),
                    _ => Err(mixed()),
                })
                .collect::<Result<_>>()?,
        ),
        Target::Score(_) => Labels::Scores(
            rows.iter()
                .map(|row| match row.target {
                    Target::Score(s) => Ok(s),
                    _ => Err(mixed()),
                })
                .collect::<Result<_>>()?,
        ),
        Target::None => return Err(unlabelled(indices[0])),
    };
    Ok(Batch {
        input_ids,
        attention_mask,
        token_type_ids,
        labels,
        batch_size,
        seq_len,
        indices: indices.to_vec(),
    })
}

fn unlabelled(index: usize) -> Error {
    Error::invalid(
        "batch",
        "labelled examples (a batch feeds a loss or a metric)",
        format!("example {index} without a label"),
    )
}

fn mixed() -> Error {
    Error::invalid(
        "batch",
        "examples with one kind of target",
        "a mix of kinds",
    )
}

/// How to cut an encoded set into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Examples per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Batches per length-sorting pool in training order; 1 turns bucketing off.
    pub pool_batches: usize,
    /// Seed of the training order.
    pub seed: u64,
}

impl BatchConfig {
    /// A config with the default pool of 50 batches.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        BatchConfig {
            batch_size,
            pool_batches: 50,
            seed,
        }
    }

    fn check(&self) -> Result<()> {
        if self.batch_size == 0 || self.pool_batches == 0 {
            return Err(Error::invalid(
                "batch config",
                "batch_size and pool_batches of at least 1",
                format!("{self:?}"),
            ));
        }
        Ok(())
    }
}

/// The example indices of each batch of one training epoch (bucketed shuffling, see the module
/// docs). Same config and epoch, same plan.
pub fn training_plan(
    set: &EncodedSet,
    config: &BatchConfig,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    config.check()?;
    // Two sub-streams of the caller's seed: 0 orders the examples, 1 the batches.
    let order = permutation(set.examples.len(), derive_seed(config.seed, epoch, 0));
    let pool = config.batch_size * config.pool_batches;
    let mut plan = Vec::new();
    for chunk in order.chunks(pool) {
        let mut chunk = chunk.to_vec();
        // Stable sort: equal lengths keep their shuffled order.
        chunk.sort_by_key(|&i| set.examples[i].len());
        plan.extend(chunk.chunks(config.batch_size).map(<[usize]>::to_vec));
    }
    shuffle(&mut plan, derive_seed(config.seed, epoch, 1));
    Ok(plan)
}

/// The example indices of each batch for evaluation: sorted by length (least padding), with
/// [`Batch::indices`] mapping rows back to examples.
pub fn eval_plan(set: &EncodedSet, batch_size: usize) -> Result<Vec<Vec<usize>>> {
    BatchConfig::new(batch_size, 0).check()?;
    let mut order: Vec<usize> = (0..set.examples.len()).collect();
    order.sort_by_key(|&i| set.examples[i].len());
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// Collates every batch of a plan.
pub fn batches(set: &EncodedSet, plan: &[Vec<usize>], pad_id: u32) -> Result<Vec<Batch>> {
    plan.iter()
        .map(|indices| collate(&set.examples, indices, pad_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize, target: Target) -> Encoded {
        Encoded {
            input_ids: (1..=len as u32).collect(),
            token_type_ids: vec![0; len],
            target,
            truncated: false,
            cut_tags: Vec::new(),
        }
    }

    #[test]
    fn collate_pads_row_major() {
        let examples = vec![
            example(2, Target::Tokens(vec![IGNORE_INDEX, 3])),
            example(4, Target::Tokens(vec![IGNORE_INDEX, 1, 2, IGNORE_INDEX])),
        ];
        let b = collate(&examples, &[0, 1], 0).unwrap();
        assert_eq!((b.batch_size, b.seq_len), (2, 4));
        assert_eq!(b.input_ids, [1, 2, 0, 0, 1, 2, 3, 4]);
        assert_eq!(b.attention_mask, [1, 1, 0, 0, 1, 1, 1, 1]);
        assert_eq!(
            b.labels,
            Labels::Tokens(vec![-100, 3, -100, -100, -100, 1, 2, -100])
        );
    }

    #[test]
    fn classes_and_scores_are_per_example() {
        let examples = vec![example(3, Target::Class(1)), example(1, Target::Class(0))];
        let b = collate(&examples, &[1, 0], 9).unwrap();
        assert_eq!(b.labels, Labels::Classes(vec![0, 1]));
        assert_eq!(b.input_ids, [1, 9, 9, 1, 2, 3]);
        let mixed = vec![example(1, Target::Class(1)), example(1, Target::Score(0.5))];
        assert!(collate(&mixed, &[0, 1], 0).is_err());
    }

    #[test]
    fn training_plan_is_seeded_complete_and_bucketed() {
        let set = EncodedSet {
            examples: (0..100)
                .map(|i| example(1 + (i * 37) % 60, Target::Class(0)))
                .collect(),
            truncated: 0,
            truncated_words: 0,
        };
        let config = BatchConfig::new(8, 42);
        let plan = training_plan(&set, &config, 0).unwrap();
        assert_eq!(plan, training_plan(&set, &config, 0).unwrap());
        assert_ne!(plan, training_plan(&set, &config, 1).unwrap());
        let mut all: Vec<usize> = plan.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // With one pool holding everything, each batch is a contiguous length range, so the
        // total padding is far below that of an unsorted order.
        let padding = |plan: &[Vec<usize>]| -> usize {
            plan.iter()
                .map(|b| {
                    let max = b.iter().map(|&i| set.examples[i].len()).max().unwrap();
                    b.iter()
                        .map(|&i| max - set.examples[i].len())
                        .sum::<usize>()
                })
                .sum()
        };
        let unbucketed = BatchConfig {
            pool_batches: 1,
            ..config
        };
        let loose = padding(&training_plan(&set, &unbucketed, 0).unwrap());
        let tight = padding(&plan);
        assert!(
            tight * 4 < loose,
            "bucketed padding {tight} vs unbucketed {loose}"
        );
    }

    #[test]
    fn eval_plan_covers_everything_once() {
        let set = EncodedSet {
            examples: (0..10).map(|i| example(10 - i, Target::Class(1))).collect(),
            truncated: 0,
            truncated_words: 0,
        };
        let plan = eval_plan(&set, 4).unwrap();
        assert_eq!(plan, vec![vec![9, 8, 7, 6], vec![5, 4, 3, 2], vec![1, 0]]);
        let b = batches(&set, &plan, 0).unwrap();
        assert_eq!(b[2].labels, Labels::Classes(vec![1, 1]));
    }

    #[test]
    fn an_unlabelled_example_is_an_error_not_class_zero() {
        let mut examples: Vec<Encoded> = (0..4).map(|i| example(3 + i, Target::Class(1))).collect();
        examples[2].target = Target::None;
        assert!(collate(&examples, &[0, 1], 0).is_ok());
        for rows in [[2, 0], [0, 2]] {
            let err = collate(&examples, &rows, 0).unwrap_err().to_string();
            assert!(err.contains("label"), "{err}");
        }
    }
}
