//! Rank selection: from the learned selection weights to each module's rank and kept components.
//!
//! Two modes (see [`SelectionConfig`]):
//!
//! * **Per-module threshold** (the paper): module `l` keeps the components with
//!   `a_lj >= lambda`, `lambda` defaulting to [`Gate::default_threshold`] (`1/k` for softmax,
//!   `0.5` for sigmoid). A weight within a relative [`THRESHOLD_TOLERANCE`] below `lambda` counts
//!   as passing, so a perfectly uniform softmax computed in f32 keeps all of its components.
//! * **Global budget**: the `K` components with the highest *comparable* score across all
//!   modules are kept. The score is `k_l * a_lj` for softmax (1 means "uniform", whatever `k_l`)
//!   and `a_lj` for sigmoid. The threshold is not used in this mode.
//! * **Global budget in parameters**: the same order, but each component costs its module's
//!   LoRA parameters per unit of rank ([`ModuleWeights::params_per_rank`], `in + out`): going
//!   down the order, a component is kept while its cost fits what is left of the budget (one
//!   that does not fit is passed over for cheaper ones below it). The order is by score alone;
//!   the cost decides what fits, so the budget is a parameter count, as AdaLoRA's and EVA's
//!   global budgets are, whatever the modules' shapes.
//!
//! In every mode every module keeps at least `min_rank` components (default 1; clamped to the
//! module's `k`), its largest weights. With `min_rank = 0` a module may keep none: rank 0, no
//! adapter at all in the retrain. Budget rules: a budget larger than the total number of
//! components keeps everything; a budget smaller than what `min_rank` reserves
//! (`sum_l min(min_rank, k_l)`) is an error rather than being silently raised.
//!
//! **Tie-breaking** is deterministic: among equal weights (or scores) the component with the
//! lower index wins, and in the global budget the module listed first wins.

use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::lora::{Gate, SelectionGate};
use crate::{Error, Result};

/// Relative slack below the threshold that still counts as passing it (float rounding).
pub const THRESHOLD_TOLERANCE: f64 = 1e-6;

/// How ranks are chosen. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectionConfig {
    /// The threshold `lambda` for every module; `None`: [`Gate::default_threshold`] per module.
    pub threshold: Option<f64>,
    /// Components every module keeps at least (clamped to the module's `k`; 0 lets a module
    /// end with rank 0).
    pub min_rank: usize,
    /// Keep the top `budget` components across all modules instead of thresholding.
    pub budget: Option<usize>,
    /// Keep the top components across all modules while their LoRA parameters fit this
    /// budget (exclusive with `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_params: Option<i64>,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            threshold: None,
            min_rank: 1,
            budget: None,
            budget_params: None,
        }
    }
}

/// One module's selection weights, the input of [`select_ranks`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleWeights {
    /// The module's name (e.g. `encoder.layer.0.attention.self.query`).
    pub name: String,
    /// How the weights were produced.
    pub gate: Gate,
    /// The selection weights `a` `[k]`.
    pub weights: Vec<f64>,
    /// LoRA parameters one unit of rank costs in this module (`in + out`); required by the
    /// parameter budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_per_rank: Option<i64>,
}

impl ModuleWeights {
    /// Computes the weights from raw logits in f64 (softmax or sigmoid).
    pub fn from_logits(name: impl Into<String>, gate: Gate, logits: &[f64]) -> Self {
        let weights = match gate {
            Gate::Softmax => {
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                let sum: f64 = exp.iter().sum();
                exp.iter().map(|e| e / sum).collect()
            }
            Gate::Sigmoid => logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect(),
        };
        ModuleWeights {
            name: name.into(),
            gate,
            weights,
            params_per_rank: None,
        }
    }

    /// The same weights with the module's cost per unit of rank (for the parameter budget).
    pub fn with_params_per_rank(mut self, cost: i64) -> Self {
        self.params_per_rank = Some(cost);
        self
    }

    /// Reads a module's current weights (mask included) from its [`SelectionGate`].
    pub fn from_gate(name: impl Into<String>, gate: &SelectionGate) -> Result<Self> {
        let weights = tch::no_grad(|| gate.weights().to_kind(Kind::Double));
        Ok(ModuleWeights {
            name: name.into(),
            gate: gate.gate,
            weights: Vec::<f64>::try_from(&weights.f_flatten(0, -1)?)?,
            params_per_rank: None,
        })
    }
}

/// How far a module's weights are from uniform (what the CLI reports).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uniformity {
    /// `max a / min a`: 1 when uniform, infinite when some weight is 0 and another is not
    /// (JSON has no infinity: it is written as `null` and read back as infinite).
    #[serde(deserialize_with = "null_is_infinite")]
    pub max_min_ratio: f64,
    /// Entropy of the weights normalised to sum 1, divided by `ln k`: 1 when uniform, towards 0
    /// as the mass concentrates on one component (1 by convention for `k = 1` or all zeros).
    pub normalized_entropy: f64,
}

