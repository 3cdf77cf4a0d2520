//! Settings of the shallow-network suite.

use std::collections::BTreeMap;

use adaptable_meta::shallow::{ShallowFineTuneConfig, ShallowRetrainConfig};
use adaptable_tasks::shallow::ShallowTaskConfig;
use serde::{Deserialize, Serialize};

use crate::{ExperimentError, linear::Sweep};

/// The sweeps this suite runs: `d` and `T` (the authors' `run.py` and `run_vary_T.py`).
pub const SHALLOW_SWEEPS: [Sweep; 2] = [Sweep::Dim, Sweep::Tasks];

/// Settings of the shallow suite; the defaults are the authors' (§6.2 of the specification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShallowExperimentConfig {
    /// Root seed.
    pub seed: u64,
    /// Trials per sweep value; each draws a new task family, new data and a new initialisation.
    pub trials: usize,
    /// When `T = 2`, a second fine-tuning of rank `k ×` this factor is run next to rank `k`.
    pub two_task_rank_factor: usize,
    /// The task family at the defaults (T = 3, d = 10, N = 1000, n = 100, k = 1, σ = 0.1).
    pub task: ShallowTaskConfig,
    /// Retraining (both methods).
    pub retrain: ShallowRetrainConfig,
    /// Fine-tuning.
    pub finetune: ShallowFineTuneConfig,
    /// The values of each sweep.
    pub sweeps: BTreeMap<Sweep, Vec<usize>>,
}

impl Default for ShallowExperimentConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            trials: 10,
            two_task_rank_factor: 3,
            task: ShallowTaskConfig::default(),
            retrain: ShallowRetrainConfig::default(),
            finetune: ShallowFineTuneConfig::default(),
            sweeps: BTreeMap::from([
                (Sweep::Dim, vec![5, 10, 20]),
                (Sweep::Tasks, vec![2, 3, 5, 10]),
            ]),
        }
    }
}

impl ShallowExperimentConfig {
    /// Checks every count and rate; the error names the offending option.
    pub fn validate(&self) -> Result<(), ExperimentError> {
        let bad = |m: String| Err(ExperimentError::InvalidOption(m));
        if self.trials == 0 {
            return bad("--trials must be at least 1".into());
        }
        if self.two_task_rank_factor == 0 {
            return bad("the two-task rank factor must be at least 1".into());
        }
        if self.retrain.epochs == 0 || self.finetune.epochs == 0 {
            return bad("--retrain-epochs and --finetune-epochs must be at least 1".into());
        }
        for (name, lr) in [
            ("retraining lr", self.retrain.optimizer.lr),
            ("fine-tuning lr", self.finetune.optimizer.lr),
        ] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(format!("the {name} must be a positive number, got {lr}"));
            }
        }
        self.task.validate()?;
        for (sweep, values) in &self.sweeps {
            shallow_sweep(*sweep)?;
            if values.is_empty() {
                return bad(format!("sweep {sweep}: no values"));
            }
            if values.contains(&0) {
                return bad(format!(
                    "sweep {sweep}: value 0 is not a positive size (d and T must be at least 1)"
                ));
            }
        }
        Ok(())
    }

    /// The values of `sweep`, or an error when the suite does not define it.
    pub fn values(&self, sweep: Sweep) -> Result<&[usize], ExperimentError> {
        shallow_sweep(sweep)?;
        self.sweeps
            .get(&sweep)
            .map(Vec::as_slice)
            .ok_or_else(|| ExperimentError::InvalidOption(format!("sweep {sweep} has no values")))
    }

    /// The task family with the swept parameter set to `value`.
    pub fn setting(
        &self,
        sweep: Sweep,
        value: usize,
    ) -> Result<ShallowTaskConfig, ExperimentError> {
        let mut task = self.task.clone();
        match shallow_sweep(sweep)? {
            Sweep::Dim => task.dim = value,
            _ => task.tasks = value,
        }
        task.validate()?;
        Ok(task)
    }

    /// The fine-tuning ranks of a setting: `k`, and also `factor · k` when `T = 2`.
    pub fn finetune_ranks(&self, task: &ShallowTaskConfig) -> Vec<usize> {
        let mut ranks = vec![task.rank];
        if task.tasks == 2 && self.two_task_rank_factor > 1 {
            ranks.push(task.rank * self.two_task_rank_factor);
        }
        ranks
    }
}

/// Accepts `d` and `T`; the linear suite's other sweeps are not part of this experiment.
pub fn shallow_sweep(sweep: Sweep) -> Result<Sweep, ExperimentError> {
    if SHALLOW_SWEEPS.contains(&sweep) {
        Ok(sweep)
    } else {
        Err(ExperimentError::InvalidOption(format!(
            "the shallow suite sweeps d or T, not {sweep}"
        )))
    }
}

/// Parses `--sweep` for this suite: `d`, `T` (or `dim`, `tasks`) or `all`.
pub fn parse_shallow_sweeps(s: &str) -> Result<Vec<Sweep>, ExperimentError> {
    if s == "all" {
        return Ok(SHALLOW_SWEEPS.to_vec());
    }
    let sweep: Sweep = s.parse()?;
    shallow_sweep(sweep).map(|s| vec![s])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_authors_settings() {
        let c = ShallowExperimentConfig::default();
        c.validate().unwrap();
        assert_eq!((c.task.dim, c.task.tasks, c.task.rank), (10, 3, 1));
        assert_eq!(
            (c.task.retrain_samples, c.task.finetune_samples),
            (1000, 100)
        );
        assert_eq!(
            (c.retrain.epochs, c.finetune.epochs, c.trials),
            (40_000, 15_000, 10)
        );
        assert_eq!(c.retrain.optimizer.lr, 1e-3);
        assert_eq!(c.retrain.optimizer.weight_decay, 0.01);
        assert_eq!(c.values(Sweep::Tasks).unwrap(), &[2, 3, 5, 10]);
        let two = c.setting(Sweep::Tasks, 2).unwrap();
        assert_eq!(c.finetune_ranks(&two), vec![1, 3]);
        assert_eq!(c.finetune_ranks(&c.task), vec![1]);
    }

    #[test]
    fn bad_sweeps_and_sizes_are_rejected() {
        assert!(parse_shallow_sweeps("N").is_err());
        assert!(parse_shallow_sweeps("x").is_err());
        assert_eq!(parse_shallow_sweeps("all").unwrap().len(), 2);
        let mut c = ShallowExperimentConfig::default();
        c.sweeps.insert(Sweep::Dim, vec![5, 0]);
        assert!(c.validate().unwrap_err().to_string().contains("value 0"));
        let c = ShallowExperimentConfig {
            trials: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
