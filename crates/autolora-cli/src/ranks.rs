//! `ranks.json`: the search's result as data (per module: rank, kept components, selection
//! weights and how far they moved from uniform), and the `ranks` command's table and heatmap.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use autolora_core::Gate;
use autolora_core::LoraLinear;
use autolora_core::selection::{ModuleSelection, ModuleWeights, SelectionConfig, select_ranks};
use autolora_models::Model;
use serde::{Deserialize, Serialize};

use crate::batches::DeviceBatch;
use crate::config::{LoraSettings, SearchConfig};
use crate::heatmap::RankGrid;

/// Below this max/min ratio a module's selection weights are "still uniform": the threshold
/// would split them on noise.
pub const UNIFORM_RATIO: f64 = 1.05;

/// The `ranks.json` layout this build writes: 1 added `params_per_rank` and the version
/// itself (files without it are version 0); 2 added `readout` and `selection.budget_params`.
pub const FORMAT_VERSION: u32 = 2;

/// The contents of `ranks.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RanksFile {
    /// The layout's version ([`FORMAT_VERSION`] when written by this build).
    #[serde(default)]
    pub format_version: u32,
    /// Components per module during the search.
    pub k: i64,
    /// The selection gate.
    pub gate: Gate,
    /// What the ranks were read from (the weights of `modules` are singular values, not
    /// selection weights, when [`Readout::reads_updates`]).
    #[serde(default)]
    pub readout: Readout,
    /// How ranks were chosen.
    pub selection: SelectionConfig,
    /// Per module, in model order.
    pub modules: Vec<ModuleSelection>,
    /// LoRA parameters one unit of rank costs in each module (its input plus output
    /// features), so allocations can be compared by size when modules differ in shape.
    #[serde(default)]
    pub params_per_rank: BTreeMap<String, i64>,
}

impl RanksFile {
    /// Reads the ranks off a searched model by the search's readout: its selection weights
    /// (AutoLoRA), or the singular values of its trained updates, as they are or scored by
    /// ablation on the batches of `calibration` (which only [`Readout::Ablation`] runs).
    pub fn from_model(
        model: &mut dyn Model,
        lora: &LoraSettings,
        search: &SearchConfig,
        calibration: &[&DeviceBatch],
    ) -> Result<Self> {
        let weights = match search.readout {
            Readout::Selection => selection_weights(&model.adapted_layers())?,
            Readout::SingularValues => singular_values(&model.adapted_layers())?,
            Readout::Ablation => ablations(model, calibration)?,
        };
        let layers = model.adapted_layers();
        let params_per_rank = layers
            .iter()
            .map(|(name, layer)| (name.clone(), layer.in_features() + layer.out_features()))
            .collect();
        let selection = SelectionConfig {
            threshold: search.threshold,
            min_rank: search.min_rank,
            budget: search.budget,
            budget_params: search.budget_params,
        };
        Ok(RanksFile {
            format_version: FORMAT_VERSION,
            k: lora.k,
            gate: lora.gate,
            readout: search.readout,
            selection,
            modules: select_ranks(&weights, &selection)?,
            params_per_rank,
        })
    }

    /// The ranks as a training plan (module path -> rank).
    pub fn plan(&self) -> crate::train::RankPlan {
        self.modules
            .iter()
            .map(|m| (m.name.clone(), m.rank as i64))
            .collect()
    }

    /// LoRA parameters of `rank(module)` on every module: the size of an allocation.
    pub fn lora_params(&self, rank: impl Fn(&ModuleSelection) -> i64) -> Result<i64> {
        self.modules
            .iter()
            .map(|m| {
                let cost = self.params_per_rank.get(&m.name).with_context(|| {
                    format!("ranks.json has no parameter count for module {}", m.name)
                })?;
                Ok(rank(m) * cost)
            })
            .sum()
    }

    /// Sum of the ranks.
    pub fn total_rank(&self) -> usize {
        self.modules.iter().map(|m| m.rank).sum()
    }

