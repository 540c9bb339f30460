//! Numerical parity of GPT-2 and Llama with Hugging Face `transformers` and `peft` on the tiny
//! random checkpoints made by `tests/reference/gen_parity.py` (and, for a config written by
//! `transformers` 5, `gen_parity_v5.py`): hidden states, logits and loss of a padded batch,
//! the logits of every cached greedy step, and the tokens of greedy and beam-search
//! generation. Float32, eval mode; tolerance 1e-5 absolute.

mod common;

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use autolora_models::peft::apply_peft_adapter;
use autolora_models::{
    AttentionImpl, CausalLm, GenerationConfig, LoadOptions, Model, ModelInput, Task, generate,
    load_model,
};
use common::{
    ATOL, assert_close, copy_fixture, edit_config, fixture, forward, head_param_names, load,
    logits, reference,
};
use tch::{Kind, Tensor};

fn ids(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(t.reshape([-1]))?)
}

/// Batch forward: hidden states, logits and (where the fixture has labels) the loss.
fn check_forward(model: &dyn Model, r: &HashMap<String, Tensor>, what: &str) -> Result<()> {
    let out = forward(model, r)?;
    assert_close(
        &format!("{what} hidden"),
        &out.hidden_states,
        &r["last_hidden_state"],
    )?;
    let logits = out.logits.context("no logits")?;
    assert_close(&format!("{what} logits"), &logits, &r["logits"])?;
    if let (Some(labels), Some(loss)) = (r.get("labels"), r.get("loss")) {
        assert_close(&format!("{what} loss"), &model.loss(&logits, labels)?, loss)?;
    }
    Ok(())
}

/// The cached path, teacher-forced with the reference's greedy tokens, reproduces the logits
/// of every greedy step; greedy and beam search reproduce the reference tokens.
fn check_generation(lm: &dyn CausalLm, r: &HashMap<String, Tensor>, what: &str) -> Result<()> {
    let prompt = ids(&r["gen_prompt"])?;
    let greedy = ids(&r["gen_greedy"])?;
    let step_logits = &r["gen_greedy_logits"];
    let mut cache = lm.new_cache();
    let mut fed = prompt.clone();
    let mut next = prompt.clone();
    for (t, &token) in greedy.iter().enumerate() {
        let past = cache.len();
        let n = next.len() as i64;
        let input = Tensor::from_slice(&next).reshape([1, n]);
        let mask = Tensor::ones([1, past + n], (Kind::Int64, tch::Device::Cpu));
        let positions =
            Tensor::arange_start(past, past + n, (Kind::Int64, tch::Device::Cpu)).reshape([1, n]);
        let logits = lm.forward_cached(&input, &mask, &positions, &mut cache)?;
        assert_close(
            &format!("{what} cached step {t}"),
            &logits.select(1, n - 1).squeeze(),
            &step_logits.get(t as i64),
        )?;
        fed.push(token);
        next = vec![token];
    }
    ensure!(cache.len() as usize == fed.len() - 1, "cache length");

    let ours = generate(lm, &prompt, &GenerationConfig::greedy(greedy.len(), vec![]))?;
    ensure!(
        ours.tokens == greedy,
        "{what} greedy: ours {:?}, reference {greedy:?}",
        ours.tokens
    );
    println!("{what} greedy tokens {:?} match", ours.tokens);

    let settings = ids(&r["gen_beam_settings"])?;
    let config = GenerationConfig {
        max_new_tokens: settings[1] as usize,
        num_beams: settings[0] as usize,
        length_penalty: r["gen_beam_length_penalty"].double_value(&[]),
        no_repeat_ngram_size: settings[2] as usize,
        eos_token_ids: vec![settings[3]],
    };
    let beam = generate(lm, &prompt, &config)?;
    let expected = ids(&r["gen_beam"])?;
    ensure!(
        beam.tokens == expected,
        "{what} beam search: ours {:?}, reference {expected:?}",
        beam.tokens
    );
    println!(
        "{what} beam tokens {:?} match (score {:.4}, eos {})",
        beam.tokens, beam.score, beam.ended_with_eos
    );

    // The LoRA paper's E2E protocol (10 beams, length penalty 0.9, no repeated 4-gram).
    let expected = ids(&r["gen_e2e"])?;
    let e2e = generate(lm, &prompt, &GenerationConfig::e2e(16, vec![settings[3]]))?;
    ensure!(
        e2e.tokens == expected,
        "{what} E2E beam search: ours {:?}, reference {expected:?}",
        e2e.tokens
    );
    println!("{what} E2E-protocol tokens {:?} match", e2e.tokens);
    Ok(())
}

