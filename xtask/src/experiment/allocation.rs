//! The random allocation: AutoLoRA's LoRA parameter count spread over the modules by chance,
//! the test of whether the search's allocation beats luck.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use autolora_data::rng::{derive_seed, stream};

use super::{Record, Unit};

/// Ranks in `[min_rank, k]` whose LoRA parameter count (`sum rank_m * costs[m]`, `costs[m]`
/// being what one unit of rank costs in module m) comes as close to `budget` as one more unit
/// allows: every module starts at `min_rank`, and each further unit goes to a module drawn
/// uniformly among those below `k` whose unit still fits the budget. With equal costs this
/// spreads a total rank of `budget / cost` exactly.
pub fn random_ranks(
    costs: &[i64],
    budget: i64,
    min_rank: usize,
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    let floor: i64 = costs.iter().map(|c| c * min_rank as i64).sum();
    let ceiling: i64 = costs.iter().map(|c| c * k as i64).sum();
    if budget < floor || budget > ceiling || costs.iter().any(|&c| c <= 0) {
        bail!(
            "a budget of {budget} LoRA parameters does not fit {} modules with ranks {min_rank}..={k} \
             ({floor} to {ceiling})",
            costs.len()
        );
    }
    let mut ranks = vec![min_rank; costs.len()];
    let mut left = budget - floor;
    loop {
        let open: Vec<usize> = (0..costs.len())
            .filter(|&i| ranks[i] < k && costs[i] <= left)
            .collect();
        if open.is_empty() {
            return Ok(ranks);
        }
        let pick = open[rng.random_range(0..open.len())];
        ranks[pick] += 1;
        left -= costs[pick];
    }
}

/// Writes a `ranks.json` for `autolora train` with a random allocation of the search's LoRA
/// parameter count. The file keeps the search's layout; kept components are the first `rank` ones and the
/// weights are uniform (nothing was learned).
pub fn write_random(search_ranks: &Path, out: &Path, unit: &Unit, searched: &Record) -> Result<()> {
    let text = std::fs::read_to_string(search_ranks)
        .with_context(|| format!("reading {}", search_ranks.display()))?;
    let mut file: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected JSON", search_ranks.display()))?;
    let k = file["k"].as_u64().context("ranks.json lacks `k`")? as usize;
    let min_rank = file["selection"]["min_rank"].as_u64().unwrap_or(0) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(allocation_seed(unit));
    let modules = file["modules"]
        .as_array()
        .context("ranks.json lacks `modules`")?;
    let costs: Vec<i64> = modules
        .iter()
        .map(|m| {
            let name = m["name"]
                .as_str()
                .context("a module of ranks.json lacks `name`")?;
            file["params_per_rank"][name].as_i64().with_context(|| {
                format!(
                    "{}: no `params_per_rank` for {name} (written by an older autolora search?)",
                    search_ranks.display()
                )
            })
        })
        .collect::<Result<_>>()?;
    let budget: i64 = modules
        .iter()
        .zip(&costs)
        .map(|(m, c)| m["rank"].as_i64().unwrap_or(0) * c)
        .sum();
    anyhow::ensure!(
        modules.len() == searched.ranks.len(),
        "{} does not match the search's record",
        search_ranks.display()
    );
    let ranks = random_ranks(&costs, budget, min_rank, k, &mut rng)?;
    let modules = file["modules"]
        .as_array_mut()
        .context("ranks.json lacks `modules`")?;
    for (module, rank) in modules.iter_mut().zip(ranks) {
        module["rank"] = json!(rank);
        module["kept"] = json!((0..rank).collect::<Vec<_>>());
        module["weights"] = json!(vec![1.0 / k as f64; k]);
        module["uniformity"] = json!({"max_min_ratio": 1.0, "normalized_entropy": 1.0});
    }
    autolora_data::atomic::write(out, serde_json::to_string_pretty(&file)?.as_bytes())
        .with_context(|| format!("writing {}", out.display()))
}

/// A seed of its own per (task, seed), so allocations differ across tasks and seeds: the
/// workspace's seed scheme with the task name's FNV-1a hash as the index.
fn allocation_seed(unit: &Unit) -> u64 {
    derive_seed(unit.seed, fnv1a(&unit.task.name), stream::RANDOM_ALLOCATION)
}

/// The 64-bit FNV-1a hash of `text`: a stable index for a seed stream from a name.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ranks_keep_the_total_and_the_bounds() -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for total in [12, 34, 60, 96] {
            let ranks = random_ranks(&[768; 12], total * 768, 1, 8, &mut rng)?;
            assert_eq!(ranks.iter().sum::<usize>() as i64, total);
            assert!(ranks.iter().all(|&r| (1..=8).contains(&r)), "{ranks:?}");
        }
        Ok(())
    }

    #[test]
    fn random_ranks_match_the_parameter_count_of_unequal_modules() -> Result<()> {
        // Llama-like: q/o 576+576, k/v 576+192 (grouped-query), up 576+1536.
        let costs = [1152, 768, 768, 1152, 2112, 1152, 768, 768, 1152, 2112];
        let budget = 2 * costs.iter().sum::<i64>();
        for seed in 0..20 {
            let ranks = random_ranks(&costs, budget, 1, 8, &mut ChaCha8Rng::seed_from_u64(seed))?;
            let params: i64 = ranks.iter().zip(&costs).map(|(&r, c)| r as i64 * c).sum();
            assert!(
                params <= budget && budget - params < 768,
                "seed {seed}: {params} of {budget}"
            );
        }
        Ok(())
    }

    #[test]
    fn random_ranks_differ_between_seeds_and_repeat_within_one() -> Result<()> {
        let draw = |seed| random_ranks(&[10; 12], 340, 1, 8, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(1)?, draw(1)?);
        assert_ne!(draw(1)?, draw(2)?);
        Ok(())
    }

    #[test]
    fn an_impossible_budget_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert!(random_ranks(&[10; 12], 110, 1, 8, &mut rng).is_err());
        assert!(random_ranks(&[10; 12], 970, 1, 8, &mut rng).is_err());
    }
}
