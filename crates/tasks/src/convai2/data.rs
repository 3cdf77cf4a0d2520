//! Loading the ConvAI2 files the project works with: the shipped validation split, and a train split if a user has it.

use std::path::{Path, PathBuf};

use super::episode::Episode;
use super::parser::read_file;
use crate::TasksError;

/// File names looked up in a data directory, in order of preference.
const VALID_NAMES: [&str; 2] = ["valid_self_original.txt", "valid_self_original.txt.gz"];
const TRAIN_NAMES: [&str; 2] = ["train_self_original.txt", "train_self_original.txt.gz"];

/// The shipped validation file, `<workspace>/datasets/convai2/valid_self_original.txt.gz`.
///
/// The path is fixed at compile time from this crate's location, so it is valid in a checkout of the workspace.
pub fn default_valid_path() -> PathBuf {
    default_data_dir().join("valid_self_original.txt.gz")
}

/// The shipped data directory, `<workspace>/datasets/convai2`.
pub fn default_data_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // crates/tasks -> workspace root; the fallback keeps a usable (if unnormalised) path for odd layouts.
    match crate_dir.parent().and_then(Path::parent) {
        Some(root) => root.join("datasets/convai2"),
        None => crate_dir.join("../../datasets/convai2"),
    }
}

/// All episodes of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// The file they were read from.
    pub path: PathBuf,
    /// The episodes in file order ([`Episode::index`] is the position here).
    pub episodes: Vec<Episode>,
}

impl Corpus {
    /// Reads a ConvAI2 file, plain or gzip.
    pub fn load(path: &Path) -> Result<Self, TasksError> {
        Ok(Self {
            path: path.to_path_buf(),
            episodes: read_file(path)?,
        })
    }

    /// Number of examples (dialogue turns) in the file.
    pub fn examples(&self) -> usize {
        self.episodes.iter().map(|e| e.turns.len()).sum()
    }
}

/// The ConvAI2 files available: always a validation file, optionally a train file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convai2Data {
    /// The validation split; the test personas come from it, and the retraining personas too when there is no train
    /// split.
    pub valid: Corpus,
    /// The train split (`train_self_original.txt`), when the user supplies it: the retraining personas then come from
    /// it, as in the paper.
    pub train: Option<Corpus>,
}

impl Convai2Data {
    /// Loads from a path that is either one file (used as the validation split) or a directory holding
    /// `valid_self_original.txt[.gz]` and optionally `train_self_original.txt[.gz]` (the plain file is preferred).
    pub fn load(path: &Path) -> Result<Self, TasksError> {
        if !path.is_dir() {
            return Self::from_files(path, None);
        }
        let find = |names: &[&str]| names.iter().map(|n| path.join(n)).find(|p| p.is_file());
        let valid = find(&VALID_NAMES).ok_or_else(|| TasksError::Io {
            path: path.join(VALID_NAMES[0]),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no valid_self_original.txt or valid_self_original.txt.gz in the directory",
            ),
        })?;
        Self::from_files(&valid, find(&TRAIN_NAMES).as_deref())
    }

    /// Loads the shipped validation file ([`default_valid_path`]).
    pub fn load_default() -> Result<Self, TasksError> {
        Self::from_files(&default_valid_path(), None)
    }

    /// Loads a validation file and, optionally, a train file.
    pub fn from_files(valid: &Path, train: Option<&Path>) -> Result<Self, TasksError> {
        Ok(Self {
            valid: Corpus::load(valid)?,
            train: train.map(Corpus::load).transpose()?,
        })
    }

    /// The corpora in the order train (if any), valid.
    pub fn corpora(&self) -> impl Iterator<Item = &Corpus> {
        self.train.iter().chain(std::iter::once(&self.valid))
    }
}
