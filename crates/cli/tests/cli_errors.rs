//! Bad input to `adaptable linear` gives one clear line on stderr and a non-zero exit, never a panic.

use std::process::{Command, Output};

fn adaptable(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adaptable"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run adaptable")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {stderr}");
    assert!(errors[0].contains(needle), "`{needle}` not in: {stderr}");
}

#[test]
fn unknown_sweep_is_named() {
    let out = adaptable(&[
        "-q",
        "linear",
        "--sweep",
        "q",
        "--out",
        scratch("sweep").to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "unknown sweep `q`");
}

#[test]
fn zero_dimension_is_rejected_with_the_key() {
    let dir = scratch("zero");
    let config = dir.join("zero.toml");
    std::fs::write(&config, "[task]\ndim = 0\n").unwrap();
    let out = adaptable(&[
        "-q",
        "linear",
        "--sweep",
        "T",
        "--config",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "`dim` must be at least 1");
}

#[test]
fn negative_dimension_and_malformed_toml_name_the_line() {
    let dir = scratch("toml");
    let negative = dir.join("negative.toml");
    std::fs::write(&negative, "runs = 2\n[task]\ndim = -4\n").unwrap();
    let out = adaptable(&[
        "-q",
        "linear",
        "--config",
        negative.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "negative.toml: line 3");

    let malformed = dir.join("malformed.toml");
    std::fs::write(&malformed, "runs = [1,\n").unwrap();
    let out = adaptable(&[
        "-q",
        "linear",
        "--config",
        malformed.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "malformed.toml: line");

    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "[lora_ml]\nouter_step = 3\n").unwrap();
    let out = adaptable(&[
        "-q",
        "linear",
        "--config",
        unknown.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "outer_step");
}

#[test]
fn zero_runs_and_unknown_device_are_rejected() {
    let dir = scratch("runs");
    let out = adaptable(&[
        "-q",
        "linear",
        "--runs",
        "0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "--runs must be at least 1");
    let out = adaptable(&[
        "-q",
        "linear",
        "--device",
        "tpu",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "unknown device `tpu`");
}

#[test]
fn outside_the_independence_assumption_runs_with_a_warning() {
    let dir = scratch("warn");
    let config = dir.join("k3.toml");
    std::fs::write(
        &config,
        "runs = 1\n[standard]\nsteps = 20\n[lora_ml]\nouter_steps = 20\n\
         [sweeps.k]\nvalues = [3]\nfinetune_steps = 10\n",
    )
    .unwrap();
    let out = adaptable(&[
        "linear",
        "--sweep",
        "k",
        "--config",
        config.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Remark 1") && stderr.contains("k(T+1) = 12 > d = 10"),
        "{stderr}"
    );
    assert!(dir.join("k/summary.json").exists());
}

#[test]
fn usage_errors_are_one_line_with_exit_code_two() {
    for (args, needle) in [
        (&["bogus"][..], "unrecognized subcommand 'bogus'"),
        (
            &["linear", "--runs", "abc"][..],
            "invalid value 'abc' for '--runs",
        ),
        (&["linear", "--nope"][..], "unexpected argument '--nope'"),
    ] {
        let out = adaptable(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ")
                && stderr.contains(needle)
                && stderr.contains("adaptable --help"),
            "{args:?}: {stderr}"
        );
    }
    let help = adaptable(&["linear", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--runs"));
}

#[test]
fn shallow_rejects_unknown_sweeps_zero_trials_and_zero_sizes() {
    let dir = scratch("shallow");
    let out = dir.to_str().unwrap();
    for (args, needle) in [
        (&["--sweep", "q"][..], "unknown sweep `q`"),
        (
            &["--sweep", "N"][..],
            "the shallow suite sweeps d or T, not N",
        ),
        (&["--trials", "0"][..], "--trials must be at least 1"),
        (
            &["--sweep", "d", "--values", "5,0"][..],
            "value 0 is not a positive size",
        ),
        (&["--retrain-epochs", "0"][..], "must be at least 1"),
        (
            &["--retrain-samples", "0"][..],
            "`retrain_samples` must be at least 1",
        ),
        (&["--values", "3"][..], "--values needs a single --sweep"),
    ] {
        let mut argv = vec!["-q", "shallow", "--out", out];
        argv.extend_from_slice(args);
        assert_one_line_error(&adaptable(&argv), needle);
    }
    // Negative sizes are usage errors: one line, exit code 2.
    let negative = adaptable(&["shallow", "--trials", "-3", "--out", out]);
    let stderr = String::from_utf8_lossy(&negative.stderr);
    assert_eq!(negative.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!dir.join("d").exists() && !dir.join("T").exists());
}
