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
pub mod prune;
pub mod selection;

pub use error::{Error, Result};
pub use lora::{Adapter, Gate, LoraConfig, LoraLinear, SelectionGate};
pub use param::{NamedParam, Param};

/// libtorch's generator is global to the process while the test harness runs tests on several
/// threads: tests that seed it hold this lock so their draws are not interleaved.
#[cfg(test)]
pub(crate) fn serial_rng() -> std::sync::MutexGuard<'static, ()> {
    static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
