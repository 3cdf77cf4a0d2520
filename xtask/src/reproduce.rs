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
    #[error("`{command}` failed ({status})")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A prerequisite (pretrained weights) could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// Which suites to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The linear theory suite (paper Figure 1).
    Linear,
    /// The ConvAI2 language experiment (paper Table 1).
    Convai2,
    /// The shallow-network suite (paper v2 §6.2).
    Shallow,
    /// Every suite.
    All,
}

/// Compute backend of the `adaptable` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// Burn's Flex CPU backend (the default build).
    Flex,
    /// Burn's NdArray CPU backend.
    Ndarray,
    /// A GPU through wgpu.
    Wgpu,
}

impl Device {
    /// The name used by `adaptable --device` and by the Cargo feature.
    pub fn name(self) -> &'static str {
        match self {
            Device::Flex => "flex",
            Device::Ndarray => "ndarray",
            Device::Wgpu => "wgpu",
        }
    }
}

/// Experiment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Minutes on a CPU; the default. A smoke-level sanity run of the real pipeline, not evidence.
    Quick,
    /// ConvAI2 sized to answer the paper's question on 2 CPU cores (≤ 3 h, runnable in parts with
    /// `--seed-range`); the linear suite runs as in `quick`.
    Standard,
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
    /// Compute backend.
    #[arg(long, value_enum, default_value = "flex")]
    pub device: Device,
    /// Runs (seeds) per setting [default: the profile's].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Start over instead of resuming finished work.
    #[arg(long)]
    pub fresh: bool,
    /// ConvAI2: run only these seeds, `A..B`; parts run one after another merge into one table.
    #[arg(long)]
    pub seed_range: Option<String>,
    /// ConvAI2: the train split (`train_self_original.txt` or a directory), for the paper profile.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print the plan (for ConvAI2: every run and an estimated cost) and run nothing.
    #[arg(long)]
    pub plan: bool,
}

/// Runs the reproduction.
pub fn reproduce(root: &Path, args: &ReproduceArgs) -> Result<(), ReproduceError> {
    let started = Instant::now();
    let suites = match args.suite {
        Suite::All => vec![Suite::Linear, Suite::Shallow, Suite::Convai2],
        one => vec![one],
    };
    println!(
        "plan ({:?} profile, device {}):",
        args.profile,
        args.device.name()
    );
    for suite in &suites {
        match suite {
            Suite::Linear => println!(
                "  linear   5 sweeps × 3 values × {} run(s), SR vs LoRA-ML (under a minute on 2 CPU cores)",
                linear_runs(args).unwrap_or(5)
            ),
            Suite::Shallow => println!(
                "  shallow  2 sweeps (d: 3 values, T: 4 values) × {} trial(s), SR vs LoRA-ML{}",
                shallow_trials(args).unwrap_or(10),
                if args.profile == Profile::Smoke {
                    ", cut-down epochs (seconds)"
                } else {
                    ", the authors' full protocol (about 3 min on 2 CPU cores)"
                }
            ),
            _ => println!(
                "  convai2  {:?} profile: retrain SR and LoRA-ML on persona tasks, LoRA fine-tuning on unseen personas ({})",
                args.profile,
                match args.profile {
                    Profile::Quick => "about 7 minutes on 2 CPU cores; a sanity run, not evidence",
                    Profile::Standard =>
                        "about 3 hours on 2 CPU cores; `--seed-range` runs it in parts",
                    Profile::Smoke => "seconds",
                    Profile::Paper => "hours; a GPU is advised",
                }
            ),
        }
    }
    let binary = match std::env::var_os(PREBUILT_BINARY_ENV) {
        Some(path) => PathBuf::from(path),
        None => build_cli(root, args.device)?,
    };
    if args.plan {
        if suites.contains(&Suite::Convai2) {
            run(convai2_command(root, &binary, args)?.arg("--plan"))?;
        }
        return Ok(());
    }
    ensure_writable(&args.out)?;
    let mut parts = Vec::new();
    for suite in &suites {
        let t0 = Instant::now();
        let (name, file) = match suite {
            Suite::Linear => ("linear", run_linear(root, &binary, args)?),
            Suite::Shallow => ("shallow", run_shallow(root, &binary, args)?),
            _ => ("convai2", run_convai2(root, &binary, args)?),
        };
        parts.push((name, file, t0.elapsed().as_secs_f64()));
    }
    let report = write_report(root, args, &parts, started.elapsed().as_secs_f64())?;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    for (name, file, seconds) in &parts {
        println!("  {name}: {seconds:.0} s, {}", file.display());
    }
    println!("report: {}", report.display());
    Ok(())
}

