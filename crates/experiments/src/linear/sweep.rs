//! The parameters a linear sweep can vary.

use std::{fmt, str::FromStr};

use adaptable_tasks::linear::LinearTaskConfig;
use serde::{Deserialize, Serialize};

use crate::ExperimentError;

/// A swept parameter of the linear task family, named as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sweep {
    /// Dimension `d`.
    #[serde(rename = "d")]
    Dim,
    /// Number of retraining tasks `T`.
    #[serde(rename = "T")]
    Tasks,
    /// Retraining samples per task `N`.
    #[serde(rename = "N")]
    RetrainSamples,
    /// Fine-tuning samples `n`.
    #[serde(rename = "n")]
    FinetuneSamples,
    /// Perturbation rank `k`.
    #[serde(rename = "k")]
    Rank,
}

impl Sweep {
    /// All sweeps in the paper's order.
    pub const ALL: [Sweep; 5] = [
        Sweep::Dim,
        Sweep::Tasks,
        Sweep::RetrainSamples,
        Sweep::FinetuneSamples,
        Sweep::Rank,
    ];

    /// The paper's symbol, used in file names and legends (`vary-T.png`, "T=3, LoRA-ML").
    pub fn symbol(self) -> &'static str {
        match self {
            Sweep::Dim => "d",
            Sweep::Tasks => "T",
            Sweep::RetrainSamples => "N",
            Sweep::FinetuneSamples => "n",
            Sweep::Rank => "k",
        }
    }

    /// A readable description for reports.
    pub fn description(self) -> &'static str {
        match self {
            Sweep::Dim => "dimension d",
            Sweep::Tasks => "number of retraining tasks T",
            Sweep::RetrainSamples => "retraining samples per task N",
            Sweep::FinetuneSamples => "fine-tuning samples n",
            Sweep::Rank => "perturbation rank k",
        }
    }

    /// The task configuration with this parameter set to `value`.
    pub fn apply(self, base: &LinearTaskConfig, value: usize) -> LinearTaskConfig {
        let mut c = base.clone();
        match self {
            Sweep::Dim => c.dim = value,
            Sweep::Tasks => c.tasks = value,
            Sweep::RetrainSamples => c.retrain_samples = value,
            Sweep::FinetuneSamples => c.finetune_samples = value,
            Sweep::Rank => c.rank = value,
        }
        c
    }

    /// Parses a `--sweep` argument: a symbol or a long name, or `all`.
    pub fn parse_selection(s: &str) -> Result<Vec<Sweep>, ExperimentError> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        s.parse().map(|sweep| vec![sweep])
    }
}

impl fmt::Display for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl FromStr for Sweep {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "d" | "dim" => Sweep::Dim,
            "T" | "tasks" => Sweep::Tasks,
            "N" | "retrain-samples" => Sweep::RetrainSamples,
            "n" | "finetune-samples" => Sweep::FinetuneSamples,
            "k" | "rank" => Sweep::Rank,
            other => return Err(ExperimentError::UnknownSweep(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_and_case_matters() {
        for s in Sweep::ALL {
            assert_eq!(s.symbol().parse::<Sweep>().unwrap(), s);
        }
        assert_eq!("N".parse::<Sweep>().unwrap(), Sweep::RetrainSamples);
        assert_eq!("n".parse::<Sweep>().unwrap(), Sweep::FinetuneSamples);
        let err = "x".parse::<Sweep>().unwrap_err().to_string();
        assert!(err.contains("unknown sweep `x`"), "{err}");
        assert_eq!(Sweep::parse_selection("all").unwrap().len(), 5);
    }

    #[test]
    fn apply_changes_one_parameter() {
        let base = LinearTaskConfig::default();
        let c = Sweep::Tasks.apply(&base, 5);
        assert_eq!(c.tasks, 5);
        assert_eq!(c.dim, base.dim);
    }
}
