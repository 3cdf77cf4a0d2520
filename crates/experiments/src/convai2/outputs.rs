//! What the ConvAI2 suite writes: one JSON per run, then `summary.csv`, `retrain.csv` and
//! `finetune_epochs.csv`, from which `table.md` and the figures are computed (so that the committed
//! CSVs reproduce the report: `adaptable convai2 report --dir …`).

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use adaptable_meta::{
    finetune::{FinetuneMethod, FinetuneOutcome},
    retrain::{EpochRecord, RetrainMethod, RetrainOutcome},
};
use serde::{Deserialize, Serialize};

use super::{
    model::ConvaiModel,
    paired::{Cell, Moments, PairedDifference},
    runner::Convai2RunSummary,
};
use crate::{ExperimentError, io::write_atomic, plot::Series};

/// One retraining run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrainRecord {
    /// The method.
    pub method: RetrainMethod,
    /// LoRA-ML's task-adapter rank (0 for methods without adapters).
    #[serde(default)]
    pub retrain_rank: usize,
    /// The seed.
    pub seed: usize,
    /// Candidates per training example (K: the gold and `K − 1` negatives).
    #[serde(default)]
    pub candidates: usize,
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

/// What identifies a retraining run: method, LoRA-ML rank, seed, training candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrainKey {
    /// The method.
    pub method: RetrainMethod,
    /// LoRA-ML's adapter rank (0 for methods without adapters).
    pub retrain_rank: usize,
    /// The seed.
    pub seed: usize,
    /// Candidates per training example.
    pub candidates: usize,
}

impl RetrainRecord {
    /// A finished run.
    pub fn finished(
        key: RetrainKey,
        outcome: &RetrainOutcome<ConvaiModel>,
        trainable_params: usize,
        seconds: f64,
    ) -> Self {
        Self {
            method: key.method,
            retrain_rank: key.retrain_rank,
            seed: key.seed,
            candidates: key.candidates,
            best_epoch: outcome.best_epoch,
            history: outcome.history.clone(),
            trainable_params,
            seconds,
            failure: None,
        }
    }

    /// A failed run.
    pub fn failed(key: RetrainKey, trainable_params: usize, failure: String) -> Self {
        Self {
            method: key.method,
            retrain_rank: key.retrain_rank,
            seed: key.seed,
            candidates: key.candidates,
            best_epoch: 0,
            history: Vec::new(),
            trainable_params,
            seconds: 0.0,
            failure: Some(failure),
        }
    }
}

fn lora() -> FinetuneMethod {
    FinetuneMethod::Lora
}

/// One fine-tuning run on one unseen persona.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneRecord {
    /// The retraining method of the base.
    pub method: RetrainMethod,
    /// LoRA-ML's retraining rank of the base (0 for methods without adapters).
    #[serde(default)]
    pub retrain_rank: usize,
    /// What was fine-tuned (LoRA adapter + head, or the head only).
    #[serde(default = "lora")]
    pub finetune: FinetuneMethod,
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

/// What identifies a fine-tuning run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinetuneKey {
    /// The base's retraining method.
    pub method: RetrainMethod,
    /// The base's LoRA-ML rank (0 for methods without adapters).
    pub retrain_rank: usize,
    /// LoRA (adapter + head) or head only.
    pub finetune: FinetuneMethod,
    /// The seed.
    pub seed: usize,
    /// Adapter rank (0: head only).
    pub rank: usize,
    /// Test task index.
    pub task: usize,
    /// Persona id.
    pub persona: usize,
}

impl FinetuneRecord {
    /// A finished run.
    pub fn finished(key: FinetuneKey, outcome: FinetuneOutcome, seconds: f64) -> Self {
        Self {
            initial: outcome.initial(),
            last: outcome.last(),
            best: outcome.best(),
            accuracy: outcome.accuracy,
            train_loss: outcome.train_loss,
            trainable_params: outcome.trainable_params,
            seconds,
            failure: None,
            ..Self::failed(key, String::new())
        }
    }

