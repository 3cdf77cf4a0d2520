//! `adaptable finetune` (a fresh LoRA adapter and head, or a head alone, on one new task, written
//! as a PEFT adapter directory) and `adaptable evaluate` (held-out metrics of a model, with or
//! without such an adapter, on a task file).

use std::path::PathBuf;

use adaptable_meta::finetune::{FinetuneConfig, FinetuneMethod, finetune_model};
use adaptable_meta::retrain::evaluate_tasks;
use adaptable_meta::{TaskData, TaskSlot};
use adaptable_models::peft::export_adapter;
use adaptable_models::{LoraTargets, ModelType};
use adaptable_text::{TextModel, TextTaskData};
use burn::tensor::Device;
use clap::Args;
use indicatif::ProgressBar;
use serde::Serialize;

use super::adapters::load_with_adapter;
use super::text_common::{
    OutState, TextDataArgs, check_out, model_dir, text_error, write_dir_atomically,
};
use adaptable_experiments::ExperimentError;
use adaptable_experiments::device::Backend;
use adaptable_experiments::io::write_json;
use adaptable_experiments::seed::derive_seed;

/// The metrics file of a finished fine-tuning; its presence marks `--out` as done.
pub const FINETUNE_METRICS: &str = "finetune-metrics.json";

/// Arguments of `adaptable finetune`.
#[derive(Debug, Clone, Args)]
pub struct FinetuneArgs {
    /// Model directory (a pretrained one, or the output of `adaptable retrain`).
    #[arg(long)]
    pub model: PathBuf,
    /// A JSONL file holding one task.
    #[arg(long)]
    pub task: PathBuf,
    /// Rank of the fresh LoRA adapter.
    #[arg(long, default_value_t = 8, conflicts_with = "head_only")]
    pub lora_rank: usize,
    /// Train a fresh head only (no adapter; nothing PEFT can hold is written, only metrics).
    #[arg(long)]
    pub head_only: bool,
    /// Layers the adapter adapts: all, query-value, or a comma-separated list.
    #[arg(long, default_value = "all")]
    pub targets: LoraTargets,
    /// Epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Output directory (must not exist, or hold a finished run).
    #[arg(long)]
    pub out: PathBuf,
    /// Tokenisation, batching, seed, device.
    #[command(flatten)]
    pub data: TextDataArgs,
}

/// Arguments of `adaptable evaluate`.
#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT adapter directory (from `adaptable finetune`); without it head 0 is untrained.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A JSONL task file (every task in it is evaluated on its held-out examples).
    #[arg(long)]
    pub task: PathBuf,
    /// Tokenisation, batching, seed, device.
    #[command(flatten)]
    pub data: TextDataArgs,
}

/// `finetune-metrics.json`.
#[derive(Debug, Serialize)]
struct FinetuneMetrics {
    model: PathBuf,
    task: String,
    method: &'static str,
    rank: Option<usize>,
    /// Held-out accuracy before training, then after every epoch.
    heldout_accuracy: Vec<f64>,
    train_loss: Vec<f64>,
    trainable_params: usize,
    /// Whether the head is in the PEFT directory (RoBERTa only: BERT's head has no HF counterpart).
    head_exported: bool,
}

/// Runs `adaptable finetune`.
pub fn run_finetune(args: &FinetuneArgs, quiet: bool) -> Result<(), ExperimentError> {
    if let OutState::Finished = check_out(&args.out, FINETUNE_METRICS, "finetune")? {
        println!(
            "{} already holds a finished fine-tuning; nothing to do",
            args.out.display()
        );
        return Ok(());
    }
    if args.epochs == 0 || args.lora_rank == 0 {
        return Err(ExperimentError::InvalidOption(
            "--epochs and --lora-rank must be at least 1".into(),
        ));
    }
    let tokenizer = model_dir(&args.model)?;
    let tasks = args.data.load(std::slice::from_ref(&args.task))?;
    let [task] = tasks.as_slice() else {
        return Err(ExperimentError::InvalidOption(format!(
            "{} holds {} tasks; `finetune` takes a file with one",
            args.task.display(),
            tasks.len()
        )));
    };
    let device = args.data.device.parse::<Backend>()?.device()?.autodiff();
    let data = args.data.data(&tasks, &tokenizer, &device)?;
    let method = if args.head_only {
        FinetuneMethod::LastLayer
    } else {
        FinetuneMethod::Lora
    };
    let mut config = FinetuneConfig::default();
    config.optim.epochs = args.epochs;
    config.optim.lr = args.lr;
    config.lora.rank = args.lora_rank;
    config.lora.alpha = 2.0 * args.lora_rank as f64;

    device.seed(derive_seed(args.data.seed, &["finetune-init", method.id()]));
    let base = TextModel::from_pretrained(&args.model, data[0].classes(), args.targets, &device)
        .map_err(text_error)?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((data[0].train_len() * args.epochs) as u64)
    };
    let (outcome, tuned) =
        finetune_model(&base, &data[0], method, &config, &device, || bar.inc(1))?;
    bar.finish_and_clear();

    let roberta = tuned.classifier.encoder.config().model_type == ModelType::Roberta;
    let metrics = FinetuneMetrics {
        model: args.model.clone(),
        task: task.name.clone(),
        method: method.id(),
        rank: (!args.head_only).then_some(args.lora_rank),
        heldout_accuracy: outcome.accuracy.clone(),
        train_loss: outcome.train_loss.clone(),
        trainable_params: outcome.trainable_params,
        head_exported: roberta && !args.head_only,
    };
    write_dir_atomically(&args.out, |dir| {
        if !args.head_only {
            let head = roberta.then_some(0);
            let name = args.model.display().to_string();
            export_adapter(&tuned.classifier, 0, head, &config.lora, &name, dir)?;
        } else {
            std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_json(&dir.join(FINETUNE_METRICS), &metrics)
    })?;
    println!(
        "task {}: held-out accuracy {:.3} before, {:.3} after {} epochs; wrote {}",
        task.name,
        outcome.initial(),
        outcome.last(),
        args.epochs,
        args.out.display()
    );
    Ok(())
}

/// Runs `adaptable evaluate`: one JSON object `{task: held-out accuracy}` on stdout.
pub fn run_evaluate(args: &EvaluateArgs) -> Result<(), ExperimentError> {
    let tokenizer = model_dir(&args.model)?;
    let tasks = args.data.load(std::slice::from_ref(&args.task))?;
    let device: Device = args.data.device.parse::<Backend>()?.device()?;
    let data = args.data.data(&tasks, &tokenizer, &device)?;
    let classes = data.iter().map(TextTaskData::classes).max().unwrap_or(2);
    let (model, slot) = match &args.adapter {
        None => {
            let model = TextModel::from_pretrained(&args.model, classes, LoraTargets::ALL, &device)
                .map_err(text_error)?;
            (model, TaskSlot::SHARED)
        }
        Some(adapter) => {
            let (classifier, report, targets) =
                load_with_adapter(&args.model, adapter, classes, &device)?;
            let slot = TaskSlot {
                adapter: Some(report.adapter),
                head: report.head.unwrap_or(0),
            };
            (
                TextModel {
                    classifier,
                    targets,
                },
                slot,
            )
        }
    };
    let accuracy = evaluate_tasks(&model, &data, |_| slot)?;
    let result: serde_json::Map<String, serde_json::Value> = tasks
        .iter()
        .zip(accuracy)
        .map(|(t, a)| (t.name.clone(), serde_json::json!(a)))
        .collect();
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}