    /// Modules whose selection weights stayed within [`UNIFORM_RATIO`] of uniform (none when
    /// the ranks were read off singular values: equal ones are a finding, not a stalled search).
    pub fn still_uniform(&self) -> Vec<&ModuleSelection> {
        if self.readout.reads_updates() {
            return Vec::new();
        }
        self.modules
            .iter()
            .filter(|m| m.uniformity.max_min_ratio < UNIFORM_RATIO)
            .collect()
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(autolora_data::atomic::write(
            path,
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?)
    }

    /// Reads a `ranks.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading ranks file {}", path.display()))?;
        let file: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a ranks file written by `autolora search`",
                path.display()
            )
        })?;
        if file.format_version > FORMAT_VERSION {
            bail!(
                "{} has ranks.json format version {}; this autolora reads up to {FORMAT_VERSION}",
                path.display(),
                file.format_version
            );
        }
        Ok(file)
    }

    /// The layers-by-module grid.
    pub fn grid(&self) -> RankGrid {
        RankGrid::new(
            self.modules
                .iter()
                .map(|m| (m.name.as_str(), m.rank as i64)),
        )
    }

    /// Draws the heatmap (SVG).
    pub fn draw_heatmap(&self, path: &Path) -> Result<()> {
        let title = format!(
            "AutoLoRA ranks (k = {}, total {})",
            self.k,
            self.total_rank()
        );
        self.grid().draw(path, &title, self.k)
    }

    /// The rank table with each module's weight spread, for the terminal.
    pub fn table(&self) -> String {
        let mut out = self.grid().to_table();
        out += &format!(
            "total rank {} over {} modules (mean {:.2}, k = {})\n",
            self.total_rank(),
            self.modules.len(),
            self.total_rank() as f64 / self.modules.len().max(1) as f64,
            self.k
        );
        let ratios: Vec<f64> = self
            .modules
            .iter()
            .map(|m| m.uniformity.max_min_ratio)
            .collect();
        let entropies: Vec<f64> = self
            .modules
            .iter()
            .map(|m| m.uniformity.normalized_entropy)
            .collect();
        let what = match self.readout {
            Readout::Selection => "selection weights vs uniform",
            Readout::SingularValues => "singular values of the trained updates",
            Readout::Ablation => "validation loss each unit of rank gains (ablation)",
        };
        out += &format!(
            "{what}: max/min ratio {:.3} to {:.3}, normalised entropy {:.4} to {:.4}\n",
            min(&ratios),
            max(&ratios),
            min(&entropies),
            max(&entropies)
        );
        let uniform = self.still_uniform();
        if !uniform.is_empty() {
            out += &format!(
                "WARNING: {} of {} modules kept selection weights within {:.0}% of uniform (max/min < {UNIFORM_RATIO}); \
                 their ranks split on noise. Search longer or raise search.outer_lr.\n",
                uniform.len(),
                self.modules.len(),
                (UNIFORM_RATIO - 1.0) * 100.0
            );
        }
        out
    }
}

/// How the search's ranks are read off the searched model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readout {
    /// The selection weights (AutoLoRA).
    #[default]
    Selection,
    /// The singular values of every module's trained update `s B diag(a) A`, compared across
    /// modules (with a global budget): with `search.warmup_steps = search.steps` this is
    /// train-then-SVD, the cheap reference without any bilevel step. The kept "components" are
    /// then singular directions, not the adapter's components.
    SingularValues,
    /// The trained updates' singular directions scored by ablation: a module's r-th largest
    /// direction scores what the validation loss gains when the module's update, cut to its
    /// r - 1 largest directions, gets that one back (every other module whole). The loss each
    /// unit of rank is worth, in one unit across modules of any shape or position.
    Ablation,
}

impl Readout {
    /// Whether the ranks are read off the trained updates (singular directions compared across
    /// modules) rather than the selection weights.
    pub fn reads_updates(self) -> bool {
        self != Readout::Selection
    }
}

/// Batches of the search's validation split that [`Readout::Ablation`] scores the updates on.
pub const READOUT_BATCHES: usize = 4;

/// Every gated module's selection weights.
pub(crate) fn selection_weights(layers: &[(String, &LoraLinear)]) -> Result<Vec<ModuleWeights>> {
    let weights = layers
        .iter()
        .filter_map(|(name, layer)| {
            let gate = layer.adapter()?.gate.as_ref()?;
            let cost = layer.in_features() + layer.out_features();
            Some(ModuleWeights::from_gate(name.clone(), gate).map(|w| w.with_params_per_rank(cost)))
        })
        .collect::<autolora_core::Result<Vec<_>>>()?;
    Ok(weights)
}

/// Every adapted module's singular values, divided by the largest of all modules, as scores
/// the global budget compares as they are (as it compares sigmoid weights).
fn singular_values(layers: &[(String, &LoraLinear)]) -> Result<Vec<ModuleWeights>> {
    let _guard = tch::no_grad_guard();
    let mut all = Vec::new();
    for (name, layer) in layers {
        let Some(adapter) = layer.adapter() else {
            continue;
        };
        let (_, sv, _) = adapter
            .delta_weight()
            .to_kind(tch::Kind::Double)
            .f_svd(true, false)?;
        // An update of rank k has at most k non-zero singular values.
        let k = adapter.rank().min(sv.size()[0]);
        let values = Vec::<f64>::try_from(sv.narrow(0, 0, k))?;
        all.push((
            name.clone(),
            layer.in_features() + layer.out_features(),
            values,
        ));
    }
    let top = all
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0, f64::max);
    if !(top.is_finite() && top > 0.0) {
        bail!("the trained updates are all zero: nothing to read singular values from");
    }
    Ok(all
        .into_iter()
        .map(|(name, cost, values)| {
            ModuleWeights {
                name,
                gate: Gate::Sigmoid,
                weights: values.iter().map(|v| v / top).collect(),
                params_per_rank: None,
            }
            .with_params_per_rank(cost)
        })
        .collect())
}

