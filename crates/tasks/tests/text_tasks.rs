//! JSONL text tasks: kinds, label maps, split rules and one precise error per bad input.

use std::path::Path;

use adaptable_tasks::TasksError;
use adaptable_tasks::text::{
    LoadOptions, TaskKind, TextExamples, load_text_tasks, parse_text_tasks,
};

fn parse(text: &str) -> Result<Vec<adaptable_tasks::text::TextTask>, TasksError> {
    parse_text_tasks(text, Path::new("data/t.jsonl"), &LoadOptions::default())
}

fn error(text: &str) -> String {
    parse(text).expect_err("must be rejected").to_string()
}

#[test]
fn integer_and_string_labels_and_pairs() {
    let text = (0..10)
        .map(|i| {
            format!(
                r#"{{"text": "t{i}", "text_pair": "p{i}", "label": {}}}"#,
                i % 3
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tasks = parse(&text).expect("valid");
    let [task] = tasks.as_slice() else {
        panic!("one task")
    };
    assert_eq!(task.name, "t");
    assert_eq!(task.labels.names(), ["0", "1", "2"]);
    assert_eq!(task.num_classes(), 3);
    assert_eq!((task.train.len(), task.heldout.len()), (8, 2));
    let TextExamples::Classification(train) = &task.train else {
        panic!("classification")
    };
    assert!(
        train
            .iter()
            .all(|e| e.text_pair.as_deref() == Some(&format!("p{}", &e.text[1..])[..]))
    );
    assert!(train.iter().all(|e| e.label == (e.line - 1) % 3));

    let named =
        "{\"text\": \"a\", \"label\": \"zebra\"}\n\n{\"text\": \"b\", \"label\": \"ant\"}\n";
    let task = &parse(named).expect("valid")[0];
    assert_eq!(task.labels.names(), ["ant", "zebra"]);
    let all: Vec<(usize, usize)> = [&task.train, &task.heldout]
        .iter()
        .flat_map(|x| match x {
            TextExamples::Classification(e) => {
                e.iter().map(|e| (e.line, e.label)).collect::<Vec<_>>()
            }
            TextExamples::Ranking(_) => vec![],
        })
        .collect();
    // Line numbers count the blank line.
    assert!(all.contains(&(1, 1)) && all.contains(&(3, 0)), "{all:?}");
}

#[test]
fn the_fraction_split_is_seeded_and_the_split_field_decides_when_present() {
    let text: String = (0..20)
        .map(|i| format!("{{\"text\": \"t{i}\", \"label\": {}}}\n", i % 2))
        .collect();
    let held = |seed| {
        let options = LoadOptions {
            heldout_fraction: 0.25,
            seed,
        };
        let task = &parse_text_tasks(&text, Path::new("x.jsonl"), &options).expect("valid")[0];
        match &task.heldout {
            TextExamples::Classification(e) => e.iter().map(|e| e.line).collect::<Vec<_>>(),
            TextExamples::Ranking(_) => unreachable!(),
        }
    };
    assert_eq!(held(1).len(), 5);
    assert_eq!(held(1), held(1));
    assert_ne!(held(1), held(2));

    let text = r#"{"task": "r", "context": ["hi", "there"], "candidates": ["a", "b", "c"], "label": 2, "split": "train"}
{"task": "r", "context": "yo", "candidates": ["a", "b"], "label": 0, "split": "test"}
{"task": "c", "text": "x", "label": 0, "split": "train"}
{"task": "c", "text": "y", "label": 1, "split": "heldout"}"#;
    let tasks = parse(text).expect("valid");
    assert_eq!(
        tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["r", "c"]
    );
    assert_eq!(tasks[0].kind(), TaskKind::Ranking);
    assert_eq!(tasks[0].num_classes(), 2);
    let TextExamples::Ranking(train) = &tasks[0].train else {
        panic!("ranking")
    };
    assert_eq!(train[0].context, "hi there");
    assert_eq!(train[0].label, 2);
    assert_eq!((tasks[1].train.len(), tasks[1].heldout.len()), (1, 1));
}

#[test]
fn every_bad_input_is_one_precise_error_naming_file_and_line() {
    let ok = r#"{"text": "fine", "label": 0}"#;
    let cases: [(String, &str); 10] = [
        (
            format!("{ok}\n{{\"text\": \"x\", \"label\": 1"),
            "data/t.jsonl:2: not valid JSON",
        ),
        (
            format!("{ok}\n{{\"text\": \"x\"}}"),
            "data/t.jsonl:2: missing `label`",
        ),
        (
            r#"{"context": "c", "candidates": ["a", "b"], "label": 2}"#.into(),
            "data/t.jsonl:1: label 2 is out of range: the line has 2 candidates",
        ),
        (
            r#"{"context": "c", "candidates": ["a", "b"], "label": -1}"#.into(),
            "data/t.jsonl:1: label -1 is out of range",
        ),
        (
            "\n  \n".into(),
            "data/t.jsonl: the task file has no examples",
        ),
        (
            format!("{ok}\n{{\"text\": \"x\", \"label\": \"b\"}}"),
            "data/t.jsonl:2: labels mix integers and strings",
        ),
        (
            format!("{ok}\n{{\"context\": \"c\", \"candidates\": [\"a\", \"b\"], \"label\": 0}}"),
            "data/t.jsonl:2: a ranking example",
        ),
        (
            format!("{ok}\n{ok}"),
            "data/t.jsonl: task \"t\": only one class",
        ),
        (
            format!("{ok}\n{{\"text\": \"x\", \"label\": 1, \"split\": \"train\"}}"),
            "data/t.jsonl:2: has a `split` field, but line 1 has none",
        ),
        (
            r#"{"text": "a", "label": 0, "split": "train"}
{"text": "b", "label": 1, "split": "train"}"#
                .into(),
            "data/t.jsonl: task \"t\": no held-out examples",
        ),
    ];
    for (text, want) in cases {
        let got = error(&text);
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        assert_eq!(got.lines().count(), 1, "{got}");
    }
    assert!(matches!(
        parse(&format!("{ok}\n{{\"text\": \"x\"}}")),
        Err(TasksError::MissingField {
            line: 2,
            field: "label",
            ..
        })
    ));
    let missing = load_text_tasks(Path::new("/nonexistent/t.jsonl"), &LoadOptions::default())
        .expect_err("no file");
    assert!(
        missing
            .to_string()
            .starts_with("cannot read /nonexistent/t.jsonl"),
        "{missing}"
    );
    let bad = LoadOptions {
        heldout_fraction: 1.0,
        seed: 0,
    };
    assert!(matches!(
        parse_text_tasks(ok, Path::new("t.jsonl"), &bad),
        Err(TasksError::InvalidHeldoutFraction(_))
    ));
}
