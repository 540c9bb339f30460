//! Fixtures and checks shared by this crate's integration-test binaries.
#![allow(dead_code)] // each test binary uses a different subset

pub mod bilevel;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, Result, ensure};
use autolora_models::{Error, LoadOptions, Model, ModelInput, ModelOutput, Task, load_model};
use tch::{Kind, Tensor};

/// Tolerance of the parity checks against `transformers` (float32, eval mode; absolute).
pub const ATOL: f64 = 1e-5;

/// The query and value layers of the two-layer BERT and RoBERTa fixtures: the paper's
/// default LoRA targets there, and the targets of their PEFT adapter fixtures.
pub const ENCODER_QUERY_VALUE: [&str; 4] = [
    "encoder.layer.0.attention.self.query",
    "encoder.layer.0.attention.self.value",
    "encoder.layer.1.attention.self.query",
    "encoder.layer.1.attention.self.value",
];

/// libtorch's generator is process-global and tests that draw from it (seeded) run one at a
/// time, so each sees the same numbers on every run whatever else runs beside it.
static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Holds the generator for one test.
pub fn serial() -> MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The folder of fixture `name` (made by `tests/reference/gen_parity.py`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A scratch copy of fixture `name`.
pub fn copy_fixture(name: &str) -> Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir()?;
    for entry in std::fs::read_dir(fixture(name))? {
        let entry = entry?;
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name()))?;
    }
    Ok(tmp)
}

/// Rewrites the config.json in `dir` (a scratch copy) through `edit`.
pub fn edit_config(
    dir: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<()> {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    edit(config.as_object_mut().context("config object")?);
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

/// Sets one field of the config.json in `dir` (a scratch copy).
pub fn set_config(dir: &Path, key: &str, value: serde_json::Value) -> Result<()> {
    edit_config(dir, |c| {
        c.insert(key.into(), value);
    })
}

/// Fixture `name` with the head of `task`, default options.
pub fn load(name: &str, task: Task) -> Result<Box<dyn Model>> {
    Ok(load_model(&fixture(name), task, &LoadOptions::default())?)
}

/// The error that loading `dir` with the head of `task` gives; panics if it loads.
pub fn load_err(dir: &Path, task: Task) -> Error {
    match load_model(dir, task, &LoadOptions::default()) {
        Ok(_) => panic!("loading {} unexpectedly succeeded", dir.display()),
        Err(e) => e,
    }
}

/// The key an [`Error::UnsupportedConfig`] names (its message is printed); panics on any other
/// error.
pub fn unsupported_key(err: Error) -> String {
    println!("{err}");
    match err {
        Error::UnsupportedConfig { key, .. } => key,
        other => panic!("expected an unsupported-config error, got: {other}"),
    }
}

/// The inputs and reference outputs stored with fixture `name`.
pub fn reference(name: &str) -> Result<HashMap<String, Tensor>> {
    let path = fixture(name).join("reference.safetensors");
    Ok(Tensor::read_safetensors(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect())
}

/// The `input_ids` and `attention_mask` stored with fixture `name`.
pub fn inputs(name: &str) -> Result<(Tensor, Tensor)> {
    let r = reference(name)?;
    Ok((
        r["input_ids"].shallow_clone(),
        r["attention_mask"].shallow_clone(),
    ))
}

/// Runs `model` in eval mode on a reference's inputs (with its segment ids, where it has
/// them: the encoder fixtures do, the decoder ones do not).
pub fn forward(model: &dyn Model, r: &HashMap<String, Tensor>) -> Result<ModelOutput> {
    Ok(model.forward_t(
        &ModelInput {
            input_ids: &r["input_ids"],
            attention_mask: &r["attention_mask"],
            token_type_ids: r.get("token_type_ids"),
        },
        false,
    )?)
}

/// The logits of [`forward`].
pub fn logits(model: &dyn Model, r: &HashMap<String, Tensor>) -> Result<Tensor> {
    forward(model, r)?.logits.context("no logits")
}

/// Checks that `ours` has the shape of `theirs` and lies within [`ATOL`] of it; prints the
/// difference.
pub fn assert_close(what: &str, ours: &Tensor, theirs: &Tensor) -> Result<()> {
    ensure!(
        ours.size() == theirs.size(),
        "{what}: shape {:?} vs reference {:?}",
        ours.size(),
        theirs.size()
    );
    let diff = (ours.to_kind(Kind::Double) - theirs.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[]);
    println!("{what}: max |diff| = {diff:.3e}");
    ensure!(diff <= ATOL, "{what}: max |diff| {diff:e} > {ATOL:e}");
    Ok(())
}

/// The names of the task head's parameters, in order.
pub fn head_param_names(model: &dyn Model) -> Vec<String> {
    model.head_params().into_iter().map(|p| p.name).collect()
}
