//! Encoder hyper-parameters, read from a Hugging Face `config.json`.

use std::path::Path;

use adaptable_lora::LoraConfig;
use adaptable_lora::linear::LoraInit;
use serde::{Deserialize, Serialize};

use crate::ModelsError;
use crate::targets::LoraTargets;

/// The encoder family, which decides how position ids are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// RoBERTa: positions start at `pad_token_id + 1`, padding tokens get position `pad_token_id`.
    Roberta,
    /// BERT family (BERT, MiniLM, ...): positions `0..L`.
    Bert,
}

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU, `x Φ(x)` (HF `"gelu"`).
    Gelu,
    /// The tanh approximation of GELU (HF `"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// ReLU.
    Relu,
}

/// Per-task adapter banks for every targeted encoder layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Rank, scale and dropout of every adapter.
    pub lora: LoraConfig,
    /// Adapters per bank (one per task).
    pub tasks: usize,
    /// Which layers are adapted.
    pub targets: LoraTargets,
    /// Initialisation of the `A` factors.
    pub init: LoraInit,
}

impl AdapterConfig {
    /// `tasks` adapters with `lora` on all encoder linear layers, PEFT-style initialisation.
    pub fn new(lora: LoraConfig, tasks: usize) -> Self {
        Self {
            lora,
            tasks,
            targets: LoraTargets::ALL,
            init: LoraInit::KaimingUniform,
        }
    }

    /// Sets the adapted layers.
    pub fn with_targets(mut self, targets: LoraTargets) -> Self {
        self.targets = targets;
        self
    }
}

/// Architecture of a RoBERTa/BERT encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Family (position-id convention).
    pub model_type: ModelType,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size `h`.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`h` must be divisible by it).
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Rows of the position-embedding table (514 for RoBERTa, 512 for BERT).
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout after embeddings, attention output and feed-forward output.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Padding token id (also RoBERTa's `padding_idx` for positions).
    pub pad_token_id: usize,
    /// Dropout inside classification heads (HF `classifier_dropout`, defaulting to the hidden one).
    pub classifier_dropout: Option<f64>,
    /// Whether the encoder has a pooler (`tanh(dense(h[CLS]))`), needed by the multiple-choice head.
    pub with_pooler: bool,
    /// Optional per-task LoRA adapter banks.
    pub adapters: Option<AdapterConfig>,
}

/// The subset of an HF `config.json` this crate reads; other fields are ignored.
#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default)]
    classifier_dropout: Option<f64>,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}