fn check_lm(dir: &str, adapter: Option<&str>) -> Result<Box<dyn Model>> {
    let mut model = load(dir, Task::CausalLm)?;
    let name = match adapter {
        Some(a) => {
            apply_peft_adapter(model.as_mut(), &fixture(a))?;
            a
        }
        None => dir,
    };
    let r = reference(name)?;
    check_forward(model.as_ref(), &r, name)?;
    let lm = model.as_causal_lm().context("no LM head")?;
    check_generation(lm, &r, name)?;
    Ok(model)
}

#[test]
fn gpt2_causal_lm() -> Result<()> {
    let model = check_lm("gpt2-tiny-lm", None)?;
    assert_eq!(model.default_lora_targets(), ["c_attn"]);
    assert!(model.peft_fan_in_fan_out());
    assert!(model.head_params().is_empty());
    Ok(())
}

#[test]
fn gpt2_with_peft_lora_on_conv1d() -> Result<()> {
    let model = check_lm("gpt2-tiny-lm", Some("gpt2-tiny-lm-lora"))?;
    let ranks: Vec<(String, i64)> = model
        .adapted_layers()
        .into_iter()
        .map(|(n, l)| (n, l.adapter().map_or(0, |a| a.rank())))
        .collect();
    assert_eq!(
        ranks,
        [
            ("h.0.attn.c_attn".to_string(), 4),
            ("h.1.attn.c_attn".to_string(), 2)
        ]
    );
    Ok(())
}

#[test]
fn gpt2_sequence_classification() -> Result<()> {
    let model = load(
        "gpt2-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
    )?;
    check_forward(
        model.as_ref(),
        &reference("gpt2-tiny-seqcls")?,
        "gpt2 seqcls",
    )?;
    assert_eq!(head_param_names(model.as_ref()), ["score.weight"]);
    Ok(())
}

#[test]
fn llama_grouped_query_untied() -> Result<()> {
    let model = check_lm("llama-tiny-gqa", None)?;
    assert_eq!(model.default_lora_targets(), ["q_proj", "v_proj"]);
    Ok(())
}

#[test]
fn llama_tied_llama3_rope_with_biases() -> Result<()> {
    check_lm("llama-tiny-tied", None)?;
    Ok(())
}

/// A Llama saved by `transformers` 5, whose config.json holds rope theta 500000 and the
/// llama3 scaling in `rope_parameters`. The same settings in the 4.x dialect (`rope_theta`,
/// `rope_scaling`) give the same logits; the default rotary settings, which is how this
/// config read before `rope_parameters` was understood, do not.
#[test]
fn llama_saved_by_transformers_5() -> Result<()> {
    let name = "llama-tiny-tf5";
    check_lm(name, None)?;
    let r = reference(name)?;
    let tmp = copy_fixture(name)?;
    let reload = || load_model(tmp.path(), Task::CausalLm, &LoadOptions::default());
    edit_config(tmp.path(), |c| {
        let mut rope = c
            .remove("rope_parameters")
            .expect("a transformers 5 config");
        let theta = rope.as_object_mut().and_then(|p| p.remove("rope_theta"));
        c.insert(
            "rope_theta".into(),
            theta.expect("rope_parameters.rope_theta"),
        );
        c.insert("rope_scaling".into(), rope);
    })?;
    assert_close(
        "4.x dialect logits",
        &logits(reload()?.as_ref(), &r)?,
        &r["logits"],
    )?;

    edit_config(tmp.path(), |c| {
        c.remove("rope_theta");
        c.remove("rope_scaling");
    })?;
    let diff = (logits(reload()?.as_ref(), &r)? - &r["logits"])
        .abs()
        .max()
        .double_value(&[]);
    println!("default rotary settings: max |logit diff| = {diff:.3e}");
    ensure!(
        diff > 100.0 * ATOL,
        "the rotary settings barely matter here: {diff:e}"
    );
    Ok(())
}