/// Reads a ratio that serde_json wrote as `null` because it was infinite.
fn null_is_infinite<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

impl Uniformity {
    /// The statistics of `weights` (non-negative).
    pub fn of(weights: &[f64]) -> Self {
        let max = weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = weights.iter().copied().fold(f64::INFINITY, f64::min);
        let max_min_ratio = if max == min {
            1.0
        } else if min <= 0.0 {
            f64::INFINITY
        } else {
            max / min
        };
        let sum: f64 = weights.iter().sum();
        let normalized_entropy = if weights.len() < 2 || sum <= 0.0 {
            1.0
        } else {
            let h: f64 = weights
                .iter()
                .map(|w| w / sum)
                .filter(|p| *p > 0.0)
                .map(|p| -p * p.ln())
                .sum();
            h / (weights.len() as f64).ln()
        };
        Uniformity {
            max_min_ratio,
            normalized_entropy,
        }
    }
}

/// The result for one module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModuleSelection {
    /// The module's name.
    pub name: String,
    /// The chosen rank (`kept.len()`).
    pub rank: usize,
    /// Indices of the kept components, ascending.
    pub kept: Vec<usize>,
    /// The module's selection weights, as given.
    pub weights: Vec<f64>,
    /// How far the weights are from uniform.
    pub uniformity: Uniformity,
}

/// Chooses every module's rank and kept components. See the module docs for the rules.
pub fn select_ranks(
    modules: &[ModuleWeights],
    config: &SelectionConfig,
) -> Result<Vec<ModuleSelection>> {
    validate(modules, config)?;
    let costs = |what: &str| -> Result<Vec<i64>> {
        modules
            .iter()
            .map(|m| match m.params_per_rank {
                Some(c) if c > 0 => Ok(c),
                _ => Err(Error::InvalidConfig {
                    what: "parameter budget",
                    why: format!("{what}: module {} has no positive params_per_rank", m.name),
                }),
            })
            .collect()
    };
    let kept: Vec<Vec<usize>> = match (config.budget, config.budget_params) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidConfig {
                what: "rank budget",
                why: "set a budget in components or in parameters, not both".into(),
            });
        }
        (Some(budget), None) => global_budget(
            modules,
            &vec![1; modules.len()],
            budget as i64,
            config.min_rank,
        )?,
        (None, Some(params)) => {
            global_budget(modules, &costs("budget_params")?, params, config.min_rank)?
        }
        (None, None) => modules
            .iter()
            .map(|m| {
                let lambda = config
                    .threshold
                    .unwrap_or_else(|| m.gate.default_threshold(m.weights.len() as i64));
                threshold_module(&m.weights, lambda, config.min_rank)
            })
            .collect(),
    };
    Ok(modules
        .iter()
        .zip(kept)
        .map(|(m, mut kept)| {
            kept.sort_unstable();
            ModuleSelection {
                name: m.name.clone(),
                rank: kept.len(),
                kept,
                weights: m.weights.clone(),
                uniformity: Uniformity::of(&m.weights),
            }
        })
        .collect())
}

fn validate(modules: &[ModuleWeights], config: &SelectionConfig) -> Result<()> {
    if let Some(t) = config.threshold
        && !t.is_finite()
    {
        return Err(Error::InvalidConfig {
            what: "selection threshold",
            why: format!("must be finite, got {t}"),
        });
    }
    for m in modules {
        if m.weights.is_empty() {
            return Err(Error::InvalidConfig {
                what: "selection weights",
                why: format!("module {} has no components", m.name),
            });
        }
        if let Some(w) = m.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(Error::InvalidConfig {
                what: "selection weights",
                why: format!(
                    "module {} has weight {w}; weights must be finite and >= 0",
                    m.name
                ),
            });
        }
    }
    Ok(())
}

/// Component indices ordered by weight, largest first, lower index first among equals.
fn by_weight(weights: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&i, &j| weights[j].total_cmp(&weights[i]).then(i.cmp(&j)));
    order
}

fn threshold_module(weights: &[f64], lambda: f64, min_rank: usize) -> Vec<usize> {
    let cut = lambda - THRESHOLD_TOLERANCE * lambda.abs();
    let order = by_weight(weights);
    let passing = order.iter().filter(|&&j| weights[j] >= cut).count();
    let keep = passing.max(min_rank.min(weights.len()));
    order[..keep].to_vec()
}

