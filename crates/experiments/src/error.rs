//! The crate's error type: every message names what failed and where, on one line.

use std::path::PathBuf;

/// Everything that can stop an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A configuration file that is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column when known.
        message: String,
    },
    /// A sweep name that does not exist.
    #[error("unknown sweep `{0}`; expected one of: d, T, N, n, k, all")]
    UnknownSweep(String),
    /// A sweep value that is not a positive integer.
    #[error("sweep `{sweep}`: value {value} is not a positive integer")]
    InvalidSweepValue {
        /// The sweep.
        sweep: String,
        /// The offending value.
        value: String,
    },
    /// An option that is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A backend that is unknown or was not compiled in.
    #[error("{0}")]
    Device(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A results file could not be parsed.
    #[error("{path}: {message}")]
    Results {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A figure could not be drawn.
    #[error("cannot draw {path}: {message}")]
    Plot {
        /// The figure file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// Some runs of an experiment failed; the others finished and the report lists all of them.
    #[error("{failed} run(s) failed (see {report}); first: {first}")]
    RunsFailed {
        /// How many failed.
        failed: usize,
        /// The report that lists them.
        report: PathBuf,
        /// The first failure's message.
        first: String,
    },
    /// A finished retraining run whose checkpoint (the model fine-tuning starts from) is gone.
    #[error(
        "{checkpoint}: no checkpoint of a finished retraining run; delete {result} to retrain it"
    )]
    MissingCheckpoint {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The run's result record.
        result: PathBuf,
    },
    /// The encoder, its weights or its tokenizer.
    #[error(transparent)]
    Models(#[from] adaptable_models::ModelsError),
    /// Invalid task parameters.
    #[error(transparent)]
    Tasks(#[from] adaptable_tasks::TasksError),
    /// Retraining or fine-tuning failed.
    #[error(transparent)]
    Meta(#[from] adaptable_meta::MetaError),
    /// An adapter could not be built.
    #[error(transparent)]
    Lora(#[from] adaptable_lora::LoraError),
}
