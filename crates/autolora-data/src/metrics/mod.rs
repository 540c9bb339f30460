//! The paper's metrics, computed as the official scripts compute them.
//!
//! | task | metric | reference implementation |
//! |---|---|---|
//! | GLUE (most) | [`accuracy`] | `sklearn.metrics.accuracy_score` |
//! | MRPC, QQP | [`f1_binary`] | `sklearn.metrics.f1_score` |
//! | CoLA | [`matthews_corrcoef`] | `sklearn.metrics.matthews_corrcoef` |
//! | STS-B | [`pearson`], [`spearman`] | `scipy.stats.pearsonr`, `scipy.stats.spearmanr` |
//! | NER | [`entity_scores`] | conlleval / `seqeval` default mode |
//! | E2E | [`corpus_bleu`] | sacreBLEU, `13a` tokenization (mteval-v13a's) |
//! | E2E | [`corpus_nist`] | NLTK `corpus_nist` (differs from mteval's NIST, see its docs) |
//! | E2E | [`rouge_l`], [`cider`] | `pycocoevalcap` (after [`coco_tokenize`]) |
//! | E2E | [`Meteor`] | `meteor-1.5.jar` itself, when Java and the jar are present |
//!
//! Golden tests compare every function with the reference tools on committed inputs
//! (`tests/reference/gen_metrics.py` writes `tests/reference/metrics.json`,
//! `tests/reference/gen_e2e_metrics.py` writes `tests/reference/e2e_metrics.json`).

mod bleu;
mod classification;
mod coco;
mod correlation;
mod e2e;
mod entity;
mod meteor;
mod nist;

pub use bleu::{Bleu, corpus_bleu, tokenize_13a};
pub use classification::{accuracy, f1_binary, matthews_corrcoef};
pub use coco::{cider, coco_tokenize, rouge_l};
pub use correlation::{average_ranks, pearson, spearman};
pub use e2e::{E2eScores, e2e_scores};
pub use entity::{EntityScores, Mode as EntityMode, Prf, chunks, entity_scores, entity_scores_in};
pub use meteor::{METEOR_JAR_ENV, Meteor};
pub use nist::corpus_nist;
