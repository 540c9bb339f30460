//! # autolora-data
//!
//! Data for AutoLoRA experiments: cached downloads of real assets ([`assets`]), loaders for
//! the official file formats of GLUE, E2E, CoNLL-2003 / JNLPBA and the Rotten-Tomatoes
//! snippets, tokenization and batching, and the paper's metrics.
//!
//! This crate knows nothing of tensors: batches are plain row-major `Vec`s that a caller turns
//! into tensors with one copy.

pub mod assets;
pub mod conll;
pub mod error;
pub mod labels;
mod text;

pub use error::{Error, Result};
