//! The shallow-network suite (paper v2 §6.2): sweeps of `d` and `T`, their outputs and the report.

mod config;
mod output;
mod report;
mod runner;

pub use config::{SHALLOW_SWEEPS, ShallowExperimentConfig, parse_shallow_sweeps, shallow_sweep};
pub use output::{
    CurveRow, ShallowSweepResult, SummaryRecord, curve_label, median_and_range,
    write_shallow_outputs,
};
pub use report::{ShallowReportInput, render_shallow_report};
pub use runner::{
    SettingResult, ShallowRunOptions, run_or_reuse, run_setting, run_shallow_sweep, setting_id,
};
