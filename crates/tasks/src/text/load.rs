//! Reading task files: lines → records → tasks (grouping, label maps, held-out split).

use std::path::{Path, PathBuf};

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::record::{At, RawExample, RawLabel, Record, parse_line};
use super::{
    ClassificationExample, LabelMap, LoadOptions, RankingExample, TaskKind, TextExamples, TextTask,
};
use crate::TasksError;

/// Reads the tasks of one JSONL file (see the [module documentation](super)).
pub fn load_text_tasks(path: &Path, options: &LoadOptions) -> Result<Vec<TextTask>, TasksError> {
    let text = std::fs::read_to_string(path).map_err(|source| TasksError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_text_tasks(&text, path, options)
}

/// Reads the tasks of several files, in order; two tasks with the same name are an error.
pub fn load_text_task_files(
    paths: &[PathBuf],
    options: &LoadOptions,
) -> Result<Vec<TextTask>, TasksError> {
    let mut tasks: Vec<TextTask> = Vec::new();
    for path in paths {
        for task in load_text_tasks(path, options)? {
            if let Some(first) = tasks.iter().find(|t| t.name == task.name) {
                return Err(TasksError::DuplicateTask {
                    name: task.name,
                    first: first.path.clone(),
                    second: path.clone(),
                });
            }
            tasks.push(task);
        }
    }
    Ok(tasks)
}

/// Parses the text of a JSONL task file; `path` names it in errors and names a task without a
/// `task` field (its stem).
pub fn parse_text_tasks(
    text: &str,
    path: &Path,
    options: &LoadOptions,
) -> Result<Vec<TextTask>, TasksError> {
    if !(options.heldout_fraction > 0.0 && options.heldout_fraction < 1.0) {
        return Err(TasksError::InvalidHeldoutFraction(options.heldout_fraction));
    }
    let records = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(line, At { path, line: i + 1 }))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = records.first() else {
        return Err(TasksError::EmptyTaskFile {
            path: path.to_path_buf(),
        });
    };
    // `task` and `split` are all-or-nothing within a file, so that a forgotten field is an error
    // rather than a silently misplaced example.
    for (field, has) in [
        ("task", first.task.is_some()),
        ("split", first.heldout.is_some()),
    ] {
        let differs = |r: &&Record| match field {
            "task" => r.task.is_some() != has,
            _ => r.heldout.is_some() != has,
        };
        if let Some(r) = records.iter().find(differs) {
            let at = At { path, line: r.line };
            return Err(at.error(format!(
                "{} `{field}` field, but line {} {}; give every line one or none",
                if has { "has no" } else { "has a" },
                first.line,
                if has { "has one" } else { "has none" }
            )));
        }
    }

    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    let mut groups: Vec<(String, Vec<Record>)> = Vec::new();
    for record in records {
        let name = record.task.clone().unwrap_or_else(|| stem.clone());
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, group)) => group.push(record),
            None => groups.push((name, vec![record])),
        }
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(index, (name, records))| build_task(name, records, path, options, index))
        .collect()
}

fn build_task(
    name: String,
    records: Vec<Record>,
    path: &Path,
    options: &LoadOptions,
    index: usize,
) -> Result<TextTask, TasksError> {
    let task_error = |reason: String| TasksError::TextTask {
        path: path.to_path_buf(),
        task: name.clone(),
        reason,
    };
    let kind = kind_of(&records[0].example);
    if let Some(r) = records.iter().find(|r| kind_of(&r.example) != kind) {
        return Err(At { path, line: r.line }.error(format!(
            "a {} example in task {name:?}, whose first example (line {}) is {}",
            kind_of(&r.example).name(),
            records[0].line,
            kind.name()
        )));
    }
    let labels = label_map(&records, path)?;
    if kind == TaskKind::Classification && labels.len() < 2 {
        return Err(task_error(format!(
            "only one class ({:?}); classification needs at least two",
            labels.names().first().map(String::as_str).unwrap_or("")
        )));
    }

    let heldout = match records[0].heldout {
        Some(_) => records.iter().map(|r| r.heldout == Some(true)).collect(),
        None => fraction_split(records.len(), &name, options, index).map_err(task_error)?,
    };
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (record, is_heldout) in records.into_iter().zip(heldout) {
        if is_heldout {
            held.push(record);
        } else {
            train.push(record);
        }
    }
    for (split, part) in [("training", &train), ("held-out", &held)] {
        if part.is_empty() {
            return Err(task_error(format!("no {split} examples")));
        }
    }
    Ok(TextTask {
        train: examples(train, kind, &labels),
        heldout: examples(held, kind, &labels),
        name,
        path: path.to_path_buf(),
        labels,
    })
}

