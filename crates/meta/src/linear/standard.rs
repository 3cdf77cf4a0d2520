//! Standard retraining (SR): one matrix for all tasks, no adapters.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{BatchedStatistics, FINITE_CHECK_EVERY, ensure_finite};
use crate::MetaError;

/// Gradient descent on the mean task loss, from `A₀ = 0`. Defaults: 3000 steps of size 0.03 (paper §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandardRetrainingConfig {
    /// Number of gradient steps.
    pub steps: usize,
    /// Step size.
    pub lr: f64,
}

impl Default for StandardRetrainingConfig {
    fn default() -> Self {
        Self {
            steps: 3000,
            lr: 0.03,
        }
    }
}

/// The result of standard retraining.
#[derive(Debug, Clone)]
pub struct StandardRetrainingOutcome {
    /// The retrained matrices `Â`, `[groups, d, d]`.
    pub a_hat: Tensor<3>,
    /// The mean task loss of each group at the end, `[groups]`.
    pub final_loss: Tensor<1>,
}

/// Runs SR on `groups × tasks` problems laid out as in [`BatchedStatistics::mean_over_tasks`].
///
/// SR minimises `(1/T) Σ_t L_t(A)`; since that is the loss under the task-averaged statistics, each step
/// costs one `d×d` product per group whatever `T` is.
pub fn standard_retraining(
    stats: &BatchedStatistics,
    tasks: usize,
    config: &StandardRetrainingConfig,
) -> Result<StandardRetrainingOutcome, MetaError> {
    if tasks == 0 || !stats.batch().is_multiple_of(tasks) {
        return Err(MetaError::Shape(format!(
            "standard retraining: {} problems do not split into groups of {tasks} tasks",
            stats.batch()
        )));
    }
    let mean = stats.mean_over_tasks(tasks);
    let d = stats.dim();
    let mut a = Tensor::<3>::zeros([mean.batch(), d, d], &stats.sxx.device());
    for step in 0..config.steps {
        a = a.clone() - mean.gradient(a).mul_scalar(config.lr);
        if (step + 1) % FINITE_CHECK_EVERY == 0 {
            ensure_finite("standard retraining", step + 1, mean.loss(a.clone()))?;
        }
    }
    let final_loss = mean.loss(a.clone());
    ensure_finite("standard retraining", config.steps, final_loss.clone())?;
    Ok(StandardRetrainingOutcome {
        a_hat: a,
        final_loss,
    })
}
