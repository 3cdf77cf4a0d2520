//! `adapter_config.json`: the subset of PEFT's `LoraConfig` this crate writes and checks.

use std::path::Path;

use adaptable_lora::{LoraConfig, LoraScaling};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ModelsError;

/// PEFT's `target_modules`: a list of module names matched as dotted suffixes, or one regex string
/// (`"all-linear"` is PEFT's shorthand for every linear layer except the output head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Names; a module is targeted when its full name equals one or ends with `.<name>`.
    List(Vec<String>),
    /// A regular expression that must match the full module name (or `"all-linear"`).
    Pattern(String),
}

impl TargetModules {
    /// Whether PEFT would target the module with full name `name` (relative to the HF model).
    ///
    /// Returns `None` for a regex pattern other than `"all-linear"`, which this crate does not
    /// evaluate (it has no regex engine); import reports that as a problem.
    pub fn matches(&self, name: &str) -> Option<bool> {
        match self {
            TargetModules::List(names) => Some(
                names
                    .iter()
                    .any(|t| name == t || name.ends_with(&format!(".{t}"))),
            ),
            // Every encoder linear layer is a `Linear`; the head is excluded by PEFT itself.
            TargetModules::Pattern(p) if p == "all-linear" => {
                Some(!name.starts_with("classifier."))
            }
            TargetModules::Pattern(_) => None,
        }
    }
}

