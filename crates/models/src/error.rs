//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong when configuring, loading or running an encoder.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a required field.
    #[error("invalid model config {path}: {message}")]
    InvalidConfig {
        /// The file (empty when the config did not come from a file).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `config.json` names an architecture this crate does not implement.
    #[error(
        "unsupported model_type {found:?} in {path}: expected \"roberta\" or \"bert\" \
         (roberta-base, roberta-large, distilroberta, all-MiniLM-L6-v2, ...)"
    )]
    UnsupportedModelType {
        /// The file.
        path: PathBuf,
        /// The `model_type` found.
        found: String,
    },
    /// The safetensors file could not be opened or parsed (missing, truncated, corrupt).
    #[error("cannot read weights from {path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// The store's message.
        message: String,
    },
    /// Strict loading found missing, unexpected or mismatched tensors; every problem is listed.
    #[error("weights in {path} do not match the model:\n{}", problems.join("\n"))]
    WeightMismatch {
        /// The file.
        path: PathBuf,
        /// One line per problem (`missing: ...`, `unexpected: ...`, `shape: ...`).
        problems: Vec<String>,
    },
    /// `tokenizer.json` could not be loaded or a text could not be encoded.
    #[error("tokenizer error{}: {message}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The file, when the error concerns loading one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// An input text (or the whole batch) is empty.
    #[error("empty input: {0}")]
    EmptyInput(String),
    /// A sequence is longer than the model's position table allows.
    #[error("sequence of {len} tokens exceeds the model's maximum of {max}")]
    SequenceTooLong {
        /// Tokens in the longest sequence.
        len: usize,
        /// The model's limit.
        max: usize,
    },
    /// A hyper-parameter or shape does not fit the model.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An adapter operation failed.
    #[error(transparent)]
    Lora(#[from] adaptable_lora::LoraError),
    /// A PEFT adapter directory does not fit the model; every problem is listed.
    #[error("PEFT adapter {dir} does not match the model:\n{}", problems.join("\n"))]
    PeftMismatch {
        /// The adapter directory.
        dir: PathBuf,
        /// One line per problem (`rank: ...`, `missing: ...`, `wrong shape: ...`, ...).
        problems: Vec<String>,
    },
    /// `adapter_config.json` cannot be parsed or describes something this crate cannot represent.
    #[error("PEFT adapter config: {0}")]
    PeftConfig(String),
}
