//! The planted-rank task: ground truth for the rank search.
//!
//! The teacher is the base model plus, on the modules a pattern names, updates
//! `dW_m = s_m U_m V_m^T` of known rank `r*_m` (random orthonormal `U_m` `[out, r]` and `V_m`
//! `[in, r]`, every component of equal strength). `s_m` makes `||dW_m h|| / ||W_m h||` equal
//! `rho`, both norms taken over the calibration tokens (root of the summed squares over the
//! module's inputs `h` in the base model). The targets are the teacher's token distributions
//! through a random head of `classes` outputs; the student is the unmodified base with the same
//! head, frozen, so that only its adapters can close the gap, fitted by KL. The search and the
//! training run on this task as on any other: a search that finds structure puts its ranks
//! where the pattern planted them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use autolora_core::{Adapter, InputMoments, LoraLinear, Param};
use autolora_data::rng::{derive_seed, permutation, stream};
use autolora_data::tokenize::TextTokenizer;
use autolora_models::{AttentionImpl, Model};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::batches::DeviceBatch;
use crate::config::RunConfig;
use crate::task::{TaskData, TaskSpec};

/// The teacher's description in the run directory.
pub const REPORT_FILE: &str = "planted.json";

/// Spread (standard deviation over real tokens and classes) of the head's logits on the base
/// model. A fresh head (weights N(0, 0.02^2)) gives about 0.2 on MiniLM: near-uniform
/// distributions whose divergence barely registers the planted updates; at 2 they are peaked
/// enough to carry the teacher's differences and still far from one-hot.
const HEAD_LOGIT_STD: f64 = 2.0;

/// Training batches the strengths and the head's scale are calibrated on.
const CALIBRATION_BATCHES: usize = 8;

/// One linear layer of the teacher.
#[derive(Debug, Clone, Serialize)]
pub struct PlantedModule {
    /// Module path.
    pub name: String,
    /// `r*`: the rank of the planted update (0: none).
    pub planted_rank: i64,
    /// LoRA parameters per unit of rank (in + out features).
    pub params_per_rank: i64,
    /// `s`: the singular value of every planted component (0 where nothing is planted).
    pub strength: f64,
}

/// What `planted.json` records about the teacher.
#[derive(Debug, Clone, Serialize)]
pub struct PlantedReport {
    /// The pattern file.
    pub pattern: String,
    /// `||dW h|| / ||W h||` of every planted update.
    pub rho: f64,
    /// Width of the head.
    pub classes: i64,
    /// Whether the targets are shuffled across tokens (the control).
    pub shuffle: bool,
    /// Factor applied to the freshly initialised head.
    pub head_scale: f64,
    /// LoRA parameters of the planted ranks (the oracle allocation's size).
    pub planted_params: i64,
    /// KL from the teacher to the base model (the student before training), per evaluation
    /// split: the gap the adapters have to close.
    pub base_kl: BTreeMap<String, f64>,
    /// Every linear layer, in model order.
    pub modules: Vec<PlantedModule>,
}