#[test]
fn llama_with_peft_lora() -> Result<()> {
    check_lm("llama-tiny-gqa", Some("llama-tiny-gqa-lora"))?;
    Ok(())
}

/// Llama, Qwen2 and Mistral (its window on) classifiers: the last real token's hidden state
/// through `score`.
#[test]
fn decoder_sequence_classification() -> Result<()> {
    for dir in [
        "llama-tiny-seqcls",
        "qwen2-tiny-seqcls",
        "mistral-tiny-seqcls",
    ] {
        let model = load(dir, Task::SequenceClassification { num_labels: 3 })?;
        check_forward(model.as_ref(), &reference(dir)?, dir)?;
    }
    Ok(())
}

/// Max |logit difference| to the reference after editing the fixture's config.
fn logits_after_edit(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<f64> {
    let r = reference(name)?;
    let tmp = copy_fixture(name)?;
    edit_config(tmp.path(), edit)?;
    let model = load_model(tmp.path(), Task::CausalLm, &LoadOptions::default())?;
    Ok((logits(model.as_ref(), &r)? - &r["logits"])
        .abs()
        .max()
        .double_value(&[]))
}

#[test]
fn qwen2_with_biases_on_q_k_v_only() -> Result<()> {
    let model = check_lm("qwen2-tiny", None)?;
    assert_eq!(model.architecture().model_type(), "qwen2");
    assert_eq!(model.default_lora_targets(), ["q_proj", "v_proj"]);
    let biased: Vec<String> = model
        .linear_layers()
        .into_iter()
        .filter(|(_, l)| l.bias().is_some())
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("layers.0."))
        .collect();
    assert_eq!(
        biased,
        [
            "layers.0.self_attn.q_proj",
            "layers.0.self_attn.k_proj",
            "layers.0.self_attn.v_proj"
        ]
    );
    Ok(())
}

/// Layer 1 alone slides (window 3 on 7 tokens, and on the generated ones through the cache);
/// without the window the logits move.
#[test]
fn qwen2_sliding_window_on_the_upper_layers() -> Result<()> {
    check_lm("qwen2-tiny-sliding", None)?;
    let diff = logits_after_edit("qwen2-tiny-sliding", |c| {
        c.insert("use_sliding_window".into(), false.into());
    })?;
    println!("without the window: max |logit diff| = {diff:.3e}");
    ensure!(
        diff > 100.0 * ATOL,
        "the window barely matters here: {diff:e}"
    );
    Ok(())
}

/// Qwen3: RMSNorm on each query and key head, head_dim 16 with hidden 32 and 4 heads.
#[test]
fn qwen3_with_query_and_key_norms() -> Result<()> {
    let model = check_lm("qwen3-tiny", None)?;
    assert_eq!(model.architecture().model_type(), "qwen3");
    Ok(())
}

/// Mistral with a window of 3 on every layer; without it the logits move.
#[test]
fn mistral_sliding_window() -> Result<()> {
    check_lm("mistral-tiny", None)?;
    let diff = logits_after_edit("mistral-tiny", |c| {
        c.insert("sliding_window".into(), serde_json::Value::Null);
    })?;
    println!("without the window: max |logit diff| = {diff:.3e}");
    ensure!(
        diff > 100.0 * ATOL,
        "the window barely matters here: {diff:e}"
    );
    Ok(())
}

