//! Same seed, same results: the written `summary.json` is byte-identical across runs on the CPU.

use std::path::Path;

use adaptable_experiments::{
    device::Backend,
    linear::{LinearExperimentConfig, RunOptions, Sweep, run_sweep, write_sweep_outputs},
};

fn short_config(seed: u64) -> LinearExperimentConfig {
    let mut c = LinearExperimentConfig {
        seed,
        runs: 2,
        ..Default::default()
    };
    c.lora_ml.outer_steps = 200;
    c.standard.steps = 200;
    if let Some(spec) = c.sweeps.get_mut(&Sweep::RetrainSamples) {
        spec.finetune_steps = 100;
    }
    c
}

fn run_into(dir: &Path, seed: u64) -> String {
    let options = RunOptions {
        device: Backend::default().device().unwrap(),
    };
    let result = run_sweep(&short_config(seed), Sweep::RetrainSamples, &options, |_| {}).unwrap();
    write_sweep_outputs(dir, &result).unwrap();
    std::fs::read_to_string(dir.join("summary.json")).unwrap()
}

#[test]
fn same_seed_gives_identical_summary_and_another_seed_differs() {
    let base = std::env::temp_dir().join(format!("adaptable-determinism-{}", std::process::id()));
    let a = run_into(&base.join("a"), 7);
    let b = run_into(&base.join("b"), 7);
    assert_eq!(a, b);
    let c = run_into(&base.join("c"), 8);
    assert_ne!(a, c);
    for file in ["curves.csv", "vary-N.png", "vary-N.svg"] {
        assert!(base.join("a").join(file).exists(), "{file} missing");
    }
    let summary: serde_json::Value = serde_json::from_str(&a).unwrap();
    let first = &summary[0];
    for key in [
        "sweep",
        "value",
        "run",
        "method",
        "dist_to_a_star",
        "dist_to_sr_closed_form",
        "final_population_loss",
        "final_paper_loss",
        "finetune_rank",
    ] {
        assert!(first.get(key).is_some(), "summary.json lacks `{key}`");
    }
    std::fs::remove_dir_all(base).unwrap();
}
