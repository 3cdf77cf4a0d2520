//! `adaptable convai2 …`: inspect the ConvAI2 persona tasks.

use std::{ops::Range, path::PathBuf};

use adaptable_tasks::convai2::{SplitConfig, stats_for_path};
use clap::{Args, Subcommand};

use adaptable_experiments::{
    ExperimentError,
    convai2::{
        Convai2Profile, Convai2Run, Convai2RunOptions, PairFormatSetting, report_dir, write_outputs,
    },
    device::Backend,
    io::ensure_writable_dir,
};

/// ConvAI2 subcommands.
#[derive(Debug, Subcommand)]
pub enum Convai2Command {
    /// Episodes, examples, persona clusters and the retraining/test task split.
    Stats(Convai2StatsArgs),
    /// Retrain on persona tasks (SR, LoRA-ML, …), fine-tune on unseen personas, write the table.
    Run(Convai2RunArgs),
    /// Recompute table.md and the figures of a finished run from its CSVs (summary.csv,
    /// retrain.csv, finetune_epochs.csv), e.g. the committed docs/results/convai2/standard.
    Report(Convai2ReportArgs),
}

/// Options of `adaptable convai2 report`.
#[derive(Debug, Clone, Args)]
pub struct Convai2ReportArgs {
    /// The directory holding the CSVs; table.md and the figures are written there.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Options of `adaptable convai2 run`.
#[derive(Debug, Clone, Args)]
pub struct Convai2RunArgs {
    /// A built-in profile (quick, standard, paper, smoke) or a TOML file.
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// ConvAI2 data: a `train_self_original.txt[.gz]` file (retraining personas from it, test
    /// personas from the shipped validation file, as in the paper's code), a directory holding
    /// `valid_self_original.txt[.gz]` and optionally `train_…`, or one validation file
    /// [default: the profile's, else the shipped validation file].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run only these seeds, `A..B` (B excluded), of the profile's; parts run into the same
    /// output directory merge into one table (each part's report covers every seed done so far).
    #[arg(long, value_parser = parse_seed_range)]
    pub seed_range: Option<Range<usize>>,
    /// Print the runs and an estimate of their cost, and run nothing.
    #[arg(long)]
    pub plan: bool,
    /// Pair format instead of the profile's: `paper` (each segment with its own special tokens,
    /// concatenated; token types 0) or `native` (the model's pair template, token types 0/1).
    /// Results then go to results/convai2/PROFILE-FORMAT by default, apart from the profile's own.
    #[arg(long, value_parser = parse_pair_format)]
    pub pair_format: Option<PairFormatSetting>,
    /// Output directory [default: results/convai2/PROFILE].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Seeds per method [default: the profile's].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Run only these retraining methods of the profile (comma-separated ids, e.g. `sr,lora-ml`);
    /// separate processes can share one output directory this way, and a final run without the
    /// option collects everything.
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Delete earlier results in the output directory and start over (otherwise a rerun resumes).
    #[arg(long)]
    pub fresh: bool,
    /// Worker processes: the methods are independent and the CPU backends keep about one core
    /// busy per training step, so they train in parallel processes (each deterministic on its own)
    /// [default: the CPU count for CPU backends, 1 for wgpu].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Internal: run as a worker of a parent `convai2 run` (record results, write no report, stop
    /// when the parent goes away).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Options of `adaptable convai2 stats`.
#[derive(Debug, Clone, Args)]
pub struct Convai2StatsArgs {
    /// A ConvAI2 `*_self_original.txt[.gz]` file (used as the valid split), or a directory holding
    /// `valid_self_original.txt[.gz]` and optionally `train_self_original.txt[.gz]`
    /// [default: the shipped datasets/convai2/valid_self_original.txt.gz].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed for tie-breaking between personas of equal size.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs a ConvAI2 subcommand.
pub fn run_convai2(command: &Convai2Command, quiet: bool) -> Result<(), ExperimentError> {
    match command {
        Convai2Command::Run(args) => run_profile_command(args, quiet),
        Convai2Command::Report(args) => {
            let table = report_dir(&args.dir)?;
            if !quiet {
                println!("{table}");
            }
            Ok(())
        }
        Convai2Command::Stats(args) => {
            let config = SplitConfig {
                seed: args.seed,
                ..SplitConfig::default()
            };
            let stats = stats_for_path(args.data.as_deref(), &config)?;
            if args.json {
                let json = serde_json::to_string(&stats).map_err(|e| ExperimentError::Results {
                    path: args.data.clone().unwrap_or_default(),
                    message: e.to_string(),
                })?;
                println!("{json}");
            } else {
                print!("{}", stats.render());
            }
            Ok(())
        }
    }
}

/// Parses `A..B` (B excluded).
fn parse_seed_range(text: &str) -> Result<Range<usize>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}`: expected A..B, e.g. 0..2"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{text}`: `{v}` is not a seed number"))
    };
    let range = parse(a)?..parse(b)?;
    if range.is_empty() {
        return Err(format!("`{text}` is empty; B must be above A"));
    }
    Ok(range)
}

