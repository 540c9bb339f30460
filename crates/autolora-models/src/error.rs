//! The error type of autolora-models.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config.json, the shard index, an adapter config) is not valid JSON or has
    /// a field of the wrong type.
    #[error("{path}: invalid JSON")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause (its message names line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is truncated or malformed.
    #[error("{path}: not a valid safetensors file")]
    SafeTensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A model directory has no weights file.
    #[error(
        "{dir}: no weights found (expected model.safetensors, or model.safetensors.index.json with its shards)"
    )]
    NoWeights {
        /// The model directory.
        dir: PathBuf,
    },
    /// The shard index names a tensor in a file that does not hold it.
    #[error("{index}: tensor {name} is mapped to {shard}, which does not contain it")]
    ShardIndex {
        /// The index file.
        index: PathBuf,
        /// The tensor.
        name: String,
        /// The shard file named by the index.
        shard: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor {name} (looked up as {key}) in {source_desc}")]
    MissingTensor {
        /// The tensor's name in the model (without checkpoint prefix).
        name: String,
        /// The key that was looked up in the checkpoint.
        key: String,
        /// Where it was looked for (the model directory or file).
        source_desc: String,
    },
    /// The checkpoint holds tensors inside the model's namespace that the architecture does
    /// not use: usually a config that does not match the weights (say, more layers).
    #[error("{count} unexpected tensor(s) in the checkpoint, e.g. {examples:?}; does config.json match the weights?", count = names.len(), examples = names.iter().take(5).collect::<Vec<_>>())]
    UnexpectedTensors {
        /// All unexpected keys.
        names: Vec<String>,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The shape implied by the config.
        expected: Vec<i64>,
        /// The shape in the checkpoint (or of the given input).
        found: Vec<i64>,
    },
    /// A tensor is stored with a dtype that cannot be converted.
    #[error("tensor {name}: unsupported dtype {dtype} (supported: F32, F16, BF16, F64)")]
    UnsupportedDtype {
        /// The tensor.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// The config names an architecture this crate does not implement.
    #[error("{path}: unknown architecture {found:?} (supported model_type values: {supported:?})")]
    UnknownArchitecture {
        /// config.json.
        path: PathBuf,
        /// The `model_type` (or `architectures`) found.
        found: String,
        /// What is supported.
        supported: Vec<&'static str>,
    },
    /// config.json is missing, or lacks what the architecture needs.
    #[error("{path}: not a usable model config: {what}")]
    BadConfig {
        /// config.json.
        path: PathBuf,
        /// What is missing or wrong (names the fields).
        what: String,
    },
    /// A config key the computation depends on holds a value this crate does not implement
    /// (a rotary scaling type, an activation, a causal BERT): refused rather than computed
    /// some other way.
    #[error("{path}: {key} = {value} is not implemented (supported: {supported})")]
    UnsupportedConfig {
        /// config.json (or the GGUF file whose metadata it came from).
        path: PathBuf,
        /// The key as written in the file (`rope_parameters.rope_type`, `hidden_act`, ...).
        key: String,
        /// The value found (JSON text for a config.json).
        value: String,
        /// What is implemented.
        supported: String,
    },
    /// A setting given by the caller is invalid (a LoRA target that matches nothing, ...).
    #[error("invalid {what}: {why}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// An input tensor has the wrong shape or dtype.
    #[error("input {name}: {why}")]
    BadInput {
        /// Which input.
        name: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A GGUF file is truncated or malformed.
    #[error("{path}: not a valid GGUF file: {what} (at byte {offset})")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Byte offset where reading failed.
        offset: u64,
        /// What was expected and what was found.
        what: String,
    },
    /// A GGUF tensor is stored in a quantization this crate cannot dequantize.
    #[error("tensor {name}: GGUF type {ggml_type} is not supported (supported: {supported})")]
    UnsupportedQuantization {
        /// The tensor (GGUF name).
        name: String,
        /// The stored type (name or number).
        ggml_type: String,
        /// What is supported.
        supported: &'static str,
    },
    /// Building a tokenizer failed.
    #[error("{source_desc}: cannot build the tokenizer: {what}")]
    Tokenizer {
        /// Where the vocabulary came from.
        source_desc: String,
        /// What went wrong.
        what: String,
    },
    /// An error from autolora-core (LoRA layers).
    #[error(transparent)]
    Core(#[from] autolora_core::Error),
    /// A libtorch operation failed.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
