//! What the shallow suite produces and how it is written: `curves.csv`, `summary.json` and
//! `vary-<sweep>.{png,svg}` per sweep.

use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    ExperimentError,
    io::{write_atomic, write_json},
    linear::{Method, Sweep},
    plot::{BandCurve, draw_band_figure},
};

/// The outcome of one (sweep value, trial, method, fine-tuning rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// The sweep's symbol (`d` or `T`).
    pub sweep: String,
    /// The swept value.
    pub value: usize,
    /// The trial index.
    pub trial: usize,
    /// `sr` or `lora-ml`.
    pub method: Method,
    /// Rank of the fine-tuning adapter.
    pub finetune_rank: usize,
    /// The test metric after fine-tuning: MSE against the noiseless targets on the `n`
    /// fine-tuning inputs.
    pub final_test_loss: f64,
    /// The test metric before fine-tuning (the retrained network alone).
    pub initial_test_loss: f64,
    /// The retraining objective at the end: the task MSEs summed over the `T` tasks (LoRA-ML
    /// through each task's adapter).
    pub final_retrain_loss: f64,
    /// The fine-tuning training MSE (noisy targets) at the end.
    pub final_finetune_train_loss: f64,
}

/// One point of a fine-tuning curve aggregated over trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Fine-tuning epoch (0 = before the first step).
    pub epoch: usize,
    /// The method.
    pub method: Method,
    /// The swept value.
    pub value: usize,
    /// Rank of the fine-tuning adapter.
    pub finetune_rank: usize,
    /// Median of the test metric over trials.
    pub median: f64,
    /// Lower end of the central range (the 4th of 10 sorted trials).
    pub low: f64,
    /// Upper end of the central range (the 8th of 10 sorted trials).
    pub high: f64,
}

/// Everything one sweep produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShallowSweepResult {
    /// Which sweep.
    pub sweep: Sweep,
    /// One record per (value, trial, method, rank).
    pub summary: Vec<SummaryRecord>,
    /// Aggregated curves, by value, method, rank and epoch.
    pub curves: Vec<CurveRow>,
}

/// The median and the central range (the authors' sorted 4th and 8th of 10 trials; in general
/// the values at ⌊0.3 m⌋ and ⌊0.7 m⌋ of `m` sorted trials) of `values`.
pub fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len();
    if m == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if m % 2 == 1 {
        v[m / 2]
    } else {
        0.5 * (v[m / 2 - 1] + v[m / 2])
    };
    (median, v[(3 * m) / 10], v[((7 * m) / 10).min(m - 1)])
}

/// The legend label of a curve (`T=2, LoRA-ML` or `T=2 (rank 3), LoRA-ML` for the extra rank).
pub fn curve_label(sweep: Sweep, value: usize, method: Method, rank: usize, base: usize) -> String {
    if rank == base {
        format!("{}={value}, {}", sweep.symbol(), method.label())
    } else {
        format!(
            "{}={value} (rank {rank}), {}",
            sweep.symbol(),
            method.label()
        )
    }
}

/// Writes `curves.csv`, the figures and `summary.json` (last, so that its presence marks a
/// complete sweep) into `dir`, each atomically. `base_rank` is the task rank `k`.
pub fn write_shallow_outputs(
    dir: &Path,
    result: &ShallowSweepResult,
    base_rank: usize,
) -> Result<(), ExperimentError> {
    let mut csv = String::from("epoch,method,value,finetune_rank,median,low,high\n");
    for row in &result.curves {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:e},{:e},{:e}",
            row.epoch,
            row.method.id(),
            row.value,
            row.finetune_rank,
            row.median,
            row.low,
            row.high
        );
    }
    write_atomic(&dir.join("curves.csv"), csv.as_bytes())?;
    let mut keys: Vec<(usize, usize)> = result
        .curves
        .iter()
        .map(|r| (r.value, r.finetune_rank))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut values: Vec<usize> = keys.iter().map(|k| k.0).collect();
    values.dedup();
    let mut curves = Vec::new();
    for (colour, &(value, rank)) in keys.iter().enumerate() {
        for method in Method::ALL {
            let points: Vec<(usize, f64, f64, f64)> = result
                .curves
                .iter()
                .filter(|r| r.value == value && r.finetune_rank == rank && r.method == method)
                .map(|r| (r.epoch, r.median, r.low, r.high))
                .collect();
            curves.push(BandCurve {
                label: curve_label(result.sweep, value, method, rank, base_rank),
                colour,
                dashed: method == Method::Standard,
                points,
            });
        }
    }
    let title = format!(
        "Shallow network: fine-tuning on an unseen task, varying {}",
        result.sweep.description()
    );
    let stem = format!("vary-{}", result.sweep.symbol());
    for ext in ["svg", "png"] {
        draw_band_figure(
            &dir.join(format!("{stem}.{ext}")),
            &title,
            ("Epoch", "Test Task Loss (median, central range)"),
            &curves,
        )?;
    }
    write_json(&dir.join("summary.json"), &result.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn central_range_is_the_fourth_and_eighth_of_ten() {
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(median_and_range(&v), (5.5, 4.0, 8.0));
        assert_eq!(median_and_range(&[2.0]), (2.0, 2.0, 2.0));
        assert_eq!(median_and_range(&[3.0, 1.0]), (2.0, 1.0, 3.0));
    }
}
