//! Numerical parity with Hugging Face `transformers` and `peft` on the tiny random checkpoints
//! made by `tests/reference/gen_parity.py` (its reference outputs are in each fixture's
//! `reference.safetensors`). Float32, eval mode; tolerance 1e-5 absolute.

mod common;

use anyhow::{Context, Result};
use autolora_models::peft::apply_peft_adapter;
use autolora_models::{AttentionImpl, Model, Task};
use common::{
    ENCODER_QUERY_VALUE, assert_close, fixture, forward, head_param_names, load, reference,
};

fn check_model(dir: &str, task: Task, reference_dir: &str) -> Result<Box<dyn Model>> {
    let model = load(dir, task)?;
    let r = reference(reference_dir)?;
    let out = forward(model.as_ref(), &r)?;
    if let Some(h) = r.get("last_hidden_state") {
        assert_close(&format!("{dir} hidden"), &out.hidden_states, h)?;
    }
    if let Some(p) = r.get("pooler_output") {
        assert_close(&format!("{dir} pooler"), out.pooled.as_ref().unwrap(), p)?;
    }
    if let Some(l) = r.get("logits") {
        let logits = out.logits.as_ref().context("no logits")?;
        assert_close(&format!("{dir} logits"), logits, l)?;
        if let (Some(labels), Some(loss)) = (r.get("labels"), r.get("loss")) {
            let ours = model.loss(logits, labels)?;
            assert_close(&format!("{dir} loss"), &ours, loss)?;
        }
    }
    Ok(model)
}

#[test]
fn bert_base_without_prefix() -> Result<()> {
    check_model("bert-tiny", Task::Encoder, "bert-tiny")?;
    Ok(())
}

#[test]
fn bert_sequence_classification() -> Result<()> {
    let model = check_model(
        "bert-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
        "bert-tiny-seqcls",
    )?;
    assert_eq!(
        head_param_names(model.as_ref()),
        ["classifier.weight", "classifier.bias"]
    );
    Ok(())
}

/// Saved by `transformers` 5 (`gen_parity_v5.py`): its config has `is_decoder: false` and no
/// `position_embedding_type`.
#[test]
fn bert_saved_by_transformers_5() -> Result<()> {
    check_model(
        "bert-tiny-tf5-seqcls",
        Task::SequenceClassification { num_labels: 3 },
        "bert-tiny-tf5-seqcls",
    )?;
    Ok(())
}

#[test]
fn bert_regression() -> Result<()> {
    check_model(
        "bert-tiny-regression",
        Task::Regression,
        "bert-tiny-regression",
    )?;
    Ok(())
}

#[test]
fn bert_token_classification_sharded() -> Result<()> {
    check_model(
        "bert-tiny-tokcls",
        Task::TokenClassification { num_labels: 5 },
        "bert-tiny-tokcls",
    )?;
    Ok(())
}

#[test]
fn roberta_sequence_classification() -> Result<()> {
    let model = check_model(
        "roberta-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
        "roberta-tiny-seqcls",
    )?;
    assert_eq!(
        head_param_names(model.as_ref()),
        [
            "classifier.dense.weight",
            "classifier.dense.bias",
            "classifier.out_proj.weight",
            "classifier.out_proj.bias"
        ]
    );
    Ok(())
}

#[test]
fn roberta_token_classification() -> Result<()> {
    check_model(
        "roberta-tiny-tokcls",
        Task::TokenClassification { num_labels: 4 },
        "roberta-tiny-tokcls",
    )?;
    Ok(())
}

fn check_lora(base: &str, adapter: &str) -> Result<()> {
    let mut model = load(base, Task::SequenceClassification { num_labels: 3 })?;
    let adapted = apply_peft_adapter(model.as_mut(), &fixture(adapter))?;
    assert_eq!(adapted, ENCODER_QUERY_VALUE);
    // rank_pattern and alpha_pattern were honoured.
    let v1 = model
        .lora_layer("encoder.layer.1.attention.self.value")
        .and_then(|l| l.adapter())
        .context("adapter")?;
    assert_eq!(v1.rank(), 2);
    assert_eq!(v1.scale, 4.0);
    let q0 = model
        .lora_layer("encoder.layer.0.attention.self.query")
        .and_then(|l| l.adapter())
        .context("adapter")?;
    assert_eq!(q0.scale, 4.0);
    let r = reference(adapter)?;
    let out = forward(model.as_ref(), &r)?;
    assert_close(
        &format!("{adapter} hidden"),
        &out.hidden_states,
        &r["last_hidden_state"],
    )?;
    assert_close(
        &format!("{adapter} logits"),
        out.logits.as_ref().unwrap(),
        &r["logits"],
    )?;
    // Merging the adapters into the base weights changes nothing.
    for name in adapted {
        model.lora_layer_mut(&name).unwrap().merge()?;
    }
    let merged = forward(model.as_ref(), &r)?;
    assert_close(
        &format!("{adapter} merged logits"),
        merged.logits.as_ref().unwrap(),
        &r["logits"],
    )?;
    Ok(())
}

#[test]
fn bert_with_peft_lora() -> Result<()> {
    check_lora("bert-tiny-seqcls", "bert-tiny-seqcls-lora")
}

#[test]
fn roberta_with_peft_lora() -> Result<()> {
    check_lora("roberta-tiny-seqcls", "roberta-tiny-seqcls-lora")
}

#[test]
fn fused_attention_matches_eager() -> Result<()> {
    let mut model = load(
        "roberta-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
    )?;
    model.set_attention(AttentionImpl::Fused);
    let r = reference("roberta-tiny-seqcls")?;
    let out = forward(model.as_ref(), &r)?;
    assert_close("fused logits", out.logits.as_ref().unwrap(), &r["logits"])
}
