//! LoRA-ML on the shipped text tasks with a tiny random RoBERTa: the retrained base leaves as a
//! Hugging Face directory that the project's own loader reads back bit for bit.

use std::path::{Path, PathBuf};

use adaptable_meta::retrain::{NoObserver, RetrainConfig, RetrainMethod, prepare, retrain};
use adaptable_meta::{MetaError, MetaModel, TaskData, TaskSlot};
use adaptable_models::{
    EncoderConfig, EncoderInput, LoraTargets, ModelFiles, SequenceClassifierConfig, TextTokenizer,
    load_pretrained_encoder,
};
use adaptable_tasks::text::{LoadOptions, load_text_task_files, load_text_tasks};
use adaptable_text::{
    TextBatch, TextBatching, TextError, TextModel, TextTaskData, export_retrained,
};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer_dir() -> PathBuf {
    root().join("datasets/roberta-tokenizer")
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(tokenizer_dir().join("tokenizer.json")).expect("shipped tokenizer")
}

fn tiny_model(device: &Device) -> TextModel {
    device.seed(7);
    let mut config = EncoderConfig::roberta_base().with_dropout(0.0);
    (
        config.hidden_size,
        config.num_hidden_layers,
        config.intermediate_size,
    ) = (32, 2, 64);
    (config.num_attention_heads, config.max_position_embeddings) = (4, 66);
    let classifier = SequenceClassifierConfig::new(config, 2, 1)
        .init(device)
        .expect("model");
    TextModel {
        classifier,
        targets: LoraTargets::ALL,
    }
}

fn task_data(names: &[&str], device: &Device) -> Vec<TextTaskData> {
    let files: Vec<PathBuf> = names
        .iter()
        .map(|n| root().join(format!("datasets/text-tasks/{n}.jsonl")))
        .collect();
    let tasks = load_text_task_files(&files, &LoadOptions::default()).expect("shipped tasks");
    let batching = TextBatching {
        max_len: 40,
        batch_size: 8,
        eval_batch_size: 16,
        seed: 3,
    };
    tasks
        .iter()
        .map(|t| TextTaskData::new(t, &tokenizer(), batching, device).expect("tokenised"))
        .collect()
}

fn sentences(device: &Device) -> EncoderInput {
    let texts = ["i have two dogs.", "my mother is a nurse and i love pizza."];
    tokenizer()
        .encode_batch(&texts, 40)
        .and_then(|b| b.to_input(device))
        .expect("input")
}