    /// A failed run.
    pub fn failed(key: FinetuneKey, failure: String) -> Self {
        Self {
            method: key.method,
            retrain_rank: key.retrain_rank,
            finetune: key.finetune,
            seed: key.seed,
            rank: key.rank,
            task: key.task,
            persona: key.persona,
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

/// The name a fine-tuning kind has in files and tables (`lora`, `head`).
pub fn finetune_id(kind: FinetuneMethod) -> &'static str {
    match kind {
        FinetuneMethod::Lora => "lora",
        FinetuneMethod::LastLayer => "head",
    }
}

fn parse_finetune(id: &str) -> Option<FinetuneMethod> {
    match id {
        "lora" => Some(FinetuneMethod::Lora),
        "head" => Some(FinetuneMethod::LastLayer),
        _ => None,
    }
}

fn parse_method(id: &str) -> Option<RetrainMethod> {
    RetrainMethod::ALL.into_iter().find(|m| m.id() == id)
}

/// Free text for a CSV cell: no separators, quotes or line breaks.
fn csv_text(text: &str) -> String {
    text.replace([',', '\n', '\r'], ";").replace('"', "'")
}

/// The table label of a retraining method.
fn method_label(method: RetrainMethod, retrain_rank: usize) -> String {
    match method {
        RetrainMethod::Standard => "SR".to_string(),
        RetrainMethod::LoraMl => format!("LoRA-ML-{retrain_rank}"),
        RetrainMethod::LastLayerMl => "last-layer-ML".to_string(),
        RetrainMethod::Reptile => "Reptile".to_string(),
    }
}

/// What a fine-tuning did.
fn finetune_label(kind: FinetuneMethod, rank: usize) -> String {
    match kind {
        FinetuneMethod::LastLayer => "head".to_string(),
        FinetuneMethod::Lora => format!("LoRA r={rank}"),
    }
}

/// One row of `summary.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Retraining method.
    pub method: RetrainMethod,
    /// LoRA-ML's retraining rank (0 otherwise).
    pub retrain_rank: usize,
    /// Fine-tuning kind.
    pub finetune: FinetuneMethod,
    /// Fine-tuning adapter rank (0 for head).
    pub rank: usize,
    /// Seed.
    pub seed: usize,
    /// Test task index.
    pub task: usize,
    /// Persona id.
    pub persona: usize,
    /// Accuracy before fine-tuning (NaN for a failed run).
    pub initial: f64,
    /// Accuracy after the last epoch.
    pub last: f64,
    /// Best accuracy over the epochs.
    pub best: f64,
    /// Trainable parameters of the fine-tuning.
    pub trainable_params: usize,
    /// Whether the run failed.
    pub failed: bool,
}

impl SummaryRow {
    fn column(&self) -> Column {
        Column {
            finetune: self.finetune,
            rank: self.rank,
            method: self.method,
            retrain_rank: self.retrain_rank,
        }
    }
}

/// A table column: one retraining method (and rank) with one fine-tuning; the order puts LoRA
/// before head, ranks ascending, SR first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    finetune: FinetuneMethod,
    rank: usize,
    method: RetrainMethod,
    retrain_rank: usize,
}

impl Column {
    fn label(self) -> String {
        format!(
            "{} + {}",
            method_label(self.method, self.retrain_rank),
            finetune_label(self.finetune, self.rank)
        )
    }
}

/// The header of `summary.csv`.
pub const SUMMARY_HEADER: &str = "method,retrain_rank,finetune,rank,seed,task,persona,initial,last,best,trainable_params,seconds,failure";

/// The header of `retrain.csv`.
pub const RETRAIN_HEADER: &str = "method,retrain_rank,seed,epoch,train_loss,mean_heldout_accuracy,candidates,best_epoch,trainable_params,seconds,failure";

/// The header of `finetune_epochs.csv`.
pub const FINETUNE_EPOCHS_HEADER: &str =
    "method,retrain_rank,finetune,rank,seed,task,epoch,heldout_accuracy,train_loss";

