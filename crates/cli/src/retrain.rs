//! `adaptable retrain`: SR, LoRA-ML, last-layer-ML or Reptile on your own JSONL tasks, from any
//! BERT/RoBERTa directory, written back as a Hugging Face model directory with a report.
//!
//! A run checkpoints every epoch into a hidden sibling of `--out` (`.NAME.checkpoint/`, with the
//! options it was started with in `run.json`); rerunning the same command after a crash or a kill
//! resumes from the last finished epoch and ends with the same model. The checkpoint is removed once
//! `--out` is written.

use std::path::{Path, PathBuf};

use adaptable_meta::TaskData;
use adaptable_meta::checkpoint::CheckpointDir;
use adaptable_meta::retrain::{
    RetrainConfig, RetrainMethod, RetrainOutcome, RetrainState, prepare, retrain,
};
use adaptable_models::LoraTargets;
use adaptable_tasks::text::TextTask;
use adaptable_text::{TextModel, TextTaskData, export_retrained};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::text_common::{
    OutState, TextDataArgs, check_out, model_dir, text_error, write_dir_atomically,
};
use adaptable_experiments::ExperimentError;
use adaptable_experiments::checkpointed::CheckpointedRun;
use adaptable_experiments::device::Backend;
use adaptable_experiments::io::{read_json, write_hook, write_json};
use adaptable_experiments::seed::derive_seed;

/// The report file of a finished run; its presence marks `--out` as done.
pub const RETRAIN_REPORT: &str = "retrain-report.json";

/// Retraining methods on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Standard retraining: the whole model, one shared head.
    Sr,
    /// LoRA-ML: the base plus one adapter and one head per task.
    LoraMl,
    /// Last-layer-ML: the base plus one head per task.
    LastLayerMl,
    /// First-order Reptile.
    Reptile,
}

impl From<MethodArg> for RetrainMethod {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Sr => RetrainMethod::Standard,
            MethodArg::LoraMl => RetrainMethod::LoraMl,
            MethodArg::LastLayerMl => RetrainMethod::LastLayerMl,
            MethodArg::Reptile => RetrainMethod::Reptile,
        }
    }
}

/// Arguments of `adaptable retrain`.
#[derive(Debug, Clone, Args)]
pub struct RetrainArgs {
    /// Model directory: config.json, model.safetensors, tokenizer.json (BERT or RoBERTa).
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL task files (classification or ranking; see docs/text-tasks.md).
    #[arg(long, num_args = 1.., required = true)]
    pub tasks: Vec<PathBuf>,
    /// Retraining method.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Rank of LoRA-ML's task adapters.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Layers LoRA adapts: all, query-value, or a comma-separated list of query, key, value,
    /// attention_output, intermediate, output.
    #[arg(long, default_value = "all")]
    pub targets: LoraTargets,
    /// Epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Output directory (must not exist, or hold a finished run).
    #[arg(long)]
    pub out: PathBuf,
    /// Tokenisation, batching, seed, device.
    #[command(flatten)]
    pub data: TextDataArgs,
}

/// One task in the report.
#[derive(Debug, Serialize)]
struct TaskReport {
    name: String,
    file: PathBuf,
    kind: &'static str,
    classes: usize,
    train_examples: usize,
    heldout_examples: usize,
}

/// One epoch in the report.
#[derive(Debug, Serialize)]
struct EpochReport {
    epoch: usize,
    train_loss: f64,
    /// Held-out accuracy (hits@1 for ranking) per task, in task order.
    heldout_accuracy: Vec<f64>,
    mean_accuracy: f64,
}

/// `retrain-report.json`.
#[derive(Debug, Serialize)]
struct RetrainReport {
    model: PathBuf,
    method: &'static str,
    rank: usize,
    targets: String,
    seed: u64,
    epochs: Vec<EpochReport>,
    best_epoch: usize,
    trainable_params: usize,
    tasks: Vec<TaskReport>,
}

/// The options a checkpoint was started with (`run.json`): a rerun resumes it only with the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunKey {
    model: PathBuf,
    tasks: Vec<PathBuf>,
    method: String,
    rank: usize,
    targets: String,
    epochs: usize,
    lr: f64,
    heldout_fraction: f64,
    max_len: usize,
    batch_size: usize,
    seed: u64,
    device: String,
}

impl RunKey {
    fn of(args: &RetrainArgs, method: RetrainMethod) -> Self {
        // Absolute paths, so that the same run started from another directory still matches.
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        Self {
            model: absolute(&args.model),
            tasks: args.tasks.iter().map(|t| absolute(t)).collect(),
            method: method.id().to_string(),
            rank: args.rank,
            targets: args.targets.to_string(),
            epochs: args.epochs,
            lr: args.lr,
            heldout_fraction: args.data.heldout_fraction,
            max_len: args.data.max_len,
            batch_size: args.data.batch_size,
            seed: args.data.seed,
            device: args.data.device.clone(),
        }
    }
}

/// The checkpoint directory of the run writing `out`: its hidden sibling `.NAME.checkpoint`.
pub fn checkpoint_root(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!(".{name}.checkpoint"))
}

