//! Experiment profiles of the ConvAI2 suite (`crates/experiments/configs/convai2-<name>.toml`).

use std::path::{Path, PathBuf};

use adaptable_lora::LoraConfig;
use adaptable_meta::{
    OptimizerSchedule,
    finetune::{FinetuneConfig, FinetuneMethod},
    retrain::{RetrainConfig, RetrainMethod},
};
use adaptable_models::LoraTargets;
use adaptable_tasks::convai2::SplitConfig;
use serde::{Deserialize, Serialize};

use crate::ExperimentError;

/// The built-in profiles, by name.
pub const PROFILES: [(&str, &str); 3] = [
    ("quick", include_str!("../../configs/convai2-quick.toml")),
    ("paper", include_str!("../../configs/convai2-paper.toml")),
    ("smoke", include_str!("../../configs/convai2-smoke.toml")),
];

/// A ConvAI2 experiment: model, data, methods and their hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convai2Profile {
    /// Seeds (runs) per method; seed `s` retrains and fine-tunes with the same `s`.
    pub seeds: usize,
    /// Retraining methods to compare.
    pub methods: Vec<RetrainMethod>,
    /// The foundation model.
    pub model: ModelSection,
    /// Tokenisation and batching.
    pub data: DataSection,
    /// Which personas are tasks.
    #[serde(default)]
    pub split: SplitConfig,
    /// Retraining.
    pub retrain: RetrainConfig,
    /// Fine-tuning on the unseen personas.
    pub finetune: FinetuneSection,
}

/// Where the foundation model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `minilm` or `roberta-base` (looked up in the models directory, see `cargo xtask fetch-model`),
    /// `random-tiny` (a small randomly initialised RoBERTa with the shipped tokenizer, for tests), or a
    /// directory holding `config.json`, `model.safetensors` and `tokenizer.json`.
    pub source: String,
    /// Which encoder linear layers carry LoRA adapters.
    #[serde(default)]
    pub targets: LoraTargets,
}

/// Tokenisation and batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A ConvAI2 file or directory; absent: the shipped validation split.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Tokens per (context, candidate) pair; the oldest context is cut first.
    pub max_len: usize,
    /// Distractors per training example (evaluation always scores all 20 candidates).
    pub negatives: usize,
    /// Examples per training batch.
    pub batch_size: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Keep at most this many training examples per task (absent: all).
    #[serde(default)]
    pub max_train_examples: Option<usize>,
    /// Keep at most this many held-out examples per task (absent: all).
    #[serde(default)]
    pub max_heldout_examples: Option<usize>,
}

/// Fine-tuning on the unseen tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    /// `lora` (fresh adapter + head) or `last-layer` (fresh head only).
    pub method: FinetuneMethod,
    /// Adapter ranks to fine-tune with (one fine-tuning per rank; ignored for `last-layer`).
    pub ranks: Vec<usize>,
    /// Optimiser and schedule.
    pub optim: OptimizerSchedule,
    /// Adapter settings; `rank` is replaced by each of `ranks`.
    #[serde(default)]
    pub lora: LoraConfig,
}

impl FinetuneSection {
    /// The ranks actually run (`[0]`, meaning "no adapter", for last-layer fine-tuning).
    pub fn effective_ranks(&self) -> Vec<usize> {
        match self.method {
            FinetuneMethod::Lora => self.ranks.clone(),
            FinetuneMethod::LastLayer => vec![0],
        }
    }

    /// The fine-tuning configuration at `rank`.
    pub fn config(&self, rank: usize) -> FinetuneConfig {
        FinetuneConfig {
            optim: self.optim.clone(),
            lora: LoraConfig {
                rank: rank.max(1),
                ..self.lora.clone()
            },
        }
    }
}

impl Convai2Profile {
    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Result<Self, ExperimentError> {
        let (_, text) = PROFILES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            ExperimentError::InvalidOption(format!(
                "unknown profile `{name}`; expected one of: quick, paper, smoke (or a TOML file path)"
            ))
        })?;
        Self::from_toml(text, Path::new(&format!("configs/convai2-{name}.toml")))
    }

    /// A built-in profile name or a TOML file.
    pub fn resolve(name_or_path: &str) -> Result<Self, ExperimentError> {
        let path = Path::new(name_or_path);
        if name_or_path.ends_with(".toml") || path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Self::from_toml(&text, path)
        } else {
            Self::builtin(name_or_path)
        }
    }

    /// Parses and checks a profile.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ExperimentError> {
        let profile: Self = toml::from_str(text).map_err(|e| ExperimentError::Config {
            path: origin.to_path_buf(),
            message: crate::linear::describe_toml_error(text, &e),
        })?;
        let bad = |message: String| ExperimentError::Config {
            path: origin.to_path_buf(),
            message,
        };
        if profile.seeds == 0 {
            return Err(bad("`seeds` must be at least 1".into()));
        }
        if profile.methods.is_empty() {
            return Err(bad("`methods` is empty".into()));
        }
        for (key, value) in [
            ("data.max_len", profile.data.max_len),
            ("data.batch_size", profile.data.batch_size),
            ("data.eval_batch_size", profile.data.eval_batch_size),
            ("retrain.optim.epochs", profile.retrain.optim.epochs),
            ("finetune.optim.epochs", profile.finetune.optim.epochs),
        ] {
            if value == 0 {
                return Err(bad(format!("`{key}` must be at least 1")));
            }
        }
        if profile.finetune.method == FinetuneMethod::Lora
            && (profile.finetune.ranks.is_empty() || profile.finetune.ranks.contains(&0))
        {
            return Err(bad("`finetune.ranks` must list ranks of at least 1".into()));
        }
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        for (name, _) in PROFILES {
            let p = Convai2Profile::builtin(name).unwrap();
            assert!(!p.methods.is_empty(), "{name}");
        }
        let paper = Convai2Profile::builtin("paper").unwrap();
        assert_eq!(paper.seeds, 5);
        assert_eq!(paper.finetune.ranks, vec![1, 4, 8, 12, 16]);
        assert_eq!(paper.methods.len(), 4);
    }

    #[test]
    fn unknown_profile_and_keys_are_named() {
        let err = Convai2Profile::builtin("huge").unwrap_err().to_string();
        assert!(err.contains("unknown profile `huge`"), "{err}");
        let text = Convai2Profile::builtin("smoke")
            .map(|_| PROFILES[2].1)
            .unwrap();
        let bad = text.replacen("[data]", "[data]\nbatchsize = 3", 1);
        let err = Convai2Profile::from_toml(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.toml: line") && err.contains("batchsize"),
            "{err}"
        );
    }
}