/// Writes the three CSVs of `summary` into `dir`.
pub fn write_csvs(dir: &Path, summary: &Convai2RunSummary) -> Result<(), ExperimentError> {
    let mut csv = format!("{SUMMARY_HEADER}\n");
    let mut epochs = format!("{FINETUNE_EPOCHS_HEADER}\n");
    for r in &summary.finetune {
        let run = format!(
            "{},{},{},{},{},{}",
            r.method.id(),
            r.retrain_rank,
            finetune_id(r.finetune),
            r.rank,
            r.seed,
            r.task
        );
        let _ = writeln!(
            csv,
            "{run},{},{},{},{},{},{:.1},{}",
            r.persona,
            r.initial,
            r.last,
            r.best,
            r.trainable_params,
            r.seconds,
            r.failure.as_deref().map(csv_text).unwrap_or_default()
        );
        for (epoch, accuracy) in r.accuracy.iter().enumerate() {
            let loss = epoch
                .checked_sub(1)
                .and_then(|e| r.train_loss.get(e))
                .map(f64::to_string)
                .unwrap_or_default();
            let _ = writeln!(epochs, "{run},{epoch},{accuracy},{loss}");
        }
    }
    write_atomic(&dir.join("summary.csv"), csv.as_bytes())?;
    write_atomic(&dir.join("finetune_epochs.csv"), epochs.as_bytes())?;

    let mut rcsv = format!("{RETRAIN_HEADER}\n");
    for r in &summary.retrain {
        for e in &r.history {
            let _ = writeln!(
                rcsv,
                "{},{},{},{},{},{},{},{},{},{:.1},",
                r.method.id(),
                r.retrain_rank,
                r.seed,
                e.epoch,
                e.train_loss,
                e.mean_accuracy,
                r.candidates,
                r.best_epoch,
                r.trainable_params,
                r.seconds
            );
        }
        if let Some(f) = &r.failure {
            let _ = writeln!(
                rcsv,
                "{},{},{},,,,{},,{},,{}",
                r.method.id(),
                r.retrain_rank,
                r.seed,
                r.candidates,
                r.trainable_params,
                csv_text(f)
            );
        }
    }
    write_atomic(&dir.join("retrain.csv"), rcsv.as_bytes())
}

/// A parsed CSV: header names and rows of cells.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text.lines();
        let header = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        Ok(Self { header, rows })
    }

    /// A typed accessor for column `name` (an error names the file, line and column).
    fn get<'a, T: std::str::FromStr>(
        &'a self,
        path: &'a Path,
        name: &'a str,
    ) -> Result<impl Fn(usize) -> Result<T, ExperimentError> + 'a, ExperimentError> {
        let bad = move |message: String| ExperimentError::Results {
            path: path.to_path_buf(),
            message,
        };
        let col = self
            .header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column `{name}`")))?;
        Ok(move |row: usize| {
            let cell = self.rows[row].get(col).map(String::as_str).unwrap_or("");
            cell.parse::<T>()
                .map_err(|_| bad(format!("line {}: column `{name}`: `{cell}`", row + 2)))
        })
    }
}

/// Reads `summary.csv`.
pub fn read_summary(path: &Path) -> Result<Vec<SummaryRow>, ExperimentError> {
    let csv = Csv::read(path)?;
    let text = csv.get::<String>(path, "method")?;
    let finetune = csv.get::<String>(path, "finetune")?;
    let failure = csv.get::<String>(path, "failure")?;
    let usize_of = |name| csv.get::<usize>(path, name);
    let f64_of = |name| csv.get::<f64>(path, name);
    let (retrain_rank, rank, seed, task, persona, params) = (
        usize_of("retrain_rank")?,
        usize_of("rank")?,
        usize_of("seed")?,
        usize_of("task")?,
        usize_of("persona")?,
        usize_of("trainable_params")?,
    );
    let (initial, last, best) = (f64_of("initial")?, f64_of("last")?, f64_of("best")?);
    let bad = |row: usize, what: String| ExperimentError::Results {
        path: path.to_path_buf(),
        message: format!("line {}: {what}", row + 2),
    };
    (0..csv.rows.len())
        .map(|i| {
            let method = text(i)?;
            let kind = finetune(i)?;
            Ok(SummaryRow {
                method: parse_method(&method)
                    .ok_or_else(|| bad(i, format!("unknown method `{method}`")))?,
                retrain_rank: retrain_rank(i)?,
                finetune: parse_finetune(&kind)
                    .ok_or_else(|| bad(i, format!("unknown fine-tuning `{kind}`")))?,
                rank: rank(i)?,
                seed: seed(i)?,
                task: task(i)?,
                persona: persona(i)?,
                initial: initial(i)?,
                last: last(i)?,
                best: best(i)?,
                trainable_params: params(i)?,
                failed: !failure(i)?.is_empty(),
            })
        })
        .collect()
}

/// One epoch of a retraining run, from `retrain.csv`.
#[derive(Debug, Clone, PartialEq)]
struct RetrainRow {
    method: RetrainMethod,
    retrain_rank: usize,
    seed: usize,
    epoch: usize,
    train_loss: f64,
    accuracy: f64,
    candidates: usize,
}

