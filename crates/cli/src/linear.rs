//! `adaptable linear`: run sweeps of the linear suite.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use clap::Args;
use serde::{Deserialize, Serialize};

use adaptable_experiments::{
    ExperimentError,
    device::Backend,
    io::{digest_files, ensure_writable_dir, files_match, read_json, write_atomic, write_json},
    linear::{
        LinearExperimentConfig, LinearReportInput, RunOptions, SummaryRecord, Sweep,
        render_linear_report, run_sweep, run_sweep_value, write_sweep_outputs,
    },
};

/// Options of `adaptable linear`.
#[derive(Debug, Clone, Args)]
pub struct LinearArgs {
    /// Which sweep: d, T, N, n, k (or dim, tasks, retrain-samples, finetune-samples, rank), or all.
    #[arg(long, default_value = "all")]
    pub sweep: String,
    /// Output directory; each sweep writes into `<out>/<sweep>/`.
    #[arg(long, default_value = "results/linear")]
    pub out: PathBuf,
    /// Runs per sweep value [default: from the config, 5].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Root seed [default: from the config, 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Retrain on the infinite-sample (population) loss instead of the N-sample loss.
    #[arg(long)]
    pub population: bool,
    /// A TOML configuration [default: the built-in crates/experiments/configs/linear.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Recompute sweeps even when finished results with the same configuration exist.
    #[arg(long)]
    pub fresh: bool,
    /// Also write the Markdown report here (figures are copied next to it).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// What a finished sweep directory records about how it was made, to decide whether a rerun may
/// reuse it. Written after every output file: it is the sweep's commit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SweepManifest {
    config: LinearExperimentConfig,
    device: String,
    seconds: f64,
    /// The output files and their digests (`io::content_digest`).
    files: BTreeMap<String, String>,
}