fn parse_pair_format(text: &str) -> Result<PairFormatSetting, String> {
    [PairFormatSetting::Paper, PairFormatSetting::Native]
        .into_iter()
        .find(|f| f.id() == text)
        .ok_or_else(|| format!("`{text}`: expected paper or native"))
}

fn run_profile_command(args: &Convai2RunArgs, quiet: bool) -> Result<(), ExperimentError> {
    let started = std::time::Instant::now();
    let mut profile = Convai2Profile::resolve(&args.profile)?;
    if let Some(seeds) = args.seeds {
        if seeds == 0 {
            return Err(ExperimentError::InvalidOption(
                "--seeds must be at least 1".into(),
            ));
        }
        profile.seeds = seeds;
    }
    if let Some(data) = &args.data {
        profile.data.path = Some(data.clone());
    }
    if let Some(format) = args.pair_format {
        profile.data.pair_format = Some(format);
    }
    if !args.methods.is_empty() {
        let known: Vec<&str> = profile.methods.iter().map(|m| m.id()).collect();
        if let Some(unknown) = args.methods.iter().find(|m| !known.contains(&m.as_str())) {
            return Err(ExperimentError::InvalidOption(format!(
                "--methods: `{unknown}` is not a method of this profile ({})",
                known.join(", ")
            )));
        }
        profile
            .methods
            .retain(|m| args.methods.iter().any(|a| a == m.id()));
    }
    let backend: Backend = args.device.parse()?;
    let name = std::path::Path::new(&args.profile)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("custom")
        .to_string();
    let name = match args.pair_format {
        Some(format) => format!("{name}-{}-format", format.id()),
        None => name,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/convai2").join(&name));
    let mut options =
        Convai2RunOptions::new(out.clone(), backend.device()?.autodiff(), workspace_root());
    options.seeds = args.seed_range.clone();
    if quiet || args.worker {
        options = options.quiet();
    }
    let mut run = Convai2Run::prepare(&profile, &options)?;
    if args.plan {
        print!("{}", run.plan_text());
        return Ok(());
    }
    if args.fresh {
        for sub in ["retrain", "finetune"] {
            let dir = out.join(sub);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|source| ExperimentError::Io { path: dir, source })?;
            }
        }
    }
    ensure_writable_dir(&out)?;
    if !quiet && !args.worker {
        eprint!("{}", run.plan_text());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args
        .jobs
        .unwrap_or(if backend == Backend::Wgpu { 1 } else { cpus })
        .min(profile.methods.len());
    if jobs > 1 && args.methods.is_empty() && !args.worker {
        run_workers(args, &run, &profile, &out, jobs, cpus)?;
    }
    if args.worker {
        exit_with_parent();
        run.run()?;
        return Ok(());
    }
    let summary = run.run()?;
    let table = write_outputs(&out, &summary)?;
    if !quiet {
        println!("{table}");
    }
    eprintln!(
        "convai2 {name}: {} of {} runs done ({} retraining and {} fine-tuning runs found) in {:.1} s; results in {}",
        summary.runs.1,
        summary.runs.0,
        summary.retrain.len(),
        summary.finetune.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    let failures: Vec<&String> = summary
        .retrain
        .iter()
        .filter_map(|r| r.failure.as_ref())
        .chain(summary.finetune.iter().filter_map(|r| r.failure.as_ref()))
        .collect();
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(ExperimentError::RunsFailed {
            failed: failures.len(),
            report: out.join("table.md"),
            first: (*first).clone(),
        }),
    }
}