fn read_retrain(path: &Path) -> Result<Vec<RetrainRow>, ExperimentError> {
    let csv = Csv::read(path)?;
    let method = csv.get::<String>(path, "method")?;
    let failure = csv.get::<String>(path, "failure")?;
    let (retrain_rank, seed, epoch, candidates) = (
        csv.get::<usize>(path, "retrain_rank")?,
        csv.get::<usize>(path, "seed")?,
        csv.get::<usize>(path, "epoch")?,
        csv.get::<usize>(path, "candidates")?,
    );
    let (loss, accuracy) = (
        csv.get::<f64>(path, "train_loss")?,
        csv.get::<f64>(path, "mean_heldout_accuracy")?,
    );
    let mut rows = Vec::new();
    for i in 0..csv.rows.len() {
        if !failure(i)?.is_empty() {
            continue;
        }
        let id = method(i)?;
        rows.push(RetrainRow {
            method: parse_method(&id).ok_or_else(|| ExperimentError::Results {
                path: path.to_path_buf(),
                message: format!("line {}: unknown method `{id}`", i + 2),
            })?,
            retrain_rank: retrain_rank(i)?,
            seed: seed(i)?,
            epoch: epoch(i)?,
            train_loss: loss(i)?,
            accuracy: accuracy(i)?,
            candidates: candidates(i)?,
        });
    }
    Ok(rows)
}

/// One fine-tuning epoch, from `finetune_epochs.csv`.
struct EpochRow {
    column: Column,
    epoch: usize,
    accuracy: f64,
}

fn read_finetune_epochs(path: &Path) -> Result<Vec<EpochRow>, ExperimentError> {
    let csv = Csv::read(path)?;
    let method = csv.get::<String>(path, "method")?;
    let finetune = csv.get::<String>(path, "finetune")?;
    let (retrain_rank, rank, epoch) = (
        csv.get::<usize>(path, "retrain_rank")?,
        csv.get::<usize>(path, "rank")?,
        csv.get::<usize>(path, "epoch")?,
    );
    let accuracy = csv.get::<f64>(path, "heldout_accuracy")?;
    (0..csv.rows.len())
        .map(|i| {
            let (m, f) = (method(i)?, finetune(i)?);
            let bad = || ExperimentError::Results {
                path: path.to_path_buf(),
                message: format!("line {}: unknown method `{m}` or fine-tuning `{f}`", i + 2),
            };
            Ok(EpochRow {
                column: Column {
                    finetune: parse_finetune(&f).ok_or_else(bad)?,
                    rank: rank(i)?,
                    method: parse_method(&m).ok_or_else(bad)?,
                    retrain_rank: retrain_rank(i)?,
                },
                epoch: epoch(i)?,
                accuracy: accuracy(i)?,
            })
        })
        .collect()
}

fn pct(m: &Moments) -> String {
    match m.se() {
        Some(se) => format!("{:.2} ± {:.2}", 100.0 * m.mean, 100.0 * se),
        None => format!("{:.2}", 100.0 * m.mean),
    }
}

fn interval(ci: Option<(f64, f64)>) -> String {
    ci.map_or("—".into(), |(lo, hi)| {
        format!("[{:+.2}, {:+.2}]", 100.0 * lo, 100.0 * hi)
    })
}

/// The loss of predicting the label prior of the 2-way objective with K candidates per example (one
/// gold row, K − 1 negatives): H(1/K) in nats.
pub fn prior_loss(candidates: usize) -> f64 {
    let p = 1.0 / candidates.max(2) as f64;
    -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
}