/// Runs `adaptable linear`.
pub fn run_linear(args: &LinearArgs, quiet: bool) -> Result<(), ExperimentError> {
    let sweeps = Sweep::parse_selection(&args.sweep)?;
    let backend: Backend = args.device.parse()?;
    let mut config = match &args.config {
        Some(path) => LinearExperimentConfig::load(path)?,
        None => LinearExperimentConfig::default(),
    };
    if let Some(runs) = args.runs {
        if runs == 0 {
            return Err(ExperimentError::InvalidOption(
                "--runs must be at least 1".into(),
            ));
        }
        config.runs = runs;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    config.population |= args.population;
    for &sweep in &sweeps {
        config.sweep(sweep)?;
    }
    ensure_writable_dir(&args.out)?;
    let options = RunOptions {
        device: backend.device()?,
    };

    let total: usize = sweeps
        .iter()
        .map(|&s| config.sweep(s).map_or(0, |spec| spec.values.len()))
        .sum();
    let bar = super::sweep_progress(quiet, total);
    let started = Instant::now();
    let mut finished = Vec::new();
    for &sweep in &sweeps {
        let dir = args.out.join(sweep.symbol());
        bar.set_prefix(format!("vary {sweep}"));
        if !args.fresh
            && let Some(records) = reusable(&dir, &config, backend)?
        {
            tracing::info!(sweep = %sweep, dir = %dir.display(), "finished results with this configuration exist; skipping (use --fresh to recompute)");
            bar.inc(config.sweep(sweep)?.values.len() as u64);
            finished.push((sweep, records));
            continue;
        }
        let sweep_started = Instant::now();
        let result = run_sweep(&config, sweep, &options, |_| bar.inc(1))?;
        let files = write_sweep_outputs(&dir, &result)?;
        let manifest = SweepManifest {
            config: config.clone(),
            device: backend.name().into(),
            seconds: sweep_started.elapsed().as_secs_f64(),
            files: digest_files(&dir, &files)?,
        };
        write_json(&dir.join("manifest.json"), &manifest)?;
        tracing::info!(sweep = %sweep, seconds = manifest.seconds, dir = %dir.display(), "sweep written");
        finished.push((sweep, result.summary));
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    for (sweep, records) in &finished {
        eprintln!("{}", one_line_summary(*sweep, records));
    }
    eprintln!(
        "linear suite: {} sweep(s) in {elapsed:.1} s; results in {}",
        finished.len(),
        args.out.display()
    );
    if let Some(report) = &args.report {
        write_report(report, args, &config, backend, &finished)?;
        eprintln!("report: {}", report.display());
    }
    Ok(())
}

fn reusable(
    dir: &Path,
    config: &LinearExperimentConfig,
    backend: Backend,
) -> Result<Option<Vec<SummaryRecord>>, ExperimentError> {
    // A manifest from before digests, of another configuration, or whose files were since replaced
    // (a later run stopped halfway through writing them) describes nothing reusable.
    let Ok(m) = read_json::<SweepManifest>(&dir.join("manifest.json")) else {
        return Ok(None);
    };
    if &m.config != config
        || m.device != backend.name()
        || !m.files.contains_key("summary.json")
        || !files_match(dir, &m.files)
    {
        return Ok(None);
    }
    read_json(&dir.join("summary.json")).map(Some)
}

fn one_line_summary(sweep: Sweep, records: &[SummaryRecord]) -> String {
    let mut parts = Vec::new();
    let mut values: Vec<f64> = records.iter().map(|r| r.value).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    for v in values {
        let mean = |m: &str| {
            let xs: Vec<f64> = records
                .iter()
                .filter(|r| r.value == v && r.method.id() == m)
                .map(|r| r.final_population_loss)
                .collect();
            xs.iter().sum::<f64>() / xs.len().max(1) as f64
        };
        parts.push(format!(
            "{sweep}={v}: SR {:.1e} vs LoRA-ML {:.1e}",
            mean("sr"),
            mean("lora-ml")
        ));
    }
    format!(
        "vary {sweep} (population loss after fine-tuning): {}",
        parts.join("; ")
    )
}

fn write_report(
    report: &Path,
    args: &LinearArgs,
    config: &LinearExperimentConfig,
    backend: Backend,
    finished: &[(Sweep, Vec<SummaryRecord>)],
) -> Result<(), ExperimentError> {
    let figures =
        super::copy_sweep_figures(report, "linear", &args.out, finished.iter().map(|(s, _)| s))?;
    let mut seconds = 0.0;
    for (sweep, _) in finished {
        let dir = args.out.join(sweep.symbol());
        if let Ok(m) = read_json::<SweepManifest>(&dir.join("manifest.json")) {
            seconds += m.seconds;
        }
    }
    // The theorems are about the population objective: check them there too (about a second).
    let population_check = if config.population || !config.sweeps.contains_key(&Sweep::Tasks) {
        Vec::new()
    } else {
        let population = LinearExperimentConfig {
            population: true,
            ..config.clone()
        };
        let options = RunOptions {
            device: backend.device()?,
        };
        run_sweep_value(&population, Sweep::Tasks, population.task.tasks, &options)?.0
    };
    let input = LinearReportInput {
        population_check,
        sweeps: finished.to_vec(),
        figures,
        command: std::env::var("ADAPTABLE_COMMAND").unwrap_or_else(|_| {
            format!(
                "adaptable linear --sweep {} --runs {} --seed {}{}",
                args.sweep,
                config.runs,
                config.seed,
                if config.population {
                    " --population"
                } else {
                    ""
                }
            )
        }),
        wall_seconds: Some(seconds),
        provenance: vec![
            format!("backend: {}, CPUs: {}", backend.name(), available_cpus()),
            format!(
                "seed {}, {} runs per value, retraining objective: {}",
                config.seed,
                config.runs,
                if config.population {
                    "population"
                } else {
                    "finite-sample (N per task)"
                }
            ),
            format!("adaptable {}", env!("CARGO_PKG_VERSION")),
        ],
    };
    write_atomic(report, render_linear_report(&input).as_bytes())
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