/// Builds the teacher of `config.task.planted` and the task's batches with its distributions
/// as targets.
pub fn load(
    config: &RunConfig,
    tokenizer: &TextTokenizer,
    model_dir: &Path,
    device: Device,
) -> Result<TaskData> {
    let settings = &config.task.planted;
    let pattern_path = settings.pattern.as_ref().context(
        "task `planted` needs task.planted.pattern: a TOML file with a [ranks] table of \
         module path = rank",
    )?;
    let pattern = crate::ranks::read_rank_table(pattern_path)?;
    if !(settings.rho.is_finite() && settings.rho > 0.0) {
        bail!("task.planted.rho must be > 0, got {}", settings.rho);
    }
    if settings.classes < 2 {
        bail!(
            "task.planted.classes must be at least 2, got {}",
            settings.classes
        );
    }
    let sets = crate::task::conll_sets(config, tokenizer)?;
    let spec = TaskSpec::Planted {
        classes: settings.classes,
        head_scale: 1.0,
    };
    let mut data = crate::task::assemble(
        config,
        tokenizer.pad_id(),
        device,
        spec,
        sets.train,
        None,
        sets.evals,
    )?;

    let mut teacher = crate::session::load_base(
        config,
        model_dir,
        device,
        data.spec.model_task(),
        AttentionImpl::Fused,
    )?;
    let mut modules = check_pattern(teacher.as_ref(), &pattern, pattern_path)?;
    // Adapters compute in the model's kind (f32), whatever the base weights are stored in.
    let kind = teacher.kind();
    let _guard = tch::no_grad_guard();

    // One pass of the base model over the calibration sentences: the head's spread, and the
    // input moments of every module that gets an update. Each sentence runs alone, cut to its
    // length, so padding positions count in neither.
    for (name, layer) in teacher.linear_layers() {
        if pattern.get(&name).copied().unwrap_or(0) > 0 {
            layer.record_inputs();
        }
    }
    let calibration: Vec<&DeviceBatch> =
        data.train.all().iter().take(CALIBRATION_BATCHES).collect();
    let spread = logit_spread(teacher.as_ref(), &calibration)
        .context("calibrating the planted task's head")?;
    let head_scale = HEAD_LOGIT_STD / spread;
    data.spec = TaskSpec::Planted {
        classes: settings.classes,
        head_scale,
    };
    data.spec.prepare_head(teacher.as_ref());

    for (index, ((name, layer), module)) in teacher
        .linear_layers_mut()
        .into_iter()
        .zip(&mut modules)
        .enumerate()
    {
        let moments = layer.take_input_moments();
        let rank = module.planted_rank;
        let Some(moments) = moments.filter(|_| rank > 0) else {
            continue;
        };
        let seed = autolora_core::bilevel::derive_seed;
        tch::manual_seed(seed(config.run.seed, index as u64, stream::PLANTED_FACTORS));
        module.strength = plant(layer, rank, settings.rho, &moments, kind)
            .with_context(|| format!("planting the update of {name}"))?;
    }

    let mut splits: Vec<&mut [DeviceBatch]> = vec![
        data.search_train.all_mut(),
        data.search_val.all_mut(),
        data.train.all_mut(),
    ];
    splits.extend(data.evals.iter_mut().map(|e| e.batches.as_mut_slice()));
    for (index, batches) in splits.into_iter().enumerate() {
        for batch in batches.iter_mut() {
            batch.labels = distributions(teacher.as_ref(), batch)?;
        }
        if settings.shuffle {
            let seed = derive_seed(config.run.seed, index as u64, stream::PLANTED_SHUFFLE);
            shuffle_targets(batches, seed)?;
        }
    }

    // The teacher without its updates is the student before training.
    for (_, layer) in teacher.linear_layers_mut() {
        layer.detach()?;
    }
    let base_kl = data
        .evals
        .iter()
        .map(|set| {
            Ok((
                set.name.clone(),
                crate::evaluate::soft_target_kl(teacher.as_ref(), &set.batches)
                    .with_context(|| format!("scoring the untrained student on {}", set.name))?,
            ))
        })
        .collect::<Result<_>>()?;
    let planted_params = modules
        .iter()
        .map(|m| m.planted_rank * m.params_per_rank)
        .sum();
    let report = PlantedReport {
        pattern: pattern_path.display().to_string(),
        rho: settings.rho,
        classes: settings.classes,
        shuffle: settings.shuffle,
        head_scale,
        planted_params,
        base_kl,
        modules,
    };
    tracing::info!(
        planted_params,
        head_scale,
        base_kl = ?report.base_kl,
        "planted teacher ready"
    );
    data.planted = Some(report);
    Ok(data)
}

/// Attaches to `layer` the update `s U V^T` of rank `rank` (orthonormal factors drawn from
/// libtorch's generator as seeded) whose output has `rho` times the energy-root of the base
/// weight's on the recorded inputs: `||s U V^T h|| = s ||V^T h||` for orthonormal `U`, summed
/// over the inputs. The factors are of `kind` (the model's computation kind). Returns `s`.
fn plant(
    layer: &mut LoraLinear,
    rank: i64,
    rho: f64,
    moments: &InputMoments,
    kind: Kind,
) -> Result<f64> {
    let u = orthonormal(layer.out_features(), rank);
    let v_t = orthonormal(layer.in_features(), rank).tr().contiguous();
    let (base, along) = (
        moments.output_energy(layer.weight()),
        moments.output_energy(&v_t),
    );
    if !(base > 0.0 && along > 0.0) {
        bail!("the calibration inputs give the layer no output to measure the update against");
    }
    let strength = rho * (base / along).sqrt();
    let device = layer.weight().device();
    layer.attach(Adapter {
        a: Param::new(v_t.to_kind(kind).to_device(device)),
        b: Param::new((u * strength).to_kind(kind).to_device(device)),
        gate: None,
        scale: 1.0,
        dropout: 0.0,
    })?;
    Ok(strength)
}

