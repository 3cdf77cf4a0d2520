//! The ConvAI2 suite end to end on the `smoke` profile: every output, resumption after a kill, and
//! a diverging run reported without stopping the others.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

fn adaptable() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adaptable"));
    cmd.env_remove("RUST_LOG").env(
        "ADAPTABLE_WORKSPACE",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
    );
    cmd
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-convai2-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run_smoke(out: &Path, profile: &str) -> Output {
    adaptable()
        .args(["-q", "convai2", "run", "--profile", profile, "--out"])
        .arg(out)
        .output()
        .expect("run adaptable")
}

/// The CSV without the wall-time column, which legitimately differs between runs.
fn numbers(csv: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(csv).unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split(',').collect();
    let seconds = header.iter().position(|h| *h == "seconds");
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| Some(*i) != seconds)
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[test]
fn smoke_profile_writes_every_output() {
    let out = scratch("all");
    let result = run_smoke(&out, "smoke");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for file in [
        "summary.csv",
        "retrain.csv",
        "table.md",
        "accuracy.png",
        "accuracy.svg",
        "finetune_epochs.csv",
        "retrain_loss.png",
        "retrain_loss.svg",
        "retrain_accuracy.png",
        "retrain_accuracy.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    for method in ["sr", "lora-ml"] {
        assert!(
            out.join(format!("retrain/{method}/seed0/result.json"))
                .is_file()
        );
        for task in 0..2 {
            assert!(
                out.join(format!("finetune/{method}/seed0/rank2/task{task}.json"))
                    .is_file()
            );
        }
    }
    // 2 methods × 1 rank × 2 test tasks × 2 seeds, plus the header.
    assert_eq!(numbers(&out.join("summary.csv")).len(), 9);
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("SR + LoRA r=2") && table.contains("LoRA-ML-2 + LoRA r=2"),
        "{table}"
    );
    assert!(table.contains("**average**"), "{table}");
    assert!(
        table.contains("LoRA-ML-2 vs SR + LoRA r=2 | best | 4 |"),
        "the paired table covers 2 tasks × 2 seeds: {table}"
    );
    let header = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        header
            .starts_with("method,retrain_rank,finetune,rank,seed,task,persona,initial,last,best,"),
        "{header}"
    );

    // A rerun finds everything finished and changes nothing.
    let before = numbers(&out.join("summary.csv"));
    let again = run_smoke(&out, "smoke");
    assert!(again.status.success());
    assert_eq!(numbers(&out.join("summary.csv")), before);
    std::fs::remove_dir_all(out).unwrap();
}

