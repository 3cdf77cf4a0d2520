//! The linear theory suite: sweeps of the paper's Figure 1, their outputs and the report.

mod config;
mod output;
mod report;
mod runner;
mod sweep;

pub(crate) use config::describe_toml_error;
pub use config::{DEFAULT_CONFIG, FineTuneSection, LinearExperimentConfig, SweepSpec};
pub use output::{CurveRow, Method, SummaryRecord, SweepResult, write_sweep_outputs};
pub use report::{LinearReportInput, render_linear_report};
pub use runner::{RunOptions, run_sweep, run_sweep_value};
pub use sweep::Sweep;