/// Every linear layer with its planted rank; an error for a pattern entry that names no linear
/// layer or asks for more rank than the layer has, and for a pattern that plants nothing.
fn check_pattern(
    model: &dyn Model,
    pattern: &BTreeMap<String, i64>,
    path: &Path,
) -> Result<Vec<PlantedModule>> {
    let layers = model.linear_layers();
    for (name, &rank) in pattern {
        let Some((_, layer)) = layers.iter().find(|(n, _)| n == name) else {
            bail!(
                "{}: `{name}` is not a linear layer of this model (they are named like `{}`)",
                path.display(),
                layers.first().map(|(n, _)| n.as_str()).unwrap_or("")
            );
        };
        let most = layer.in_features().min(layer.out_features());
        if rank > most {
            bail!(
                "{}: rank {rank} for {name}, whose weight is {} x {}: at most {most}",
                path.display(),
                layer.out_features(),
                layer.in_features()
            );
        }
    }
    if pattern.values().all(|&r| r == 0) {
        bail!(
            "{}: the pattern plants nothing (every rank is 0)",
            path.display()
        );
    }
    Ok(layers
        .iter()
        .map(|(name, layer)| PlantedModule {
            name: name.clone(),
            planted_rank: pattern.get(name).copied().unwrap_or(0),
            params_per_rank: layer.in_features() + layer.out_features(),
            strength: 0.0,
        })
        .collect())
}

/// Standard deviation of the model's logits over the real tokens of `batches`, each sentence
/// run alone and cut to its length (no padding reaches the model).
fn logit_spread(model: &dyn Model, batches: &[&DeviceBatch]) -> Result<f64> {
    let mut values = Vec::new();
    for batch in batches {
        batch.for_each_sentence(|input| {
            let logits = model
                .forward_t(&input, false)?
                .logits
                .context("the planted task's model has no head")?;
            let classes = *logits.size().last().unwrap_or(&0);
            values.push(logits.reshape([-1, classes]).to_kind(Kind::Double));
            Ok(())
        })?;
    }
    let spread = Tensor::cat(&values, 0).std(true).double_value(&[]);
    if !(spread.is_finite() && spread > 0.0) {
        bail!(
            "expected the head's logits on the calibration sentences to vary, found a spread of \
             {spread}"
        );
    }
    Ok(spread)
}

/// The model's logits `[tokens, classes]` on every position of `batch`, flattened.
fn head_logits(model: &dyn Model, batch: &DeviceBatch) -> Result<Tensor> {
    let logits = model
        .forward_t(&batch.input(), false)?
        .logits
        .context("the planted task's model has no head")?;
    let classes = *logits.size().last().unwrap_or(&0);
    Ok(logits.reshape([-1, classes]))
}

/// Flat indices of the real (unpadded) positions of a `[b, s]` mask.
fn real_rows(mask: &Tensor) -> Tensor {
    mask.reshape([-1]).nonzero().squeeze_dim(1)
}

/// The model's token distributions `[b, s, classes]` on `batch`, zero at padding.
fn distributions(model: &dyn Model, batch: &DeviceBatch) -> Result<Tensor> {
    let size = batch.input_ids.size();
    let probs = head_logits(model, batch)?.softmax(-1, Kind::Float);
    let mask = batch.attention_mask.reshape([-1, 1]).to_kind(Kind::Float);
    Ok((probs * mask).reshape([size[0], size[1], -1]))
}

