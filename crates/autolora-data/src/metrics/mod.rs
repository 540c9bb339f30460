//! The paper's metrics, computed as the official scripts compute them.
//!
//! | task | metric | reference implementation |
//! |---|---|---|
//! | GLUE (most) | [`accuracy`] | `sklearn.metrics.accuracy_score` |
//! | MRPC, QQP | [`f1_binary`] | `sklearn.metrics.f1_score` |
//! | CoLA | [`matthews_corrcoef`] | `sklearn.metrics.matthews_corrcoef` |
//! | STS-B | [`pearson`], [`spearman`] | `scipy.stats.pearsonr`, `scipy.stats.spearmanr` |
//! | NER | [`entity_scores`] | conlleval / `seqeval` default mode |
//!
//! Golden tests compare every function with the reference tools on committed inputs
//! (`tests/reference/gen_metrics.py` writes `tests/reference/metrics.json`).

mod classification;
mod correlation;
mod entity;

pub use classification::{accuracy, f1_binary, matthews_corrcoef};
pub use correlation::{average_ranks, pearson, spearman};
pub use entity::{EntityScores, Prf, chunks, entity_scores};
