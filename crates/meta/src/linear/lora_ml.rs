//! LoRA-ML: the base matrix trained jointly with one symmetric low-rank adapter per task.

use adaptable_lora::MatrixAdapterBank;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{BatchedStatistics, FINITE_CHECK_EVERY, ensure_finite, expand_groups, sum_groups};
use crate::MetaError;

/// Alternating gradient descent on `Σ_t L_t(A + U_t U_tᵀ)` (paper §5, as the authors' code runs it):
/// each outer step takes `inner_steps` adapter steps, then one step on `A`.
/// Defaults: 3000 outer × 10 inner steps, inner step 0.003, outer step 0.03, `U ~ N(0, 0.1²)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraMlConfig {
    /// Outer (base) steps.
    pub outer_steps: usize,
    /// Adapter steps per outer step.
    pub inner_steps: usize,
    /// Adapter step size.
    pub inner_lr: f64,
    /// Base step size (applied to the task-averaged gradient).
    pub outer_lr: f64,
    /// Standard deviation of the initial adapter entries.
    pub init_std: f64,
}

impl Default for LoraMlConfig {
    fn default() -> Self {
        Self {
            outer_steps: 3000,
            inner_steps: 10,
            inner_lr: 0.003,
            outer_lr: 0.03,
            init_std: 0.1,
        }
    }
}

/// The result of LoRA-ML retraining.
#[derive(Debug, Clone)]
pub struct LoraMlOutcome {
    /// The retrained base `Â`, `[groups, d, d]`; the only part kept for fine-tuning.
    pub a_hat: Tensor<3>,
    /// The task adapters at the end (discarded by the method, kept for analysis).
    pub adapters: MatrixAdapterBank,
    /// The total task loss `Σ_t L_t(Â + U_t U_tᵀ)` of each group at the end, `[groups]`.
    pub final_loss: Tensor<1>,
}

/// Runs LoRA-ML from `A₀ = 0` and the given initial adapters (one per task and group, laid out like
/// `stats`: element `g·T + t`).
pub fn lora_ml(
    stats: &BatchedStatistics,
    adapters: MatrixAdapterBank,
    config: &LoraMlConfig,
) -> Result<LoraMlOutcome, MetaError> {
    let tasks = adapters.tasks();
    if adapters.factors().batch() != stats.batch() {
        return Err(MetaError::Shape(format!(
            "LoRA-ML: {} adapters for {} task problems",
            adapters.factors().batch(),
            stats.batch()
        )));
    }
    let d = stats.dim();
    let groups = adapters.groups();
    let mut a = Tensor::<3>::zeros([groups, d, d], &stats.sxx.device());
    let mut factors = adapters.factors().clone();
    let task_mean = 1.0 / tasks as f64;
    for step in 0..config.outer_steps {
        let a_per_task = expand_groups(a.clone(), tasks);
        for _ in 0..config.inner_steps {
            let grad = stats.gradient(a_per_task.clone() + factors.delta());
            let grads = factors.backprop(grad);
            factors = factors.descend(grads, config.inner_lr);
        }
        let grad = stats.gradient(a_per_task + factors.delta());
        a = a - sum_groups(grad, tasks).mul_scalar(config.outer_lr * task_mean);
        if (step + 1) % FINITE_CHECK_EVERY == 0 {
            let m = expand_groups(a.clone(), tasks) + factors.delta();
            ensure_finite("LoRA-ML", step + 1, stats.loss(m))?;
        }
    }
    let m = expand_groups(a.clone(), tasks) + factors.delta();
    let final_loss = stats
        .loss(m)
        .reshape([groups, tasks])
        .sum_dim(1)
        .reshape([groups]);
    ensure_finite("LoRA-ML", config.outer_steps, final_loss.clone())?;
    Ok(LoraMlOutcome {
        a_hat: a,
        adapters: adapters.with_factors(factors)?,
        final_loss,
    })
}