/// Moves every real token's target to another real token of the split (a seeded permutation
/// over all of them): inputs and targets no longer belong together.
fn shuffle_targets(batches: &mut [DeviceBatch], seed: u64) -> Result<()> {
    let mut rows = Vec::new();
    let mut places = Vec::new();
    for batch in batches.iter() {
        let classes = *batch.labels.size().last().unwrap_or(&0);
        let index = real_rows(&batch.attention_mask.ne(0));
        rows.push(batch.labels.reshape([-1, classes]).index_select(0, &index));
        places.push(index);
    }
    let all = Tensor::cat(&rows, 0);
    let n = all.size()[0] as usize;
    let order: Vec<i64> = permutation(n, seed).into_iter().map(|i| i as i64).collect();
    let shuffled = all.index_select(0, &Tensor::from_slice(&order).to_device(all.device()));
    let mut start = 0;
    for (batch, index) in batches.iter_mut().zip(places) {
        let size = batch.labels.size();
        let count = index.size()[0];
        let mut flat = batch.labels.reshape([-1, size[2]]).copy();
        let _ = flat.f_index_copy_(0, &index, &shuffled.narrow(0, start, count))?;
        batch.labels = flat.reshape(size.as_slice());
        start += count;
    }
    Ok(())
}

/// A random `[n, r]` matrix with orthonormal columns (QR of a Gaussian, signs fixed so the
/// distribution is uniform), drawn in f64 on the CPU from libtorch's seeded generator.
fn orthonormal(n: i64, r: i64) -> Tensor {
    let gaussian = Tensor::randn([n, r], (Kind::Double, Device::Cpu));
    let (q, upper) = Tensor::linalg_qr(&gaussian, "reduced");
    q * upper.diagonal(0, 0, 1).sign().unsqueeze(0)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn config(pattern: &Path) -> RunConfig {
        let mut config = RunConfig::default();
        config.task.name = "planted".into();
        config.task.data_dir = Some(fixtures().join("conll"));
        config.task.planted.pattern = Some(pattern.to_path_buf());
        config.task.planted.classes = 5;
        config.search.batch_size = 4;
        config.train.eval_batch_size = 8;
        config
    }

    fn pattern(dir: &Path, text: &str) -> Result<PathBuf> {
        let path = dir.join("pattern.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    #[test]
    fn a_planted_update_has_the_asked_rank_and_relative_strength() -> Result<()> {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(3);
        let f64s = (Kind::Double, Device::Cpu);
        let mut layer =
            LoraLinear::new(Tensor::randn([6, 9], f64s), Some(Tensor::randn([6], f64s)))?;
        let x = Tensor::randn([2, 7, 9], f64s);
        layer.record_inputs();
        let before = layer.forward_t(&x, false);
        let moments = layer.take_input_moments().expect("recording");
        plant(&mut layer, 3, 0.05, &moments, Kind::Double)?;
        let delta = layer.forward_t(&x, false) - &before;
        let base = layer.weight().shallow_clone();
        let w_x = x.matmul(&base.tr());
        let ratio = delta.norm().double_value(&[]) / w_x.norm().double_value(&[]);
        assert!((ratio - 0.05).abs() < 1e-9, "{ratio}");
        let update = layer.adapter().expect("planted").delta_weight();
        assert_eq!(update.linalg_matrix_rank(1e-9, false).int64_value(&[]), 3);
        // Every component equally strong: the update's three singular values coincide.
        let (_, sv, _) = update.svd(true, false);
        let (big, small) = (sv.double_value(&[0]), sv.double_value(&[2]));
        assert!((big - small).abs() < 1e-9 * big, "{sv:?}");
        Ok(())
    }

    #[test]
    fn the_teacher_gives_distributions_and_records_its_pattern() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = pattern(
            dir.path(),
            "[ranks]\n\"encoder.layer.1.output.dense\" = 4\n\"encoder.layer.0.attention.self.query\" = 0\n",
        )?;
        let config = config(&path);
        let model_dir = fixtures().join("tiny-bert");
        let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json"), 64)?;
        let data = load(&config, &tokenizer, &model_dir, Device::Cpu)?;
        let report = data.planted.as_ref().expect("a planted report");
        let planted: Vec<(&str, i64)> = report
            .modules
            .iter()
            .filter(|m| m.planted_rank > 0)
            .map(|m| (m.name.as_str(), m.planted_rank))
            .collect();
        assert_eq!(planted, [("encoder.layer.1.output.dense", 4)]);
        // output.dense is [32, 37]: one unit of rank costs 69 parameters.
        assert_eq!(report.planted_params, 4 * 69);
        assert!(
            report
                .modules
                .iter()
                .all(|m| (m.strength > 0.0) == (m.planted_rank > 0))
        );
        assert!(report.base_kl["dev"] > 0.0, "{:?}", report.base_kl);
        for batch in data.train.all().iter().chain(&data.evals[0].batches) {
            let sums = batch.labels.sum_dim_intlist(-1, false, Kind::Double);
            let mask = batch.attention_mask.to_kind(Kind::Double);
            assert!(
                sums.allclose(&mask, 1e-5, 1e-6, false),
                "targets sum to 1 on real tokens, 0 on padding"
            );
        }
        // The student starts as the teacher without its update: its divergence is base_kl.
        let session_spec = &data.spec;
        let student = crate::session::load_base(
            &config,
            &model_dir,
            Device::Cpu,
            session_spec.model_task(),
            AttentionImpl::Fused,
        )?;
        session_spec.prepare_head(student.as_ref());
        assert!(student.trainable_params().is_empty(), "the head is frozen");
        let kl = crate::evaluate::soft_target_kl(student.as_ref(), &data.evals[0].batches)?;
        assert!(
            (kl - report.base_kl["dev"]).abs() < 1e-6,
            "{kl} vs {:?}",
            report.base_kl
        );
        Ok(())
    }

    #[test]
    fn the_ablation_readout_scores_each_unit_of_rank_by_the_loss_it_gains() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = pattern(
            dir.path(),
            "[ranks]\n\"encoder.layer.1.output.dense\" = 2\n",
        )?;
        let mut config = config(&path);
        let model_dir = fixtures().join("tiny-bert");
        let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json"), 64)?;
        let data = load(&config, &tokenizer, &model_dir, Device::Cpu)?;
        let mut student = crate::session::load_base(
            &config,
            &model_dir,
            Device::Cpu,
            data.spec.model_task(),
            AttentionImpl::Fused,
        )?;
        data.spec.prepare_head(student.as_ref());
        let lora = autolora_core::LoraConfig {
            rank: 3,
            alpha: 3.0,
            dropout: 0.0,
        };
        // LoRA on the planted module and on one without a planted update, trained a little
        // (plain gradient descent on the teacher's targets).
        let trained = "encoder.layer.1.output.dense";
        let other = "encoder.layer.0.attention.self.query";
        student.inject_lora(
            &[trained.into(), other.into()],
            &lora,
            Some(autolora_core::Gate::Sigmoid),
        )?;
        let params = student.lora_params();
        for step in 0..40u64 {
            let loss = data.search_train.at(step).loss(student.as_ref(), true)?;
            loss.backward();
            let _guard = tch::no_grad_guard();
            for p in &params {
                let mut t = p.param.tensor();
                let grad = t.grad();
                let _ = t.f_sub_(&(&grad * 0.5))?;
                let _ = t.grad().zero_();
            }
        }
        let calibration: Vec<_> = data.search_val.all().iter().take(2).collect();
        let loss = |model: &dyn Model| -> Result<f64> {
            let _guard = tch::no_grad_guard();
            let mut sum = 0.0;
            for batch in &calibration {
                sum += batch.loss(model, false)?.double_value(&[]);
            }
            Ok(sum)
        };
        let before = loss(student.as_ref())?;
        config.search.readout = crate::ranks::Readout::Ablation;
        config.search.budget_params = Some(2 * 69);
        let ranks = crate::ranks::RanksFile::from_model(
            student.as_mut(),
            &config.lora,
            &config.search,
            &calibration,
        )?;
        // The readout leaves the model as it found it.
        assert_eq!(loss(student.as_ref())?, before);
        assert_eq!(ranks.modules.len(), 2);
        let planted = ranks
            .modules
            .iter()
            .find(|m| m.name == trained)
            .expect("scored");
        let w = &planted.weights;
        // Which direction of the briefly trained update helps most depends on its random start
        // (libtorch's global generator, shared with other test threads), so no order is asserted.
        let top = w.iter().copied().fold(0.0, f64::max);
        assert!(w.iter().all(|&v| v >= 0.0) && top > 0.0, "{w:?}");
        // Each unit of rank is scored on its own: not the whole update's loss k times over.
        assert!(w.iter().any(|&v| (v - top).abs() > 1e-3 * top), "{w:?}");
        let whole = {
            let layer = student.lora_layer_mut(trained).expect("adapted");
            let adapter = layer.detach()?.expect("adapter");
            let without = loss(student.as_ref())?;
            student
                .lora_layer_mut(trained)
                .expect("adapted")
                .attach(adapter)?;
            (without - before) / calibration.len() as f64
        };
        // The gains telescope to the whole update's (more where a clamped step lost loss).
        let sum: f64 = w.iter().sum();
        assert!(
            sum >= whole - 1e-6 * whole.abs().max(1e-3),
            "{w:?} vs the whole update's {whole}"
        );
        // The budget (two units of the planted module's rank) goes to the best directions.
        let kept: i64 = ranks.lora_params(|m| m.rank as i64)?;
        assert!(kept <= 2 * 69, "{kept}");
        Ok(())
    }

    #[test]
    fn shuffled_targets_are_the_same_distributions_on_other_tokens() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = pattern(
            dir.path(),
            "[ranks]\n\"encoder.layer.0.intermediate.dense\" = 2\n",
        )?;
        let mut config = config(&path);
        let model_dir = fixtures().join("tiny-bert");
        let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json"), 64)?;
        // One teacher, shuffled in place: two loads would draw the planted factors from
        // libtorch's global generator, which tests on other threads advance meanwhile.
        let mut data = load(&config, &tokenizer, &model_dir, Device::Cpu)?;
        let rows = |data: &TaskData| -> Tensor {
            let rows: Vec<Tensor> = data
                .train
                .all()
                .iter()
                .map(|b| {
                    let flat = b.labels.reshape([-1, 5]);
                    flat.index_select(0, &real_rows(&b.attention_mask.ne(0)))
                })
                .collect();
            Tensor::cat(&rows, 0)
        };
        let a = rows(&data);
        shuffle_targets(data.train.all_mut(), 7)?;
        let b = rows(&data);
        assert_eq!(a.size(), b.size());
        // The same multiset of rows (their sum), but not on the same tokens.
        assert!(a.sum_dim_intlist(0, false, Kind::Double).allclose(
            &b.sum_dim_intlist(0, false, Kind::Double),
            1e-4,
            1e-6,
            false
        ));
        let moved = (a - b)
            .abs()
            .sum_dim_intlist(-1, false, Kind::Float)
            .gt(1e-6)
            .sum(Kind::Int64)
            .int64_value(&[]);
        assert!(moved > 0);
        // Through the setting: still one distribution per real token, zeros at padding.
        config.task.planted.shuffle = true;
        let shuffled = load(&config, &tokenizer, &model_dir, Device::Cpu)?;
        for batch in shuffled.train.all() {
            let sums = batch.labels.sum_dim_intlist(-1, false, Kind::Double);
            let mask = batch.attention_mask.to_kind(Kind::Double);
            assert!(sums.allclose(&mask, 1e-5, 1e-6, false));
        }
        Ok(())
    }

    #[test]
    fn patterns_that_name_no_layer_or_too_much_rank_are_errors() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let model_dir = fixtures().join("tiny-bert");
        let tokenizer = TextTokenizer::from_file(&model_dir.join("tokenizer.json"), 64)?;
        for (text, expect) in [
            (
                "[ranks]\n\"encoder.layer.9.output.dense\" = 2\n",
                "is not a linear layer",
            ),
            (
                "[ranks]\n\"encoder.layer.0.output.dense\" = 33\n",
                "at most 32",
            ),
            (
                "[ranks]\n\"encoder.layer.0.output.dense\" = 0\n",
                "plants nothing",
            ),
            (
                "[ranks]\n\"encoder.layer.0.output.dense\" = -1\n",
                "ranks are >= 0",
            ),
            ("ranks = 3\n", "expected a TOML rank table"),
        ] {
            let path = pattern(dir.path(), text)?;
            let err = load(&config(&path), &tokenizer, &model_dir, Device::Cpu)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(
                err.contains(expect) && err.contains("pattern.toml"),
                "{text}: {err}"
            );
        }
        Ok(())
    }
}
