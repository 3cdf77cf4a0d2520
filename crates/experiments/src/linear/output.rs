//! What a sweep produces and how it is written: `curves.csv`, `summary.json`, `vary-<sweep>.{png,svg}`.

use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use super::Sweep;
use crate::{ExperimentError, io::write_atomic, plot};

/// A retraining method of the linear suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Method {
    /// Standard retraining.
    #[serde(rename = "sr")]
    Standard,
    /// LoRA-ML retraining.
    #[serde(rename = "lora-ml")]
    LoraMl,
}

impl Method {
    /// Both methods, SR first.
    pub const ALL: [Method; 2] = [Method::Standard, Method::LoraMl];

    /// The identifier used in files (`sr`, `lora-ml`).
    pub fn id(self) -> &'static str {
        match self {
            Method::Standard => "sr",
            Method::LoraMl => "lora-ml",
        }
    }

    /// The label used in figures and tables (`SR`, `LoRA-ML`).
    pub fn label(self) -> &'static str {
        match self {
            Method::Standard => "SR",
            Method::LoraMl => "LoRA-ML",
        }
    }
}

/// The outcome of one (sweep value, run, method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// The sweep's symbol.
    pub sweep: String,
    /// The swept value.
    pub value: f64,
    /// The run index.
    pub run: usize,
    /// `sr` or `lora-ml`.
    pub method: Method,
    /// `‖Â − A*‖²_F` after retraining.
    pub dist_to_a_star: f64,
    /// `‖Â − (A* + mean_t U*_t U*_tᵀ)‖²_F` after retraining (the SR limit of Theorem 1).
    pub dist_to_sr_closed_form: f64,
    /// The retraining objective at the end (mean task loss for SR, summed task loss for LoRA-ML).
    pub final_retrain_loss: f64,
    /// `‖Â + U Vᵀ − A*_{T+1}‖²_F` after fine-tuning.
    pub final_population_loss: f64,
    /// The paper's plotted metric after fine-tuning: the noiseless squared error summed over the `n`
    /// fine-tuning inputs.
    pub final_paper_loss: f64,
    /// The paper's metric before fine-tuning.
    pub initial_paper_loss: f64,
    /// Rank of the fine-tuning adapter.
    pub finetune_rank: usize,
    /// Fine-tuning steps.
    pub finetune_steps: usize,
    /// `population` or `finite` retraining objective.
    pub objective: String,
}

/// One point of an aggregated fine-tuning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Fine-tuning iteration.
    pub iteration: usize,
    /// The method.
    pub method: Method,
    /// The swept value.
    pub value: f64,
    /// Mean of the paper's test-task loss over runs.
    pub mean: f64,
    /// Minimum over runs.
    pub min: f64,
    /// Maximum over runs.
    pub max: f64,
}

/// Everything one sweep produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepResult {
    /// Which sweep.
    pub sweep: Sweep,
    /// One record per (value, run, method).
    pub summary: Vec<SummaryRecord>,
    /// Aggregated curves, by value then method then iteration.
    pub curves: Vec<CurveRow>,
}

/// Writes `curves.csv`, `summary.json` and the figure `vary-<sweep>.{png,svg}` into `dir`, each
/// atomically, and returns their names. They become a finished sweep only when a manifest naming
/// them with their digests is written after them (`adaptable linear` does), so a crash between two of
/// these writes never passes a mix of two runs off as a result.
pub fn write_sweep_outputs(
    dir: &Path,
    result: &SweepResult,
) -> Result<Vec<String>, ExperimentError> {
    let mut csv = String::from("iteration,method,value,mean,min,max\n");
    for row in &result.curves {
        let _ = writeln!(
            csv,
            "{},{},{},{:e},{:e},{:e}",
            row.iteration,
            row.method.id(),
            row.value,
            row.mean,
            row.min,
            row.max
        );
    }
    write_atomic(&dir.join("curves.csv"), csv.as_bytes())?;
    let stem = format!("vary-{}", result.sweep.symbol());
    let (svg, png) = (format!("{stem}.svg"), format!("{stem}.png"));
    plot::draw_sweep_figure(&dir.join(&svg), result)?;
    plot::draw_sweep_figure(&dir.join(&png), result)?;
    let json =
        serde_json::to_string_pretty(&result.summary).map_err(|e| ExperimentError::Results {
            path: dir.join("summary.json"),
            message: e.to_string(),
        })?;
    write_atomic(&dir.join("summary.json"), json.as_bytes())?;
    Ok(vec!["curves.csv".into(), svg, png, "summary.json".into()])
}
