//! `cargo xtask reproduce`: build the `adaptable` binary once and run the requested suites.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use clap::{Args, ValueEnum};

/// Why a reproduction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// A child command could not start.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A child command failed (it printed its own error above).
    #[error("`{command}` failed ({status}); see the message above")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A suite that this version cannot run yet.
    #[error("{0}")]
    Unavailable(String),
}

/// Which suites to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The linear theory suite (paper Figure 1).
    Linear,
    /// The ConvAI2 language experiment (paper Table 1).
    Convai2,
    /// Every suite.
    All,
}

/// Experiment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Minutes on a CPU; the default.
    Quick,
    /// The paper's full settings (a GPU is advised).
    Paper,
    /// Seconds; what CI runs.
    Smoke,
}

/// Options of `cargo xtask reproduce`.
#[derive(Debug, Clone, Args)]
pub struct ReproduceArgs {
    /// Which suites to run.
    #[arg(value_enum, default_value = "all")]
    pub suite: Suite,
    /// Experiment size.
    #[arg(long, value_enum, default_value = "quick")]
    pub profile: Profile,
    /// Compute backend: ndarray (default), flex or wgpu.
    #[arg(long, default_value = "ndarray")]
    pub device: String,
    /// Runs (seeds) per setting [default: the profile's].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Start over instead of resuming finished work.
    #[arg(long)]
    pub fresh: bool,
}

/// Runs the reproduction.
pub fn reproduce(root: &Path, args: &ReproduceArgs) -> Result<(), ReproduceError> {
    let started = Instant::now();
    let suites = match args.suite {
        Suite::All => vec![Suite::Linear, Suite::Convai2],
        one => vec![one],
    };
    println!("plan ({:?} profile, device {}):", args.profile, args.device);
    for suite in &suites {
        match suite {
            Suite::Linear => println!(
                "  linear   5 sweeps × 3 values × {} runs, SR vs LoRA-ML (under a minute on 2 CPU cores)",
                args.seeds.unwrap_or(5)
            ),
            _ => println!(
                "  convai2  not available in this version (ConvAI2 meta-retraining is in progress)"
            ),
        }
    }
    let binary = build_cli(root, &args.device)?;
    let mut reports = Vec::new();
    for suite in &suites {
        match suite {
            Suite::Linear => reports.push(run_linear(root, &binary, args)?),
            _ => reports.push(run_convai2(root, &binary, args)?),
        }
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    for report in reports {
        println!("report: {}", report.display());
    }
    Ok(())
}

/// Builds the `adaptable` binary in release mode with the backend's feature and returns its path.
fn build_cli(root: &Path, device: &str) -> Result<PathBuf, ReproduceError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
        "build",
        "--release",
        "-p",
        "adaptable-experiments",
        "--bin",
        "adaptable",
    ]);
    if device != "ndarray" {
        cmd.args(["--features", device]);
    }
    run(&mut cmd)?;
    Ok(root.join("target/release/adaptable"))
}

fn run_linear(root: &Path, binary: &Path, args: &ReproduceArgs) -> Result<PathBuf, ReproduceError> {
    let report = root.join("docs/results/linear.md");
    let out = args.out.join("linear");
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .env("ADAPTABLE_COMMAND", "cargo xtask reproduce linear")
        .args(["linear", "--sweep", "all", "--device", &args.device])
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report);
    // The smoke profile keeps the full sweep structure with a single run per value.
    let runs = args.seeds.or((args.profile == Profile::Smoke).then_some(1));
    if let Some(runs) = runs {
        cmd.args(["--runs", &runs.to_string()]);
    }
    if args.fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    Ok(report)
}

fn run_convai2(
    root: &Path,
    binary: &Path,
    args: &ReproduceArgs,
) -> Result<PathBuf, ReproduceError> {
    let profile = match args.profile {
        Profile::Quick => "quick",
        Profile::Paper => "paper",
        Profile::Smoke => "smoke",
    };
    // The quick profile starts from pretrained all-MiniLM-L6-v2; fetch it when missing.
    if args.profile == Profile::Quick {
        let models = crate::fetch_model::default_models_dir(root);
        if !models.join("minilm/model.safetensors").is_file() {
            crate::fetch_model::fetch_model("minilm", &models)
                .map_err(|e| ReproduceError::Unavailable(e.to_string()))?;
        }
    }
    let out = args.out.join("convai2").join(profile);
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .args([
            "convai2",
            "run",
            "--profile",
            profile,
            "--device",
            &args.device,
        ])
        .arg("--out")
        .arg(&out);
    if let Some(seeds) = args.seeds {
        cmd.args(["--seeds", &seeds.to_string()]);
    }
    if args.fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    Ok(out.join("table.md"))
}

fn run(cmd: &mut Command) -> Result<(), ReproduceError> {
    let command = format!("{cmd:?}");
    let status = cmd.status().map_err(|source| ReproduceError::Spawn {
        command: command.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ReproduceError::Failed { command, status })
    }
}
