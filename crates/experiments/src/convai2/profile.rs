//! Experiment profiles of the ConvAI2 suite (`crates/experiments/configs/convai2-<name>.toml`).

use std::path::{Path, PathBuf};

use adaptable_lora::LoraConfig;
use adaptable_meta::{
    OptimizerSchedule,
    finetune::{FinetuneConfig, FinetuneMethod},
    retrain::{RetrainConfig, RetrainMethod},
};
use adaptable_models::{LoraTargets, ModelType, PairFormat};
use adaptable_tasks::convai2::SplitConfig;
use serde::{Deserialize, Serialize};

use crate::ExperimentError;

/// The built-in profiles, by name.
pub const PROFILES: [(&str, &str); 4] = [
    ("quick", include_str!("../../configs/convai2-quick.toml")),
    (
        "standard",
        include_str!("../../configs/convai2-standard.toml"),
    ),
    ("paper", include_str!("../../configs/convai2-paper.toml")),
    ("smoke", include_str!("../../configs/convai2-smoke.toml")),
];

/// A ConvAI2 experiment: model, data, methods and their hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convai2Profile {
    /// Seeds (runs) per method; seed `s` retrains and fine-tunes with the same `s`. A seed drives
    /// the adapter and head initialisation, dropout, the batch order and the sampled negatives; the
    /// persona split does not depend on it (`split.seed`).
    pub seeds: usize,
    /// Retraining methods to compare.
    pub methods: Vec<RetrainMethod>,
    /// The adapter rank of LoRA-ML retraining: `retrain` (`retrain.lora.rank`, one retraining
    /// fine-tuned at every rank) or `finetune` (one LoRA-ML retraining per fine-tuning rank, as the
    /// paper's code does).
    #[serde(default)]
    pub lora_ml_rank: LoraMlRank,
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
    /// Measured throughput, for the cost estimate of `--plan` (absent: no time estimate).
    #[serde(default)]
    pub cost: Option<CostSection>,
}

/// Which rank LoRA-ML retrains its task adapters with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoraMlRank {
    /// `retrain.lora.rank`, whatever the fine-tuning rank.
    #[default]
    Retrain,
    /// Equal to the fine-tuning rank: one LoRA-ML retraining per rank of `finetune.ranks`.
    Finetune,
}

/// How a (context, candidate) pair becomes one token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairFormatSetting {
    /// Each segment tokenised with its own special tokens, then concatenated (the authors' code):
    /// `<s> ctx </s><s> cand </s>`, `[CLS] ctx [SEP][CLS] cand [SEP]`; every token type 0.
    Paper,
    /// The model's own pair template: BERT `[CLS] ctx [SEP] cand [SEP]` with token types 0 then 1,
    /// RoBERTa `<s> ctx </s></s> cand </s>`.
    Native,
}

impl PairFormatSetting {
    /// The default of a model family: `paper` for RoBERTa (the paper's model and code), `native`
    /// for BERT, whose pretraining saw pairs only as `[CLS] a [SEP] b [SEP]` with segments 0/1 (the
    /// paper format gives it a second `[CLS]` mid-sequence and no segment change, an input it never
    /// saw). Measured on MiniLM with seed 0 of the standard profile, `native` was ahead of `paper`
    /// for both methods in fine-tuning and retraining accuracy, by amounts inside one seed's noise
    /// (docs/results/convai2.md, "Pair format").
    pub fn default_for(family: ModelType) -> Self {
        match family {
            ModelType::Roberta => PairFormatSetting::Paper,
            ModelType::Bert => PairFormatSetting::Native,
        }
    }

    /// The tokenizer's format.
    pub fn format(self) -> PairFormat {
        match self {
            PairFormatSetting::Paper => PairFormat::Concatenated,
            PairFormatSetting::Native => PairFormat::Native,
        }
    }

    /// The identifier used in profiles and reports (`paper`, `native`).
    pub fn id(self) -> &'static str {
        match self {
            PairFormatSetting::Paper => "paper",
            PairFormatSetting::Native => "native",
        }
    }
}

/// Throughput of the encoder on the host a profile is sized for: the cost model of `--plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSection {
    /// Padded tokens per second through forward and backward (training).
    pub train_tokens_per_s: f64,
    /// Padded tokens per second through the forward pass only (evaluation, head fine-tuning).
    pub eval_tokens_per_s: f64,
    /// Where and how the rates were measured.
    pub measured_on: String,
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
    /// Tokens per (context, candidate) pair; the oldest context is cut first. Absent: the model's
    /// position limit, so that a pair is cut only when the model could not read it whole.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Pair format (absent: the model family's default, [`PairFormatSetting::default_for`]).
    #[serde(default)]
    pub pair_format: Option<PairFormatSetting>,
    /// Distractors per training example, so `negatives + 1` candidates (K) per training example
    /// (evaluation always scores all 20 candidates).
    pub negatives: usize,
    /// Examples per training batch.
    pub batch_size: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Refuse to run without a train split (`--data`): the paper retrains on train-split personas.
    #[serde(default)]
    pub require_train: bool,
    /// Keep at most this many training examples per task (absent: all).
    #[serde(default)]
    pub max_train_examples: Option<usize>,
    /// Keep at most this many held-out examples per task (absent: all).
    #[serde(default)]
    pub max_heldout_examples: Option<usize>,
}