/// Writes `<out>/report.md`: each suite's report, then the provenance of the run.
fn write_report(
    root: &Path,
    args: &ReproduceArgs,
    parts: &[(&str, PathBuf, f64)],
    total: f64,
) -> Result<PathBuf, ReproduceError> {
    let output = |program: &str, argv: &[&str]| {
        Command::new(program)
            .current_dir(root)
            .args(argv)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let mut md = String::from("# Reproduction report\n\n");
    md.push_str(&format!(
        "Command: `cargo xtask reproduce {} --profile {} --device {}{}{}`\n\n",
        match args.suite {
            Suite::Linear => "linear",
            Suite::Convai2 => "convai2",
            Suite::Shallow => "shallow",
            Suite::All => "all",
        },
        format!("{:?}", args.profile).to_lowercase(),
        args.device.name(),
        args.seeds
            .map_or(String::new(), |s| format!(" --seeds {s}")),
        args.seed_range
            .as_ref()
            .map_or(String::new(), |r| format!(" --seed-range {r}"))
    ));
    md.push_str("## Provenance\n\n");
    md.push_str(&format!(
        "- git commit: {}\n",
        output("git", &["rev-parse", "HEAD"])
    ));
    md.push_str(&format!("- rustc: {}\n", output("rustc", &["--version"])));
    md.push_str("- burn: 0.22.1 (pinned in Cargo.toml)\n");
    md.push_str(&format!(
        "- backend: {}; CPUs: {}\n",
        args.device.name(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    for (name, _, seconds) in parts {
        md.push_str(&format!(
            "- {name}: {seconds:.0} s wall time (finished work reused on reruns)\n"
        ));
    }
    md.push_str(&format!("- total: {total:.0} s\n\n"));
    for (name, file, _) in parts {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| format!("({}: {e})", file.display()));
        let shown = file.strip_prefix(root).unwrap_or(file);
        md.push_str(&format!(
            "## Suite: {name}\n\nSource: `{}`\n\n",
            shown.display()
        ));
        // Demote the suite report's headings below this report's.
        for line in text.lines() {
            if line.starts_with('#') {
                md.push('#');
            }
            md.push_str(line);
            md.push('\n');
        }
        md.push('\n');
    }
    let report = args.out.join("report.md");
    let tmp = args.out.join(".report.md.tmp");
    std::fs::create_dir_all(&args.out)
        .and_then(|()| std::fs::write(&tmp, md))
        .and_then(|()| std::fs::rename(&tmp, &report))
        .map_err(|source| ReproduceError::Write {
            path: report.clone(),
            source,
        })?;
    Ok(report)
}

/// Fails early, before any build or run, when the output directory cannot be created or written.
fn ensure_writable(out: &Path) -> Result<(), ReproduceError> {
    let probe = out.join(".write-probe");
    std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| ReproduceError::Write {
            path: out.to_path_buf(),
            source,
        })
}

/// Environment variable naming a prebuilt `adaptable` binary to use instead of building one
/// (the tests point it at the binary `cargo test` already built).
pub const PREBUILT_BINARY_ENV: &str = "ADAPTABLE_BIN";

/// Builds the `adaptable` binary in release mode with the backend's feature and returns its path.
fn build_cli(root: &Path, device: Device) -> Result<PathBuf, ReproduceError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
        "build",
        "--release",
        "-p",
        "adaptable-cli",
        "--bin",
        "adaptable",
    ]);
    if device != Device::Flex {
        cmd.args(["--features", device.name()]);
    }
    run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    Ok(target.join("release").join("adaptable"))
}