/// Every adapted module's singular directions scored on `calibration` as
/// [`Readout::Ablation`] says: k + 1 losses per module (its update cut to rank 0..=k).
fn ablations(model: &mut dyn Model, calibration: &[&DeviceBatch]) -> Result<Vec<ModuleWeights>> {
    if calibration.is_empty() {
        bail!("the ablation readout needs validation sentences to measure the updates on");
    }
    let _guard = tch::no_grad_guard();
    let loss = |model: &dyn Model| -> Result<f64> {
        let mut sum = 0.0;
        for batch in calibration {
            sum += batch.loss(model, false)?.double_value(&[]);
        }
        Ok(sum / calibration.len() as f64)
    };
    let full = loss(model)?;
    let names: Vec<String> = model.adapted_layers().into_iter().map(|(n, _)| n).collect();
    let mut scores = Vec::with_capacity(names.len());
    for name in &names {
        let layer = model
            .lora_layer_mut(name)
            .context("an adapted layer vanished")?;
        let cost = layer.in_features() + layer.out_features();
        let trained = layer
            .detach()?
            .context("an adapted layer lost its adapter")?;
        let (u, sv, v) = trained
            .delta_weight()
            .to_kind(tch::Kind::Double)
            .f_svd(true, true)?;
        let k = trained.rank().min(sv.size()[0]);
        let kind = trained.a.tensor().kind();
        // The loss with the update cut to its r largest directions, r = 0..k (k: the whole
        // update, `full`); direction r scores what the loss gains going from r to r + 1.
        let sv = sv.narrow(0, 0, k);
        let (u, v_t) = (u.narrow(1, 0, k), v.narrow(1, 0, k).tr().to_kind(kind));
        let mut at_rank = Vec::with_capacity(k as usize + 1);
        for r in 0..k {
            let cut = sv.index_fill(
                0,
                &tch::Tensor::arange_start(r, k, (tch::Kind::Int64, sv.device())),
                0.0,
            );
            let truncated = autolora_core::Adapter {
                a: autolora_core::Param::new(v_t.shallow_clone()),
                b: autolora_core::Param::new((&u * cut.unsqueeze(0)).to_kind(kind)),
                gate: None,
                scale: 1.0,
                dropout: 0.0,
            };
            model
                .lora_layer_mut(name)
                .context("an adapted layer vanished")?
                .attach(truncated)?;
            at_rank.push(loss(model)?);
        }
        at_rank.push(full);
        // A direction that does not lower the loss is worth nothing.
        let lost: Vec<f64> = at_rank.windows(2).map(|w| (w[0] - w[1]).max(0.0)).collect();
        model
            .lora_layer_mut(name)
            .context("an adapted layer vanished")?
            .attach(trained)?;
        scores.push(
            ModuleWeights {
                name: name.clone(),
                gate: Gate::Sigmoid,
                weights: lost,
                params_per_rank: None,
            }
            .with_params_per_rank(cost),
        );
    }
    Ok(scores)
}

/// Reads a rank table: a TOML file whose `[ranks]` table maps full module paths to ranks
/// (`"encoder.layer.4.output.dense" = 8`), the format of planted patterns and of hand-written
/// allocations. Ranks are integers >= 0; a module not listed has rank 0.
pub fn read_rank_table(path: &Path) -> Result<crate::train::RankPlan> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RankTable {
        ranks: BTreeMap<String, i64>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rank table {}", path.display()))?;
    let table: RankTable = toml::from_str(&text).with_context(|| {
        format!(
            "{}: expected a TOML rank table, a `[ranks]` table of module path = rank",
            path.display()
        )
    })?;
    if let Some((name, rank)) = table.ranks.iter().find(|(_, r)| **r < 0) {
        bail!(
            "{}: module {name} has rank {rank}; ranks are >= 0",
            path.display()
        );
    }
    Ok(table.ranks)
}

/// The ranks of a `train.ranks` file: a rank table (`.toml`) or a `ranks.json`.
pub fn read_plan(path: &Path) -> Result<crate::train::RankPlan> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => read_rank_table(path),
        _ => Ok(RanksFile::load(path)
            .context("(a rank table must be a `.toml` file)")?
            .plan()),
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}
