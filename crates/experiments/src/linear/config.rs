//! The TOML configuration of the linear suite.

use std::{collections::BTreeMap, path::Path};

use adaptable_meta::linear::{LoraMlConfig, StandardRetrainingConfig};
use adaptable_tasks::linear::LinearTaskConfig;
use serde::{Deserialize, Serialize};

use super::Sweep;
use crate::ExperimentError;

/// The shipped configuration file (`crates/experiments/configs/linear.toml`), equal to the defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/linear.toml");

/// Settings of the linear suite; see `configs/linear.toml` for every key with its meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearExperimentConfig {
    /// Root seed.
    pub seed: u64,
    /// Runs per sweep value.
    pub runs: usize,
    /// Retrain on the population loss.
    pub population: bool,
    /// Fine-tuning rank multiplier when `T = 2`.
    pub two_task_rank_factor: usize,
    /// Default task family.
    pub task: LinearTaskConfig,
    /// Standard retraining.
    pub standard: StandardRetrainingConfig,
    /// LoRA-ML retraining.
    pub lora_ml: LoraMlConfig,
    /// Fine-tuning step size and initialisation.
    pub finetune: FineTuneSection,
    /// The sweeps by name.
    pub sweeps: BTreeMap<Sweep, SweepSpec>,
}

/// Fine-tuning settings shared by all sweeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuneSection {
    /// Step size.
    pub lr: f64,
    /// Standard deviation of the initial factors.
    pub init_std: f64,
}

impl Default for FineTuneSection {
    fn default() -> Self {
        Self {
            lr: 0.005,
            init_std: 0.1,
        }
    }
}

/// One sweep: the values taken by its parameter, and the fine-tuning length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Values of the swept parameter.
    pub values: Vec<usize>,
    /// Fine-tuning gradient steps.
    pub finetune_steps: usize,
}

impl Default for LinearExperimentConfig {
    /// The paper's settings; `configs/linear.toml` spells out the same values (checked by a test).
    fn default() -> Self {
        let sweep = |values: &[usize], finetune_steps| SweepSpec {
            values: values.to_vec(),
            finetune_steps,
        };
        Self {
            seed: 0,
            runs: 5,
            population: false,
            two_task_rank_factor: 3,
            task: LinearTaskConfig::default(),
            standard: StandardRetrainingConfig::default(),
            lora_ml: LoraMlConfig::default(),
            finetune: FineTuneSection::default(),
            sweeps: BTreeMap::from([
                (Sweep::Dim, sweep(&[5, 10, 20], 1400)),
                (Sweep::Tasks, sweep(&[2, 3, 5], 10_000)),
                (Sweep::RetrainSamples, sweep(&[100, 1000, 10_000], 1000)),
                (Sweep::FinetuneSamples, sweep(&[100, 1000, 10_000], 1000)),
                (Sweep::Rank, sweep(&[1, 2, 3], 10_000)),
            ]),
        }
    }
}

impl LinearExperimentConfig {
    /// Parses a TOML document; `origin` names it in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ExperimentError> {
        let config: Self = toml::from_str(text).map_err(|e| ExperimentError::Config {
            path: origin.to_path_buf(),
            message: describe_toml_error(text, &e),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks values that TOML types cannot express.
    pub fn validate(&self, origin: &Path) -> Result<(), ExperimentError> {
        let bad = |message: String| ExperimentError::Config {
            path: origin.to_path_buf(),
            message,
        };
        if self.runs == 0 {
            return Err(bad("`runs` must be at least 1".into()));
        }
        if self.two_task_rank_factor == 0 {
            return Err(bad("`two_task_rank_factor` must be at least 1".into()));
        }
        self.task
            .validate()
            .map_err(|e| bad(format!("[task] {e}")))?;
        for (sweep, spec) in &self.sweeps {
            if spec.values.is_empty() {
                return Err(bad(format!("[sweeps.{sweep}] `values` is empty")));
            }
            if let Some(v) = spec.values.iter().find(|&&v| v == 0) {
                return Err(bad(format!(
                    "[sweeps.{sweep}] value {v} must be a positive integer"
                )));
            }
        }
        for (name, lr) in [
            ("standard.lr", self.standard.lr),
            ("lora_ml.inner_lr", self.lora_ml.inner_lr),
            ("lora_ml.outer_lr", self.lora_ml.outer_lr),
            ("finetune.lr", self.finetune.lr),
        ] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(bad(format!("`{name}` must be a positive number, got {lr}")));
            }
        }
        Ok(())
    }

    /// The spec of `sweep`, or an error when the configuration does not define it.
    pub fn sweep(&self, sweep: Sweep) -> Result<&SweepSpec, ExperimentError> {
        self.sweeps.get(&sweep).ok_or_else(|| {
            ExperimentError::InvalidOption(format!(
                "sweep `{sweep}` is not defined in the configuration"
            ))
        })
    }
}

/// Formats a TOML error as one line: `line L, column C: message`.
pub(crate) fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_matches_the_paper_defaults() {
        let c =
            LinearExperimentConfig::from_toml(DEFAULT_CONFIG, Path::new("linear.toml")).unwrap();
        assert_eq!(c, LinearExperimentConfig::default());
        assert_eq!(c.task, LinearTaskConfig::default());
        assert_eq!(c.lora_ml, LoraMlConfig::default());
        assert_eq!(c.standard, StandardRetrainingConfig::default());
        assert_eq!(c.runs, 5);
        assert_eq!(c.sweeps.len(), 5);
        assert_eq!(c.sweeps[&Sweep::Tasks].finetune_steps, 10_000);
        assert_eq!(c.sweeps[&Sweep::Dim].values, vec![5, 10, 20]);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let err = LinearExperimentConfig::from_toml(
            "runs = 2\n[task]\ndimension = 4\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x.toml: line 3"), "{err}");
        assert!(err.contains("dimension"), "{err}");
    }

    #[test]
    fn zero_dimensions_and_unknown_sweeps_are_rejected() {
        let err = LinearExperimentConfig::from_toml("[task]\ndim = 0\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`dim` must be at least 1"), "{err}");
        let err = LinearExperimentConfig::from_toml(
            "[sweeps.q]\nvalues = [1]\nfinetune_steps = 1\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains('q'), "{err}");
        let err = LinearExperimentConfig::from_toml("[task]\ndim = -3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
