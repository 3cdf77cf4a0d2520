//! The `adaptable` command-line tool.

use std::process::ExitCode;

use adaptable_cli::{Cli, init_tracing, install_fault_injection, run, usage_error_line};
use clap::Parser;

// The tensor backends allocate and free activation-sized buffers at every operation; the system
// allocator hands large ones back to the OS each time, and the page faults of re-touching them
// cost 10–25 % of the encoder's time (docs/benchmarks.md). mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` arrive here too; clap prints those itself.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{}", usage_error_line(&err));
            return ExitCode::from(2);
        }
    };
    init_tracing(cli.verbose, cli.quiet);
    match install_fault_injection().and_then(|()| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