/// Qwen2, Qwen3 and Mistral saved by transformers 5.25.0 (`rope_parameters`, `layer_types`),
/// with its masks: parity as for the 4.x fixtures; the windows named by `layer_types` (Qwen2)
/// and `sliding_window` (Mistral) matter.
#[test]
fn qwen_and_mistral_saved_by_transformers_5() -> Result<()> {
    for name in ["qwen2-tiny-tf5", "qwen3-tiny-tf5", "mistral-tiny-tf5"] {
        let model = check_lm(name, None)?;
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json"))?)?;
        ensure!(config["transformers_version"] == "5.25.0" && config.get("rope_theta").is_none());
        assert_eq!(
            model.architecture().model_type(),
            config["model_type"].as_str().unwrap_or_default()
        );
    }
    let full = logits_after_edit("qwen2-tiny-tf5", |c| {
        c.insert(
            "layer_types".into(),
            serde_json::json!(["full_attention", "full_attention"]),
        );
    })?;
    let unwindowed = logits_after_edit("mistral-tiny-tf5", |c| {
        c.insert("sliding_window".into(), serde_json::Value::Null);
    })?;
    println!("without the windows: max |logit diff| qwen2 {full:.3e}, mistral {unwindowed:.3e}");
    ensure!(full > 100.0 * ATOL && unwindowed > 100.0 * ATOL);
    Ok(())
}

#[test]
fn fused_attention_matches_eager_in_decoders() -> Result<()> {
    for dir in ["gpt2-tiny-lm", "llama-tiny-gqa"] {
        let mut model = load(dir, Task::CausalLm)?;
        model.set_attention(AttentionImpl::Fused);
        check_forward(model.as_ref(), &reference(dir)?, &format!("{dir} fused"))?;
    }
    Ok(())
}

#[test]
fn cached_steps_equal_the_full_forward() -> Result<()> {
    let model = load("llama-tiny-gqa", Task::CausalLm)?;
    let lm = model.as_causal_lm().context("LM")?;
    let seq = Tensor::from_slice(&[9i64, 31, 4, 50, 12, 7, 3]).reshape([1, 7]);
    let full = model
        .forward_t(
            &ModelInput {
                input_ids: &seq,
                attention_mask: &seq.ones_like(),
                token_type_ids: None,
            },
            false,
        )?
        .logits
        .context("logits")?;
    // Prefill four tokens, then one at a time.
    let mut cache = lm.new_cache();
    let mut pieces = Vec::new();
    for (start, len) in [(0, 4), (4, 1), (5, 1), (6, 1)] {
        let ids = seq.narrow(1, start, len);
        let mask = Tensor::ones([1, start + len], (Kind::Int64, tch::Device::Cpu));
        let pos = Tensor::arange_start(start, start + len, (Kind::Int64, tch::Device::Cpu))
            .reshape([1, len]);
        pieces.push(lm.forward_cached(&ids, &mask, &pos, &mut cache)?);
    }
    assert_close("cached vs full", &Tensor::cat(&pieces, 1), &full)
}

#[test]
fn token_classification_heads() -> Result<()> {
    for (dir, head) in [
        ("gpt2-tiny-tokcls", "classifier"),
        ("llama-tiny-tokcls", "score"),
        ("qwen3-tiny-tokcls", "score"),
    ] {
        let model = load(dir, Task::TokenClassification { num_labels: 4 })?;
        check_forward(model.as_ref(), &reference(dir)?, dir)?;
        assert_eq!(
            head_param_names(model.as_ref()),
            [format!("{head}.weight"), format!("{head}.bias")]
        );
    }
    Ok(())
}
