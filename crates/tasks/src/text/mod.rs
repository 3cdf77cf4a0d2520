//! Your own text tasks from JSONL files: classification and ranking (multiple choice).
//!
//! One JSON object per line. A file holds one task, or several when its lines carry a `task` field
//! (tasks keep the order of their first line). Blank lines are skipped; line numbers count them.
//!
//! * **classification**: `{"text": "...", "text_pair": "..." (optional), "label": 2}` or
//!   `"label": "positive"`. Integer labels are class indices (`0..=max`); string labels are mapped
//!   to indices in sorted order ([`LabelMap`]). One file may not mix the two.
//! * **ranking**: `{"context": "..." (or a list of utterances), "candidates": ["...", ...],
//!   "label": <index of the right candidate>}`. ConvAI2 personas are tasks of this kind.
//!
//! Held-out examples: when lines carry `"split": "train"` / `"heldout"` (every line of the file
//! must then have one), they decide; otherwise [`LoadOptions::heldout_fraction`] of each task's
//! examples, picked by a shuffle seeded with [`LoadOptions::seed`], are held out (at least one,
//! and at least one stays for training).
//!
//! Every problem is reported as one [`TasksError`](crate::TasksError) naming `file:line` (or the file).
//!
//! ```
//! use adaptable_tasks::text::{LoadOptions, TaskKind, parse_text_tasks};
//! use std::path::Path;
//!
//! let jsonl = r#"{"task": "mood", "text": "what a day", "label": "happy"}
//! {"task": "mood", "text": "it rains again", "label": "sad"}
//! {"task": "mood", "text": "sunshine!", "label": "happy", "split": "heldout"}
//! {"task": "reply", "context": "hi, how are you?", "candidates": ["fine, thanks", "blue"], "label": 0}
//! {"task": "reply", "context": "what colour?", "candidates": ["fine", "blue"], "label": 1, "split": "heldout"}
//! "#;
//! // Lines without `split` would be an error here, since some lines have one.
//! let jsonl = jsonl.replacen(r#""label": "happy"}"#, r#""label": "happy", "split": "train"}"#, 1)
//!     .replacen(r#""label": "sad"}"#, r#""label": "sad", "split": "train"}"#, 1)
//!     .replacen(r#""label": 0}"#, r#""label": 0, "split": "train"}"#, 1);
//! let tasks = parse_text_tasks(&jsonl, Path::new("tasks.jsonl"), &LoadOptions::default())?;
//! assert_eq!(tasks.len(), 2);
//! assert_eq!(tasks[0].kind(), TaskKind::Classification);
//! assert_eq!(tasks[0].labels.names(), ["happy", "sad"]);
//! assert_eq!((tasks[0].train.len(), tasks[0].heldout.len()), (2, 1));
//! assert_eq!(tasks[1].kind(), TaskKind::Ranking);
//! # Ok::<(), adaptable_tasks::TasksError>(())
//! ```

mod load;
mod record;

use std::path::PathBuf;

pub use load::{load_text_task_files, load_text_tasks, parse_text_tasks};

/// What a task asks of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// One label per text (or text pair).
    Classification,
    /// Pick the right candidate for a context.
    Ranking,
}

impl TaskKind {
    /// `classification` or `ranking`.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Ranking => "ranking",
        }
    }
}

/// A text (or text pair) with its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassificationExample {
    /// The text.
    pub text: String,
    /// The second text of a pair task (entailment, paraphrase, ...).
    pub text_pair: Option<String>,
    /// Class index into the task's [`LabelMap`].
    pub label: usize,
    /// Line in the source file, from 1.
    pub line: usize,
}

/// A context, its candidates and the index of the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingExample {
    /// The context (utterances given as a list are joined with spaces).
    pub context: String,
    /// At least two non-empty candidates.
    pub candidates: Vec<String>,
    /// Index of the right candidate.
    pub label: usize,
    /// Line in the source file, from 1.
    pub line: usize,
}

/// The examples of one split of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextExamples {
    /// Classification examples.
    Classification(Vec<ClassificationExample>),
    /// Ranking examples.
    Ranking(Vec<RankingExample>),
}

impl TextExamples {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            TextExamples::Classification(e) => e.len(),
            TextExamples::Ranking(e) => e.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of the examples.
    pub fn kind(&self) -> TaskKind {
        match self {
            TextExamples::Classification(_) => TaskKind::Classification,
            TextExamples::Ranking(_) => TaskKind::Ranking,
        }
    }
}

/// Class names by index. Integer labels map to themselves (`"0"`, `"1"`, ...); string labels are
/// sorted, so the same set of names always gets the same indices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelMap {
    names: Vec<String>,
}

impl LabelMap {
    /// A map from explicit names (index `i` is `names[i]`).
    pub fn from_names(names: Vec<String>) -> Self {
        Self { names }
    }

    /// Class names, by index (empty for a ranking task).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes (ranking tasks).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of class `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// One task: its name, its source, its labels and its two splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTask {
    /// The `task` field, or the file's stem when lines have none.
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// Class names (classification), empty for ranking.
    pub labels: LabelMap,
    /// Training examples.
    pub train: TextExamples,
    /// Held-out examples.
    pub heldout: TextExamples,
}

impl TextTask {
    /// Classification or ranking.
    pub fn kind(&self) -> TaskKind {
        self.train.kind()
    }

    /// Classes a classifier head needs: the label count, or 2 for ranking (a candidate is right or
    /// not, scored by the class-1 logit).
    pub fn num_classes(&self) -> usize {
        match self.kind() {
            TaskKind::Classification => self.labels.len(),
            TaskKind::Ranking => 2,
        }
    }
}

/// How files are split and read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Fraction of each task held out when lines carry no `split` field (0 < f < 1).
    pub heldout_fraction: f64,
    /// Seed of the held-out draw.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            heldout_fraction: 0.2,
            seed: 0,
        }
    }
}