fn run_linear(root: &Path, binary: &Path, args: &ReproduceArgs) -> Result<PathBuf, ReproduceError> {
    let out = args.out.join("linear");
    // The quick profile is the documented reproduction; other profiles report next to their results.
    let report = if args.profile == Profile::Quick && args.seeds.is_none() {
        root.join("docs/results/linear.md")
    } else {
        out.join("report.md")
    };
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .env("ADAPTABLE_COMMAND", "cargo xtask reproduce linear")
        .args(["linear", "--sweep", "all", "--device", args.device.name()])
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report);
    if let Some(runs) = linear_runs(args) {
        cmd.args(["--runs", &runs.to_string()]);
    }
    if args.fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    Ok(report)
}

/// Runs per value of the linear sweeps when not the configuration's own (5): `--seeds`, or one for
/// the smoke profile, which keeps the full sweep structure.
fn linear_runs(args: &ReproduceArgs) -> Option<usize> {
    args.seeds.or((args.profile == Profile::Smoke).then_some(1))
}

fn run_shallow(
    root: &Path,
    binary: &Path,
    args: &ReproduceArgs,
) -> Result<PathBuf, ReproduceError> {
    let out = args.out.join("shallow");
    // Quick and paper are both the full protocol; the documented run is the quick one.
    let report = if args.profile == Profile::Quick && args.seeds.is_none() {
        root.join("docs/results/shallow.md")
    } else {
        out.join("report.md")
    };
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .env("ADAPTABLE_COMMAND", "cargo xtask reproduce shallow")
        .args(["shallow", "--sweep", "all", "--device", args.device.name()])
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report);
    if let Some(trials) = shallow_trials(args) {
        cmd.args(["--trials", &trials.to_string()]);
    }
    if args.profile == Profile::Smoke {
        // The full sweep structure with a fraction of the epochs and samples.
        cmd.args([
            "--retrain-epochs",
            "300",
            "--finetune-epochs",
            "200",
            "--retrain-samples",
            "200",
        ]);
    }
    if args.fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    Ok(report)
}

/// Trials per value of the shallow sweeps when not the suite's own (10): `--seeds`, or two for
/// the smoke profile.
fn shallow_trials(args: &ReproduceArgs) -> Option<usize> {
    args.seeds.or((args.profile == Profile::Smoke).then_some(2))
}

/// The ConvAI2 profile name of a reproduction profile.
fn convai2_profile(profile: Profile) -> &'static str {
    match profile {
        Profile::Quick => "quick",
        Profile::Standard => "standard",
        Profile::Paper => "paper",
        Profile::Smoke => "smoke",
    }
}

/// `adaptable convai2 run …` for the reproduction's options; fetches MiniLM when the profile needs it.
fn convai2_command(
    root: &Path,
    binary: &Path,
    args: &ReproduceArgs,
) -> Result<Command, ReproduceError> {
    let profile = convai2_profile(args.profile);
    // The quick and standard profiles start from pretrained all-MiniLM-L6-v2; fetch it when missing.
    if matches!(args.profile, Profile::Quick | Profile::Standard) {
        let models = crate::fetch_model::default_models_dir(root);
        if !models.join("minilm/model.safetensors").is_file() {
            crate::fetch_model::fetch_model("minilm", &models)
                .map_err(|e| ReproduceError::Setup(e.to_string()))?;
        }
    }
    let mut cmd = Command::new(binary);
    cmd.current_dir(root)
        .args([
            "convai2",
            "run",
            "--profile",
            profile,
            "--device",
            args.device.name(),
        ])
        .arg("--out")
        .arg(args.out.join("convai2").join(profile));
    if let Some(seeds) = args.seeds {
        cmd.args(["--seeds", &seeds.to_string()]);
    }
    if let Some(range) = &args.seed_range {
        cmd.args(["--seed-range", range]);
    }
    if let Some(data) = &args.data {
        cmd.arg("--data").arg(data);
    }
    Ok(cmd)
}

fn run_convai2(
    root: &Path,
    binary: &Path,
    args: &ReproduceArgs,
) -> Result<PathBuf, ReproduceError> {
    let mut cmd = convai2_command(root, binary, args)?;
    if args.fresh {
        cmd.arg("--fresh");
    }
    run(&mut cmd)?;
    Ok(args
        .out
        .join("convai2")
        .join(convai2_profile(args.profile))
        .join("table.md"))
}

fn run(cmd: &mut Command) -> Result<(), ReproduceError> {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let command = std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
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
