//! The shipped text-task fixtures (`datasets/text-tasks/`) are exactly what the documented rule
//! makes from the shipped ConvAI2 validation file, and they load.
//!
//! Regenerate them with `ADAPTABLE_WRITE_TEXT_TASKS=1 cargo test --release -p adaptable-tasks
//! --test text_fixtures`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use adaptable_tasks::convai2::{Convai2Data, SplitConfig, build_split, persona_key};
use adaptable_tasks::text::{LoadOptions, TaskKind, load_text_tasks};
use serde_json::json;

/// Topic tasks: a persona sentence is `topic` when one of its words is in the list.
const TOPICS: [(&str, &[&str]); 4] = [
    (
        "pets",
        &[
            "dog", "dogs", "cat", "cats", "pet", "pets", "puppy", "kitten", "horse", "horses",
            "fish",
        ],
    ),
    (
        "family",
        &[
            "mother", "mom", "father", "dad", "sister", "sisters", "brother", "brothers", "wife",
            "husband", "son", "daughter", "kids", "children", "parents",
        ],
    ),
    (
        "food",
        &[
            "eat",
            "eating",
            "food",
            "pizza",
            "cook",
            "cooking",
            "chocolate",
            "vegan",
            "vegetarian",
            "coffee",
            "meat",
            "cake",
            "bake",
            "baking",
        ],
    ),
    (
        "music",
        &[
            "music", "guitar", "piano", "sing", "singing", "band", "song", "songs", "concert",
            "rock", "jazz", "violin", "drums",
        ],
    ),
];
/// Examples per class in a topic task.
const PER_CLASS: usize = 24;
/// Persona ranking tasks: training and held-out examples per persona, candidates per example.
const RANK_TRAIN: usize = 12;
const RANK_HELDOUT: usize = 6;
const RANK_CANDIDATES: usize = 4;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/text-tasks")
}

fn words(sentence: &str) -> BTreeSet<String> {
    sentence
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `count` items spread evenly over `items` (first, then every `len / count`-th).
fn spread<T: Clone>(items: &[T], count: usize) -> Vec<T> {
    assert!(items.len() >= count, "{} < {count}", items.len());
    (0..count)
        .map(|i| items[i * items.len() / count].clone())
        .collect()
}

/// Topic task files: the distinct persona sentences of the validation file (normalised by
/// `persona_key`, sorted), `PER_CLASS` spread evenly over those with a topic word (`topic`) and
/// as many over those without (`other`), interleaved. No `split` field: 20 % are held out by the
/// loader's seeded draw.
fn topic_files(data: &Convai2Data) -> Vec<(String, String)> {
    let sentences: BTreeSet<String> = data
        .valid
        .episodes
        .iter()
        .flat_map(|e| e.your_persona.iter().map(|s| persona_key(s)))
        .collect();
    let sentences: Vec<String> = sentences.into_iter().collect();
    TOPICS
        .iter()
        .map(|(topic, list)| {
            let hit = |s: &String| words(s).iter().any(|w| list.contains(&w.as_str()));
            let yes: Vec<String> = sentences.iter().filter(|s| hit(s)).cloned().collect();
            let no: Vec<String> = sentences.iter().filter(|s| !hit(s)).cloned().collect();
            let mut text = String::new();
            for (a, b) in spread(&yes, PER_CLASS).iter().zip(spread(&no, PER_CLASS)) {
                text += &format!("{}\n", json!({"text": a, "label": topic}));
                text += &format!("{}\n", json!({"text": b, "label": "other"}));
            }
            (format!("{topic}.jsonl"), text)
        })
        .collect()
}

/// Ranking file: the first four retraining personas of the default ConvAI2 split
/// (`SplitConfig::default()`), `RANK_TRAIN` training and `RANK_HELDOUT` held-out examples each
/// (the first ones), context = the last two utterances, candidates = the gold and the first
/// `RANK_CANDIDATES - 1` distractors in the example's (seeded) candidate order.
fn ranking_file(data: &Convai2Data) -> (String, String) {
    let config = SplitConfig::default();
    let split = build_split(data, &config).expect("default split");
    let options = config.example_options();
    let mut text = String::new();
    for task in split.retrain.iter().take(4) {
        let train = task.train_examples(&options).expect("examples");
        let heldout = task.heldout_examples(&options).expect("examples");
        for (examples, count, name) in [
            (train, RANK_TRAIN, "train"),
            (heldout, RANK_HELDOUT, "heldout"),
        ] {
            for example in examples.iter().take(count) {
                let keep: Vec<usize> = (0..example.candidates.len())
                    .filter(|&c| c != example.gold)
                    .take(RANK_CANDIDATES - 1)
                    .chain([example.gold])
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let candidates: Vec<&String> =
                    keep.iter().map(|&c| &example.candidates[c]).collect();
                let label = keep
                    .iter()
                    .position(|&c| c == example.gold)
                    .expect("gold kept");
                let start = example.context.len().saturating_sub(2);
                let line = json!({
                    "task": format!("persona-{}", task.id),
                    "context": example.context[start..],
                    "candidates": candidates,
                    "label": label,
                    "split": name,
                });
                text += &format!("{line}\n");
            }
        }
    }
    ("personas.jsonl".into(), text)
}

fn all_files() -> Vec<(String, String)> {
    let data = Convai2Data::load_default().expect("shipped ConvAI2 file");
    let mut files = topic_files(&data);
    files.push(ranking_file(&data));
    files
}

#[test]
fn shipped_text_tasks_follow_the_rule_and_load() {
    let files = all_files();
    if std::env::var_os("ADAPTABLE_WRITE_TEXT_TASKS").is_some() {
        for (name, text) in &files {
            std::fs::write(dir().join(name), text).expect("write fixture");
        }
    }
    for (name, text) in &files {
        let path = dir().join(name);
        let shipped =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            shipped == *text,
            "{name} differs from the rule; regenerate with ADAPTABLE_WRITE_TEXT_TASKS=1"
        );
        let tasks = load_text_tasks(&path, &LoadOptions::default()).expect("loads");
        check_loaded(name, &tasks);
    }
}

fn check_loaded(name: &str, tasks: &[adaptable_tasks::text::TextTask]) {
    if name == "personas.jsonl" {
        assert_eq!(tasks.len(), 4);
        for task in tasks {
            assert_eq!(task.kind(), TaskKind::Ranking);
            assert_eq!(
                (task.train.len(), task.heldout.len()),
                (RANK_TRAIN, RANK_HELDOUT)
            );
        }
    } else {
        let [task] = tasks else {
            panic!("{name}: one task")
        };
        let topic = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem");
        assert_eq!(task.name, topic);
        let mut names = ["other", topic];
        names.sort();
        assert_eq!(task.labels.names(), names);
        assert_eq!(task.train.len() + task.heldout.len(), 2 * PER_CLASS);
        assert_eq!(task.heldout.len(), 10, "round(48 · 0.2)");
    }
}
