//! Checkpoints: named tensors in one safetensors file, written atomically.
//!
//! A checkpoint holds what a loop needs to continue exactly where it stopped: the trainable
//! tensors (LoRA factors, task head, selection logits) and the optimizers' moments and step
//! counts, plus the loop's step number. No random-generator state is saved: every step
//! derives its seeds from the run seed and the step index, so a resumed run repeats the
//! uninterrupted one.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use autolora_core::NamedParam;
use autolora_core::optim::{Optimizer, OptimizerSnapshot};
use tch::{Device, Kind, Tensor};

/// Named tensors on their way to or from disk.
#[derive(Default)]
pub struct Checkpoint {
    tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Records the loop's step.
    pub fn set_step(&mut self, step: u64) {
        self.tensors
            .insert("meta.step".into(), Tensor::from_slice(&[step as i64]));
    }

    /// Records a number of the loop's state under `name` (`meta.<name>`).
    pub fn set_value(&mut self, name: &str, value: f64) {
        self.tensors
            .insert(format!("meta.{name}"), Tensor::from_slice(&[value]));
    }

    /// The number recorded under `name`, if any.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.tensors
            .get(&format!("meta.{name}"))
            .map(|t| t.double_value(&[0]))
    }

    /// The recorded step.
    pub fn step(&self) -> Result<u64> {
        let t = self.get("meta.step")?;
        Ok(t.int64_value(&[0]) as u64)
    }

    /// Adds the current values of `params` under `prefix`.
    pub fn put_params(&mut self, prefix: &str, params: &[NamedParam]) {
        for p in params {
            self.tensors.insert(
                format!("{prefix}.{}", p.name),
                p.param.tensor().detach().to_device(Device::Cpu).copy(),
            );
        }
    }

    /// Copies the stored values back into `params` (in place, so models holding them see it).
    pub fn load_params(&self, prefix: &str, params: &[NamedParam]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for p in params {
            let stored = self.get(&format!("{prefix}.{}", p.name))?;
            let mut target = p.param.tensor();
            if stored.size() != target.size() {
                bail!(
                    "checkpoint tensor {prefix}.{} has shape {:?}, the model expects {:?}",
                    p.name,
                    stored.size(),
                    target.size()
                );
            }
            target.f_copy_(stored)?;
        }
        Ok(())
    }

    /// Adds an optimizer's moments and step counts under `prefix`.
    pub fn put_optimizer(&mut self, prefix: &str, optimizer: &Optimizer) {
        let snapshot = optimizer.snapshot();
        let cpu = |t: &Tensor| t.to_device(Device::Cpu).copy();
        for (i, t) in snapshot.exp_avg.iter().enumerate() {
            self.tensors.insert(format!("{prefix}.exp_avg.{i}"), cpu(t));
        }
        for (i, t) in snapshot.exp_avg_sq.iter().enumerate() {
            self.tensors
                .insert(format!("{prefix}.exp_avg_sq.{i}"), cpu(t));
        }
        let steps: Vec<i64> = snapshot.steps.iter().map(|&s| s as i64).collect();
        self.tensors
            .insert(format!("{prefix}.steps"), Tensor::from_slice(&steps));
    }

    /// Restores an optimizer saved by [`put_optimizer`](Self::put_optimizer); its parameters
    /// must already hold their restored values.
    pub fn load_optimizer(&self, prefix: &str, optimizer: &mut Optimizer) -> Result<()> {
        let current = optimizer.snapshot();
        let device = |t: &Tensor, like: &Tensor| t.to_device(like.device()).to_kind(like.kind());
        let moments = |name: &str, like: &[Tensor]| -> Result<Vec<Tensor>> {
            like.iter()
                .enumerate()
                .map(|(i, l)| Ok(device(self.get(&format!("{prefix}.{name}.{i}"))?, l)))
                .collect()
        };
        let steps = self.get(&format!("{prefix}.steps"))?;
        let steps: Vec<i64> = Vec::<i64>::try_from(steps.to_kind(Kind::Int64))?;
        let snapshot = OptimizerSnapshot {
            params: current.params.iter().map(Tensor::shallow_clone).collect(),
            exp_avg: moments("exp_avg", &current.exp_avg)?,
            exp_avg_sq: moments("exp_avg_sq", &current.exp_avg_sq)?,
            steps: steps.into_iter().map(|s| s as u64).collect(),
        };
        optimizer
            .restore(&snapshot)
            .with_context(|| format!("restoring optimizer `{prefix}` from the checkpoint"))
    }

    fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .with_context(|| format!("the checkpoint has no tensor `{name}`"))
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        autolora_models::write_safetensors(path, &named)
            .with_context(|| format!("writing checkpoint {}", path.display()))
    }

    /// Reads a checkpoint.
    pub fn load(path: &Path) -> Result<Self> {
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        Ok(Checkpoint {
            tensors: tensors.into_iter().collect(),
        })
    }
}
