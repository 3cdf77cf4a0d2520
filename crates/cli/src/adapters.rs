//! `adaptable adapters`: PEFT-format LoRA adapters (`inspect`, `export`, `export-base`, `import`).

use std::path::{Path, PathBuf};

use adaptable_lora::LoraConfig;
use adaptable_models::peft::{
    ImportReport, PEFT_PREFIX, export_adapter, export_base, import_adapter, infer_targets, inspect,
};
use adaptable_models::{
    AdapterConfig, EncoderConfig, LoraTargets, ModelFiles, ModelsError, SequenceClassifier,
    load_pretrained_classifier,
};
use burn::tensor::Device;
use clap::{Args, Subcommand};

use adaptable_experiments::ExperimentError;
use adaptable_experiments::device::Backend;

/// The subcommands of `adaptable adapters`.
#[derive(Debug, Subcommand)]
pub enum AdaptersCommand {
    /// Print the configuration and every tensor of a PEFT adapter directory.
    Inspect {
        /// The directory (adapter_config.json + adapter_model.safetensors).
        dir: PathBuf,
    },
    /// Export a freshly initialised adapter (B = 0, so outputs are unchanged) and a new head of a
    /// pretrained model as a PEFT directory: a smoke path for PEFT loading (scripts/peft_check.py).
    Export(ExportArgs),
    /// Write a pretrained model's encoder as HF model.safetensors + config.json.
    ExportBase(ExportBaseArgs),
    /// Check a PEFT adapter directory against a pretrained model and import it (strict).
    Import(ImportArgs),
}

/// Arguments of `adaptable adapters export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Model directory with config.json and model.safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (scale alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Adapted layers: all, query-value, or a comma-separated list of query, key, value,
    /// attention_output, intermediate, output.
    #[arg(long, default_value = "all")]
    pub targets: LoraTargets,
    /// Classes of the head.
    #[arg(long, default_value_t = 2)]
    pub num_labels: usize,
    /// Export the adapter without the head.
    #[arg(long)]
    pub no_head: bool,
    /// `base_model_name_or_path` written to adapter_config.json [default: the --model path].
    #[arg(long)]
    pub base_name: Option<String>,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Arguments of `adaptable adapters export-base`.
#[derive(Debug, Clone, Args)]
pub struct ExportBaseArgs {
    /// Model directory with config.json and model.safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write head 0 (the checkpoint's classifier, or a new one) as
    /// RobertaForSequenceClassification with this many classes.
    #[arg(long)]
    pub head_labels: Option<usize>,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Arguments of `adaptable adapters import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Model directory with config.json and model.safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT adapter directory.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Classes of the head when the adapter saves none (otherwise read from the file).
    #[arg(long, default_value_t = 2)]
    pub num_labels: usize,
    /// Compute backend: flex, ndarray or wgpu (must be compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Runs `adaptable adapters ...`.
pub fn run_adapters(cmd: &AdaptersCommand) -> Result<(), ExperimentError> {
    match cmd {
        AdaptersCommand::Inspect { dir } => {
            print!("{}", inspect(dir)?);
            Ok(())
        }
        AdaptersCommand::Export(args) => run_export(args),
        AdaptersCommand::ExportBase(args) => run_export_base(args),
        AdaptersCommand::Import(args) => run_import(args),
    }
}

fn check_model_dir(dir: &std::path::Path) -> Result<(), ExperimentError> {
    if ModelFiles::in_dir(dir).config.is_file() {
        Ok(())
    } else {
        Err(ModelsError::InvalidArgument(format!(
            "{} has no config.json; pass a model directory (config.json + model.safetensors)",
            dir.display()
        ))
        .into())
    }
}

fn run_export(args: &ExportArgs) -> Result<(), ExperimentError> {
    check_model_dir(&args.model)?;
    let device = args.device.parse::<Backend>()?.device()?;
    let lora = LoraConfig::new(args.rank).with_alpha(args.alpha);
    let adapters = AdapterConfig::new(lora.clone(), 1).with_targets(args.targets);
    let (model, _) =
        load_pretrained_classifier(&args.model, args.num_labels, 1, Some(adapters), &device)?;
    let base_name = args
        .base_name
        .clone()
        .unwrap_or_else(|| args.model.display().to_string());
    let head = (!args.no_head).then_some(0);
    let config = export_adapter(&model, 0, head, &lora, &base_name, &args.out)?;
    let targets = match &config.target_modules {
        adaptable_models::peft::TargetModules::List(names) => names.len(),
        adaptable_models::peft::TargetModules::Pattern(_) => 0,
    };
    println!(
        "wrote {} (r={}, lora_alpha={}, {targets} target modules, head: {})",
        args.out.display(),
        config.r,
        config.lora_alpha,
        if head.is_some() { "classifier" } else { "none" }
    );
    Ok(())
}

fn run_export_base(args: &ExportBaseArgs) -> Result<(), ExperimentError> {
    check_model_dir(&args.model)?;
    let device = args.device.parse::<Backend>()?.device()?;
    let labels = args.head_labels.unwrap_or(2);
    let (model, _) = load_pretrained_classifier(&args.model, labels, 1, None, &device)?;
    let head = args.head_labels.map(|_| 0);
    export_base(&model, head, None, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Loads the model directory `model` with adapter banks that fit the PEFT directory `adapter` (its
/// rank, scale and targets) and imports it strictly; the head has the adapter's class count, or
/// `labels_without_head` when it saves no head.
pub(crate) fn load_with_adapter(
    model: &Path,
    adapter: &Path,
    labels_without_head: usize,
    device: &Device,
) -> Result<(SequenceClassifier, ImportReport, LoraTargets), ExperimentError> {
    let summary = inspect(adapter)?;
    let encoder = EncoderConfig::from_hf_file(ModelFiles::in_dir(model).config)?;
    // Build banks that fit the adapter (its rank, scale and targets), with no adapter yet.
    let targets = infer_targets(&summary.config, &encoder)?;
    let adapters = AdapterConfig::new(summary.config.lora_config(), 0).with_targets(targets);
    let head_key = format!("{PEFT_PREFIX}classifier.out_proj.weight");
    let labels = summary
        .tensors
        .iter()
        .find(|t| t.name == head_key)
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(labels_without_head);
    let (mut classifier, _) = load_pretrained_classifier(model, labels, 1, Some(adapters), device)?;
    let report = import_adapter(&mut classifier, adapter, device)?;
    Ok((classifier, report, targets))
}

fn run_import(args: &ImportArgs) -> Result<(), ExperimentError> {
    check_model_dir(&args.model)?;
    let device = args.device.parse::<Backend>()?.device()?;
    let (_, report, _) = load_with_adapter(&args.model, &args.adapter, args.num_labels, &device)?;
    println!(
        "imported {} tensors from {}: adapter {}, head {}",
        report.tensors,
        args.adapter.display(),
        report.adapter,
        report
            .head
            .map_or_else(|| "none".to_string(), |h| h.to_string())
    );
    Ok(())
}
