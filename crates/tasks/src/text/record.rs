//! One JSONL line of a text task file, checked field by field.

use std::path::Path;

use serde_json::{Map, Value};

use crate::TasksError;

/// A label as written: a class index or a class name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RawLabel {
    /// A non-negative integer.
    Index(usize),
    /// A string.
    Name(String),
}

/// What one line holds, before labels are mapped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawExample {
    /// `{"text", "text_pair"?, "label"}`.
    Classification {
        text: String,
        text_pair: Option<String>,
        label: RawLabel,
    },
    /// `{"context", "candidates", "label"}`; the label is already checked against the candidates.
    Ranking {
        context: String,
        candidates: Vec<String>,
        label: usize,
    },
}

/// A parsed line: its example, its task (the `task` field) and its split (the `split` field).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub line: usize,
    pub task: Option<String>,
    pub heldout: Option<bool>,
    pub example: RawExample,
}

/// Where a line is, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub path: &'a Path,
    pub line: usize,
}

impl At<'_> {
    pub fn error(self, reason: impl Into<String>) -> TasksError {
        TasksError::Parse {
            path: self.path.to_path_buf(),
            line: self.line,
            reason: reason.into(),
        }
    }

    fn missing(self, field: &'static str) -> TasksError {
        TasksError::MissingField {
            path: self.path.to_path_buf(),
            line: self.line,
            field,
        }
    }
}

/// Parses one non-blank line.
pub(crate) fn parse_line(text: &str, at: At<'_>) -> Result<Record, TasksError> {
    let value: Value = serde_json::from_str(text).map_err(|source| TasksError::Json {
        path: at.path.to_path_buf(),
        line: at.line,
        source,
    })?;
    let Value::Object(fields) = value else {
        return Err(at.error("expected a JSON object"));
    };
    let task = optional_string(&fields, "task", at)?;
    let heldout = match optional_string(&fields, "split", at)?.as_deref() {
        None => None,
        Some("train") => Some(false),
        Some("heldout" | "test" | "validation" | "valid" | "dev") => Some(true),
        Some(other) => {
            return Err(at.error(format!(
                "`split` is {other:?}; expected \"train\" or \"heldout\" (or test/validation/dev)"
            )));
        }
    };
    let example = match (fields.contains_key("text"), fields.contains_key("context")) {
        (true, false) => classification(&fields, at)?,
        (false, true) => ranking(&fields, at)?,
        (true, true) => {
            return Err(
                at.error("has both `text` (classification) and `context` (ranking); use one")
            );
        }
        (false, false) => {
            return Err(at.error("has neither `text` (classification) nor `context` (ranking)"));
        }
    };
    Ok(Record {
        line: at.line,
        task,
        heldout,
        example,
    })
}

fn classification(fields: &Map<String, Value>, at: At<'_>) -> Result<RawExample, TasksError> {
    let text = required_text(fields, "text", at)?;
    let text_pair = match fields.get("text_pair") {
        None | Some(Value::Null) => None,
        Some(_) => Some(required_text(fields, "text_pair", at)?),
    };
    let label = match fields.get("label") {
        None | Some(Value::Null) => return Err(at.missing("label")),
        Some(Value::String(name)) if !name.trim().is_empty() => RawLabel::Name(name.clone()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(i) => RawLabel::Index(to_index(i, at)?),
            None => {
                return Err(at.error(format!(
                    "`label` is {n}; a class label is a non-negative integer or a string"
                )));
            }
        },
        Some(other) => {
            return Err(at.error(format!(
                "`label` is {other}; a class label is a non-negative integer or a string"
            )));
        }
    };
    Ok(RawExample::Classification {
        text,
        text_pair,
        label,
    })
}

fn ranking(fields: &Map<String, Value>, at: At<'_>) -> Result<RawExample, TasksError> {
    let context = match fields.get("context") {
        Some(Value::String(s)) => s.clone(),
        // A dialogue history may be given as its utterances, oldest first.
        Some(Value::Array(items)) => strings(items, "context", at)?.join(" "),
        _ => return Err(at.error("`context` must be a string or a list of strings")),
    };
    let candidates = match fields.get("candidates") {
        None => return Err(at.missing("candidates")),
        Some(Value::Array(items)) => strings(items, "candidates", at)?,
        Some(_) => return Err(at.error("`candidates` must be a list of strings")),
    };
    if candidates.len() < 2 {
        return Err(at.error(format!(
            "`candidates` has {} entries; ranking needs at least 2",
            candidates.len()
        )));
    }
    if let Some(i) = candidates.iter().position(|c| c.trim().is_empty()) {
        return Err(at.error(format!("candidate {i} is empty")));
    }
    let label = match fields.get("label") {
        None | Some(Value::Null) => return Err(at.missing("label")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(i) => to_index(i, at)?,
            None => return Err(out_of_range(n.to_string(), candidates.len(), at)),
        },
        Some(other) => {
            return Err(at.error(format!(
                "`label` is {other}; for ranking it is the index of the right candidate"
            )));
        }
    };
    if label >= candidates.len() {
        return Err(out_of_range(label.to_string(), candidates.len(), at));
    }
    Ok(RawExample::Ranking {
        context,
        candidates,
        label,
    })
}

fn out_of_range(label: String, candidates: usize, at: At<'_>) -> TasksError {
    TasksError::LabelOutOfRange {
        path: at.path.to_path_buf(),
        line: at.line,
        label,
        candidates,
    }
}

fn to_index(i: u64, at: At<'_>) -> Result<usize, TasksError> {
    usize::try_from(i).map_err(|_| at.error(format!("`label` {i} is too large")))
}

fn strings(items: &[Value], field: &str, at: At<'_>) -> Result<Vec<String>, TasksError> {
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(at.error(format!("`{field}` holds {other}, not a string"))),
        })
        .collect()
}

fn required_text(
    fields: &Map<String, Value>,
    field: &'static str,
    at: At<'_>,
) -> Result<String, TasksError> {
    match fields.get(field) {
        None => Err(at.missing(field)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(at.error(format!("`{field}` is empty"))),
        Some(other) => Err(at.error(format!("`{field}` is {other}, not a string"))),
    }
}

fn optional_string(
    fields: &Map<String, Value>,
    field: &str,
    at: At<'_>,
) -> Result<Option<String>, TasksError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(at.error(format!("`{field}` is {other}, not a string"))),
    }
}
