//! # autolora-core
//!
//! The math of AutoLoRA on libtorch autograd (through `tch`), independent of any model or
//! data set: LoRA layers whose rank-1 components carry selection variables, rank selection,
//! pruning to compact adapters, and the bilevel search engine with its hypergradients.

pub mod bilevel;
pub mod error;
pub mod lora;
pub mod optim;
pub mod param;

pub use error::{Error, Result};
pub use lora::{Adapter, Gate, LoraConfig, LoraLinear, SelectionGate};
pub use param::{NamedParam, Param};
