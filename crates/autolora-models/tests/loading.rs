//! Loading behaviour: bad directories, configs and checkpoints give errors that name what is
//! wrong (never a panic); LoRA injection, frozen base, seeded heads and bf16 storage.

mod common;

use anyhow::{Context, Result, ensure};
use autolora_core::{Gate, LoraConfig};
use autolora_models::encoder::EncoderModel;
use autolora_models::{
    Error, LoadOptions, ModelInput, RawConfig, SafeTensorStore, Task, load_model,
};
use common::{
    ENCODER_QUERY_VALUE, copy_fixture, edit_config, fixture, inputs, load, load_err, set_config,
    unsupported_key,
};
use tch::{Kind, Tensor};

#[test]
fn directory_without_config_says_so() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    std::fs::remove_file(tmp.path().join("config.json"))?;
    let msg = load_err(tmp.path(), Task::Encoder).to_string();
    assert!(
        msg.contains("config.json") && msg.contains("does not exist"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn pooling_config_is_not_an_architecture() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_mean_tokens": true}"#,
    )?;
    let err = load_err(tmp.path(), Task::Encoder);
    assert!(matches!(err, Error::BadConfig { .. }), "{err}");
    assert!(err.to_string().contains("model_type"), "{err}");
    Ok(())
}

#[test]
fn missing_sizes_are_all_named() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    edit_config(tmp.path(), |c| {
        c.remove("vocab_size");
        c.remove("hidden_size");
    })?;
    let msg = load_err(tmp.path(), Task::Encoder).to_string();
    assert!(
        msg.contains("vocab_size") && msg.contains("hidden_size"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn unknown_architecture_is_named() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    set_config(tmp.path(), "model_type", "xlnet".into())?;
    let err = load_err(tmp.path(), Task::Encoder);
    assert!(
        matches!(err, Error::UnknownArchitecture { ref found, .. } if found == "xlnet"),
        "{err}"
    );
    Ok(())
}

/// A causal BERT (`is_decoder`, which `transformers` 5 writes), relative position embeddings
/// (4.x) and an activation this crate lacks are errors naming the key, not silently absolute
/// bidirectional GELU.
#[test]
fn unimplemented_encoder_settings_name_the_key() -> Result<()> {
    for (key, value) in [
        ("is_decoder", serde_json::json!(true)),
        ("position_embedding_type", "relative_key".into()),
        ("hidden_act", "quick_gelu".into()),
    ] {
        let tmp = copy_fixture("bert-tiny-tf5-seqcls")?;
        set_config(tmp.path(), key, value)?;
        assert_eq!(unsupported_key(load_err(tmp.path(), Task::Encoder)), key);
    }
    Ok(())
}

#[test]
fn too_few_layers_in_config_leaves_unexpected_tensors() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    set_config(tmp.path(), "num_hidden_layers", 1.into())?;
    match load_err(tmp.path(), Task::Encoder) {
        Error::UnexpectedTensors { names } => {
            assert!(
                names.iter().all(|n| n.starts_with("encoder.layer.1.")),
                "{names:?}"
            );
            assert_eq!(names.len(), 16);
        }
        other => panic!("unexpected error {other}"),
    }
    Ok(())
}

#[test]
fn too_many_layers_in_config_is_a_missing_tensor() -> Result<()> {
    let tmp = copy_fixture("bert-tiny-seqcls")?;
    set_config(tmp.path(), "num_hidden_layers", 3.into())?;
    let err = load_err(tmp.path(), Task::SequenceClassification { num_labels: 3 });
    match &err {
        Error::MissingTensor { key, .. } => {
            assert_eq!(key, "bert.encoder.layer.2.attention.self.query.weight")
        }
        other => panic!("unexpected error {other}"),
    }
    Ok(())
}

#[test]
fn wrong_size_is_a_shape_mismatch_naming_the_tensor() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    set_config(tmp.path(), "intermediate_size", 36.into())?;
    match load_err(tmp.path(), Task::Encoder) {
        Error::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight");
            assert_eq!(expected, [36, 32]);
            assert_eq!(found, [37, 32]);
        }
        other => panic!("unexpected error {other}"),
    }
    Ok(())
}

