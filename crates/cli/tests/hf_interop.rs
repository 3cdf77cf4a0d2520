//! A base retrained by `adaptable retrain` from the real all-MiniLM-L6-v2 loads in Hugging Face
//! transformers (`AutoModel.from_pretrained`) and gives the hidden states of the project's own
//! forward pass within 1e-4 (scripts/hf_check_retrained.py).
//!
//! It needs a Python with torch and transformers (`ADAPTABLE_PYTHON`, else `python3`) and the
//! fetched model (`cargo xtask fetch-model minilm`); without them it prints why and checks nothing.
//! The Rust-only half of the round trip (the written directory reloads bit for bit) is
//! crates/text/tests/retrain_export.rs, which always runs.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter to use, if it has torch and transformers.
fn python() -> Option<String> {
    let python = std::env::var("ADAPTABLE_PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args(["-c", "import torch, transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    found.then_some(python)
}

#[test]
fn retrained_minilm_loads_in_transformers_with_our_hidden_states() {
    let model = root().join("models/minilm");
    if !model.join("model.safetensors").is_file() {
        eprintln!(
            "skipped: {} is not fetched (cargo xtask fetch-model minilm)",
            model.display()
        );
        return;
    }
    let Some(python) = python() else {
        eprintln!("skipped: no Python with torch and transformers (set ADAPTABLE_PYTHON)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("adaptable-hf-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("retrained");
    let task = |name: &str| root().join(format!("datasets/text-tasks/{name}.jsonl"));
    let binary = env!("CARGO_BIN_EXE_adaptable");
    let retrain = Command::new(binary)
        .args(["-q", "retrain", "--model"])
        .arg(&model)
        .arg("--tasks")
        .args([task("pets"), task("family"), task("food")])
        .args([
            "--method",
            "lora-ml",
            "--epochs",
            "1",
            "--max-len",
            "48",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run adaptable retrain");
    assert!(
        retrain.status.success(),
        "retrain failed: {}",
        String::from_utf8_lossy(&retrain.stderr)
    );
    let check = Command::new(&python)
        .arg(root().join("scripts/hf_check_retrained.py"))
        .arg(&out)
        .args(["--adaptable", binary])
        .output()
        .expect("run the Python check");
    let report = String::from_utf8_lossy(&check.stdout);
    println!("{report}");
    assert!(
        check.status.success(),
        "transformers disagrees with our forward pass:\n{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
