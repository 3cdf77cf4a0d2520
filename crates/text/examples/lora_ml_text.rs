//! LoRA-ML retraining of an encoder on three small classification tasks, through the library API.
//!
//! ```sh
//! cargo run --release -p adaptable-text --example lora_ml_text -- models/minilm /tmp/retrained
//! ```
//!
//! Without arguments it uses a tiny random RoBERTa with the shipped tokenizer (a quick smoke run)
//! and writes nothing.

use std::path::PathBuf;

use adaptable_meta::retrain::{NoObserver, RetrainConfig, RetrainMethod, prepare, retrain};
use adaptable_models::{EncoderConfig, LoraTargets, SequenceClassifierConfig, TextTokenizer};
use adaptable_tasks::text::{LoadOptions, load_text_task_files};
use adaptable_text::{TextBatching, TextModel, TextTaskData, export_retrained};
use burn::tensor::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let device = Device::default().autodiff();

    // --- user code starts here -------------------------------------------------------------
    let files =
        ["pets", "family", "food"].map(|t| root.join(format!("datasets/text-tasks/{t}.jsonl")));
    let tasks = load_text_task_files(&files, &LoadOptions::default())?;
    let (model, tokenizer) = match args.first() {
        Some(dir) => (
            TextModel::from_pretrained(dir, 2, LoraTargets::ALL, &device)?,
            TextTokenizer::from_file(dir.join("tokenizer.json"))?,
        ),
        None => (
            tiny_random_model(&device)?,
            TextTokenizer::from_file(root.join("datasets/roberta-tokenizer/tokenizer.json"))?,
        ),
    };
    let batching = TextBatching {
        max_len: 48,
        ..TextBatching::default()
    };
    let data = tasks
        .iter()
        .map(|task| TextTaskData::new(task, &tokenizer, batching, &device))
        .collect::<Result<Vec<_>, _>>()?;

    let mut config = RetrainConfig::default();
    config.optim.epochs = 2;
    let method = RetrainMethod::LoraMl;
    let model = prepare(model, method, data.len(), &config, &device)?;
    let outcome = retrain(model, &data, method, &config, &mut NoObserver, None)?;
    for record in &outcome.history {
        println!(
            "epoch {}: loss {:.4}, held-out accuracy {:?}",
            record.epoch, record.train_loss, record.heldout_accuracy
        );
    }
    if let (Some(model_dir), Some(out)) = (args.first(), args.get(1)) {
        // The retrained base as a Hugging Face directory: config.json, model.safetensors, tokenizer.
        export_retrained(&outcome.best, model_dir, out)?;
        println!("wrote {}", out.display());
    }
    // --- user code ends here ---------------------------------------------------------------
    Ok(())
}

/// A 2-layer RoBERTa with random weights (hidden size 32), for a run without a checkpoint.
fn tiny_random_model(device: &Device) -> Result<TextModel, adaptable_models::ModelsError> {
    let mut config = EncoderConfig::roberta_base();
    (
        config.hidden_size,
        config.num_hidden_layers,
        config.intermediate_size,
    ) = (32, 2, 64);
    (config.num_attention_heads, config.max_position_embeddings) = (4, 66);
    let classifier = SequenceClassifierConfig::new(config, 2, 1).init(device)?;
    Ok(TextModel {
        classifier,
        targets: LoraTargets::ALL,
    })
}