/// Reads the CSVs in `dir` and writes `table.md` and the figures (`accuracy`, `retrain_loss`,
/// `retrain_accuracy`, each `.svg` and `.png`); returns the table.
pub fn write_report(dir: &Path, notes: &str) -> Result<String, ExperimentError> {
    let rows = read_summary(&dir.join("summary.csv"))?;
    let retrain = read_retrain(&dir.join("retrain.csv"))?;
    let epochs = read_finetune_epochs(&dir.join("finetune_epochs.csv"))?;
    let ok: Vec<&SummaryRow> = rows.iter().filter(|r| !r.failed).collect();
    let mut columns: Vec<Column> = ok.iter().map(|r| r.column()).collect();
    columns.sort();
    columns.dedup();
    let mut tasks: Vec<(usize, usize)> = ok.iter().map(|r| (r.task, r.persona)).collect();
    tasks.sort_unstable();
    tasks.dedup();
    let mut md = String::new();
    if !notes.is_empty() {
        let _ = writeln!(md, "{notes}\n");
    }
    let stats: [Statistic; 2] = [
        (
            "best",
            "best over fine-tuning epochs (the paper's statistic; it selects the epoch on the test dialogues themselves)",
            |r| r.best,
        ),
        ("last", "after the last fine-tuning epoch", |r| r.last),
    ];
    for (_, what, pick) in stats {
        let _ = writeln!(
            md,
            "**Hits@1 (%) on the held-out dialogues of each unseen persona, {what}: mean ± s.e. over seeds**\n"
        );
        let header: Vec<String> = columns.iter().map(|c| c.label()).collect();
        let _ = writeln!(md, "| test persona | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
        for &(task, persona) in &tasks {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    let v: Vec<f64> = ok
                        .iter()
                        .filter(|r| r.task == task && r.column() == *c)
                        .map(|r| pick(r))
                        .collect();
                    Moments::of(&v).as_ref().map_or("—".into(), pct)
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} (persona {persona}) | {} |",
                task + 1,
                cells.join(" | ")
            );
        }
        // The average: mean over tasks per seed, then mean ± s.e. over seeds.
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let mut per_seed: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for r in ok.iter().filter(|r| r.column() == *c) {
                    per_seed.entry(r.seed).or_default().push(pick(r));
                }
                let means: Vec<f64> = per_seed
                    .values()
                    .map(|v| v.iter().sum::<f64>() / v.len() as f64)
                    .collect();
                Moments::of(&means)
                    .as_ref()
                    .map_or("—".into(), |m| format!("**{}**", pct(m)))
            })
            .collect();
        let _ = writeln!(md, "| **average** | {} |\n", cells.join(" | "));
    }
    md.push_str(&paired_table(&ok, &columns, &stats));
    md.push_str(&retrain_table(&retrain));
    let failures: Vec<String> = rows
        .iter()
        .filter(|r| r.failed)
        .map(|r| {
            format!(
                "- fine-tuning {} seed {} {} task {}",
                method_label(r.method, r.retrain_rank),
                r.seed,
                finetune_label(r.finetune, r.rank),
                r.task
            )
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(
            md,
            "**Failed runs** (reasons in summary.csv and retrain.csv)\n\n{}\n",
            failures.join("\n")
        );
    }
    let mut params: Vec<(Column, usize)> = ok
        .iter()
        .map(|r| (r.column(), r.trainable_params))
        .collect();
    params.sort();
    params.dedup();
    let _ = writeln!(
        md,
        "**Trainable parameters of fine-tuning**\n\n| run | trainable parameters |\n|---|---|"
    );
    for (c, n) in params {
        let _ = writeln!(md, "| {} | {n} |", c.label());
    }
    write_atomic(&dir.join("table.md"), md.as_bytes())?;
    for ext in ["svg", "png"] {
        draw_finetune_curves(&dir.join(format!("accuracy.{ext}")), &epochs)?;
        draw_retrain_curves(dir, ext, &retrain)?;
    }
    Ok(md)
}

/// A reported statistic: its name, its description and how a row gives it.
type Statistic = (&'static str, &'static str, fn(&SummaryRow) -> f64);

/// Per seed, each epoch's (epoch, train loss, held-out accuracy in %).
type SeedCurves = BTreeMap<usize, Vec<(usize, f64, f64)>>;

