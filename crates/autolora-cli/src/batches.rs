//! Batches as tensors, and the step-indexed order in which loops visit them.
//!
//! A loop asks for "the batch of step s" instead of iterating: the epoch is `s / n`, and the
//! order of each epoch is a permutation drawn from a generator seeded with (run seed, epoch,
//! the split's stream).
//! So the batch of any step is known without replaying the steps before it, which is what
//! lets `--resume` continue exactly where an interrupted run stopped.

use anyhow::Result;
use autolora_data::batch::{Batch, Labels};
use autolora_data::rng::{derive_seed, permutation};
use autolora_models::{Model, ModelInput};
use tch::{Device, Kind, Tensor};

/// One padded batch on the device.
pub struct DeviceBatch {
    /// Token ids [b, s].
    pub input_ids: Tensor,
    /// 1 for tokens, 0 for padding [b, s].
    pub attention_mask: Tensor,
    /// Segment ids [b, s] of pairs; `None` when every id is 0 (single texts, causal LM), which
    /// encoders read as all zeros and decoders, having no segment embedding, require.
    pub token_type_ids: Option<Tensor>,
    /// Labels: [b, s] per token (-100 ignored), [b] per example, [b] f32 for regression, or
    /// [b, s, classes] f32 distributions per token (all zero at padding) for distillation.
    pub labels: Tensor,
    /// Real (unpadded) tokens in the batch, for throughput.
    pub tokens: i64,
}

impl DeviceBatch {
    /// Builds the tensors of a data batch on `device`.
    pub fn new(batch: &Batch, device: Device) -> Result<Self> {
        let shape = [batch.batch_size as i64, batch.seq_len as i64];
        let ids = |v: &[i64]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?.f_view(shape)?.to(device))
        };
        let labels = match &batch.labels {
            Labels::Tokens(l) => ids(l)?,
            Labels::Classes(l) => Tensor::f_from_slice(l)?.to(device),
            Labels::Scores(l) => Tensor::f_from_slice(l)?.to_kind(Kind::Float).to(device),
        };
        Ok(DeviceBatch {
            input_ids: ids(&batch.input_ids)?,
            attention_mask: ids(&batch.attention_mask)?,
            token_type_ids: if batch.token_type_ids.iter().any(|&t| t != 0) {
                Some(ids(&batch.token_type_ids)?)
            } else {
                None
            },
            labels,
            tokens: batch.attention_mask.iter().sum(),
        })
    }

    /// The model input view of this batch.
    pub fn input(&self) -> ModelInput<'_> {
        ModelInput {
            input_ids: &self.input_ids,
            attention_mask: &self.attention_mask,
            token_type_ids: self.token_type_ids.as_ref(),
        }
    }

    /// Calls `f` with each sentence of the batch alone, cut to its length: passes in which
    /// padding positions must not count (calibration, input moments).
    pub fn for_each_sentence(&self, mut f: impl FnMut(ModelInput<'_>) -> Result<()>) -> Result<()> {
        let lengths = self
            .attention_mask
            .f_sum_dim_intlist(1, false, Kind::Int64)?;
        for (row, length) in Vec::<i64>::try_from(lengths)?.into_iter().enumerate() {
            let cut = |t: &Tensor| t.narrow(0, row as i64, 1).narrow(1, 0, length);
            let (ids, mask) = (cut(&self.input_ids), cut(&self.attention_mask));
            let types = self.token_type_ids.as_ref().map(cut);
            f(ModelInput {
                input_ids: &ids,
                attention_mask: &mask,
                token_type_ids: types.as_ref(),
            })?;
        }
        Ok(())
    }

    /// The task loss of `model` on this batch.
    pub fn loss(&self, model: &dyn Model, train: bool) -> Result<Tensor> {
        let out = model.forward_t(&self.input(), train)?;
        let logits = out
            .logits
            .ok_or_else(|| anyhow::anyhow!("the model has no task head"))?;
        Ok(model.loss(&logits, &self.labels)?)
    }
}

/// A split's batches, visited in a seeded order per epoch.
pub struct StepBatches {
    batches: Vec<DeviceBatch>,
    seed: u64,
    stream: u64,
}

impl StepBatches {
    /// Wraps prepared batches; the run seed and the split's seed stream decide the visiting
    /// order.
    pub fn new(batches: Vec<DeviceBatch>, seed: u64, stream: u64) -> Result<Self> {
        anyhow::ensure!(!batches.is_empty(), "no batches: the split is empty");
        Ok(StepBatches {
            batches,
            seed,
            stream,
        })
    }

    /// Every batch, in preparation order.
    pub fn all(&self) -> &[DeviceBatch] {
        &self.batches
    }

    /// Mutable access to the batches (a task that computes its targets from the inputs).
    pub fn all_mut(&mut self) -> &mut [DeviceBatch] {
        &mut self.batches
    }

    /// The batch that step `step` uses.
    pub fn at(&self, step: u64) -> &DeviceBatch {
        let n = self.batches.len() as u64;
        let (epoch, index) = (step / n, step % n);
        let order = permutation(
            self.batches.len(),
            derive_seed(self.seed, epoch, self.stream),
        );
        &self.batches[order[index as usize]]
    }
}
