//! `cargo xtask bench encoder|train`: Burn throughput, and the ratio against PyTorch on the same
//! shapes when a local Python (`$PYTHON`, default `python3`) has torch.
//!
//! - `encoder`: the bare encoder, forward and forward+backward (`--bench encoder`,
//!   scripts/bench_encoder_torch.py);
//! - `train`: the three ConvAI2 training steps, SR, LoRA-ML and LoRA fine-tuning (`--bench train`,
//!   scripts/bench_train_torch.py).
//!
//! Runs `cargo bench --workspace --bench NAME -- <args>` (release profile, default CPU
//! backend) and, if `$PYTHON -c "import torch"` succeeds, the PyTorch script with the same
//! arguments. Both print `BENCH shape=… mode=… tokens_per_s=…` lines; the ratios are printed at the
//! end. Record results in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An unknown benchmark name.
    #[error("unknown benchmark {0:?}: expected \"encoder\" or \"train\"")]
    Unknown(String),
    /// A command could not be started or failed.
    #[error("{what} failed: {message}")]
    Command {
        /// The command.
        what: String,
        /// Why.
        message: String,
    },
}

/// `(shape, mode) → tokens/s` parsed from `BENCH` lines.
type Results = BTreeMap<(String, String), f64>;

/// Runs benchmark `name` (`"encoder"` or `"train"`) from `workspace_root`, passing `args` through
/// (`--shapes minilm,roberta-base --iters N --batch B --seq L --profile --backend flex|ndarray`).
/// The default build uses flex (with run-time selected AVX-512 `gemm` kernels); `--backend ndarray`
/// builds the benchmark with the ndarray backend instead.
pub fn bench(name: &str, workspace_root: &Path, args: &[String]) -> Result<(), BenchError> {
    let script = match name {
        "encoder" => "scripts/bench_encoder_torch.py",
        "train" => "scripts/bench_train_torch.py",
        _ => return Err(BenchError::Unknown(name.to_string())),
    };
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(workspace_root).arg("bench");
    if args
        .windows(2)
        .any(|w| w[0] == "--backend" && w[1] == "ndarray")
    {
        // A separate target directory keeps the main build's feature set, and so its artifacts,
        // untouched.
        cargo.args([
            "-p",
            "adaptable-cli",
            "--bench",
            name,
            "--no-default-features",
            "--features",
            "ndarray",
            "--target-dir",
            "target/bench-ndarray",
        ]);
    } else {
        // The workspace's feature set, as `cargo test --workspace` builds it: `-p adaptable-cli`
        // alone resolves Burn's features differently and would rebuild it (≈ 12 min).
        cargo.args(["--workspace", "--bench", name]);
    }
    // mimalloc purges freed memory after 1 s; the benchmark's iterations take about as long, so
    // every one would page-fault its buffers back in. Keep them, as the `adaptable` workers do.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        cargo.env("MIMALLOC_PURGE_DELAY", "-1");
    }
    let burn = run_and_parse(
        cargo.arg("--").args(args),
        &format!("cargo bench --bench {name}"),
    )?;

    // `PYTHON` picks the interpreter (e.g. a virtual environment's) that has torch.
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = Command::new(&python)
        .args(["-c", "import torch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_torch {
        println!(
            "\nPyTorch comparison skipped: `{python}` cannot import torch (pip install torch, or set PYTHON)."
        );
        return Ok(());
    }
    let torch = run_and_parse(
        Command::new(&python)
            .current_dir(workspace_root)
            .arg(script)
            .args(torch_args(args)),
        &format!("python3 {script}"),
    )?;
    println!(
        "\n{:<14} {:<18} {:>12} {:>12} {:>8}",
        "shape", "mode", "burn tok/s", "torch tok/s", "ratio"
    );
    for ((shape, mode), ours) in &burn {
        if let Some(theirs) = torch.get(&(shape.clone(), mode.clone())) {
            println!(
                "{shape:<14} {mode:<18} {ours:>12.0} {theirs:>12.0} {:>8.2}",
                ours / theirs
            );
        }
    }
    Ok(())
}

/// The arguments the PyTorch script understands (no `--profile`, no `--backend`).
fn torch_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            // Options only the Rust benches have.
            "--profile" | "--steps" => {}
            "--backend" => {
                it.next();
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// Runs `cmd`, echoes its output, and collects its `BENCH` lines.
fn run_and_parse(cmd: &mut Command, what: &str) -> Result<Results, BenchError> {
    let failed = |message: String| BenchError::Command {
        what: what.to_string(),
        message,
    };
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        return Err(failed(out.status.to_string()));
    }
    let mut results = Results::new();
    for line in text.lines().filter(|l| l.starts_with("BENCH ")) {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        if let (Some(shape), Some(mode), Some(tps)) =
            (field("shape"), field("mode"), field("tokens_per_s"))
            && let Ok(tps) = tps.parse::<f64>()
        {
            results.insert((shape, mode), tps);
        }
    }
    Ok(results)
}
