//! The crate's error type.

/// Everything that can go wrong between task files, the encoder and the algorithms.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A task file could not be read or is malformed.
    #[error(transparent)]
    Tasks(#[from] adaptable_tasks::TasksError),
    /// The encoder, its tokenizer or its files failed.
    #[error(transparent)]
    Models(#[from] adaptable_models::ModelsError),
    /// Retraining or fine-tuning failed.
    #[error(transparent)]
    Meta(#[from] adaptable_meta::MetaError),
    /// A task's text could not be tokenised.
    #[error("task {task:?}, line {line}: {source}")]
    Encode {
        /// The task.
        task: String,
        /// The line of the example in the task file.
        line: usize,
        /// The tokenizer's error.
        #[source]
        source: adaptable_models::ModelsError,
    },
    /// Settings that do not fit together (no tasks, a zero batch size, ...).
    #[error("{0}")]
    InvalidArgument(String),
}