fn kind_of(example: &RawExample) -> TaskKind {
    match example {
        RawExample::Classification { .. } => TaskKind::Classification,
        RawExample::Ranking { .. } => TaskKind::Ranking,
    }
}

/// Class names: `0..=max` for integer labels, the sorted distinct names for string labels.
fn label_map(records: &[Record], path: &Path) -> Result<LabelMap, TasksError> {
    let labels: Vec<(&RawLabel, usize)> = records
        .iter()
        .filter_map(|r| match &r.example {
            RawExample::Classification { label, .. } => Some((label, r.line)),
            RawExample::Ranking { .. } => None,
        })
        .collect();
    let Some(&(first, first_line)) = labels.first() else {
        return Ok(LabelMap::default());
    };
    let integer = matches!(first, RawLabel::Index(_));
    if let Some(&(_, line)) = labels
        .iter()
        .find(|(l, _)| matches!(l, RawLabel::Index(_)) != integer)
    {
        return Err(At { path, line }.error(format!(
            "labels mix integers and strings (line {first_line} has {}); use one form per task",
            if integer { "an integer" } else { "a string" }
        )));
    }
    let names = if integer {
        let max = labels
            .iter()
            .filter_map(|(l, _)| match l {
                RawLabel::Index(i) => Some(*i),
                RawLabel::Name(_) => None,
            })
            .max()
            .unwrap_or(0);
        (0..=max).map(|i| i.to_string()).collect()
    } else {
        let mut names: Vec<String> = labels
            .iter()
            .filter_map(|(l, _)| match l {
                RawLabel::Name(n) => Some(n.clone()),
                RawLabel::Index(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    Ok(LabelMap::from_names(names))
}

fn examples(records: Vec<Record>, kind: TaskKind, labels: &LabelMap) -> TextExamples {
    match kind {
        TaskKind::Classification => TextExamples::Classification(
            records
                .into_iter()
                .filter_map(|r| match r.example {
                    RawExample::Classification {
                        text,
                        text_pair,
                        label,
                    } => Some(ClassificationExample {
                        text,
                        text_pair,
                        label: match label {
                            RawLabel::Index(i) => i,
                            // Present by construction of the map.
                            RawLabel::Name(n) => labels.index(&n).unwrap_or(0),
                        },
                        line: r.line,
                    }),
                    RawExample::Ranking { .. } => None,
                })
                .collect(),
        ),
        TaskKind::Ranking => TextExamples::Ranking(
            records
                .into_iter()
                .filter_map(|r| match r.example {
                    RawExample::Ranking {
                        context,
                        candidates,
                        label,
                    } => Some(RankingExample {
                        context,
                        candidates,
                        label,
                        line: r.line,
                    }),
                    RawExample::Classification { .. } => None,
                })
                .collect(),
        ),
    }
}

/// Which of `n` examples are held out: `round(n · fraction)` of them (at least one, leaving at
/// least one), drawn by a shuffle seeded with the options' seed and the task's position.
fn fraction_split(
    n: usize,
    name: &str,
    options: &LoadOptions,
    index: usize,
) -> Result<Vec<bool>, String> {
    if n < 2 {
        return Err(format!(
            "{n} example(s); a task needs at least 2 to hold one out"
        ));
    }
    let count = ((n as f64 * options.heldout_fraction).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    let seed = options
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64);
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut heldout = vec![false; n];
    for &i in &order[..count] {
        heldout[i] = true;
    }
    tracing::debug!("task {name}: {count} of {n} examples held out");
    Ok(heldout)
}
