//! # autolora-models
//!
//! Hugging Face compatible transformer models on libtorch (through `tch`) whose linear
//! layers take AutoLoRA adapters from `autolora-core`.
//!
//! * [`load_model`] reads a model directory (`config.json`, `model.safetensors` or a sharded
//!   checkpoint, memory-mapped), detects the architecture and returns a [`Model`].
//! * [`Model`] is the one interface for every architecture: [`Model::forward_t`] on a
//!   [`ModelInput`], [`Model::loss`], [`Model::inject_lora`] by module-name patterns,
//!   [`Model::trainable_params`] (LoRA factors and the task head) and
//!   [`Model::selection_params`] for the search engine, and [`Model::lora_layer_mut`] for
//!   pruning, merging and export.
//! * Architectures: BERT and RoBERTa ([`encoder::EncoderModel`]) with sequence
//!   classification, regression and token classification heads; GPT-2 ([`gpt2`]) and the
//!   Llama family ([`llama`]: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU,
//!   tied or untied head) as [`DecoderModel`]s with causal-LM, sequence classification,
//!   regression and token classification heads. Default LoRA targets are the paper's:
//!   `query`/`value`, `c_attn` (GPT-2, exported with PEFT's `fan_in_fan_out`),
//!   `q_proj`/`v_proj` (Llama).
//! * [`generate()`] decodes with a key/value cache ([`CausalLm`]): greedy, or beam search with
//!   length penalty and no-repeat-n-gram blocking as Hugging Face `generate` does it
//!   ([`GenerationConfig::e2e`] is the LoRA paper's E2E protocol).
//! * [`gguf::load_gguf`] loads a Llama from a llama.cpp GGUF file as downloaded (F32, F16,
//!   BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K to Q6_K, mixed in one file as
//!   `Q4_K_M` files mix them), with its config and tokenizer rebuilt from the metadata.
//! * [`peft::apply_peft_adapter`] loads a Hugging Face PEFT LoRA adapter;
//!   [`peft::save_peft_adapter`] exports this model's adapters (per-module ranks and alphas,
//!   the task head as `modules_to_save`) in the same format.
//! * Checkpoints are read through [`TensorSource`] ([`SafeTensorStore`] memory-maps
//!   safetensors files) by a [`WeightLoader`] that detects the key prefix, checks shapes,
//!   converts dtypes and reports tensors the architecture did not use.
//!
//! Errors are [`Error`] values naming the file, tensor, expected and found shape; loading user
//! files never panics. [`LoadOptions::base_kind`] stores the frozen matrices in bf16 (on CUDA)
//! while norms, LoRA factors, selection variables and activations stay f32.
//!
//! The base weights are frozen; LoRA factors, selection logits and the head are trainable.
//! Attention is written as matmul + softmax by default so the exact hypergradient can take
//! second derivatives through it ([`AttentionImpl`]).
//!
//! ```no_run
//! use autolora_core::{Gate, LoraConfig};
//! use autolora_models::{LoadOptions, Model, ModelInput, Task, load_model};
//! use tch::Tensor;
//!
//! # fn main() -> autolora_models::Result<()> {
//! let dir = std::path::Path::new("models/minilm");
//! let mut model = load_model(dir, Task::SequenceClassification { num_labels: 2 }, &LoadOptions::default())?;
//! // The paper's targets (query and value of every layer), k = 8 components with softmax gates.
//! let adapted = model.inject_lora(&[], &LoraConfig::default(), Some(Gate::Softmax))?;
//! assert_eq!(model.selection_params().len(), adapted.len());
//!
//! let ids = Tensor::from_slice(&[101i64, 7592, 2088, 102]).reshape([1, 4]);
//! let mask = ids.ones_like();
//! let input = ModelInput { input_ids: &ids, attention_mask: &mask, token_type_ids: None };
//! let out = model.forward_t(&input, false)?;
//! let loss = model.loss(out.logits.as_ref().unwrap(), &Tensor::from_slice(&[1i64]))?;
//! # let _ = loss;
//! # Ok(())
//! # }
//! ```

pub mod atomic;
pub mod bert;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod load;
pub mod model;
mod named_linears;
pub mod peft;
pub mod rope;
pub mod weights;

pub use config::{Architecture, RawConfig};
pub use decoder::{CausalLm, DecoderModel, KvCache};
pub use error::{Error, Result};
pub use generate::{Generation, GenerationConfig, generate};
pub use layers::AttentionImpl;
pub use load::{LoadOptions, check_model, gguf_file, load_model, tokenizer_path};
pub use model::{ALL_LINEAR, IGNORE_INDEX, Model, ModelInput, ModelOutput, Task};
pub use weights::{LoadReport, SafeTensorStore, TensorSource, WeightLoader, write_safetensors};
