//! `cargo xtask reproduce --profile smoke` end to end: every report, resumption after a kill with
//! the same final numbers, and one-line usage errors.
//!
//! The tests use the `adaptable` binary that `cargo test --workspace` builds next to this crate's
//! binary (through `ADAPTABLE_BIN`), so they never start a nested `cargo build`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The `adaptable` binary in the same target directory as `xtask`.
fn adaptable_binary() -> PathBuf {
    let xtask = Path::new(env!("CARGO_BIN_EXE_xtask"));
    let binary = xtask.with_file_name(format!("adaptable{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} is missing: run these tests with `cargo test --workspace --release`, which builds it",
        binary.display()
    );
    binary
}

fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.env("ADAPTABLE_BIN", adaptable_binary())
        .env_remove("RUST_LOG");
    cmd
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-xtask-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn reproduce_smoke(out: &Path) -> Output {
    xtask()
        .args(["reproduce", "all", "--profile", "smoke", "--out"])
        .arg(out)
        .output()
        .expect("run xtask")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The final numbers of a smoke reproduction: every linear summary and the ConvAI2 CSVs without
/// their wall-time column.
fn final_numbers(out: &Path) -> Vec<String> {
    let mut numbers = Vec::new();
    for sweep in ["d", "T", "N", "n", "k"] {
        numbers.push(read(&out.join(format!("linear/{sweep}/summary.json"))));
    }
    for csv in ["summary.csv", "retrain.csv"] {
        let text = read(&out.join("convai2/smoke").join(csv));
        let header: Vec<&str> = text.lines().next().unwrap_or_default().split(',').collect();
        let seconds = header.iter().position(|h| *h == "seconds");
        for line in text.lines() {
            let kept: Vec<&str> = line
                .split(',')
                .enumerate()
                .filter(|(i, _)| Some(*i) != seconds)
                .map(|(_, v)| v)
                .collect();
            numbers.push(kept.join(","));
        }
    }
    numbers
}

#[test]
fn smoke_reproduction_writes_the_full_report() {
    let out = scratch("full");
    let result = reproduce_smoke(&out);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(stdout.contains("plan (Smoke profile"), "{stdout}");
    let report_path = out.join("report.md");
    assert!(
        stdout.contains(&format!("report: {}", report_path.display())),
        "{stdout}"
    );

    let report = read(&report_path);
    for needle in [
        "# Reproduction report",
        "--profile smoke",
        "## Provenance",
        "- git commit:",
        "- backend: flex",
        "## Suite: linear",
        "## Suite: convai2",
        "SR + LoRA r=2",
        "LoRA-ML-2 + LoRA r=2",
    ] {
        assert!(
            report.contains(needle),
            "`{needle}` not in report:\n{report}"
        );
    }
    // The smoke profile reports next to its results and leaves the documented results alone.
    assert!(out.join("linear/report.md").is_file());
    assert!(out.join("convai2/smoke/table.md").is_file());
    // 5 linear summaries; summary.csv: header + 2 methods × 2 test tasks × 2 seeds; retrain.csv:
    // header + 2 methods × 2 epochs × 2 seeds.
    assert_eq!(final_numbers(&out).len(), 5 + 9 + 9);
    std::fs::remove_dir_all(out).unwrap();
}

#[cfg(unix)]
#[test]
fn a_killed_reproduction_resumes_to_the_same_numbers() {
    use std::os::unix::process::CommandExt;

    let reference = scratch("reference");
    let uninterrupted = reproduce_smoke(&reference);
    assert!(
        uninterrupted.status.success(),
        "{}",
        String::from_utf8_lossy(&uninterrupted.stderr)
    );

    let out = scratch("killed");
    // Its own process group, so that one signal stops xtask, `adaptable` and its workers.
    let child = xtask()
        .args(["reproduce", "all", "--profile", "smoke", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start xtask");
    let group = child.id();
    // Stop everything once the linear suite is done and ConvAI2 has checkpointed its first epoch.
    let marker = out.join("convai2/smoke/retrain/sr/seed0/checkpoint/epoch-0001");
    let started = Instant::now();
    while !marker.exists() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let mut child = child;
    let _ = child.wait();
    assert!(marker.exists(), "no ConvAI2 checkpoint appeared");
    assert!(
        !out.join("report.md").exists(),
        "the reproduction finished before it could be interrupted"
    );

    let resumed = reproduce_smoke(&out);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(final_numbers(&out), final_numbers(&reference));
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_dir_all(reference).unwrap();
}

#[test]
fn bad_suite_profile_and_device_are_one_line_errors() {
    for (args, needle) in [
        (
            &["reproduce", "bogus"][..],
            "invalid value 'bogus' for '[SUITE]' [possible values: linear, convai2, shallow, all]",
        ),
        (
            &["reproduce", "--profile", "huge"][..],
            "invalid value 'huge' for '--profile <PROFILE>' [possible values: quick, standard, paper, smoke]",
        ),
        (
            &["reproduce", "--device", "cuda"][..],
            "invalid value 'cuda' for '--device <DEVICE>' [possible values: flex, ndarray, wgpu]",
        ),
        (
            &["reproduce", "--seeds", "two"][..],
            "invalid value 'two' for '--seeds",
        ),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
    ] {
        let out = xtask().args(args).output().expect("run xtask");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a plan");
    }
}

#[test]
fn an_unwritable_output_directory_is_one_line_error() {
    let dir = scratch("blocked");
    std::fs::create_dir_all(&dir).unwrap();
    // A file where the output directory should be.
    let out = dir.join("file");
    std::fs::write(&out, "not a directory").unwrap();
    let result = xtask()
        .args(["reproduce", "linear", "--profile", "smoke", "--out"])
        .arg(&out)
        .output()
        .expect("run xtask");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(!errors.is_empty(), "{stderr}");
    assert!(
        errors[0].contains(&out.display().to_string()),
        "the first error does not name the path: {stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
