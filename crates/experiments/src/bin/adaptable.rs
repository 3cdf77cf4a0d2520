//! The `adaptable` command-line tool.

use std::process::ExitCode;

use adaptable_experiments::cli::{Cli, init_tracing, run};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