/// Opens the checkpoint at `root` for the run `key`: creates it, or checks that the one there was
/// started with the same options.
fn open_checkpoint(root: &Path, key: &RunKey) -> Result<CheckpointDir, ExperimentError> {
    let manifest = root.join("run.json");
    if manifest.is_file() {
        let found: RunKey = read_json(&manifest)?;
        if &found != key {
            return Err(ExperimentError::InvalidOption(format!(
                "{} holds the checkpoint of a retraining with other options (see its run.json); \
                 rerun with those options to resume it, or delete the directory to start afresh",
                root.display()
            )));
        }
    } else {
        write_json(&manifest, key)?;
    }
    Ok(CheckpointDir::new(root.join("epochs")).with_write_hook(write_hook()))
}

/// Runs `adaptable retrain`.
pub fn run_retrain(args: &RetrainArgs, quiet: bool) -> Result<(), ExperimentError> {
    if let OutState::Finished = check_out(&args.out, RETRAIN_REPORT, "retrain")? {
        println!(
            "{} already holds a finished retraining; nothing to do (choose another --out to run again)",
            args.out.display()
        );
        return Ok(());
    }
    if args.epochs == 0 || args.rank == 0 {
        return Err(ExperimentError::InvalidOption(
            "--epochs and --rank must be at least 1".into(),
        ));
    }
    let tokenizer = model_dir(&args.model)?;
    let tasks = args.data.load(&args.tasks)?;
    let device = args.data.device.parse::<Backend>()?.device()?.autodiff();
    let data = args.data.data(&tasks, &tokenizer, &device)?;
    let method = RetrainMethod::from(args.method);
    let mut config = RetrainConfig::default();
    config.optim.epochs = args.epochs;
    config.optim.lr = args.lr;
    config.lora.rank = args.rank;
    config.lora.alpha = 2.0 * args.rank as f64;

    device.seed(derive_seed(args.data.seed, &["retrain-init", method.id()]));
    let classes = data.iter().map(TextTaskData::classes).max().unwrap_or(2);
    let model = TextModel::from_pretrained(&args.model, classes, args.targets, &device)
        .map_err(text_error)?;
    let model = prepare(model, method, data.len(), &config, &device)?;
    let root = checkpoint_root(&args.out);
    let checkpoints = open_checkpoint(&root, &RunKey::of(args, method))?;
    let resume = checkpoints.load(&model, config.optim.optimizer())?;
    let done = resume.as_ref().map_or(0, RetrainState::epochs_done);
    if done > 0 && !quiet {
        println!(
            "resuming from epoch {done} of {} (checkpoint {})",
            args.epochs,
            root.display()
        );
    }
    let per_epoch = match method {
        RetrainMethod::Reptile => data.len(),
        _ => data.iter().map(TaskData::train_len).sum(),
    };
    let steps = args.epochs.saturating_sub(done) * per_epoch;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} steps {elapsed} (ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(method.id());
    let mut run = CheckpointedRun::new(checkpoints, bar, &device, args.data.seed, method.id());
    let outcome = retrain(model, &data, method, &config, &mut run, resume)?;
    run.bar().finish_and_clear();

    let report = report(args, method, &tasks, &data, &outcome);
    write_dir_atomically(&args.out, |dir| {
        export_retrained(&outcome.best, &args.model, dir).map_err(text_error)?;
        write_json(&dir.join(RETRAIN_REPORT), &report)
    })?;
    // The result is safe in --out; a checkpoint left behind would only cost disk.
    if let Err(e) = std::fs::remove_dir_all(&root) {
        tracing::warn!("could not remove the checkpoint {}: {e}", root.display());
    }
    for e in &report.epochs {
        println!(
            "epoch {}: train loss {:.4}, held-out accuracy {}",
            e.epoch,
            e.train_loss,
            e.heldout_accuracy
                .iter()
                .zip(&report.tasks)
                .map(|(a, t)| format!("{} {a:.3}", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "wrote {} (best epoch {}; load it with AutoModel.from_pretrained)",
        args.out.display(),
        report.best_epoch
    );
    Ok(())
}

fn report(
    args: &RetrainArgs,
    method: RetrainMethod,
    tasks: &[TextTask],
    data: &[TextTaskData],
    outcome: &RetrainOutcome<TextModel>,
) -> RetrainReport {
    RetrainReport {
        model: args.model.clone(),
        method: method.id(),
        rank: args.rank,
        targets: args.targets.to_string(),
        seed: args.data.seed,
        epochs: outcome
            .history
            .iter()
            .map(|r| EpochReport {
                epoch: r.epoch,
                train_loss: r.train_loss,
                heldout_accuracy: r.heldout_accuracy.clone(),
                mean_accuracy: r.mean_accuracy,
            })
            .collect(),
        best_epoch: outcome.best_epoch,
        trainable_params: outcome.trainable_params,
        tasks: tasks
            .iter()
            .zip(data)
            .map(|(t, d)| TaskReport {
                name: t.name.clone(),
                file: t.path.clone(),
                kind: t.kind().name(),
                classes: d.classes(),
                train_examples: t.train.len(),
                heldout_examples: t.heldout.len(),
            })
            .collect(),
    }
}
