//! The error type of autolora-core.

use thiserror::Error;

/// Everything that can go wrong in autolora-core.
#[derive(Debug, Error)]
pub enum Error {
    /// A libtorch operation failed (shape mismatch inside an op, device error, ...).
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A tensor had another shape than the one required.
    #[error("{name}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// What the tensor is.
        name: String,
        /// The required shape.
        expected: Vec<i64>,
        /// The shape that was given.
        found: Vec<i64>,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid {what}: {why}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// Why it is invalid.
        why: String,
    },
    /// A loss or gradient became NaN or infinite.
    #[error("non-finite {what} ({value}) at search step {step}")]
    NonFinite {
        /// Which quantity.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The step where it happened.
        step: u64,
    },
    /// A loss closure given to the search engine failed.
    #[error("evaluating the {which} loss")]
    Loss {
        /// `training` or `validation`.
        which: &'static str,
        /// What the closure returned.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An operation needs an adapter state the layer is not in (merged, no adapter, ...).
    #[error("{0}")]
    InvalidState(String),
}

/// `Result` with [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
