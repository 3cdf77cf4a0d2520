//! The crate's error type.

use adaptable_lora::LoraError;

/// Everything that can go wrong while retraining or fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The training loss became NaN or infinite.
    #[error(
        "{method}: loss became {value} at step {step}; lower the learning rate or check the data"
    )]
    NonFinite {
        /// Which algorithm diverged.
        method: &'static str,
        /// The step at which it was detected.
        step: usize,
        /// The offending value.
        value: f64,
    },
    /// Inputs whose shapes do not fit together.
    #[error("{0}")]
    Shape(String),
    /// An adapter could not be built.
    #[error(transparent)]
    Lora(#[from] LoraError),
}