/// Paired differences of every method against SR, per fine-tuning column.
fn paired_table(ok: &[&SummaryRow], columns: &[Column], stats: &[Statistic]) -> String {
    let mut md = String::new();
    let pairs: Vec<(Column, Column)> = columns
        .iter()
        .filter(|c| c.method != RetrainMethod::Standard)
        .filter_map(|&c| {
            let baseline = columns.iter().find(|b| {
                b.method == RetrainMethod::Standard && b.finetune == c.finetune && b.rank == c.rank
            })?;
            Some((c, *baseline))
        })
        .collect();
    if pairs.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "**Paired difference (method − SR) in hits@1, percentage points, over (test persona, seed) cells**\n\n\
         Each cell fine-tunes both bases on the same persona with the same seed (same data order and \
         initialisation). 95 % CIs are paired t intervals: over cells (n = cells), and over the per-seed mean \
         differences (n = seeds; the cells of a seed share one retrained base, so this one is the conservative \
         interval). MDE: the smallest true difference a two-sided 5 % paired t test over cells detects with 80 % \
         power at the measured spread.\n"
    );
    let _ = writeln!(
        md,
        "| comparison | statistic | cells | mean diff | 95 % CI (cells) | 95 % CI (seeds) | wins / losses / ties | MDE |\n|---|---|---|---|---|---|---|---|"
    );
    for (treated, baseline) in pairs {
        for (name, _, pick) in stats {
            let mut cells = Vec::new();
            for t in ok.iter().filter(|r| r.column() == treated) {
                if let Some(b) = ok
                    .iter()
                    .find(|b| b.column() == baseline && b.task == t.task && b.seed == t.seed)
                {
                    cells.push(Cell {
                        task: t.task,
                        seed: t.seed,
                        treated: pick(t),
                        baseline: pick(b),
                    });
                }
            }
            let Some(d) = PairedDifference::of(&cells) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} vs {} | {name} | {} | {:+.2} | {} | {} | {} / {} / {} | {} |",
                method_label(treated.method, treated.retrain_rank),
                baseline.label(),
                d.cells.n,
                100.0 * d.cells.mean,
                interval(d.cell_interval()),
                interval(d.seed_interval()),
                d.wins,
                d.losses,
                d.ties,
                d.cells
                    .minimal_detectable_effect()
                    .map_or("—".into(), |m| format!("{:.2}", 100.0 * m)),
            );
        }
    }
    md.push('\n');
    md
}

/// Final retraining loss per run against the label-prior loss, and the epoch kept.
fn retrain_table(rows: &[RetrainRow]) -> String {
    let mut runs: BTreeMap<(RetrainMethod, usize, usize), Vec<&RetrainRow>> = BTreeMap::new();
    for r in rows {
        runs.entry((r.method, r.retrain_rank, r.seed))
            .or_default()
            .push(r);
    }
    let mut md = String::new();
    if runs.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "**Retraining: final train loss against the label prior H(1/K), and held-out accuracy of the retraining personas**\n\n\
         | method | seed | K | epochs | final train loss | H(1/K) | loss / H(1/K) | held-out acc. first → last epoch (%) | best epoch |\n|---|---|---|---|---|---|---|---|---|"
    );
    for ((method, retrain_rank, seed), epochs) in runs {
        let (Some(first), Some(last)) = (epochs.first(), epochs.last()) else {
            continue;
        };
        let best = epochs
            .iter()
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy))
            .map_or(0, |r| r.epoch);
        let prior = prior_loss(last.candidates);
        let _ = writeln!(
            md,
            "| {} | {seed} | {} | {} | {:.4} | {prior:.4} | {:.3} | {:.2} → {:.2} | {best} |",
            method_label(method, retrain_rank),
            last.candidates,
            epochs.len(),
            last.train_loss,
            last.train_loss / prior,
            100.0 * first.accuracy,
            100.0 * last.accuracy,
        );
    }
    md.push('\n');
    md
}

/// The mean of per-run curves at each x where every run has a value.
fn mean_curve(runs: &[Vec<(usize, f64)>]) -> Vec<(usize, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|&(x, _)| x)
        .filter_map(|x| {
            let ys: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|p| p.0 == x).map(|p| p.1))
                .collect();
            (ys.len() == runs.len()).then(|| (x, ys.iter().sum::<f64>() / ys.len() as f64))
        })
        .collect()
}

