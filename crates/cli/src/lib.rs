//! The `adaptable` command-line tool: argument parsing and the subcommands.

mod adapters;
mod convai2;
mod embed;
mod finetune;
mod linear;
mod retrain;
mod shallow;
mod text_common;

use clap::{Parser, Subcommand};

pub use adapters::{AdaptersCommand, run_adapters};
pub use convai2::{
    Convai2Command, Convai2ReportArgs, Convai2RunArgs, Convai2StatsArgs, run_convai2,
};
pub use embed::{EmbedArgs, run_embed};
pub use finetune::{EvaluateArgs, FINETUNE_METRICS, FinetuneArgs, run_evaluate, run_finetune};
pub use linear::{LinearArgs, run_linear};
pub use retrain::{MethodArg, RETRAIN_REPORT, RetrainArgs, run_retrain};
pub use shallow::{ShallowArgs, run_shallow, shallow_config};
pub use text_common::TextDataArgs;

use indicatif::{ProgressBar, ProgressStyle};

use adaptable_experiments::ExperimentError;

/// Copies every finished sweep's `vary-<sweep>.png`/`.svg` from `out/<sweep>/` next to `report`, into a
/// folder named after the report file (`docs/results/linear.md` → `docs/results/linear/`; `fallback`
/// when it has no stem), and returns each sweep's figure path relative to the report.
fn copy_sweep_figures<'a>(
    report: &std::path::Path,
    fallback: &str,
    out: &std::path::Path,
    sweeps: impl IntoIterator<Item = &'a adaptable_experiments::linear::Sweep>,
) -> Result<Vec<(adaptable_experiments::linear::Sweep, String)>, ExperimentError> {
    let report_dir = report
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let fig_dir_name = report
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(fallback)
        .to_string();
    let fig_dir = report_dir.join(&fig_dir_name);
    let mut figures = Vec::new();
    for sweep in sweeps {
        let dir = out.join(sweep.symbol());
        for ext in ["png", "svg"] {
            let name = format!("vary-{}.{ext}", sweep.symbol());
            let bytes = std::fs::read(dir.join(&name)).map_err(|source| ExperimentError::Io {
                path: dir.join(&name),
                source,
            })?;
            adaptable_experiments::io::write_atomic(&fig_dir.join(&name), &bytes)?;
        }
        figures.push((
            *sweep,
            format!("{fig_dir_name}/vary-{}.png", sweep.symbol()),
        ));
    }
    Ok(figures)
}

/// The progress bar of a sweep command (`linear`, `shallow`): one step per sweep value.
fn sweep_progress(quiet: bool, total: usize) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} sweep values, {elapsed} (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Meta-learning adaptable foundation models: experiments of Block et al. (arXiv 2410.22264).
#[derive(Debug, Parser)]
#[command(name = "adaptable", version)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors (no progress bars, no info logs).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run sweeps of the linear theory suite (paper Figure 1) and write curves, summaries and figures.
    Linear(LinearArgs),
    /// Run the shallow-network suite (paper v2 §6.2): sweeps of d and T, SR vs LoRA-ML.
    Shallow(ShallowArgs),
    /// PEFT-format LoRA adapters: inspect, export, export-base, import.
    #[command(subcommand)]
    Adapters(AdaptersCommand),
    /// Sentence embeddings from a BERT/RoBERTa model directory, one JSON array per input.
    Embed(EmbedArgs),
    /// ConvAI2 persona tasks (`stats`, `run`).
    #[command(subcommand)]
    Convai2(Convai2Command),
    /// Retrain a BERT/RoBERTa directory on your JSONL tasks (SR, LoRA-ML, last-layer-ML, Reptile)
    /// and write the retrained base as a Hugging Face model directory with a report.
    Retrain(RetrainArgs),
    /// Fine-tune a fresh LoRA adapter and head (or a head) on one JSONL task; write a PEFT adapter.
    Finetune(FinetuneArgs),
    /// Held-out accuracy of a model (with an optional PEFT adapter) on a JSONL task file.
    Evaluate(EvaluateArgs),
}

/// Sets up `tracing` output on stderr: `RUST_LOG` if set, otherwise from `-v`/`-q`.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The environment variable of crash tests: `ADAPTABLE_FAULT_AFTER_WRITES=N` makes the process abort
/// right after its `N`-th durable write (an output file renamed into place, a checkpoint file
/// flushed, a checkpoint directory created, committed or removed), as a crash at that point would.
/// Each process counts its own writes (a `convai2 run` parent and its workers alike). Only the
/// `adaptable` binary reads it, through [`install_fault_injection`]; the libraries take a write
/// hook instead ([`adaptable_experiments::io::set_write_hook`], `adaptable_meta::checkpoint::WriteHook`).
pub const FAULT_AFTER_WRITES: &str = "ADAPTABLE_FAULT_AFTER_WRITES";

/// Installs [`adaptable_experiments::io::abort_after_writes`] when [`FAULT_AFTER_WRITES`] is set.
pub fn install_fault_injection() -> Result<(), ExperimentError> {
    let Some(value) = std::env::var_os(FAULT_AFTER_WRITES) else {
        return Ok(());
    };
    let writes = value
        .to_str()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            ExperimentError::InvalidOption(format!(
                "{FAULT_AFTER_WRITES}={}: expected a positive number of writes (or unset it)",
                value.to_string_lossy()
            ))
        })?;
    adaptable_experiments::io::set_write_hook(adaptable_experiments::io::abort_after_writes(
        writes,
    ));
    tracing::warn!("{FAULT_AFTER_WRITES}={writes}: this process aborts after that many writes");
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), ExperimentError> {
    match cli.command {
        Command::Linear(args) => run_linear(&args, cli.quiet),
        Command::Shallow(args) => run_shallow(&args, cli.quiet),
        Command::Convai2(command) => run_convai2(&command, cli.quiet),
        Command::Embed(args) => run_embed(&args),
        Command::Adapters(command) => run_adapters(&command),
        Command::Retrain(args) => run_retrain(&args, cli.quiet),
        Command::Finetune(args) => run_finetune(&args, cli.quiet),
        Command::Evaluate(args) => run_evaluate(&args),
    }
}

/// Clap renders a usage error over several lines (message, hints, usage); this joins the message
/// and its hints into the one line the tool prints, ending with where to find help.
pub fn usage_error_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(|line| line.trim().trim_start_matches("error: "))
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect();
    format!("error: {} (see `adaptable --help`)", parts.join(" "))
}