#[test]
fn head_with_other_label_count_is_a_shape_mismatch() -> Result<()> {
    let err = load_err(
        &fixture("bert-tiny-seqcls"),
        Task::SequenceClassification { num_labels: 7 },
    );
    assert!(
        matches!(&err, Error::ShapeMismatch { name, .. } if name == "classifier.weight"),
        "{err}"
    );
    Ok(())
}

#[test]
fn truncated_and_absent_weights() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    let weights = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&weights)?;
    std::fs::write(&weights, &bytes[..bytes.len() - 100])?;
    let err = load_err(tmp.path(), Task::Encoder);
    assert!(matches!(err, Error::SafeTensors { .. }), "{err}");
    std::fs::write(&weights, &bytes[..4])?;
    let err = load_err(tmp.path(), Task::Encoder);
    assert!(matches!(err, Error::SafeTensors { .. }), "{err}");
    std::fs::remove_file(&weights)?;
    let err = load_err(tmp.path(), Task::Encoder);
    assert!(matches!(err, Error::NoWeights { .. }), "{err}");
    Ok(())
}

#[test]
fn shard_index_must_match_the_shards() -> Result<()> {
    let tmp = copy_fixture("bert-tiny-tokcls")?;
    let index = tmp.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)?;
    // Point every entry at the first shard: the second shard's tensors are then misplaced.
    let text = text.replace("model-00002-of-00002", "model-00001-of-00002");
    std::fs::write(&index, text)?;
    let err = load_err(tmp.path(), Task::TokenClassification { num_labels: 5 });
    assert!(matches!(err, Error::ShardIndex { .. }), "{err}");
    Ok(())
}

#[test]
fn foreign_tensors_outside_the_model_are_reported_not_fatal() -> Result<()> {
    let tmp = copy_fixture("bert-tiny")?;
    let path = tmp.path().join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&path)?;
    tensors.push((
        "cls.predictions.bias".into(),
        Tensor::zeros([64], (Kind::Float, tch::Device::Cpu)),
    ));
    tensors.push((
        "embeddings.position_ids".into(),
        Tensor::arange(40, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0),
    ));
    Tensor::write_safetensors(&tensors, &path)?;
    let raw = RawConfig::read_dir(tmp.path())?;
    let store = SafeTensorStore::open_dir(tmp.path())?;
    let model = EncoderModel::load(&raw, &store, Task::Encoder, &LoadOptions::default())?;
    assert_eq!(model.load_report().unused, ["cls.predictions.bias"]);
    assert_eq!(model.load_report().prefix, "");
    Ok(())
}

#[test]
fn bad_inputs_are_errors() -> Result<()> {
    let model = load("bert-tiny", Task::Encoder)?;
    let (ids, mask) = inputs("bert-tiny")?;
    let run = |ids: &Tensor, mask: &Tensor| {
        model.forward_t(
            &ModelInput {
                input_ids: ids,
                attention_mask: mask,
                token_type_ids: None,
            },
            false,
        )
    };
    let too_big = ids.ones_like() * 1000;
    assert!(matches!(
        run(&too_big, &mask),
        Err(Error::BadInput {
            name: "input_ids",
            ..
        })
    ));
    assert!(matches!(
        run(&ids, &mask.narrow(1, 0, 3)),
        Err(Error::BadInput {
            name: "attention_mask",
            ..
        })
    ));
    assert!(matches!(
        run(&ids.to_kind(Kind::Float), &mask),
        Err(Error::BadInput {
            name: "input_ids",
            ..
        })
    ));
    let long = Tensor::ones([1, 41], (Kind::Int64, tch::Device::Cpu));
    let err = run(&long, &long).unwrap_err();
    assert!(err.to_string().contains("40 positions"), "{err}");
    Ok(())
}

