//! `adaptable shallow`: run the sweeps of the shallow-network suite.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use clap::Args;

use adaptable_experiments::{
    ExperimentError,
    device::Backend,
    io::{ensure_writable_dir, write_atomic},
    linear::Sweep,
    shallow::{
        ShallowExperimentConfig, ShallowReportInput, ShallowRunOptions, SummaryRecord,
        parse_shallow_sweeps, render_shallow_report, run_shallow_sweep, write_shallow_outputs,
    },
};

/// Options of `adaptable shallow`.
#[derive(Debug, Clone, Args)]
pub struct ShallowArgs {
    /// Which sweep: d, T (or dim, tasks), or all.
    #[arg(long, default_value = "all")]
    pub sweep: String,
    /// Output directory; each sweep writes into `<out>/<sweep>/`, each setting into
    /// `<out>/settings/<id>/` (shared by the sweeps at the defaults).
    #[arg(long, default_value = "results/shallow")]
    pub out: PathBuf,
    /// Trials per sweep value [default: 10].
    #[arg(long)]
    pub trials: Option<usize>,
    /// Root seed [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Values of the sweep, comma-separated [default: d 5,10,20; T 2,3,5,10] (only with one sweep).
    #[arg(long, value_delimiter = ',')]
    pub values: Option<Vec<usize>>,
    /// Retraining epochs [default: 40000].
    #[arg(long)]
    pub retrain_epochs: Option<usize>,
    /// Fine-tuning epochs [default: 15000].
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    /// Retraining samples per task N [default: 1000].
    #[arg(long)]
    pub retrain_samples: Option<usize>,
    /// Compute backend for the small tensor operations: flex, ndarray or wgpu (the fused data pass
    /// runs on the CPU).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Recompute settings even when finished results with the same configuration exist.
    #[arg(long)]
    pub fresh: bool,
    /// Also write the Markdown report here (figures are copied next to it).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The configuration `args` describe.
pub fn shallow_config(
    args: &ShallowArgs,
) -> Result<(Vec<Sweep>, ShallowExperimentConfig), ExperimentError> {
    let sweeps = parse_shallow_sweeps(&args.sweep)?;
    let mut config = ShallowExperimentConfig::default();
    if let Some(trials) = args.trials {
        config.trials = trials;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(epochs) = args.retrain_epochs {
        config.retrain.epochs = epochs;
    }
    if let Some(epochs) = args.finetune_epochs {
        config.finetune.epochs = epochs;
    }
    if let Some(n) = args.retrain_samples {
        config.task.retrain_samples = n;
    }
    if let Some(values) = &args.values {
        let [sweep] = sweeps[..] else {
            return Err(ExperimentError::InvalidOption(
                "--values needs a single --sweep (d or T)".into(),
            ));
        };
        config.sweeps.insert(sweep, values.clone());
    }
    config.validate()?;
    Ok((sweeps, config))
}

/// Runs `adaptable shallow`.
pub fn run_shallow(args: &ShallowArgs, quiet: bool) -> Result<(), ExperimentError> {
    let (sweeps, config) = shallow_config(args)?;
    let backend: Backend = args.device.parse()?;
    ensure_writable_dir(&args.out)?;
    let options = ShallowRunOptions {
        device: backend.device()?,
        device_name: backend.name().into(),
    };
    let total: usize = sweeps
        .iter()
        .map(|&s| config.values(s).map_or(0, <[usize]>::len))
        .sum();
    if args.fresh {
        // Forget earlier results here, once, rather than per setting: the d sweep's default value
        // and the T sweep's are the same setting, computed once per run and then reused.
        remove_settings(&args.out)?;
    }
    let bar = super::sweep_progress(quiet, total);
    let started = Instant::now();
    let mut computed = 0.0;
    let mut finished = Vec::new();
    for &sweep in &sweeps {
        bar.set_prefix(format!("vary {sweep}"));
        let result = run_shallow_sweep(&config, sweep, &args.out, &options, false, |value, s| {
            computed += s;
            tracing::info!(sweep = %sweep, value, seconds = s, "setting done");
            bar.inc(1);
        })?;
        let dir = args.out.join(sweep.symbol());
        write_shallow_outputs(&dir, &result, config.task.rank)?;
        eprintln!("{}", one_line_summary(sweep, &result.summary));
        finished.push((sweep, result.summary));
    }
    bar.finish_and_clear();
    eprintln!(
        "shallow suite: {} sweep(s) in {:.1} s; results in {}",
        finished.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    if let Some(report) = &args.report {
        write_report(report, args, &config, backend, &finished, computed)?;
        eprintln!("report: {}", report.display());
    }
    Ok(())
}

fn one_line_summary(sweep: Sweep, records: &[SummaryRecord]) -> String {
    let mut keys: Vec<(usize, usize)> =
        records.iter().map(|r| (r.value, r.finetune_rank)).collect();
    keys.sort_unstable();
    keys.dedup();
    let parts: Vec<String> = keys
        .into_iter()
        .map(|(value, rank)| {
            let median = |m: &str| {
                let xs: Vec<f64> = records
                    .iter()
                    .filter(|r| r.value == value && r.finetune_rank == rank && r.method.id() == m)
                    .map(|r| r.final_test_loss)
                    .collect();
                adaptable_experiments::shallow::median_and_range(&xs).0
            };
            format!(
                "{sweep}={value} (rank {rank}): SR {:.1e} vs LoRA-ML {:.1e}",
                median("sr"),
                median("lora-ml")
            )
        })
        .collect();
    format!(
        "vary {sweep} (median test loss after fine-tuning): {}",
        parts.join("; ")
    )
}

fn write_report(
    report: &Path,
    args: &ShallowArgs,
    config: &ShallowExperimentConfig,
    backend: Backend,
    finished: &[(Sweep, Vec<SummaryRecord>)],
    seconds: f64,
) -> Result<(), ExperimentError> {
    let figures = super::copy_sweep_figures(
        report,
        "shallow",
        &args.out,
        finished.iter().map(|(s, _)| s),
    )?;
    let c = config;
    let input = ShallowReportInput {
        sweeps: finished.to_vec(),
        figures,
        command: std::env::var("ADAPTABLE_COMMAND").unwrap_or_else(|_| {
            format!(
                "adaptable shallow --sweep {} --trials {} --seed {} --retrain-epochs {} --finetune-epochs {}",
                args.sweep, c.trials, c.seed, c.retrain.epochs, c.finetune.epochs
            )
        }),
        wall_seconds: Some(seconds),
        provenance: vec![
            format!(
                "backend: {}, CPUs: {}, CPU: {}",
                backend.name(),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                cpu_model()
            ),
            format!(
                "seed {}, {} trials per value; N = {}, n = {}, k = {}, σ = {}",
                c.seed,
                c.trials,
                c.task.retrain_samples,
                c.task.finetune_samples,
                c.task.rank,
                c.task.noise_std
            ),
            format!(
                "retraining: {} full-batch AdamW epochs (lr {}, weight decay {}); fine-tuning: {} epochs (lr {})",
                c.retrain.epochs,
                c.retrain.optimizer.lr,
                c.retrain.optimizer.weight_decay,
                c.finetune.epochs,
                c.finetune.optimizer.lr
            ),
            format!("adaptable {}", env!("CARGO_PKG_VERSION")),
        ],
        base_rank: c.task.rank,
        defaults: (c.task.tasks, c.task.dim),
    };
    write_atomic(report, render_shallow_report(&input).as_bytes())
}

/// Removes the finished settings under `out` (for `--fresh`).
fn remove_settings(out: &std::path::Path) -> Result<(), ExperimentError> {
    let dir = out.join("settings");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExperimentError::Io { path: dir, source }),
    }
}

/// The CPU's model name from `/proc/cpuinfo`, or `unknown`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
