//! `adaptable retrain`, `finetune` and `evaluate` on the shipped JSONL tasks with a tiny random
//! RoBERTa directory, and their bad-input errors: one line naming file:line or path, a non-zero
//! exit, nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use adaptable_models::peft::export_model_dir;
use adaptable_models::{EncoderConfig, SequenceClassifierConfig, load_pretrained_encoder};
use burn::tensor::Device;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn task(name: &str) -> String {
    root()
        .join(format!("datasets/text-tasks/{name}.jsonl"))
        .display()
        .to_string()
}

fn adaptable(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adaptable"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run adaptable")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("adaptable-text-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A random 2-layer RoBERTa (hidden 32) with the shipped tokenizer, as a Hugging Face directory.
fn tiny_model_dir(parent: &Path) -> PathBuf {
    let device = Device::default();
    device.seed(11);
    let mut config = EncoderConfig::roberta_base().with_dropout(0.0);
    (
        config.hidden_size,
        config.num_hidden_layers,
        config.intermediate_size,
    ) = (32, 2, 64);
    (config.num_attention_heads, config.max_position_embeddings) = (4, 66);
    let model = SequenceClassifierConfig::new(config, 2, 1)
        .init(&device)
        .expect("model");
    let dir = parent.join("tiny");
    export_model_dir(&model, &root().join("datasets/roberta-tokenizer"), &dir).expect("export");
    dir
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "`{needle}` not in: {stderr}"
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file")).expect("json")
}

#[test]
fn retrain_then_finetune_then_evaluate_on_the_shipped_tasks() {
    let dir = scratch("flow");
    let model = tiny_model_dir(&dir);
    let retrained = dir.join("retrained");
    let m = model.to_str().unwrap();
    let r = retrained.to_str().unwrap();
    let common = ["--max-len", "40", "--epochs", "1"];
    let (pets, family, food, music) = (task("pets"), task("family"), task("food"), task("music"));
    let (pets, family, food, music) = (
        pets.as_str(),
        family.as_str(),
        food.as_str(),
        music.as_str(),
    );
    let mut args = vec!["-q", "retrain", "--model", m, "--tasks", pets, family, food];
    args.extend([
        "--method", "lora-ml", "--rank", "2", "--lr", "1e-3", "--out", r,
    ]);
    args.extend(common);
    ok(&adaptable(&args));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "retrain-report.json",
    ] {
        assert!(retrained.join(file).is_file(), "{file} missing");
    }
    let report = read_json(&retrained.join("retrain-report.json"));
    assert_eq!(report["method"], "lora-ml");
    assert_eq!(report["epochs"].as_array().expect("epochs").len(), 1);
    assert_eq!(
        report["epochs"][0]["heldout_accuracy"]
            .as_array()
            .expect("acc")
            .len(),
        3
    );
    assert_eq!(report["tasks"][1]["name"], "family");
    load_pretrained_encoder(&retrained, None, &Device::default()).expect("strict reload");
    // A finished run is not redone.
    let again = ok(&adaptable(&args));
    assert!(again.contains("nothing to do"), "{again}");

    let adapter = dir.join("adapter");
    let a = adapter.to_str().unwrap();
    let mut args = vec![
        "-q",
        "finetune",
        "--model",
        r,
        "--task",
        music,
        "--lora-rank",
        "2",
    ];
    args.extend(["--lr", "1e-3", "--out", a]);
    args.extend(common);
    ok(&adaptable(&args));
    let metrics = read_json(&adapter.join("finetune-metrics.json"));
    assert_eq!(metrics["head_exported"], true);
    let accuracy = metrics["heldout_accuracy"].as_array().expect("accuracy");
    assert_eq!(accuracy.len(), 2);

    // The exported adapter and head give back exactly the fine-tuned model's held-out accuracy.
    let out = ok(&adaptable(&[
        "-q",
        "evaluate",
        "--model",
        r,
        "--adapter",
        a,
        "--task",
        music,
        "--max-len",
        "40",
    ]));
    let evaluated: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(evaluated["music"], accuracy[1], "{out}");
    ok(&adaptable(&[
        "-q",
        "adapters",
        "import",
        "--model",
        r,
        "--adapter",
        a,
    ]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `adaptable retrain` killed at every durable write of its checkpoints in turn (the process aborts
/// as `kill -9` would), then rerun with the same command, ends with the weights and report of a run
/// that was never interrupted, and removes its checkpoint.
#[test]
fn a_killed_retraining_resumes_to_the_same_model() {
    let dir = scratch("resume");
    let model = tiny_model_dir(&dir);
    let (pets, family) = (task("pets"), task("family"));
    let run = |out: &Path, fault: Option<usize>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_adaptable"));
        cmd.args([
            "-q",
            "retrain",
            "--model",
            model.to_str().unwrap(),
            "--tasks",
        ])
        .args([pets.as_str(), family.as_str()])
        .args([
            "--method", "lora-ml", "--rank", "2", "--lr", "1e-3", "--epochs", "2",
        ])
        .args(["--max-len", "40", "--out", out.to_str().unwrap()])
        .env_remove("RUST_LOG");
        if let Some(n) = fault {
            cmd.env("ADAPTABLE_FAULT_AFTER_WRITES", n.to_string());
        }
        cmd.output().expect("run adaptable")
    };
    let reference = dir.join("reference");
    ok(&run(&reference, None));
    let weights = std::fs::read(reference.join("model.safetensors")).expect("weights");
    let report = read_json(&reference.join("retrain-report.json"));
    let checkpoint = |out: &Path| {
        dir.join(format!(
            ".{}.checkpoint",
            out.file_name().unwrap().to_string_lossy()
        ))
    };
    assert!(
        !checkpoint(&reference).exists(),
        "a finished run removes its checkpoint"
    );

    let mut crash_points = 0;
    let mut resumed_a_finished_epoch = false;
    for n in 1.. {
        assert!(n < 100, "the run never finished within 100 writes");
        let out = dir.join(format!("crash-{n}"));
        let crashed = run(&out, Some(n));
        if crashed.status.success() {
            break; // n is past the run's last write: every crash point was tried
        }
        let stderr = String::from_utf8_lossy(&crashed.stderr);
        assert!(stderr.contains("fault injection"), "write {n}: {stderr}");
        assert!(
            !out.exists(),
            "write {n}: --out appeared before the run finished"
        );
        crash_points += 1;
        resumed_a_finished_epoch |= checkpoint(&out).join("epochs/epoch-0001").is_dir();
        ok(&run(&out, None));
        assert!(
            std::fs::read(out.join("model.safetensors")).expect("weights") == weights,
            "write {n}: the resumed run's weights differ"
        );
        let resumed = read_json(&out.join("retrain-report.json"));
        assert_eq!(resumed["epochs"], report["epochs"], "write {n}");
        assert_eq!(resumed["best_epoch"], report["best_epoch"], "write {n}");
        assert!(
            !checkpoint(&out).exists(),
            "write {n}: checkpoint left behind"
        );
    }
    assert!(crash_points >= 4, "only {crash_points} crash points");
    assert!(
        resumed_a_finished_epoch,
        "no crash came after a finished epoch"
    );

    // Different options do not resume someone else's checkpoint.
    let out = dir.join("crash-other");
    assert!(!run(&out, Some(3)).status.success());
    let other = adaptable(&[
        "-q",
        "retrain",
        "--model",
        model.to_str().unwrap(),
        "--tasks",
        pets.as_str(),
        "--method",
        "sr",
        "--epochs",
        "2",
        "--max-len",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(
        &other,
        "holds the checkpoint of a retraining with other options",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_are_one_line_and_leave_nothing_behind() {
    let dir = scratch("bad");
    let model = tiny_model_dir(&dir);
    let m = model.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let good = r#"{"text": "a", "label": 0}"#;
    let not_json = write(
        "not-json.jsonl",
        &format!("{good}\n{{\"text\": \"b\", \"label\": 1\n"),
    );
    let no_label = write("no-label.jsonl", "{\"text\": \"b\"}\n");
    let out_of_range = write(
        "range.jsonl",
        "{\"context\": \"c\", \"candidates\": [\"x\", \"y\"], \"label\": 5}\n",
    );
    let empty = write("empty.jsonl", "\n");
    let no_weights = dir.join("no-weights");
    std::fs::create_dir_all(&no_weights).expect("dir");
    std::fs::copy(model.join("config.json"), no_weights.join("config.json")).expect("copy");
    std::fs::copy(
        model.join("tokenizer.json"),
        no_weights.join("tokenizer.json"),
    )
    .expect("copy");
    let taken = dir.join("taken");
    std::fs::create_dir_all(&taken).expect("dir");
    std::fs::write(taken.join("notes.txt"), "mine").expect("write");

    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let retrain = |model: &str, tasks: &str, out: &str| {
        adaptable(&[
            "-q", "retrain", "--model", model, "--tasks", tasks, "--method", "lora-ml", "--out",
            out,
        ])
    };
    let cases = [
        (
            retrain(m, &not_json, o),
            format!("{not_json}:2: not valid JSON"),
        ),
        (
            retrain(m, &no_label, o),
            format!("{no_label}:1: missing `label`"),
        ),
        (
            retrain(m, &out_of_range, o),
            format!("{out_of_range}:1: label 5 is out of range"),
        ),
        (
            retrain(m, &empty, o),
            format!("{empty}: the task file has no examples"),
        ),
        (
            retrain(no_weights.to_str().unwrap(), &task("pets"), o),
            format!(
                "{} is missing",
                no_weights.join("model.safetensors").display()
            ),
        ),
        (
            retrain(m, &task("pets"), taken.to_str().unwrap()),
            format!(
                "{} exists and is not the output of a finished `adaptable retrain`",
                taken.display()
            ),
        ),
        (
            adaptable(&[
                "-q",
                "finetune",
                "--model",
                m,
                "--task",
                no_label.as_str(),
                "--out",
                o,
            ]),
            format!("{no_label}:1: missing `label`"),
        ),
        (
            adaptable(&[
                "-q",
                "evaluate",
                "--model",
                m,
                "--task",
                out_of_range.as_str(),
            ]),
            format!("{out_of_range}:1: label 5 is out of range"),
        ),
    ];
    for (output, needle) in &cases {
        assert_one_line_error(output, needle);
    }
    assert!(!out.exists(), "nothing is written");
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).expect("kept"),
        "mine"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