/// Which fine-tuning kinds follow which retraining method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// Every retraining method is fine-tuned with every kind of `finetune.kinds`.
    #[default]
    All,
    /// As the authors' code pairs them: last-layer-ML → head; SR and Reptile → LoRA and head;
    /// LoRA-ML → LoRA (restricted to `finetune.kinds`).
    Paper,
}

/// Fine-tuning on the unseen tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSection {
    /// What is fine-tuned: `lora` (fresh adapter + head) and/or `last-layer` (fresh head only,
    /// reported as `head`).
    pub kinds: Vec<FinetuneMethod>,
    /// Which kinds follow which retraining method.
    #[serde(default)]
    pub pairing: Pairing,
    /// Adapter ranks of LoRA fine-tuning (one fine-tuning per rank).
    pub ranks: Vec<usize>,
    /// Optimiser and schedule.
    pub optim: OptimizerSchedule,
    /// Adapter settings; `rank` is replaced by each of `ranks`.
    #[serde(default)]
    pub lora: LoraConfig,
}

impl FinetuneSection {
    /// The fine-tuning kinds that follow retraining with `method`.
    pub fn kinds_for(&self, method: RetrainMethod) -> Vec<FinetuneMethod> {
        let paired: &[FinetuneMethod] = match (self.pairing, method) {
            (Pairing::All, _) => &self.kinds,
            (Pairing::Paper, RetrainMethod::LastLayerMl) => &[FinetuneMethod::LastLayer],
            (Pairing::Paper, RetrainMethod::LoraMl) => &[FinetuneMethod::Lora],
            (Pairing::Paper, RetrainMethod::Standard | RetrainMethod::Reptile) => {
                &[FinetuneMethod::Lora, FinetuneMethod::LastLayer]
            }
        };
        paired
            .iter()
            .copied()
            .filter(|k| self.kinds.contains(k))
            .collect()
    }

    /// The ranks a kind runs at (`[0]`, meaning "no adapter", for head fine-tuning).
    pub fn ranks_of(&self, kind: FinetuneMethod) -> Vec<usize> {
        match kind {
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
                "unknown profile `{name}`; expected one of: quick, standard, paper, smoke (or a TOML file path)"
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
            ("data.max_len", profile.data.max_len.unwrap_or(1)),
            ("data.negatives", profile.data.negatives),
            ("data.batch_size", profile.data.batch_size),
            ("data.eval_batch_size", profile.data.eval_batch_size),
            ("retrain.optim.epochs", profile.retrain.optim.epochs),
            ("finetune.optim.epochs", profile.finetune.optim.epochs),
        ] {
            if value == 0 {
                return Err(bad(format!("`{key}` must be at least 1")));
            }
        }
        if profile.finetune.kinds.is_empty() {
            return Err(bad("`finetune.kinds` is empty".into()));
        }
        let lora = profile.finetune.kinds.contains(&FinetuneMethod::Lora)
            || profile.lora_ml_rank == LoraMlRank::Finetune;
        if lora && (profile.finetune.ranks.is_empty() || profile.finetune.ranks.contains(&0)) {
            return Err(bad("`finetune.ranks` must list ranks of at least 1".into()));
        }
        if let Some(method) = profile
            .methods
            .iter()
            .find(|m| profile.finetune.kinds_for(**m).is_empty())
        {
            return Err(bad(format!(
                "retraining method `{}` has no fine-tuning kind under `finetune.pairing` and `finetune.kinds`",
                method.id()
            )));
        }
        if let Some(cost) = &profile.cost
            && !(cost.train_tokens_per_s > 0.0 && cost.eval_tokens_per_s > 0.0)
        {
            return Err(bad("`cost` rates must be positive".into()));
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
        assert_eq!(paper.lora_ml_rank, LoraMlRank::Finetune);
        assert_eq!(paper.data.max_len, None, "the paper profile cuts no pair");
        let standard = Convai2Profile::builtin("standard").unwrap();
        assert!(standard.seeds >= 5);
        assert!(standard.data.negatives + 1 >= 4);
    }

    #[test]
    fn the_paper_pairing_follows_the_authors_code() {
        use FinetuneMethod::{LastLayer as Head, Lora};
        let paper = Convai2Profile::builtin("paper").unwrap();
        assert_eq!(paper.finetune.pairing, Pairing::Paper);
        let kinds = |m| paper.finetune.kinds_for(m);
        assert_eq!(kinds(RetrainMethod::LastLayerMl), [Head]);
        assert_eq!(kinds(RetrainMethod::LoraMl), [Lora]);
        assert_eq!(kinds(RetrainMethod::Standard), [Lora, Head]);
        assert_eq!(kinds(RetrainMethod::Reptile), [Lora, Head]);
        // `all` pairs every method with every listed kind.
        let mut all = paper.finetune.clone();
        all.pairing = Pairing::All;
        assert_eq!(all.kinds_for(RetrainMethod::LastLayerMl), [Lora, Head]);
        // The paper pairing is restricted to the listed kinds; a method left with none is an error.
        let text = PROFILES[2]
            .1
            .replace(r#"kinds = ["lora", "last-layer"]"#, r#"kinds = ["lora"]"#);
        let err = Convai2Profile::from_toml(&text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`last-layer-ml` has no fine-tuning kind"),
            "{err}"
        );
    }

    #[test]
    fn unknown_profile_and_keys_are_named() {
        let err = Convai2Profile::builtin("huge").unwrap_err().to_string();
        assert!(err.contains("unknown profile `huge`"), "{err}");
        let text = Convai2Profile::builtin("smoke")
            .map(|_| PROFILES[3].1)
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
