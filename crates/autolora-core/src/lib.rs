//! # autolora-core
//!
//! The math of AutoLoRA on libtorch autograd (through `tch`), independent of any model or
//! data set:
//!
//! * [`lora`]: the LoRA linear layer `y = W x + b + s ((dropout(x) A^T) * a) B^T` whose rank-1
//!   components carry selection weights `a = softmax(logits)` (or sigmoid);
//! * [`param`]: shared, swappable parameter slots, so the engine can run a model on
//!   look-ahead weights that are still connected to the selection variables;
//! * [`optim`]: SGD / Adam / AdamW over tensors, with a differentiable look-ahead step and
//!   snapshots of the trainable tensors and moments, plus a warm-up schedule;
//! * [`bilevel`]: the search engine with first-order, finite-difference and exact hypergradients;
//! * [`selection`]: ranks from the learned weights (per-module threshold or a global budget);
//! * [`prune`]: compact plain adapters of the kept components, ready to merge or export.
//!
//! ## Example
//!
//! Attach a selective adapter to a layer, run a few search steps on a toy regression problem,
//! choose the ranks and prune:
//!
//! ```
//! use autolora_core::bilevel::{BilevelSearch, Hypergradient, SearchConfig};
//! use autolora_core::optim::{OptimConfig, Optimizer};
//! use autolora_core::prune::prune_layer;
//! use autolora_core::selection::{ModuleWeights, SelectionConfig, select_ranks};
//! use autolora_core::{Adapter, Gate, LoraConfig, LoraLinear};
//! use tch::{Device, Kind, Tensor};
//!
//! # fn main() -> autolora_core::Result<()> {
//! let device = Device::Cpu;
//! tch::manual_seed(0);
//! let mut layer = LoraLinear::new(Tensor::randn([3, 8], (Kind::Float, device)), None)?;
//! let adapter = Adapter::new(8, 3, &LoraConfig::default(), Some(Gate::Softmax), device)?;
//! let gate = adapter.gate.clone().expect("a selective adapter");
//! let inner = Optimizer::new(vec![adapter.a.clone(), adapter.b.clone()], OptimConfig::search_inner())?;
//! let outer = Optimizer::new(vec![gate.logits.clone()], OptimConfig::search_outer())?;
//! layer.attach(adapter)?;
//!
//! // Training and validation batches of a toy target.
//! let (x, x_val) = (Tensor::randn([32, 8], (Kind::Float, device)), Tensor::randn([16, 8], (Kind::Float, device)));
//! let target = |x: &Tensor| x.sum_dim_intlist(1, true, Kind::Float).repeat([1, 3]);
//! let (y, y_val) = (target(&x), target(&x_val));
//!
//! let config = SearchConfig { hypergradient: Hypergradient::Exact, ..SearchConfig::default() };
//! let mut search = BilevelSearch::new(inner, outer, config)?;
//! for _ in 0..3 {
//!     let report = search.step(
//!         || Ok::<_, std::convert::Infallible>(layer.forward_t(&x, true).mse_loss(&y, tch::Reduction::Mean)),
//!         || Ok::<_, std::convert::Infallible>(layer.forward_t(&x_val, true).mse_loss(&y_val, tch::Reduction::Mean)),
//!     )?;
//!     assert!(report.val_loss.is_finite());
//! }
//!
//! let weights = ModuleWeights::from_gate("layer", &gate)?;
//! let chosen = select_ranks(&[weights], &SelectionConfig::default())?;
//! assert!(chosen[0].rank >= 1);
//! prune_layer(&mut layer, &chosen[0].kept, 16.0)?;
//! assert_eq!(layer.adapter().map(|a| a.rank()), Some(chosen[0].rank as i64));
//! layer.merge()?; // zero-overhead inference
//! # Ok(())
//! # }
//! ```
//!
//! ## Devices and precision
//!
//! Nothing here picks a device or a dtype by itself: optimizer moments, snapshots and
//! hypergradients follow their parameters. Adapters default to f32 ([`Adapter::new`]);
//! [`Adapter::with_options`] builds f64 ones for gradient checks.

pub mod bilevel;
pub mod error;
pub mod lora;
pub mod optim;
pub mod param;
pub mod prune;
pub mod selection;

pub use bilevel::{BilevelSearch, FiniteDifferenceForm, Hypergradient, SearchConfig, StepReport};
pub use error::{Error, Result};
pub use lora::{Adapter, Gate, InputMoments, LoraConfig, LoraLinear, SelectionGate};
pub use optim::{Decay, LrSchedule, OptimConfig, Optimizer, OptimizerKind, clip_grad_norm};
pub use param::{NamedParam, Param};
pub use selection::{ModuleSelection, ModuleWeights, SelectionConfig, select_ranks};

/// libtorch's generator is global to the process while the test harness runs tests on several
/// threads: tests that seed it hold this lock so their draws are not interleaved.
#[cfg(test)]
pub(crate) fn serial_rng() -> std::sync::MutexGuard<'static, ()> {
    static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
