//! Malformed configs and weights give one clear error each, never a panic; loading is strict.

mod common;

use adaptable_models::{EncoderConfig, ModelsError, SequenceClassifierConfig};
use common::*;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adaptable-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn unknown_model_type_is_rejected() {
    let dir = temp_dir("cfg");
    let text = std::fs::read_to_string(fixture("tiny-roberta/config.json")).expect("fixture");
    let path = dir.join("config.json");
    std::fs::write(&path, text.replace("\"roberta\"", "\"t5\"")).expect("write");
    let err = EncoderConfig::from_hf_file(&path).expect_err("t5 is unsupported");
    assert!(matches!(err, ModelsError::UnsupportedModelType { ref found, .. } if found == "t5"));
    assert!(err.to_string().contains("config.json"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_safetensors_is_an_error() {
    let dir = temp_dir("trunc");
    let bytes = std::fs::read(fixture("tiny-roberta/model.safetensors")).expect("fixture");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let config = EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json")).expect("config");
    let mut encoder = config.init(&cpu()).expect("encoder");
    let err = encoder.load_hf_weights(&path).expect_err("truncated");
    assert!(matches!(err, ModelsError::Weights { .. }), "{err}");
    let err = encoder
        .load_hf_weights(dir.join("absent.safetensors"))
        .expect_err("absent");
    assert!(matches!(err, ModelsError::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn strict_loading_lists_every_problem() {
    let mut config =
        EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json")).expect("config");
    config.intermediate_size = 48;
    config.num_hidden_layers = 3;
    let mut encoder = config.init(&cpu()).expect("encoder");
    let err = encoder
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect_err("shapes differ");
    let ModelsError::WeightMismatch { problems, .. } = &err else {
        panic!("unexpected error {err}");
    };
    let count = |prefix: &str| problems.iter().filter(|p| p.starts_with(prefix)).count();
    // layer 2 is absent from the file: 16 tensors; intermediate/output shapes differ in 2 layers.
    assert_eq!(count("missing:"), 16, "{problems:#?}");
    assert_eq!(count("wrong shape:"), 6, "{problems:#?}");
    assert!(
        err.to_string()
            .contains("layers.2.attention.query.base.weight")
    );
}

#[test]
fn a_new_head_is_the_only_allowed_absence() {
    let config = EncoderConfig::from_hf_file(fixture("tiny-roberta/config.json")).expect("config");
    let mut model = SequenceClassifierConfig::new(config, 2, 3)
        .init(&cpu())
        .expect("model");
    let report = model
        .load_hf_weights(fixture("tiny-roberta/model.safetensors"))
        .expect("heads may be new");
    assert_eq!(
        report.new_head.len(),
        12,
        "3 heads × (dense + out_proj) × (weight + bias)"
    );
    let mut ignored = report.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        ["encoder.pooler.dense.bias", "encoder.pooler.dense.weight"]
    );
}
