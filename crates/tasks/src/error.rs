//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong when building tasks.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// A task-family parameter that must be positive is zero.
    #[error("invalid task configuration: `{name}` must be at least 1, got {value}")]
    NonPositive {
        /// The parameter's name as it appears in configs.
        name: &'static str,
        /// The value given.
        value: usize,
    },
    /// A noise level that is negative or not finite.
    #[error("invalid task configuration: `noise_std` must be finite and >= 0, got {0}")]
    InvalidNoise(f64),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A malformed line in a ConvAI2 (ParlAI fbdialog) file or a JSONL text-task file.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file (or the name given to an in-memory reader).
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// Reading or decompressing a ConvAI2 file failed at a given line.
    #[error("{path}:{line}: cannot read: {source}")]
    ReadLine {
        /// The file.
        path: PathBuf,
        /// The line being read, counted from 1.
        line: usize,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Episodes could not be written in ConvAI2 format.
    #[error("cannot write ConvAI2 episode {episode}: {reason}")]
    Write {
        /// Position of the offending episode in the written sequence, from 0.
        episode: usize,
        /// What prevents writing it.
        reason: String,
    },
    /// An invalid ConvAI2 task or batch configuration.
    #[error("invalid ConvAI2 configuration: {0}")]
    Convai2Config(String),
    /// A ConvAI2 split asks for more persona clusters than the data has, or for clusters too small to hold out
    /// the requested dialogues.
    #[error("cannot build the ConvAI2 split: {0}")]
    Convai2Split(String),
    /// A turn without candidates where candidates are needed (e.g. a `*_no_cands` file used for ranking).
    #[error("{path}: episode {episode} (line {line}), turn {turn}: no candidate replies")]
    NoCandidates {
        /// The file the episode came from.
        path: PathBuf,
        /// Position of the episode in its file, from 0.
        episode: usize,
        /// Line of the episode's start in its file.
        line: usize,
        /// Turn within the episode, from 0.
        turn: usize,
    },
    /// A [`crate::convai2::PairTokenizer`] failed or broke its contract.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A line of a JSONL task file is not valid JSON.
    #[error("{path}:{line}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A line of a JSONL task file lacks a required field.
    #[error("{path}:{line}: missing `{field}`")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// The field.
        field: &'static str,
    },
    /// A ranking label that is not the index of one of the line's candidates.
    #[error(
        "{path}:{line}: label {label} is out of range: the line has {candidates} candidates (labels 0..{candidates})"
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// The label as written.
        label: String,
        /// Number of candidates on the line.
        candidates: usize,
    },
    /// A task file with no examples.
    #[error("{path}: the task file has no examples")]
    EmptyTaskFile {
        /// The file.
        path: PathBuf,
    },
    /// A text task that cannot be used as a whole (one class, an empty split).
    #[error("{path}: task {task:?}: {reason}")]
    TextTask {
        /// The file.
        path: PathBuf,
        /// The task's name.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// Two task files define tasks of the same name.
    #[error("task {name:?} is defined in {} and again in {}; task names must be unique", first.display(), second.display())]
    DuplicateTask {
        /// The name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The held-out fraction is not strictly between 0 and 1.
    #[error("the held-out fraction must be between 0 and 1 (exclusive), got {0}")]
    InvalidHeldoutFraction(f64),
}