impl EncoderConfig {
    /// Reads an HF `config.json` (`model_type` `"roberta"` or `"bert"`).
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self, ModelsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_hf(&text, path)
    }

    /// Parses the text of an HF `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self, ModelsError> {
        Self::parse_hf(text, Path::new(""))
    }

    fn parse_hf(text: &str, path: &Path) -> Result<Self, ModelsError> {
        let invalid = |message: String| ModelsError::InvalidConfig {
            path: path.to_path_buf(),
            message,
        };
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let model_type = match hf.model_type.as_str() {
            "roberta" => ModelType::Roberta,
            "bert" => ModelType::Bert,
            other => {
                return Err(ModelsError::UnsupportedModelType {
                    path: path.to_path_buf(),
                    found: other.to_string(),
                });
            }
        };
        let hidden_act = match hf.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(invalid(format!("unsupported hidden_act {other:?}"))),
        };
        if let Some(kind) = hf.position_embedding_type.as_deref()
            && kind != "absolute"
        {
            return Err(invalid(format!(
                "unsupported position_embedding_type {kind:?} (only \"absolute\")"
            )));
        }
        let pad_token_id = hf.pad_token_id.unwrap_or(match model_type {
            ModelType::Roberta => 1,
            ModelType::Bert => 0,
        });
        let config = Self {
            model_type,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            intermediate_size: hf.intermediate_size,
            hidden_act,
            max_position_embeddings: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size,
            layer_norm_eps: hf.layer_norm_eps,
            hidden_dropout_prob: hf.hidden_dropout_prob,
            attention_probs_dropout_prob: hf.attention_probs_dropout_prob,
            pad_token_id,
            classifier_dropout: hf.classifier_dropout,
            with_pooler: false,
            adapters: None,
        };
        config.validate().map_err(|e| match e {
            ModelsError::InvalidArgument(m) => invalid(m),
            other => other,
        })?;
        Ok(config)
    }

    /// The roberta-base architecture (125M parameters), for tests and benchmarks with random weights.
    pub fn roberta_base() -> Self {
        Self {
            model_type: ModelType::Roberta,
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 514,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            pad_token_id: 1,
            classifier_dropout: None,
            with_pooler: false,
            adapters: None,
        }
    }

    /// The all-MiniLM-L6-v2 architecture (22M parameters).
    pub fn minilm_l6() -> Self {
        Self {
            model_type: ModelType::Bert,
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            pad_token_id: 0,
            classifier_dropout: None,
            with_pooler: false,
            adapters: None,
        }
    }

    /// Sets whether the encoder has a pooler.
    pub fn with_pooler(mut self, with_pooler: bool) -> Self {
        self.with_pooler = with_pooler;
        self
    }

    /// Attaches per-task adapter banks.
    pub fn with_adapters(mut self, adapters: Option<AdapterConfig>) -> Self {
        self.adapters = adapters;
        self
    }

    /// Sets every dropout probability (hidden, attention, classifier) at once; 0 disables dropout.
    pub fn with_dropout(mut self, prob: f64) -> Self {
        self.hidden_dropout_prob = prob;
        self.attention_probs_dropout_prob = prob;
        self.classifier_dropout = Some(prob);
        self
    }

    /// The dropout used inside classification heads.
    pub fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// The longest token sequence the position table allows.
    pub fn max_sequence_length(&self) -> usize {
        match self.model_type {
            // Positions pad+1 ..= pad+L must fit in the table.
            ModelType::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id + 1),
            ModelType::Bert => self.max_position_embeddings,
        }
    }

    /// Checks sizes and probabilities.
    pub fn validate(&self) -> Result<(), ModelsError> {
        let bad = |m: String| Err(ModelsError::InvalidArgument(m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            return bad("hidden_size and num_attention_heads must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.vocab_size == 0 || self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            return bad(
                "vocab_size, type_vocab_size and max_position_embeddings must be positive".into(),
            );
        }
        if self.pad_token_id >= self.vocab_size {
            return bad(format!(
                "pad_token_id {} is outside the vocabulary of {}",
                self.pad_token_id, self.vocab_size
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("classifier_dropout", self.head_dropout()),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be in [0, 1), got {p}"));
            }
        }
        if let Some(adapters) = &self.adapters {
            adapters.lora.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_roberta_and_rejects_unknown_type() {
        let json = r#"{"model_type":"roberta","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":20,
            "type_vocab_size":1,"layer_norm_eps":1e-5,"pad_token_id":1}"#;
        let c = EncoderConfig::from_hf_json(json).expect("valid config");
        assert_eq!(c.model_type, ModelType::Roberta);
        assert_eq!(c.max_sequence_length(), 18);

        let gpt = json.replace("roberta", "gpt2");
        let err = EncoderConfig::from_hf_json(&gpt).expect_err("gpt2 is unsupported");
        assert!(matches!(err, ModelsError::UnsupportedModelType { .. }));
        assert!(err.to_string().contains("gpt2"));
    }

    #[test]
    fn rejects_malformed_json_and_bad_heads() {
        assert!(matches!(
            EncoderConfig::from_hf_json("{not json"),
            Err(ModelsError::InvalidConfig { .. })
        ));
        let json = r#"{"model_type":"bert","vocab_size":10,"hidden_size":10,"num_hidden_layers":1,
            "num_attention_heads":3,"intermediate_size":16,"max_position_embeddings":20}"#;
        assert!(matches!(
            EncoderConfig::from_hf_json(json),
            Err(ModelsError::InvalidConfig { .. })
        ));
    }
}
