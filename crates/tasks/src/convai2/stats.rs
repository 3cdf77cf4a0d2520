//! Summary numbers of a persona split, for the `adaptable convai2 stats` command.

use std::fmt::Write as _;

use serde::Serialize;

use super::data::Convai2Data;
use super::split::{PersonaSplit, PersonaTask};

/// Per-task numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStats {
    /// The task's persona rank ([`PersonaTask::id`]).
    pub id: usize,
    /// Dialogues of the task.
    pub dialogues: usize,
    /// Examples of its training dialogues.
    pub train_examples: usize,
    /// Examples of its held-out dialogues.
    pub heldout_examples: usize,
}

/// Counts over the loaded data and per task of a split; serialises to the JSON object of
/// `adaptable convai2 stats --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Convai2Stats {
    /// Episodes in all loaded files.
    pub episodes: usize,
    /// Examples in all loaded files.
    pub examples: usize,
    /// Persona clusters in all loaded files.
    pub clusters: usize,
    /// The retraining tasks.
    pub retrain_tasks: Vec<TaskStats>,
    /// The test tasks.
    pub test_tasks: Vec<TaskStats>,
}

impl TaskStats {
    /// The numbers of one task.
    pub fn of(task: &PersonaTask) -> Self {
        Self {
            id: task.id,
            dialogues: task.dialogues(),
            train_examples: task.train_example_count(),
            heldout_examples: task.heldout_example_count(),
        }
    }
}

impl Convai2Stats {
    /// The numbers of a split.
    pub fn of(split: &PersonaSplit) -> Self {
        Self {
            episodes: split.episodes,
            examples: split.examples,
            clusters: split.clusters,
            retrain_tasks: split.retrain.iter().map(TaskStats::of).collect(),
            test_tasks: split.test.iter().map(TaskStats::of).collect(),
        }
    }

    /// A plain-text table for terminals.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "episodes: {}\nexamples: {}\npersona clusters: {}",
            self.episodes, self.examples, self.clusters
        );
        for (title, tasks) in [
            ("retraining tasks", &self.retrain_tasks),
            ("test tasks", &self.test_tasks),
        ] {
            let _ = writeln!(out, "\n{title} ({}):", tasks.len());
            let _ = writeln!(
                out,
                "{:>6} {:>10} {:>15} {:>17}",
                "id", "dialogues", "train examples", "held-out examples"
            );
            for t in tasks.iter() {
                let _ = writeln!(
                    out,
                    "{:>6} {:>10} {:>15} {:>17}",
                    t.id, t.dialogues, t.train_examples, t.heldout_examples
                );
            }
            let (d, tr, h) = tasks.iter().fold((0, 0, 0), |(d, tr, h), t| {
                (
                    d + t.dialogues,
                    tr + t.train_examples,
                    h + t.heldout_examples,
                )
            });
            let _ = writeln!(out, "{:>6} {d:>10} {tr:>15} {h:>17}", "total");
        }
        out
    }
}

impl std::fmt::Display for Convai2Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// Loads ConvAI2 data and computes the stats of the split `config` describes; `data` is a file or a directory as
/// accepted by [`Convai2Data::load`], or `None` for the shipped validation file.
pub fn stats_for_path(
    data: Option<&std::path::Path>,
    config: &super::split::SplitConfig,
) -> Result<Convai2Stats, crate::TasksError> {
    let data = match data {
        Some(path) => Convai2Data::load(path)?,
        None => Convai2Data::load_default()?,
    };
    Ok(Convai2Stats::of(&super::split::build_split(&data, config)?))
}
