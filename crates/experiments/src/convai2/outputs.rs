//! What the ConvAI2 suite writes: one JSON per run, `summary.csv`, `table.md` and a figure.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use adaptable_meta::{
    finetune::FinetuneOutcome,
    retrain::{EpochRecord, RetrainMethod, RetrainOutcome},
};
use serde::{Deserialize, Serialize};

use super::{model::ConvaiModel, runner::Convai2RunSummary};
use crate::{ExperimentError, io::write_atomic, plot::Series};

/// One retraining run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrainRecord {
    /// The method.
    pub method: RetrainMethod,
    /// The seed.
    pub seed: usize,
    /// The epoch whose model is kept (by mean held-out accuracy of the retraining tasks).
    pub best_epoch: usize,
    /// Per-epoch training loss and held-out accuracy of every retraining task.
    pub history: Vec<EpochRecord>,
    /// Trainable parameters during retraining.
    pub trainable_params: usize,
    /// Wall time in seconds (of the last invocation that worked on it).
    pub seconds: f64,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
}

impl RetrainRecord {
    /// A finished run.
    pub fn finished(
        method: RetrainMethod,
        seed: usize,
        outcome: &RetrainOutcome<ConvaiModel>,
        trainable_params: usize,
        seconds: f64,
    ) -> Self {
        Self {
            method,
            seed,
            best_epoch: outcome.best_epoch,
            history: outcome.history.clone(),
            trainable_params,
            seconds,
            failure: None,
        }
    }

    /// A failed run.
    pub fn failed(
        method: RetrainMethod,
        seed: usize,
        trainable_params: usize,
        failure: String,
    ) -> Self {
        Self {
            method,
            seed,
            best_epoch: 0,
            history: Vec::new(),
            trainable_params,
            seconds: 0.0,
            failure: Some(failure),
        }
    }
}

/// One fine-tuning run on one unseen persona.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneRecord {
    /// The retraining method of the base.
    pub method: RetrainMethod,
    /// The seed.
    pub seed: usize,
    /// Adapter rank (0: head only).
    pub rank: usize,
    /// Test task index.
    pub task: usize,
    /// Persona id (rank of the persona in its file, largest first).
    pub persona: usize,
    /// Held-out hits@1 before training and after every epoch.
    pub accuracy: Vec<f64>,
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Accuracy before training.
    #[serde(deserialize_with = "nan_from_null")]
    pub initial: f64,
    /// Accuracy after the last epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub last: f64,
    /// Best accuracy over the epochs (the paper's reported statistic).
    #[serde(deserialize_with = "nan_from_null")]
    pub best: f64,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Why the run failed, if it did.
    pub failure: Option<String>,
}

impl FinetuneRecord {
    /// A finished run.
    pub fn finished(
        method: RetrainMethod,
        seed: usize,
        rank: usize,
        task: usize,
        persona: usize,
        outcome: FinetuneOutcome,
        seconds: f64,
    ) -> Self {
        Self {
            method,
            seed,
            rank,
            task,
            persona,
            initial: outcome.initial(),
            last: outcome.last(),
            best: outcome.best(),
            accuracy: outcome.accuracy,
            train_loss: outcome.train_loss,
            trainable_params: outcome.trainable_params,
            seconds,
            failure: None,
        }
    }

    /// A failed run.
    pub fn failed(
        method: RetrainMethod,
        seed: usize,
        rank: usize,
        task: usize,
        persona: usize,
        failure: String,
    ) -> Self {
        Self {
            method,
            seed,
            rank,
            task,
            persona,
            accuracy: Vec::new(),
            train_loss: Vec::new(),
            initial: f64::NAN,
            last: f64::NAN,
            best: f64::NAN,
            trainable_params: 0,
            seconds: 0.0,
            failure: Some(failure),
        }
    }
}

