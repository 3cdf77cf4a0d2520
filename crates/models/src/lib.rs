#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod attention;
pub mod config;
pub mod embeddings;
pub mod encoder;
mod error;
pub mod fused;
pub mod heads;
pub mod input;
pub mod layer;
pub mod loader;
pub mod peft;
pub mod pooling;
pub mod targets;
pub mod tokenizer;

pub use config::{Activation, AdapterConfig, EncoderConfig, ModelType};
pub use encoder::{Encoder, Pooler};
pub use error::ModelsError;
pub use heads::{
    ClassificationHead, MultipleChoiceModel, SequenceClassifier, SequenceClassifierConfig,
    best_candidates, candidate_scores, cross_entropy,
};
pub use input::EncoderInput;
pub use loader::{LoadReport, ModelFiles, load_pretrained_classifier, load_pretrained_encoder};
pub use pooling::{Pooling, cosine_similarity, l2_normalize};
pub use targets::{EncoderLinear, LoraTargets};
pub use tokenizer::{EncodedBatch, PairFormat, TextTokenizer};

/// The directory where pretrained models live by default: `$ADAPTABLE_MODELS_DIR`, or `models/`
/// at the workspace root (what `cargo xtask fetch-model` fills).
pub fn default_models_dir() -> std::path::PathBuf {
    match std::env::var_os("ADAPTABLE_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    }
}
