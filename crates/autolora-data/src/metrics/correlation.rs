//! Pearson and Spearman correlation as SciPy computes them.

use super::classification::same_len;
use crate::error::Result;

/// Pearson's r (`scipy.stats.pearsonr`). NaN when either input is constant, as SciPy returns.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    same_len("Pearson correlation", x.len(), y.len())?;
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Ok(f64::NAN);
    }
    // SciPy clips to [-1, 1] against rounding.
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks starting at 1, ties given the average of the ranks they span
/// (`scipy.stats.rankdata(method="average")`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's rho (`scipy.stats.spearmanr`): Pearson's r of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    same_len("Spearman correlation", x.len(), y.len())?;
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_the_average_rank() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn perfect_and_constant_inputs() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&x, &[1.0, 10.0, 100.0, 1000.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&x, &[1.0; 4]).unwrap().is_nan());
    }
}
