//! How well an allocation recovers the planted ranks, and whether the benchmark can tell
//! allocations apart at all (the validity gate).
//!
//! Every measure compares two rank vectors over the same modules (all of `planted.json`, in
//! its order): the planted ranks and an allocation's ranks (0 where a module has no adapter).

use anyhow::{Result, bail};

use crate::experiment::summary::{self, Stats};

/// An allocation against the planted ranks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Spearman's rank correlation; `None` when either side is constant.
    pub spearman: Option<f64>,
    /// Kendall's tau-b; `None` when either side is constant.
    pub kendall: Option<f64>,
    /// The allocation's LoRA parameters on modules with a planted rank > 0, over all its LoRA
    /// parameters; `None` for an allocation without parameters.
    pub planted_share: Option<f64>,
    /// Modules with planted rank 0 that the allocation gives a rank > 0.
    pub false_positives: usize,
}

/// All measures of `ranks` against `planted`; `costs[m]` is module m's LoRA parameters per
/// unit of rank.
pub fn agreement(planted: &[usize], ranks: &[usize], costs: &[i64]) -> Agreement {
    let (p, r): (Vec<f64>, Vec<f64>) = planted
        .iter()
        .zip(ranks)
        .map(|(&p, &r)| (p as f64, r as f64))
        .unzip();
    Agreement {
        spearman: spearman(&p, &r),
        kendall: kendall_tau_b(&p, &r),
        planted_share: planted_share(planted, ranks, costs),
        false_positives: false_positives(planted, ranks),
    }
}

/// Spearman's rank correlation (Pearson's on average ranks, ties sharing their mean rank);
/// `None` when either side is constant (or has fewer than two values).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || is_constant(a) || is_constant(b) {
        return None;
    }
    Some(summary::spearman(a, b)).filter(|rho| rho.is_finite())
}

/// Kendall's tau-b, which corrects for ties on either side:
/// `(concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b))` with `n0 = n (n - 1) / 2`
/// and `ties_x` the pairs tied in x (pairs tied in both count in neither sum). `None` when
/// either side is constant (or has fewer than two values).
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || is_constant(a) || is_constant(b) {
        return None;
    }
    let n = a.len();
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        for j in i + 1..n {
            let da = a[i].total_cmp(&a[j]);
            let db = b[i].total_cmp(&b[j]);
            if da.is_eq() {
                ties_a += 1;
            }
            if db.is_eq() {
                ties_b += 1;
            }
            if da.is_ne() && db.is_ne() {
                if da == db {
                    concordant += 1;
                } else {
                    discordant += 1;
                }
            }
        }
    }
    let n0 = (n * (n - 1) / 2) as u64;
    let denominator = (((n0 - ties_a) * (n0 - ties_b)) as f64).sqrt();
    Some((concordant as f64 - discordant as f64) / denominator)
}

fn is_constant(values: &[f64]) -> bool {
    values.windows(2).all(|w| w[0] == w[1])
}

/// The share of the allocation's LoRA parameters that sits on modules with a planted rank;
/// `None` when the allocation has none.
pub fn planted_share(planted: &[usize], ranks: &[usize], costs: &[i64]) -> Option<f64> {
    let mut on_planted = 0i64;
    let mut total = 0i64;
    for ((&p, &r), &c) in planted.iter().zip(ranks).zip(costs) {
        let params = r as i64 * c;
        total += params;
        if p > 0 {
            on_planted += params;
        }
    }
    (total > 0).then(|| on_planted as f64 / total as f64)
}

/// Modules without a planted rank that the allocation adapts.
pub fn false_positives(planted: &[usize], ranks: &[usize]) -> usize {
    planted
        .iter()
        .zip(ranks)
        .filter(|&(&p, &r)| p == 0 && r > 0)
        .count()
}

/// The uniform rank `r >= 1` whose parameter count `r * cost_per_rank` is closest to `budget`
/// (the smaller one on a tie). `cost_per_rank` is the sum over modules of their parameters
/// per unit of rank.
pub fn uniform_rank(budget: i64, cost_per_rank: i64) -> Result<usize> {
    if cost_per_rank <= 0 || budget < 0 {
        bail!(
            "no uniform rank for a budget of {budget} LoRA parameters at {cost_per_rank} per rank"
        );
    }
    let low = (budget / cost_per_rank).max(1);
    let high = low + 1;
    let gap = |r: i64| (r * cost_per_rank - budget).abs();
    Ok(if gap(low) <= gap(high) { low } else { high } as usize)
}