fn draw_finetune_curves(path: &Path, rows: &[EpochRow]) -> Result<(), ExperimentError> {
    let mut curves: BTreeMap<Column, Vec<(usize, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<(Column, usize), usize> = BTreeMap::new();
    for r in rows {
        let curve = curves.entry(r.column).or_default();
        match curve.iter_mut().find(|p| p.0 == r.epoch) {
            Some(p) => p.1 += 100.0 * r.accuracy,
            None => curve.push((r.epoch, 100.0 * r.accuracy)),
        }
        *counts.entry((r.column, r.epoch)).or_default() += 1;
    }
    let series: Vec<Series> = curves
        .into_iter()
        .map(|(column, mut points)| {
            for p in &mut points {
                p.1 /= counts[&(column, p.0)] as f64;
            }
            points.sort_by_key(|p| p.0);
            Series {
                label: column.label(),
                points,
                dashed: column.method == RetrainMethod::Standard,
            }
        })
        .collect();
    crate::plot::draw_lines(
        path,
        "Held-out hits@1 on unseen personas during fine-tuning (mean over tasks and seeds)",
        ("Fine-tuning epoch (0: before training)", "Hits@1 (%)"),
        &series,
    )
}

fn draw_retrain_curves(dir: &Path, ext: &str, rows: &[RetrainRow]) -> Result<(), ExperimentError> {
    let mut runs: BTreeMap<(RetrainMethod, usize), SeedCurves> = BTreeMap::new();
    for r in rows {
        runs.entry((r.method, r.retrain_rank))
            .or_default()
            .entry(r.seed)
            .or_default()
            .push((r.epoch, r.train_loss, 100.0 * r.accuracy));
    }
    let curves = |value: fn(&(usize, f64, f64)) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|(&(method, rank), seeds)| {
                let per_seed: Vec<Vec<(usize, f64)>> = seeds
                    .values()
                    .map(|e| e.iter().map(|p| (p.0, value(p))).collect())
                    .collect();
                Series {
                    label: method_label(method, rank),
                    points: mean_curve(&per_seed),
                    dashed: method == RetrainMethod::Standard,
                }
            })
            .collect()
    };
    let mut loss = curves(|p| p.1);
    let mut ks: Vec<usize> = rows.iter().map(|r| r.candidates).collect();
    ks.sort_unstable();
    ks.dedup();
    let last_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1);
    for k in ks {
        loss.push(Series {
            label: format!("label prior H(1/{k}) = {:.3}", prior_loss(k)),
            points: vec![(1, prior_loss(k)), (last_epoch, prior_loss(k))],
            dashed: true,
        });
    }
    crate::plot::draw_lines(
        &dir.join(format!("retrain_loss.{ext}")),
        "Retraining train loss per epoch (mean over seeds)",
        ("Retraining epoch", "Train loss (nats)"),
        &loss,
    )?;
    crate::plot::draw_lines(
        &dir.join(format!("retrain_accuracy.{ext}")),
        "Held-out hits@1 of the retraining personas per epoch (mean over seeds)",
        ("Retraining epoch", "Hits@1 (%)"),
        &curves(|p| p.2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(task: usize) -> FinetuneKey {
        FinetuneKey {
            method: RetrainMethod::LoraMl,
            retrain_rank: 8,
            finetune: FinetuneMethod::Lora,
            seed: 1,
            rank: 8,
            task,
            persona: 12,
        }
    }

    #[test]
    fn a_failed_fine_tuning_record_reads_back() {
        let failed = FinetuneRecord::failed(key(2), "diverged".into());
        let text = serde_json::to_string(&failed).unwrap();
        let back: FinetuneRecord = serde_json::from_str(&text).unwrap();
        assert!(back.best.is_nan() && back.initial.is_nan() && back.last.is_nan());
        assert_eq!(back.failure.as_deref(), Some("diverged"));
        assert_eq!(
            (back.seed, back.rank, back.task, back.persona),
            (1, 8, 2, 12)
        );
    }

    #[test]
    fn the_label_prior_loss() {
        for (k, h) in [(2, std::f64::consts::LN_2), (5, 0.500_402), (20, 0.198_515)] {
            assert!(
                (prior_loss(k) - h).abs() < 1e-5,
                "K = {k}: {}",
                prior_loss(k)
            );
        }
    }

    #[test]
    fn summary_rows_read_back_from_csv() {
        let dir = std::env::temp_dir().join(format!("adaptable-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.csv");
        let text = format!(
            "{SUMMARY_HEADER}\nlora-ml,8,lora,8,1,2,12,0.25,0.5,0.625,100,1.0,\nsr,0,head,0,0,0,3,NaN,NaN,NaN,0,0.0,diverged\n"
        );
        std::fs::write(&path, text).unwrap();
        let rows = read_summary(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].method, RetrainMethod::LoraMl);
        assert_eq!(
            (rows[0].retrain_rank, rows[0].rank, rows[0].task),
            (8, 8, 2)
        );
        assert_eq!((rows[0].last, rows[0].best), (0.5, 0.625));
        assert!(!rows[0].failed);
        assert_eq!(rows[1].finetune, FinetuneMethod::LastLayer);
        assert!(rows[1].failed && rows[1].best.is_nan());
        std::fs::write(
            &path,
            format!("{SUMMARY_HEADER}\nsr,0,lora,x,0,0,3,0,0,0,0,0,\n"),
        )
        .unwrap();
        let err = read_summary(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("`rank`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
