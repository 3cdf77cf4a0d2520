//! The crate's error type.

/// Everything that can go wrong when building or combining adapters.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// An adapter of rank 0 was requested.
    #[error("LoRA rank must be at least 1")]
    ZeroRank,
    /// The dropout probability is not in `[0, 1)`.
    #[error("LoRA dropout must be in [0, 1), got {0}")]
    InvalidDropout(f64),
    /// `alpha` is not a finite number.
    #[error("LoRA alpha must be finite, got {0}")]
    InvalidAlpha(f64),
    /// A task index outside the bank.
    #[error("task {task} is out of range: the bank holds {tasks} adapters")]
    TaskOutOfRange {
        /// The requested task.
        task: usize,
        /// How many adapters the bank holds.
        tasks: usize,
    },
    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Which tensor.
        what: String,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
    /// An adapter was requested from a layer built without a LoRA configuration.
    #[error("this layer has no LoRA configuration, so it cannot hold adapters")]
    NoLoraConfig,
}