#[cfg(unix)]
#[test]
fn a_killed_run_resumes_to_the_same_numbers() {
    use std::os::unix::process::CommandExt;

    let reference = scratch("reference");
    assert!(run_smoke(&reference, "smoke").status.success());

    let out = scratch("killed");
    // Its own process group, so that one signal stops the run and its worker processes at once,
    // as Ctrl-C does (workers orphaned by a kill of the parent alone exit within 100 ms, and a
    // rerun started sooner would race them).
    let mut child = adaptable()
        .args(["-q", "convai2", "run", "--profile", "smoke", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start adaptable");
    // Kill it as soon as the first epoch of the first retraining is checkpointed.
    let marker = out.join("retrain/sr/seed0/checkpoint/epoch-0001");
    let started = Instant::now();
    while !marker.exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let _ = child.wait();
    assert!(marker.exists(), "no checkpoint appeared");
    assert!(
        !out.join("table.md").exists(),
        "the run finished before it could be interrupted"
    );

    let resumed = run_smoke(&out, "smoke");
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(
        numbers(&out.join("summary.csv")),
        numbers(&reference.join("summary.csv"))
    );
    assert_eq!(
        numbers(&out.join("retrain.csv")),
        numbers(&reference.join("retrain.csv"))
    );
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_dir_all(reference).unwrap();
}

/// The smoke profile's seeds `range` into `out`.
fn run_part(out: &Path, range: &str) -> Output {
    adaptable()
        .args([
            "-q",
            "convai2",
            "run",
            "--profile",
            "smoke",
            "--seed-range",
            range,
            "--out",
        ])
        .arg(out)
        .output()
        .expect("run adaptable")
}

#[test]
fn parts_run_separately_merge_into_the_table_of_one_whole_run() {
    let whole = scratch("whole");
    assert!(run_smoke(&whole, "smoke").status.success());
    let parts = scratch("parts");
    for range in ["1..2", "0..1"] {
        let result = run_part(&parts, range);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    for csv in ["summary.csv", "retrain.csv", "finetune_epochs.csv"] {
        assert_eq!(
            numbers(&parts.join(csv)),
            numbers(&whole.join(csv)),
            "{csv}"
        );
    }
    // After the first part alone the table says it is incomplete.
    let first = scratch("first");
    assert!(run_part(&first, "0..1").status.success());
    let table = std::fs::read_to_string(first.join("table.md")).unwrap();
    assert!(table.contains("Incomplete: 6 of 12 runs done"), "{table}");
    // A range outside the profile's seeds is refused.
    let result = run_part(&first, "1..3");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success() && stderr.contains("seed range 1..3"),
        "{stderr}"
    );
    // The report recomputes from the CSVs alone.
    let before = std::fs::read_to_string(whole.join("table.md")).unwrap();
    std::fs::remove_file(whole.join("table.md")).unwrap();
    let report = adaptable()
        .args(["-q", "convai2", "report", "--dir"])
        .arg(&whole)
        .output()
        .expect("run adaptable");
    assert!(report.status.success());
    assert_eq!(
        std::fs::read_to_string(whole.join("table.md")).unwrap(),
        before
    );
    for dir in [whole, parts, first] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn the_plan_lists_the_runs_and_runs_nothing() {
    let out = scratch("plan");
    let result = adaptable()
        .args(["convai2", "run", "--profile", "smoke", "--plan", "--out"])
        .arg(&out)
        .output()
        .expect("run adaptable");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.contains("4 retraining run(s)") && stdout.contains("8 fine-tuning run(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("seed 1 lora-ml: then lora r=2 × 2 personas"),
        "{stdout}"
    );
    assert!(!out.join("retrain").exists());
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_diverging_run_is_reported_and_the_others_finish() {
    let out = scratch("nan");
    std::fs::create_dir_all(&out).unwrap();
    let profile = out.join("diverge.toml");
    let smoke = include_str!("../../experiments/configs/convai2-smoke.toml");
    // Fine-tuning at an absurd learning rate overflows; retraining is unchanged.
    let diverging = smoke.replace(
        "optim = { epochs = 2, lr = 1e-3, schedule_multiplier = 4.0 }",
        "optim = { epochs = 2, lr = 1e30, warmup_fraction = 0.0, schedule_multiplier = 4.0 }",
    );
    assert_ne!(
        diverging, smoke,
        "the smoke profile changed; update this test"
    );
    std::fs::write(&profile, diverging).unwrap();
    let result = run_smoke(&out, profile.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "a failed run must give a non-zero exit"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("run(s) failed") && error[0].contains("fine-tuning: loss became"),
        "{stderr}"
    );
    assert!(
        error[0].contains("step") && error[0].contains("task"),
        "{stderr}"
    );
    // Both retrainings finished; every fine-tuning is in the report as failed.
    assert!(out.join("retrain/sr/seed0/result.json").is_file());
    assert!(out.join("retrain/lora-ml/seed0/result.json").is_file());
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("**Failed runs**")
            && table.contains("fine-tuning SR seed 0 LoRA r=2 task 0"),
        "{table}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn unknown_profile_and_missing_model_are_one_line_errors() {
    let out = scratch("bad");
    let result = run_smoke(&out, "enormous");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(
        stderr
            .trim()
            .starts_with("error: invalid option: unknown profile `enormous`"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(out);
}

/// Writes a copy of the smoke profile with `edit` applied and runs it, expecting one error line.
fn failing_variant(name: &str, edit: impl Fn(&str) -> String, out: Option<&Path>) -> String {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join(format!("{name}.toml"));
    std::fs::write(
        &profile,
        edit(include_str!("../../experiments/configs/convai2-smoke.toml")),
    )
    .unwrap();
    let target = out.map_or_else(|| dir.join("out"), Path::to_path_buf);
    let result = run_smoke(&target, profile.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert!(!result.status.success(), "{name}: expected failure");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{name}: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
    errors[0].to_string()
}

#[test]
fn bad_inputs_give_one_clear_line() {
    // An unreadable dataset.
    let err = failing_variant(
        "nodata",
        |p| {
            p.replacen(
                "[data]",
                "[data]\npath = \"/nonexistent/valid_self_original.txt\"",
                1,
            )
        },
        None,
    );
    assert!(
        err.contains("/nonexistent/valid_self_original.txt"),
        "{err}"
    );

    // Corrupt weights and a missing tokenizer in a model directory.
    let model = scratch("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        include_str!("../../models/tests/fixtures/tiny-roberta/config.json"),
    )
    .unwrap();
    std::fs::write(model.join("model.safetensors"), b"not a safetensors file").unwrap();
    let source = format!("source = \"{}\"", model.display());
    let err = failing_variant(
        "notok",
        |p| p.replace("source = \"random-tiny\"", &source),
        None,
    );
    assert!(
        err.contains("tokenizer.json") && err.contains("is missing"),
        "{err}"
    );
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/roberta-tokenizer/tokenizer.json"
        ),
        model.join("tokenizer.json"),
    )
    .unwrap();
    let err = failing_variant(
        "corrupt",
        |p| p.replace("source = \"random-tiny\"", &source),
        None,
    );
    assert!(err.contains("model.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(model);

    // An output directory that cannot be created (a regular file is in the way).
    let blocker = scratch("blocker");
    std::fs::write(&blocker, b"a file").unwrap();
    let err = failing_variant("unwritable", |p| p.to_string(), Some(&blocker.join("out")));
    assert!(err.contains(blocker.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_file(blocker);

    // A malformed profile names the line.
    let err = failing_variant(
        "malformed",
        |p| p.replacen("seeds = 2", "seeds = [2", 1),
        None,
    );
    assert!(err.contains("line"), "{err}");
}
