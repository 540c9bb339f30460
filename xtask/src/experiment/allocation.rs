//! The random allocation: AutoLoRA's total rank spread over the modules by chance, the test of
//! whether the search's allocation beats luck.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{Record, Unit};

/// Ranks in `[min_rank, k]` summing to `total`: every module starts at `min_rank`, and each
/// further unit goes to a module drawn uniformly among those still below `k`.
pub fn random_ranks(
    modules: usize,
    total: usize,
    min_rank: usize,
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    if total < modules * min_rank || total > modules * k {
        bail!("a total rank of {total} does not fit {modules} modules with ranks {min_rank}..={k}");
    }
    let mut ranks = vec![min_rank; modules];
    for _ in 0..total - modules * min_rank {
        let open: Vec<usize> = (0..modules).filter(|&i| ranks[i] < k).collect();
        ranks[open[rng.random_range(0..open.len())]] += 1;
    }
    Ok(ranks)
}

/// Writes a `ranks.json` for `autolora train` with a random allocation of the search's total
/// rank. The file keeps the search's layout; kept components are the first `rank` ones and the
/// weights are uniform (nothing was learned).
pub fn write_random(search_ranks: &Path, out: &Path, unit: &Unit, searched: &Record) -> Result<()> {
    let text = std::fs::read_to_string(search_ranks)
        .with_context(|| format!("reading {}", search_ranks.display()))?;
    let mut file: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected JSON", search_ranks.display()))?;
    let k = file["k"].as_u64().context("ranks.json lacks `k`")? as usize;
    let min_rank = file["selection"]["min_rank"].as_u64().unwrap_or(0) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(allocation_seed(unit));
    let ranks = random_ranks(
        searched.ranks.len(),
        searched.total_rank(),
        min_rank,
        k,
        &mut rng,
    )?;
    let modules = file["modules"]
        .as_array_mut()
        .context("ranks.json lacks `modules`")?;
    for (module, rank) in modules.iter_mut().zip(ranks) {
        module["rank"] = json!(rank);
        module["kept"] = json!((0..rank).collect::<Vec<_>>());
        module["weights"] = json!(vec![1.0 / k as f64; k]);
        module["uniformity"] = json!({"max_min_ratio": 1.0, "normalized_entropy": 1.0});
    }
    std::fs::write(out, serde_json::to_string_pretty(&file)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// A seed of its own per (task, seed), so allocations differ across tasks and seeds.
fn allocation_seed(unit: &Unit) -> u64 {
    let task = unit
        .task
        .name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    task ^ unit.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ranks_keep_the_total_and_the_bounds() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for total in [12, 34, 60, 96] {
            let ranks = random_ranks(12, total, 1, 8, &mut rng)?;
            assert_eq!(ranks.iter().sum::<usize>(), total);
            assert!(ranks.iter().all(|&r| (1..=8).contains(&r)), "{ranks:?}");
        }
        Ok(())
    }

    #[test]
    fn random_ranks_differ_between_seeds_and_repeat_within_one() -> Result<()> {
        let draw = |seed| random_ranks(12, 34, 1, 8, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(1)?, draw(1)?);
        assert_ne!(draw(1)?, draw(2)?);
        Ok(())
    }

    #[test]
    fn an_impossible_total_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(random_ranks(12, 11, 1, 8, &mut rng).is_err());
        assert!(random_ranks(12, 97, 1, 8, &mut rng).is_err());
    }
}