/// The global budget of `budget` units, component `j` of module `l` costing `costs[l]`.
fn global_budget(
    modules: &[ModuleWeights],
    costs: &[i64],
    budget: i64,
    min_rank: usize,
) -> Result<Vec<Vec<usize>>> {
    let reserved: i64 = modules
        .iter()
        .zip(costs)
        .map(|(m, c)| min_rank.min(m.weights.len()) as i64 * c)
        .sum();
    if budget < reserved {
        let unit = if costs.iter().all(|&c| c == 1) {
            "components"
        } else {
            "LoRA parameters"
        };
        return Err(Error::InvalidConfig {
            what: "rank budget",
            why: format!(
                "{budget} {unit} is less than the {reserved} that min_rank = {min_rank} \
                 reserves across {} modules",
                modules.len()
            ),
        });
    }
    let mut kept: Vec<Vec<usize>> = Vec::with_capacity(modules.len());
    // (score, module, component) of everything not reserved.
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for (l, m) in modules.iter().enumerate() {
        let k = m.weights.len();
        let order = by_weight(&m.weights);
        let reserve = min_rank.min(k);
        kept.push(order[..reserve].to_vec());
        let scale = match m.gate {
            Gate::Softmax => k as f64,
            Gate::Sigmoid => 1.0,
        };
        candidates.extend(
            order[reserve..]
                .iter()
                .map(|&j| (scale * m.weights[j], l, j)),
        );
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut left = budget - reserved;
    for &(_, l, j) in &candidates {
        if costs[l] <= left {
            kept[l].push(j);
            left -= costs[l];
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(name: &str, weights: &[f64]) -> ModuleWeights {
        ModuleWeights {
            name: name.into(),
            gate: Gate::Softmax,
            weights: weights.to_vec(),
            params_per_rank: None,
        }
    }

    fn kept(result: &[ModuleSelection]) -> Vec<Vec<usize>> {
        result.iter().map(|m| m.kept.clone()).collect()
    }

    #[test]
    fn threshold_keeps_weights_at_or_above_one_over_k() -> Result<()> {
        let m = softmax("q", &[0.4, 0.1, 0.25, 0.25]);
        let r = select_ranks(&[m], &SelectionConfig::default())?;
        assert_eq!(r[0].kept, vec![0, 2, 3]);
        assert_eq!(r[0].rank, 3);
        Ok(())
    }

    #[test]
    fn uniform_weights_in_f32_keep_everything() -> Result<()> {
        // softmax of equal logits in f32 can land a hair below 1/k.
        let w = (1.0f32 / 3.0) as f64 * (1.0 - 1e-7);
        let r = select_ranks(&[softmax("q", &[w, w, w])], &SelectionConfig::default())?;
        assert_eq!(r[0].rank, 3);
        Ok(())
    }

    #[test]
    fn everything_below_threshold_keeps_min_rank_largest() -> Result<()> {
        let m = ModuleWeights {
            name: "v".into(),
            gate: Gate::Sigmoid,
            weights: vec![0.1, 0.3, 0.2, 0.3],
            params_per_rank: None,
        };
        let r = select_ranks(std::slice::from_ref(&m), &SelectionConfig::default())?;
        // Tie between 1 and 3: the lower index wins.
        assert_eq!(r[0].kept, vec![1]);
        let two = SelectionConfig {
            min_rank: 2,
            ..Default::default()
        };
        assert_eq!(select_ranks(&[m], &two)?[0].kept, vec![1, 3]);
        Ok(())
    }

    #[test]
    fn min_rank_is_clamped_to_k_and_zero_lets_a_module_keep_nothing() -> Result<()> {
        let big = SelectionConfig {
            min_rank: 10,
            ..Default::default()
        };
        assert_eq!(select_ranks(&[softmax("q", &[0.9, 0.1])], &big)?[0].rank, 2);
        let zero = SelectionConfig {
            min_rank: 0,
            ..Default::default()
        };
        let below = SelectionConfig {
            threshold: Some(0.95),
            ..zero
        };
        let chosen = select_ranks(&[softmax("q", &[0.9, 0.1])], &below)?;
        assert_eq!((chosen[0].rank, chosen[0].kept.len()), (0, 0));
        assert_eq!(
            select_ranks(&[softmax("q", &[0.9, 0.1])], &zero)?[0].rank,
            1
        );
        Ok(())
    }

    #[test]
    fn parameter_budget_passes_over_what_does_not_fit() -> Result<()> {
        // Scores k * a: wide = [2.4, 0.8, 0.8] at 10 per unit; narrow = [1.5, 1.5] at 4.
        let modules = [
            softmax("wide", &[0.6, 0.2, 0.2]).with_params_per_rank(10),
            softmax("narrow", &[0.5, 0.5]).with_params_per_rank(4),
        ];
        let config = |params| SelectionConfig {
            min_rank: 0,
            budget_params: Some(params),
            ..Default::default()
        };
        // 17: wide0 (10), narrow0 and narrow1 (4 + 4 > 7: only one), nothing else fits.
        assert_eq!(
            kept(&select_ranks(&modules, &config(17))?),
            [vec![0], vec![0]]
        );
        // 9: wide0 does not fit; both narrow components do.
        assert_eq!(
            kept(&select_ranks(&modules, &config(9))?),
            [vec![], vec![0, 1]]
        );
        // min_rank reserves its cost first, and a budget below it is an error.
        let reserve = SelectionConfig {
            min_rank: 1,
            ..config(13)
        };
        assert!(select_ranks(&modules, &reserve).is_err());
        // Costs are required, and the two budgets exclude each other.
        let bare = [softmax("q", &[0.5, 0.5])];
        assert!(select_ranks(&bare, &config(10)).is_err());
        let both = SelectionConfig {
            budget: Some(1),
            ..config(10)
        };
        assert!(select_ranks(&modules, &both).is_err());
        Ok(())
    }

    #[test]
    fn global_budget_compares_softmax_modules_of_different_k() -> Result<()> {
        // Scores k * a: q = [1.6, 0.4], v = [1.2, 1.2, 0.8, 0.8].
        let modules = [
            softmax("q", &[0.8, 0.2]),
            softmax("v", &[0.3, 0.3, 0.2, 0.2]),
        ];
        let config = SelectionConfig {
            budget: Some(4),
            ..Default::default()
        };
        // Reserved: q0 and v0; then v1 (1.2), then the tie v2 = v3 (0.8) goes to v2.
        assert_eq!(
            kept(&select_ranks(&modules, &config)?),
            [vec![0], vec![0, 1, 2]]
        );
        Ok(())
    }

    #[test]
    fn global_budget_ties_go_to_the_first_module() -> Result<()> {
        let modules = [softmax("a", &[0.5, 0.5]), softmax("b", &[0.5, 0.5])];
        let config = SelectionConfig {
            budget: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&select_ranks(&modules, &config)?),
            [vec![0, 1], vec![0]]
        );
        Ok(())
    }

    #[test]
    fn budget_larger_than_total_keeps_everything() -> Result<()> {
        let modules = [softmax("a", &[0.9, 0.1]), softmax("b", &[0.2, 0.3, 0.5])];
        let config = SelectionConfig {
            budget: Some(100),
            ..Default::default()
        };
        let r = select_ranks(&modules, &config)?;
        assert_eq!(kept(&r), [vec![0, 1], vec![0, 1, 2]]);
        Ok(())
    }

    #[test]
    fn budget_below_min_rank_reservation_is_an_error() {
        let modules = [softmax("a", &[0.9, 0.1]), softmax("b", &[0.2, 0.8])];
        let config = SelectionConfig {
            budget: Some(1),
            ..Default::default()
        };
        let err = select_ranks(&modules, &config).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    what: "rank budget",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_weights_are_rejected() {
        assert!(select_ranks(&[softmax("q", &[])], &SelectionConfig::default()).is_err());
        assert!(select_ranks(&[softmax("q", &[f64::NAN])], &SelectionConfig::default()).is_err());
    }

    #[test]
    fn uniformity_statistics() {
        let u = Uniformity::of(&[0.25; 4]);
        assert_eq!(u.max_min_ratio, 1.0);
        assert!((u.normalized_entropy - 1.0).abs() < 1e-12);
        let u = Uniformity::of(&[0.5, 0.25, 0.25]);
        assert_eq!(u.max_min_ratio, 2.0);
        let h = -(0.5f64 * 0.5f64.ln() + 0.5 * 0.25f64.ln()) / 3f64.ln();
        assert!((u.normalized_entropy - h).abs() < 1e-12);
        let u = Uniformity::of(&[1.0, 0.0]);
        assert_eq!(u.max_min_ratio, f64::INFINITY);
        assert_eq!(u.normalized_entropy, 0.0);
    }

    #[test]
    fn an_infinite_ratio_survives_json() {
        let uniformity = Uniformity::of(&[0.0, 2.0]);
        assert_eq!(uniformity.max_min_ratio, f64::INFINITY);
        let text = serde_json::to_string(&uniformity).expect("serializes");
        let back: Uniformity = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, uniformity);
    }

    #[test]
    fn weights_from_logits_and_gate_agree() -> Result<()> {
        let from_logits = ModuleWeights::from_logits("q", Gate::Softmax, &[0.0, 1.0, -1.0]);
        let sum: f64 = from_logits.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let gate =
            SelectionGate::with_options(3, Gate::Softmax, (tch::Kind::Double, tch::Device::Cpu));
        tch::no_grad(|| {
            gate.logits
                .tensor()
                .copy_(&tch::Tensor::from_slice(&[0.0f64, 1.0, -1.0]))
        });
        let from_gate = ModuleWeights::from_gate("q", &gate)?;
        for (x, y) in from_logits.weights.iter().zip(&from_gate.weights) {
            assert!((x - y).abs() < 1e-12);
        }
        Ok(())
    }
}