/// JSON has no NaN: `serde_json` writes a failed run's missing accuracies as `null`, read back here
/// as NaN, so finished failures are reused on reruns like finished successes.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn column_label(method: RetrainMethod, retrain_rank: usize, rank: usize) -> String {
    let base = match method {
        RetrainMethod::Standard => "SR".to_string(),
        RetrainMethod::LoraMl => format!("LoRA-ML-{retrain_rank}"),
        RetrainMethod::LastLayerMl => "last-layer-ML".to_string(),
        RetrainMethod::Reptile => "Reptile".to_string(),
    };
    if rank == 0 {
        format!("{base} + head")
    } else {
        format!("{base} + LoRA r={rank}")
    }
}

/// Mean and standard error (std with ddof 1 over √n; absent for one value).
fn mean_se(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some((var / n).sqrt()))
}

fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".into();
    }
    match mean_se(values) {
        (m, Some(se)) => format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * se),
        (m, None) => format!("{:.2}", 100.0 * m),
    }
}

/// Writes `summary.csv`, `table.md`, `retrain.csv` and `accuracy.{png,svg}` into `dir`.
pub fn write_outputs(
    dir: &Path,
    summary: &Convai2RunSummary,
    retrain_rank: usize,
) -> Result<String, ExperimentError> {
    let ok: Vec<&FinetuneRecord> = summary
        .finetune
        .iter()
        .filter(|r| r.failure.is_none())
        .collect();
    let mut csv =
        String::from("method,seed,rank,task,persona,initial,last,best,trainable_params,seconds\n");
    for r in &summary.finetune {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{:.1}",
            r.method.id(),
            r.seed,
            r.rank,
            r.task,
            r.persona,
            r.initial,
            r.last,
            r.best,
            r.trainable_params,
            r.seconds
        );
    }
    write_atomic(&dir.join("summary.csv"), csv.as_bytes())?;

    let mut rcsv = String::from(
        "method,seed,epoch,train_loss,mean_heldout_accuracy,best_epoch,trainable_params,seconds,failure\n",
    );
    for r in &summary.retrain {
        for e in &r.history {
            let _ = writeln!(
                rcsv,
                "{},{},{},{},{},{},{},{:.1},",
                r.method.id(),
                r.seed,
                e.epoch,
                e.train_loss,
                e.mean_accuracy,
                r.best_epoch,
                r.trainable_params,
                r.seconds
            );
        }
        if let Some(f) = &r.failure {
            let _ = writeln!(
                rcsv,
                "{},{},,,,,{},,\"{}\"",
                r.method.id(),
                r.seed,
                r.trainable_params,
                f.replace('"', "'")
            );
        }
    }
    write_atomic(&dir.join("retrain.csv"), rcsv.as_bytes())?;

    // Columns: (rank, method) in rank order, SR first; rows: test tasks and the average.
    let mut columns: Vec<(usize, RetrainMethod)> = ok.iter().map(|r| (r.rank, r.method)).collect();
    columns.sort();
    columns.dedup();
    let mut md = String::new();
    for (stat, pick) in [
        (
            "best",
            (|r: &FinetuneRecord| r.best) as fn(&FinetuneRecord) -> f64,
        ),
        ("last", |r: &FinetuneRecord| r.last),
    ] {
        let _ = writeln!(
            md,
            "**Hits@1 (%) on the held-out dialogues of each unseen persona, {stat} over fine-tuning epochs**\n"
        );
        let header: Vec<String> = columns
            .iter()
            .map(|&(rank, m)| column_label(m, retrain_rank, rank))
            .collect();
        let _ = writeln!(md, "| test persona | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
        for (k, persona) in summary.test_personas.iter().enumerate() {
            let cells: Vec<String> = columns
                .iter()
                .map(|&(rank, m)| {
                    let v: Vec<f64> = ok
                        .iter()
                        .filter(|r| r.task == k && r.rank == rank && r.method == m)
                        .map(|r| pick(r))
                        .collect();
                    cell(&v)
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} (persona {persona}) | {} |",
                k + 1,
                cells.join(" | ")
            );
        }
        // The average: mean over tasks per seed, then mean ± s.e. over seeds.
        let cells: Vec<String> = columns
            .iter()
            .map(|&(rank, m)| {
                let mut per_seed: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for r in ok.iter().filter(|r| r.rank == rank && r.method == m) {
                    per_seed.entry(r.seed).or_default().push(pick(r));
                }
                let means: Vec<f64> = per_seed
                    .values()
                    .map(|v| v.iter().sum::<f64>() / v.len() as f64)
                    .collect();
                format!("**{}**", cell(&means))
            })
            .collect();
        let _ = writeln!(md, "| **average** | {} |\n", cells.join(" | "));
    }
    let failures: Vec<String> = summary
        .retrain
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|f| format!("- retraining {} seed {}: {f}", r.method.id(), r.seed))
        })
        .chain(summary.finetune.iter().filter_map(|r| {
            r.failure.as_ref().map(|f| {
                format!(
                    "- fine-tuning {} seed {} rank {} task {}: {f}",
                    r.method.id(),
                    r.seed,
                    r.rank,
                    r.task
                )
            })
        }))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "**Failed runs**\n\n{}\n", failures.join("\n"));
    }
    let _ = writeln!(
        md,
        "**Trainable parameters**\n\n| run | trainable parameters |\n|---|---|"
    );
    for r in &summary.retrain {
        let _ = writeln!(
            md,
            "| retraining {} (seed {}) | {} |",
            r.method.id(),
            r.seed,
            r.trainable_params
        );
    }
    let mut ft: Vec<(usize, usize)> = ok.iter().map(|r| (r.rank, r.trainable_params)).collect();
    ft.sort();
    ft.dedup();
    for (rank, n) in ft {
        let what = if rank == 0 {
            "fine-tuning, head only".to_string()
        } else {
            format!("fine-tuning, LoRA r={rank} + head")
        };
        let _ = writeln!(md, "| {what} | {n} |");
    }
    write_atomic(&dir.join("table.md"), md.as_bytes())?;
    for ext in ["svg", "png"] {
        draw_accuracy(&dir.join(format!("accuracy.{ext}")), &ok, retrain_rank)?;
    }
    Ok(md)
}

