//! Gradual pruning during the search (`search.prune_every`).
//!
//! After the warm-up, every `prune_every` steps the components with the lowest selection
//! weights are masked out (their gate weight held at 0) until the kept ones fit a budget that
//! shrinks on AdaLoRA's cubic schedule, from every component at the end of the warm-up to the
//! search's own budget (`search.budget_params` or `search.budget`) at `search.prune_until`:
//!
//! ```text
//! b(t) = target + (full - target) * (1 - (t - warmup) / (until - warmup))^3
//! ```
//!
//! Why: a search that reads its ranks once, at the end, scores components that all trained
//! together, and a module that only compensated for another (a feed-forward input standing in
//! for its output, a neighbouring layer through the residual stream) keeps the share of the fit
//! it took. A masked component carries nothing any more, so the inner steps after each cut move
//! what it did onto the components left, and the next cut scores them on that fit. A pruned
//! component stays pruned (its hypergradient is 0, and the kept set only shrinks).
//!
//! The masks are search state: they are checkpointed with the selection logits, so a resumed
//! search continues with the components it had.

use anyhow::{Context, Result, bail};
use autolora_core::NamedParam;
use autolora_core::Param;
use autolora_core::selection::{SelectionConfig, select_ranks};
use autolora_models::Model;
use tch::Tensor;

use crate::config::SearchConfig;

/// When, and to what budget, the search prunes.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The step after which the budget starts shrinking (the end of the warm-up).
    start: u64,
    /// The step at which it reaches `target`.
    until: u64,
    /// Steps between cuts.
    every: u64,
    /// What every component costs together, in the budget's unit.
    full: i64,
    /// The search's budget.
    target: i64,
    /// Whether the budget counts LoRA parameters (else components).
    in_params: bool,
    /// Components every module keeps.
    min_rank: usize,
}

impl Schedule {
    /// The schedule of `search` over `model`'s selective adapters; `None` when the search does
    /// not prune.
    pub fn of(search: &SearchConfig, model: &dyn Model) -> Result<Option<Self>> {
        if search.prune_every == 0 {
            return Ok(None);
        }
        let (target, in_params) = match (search.budget_params, search.budget) {
            (Some(params), _) => (params, true),
            (None, Some(components)) => (components as i64, false),
            (None, None) => bail!(
                "search.prune_every prunes down to a budget: set search.budget_params (or \
                 search.budget)"
            ),
        };
        let full = model
            .adapted_layers()
            .iter()
            .filter_map(|(_, layer)| {
                let adapter = layer.adapter()?;
                adapter.gate.as_ref()?;
                let cost = if in_params {
                    layer.in_features() + layer.out_features()
                } else {
                    1
                };
                Some(adapter.rank() * cost)
            })
            .sum();
        Ok(Some(Schedule {
            start: search.warmup_steps,
            until: search.prune_until.unwrap_or(search.steps),
            every: search.prune_every,
            full,
            target,
            in_params,
            min_rank: search.min_rank,
        }))
    }

    /// The budget to cut to once `done` steps are done, if a cut falls there: every `every`
    /// steps after the warm-up up to `until`, and at `until` itself.
    pub fn budget_after(&self, done: u64) -> Option<i64> {
        if done <= self.start || done > self.until {
            return None;
        }
        let since = done - self.start;
        if since % self.every != 0 && done != self.until {
            return None;
        }
        let left = 1.0 - since as f64 / (self.until - self.start) as f64;
        let excess = (self.full - self.target).max(0) as f64;
        Some(self.target + (excess * left.powi(3)).ceil() as i64)
    }

    /// Masks out of `model`'s selective adapters the lowest-weighted components that do not fit
    /// `budget` (components already masked stay masked); returns how many components are left.
    pub fn cut(&self, model: &dyn Model, budget: i64) -> Result<usize> {
        let weights = crate::ranks::selection_weights(&model.adapted_layers())?;
        let config = SelectionConfig {
            threshold: None,
            min_rank: self.min_rank,
            budget: (!self.in_params).then_some(budget as usize),
            budget_params: self.in_params.then_some(budget),
        };
        let selected = select_ranks(&weights, &config)?;
        let mut left = 0;
        let _guard = tch::no_grad_guard();
        for (module, selection) in weights.iter().zip(&selected) {
            let mut mask = mask_of(model, &module.name)?;
            let mut keep = vec![0f32; module.weights.len()];
            for &j in &selection.kept {
                // A masked component has weight 0 and stays out, whatever room is left.
                if module.weights[j] > 0.0 {
                    keep[j] = 1.0;
                    left += 1;
                }
            }
            mask.f_copy_(&Tensor::from_slice(&keep).to_device(mask.device()))?;
        }
        Ok(left)
    }
}

/// Gives every selective adapter of `model` a mask of ones (every component kept) and returns
/// the masks as named tensors for the checkpoint (`<module>.selection_mask`); a cut writes
/// into them in place.
pub fn attach_masks(model: &mut dyn Model) -> Result<Vec<NamedParam>> {
    let names: Vec<String> = model.adapted_layers().into_iter().map(|(n, _)| n).collect();
    let mut masks = Vec::with_capacity(names.len());
    for name in names {
        let layer = model
            .lora_layer_mut(&name)
            .context("an adapted layer vanished")?;
        let Some(mut adapter) = layer.adapter().cloned() else {
            continue;
        };
        let Some(gate) = adapter.gate.as_mut() else {
            continue;
        };
        let logits = gate.logits.tensor();
        let mask = Tensor::ones(logits.size(), (logits.kind(), logits.device()));
        gate.mask = Some(mask.shallow_clone());
        // The clone shares the factors' and logits' slots: only the mask is new.
        layer.attach(adapter)?;
        masks.push(NamedParam {
            name: format!("{name}.selection_mask"),
            param: Param::new(mask),
        });
    }
    Ok(masks)
}

/// The mask of `name`'s selection gate (set by [`attach_masks`]).
fn mask_of(model: &dyn Model, name: &str) -> Result<Tensor> {
    model
        .lora_layer(name)
        .and_then(|layer| layer.adapter()?.gate.as_ref()?.mask.as_ref())
        .map(Tensor::shallow_clone)
        .with_context(|| format!("module {name} has no selection mask to prune"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            start: 100,
            until: 200,
            every: 25,
            full: 1000,
            target: 200,
            in_params: true,
            min_rank: 0,
        }
    }

    #[test]
    fn the_budget_shrinks_cubically_from_everything_to_the_target() {
        let s = schedule();
        let cuts: Vec<(u64, i64)> = (0..=300)
            .filter_map(|done| s.budget_after(done).map(|b| (done, b)))
            .collect();
        // (1 - 1/4)^3 * 800 = 337.5, (1/2)^3 * 800 = 100, (1/4)^3 * 800 = 12.5, then the target.
        assert_eq!(cuts, [(125, 538), (150, 300), (175, 213), (200, 200)]);
    }

    #[test]
    fn the_last_cut_falls_on_until_between_intervals() {
        let s = Schedule {
            every: 30,
            ..schedule()
        };
        let cuts: Vec<u64> = (0..=300).filter(|&d| s.budget_after(d).is_some()).collect();
        assert_eq!(cuts, [130, 160, 190, 200]);
        assert_eq!(s.budget_after(200), Some(200));
    }
}