fn bits(t: Tensor<3>) -> Vec<u32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-text-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn lora_ml_retrained_base_reloads_bit_for_bit_from_its_hf_directory() {
    let plain = Device::default();
    let device = plain.clone().autodiff();
    let data = task_data(&["pets", "family", "food"], &device);
    let mut config = RetrainConfig::default();
    config.optim.epochs = 1;
    config.optim.lr = 1e-3;
    let initial = tiny_model(&device);
    let before = bits(
        initial
            .valid()
            .classifier
            .encoder
            .forward(&sentences(&plain), None),
    );
    let method = RetrainMethod::LoraMl;
    let model = prepare(initial, method, data.len(), &config, &device).expect("prepare");
    let outcome = retrain(model, &data, method, &config, &mut NoObserver, None).expect("retrain");
    assert_eq!(outcome.history.len(), 1);
    let record = &outcome.history[0];
    assert_eq!(record.heldout_accuracy.len(), 3);
    assert!(record.train_loss.is_finite() && record.train_loss > 0.0);
    assert!(
        record
            .heldout_accuracy
            .iter()
            .all(|a| (0.0..=1.0).contains(a))
    );

    let out = scratch("retrained");
    export_retrained(&outcome.best, &tokenizer_dir(), &out).expect("export");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let (reloaded, report) = load_pretrained_encoder(&out, None, &plain).expect("strict reload");
    assert_eq!(report.fresh_adapter_tensors, 0);
    let ours = bits(
        outcome
            .best
            .valid()
            .classifier
            .encoder
            .forward(&sentences(&plain), None),
    );
    let theirs = bits(reloaded.forward(&sentences(&plain), None));
    assert!(
        ours == theirs,
        "the reloaded base must compute the same bits"
    );
    assert!(ours != before, "retraining moved the base");
    assert!(TextTokenizer::from_file(ModelFiles::in_dir(&out).tokenizer).is_ok());

    // The output directory is never overwritten, and a refused export leaves it as it was.
    let err = export_retrained(&outcome.best, &tokenizer_dir(), &out).expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(out.join("model.safetensors").is_file());
    // No tokenizer in the source: nothing is written.
    let missing = scratch("no-tokenizer");
    let err = export_retrained(&outcome.best, Path::new("/nonexistent"), &missing)
        .expect_err("no tokenizer");
    assert!(matches!(err, TextError::Models(_)), "{err}");
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn training_without_autodiff_is_an_error_not_a_panic() {
    let device = Device::default();
    let data = task_data(&["pets"], &device);
    let config = RetrainConfig::default();
    let model = prepare(
        tiny_model(&device),
        RetrainMethod::LoraMl,
        1,
        &config,
        &device,
    )
    .expect("prepare");
    let err = retrain(
        model,
        &data,
        RetrainMethod::LoraMl,
        &config,
        &mut NoObserver,
        None,
    )
    .err()
    .expect("no autodiff");
    assert!(matches!(err, MetaError::NoAutodiff { .. }), "{err}");
    assert!(err.to_string().contains("autodiff()"), "{err}");
}

#[test]
fn ranking_and_pair_batches_score_through_the_same_model() {
    let device = Device::default();
    let tasks = load_text_tasks(
        &root().join("datasets/text-tasks/personas.jsonl"),
        &LoadOptions::default(),
    )
    .expect("personas");
    let data = TextTaskData::new(&tasks[0], &tokenizer(), TextBatching::default(), &device)
        .expect("tokenised");
    assert_eq!(data.examples(), (12, 6));
    let model = tiny_model(&device);
    let batches = data.eval_batches().expect("batches");
    let TextBatch::Ranking(batch) = &batches[0] else {
        panic!("ranking")
    };
    assert_eq!(batch.candidates, 4);
    assert_eq!(batch.input.dims()[0], 6 * 4);
    let (hits, total) = model
        .correct(&batches[0], TaskSlot::SHARED)
        .expect("scored");
    assert!(hits <= total && total == 6);

    let pairs = "{\"text\": \"a cat\", \"text_pair\": \"i like cats\", \"label\": 1}\n\
                 {\"text\": \"a dog\", \"text_pair\": \"my job\", \"label\": 0}\n\
                 {\"text\": \"red\", \"text_pair\": \"blue\", \"label\": 2}\n";
    let task = &adaptable_tasks::text::parse_text_tasks(
        pairs,
        Path::new("pairs.jsonl"),
        &LoadOptions::default(),
    )
    .expect("pairs")[0];
    let data =
        TextTaskData::new(task, &tokenizer(), TextBatching::default(), &device).expect("tokenised");
    let train = data.train_batches(0).expect("batches");
    let TextBatch::Classification(batch) = &train[0] else {
        panic!("classification")
    };
    assert_eq!(batch.classes, 3);
    // Three classes do not fit heads of two.
    assert!(model.correct(&train[0], TaskSlot::SHARED).is_err());
    let wide = TextModel {
        classifier: SequenceClassifierConfig::new(model.classifier.encoder.config().clone(), 3, 1)
            .init(&device)
            .expect("model"),
        targets: LoraTargets::ALL,
    };
    let loss = wide
        .loss(&train[0], TaskSlot::SHARED)
        .try_into_vec_as::<f32>()
        .expect("scalar");
    assert!(loss[0].is_finite());
}

#[test]
fn finetuned_adapter_goes_through_peft_with_identical_logits() {
    use adaptable_lora::LoraConfig;
    use adaptable_meta::finetune::{FinetuneConfig, FinetuneMethod, finetune_model};
    use adaptable_models::AdapterConfig;
    use adaptable_models::peft::{export_adapter, import_adapter, infer_targets, inspect};

    let plain = Device::default();
    let device = plain.clone().autodiff();
    let base_dir = scratch("ft-base");
    export_retrained(&tiny_model(&device), &tokenizer_dir(), &base_dir).expect("base dir");
    let base =
        TextModel::from_pretrained(&base_dir, 2, LoraTargets::QUERY_VALUE, &device).expect("load");
    let data = task_data(&["music"], &device);
    let mut config = FinetuneConfig::default();
    config.optim.epochs = 1;
    config.optim.lr = 1e-3;
    config.lora = LoraConfig::new(2).with_alpha(4.0);
    let (outcome, tuned) = finetune_model(
        &base,
        &data[0],
        FinetuneMethod::Lora,
        &config,
        &device,
        || {},
    )
    .expect("fine-tune");
    assert_eq!(outcome.accuracy.len(), 2);

    let adapter_dir = scratch("ft-adapter");
    export_adapter(
        &tuned.classifier,
        0,
        Some(0),
        &config.lora,
        "tiny",
        &adapter_dir,
    )
    .expect("export");
    let summary = inspect(&adapter_dir).expect("inspect");
    let encoder = tuned.classifier.encoder.config();
    let targets = infer_targets(&summary.config, encoder).expect("targets");
    assert_eq!(targets, LoraTargets::QUERY_VALUE);
    let banks = AdapterConfig::new(summary.config.lora_config(), 0).with_targets(targets);
    let (mut fresh, _) =
        adaptable_models::load_pretrained_classifier(&base_dir, 2, 1, Some(banks), &plain)
            .expect("load");
    let report = import_adapter(&mut fresh, &adapter_dir, &plain).expect("import");
    let x = sentences(&plain);
    let logits = |t: Tensor<2>| -> Vec<u32> {
        t.try_into_vec_as::<f32>()
            .expect("f32")
            .into_iter()
            .map(f32::to_bits)
            .collect()
    };
    let want = logits(tuned.valid().classifier.forward(&x, Some(0), 0));
    let got = logits(fresh.forward(&x, Some(report.adapter), report.head.expect("head")));
    assert!(
        want == got,
        "imported adapter and head must give the same logits"
    );
    let _ = std::fs::remove_dir_all(&base_dir);
    let _ = std::fs::remove_dir_all(&adapter_dir);
}
