//! `adaptable convai2 …`: inspect the ConvAI2 persona tasks.

use std::path::PathBuf;

use adaptable_tasks::convai2::{SplitConfig, stats_for_path};
use clap::{Args, Subcommand};

use crate::ExperimentError;

/// ConvAI2 subcommands.
#[derive(Debug, Subcommand)]
pub enum Convai2Command {
    /// Episodes, examples, persona clusters and the retraining/test task split.
    Stats(Convai2StatsArgs),
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
pub fn run_convai2(command: &Convai2Command) -> Result<(), ExperimentError> {
    match command {
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
