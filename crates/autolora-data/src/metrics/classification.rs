//! Accuracy, F1 and Matthews correlation as scikit-learn computes them.

use crate::error::{Error, Result};

pub(crate) fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(Error::invalid(
            what,
            format!("as many predictions as gold labels ({b})"),
            format!("{a} predictions"),
        ));
    }
    if a == 0 {
        return Err(Error::invalid(what, "at least one example", "none"));
    }
    Ok(())
}

/// Fraction of predictions equal to the gold label (`sklearn.metrics.accuracy_score`).
pub fn accuracy<T: PartialEq>(predictions: &[T], gold: &[T]) -> Result<f64> {
    same_len("accuracy", predictions.len(), gold.len())?;
    let correct = predictions.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(correct as f64 / gold.len() as f64)
}

/// F1 of class `positive` (`sklearn.metrics.f1_score(gold, pred, pos_label=positive)`):
/// `2 tp / (2 tp + fp + fn)`, and 0 when there is neither a predicted nor a gold positive
/// (scikit-learn's `zero_division` default). GLUE's MRPC and QQP use `positive = 1`.
pub fn f1_binary(predictions: &[usize], gold: &[usize], positive: usize) -> Result<f64> {
    same_len("F1", predictions.len(), gold.len())?;
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &g) in predictions.iter().zip(gold) {
        match (p == positive, g == positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    Ok(if denominator == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denominator as f64
    })
}

/// Matthews correlation coefficient, multiclass form of `sklearn.metrics.matthews_corrcoef`
/// (0 when either the predictions or the gold labels hold a single class). GLUE's CoLA metric.
pub fn matthews_corrcoef(predictions: &[usize], gold: &[usize]) -> Result<f64> {
    same_len("Matthews correlation", predictions.len(), gold.len())?;
    let classes = predictions.iter().chain(gold).copied().max().unwrap_or(0) + 1;
    let mut t_sum = vec![0f64; classes];
    let mut p_sum = vec![0f64; classes];
    let mut correct = 0f64;
    for (&p, &g) in predictions.iter().zip(gold) {
        t_sum[g] += 1.0;
        p_sum[p] += 1.0;
        if p == g {
            correct += 1.0;
        }
    }
    let n = gold.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_ytyp = correct * n - dot(&t_sum, &p_sum);
    let cov_ypyp = n * n - dot(&p_sum, &p_sum);
    let cov_ytyt = n * n - dot(&t_sum, &t_sum);
    if cov_ypyp * cov_ytyt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp / (cov_ytyt * cov_ypyp).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_hand_checked_values() {
        let gold = [1, 1, 0, 0, 1];
        let pred = [1, 0, 0, 1, 1];
        assert_eq!(accuracy(&pred, &gold).unwrap(), 0.6);
        // tp 2, fp 1, fn 1: 4 / 6.
        assert!((f1_binary(&pred, &gold, 1).unwrap() - 4.0 / 6.0).abs() < 1e-12);
        // Binary MCC: (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2-1)/sqrt(3*3*2*2).
        assert!((matthews_corrcoef(&pred, &gold).unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[0, 1, 0]).unwrap(), 0.0);
        assert!(accuracy(&[1], &[1, 2]).is_err());
    }
}