fn draw_accuracy(
    path: &Path,
    records: &[&FinetuneRecord],
    retrain_rank: usize,
) -> Result<(), ExperimentError> {
    let mut curves: BTreeMap<(usize, RetrainMethod), Vec<Vec<f64>>> = BTreeMap::new();
    for r in records {
        curves
            .entry((r.rank, r.method))
            .or_default()
            .push(r.accuracy.clone());
    }
    let series: Vec<Series> = curves
        .iter()
        .map(|(&(rank, method), runs)| {
            let epochs = runs.iter().map(Vec::len).min().unwrap_or(0);
            let mean = (0..epochs)
                .map(|e| {
                    (
                        e,
                        100.0 * runs.iter().map(|r| r[e]).sum::<f64>() / runs.len() as f64,
                    )
                })
                .collect();
            Series {
                label: column_label(method, retrain_rank, rank),
                points: mean,
                dashed: method == RetrainMethod::Standard,
            }
        })
        .collect();
    crate::plot::draw_lines(
        path,
        "Held-out hits@1 on unseen personas during fine-tuning (mean over tasks and seeds)",
        ("Fine-tuning epoch", "Hits@1 (%)"),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fine_tuning_record_reads_back() {
        let failed = FinetuneRecord::failed(RetrainMethod::LoraMl, 1, 8, 2, 12, "diverged".into());
        let text = serde_json::to_string(&failed).unwrap();
        let back: FinetuneRecord = serde_json::from_str(&text).unwrap();
        assert!(back.best.is_nan() && back.initial.is_nan() && back.last.is_nan());
        assert_eq!(back.failure.as_deref(), Some("diverged"));
        assert_eq!(
            (back.seed, back.rank, back.task, back.persona),
            (1, 8, 2, 12)
        );
    }
}
