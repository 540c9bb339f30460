//! The E2E challenge's metric set on one system output.

use super::bleu::corpus_bleu;
use super::coco::{cider, coco_tokenize, rouge_l};
use super::meteor::Meteor;
use super::nist::corpus_nist;
use crate::error::Result;

/// Scores of a system output against grouped references.
#[derive(Debug, Clone, PartialEq)]
pub struct E2eScores {
    /// Corpus BLEU on the 0-1 scale the E2E script prints (sacreBLEU `13a`, case-sensitive).
    pub bleu: f64,
    /// Corpus NIST (NLTK's computation on `13a` tokens; see [`corpus_nist`]).
    pub nist: f64,
    /// METEOR through the Java implementation; `None` when it is not installed.
    pub meteor: Option<f64>,
    /// ROUGE-L (`pycocoevalcap`, on PTB-style lowercased tokens).
    pub rouge_l: f64,
    /// CIDEr-D (`pycocoevalcap`, on PTB-style lowercased tokens).
    pub cider: f64,
}

impl std::fmt::Display for E2eScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meteor = self.meteor.map_or_else(
            || "unavailable (needs java and meteor-1.5.jar)".to_string(),
            |m| format!("{m:.4}"),
        );
        write!(
            f,
            "BLEU {:.4}  NIST {:.4}  METEOR {meteor}  ROUGE-L {:.4}  CIDEr {:.4}",
            self.bleu, self.nist, self.rouge_l, self.cider
        )
    }
}

/// Scores `hypotheses[i]` against `references[i]` (all references of MR i).
pub fn e2e_scores<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
    meteor: Option<&Meteor>,
) -> Result<E2eScores> {
    let bleu = corpus_bleu(hypotheses, references, false)?.score / 100.0;
    let nist = corpus_nist(hypotheses, references, 5, false)?;
    let hyp_tok: Vec<String> = hypotheses
        .iter()
        .map(|h| coco_tokenize(h.as_ref()))
        .collect();
    let ref_tok: Vec<Vec<String>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| coco_tokenize(r.as_ref())).collect())
        .collect();
    let meteor = match meteor {
        Some(m) => Some(m.score(&hyp_tok, &ref_tok)?),
        None => None,
    };
    Ok(E2eScores {
        bleu,
        nist,
        meteor,
        rouge_l: rouge_l(&hyp_tok, &ref_tok)?,
        cider: cider(&hyp_tok, &ref_tok)?,
    })
}