/// The fields of a PEFT LoRA `adapter_config.json` that this crate reads or writes.
///
/// Unknown fields of a file written by PEFT are accepted and ignored on import; export writes only
/// fields that every PEFT release since 0.7 knows, so older releases do not reject the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftAdapterConfig {
    /// Always `"LORA"`.
    pub peft_type: String,
    /// `"SEQ_CLS"` for a sequence classifier, `"FEATURE_EXTRACTION"` for an encoder alone.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model (hub id or local directory) the adapter belongs to.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Hub revision of the base model.
    #[serde(default)]
    pub revision: Option<String>,
    /// Whether the adapter was saved for inference.
    #[serde(default)]
    pub inference_mode: bool,
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`: the scale is `lora_alpha / r`, or `lora_alpha / √r` with `use_rslora`.
    pub lora_alpha: f64,
    /// Dropout on the adapter input.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Which modules carry adapters.
    pub target_modules: TargetModules,
    /// Rank-stabilised scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA (not supported here; must be false).
    #[serde(default)]
    pub use_dora: bool,
    /// Whether base weights are stored `[in, out]` (GPT-2 `Conv1D`; must be false here).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Which biases are trained and saved (`"none"` is the only value supported here).
    #[serde(default = "default_bias")]
    pub bias: String,
    /// Modules trained and saved in full (`["classifier"]` for the head).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// PEFT's initialisation flag (irrelevant for a trained adapter; kept for PEFT).
    #[serde(default = "default_init")]
    pub init_lora_weights: Value,
    /// Restricts adapters to some layer indices (must be null here).
    #[serde(default)]
    pub layers_to_transform: Option<Value>,
    /// Name of the layer list used with `layers_to_transform`.
    #[serde(default)]
    pub layers_pattern: Option<Value>,
    /// Per-module ranks (must be empty here: every adapter of a bank has one rank).
    #[serde(default)]
    pub rank_pattern: serde_json::Map<String, Value>,
    /// Per-module alphas (must be empty here).
    #[serde(default)]
    pub alpha_pattern: serde_json::Map<String, Value>,
}

fn default_bias() -> String {
    "none".into()
}

fn default_init() -> Value {
    Value::Bool(true)
}

impl PeftAdapterConfig {
    /// A LoRA configuration with the scale of `lora`.
    ///
    /// PEFT knows only `alpha / r` and `alpha / √r`, so [`LoraScaling::Unit`] is written as
    /// `lora_alpha = r` (scale 1).
    pub fn from_lora(lora: &LoraConfig, target_modules: Vec<String>) -> Self {
        let (lora_alpha, use_rslora) = match lora.scaling {
            LoraScaling::Standard => (lora.alpha, false),
            LoraScaling::RsLora => (lora.alpha, true),
            LoraScaling::Unit => (lora.rank as f64, false),
        };
        Self {
            peft_type: "LORA".into(),
            task_type: None,
            base_model_name_or_path: None,
            revision: None,
            inference_mode: true,
            r: lora.rank,
            lora_alpha,
            lora_dropout: lora.dropout,
            target_modules: TargetModules::List(target_modules),
            use_rslora,
            use_dora: false,
            fan_in_fan_out: false,
            bias: default_bias(),
            modules_to_save: None,
            init_lora_weights: default_init(),
            layers_to_transform: None,
            layers_pattern: None,
            rank_pattern: serde_json::Map::new(),
            alpha_pattern: serde_json::Map::new(),
        }
    }

    /// The scale PEFT applies to `B A`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The equivalent [`LoraConfig`] (rank, alpha, scaling rule and dropout).
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig::new(self.r)
            .with_alpha(self.lora_alpha)
            .with_scaling(if self.use_rslora {
                LoraScaling::RsLora
            } else {
                LoraScaling::Standard
            })
            .with_dropout(self.lora_dropout)
    }

    /// Whether the head (`classifier`) is saved in full with the adapter.
    pub fn saves_head(&self) -> bool {
        self.modules_to_save
            .as_ref()
            .is_some_and(|m| m.iter().any(|n| n == "classifier"))
    }

    /// Reads `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|e| ModelsError::PeftConfig(format!("{}: {e}", path.display())))
    }

    /// Writes `adapter_config.json` (pretty-printed, as PEFT does).
    pub fn write(&self, path: &Path) -> Result<(), ModelsError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ModelsError::PeftConfig(format!("cannot serialise: {e}")))?;
        std::fs::write(path, text + "\n").map_err(|source| ModelsError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_targets_match_as_dotted_suffixes() {
        let t = TargetModules::List(vec!["query".into(), "output.dense".into()]);
        assert_eq!(
            t.matches("roberta.encoder.layer.0.attention.self.query"),
            Some(true)
        );
        assert_eq!(
            t.matches("roberta.encoder.layer.0.output.dense"),
            Some(true)
        );
        assert_eq!(
            t.matches("roberta.encoder.layer.0.intermediate.dense"),
            Some(false)
        );
        // A suffix must start at a dot: `myquery` is not `query`.
        assert_eq!(t.matches("x.myquery"), Some(false));
        assert_eq!(TargetModules::Pattern(".*q".into()).matches("q"), None);
    }

    #[test]
    fn unit_scaling_is_written_as_alpha_equal_rank() {
        let lora = LoraConfig::new(4)
            .with_alpha(32.0)
            .with_scaling(LoraScaling::Unit);
        let c = PeftAdapterConfig::from_lora(&lora, vec![]);
        assert_eq!((c.lora_alpha, c.scale()), (4.0, 1.0));
        let rs = PeftAdapterConfig::from_lora(
            &LoraConfig::new(4)
                .with_alpha(8.0)
                .with_scaling(LoraScaling::RsLora),
            vec![],
        );
        assert!(rs.use_rslora);
        assert_eq!(rs.scale(), 4.0);
        assert_eq!(rs.lora_config().scale(), 4.0);
    }

    #[test]
    fn parses_a_peft_written_config_with_unknown_fields() {
        let json = r#"{"peft_type":"LORA","task_type":"SEQ_CLS","r":8,"lora_alpha":16,
            "lora_dropout":0.1,"target_modules":["query","value"],"bias":"none",
            "modules_to_save":["classifier","score"],"megatron_config":null,"use_dora":false,
            "init_lora_weights":true,"rank_pattern":{},"alpha_pattern":{}}"#;
        let c: PeftAdapterConfig = serde_json::from_str(json).expect("valid");
        assert_eq!(c.r, 8);
        assert_eq!(c.scale(), 2.0);
        assert!(c.saves_head());
    }
}