#[test]
fn lora_injection_defaults_freezing_and_names() -> Result<()> {
    let mut model = load(
        "roberta-tiny-seqcls",
        Task::SequenceClassification { num_labels: 3 },
    )?;
    let (ids, mask) = inputs("roberta-tiny-seqcls")?;
    let input = ModelInput {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: None,
    };
    let before = model.forward_t(&input, false)?.logits.context("logits")?;
    let bad = model.inject_lora(&["qkv".into()], &LoraConfig::default(), None);
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })));
    let adapted = model.inject_lora(&[], &LoraConfig::default(), Some(Gate::Softmax))?;
    assert_eq!(adapted, ENCODER_QUERY_VALUE);
    // B = 0 at injection: the model's output is unchanged.
    let after = model.forward_t(&input, false)?.logits.context("logits")?;
    ensure!((&after - &before).abs().max().double_value(&[]) == 0.0);
    let selection: Vec<String> = model
        .selection_params()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(selection, adapted);
    let trainable: Vec<String> = model
        .trainable_params()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(trainable.len(), 2 * adapted.len() + 4);
    assert_eq!(trainable[0], "encoder.layer.0.attention.self.query.lora_A");
    assert_eq!(trainable[1], "encoder.layer.0.attention.self.query.lora_B");
    assert_eq!(trainable.last().unwrap(), "classifier.out_proj.bias");
    for p in model
        .trainable_params()
        .iter()
        .chain(&model.selection_params())
    {
        assert!(p.param.tensor().requires_grad(), "{} not trainable", p.name);
    }
    // The frozen base: only trainable and selection leaves receive gradients.
    for (name, layer) in model.linear_layers() {
        assert!(
            !layer.weight().requires_grad(),
            "{name} weight is trainable"
        );
    }
    // Any linear layer can be targeted by pattern.
    let more = model.inject_lora(
        &["layer.*.intermediate.dense".into()],
        &LoraConfig::default(),
        None,
    )?;
    assert_eq!(
        more,
        [
            "encoder.layer.0.intermediate.dense",
            "encoder.layer.1.intermediate.dense"
        ]
    );
    assert!(
        model
            .lora_layer("encoder.layer.1.intermediate.dense")
            .unwrap()
            .adapter()
            .unwrap()
            .gate
            .is_none()
    );
    Ok(())
}

#[test]
fn fresh_heads_depend_on_the_seed_only() -> Result<()> {
    let head = |seed: u64| -> Result<Tensor> {
        let options = LoadOptions {
            seed,
            ..LoadOptions::default()
        };
        tch::manual_seed(seed as i64 + 100);
        let model = load_model(
            &fixture("bert-tiny"),
            Task::TokenClassification { num_labels: 4 },
            &options,
        )?;
        Ok(model.head_params()[0].param.tensor().detach())
    };
    let (a, b, c) = (head(1)?, head(1)?, head(2)?);
    assert_eq!(a.size(), [4, 32]);
    ensure!(a.equal(&b), "same seed, different heads");
    ensure!(!a.equal(&c), "different seeds, same head");
    let std = a.std(true).double_value(&[]);
    ensure!(
        (0.01..0.03).contains(&std),
        "head std {std} is not about initializer_range 0.02"
    );
    Ok(())
}

#[test]
fn bf16_base_weights_stay_close() -> Result<()> {
    let (ids, mask) = inputs("bert-tiny")?;
    let input = ModelInput {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: None,
    };
    let full = load("bert-tiny", Task::Encoder)?;
    let options = LoadOptions {
        base_kind: Some(Kind::BFloat16),
        ..LoadOptions::default()
    };
    let mut half = load_model(&fixture("bert-tiny"), Task::Encoder, &options)?;
    half.inject_lora(&[], &LoraConfig::default(), Some(Gate::Softmax))?;
    let a = full.forward_t(&input, false)?.hidden_states;
    let b = half.forward_t(&input, false)?.hidden_states;
    assert_eq!(b.kind(), Kind::Float);
    let diff = (a - b).abs().max().double_value(&[]);
    println!("bf16 base: max |diff| of hidden states = {diff:.3e}");
    ensure!(diff < 0.1, "bf16 storage changed hidden states by {diff}");
    for p in half.trainable_params() {
        assert_eq!(p.param.tensor().kind(), Kind::Float, "{}", p.name);
    }
    Ok(())
}
