//! The paper's claim must hold in what the shallow suite writes: at the defaults (d = 10, T = 3)
//! LoRA-ML's median final test loss is below SR's. Also: same seed, byte-identical summary.json;
//! finished settings are reused.

use std::path::{Path, PathBuf};

use adaptable_experiments::{
    device::Backend,
    linear::{Method, Sweep},
    shallow::{
        ShallowExperimentConfig, ShallowRunOptions, SummaryRecord, median_and_range,
        run_shallow_sweep, write_shallow_outputs,
    },
};

fn options() -> ShallowRunOptions {
    let backend = Backend::default();
    ShallowRunOptions {
        device: backend.device().unwrap(),
        device_name: backend.name().into(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-shallow-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn median(records: &[SummaryRecord], method: Method) -> f64 {
    let xs: Vec<f64> = records
        .iter()
        .filter(|r| r.method == method)
        .map(|r| r.final_test_loss)
        .collect();
    median_and_range(&xs).0
}

/// Runs `sweep` with `values`, writes its outputs and returns the parsed `summary.json`.
fn run_and_read(config: &ShallowExperimentConfig, sweep: Sweep, out: &Path) -> Vec<SummaryRecord> {
    let result = run_shallow_sweep(config, sweep, out, &options(), false, |_, _| {}).unwrap();
    let dir = out.join(sweep.symbol());
    write_shallow_outputs(&dir, &result, config.task.rank).unwrap();
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn lora_ml_beats_sr_at_the_defaults_in_the_written_summary() {
    // The default task family (d = 10, T = 3, N = 1000, n = 100) and optimiser, with 5 trials and
    // a quarter of the retraining and a third of the fine-tuning epochs to keep the test short.
    let mut config = ShallowExperimentConfig {
        trials: 5,
        ..Default::default()
    };
    config.retrain.epochs = 10_000;
    config.finetune.epochs = 5_000;
    config.sweeps.insert(Sweep::Tasks, vec![3]);
    let out = scratch("defaults");
    let records = run_and_read(&config, Sweep::Tasks, &out);
    assert_eq!(records.len(), 10);
    assert!(
        records
            .iter()
            .all(|r| r.finetune_rank == 1 && r.value == 3 && r.sweep == "T")
    );
    let (sr, ml) = (
        median(&records, Method::Standard),
        median(&records, Method::LoraMl),
    );
    assert!(ml < sr, "median final test loss: LoRA-ML {ml} vs SR {sr}");
    // Fine-tuning helps both, and the curves and figures are there.
    assert!(
        records
            .iter()
            .all(|r| r.final_test_loss < r.initial_test_loss)
    );
    for file in ["curves.csv", "vary-T.png", "vary-T.svg"] {
        assert!(out.join("T").join(file).is_file(), "{file} missing");
    }
    std::fs::remove_dir_all(out).unwrap();
}

fn short_config(seed: u64) -> ShallowExperimentConfig {
    let mut c = ShallowExperimentConfig {
        seed,
        trials: 2,
        ..Default::default()
    };
    c.retrain.epochs = 60;
    c.finetune.epochs = 40;
    c.task.retrain_samples = 50;
    c.sweeps.insert(Sweep::Tasks, vec![2, 3]);
    c
}

#[test]
fn same_seed_gives_identical_summary_and_finished_settings_are_reused() {
    let base = scratch("determinism");
    let read = |dir: &Path| std::fs::read_to_string(dir.join("T/summary.json")).unwrap();
    run_and_read(&short_config(7), Sweep::Tasks, &base.join("a"));
    run_and_read(&short_config(7), Sweep::Tasks, &base.join("b"));
    run_and_read(&short_config(8), Sweep::Tasks, &base.join("c"));
    let (a, b, c) = (
        read(&base.join("a")),
        read(&base.join("b")),
        read(&base.join("c")),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    // T = 2 fine-tunes at rank k and 3k.
    let records: Vec<SummaryRecord> = serde_json::from_str(&a).unwrap();
    let mut ranks: Vec<usize> = records
        .iter()
        .filter(|r| r.value == 2)
        .map(|r| r.finetune_rank)
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    assert_eq!(ranks, vec![1, 3]);
    assert_eq!(records.len(), 2 * 2 * 2 + 2 * 2);
    let first: serde_json::Value = serde_json::from_str(&a).unwrap();
    for key in [
        "final_test_loss",
        "final_retrain_loss",
        "finetune_rank",
        "trial",
        "method",
    ] {
        assert!(first[0].get(key).is_some(), "summary.json lacks `{key}`");
    }

    // A rerun reuses the finished settings (their results are read back, not recomputed): a
    // setting whose stored result was altered comes back altered.
    let stored = base.join("a/settings/d10-T3-k1-N50-n100/result.json");
    let text = std::fs::read_to_string(&stored).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["records"][0]["final_test_loss"] = serde_json::json!(12345.0);
    std::fs::write(&stored, serde_json::to_string(&value).unwrap()).unwrap();
    let again = run_and_read(&short_config(7), Sweep::Tasks, &base.join("a"));
    assert!(again.iter().any(|r| r.final_test_loss == 12345.0));
    std::fs::remove_dir_all(base).unwrap();
}
