//! A crash at every durable write of a run, then a rerun: the rerun must end with the numbers of an
//! uninterrupted run. `ADAPTABLE_FAULT_AFTER_WRITES=N` makes `adaptable` abort right after its
//! `N`-th write; the tests try N = 1, 2, … until a run finishes without reaching the fault.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

const FAULT: &str = "ADAPTABLE_FAULT_AFTER_WRITES";

fn adaptable() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adaptable"));
    cmd.env_remove("RUST_LOG").env_remove(FAULT).env(
        "ADAPTABLE_WORKSPACE",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
    );
    cmd
}

/// Runs `adaptable <args> --out <out>`, with the fault set at write `fault` when given.
fn run_with_fault(args: &[&str], out: &Path, fault: Option<usize>) -> Output {
    let mut cmd = adaptable();
    cmd.args(args).arg("--out").arg(out);
    if let Some(n) = fault {
        cmd.env(FAULT, n.to_string());
    }
    cmd.output().expect("run adaptable")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CSV without its wall-time column, which legitimately differs between runs.
fn without_seconds(csv: &Path) -> String {
    let text = read(csv);
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split(',').collect();
    let seconds = header.iter().position(|h| *h == "seconds");
    let mut kept = String::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .split(',')
            .enumerate()
            .filter(|(i, _)| Some(*i) != seconds)
            .map(|(_, v)| v)
            .collect();
        kept.push_str(&cells.join(","));
        kept.push('\n');
    }
    kept
}

/// How a run with the fault set at write `n` ended.
enum Ending {
    /// It aborted after write `n` (the path it had just written).
    Crashed(String),
    /// It finished: `n` is past its last write.
    Finished,
}

fn ending(n: usize, output: &Output) -> Ending {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ending::Finished;
    }
    let marker = format!("fault injection: aborting after durable write {n} (");
    let Some(line) = stderr.lines().find(|l| l.starts_with(&marker)) else {
        panic!("write {n}: the run failed without the injected fault:\n{stderr}");
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(6), "write {n}: not an abort");
    }
    Ending::Crashed(line[marker.len()..line.len() - 1].to_string())
}

/// Crashes `run` after every write in turn, reruns it without the fault each time and compares
/// `outputs(dir)` with an uninterrupted run's. Returns the paths written, in order.
fn crash_at_every_write(
    name: &str,
    run: impl Fn(&Path, Option<usize>) -> Output,
    outputs: impl Fn(&Path) -> Vec<String>,
) -> Vec<String> {
    let reference_dir = scratch(&format!("{name}-reference"));
    let reference = run(&reference_dir, None);
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let expected = outputs(&reference_dir);
    let mut writes = Vec::new();
    for n in 1.. {
        let dir = scratch(&format!("{name}-{n}"));
        match ending(n, &run(&dir, Some(n))) {
            Ending::Finished => {
                assert_eq!(outputs(&dir), expected, "a run that did not crash");
                std::fs::remove_dir_all(&dir).unwrap();
                break;
            }
            Ending::Crashed(path) => writes.push(path),
        }
        let rerun = run(&dir, None);
        assert!(
            rerun.status.success(),
            "rerun after a crash at write {n} ({}): {}",
            writes[n - 1],
            String::from_utf8_lossy(&rerun.stderr)
        );
        assert_eq!(
            outputs(&dir),
            expected,
            "rerun after a crash at write {n} ({})",
            writes[n - 1]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::remove_dir_all(reference_dir).unwrap();
    writes
}

#[test]
fn a_crash_at_any_write_of_a_convai2_run_resumes_to_the_same_csvs() {
    // One method in one process (no workers): two retraining epochs, two fine-tuning runs, the
    // report files.
    let args = [
        "-q",
        "convai2",
        "run",
        "--profile",
        "smoke",
        "--methods",
        "lora-ml",
    ];
    let run = |out: &Path, fault: Option<usize>| run_with_fault(&args, out, fault);
    let outputs = |out: &Path| {
        vec![
            without_seconds(&out.join("summary.csv")),
            without_seconds(&out.join("retrain.csv")),
        ]
    };
    let writes = crash_at_every_write("convai2", run, outputs);
    let ckpt = "retrain/lora-ml/seed0/checkpoint";
    // Every step of the second epoch's unit (its directory, its three files, the commit), then the
    // records and the reports. (The removal of an older epoch is covered in adaptable-meta's
    // tests: here the first epoch is the best and stays.)
    for step in [
        format!("{ckpt}/.epoch-0002.partial"),
        format!("{ckpt}/.epoch-0002.partial/model.bpk"),
        format!("{ckpt}/.epoch-0002.partial/optimizer.bpk"),
        format!("{ckpt}/.epoch-0002.partial/state.json"),
        format!("{ckpt}/epoch-0002"),
        "retrain/lora-ml/seed0/result.json".into(),
        "finetune/lora-ml/seed0/rank2/task0.json".into(),
        "finetune/lora-ml/seed0/rank2/task1.json".into(),
        "summary.csv".into(),
        "retrain.csv".into(),
    ] {
        assert!(
            writes.iter().any(|w| w.ends_with(&step)),
            "no crash after writing {step}: {writes:#?}"
        );
    }
}

#[test]
fn a_crash_at_any_write_of_a_linear_sweep_resumes_to_the_same_summary() {
    let run_with = |seed: &'static str| {
        move |out: &Path, fault: Option<usize>| {
            let args = [
                "-q", "linear", "--sweep", "d", "--runs", "1", "--seed", seed,
            ];
            run_with_fault(&args, out, fault)
        }
    };
    let outputs = |out: &Path| {
        vec![
            read(&out.join("d/summary.json")),
            read(&out.join("d/curves.csv")),
        ]
    };
    let writes = crash_at_every_write("linear", run_with("0"), outputs);
    for file in [
        "curves.csv",
        "vary-d.svg",
        "vary-d.png",
        "summary.json",
        "manifest.json",
    ] {
        assert!(
            writes.iter().any(|w| w.ends_with(&format!("d/{file}"))),
            "no crash after writing {file}: {writes:?}"
        );
    }

    // A finished sweep, then another configuration stopped halfway through rewriting it: the
    // original configuration must not take the mix of files for its own results.
    let seed0 = run_with("0");
    let seed1 = run_with("1");
    let reference = scratch("linear-seed0");
    assert!(seed0(&reference, None).status.success());
    let expected = outputs(&reference);
    for n in 1..=writes.len() {
        let dir = scratch(&format!("linear-mixed-{n}"));
        assert!(seed0(&dir, None).status.success());
        assert!(matches!(
            ending(n, &seed1(&dir, Some(n))),
            Ending::Crashed(_)
        ));
        assert!(seed0(&dir, None).status.success());
        assert_eq!(outputs(&dir), expected, "seed 1 stopped after write {n}");
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::remove_dir_all(reference).unwrap();
}

#[test]
fn a_malformed_fault_setting_is_a_one_line_error() {
    let out = scratch("bad-fault");
    let result = adaptable()
        .env(FAULT, "soon")
        .args(["-q", "linear", "--sweep", "d", "--runs", "1", "--out"])
        .arg(&out)
        .output()
        .expect("run adaptable");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ADAPTABLE_FAULT_AFTER_WRITES=soon"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(out);
}
