//! The crate's error type.

use std::path::PathBuf;

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
    /// A training loss became NaN or infinite on a task's batch.
    #[error(
        "{method}: loss became {value} at epoch {epoch}, step {step}, task {task}; lower the learning rate or check the data"
    )]
    NonFiniteLoss {
        /// The algorithm.
        method: String,
        /// 1-based epoch.
        epoch: usize,
        /// Global optimizer step.
        step: usize,
        /// The task whose batch produced it.
        task: usize,
        /// The offending value.
        value: f64,
    },
    /// Task data that cannot be used (no tasks, an empty task).
    #[error("task data: {0}")]
    Data(String),
    /// The model could not be prepared (adapters or heads).
    #[error("model: {0}")]
    Model(String),
    /// Inputs whose shapes do not fit together.
    #[error("{0}")]
    Shape(String),
    /// An adapter could not be built.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// A checkpoint file or directory could not be written, read, renamed or removed.
    #[error("checkpoint {path}: {source}")]
    CheckpointIo {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A model or optimizer record could not be encoded, decoded or applied (e.g. a checkpoint of a
    /// different model).
    #[error("checkpoint {path}: {source}; delete the checkpoint directory to start the run over")]
    CheckpointRecord {
        /// The record file (or the directory being written).
        path: PathBuf,
        /// The cause.
        #[source]
        source: burn::store::RecordError,
    },
    /// A checkpoint's bookkeeping (`state.json`) could not be encoded or parsed.
    #[error("checkpoint {path}: {source}; delete the checkpoint directory to start the run over")]
    CheckpointState {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint whose files contradict each other (edited by hand or from another program).
    #[error("checkpoint {path} {reason}; delete the checkpoint directory to start the run over")]
    CheckpointInvalid {
        /// The bookkeeping file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A [`RetrainObserver`](crate::retrain::RetrainObserver) stopped the run with its own error.
    #[error("retraining observer: {0}")]
    Observer(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Training was asked for on a device that records no gradients.
    #[error(
        "{method} needs gradients, but the model is on a device without autodiff ({device}); \
         use `device.autodiff()`"
    )]
    NoAutodiff {
        /// The algorithm.
        method: &'static str,
        /// The device, as Burn prints it.
        device: String,
    },
}