/// The workspace root: `$ADAPTABLE_WORKSPACE`, else the current directory when it holds `datasets/`,
/// else the source tree this binary was built from.
fn workspace_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ADAPTABLE_WORKSPACE") {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("datasets").is_dir() {
        return cwd;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// mimalloc's option (milliseconds before freed memory goes back to the OS; -1: never).
const MIMALLOC_PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Threads of Burn's CPU operations (rayon's pool) and of the encoder's fused kernels.
const RAYON_NUM_THREADS: &str = "RAYON_NUM_THREADS";

/// Runs the profile's methods in `jobs` child processes of this binary sharing `out`; the caller then
/// collects their finished results.
fn run_workers(
    args: &Convai2RunArgs,
    run: &Convai2Run,
    profile: &Convai2Profile,
    out: &std::path::Path,
    jobs: usize,
    cpus: usize,
) -> Result<(), ExperimentError> {
    let exe = std::env::current_exe().map_err(|source| ExperimentError::Io {
        path: PathBuf::from("adaptable"),
        source,
    })?;
    let ids: Vec<&str> = profile.methods.iter().map(|m| m.id()).collect();
    let mut children = Vec::new();
    for group in ids.chunks(ids.len().div_ceil(jobs)) {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args([
            "-q",
            "convai2",
            "run",
            "--profile",
            &args.profile,
            "--device",
            &args.device,
            "--worker",
        ])
        .arg("--out")
        .arg(out)
        .arg("--methods")
        .arg(group.join(","));
        if let Some(seeds) = args.seeds {
            cmd.args(["--seeds", &seeds.to_string()]);
        }
        if let Some(range) = &args.seed_range {
            cmd.arg("--seed-range")
                .arg(format!("{}..{}", range.start, range.end));
        }
        if let Some(data) = &args.data {
            cmd.arg("--data").arg(data);
        }
        if let Some(format) = args.pair_format {
            cmd.args(["--pair-format", format.id()]);
        }
        // mimalloc reads its options when a process starts: workers, which do the training, keep
        // freed memory instead of purging it after 1 s and page-faulting it back in (≈ 10 % of a
        // training step on the encoder; docs/benchmarks.md). A value set by the user wins.
        if std::env::var_os(MIMALLOC_PURGE_DELAY).is_none() {
            cmd.env(MIMALLOC_PURGE_DELAY, "-1");
        }
        // Each worker's matrix products would otherwise start a thread per core: `jobs` workers
        // then oversubscribe the cores. The cores are shared out instead (user setting wins).
        if std::env::var_os(RAYON_NUM_THREADS).is_none() {
            cmd.env(RAYON_NUM_THREADS, (cpus / jobs).max(1).to_string());
        }
        // A worker's errors come from the same inputs as the collecting run's, which reports them
        // once; the workers stay silent.
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        tracing::info!(methods = %group.join(","), "starting a worker process");
        let child = cmd.spawn().map_err(|source| ExperimentError::Io {
            path: exe.clone(),
            source,
        })?;
        children.push((group.join(","), child));
    }
    // The workers are silent; the whole run's progress comes from the files they finish.
    let progress = run.progress_bar();
    let mut failed = Vec::new();
    let mut running = children;
    while !running.is_empty() {
        let mut still = Vec::new();
        for (group, mut child) in running {
            match child.try_wait().map_err(|source| ExperimentError::Io {
                path: exe.clone(),
                source,
            })? {
                Some(status) if !status.success() => failed.push(group),
                Some(_) => {}
                None => still.push((group, child)),
            }
        }
        running = still;
        run.update_progress(&progress);
        if !running.is_empty() {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    progress.finish_and_clear();
    // Failed runs are recorded in their JSON files; the collecting run reports them. A worker that
    // died without writing (a crash) is retried there, which also resumes its checkpoints.
    if !failed.is_empty() {
        tracing::warn!(methods = %failed.join("; "), "worker(s) exited with an error; collecting what finished");
    }
    Ok(())
}

/// Ends this worker process when its parent dies (e.g. the user killed the parent): the rerun resumes
/// from the checkpoints, and no orphan keeps writing into the output directory.
fn exit_with_parent() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(130);
                }
            }
        });
    }
}