/// The validity gate: can the benchmark tell a right allocation from a wrong one?
///
/// Each seed plants its own teacher, whose loss scale differs from the others' (on `depth` the
/// oracle's dev KL is 0.011 on one seed and 0.016 on another), so the arms are compared seed by
/// seed: the gate reads the paired differences to the oracle, whose spread is the noise of
/// the comparison, not the spread of the arms' losses across teachers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// No seed has a finished oracle, uniform and random retrain.
    Missing,
    /// Only one seed has all three: the spread is unknown.
    SpreadUnknown,
    /// Judged on the seeds that have all three arms: `valid` when uniform's and random's
    /// losses exceed the oracle's by a mean paired difference larger than its sd over seeds.
    Judged {
        /// Both margins exceed their noise.
        valid: bool,
        /// Seeds compared.
        seeds: usize,
        /// Mean and sd over seeds of uniform's loss minus the oracle's.
        uniform: (f64, f64),
        /// Mean and sd over seeds of random's loss minus the oracle's.
        random: (f64, f64),
    },
}

/// The gate from the losses (lower is better) of the oracle, uniform and random arms, as
/// `(seed, loss)` pairs.
pub fn validity(oracle: &[(u64, f64)], uniform: &[(u64, f64)], random: &[(u64, f64)]) -> Gate {
    let loss = |arm: &[(u64, f64)], seed: u64| arm.iter().find(|(s, _)| *s == seed).map(|p| p.1);
    let paired: Vec<(f64, f64)> = oracle
        .iter()
        .filter_map(|&(seed, o)| Some((loss(uniform, seed)? - o, loss(random, seed)? - o)))
        .collect();
    match paired.len() {
        0 => return Gate::Missing,
        1 => return Gate::SpreadUnknown,
        _ => {}
    }
    let margin = |pick: fn(&(f64, f64)) -> f64| {
        let x = Stats::of(paired.iter().map(pick));
        (x.mean, x.sd)
    };
    let (uniform, random) = (margin(|p| p.0), margin(|p| p.1));
    Gate::Judged {
        valid: uniform.0 > uniform.1 && random.0 > random.1,
        seeds: paired.len(),
        uniform,
        random,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn kendall_tau_b_matches_hand_counts_with_ties() {
        // Pairs of [1, 2, 2, 3] / [1, 3, 2, 4]: 5 concordant, 0 discordant, one tie in a:
        // 5 / sqrt((6 - 1) * (6 - 0)) = 5 / sqrt(30) (scipy.stats.kendalltau: 0.9128709291752769).
        let tau = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!(close(tau, 5.0 / 30f64.sqrt()), "{tau:?}");
        assert!(close(tau, 0.9128709291752769), "{tau:?}");
        // [0, 0, 2, 4] / [0, 1, 1, 3]: 4 concordant, one tie on each side: 4 / 5.
        assert!(close(
            kendall_tau_b(&[0.0, 0.0, 2.0, 4.0], &[0.0, 1.0, 1.0, 3.0]),
            0.8
        ));
        // One concordant and one discordant pair: 0.
        assert!(close(
            kendall_tau_b(&[0.0, 0.0, 8.0, 8.0], &[0.0, 3.0, 3.0, 0.0]),
            0.0
        ));
        assert!(close(
            kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]),
            -1.0
        ));
    }

    #[test]
    fn spearman_averages_tied_ranks() {
        // Average ranks [1.5, 1.5, 3, 4] and [1, 2.5, 2.5, 4]: deviations [-1, -1, .5, 1.5]
        // and [-1.5, 0, 0, 1.5], covariance 3.75, both sums of squares 4.5: 3.75 / 4.5.
        let rho = spearman(&[0.0, 0.0, 2.0, 4.0], &[0.0, 1.0, 1.0, 3.0]);
        assert!(close(rho, 3.75 / 4.5), "{rho:?}");
        assert!(close(
            spearman(&[0.0, 0.0, 8.0, 8.0], &[0.0, 3.0, 3.0, 0.0]),
            0.0
        ));
    }

    #[test]
    fn a_constant_side_has_no_correlation() {
        for (a, b) in [
            (vec![2.0, 2.0, 2.0], vec![1.0, 2.0, 3.0]),
            (vec![1.0, 2.0, 3.0], vec![0.0, 0.0, 0.0]),
            (vec![1.0], vec![2.0]),
            (vec![], vec![]),
        ] {
            assert_eq!(spearman(&a, &b), None, "{a:?} {b:?}");
            assert_eq!(kendall_tau_b(&a, &b), None, "{a:?} {b:?}");
        }
    }

    #[test]
    fn planted_share_and_false_positives_count_parameters_and_modules() {
        let planted = [0, 8, 0, 2];
        let ranks = [1, 4, 0, 2];
        let costs = [768, 1536, 768, 768];
        // 768 + 6144 + 0 + 1536 = 8448 parameters, 6144 + 1536 = 7680 on planted modules.
        let share = planted_share(&planted, &ranks, &costs);
        assert!(close(share, 7680.0 / 8448.0), "{share:?}");
        assert!(close(share, 10.0 / 11.0), "{share:?}");
        assert_eq!(false_positives(&planted, &ranks), 1);
        assert_eq!(planted_share(&planted, &[0; 4], &costs), None);
        let all = agreement(&planted, &ranks, &costs);
        assert_eq!(all.false_positives, 1);
        assert_eq!(all.planted_share, share);
        // The planted ranks against themselves.
        let own = agreement(&planted, &planted, &costs);
        assert!(
            close(own.spearman, 1.0) && close(own.kendall, 1.0),
            "{own:?}"
        );
        assert_eq!((own.planted_share, own.false_positives), (Some(1.0), 0));
    }

    #[test]
    fn uniform_rank_is_the_closest_count_of_at_least_one() -> Result<()> {
        // MiniLM, all 36 linear modules: 6 * (4 * 768 + 2 * 1920) = 41472 parameters per rank.
        let per_rank = 41472;
        // depth.toml: 2 * 8 * 1920 + 4 * 1920 + 2 * 768 = 39936 -> r = 1 (1536 over).
        assert_eq!(uniform_rank(39936, per_rank)?, 1);
        // Far below one rank's count: still 1, never 0.
        assert_eq!(uniform_rank(1000, per_rank)?, 1);
        assert_eq!(uniform_rank(0, per_rank)?, 1);
        // 2.4 ranks' worth -> 2; 2.6 -> 3; exactly between 2 and 3 -> the smaller.
        assert_eq!(uniform_rank(240, 100)?, 2);
        assert_eq!(uniform_rank(260, 100)?, 3);
        assert_eq!(uniform_rank(250, 100)?, 2);
        assert_eq!(uniform_rank(300, 100)?, 3);
        assert!(uniform_rank(100, 0).is_err());
        Ok(())
    }

    #[test]
    fn the_gate_compares_each_seed_with_its_own_oracle() {
        let seeded = |losses: &[f64]| -> Vec<(u64, f64)> {
            losses
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u64 + 1, l))
                .collect()
        };
        // Teachers of very different loss scales (oracle 0.010 to 0.020): uniform is 0.004
        // worse on every seed (sd 0), random 0.001 to 0.005 worse (mean 0.003, sd 0.002).
        let oracle = seeded(&[0.010, 0.015, 0.020]);
        let uniform = seeded(&[0.014, 0.019, 0.024]);
        let random = seeded(&[0.011, 0.018, 0.025]);
        match validity(&oracle, &uniform, &random) {
            Gate::Judged {
                valid,
                seeds,
                uniform,
                random,
            } => {
                assert!(valid);
                assert_eq!(seeds, 3);
                assert!((uniform.0 - 0.004).abs() < 1e-12 && uniform.1.abs() < 1e-12);
                assert!((random.0 - 0.003).abs() < 1e-12 && (random.1 - 0.002).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        // Unpaired, the same numbers would drown in the teachers' spread (sd 0.005); paired,
        // a random arm that is better on one seed and worse on two is too weak.
        let mixed = seeded(&[0.008, 0.016, 0.024]);
        assert!(matches!(
            validity(&oracle, &uniform, &mixed),
            Gate::Judged { valid: false, .. }
        ));
        // The oracle above the others is never valid.
        assert!(matches!(
            validity(&uniform, &oracle, &oracle),
            Gate::Judged { valid: false, .. }
        ));
        // Only seeds with all three arms count.
        assert_eq!(
            validity(&oracle, &uniform[..1], &random),
            Gate::SpreadUnknown
        );
        assert_eq!(validity(&oracle, &[], &random), Gate::Missing);
        assert_eq!(
            validity(&[(1, 0.01)], &[(1, 0.02)], &[(1, 0.03)]),
            Gate::SpreadUnknown
        );
    }
}
