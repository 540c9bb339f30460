//! # autolora-data
//!
//! Data for AutoLoRA experiments: cached downloads of real assets ([`assets`]), loaders for
//! the official file formats of GLUE, E2E, CoNLL-2003 / JNLPBA and the Rotten-Tomatoes
//! snippets, tokenization and batching, and the paper's metrics.
//!
//! This crate knows nothing of tensors: batches are plain row-major `Vec`s that a caller turns
//! into tensors with one copy.

pub mod assets;
pub mod batch;
pub mod conll;
pub mod e2e;
pub mod error;
pub mod example;
pub mod glue;
pub mod labels;
pub mod metrics;
pub mod rng;
pub mod sentiment;
pub mod split;
mod text;
pub mod tokenize;

pub use error::{Error, Result};
