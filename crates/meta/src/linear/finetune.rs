//! Test-time fine-tuning: a fresh asymmetric adapter `U Vᵀ` on a frozen base.

use adaptable_lora::LowRankFactors;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::BatchedStatistics;
use crate::MetaError;

/// Plain gradient descent on `(1/2n) Σ ‖y − (Â + U Vᵀ) x‖²` over `U` and `V` (paper §6.1).
/// Defaults: step 0.005, `U, V ~ N(0, 0.1²)`, 1000 steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FineTuneConfig {
    /// Number of gradient steps.
    pub steps: usize,
    /// Step size.
    pub lr: f64,
    /// Standard deviation of the initial `U` and `V` entries.
    pub init_std: f64,
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            lr: 0.005,
            init_std: 0.1,
        }
    }
}

/// Loss curves of a batch of fine-tuning runs, recorded before every step and after the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct FineTuneOutcome {
    /// The paper's plotted "test task loss": `Σ_i ‖(A*_new − Â − U Vᵀ) x_i‖²` over the `n` fine-tuning
    /// inputs; `paper_loss[step][group]`, `steps + 1` rows.
    pub paper_loss: Vec<Vec<f64>>,
    /// The population loss `‖Â + U Vᵀ − A*_new‖²_F`; same layout.
    pub population_loss: Vec<Vec<f64>>,
}

/// Fine-tunes `init` (one adapter per group) on top of the frozen `base` (`[groups, d, d]`), using the
/// fine-tuning sample's statistics `stats` (`n` samples each) and measuring against the true matrix
/// `target` of the new task.
pub fn fine_tune(
    base: &Tensor<3>,
    stats: &BatchedStatistics,
    samples: usize,
    target: &Tensor<3>,
    init: LowRankFactors,
    config: &FineTuneConfig,
) -> Result<FineTuneOutcome, MetaError> {
    if base.dims() != stats.sxx.dims() || base.dims() != target.dims() {
        return Err(MetaError::Shape(format!(
            "fine-tuning: base {:?}, statistics {:?} and target {:?} must have the same shape",
            base.dims(),
            stats.sxx.dims(),
            target.dims()
        )));
    }
    let groups = base.dims()[0];
    let mut factors = init;
    let mut paper = Vec::with_capacity(config.steps + 1);
    let mut population = Vec::with_capacity(config.steps + 1);
    let mut record = |m: Tensor<3>| {
        let diff = target.clone() - m;
        population.push(
            (diff.clone() * diff.clone())
                .sum_dims(&[1, 2])
                .reshape([groups]),
        );
        let weighted = diff.clone().matmul(stats.sxx.clone()) * diff;
        paper.push(
            weighted
                .sum_dims(&[1, 2])
                .reshape([groups])
                .mul_scalar(samples as f64),
        );
    };
    for _ in 0..config.steps {
        let m = base.clone() + factors.delta();
        record(m.clone());
        let grads = factors.backprop(stats.gradient(m));
        factors = factors.descend(grads, config.lr);
    }
    record(base.clone() + factors.delta());

    let read = |curves: Vec<Tensor<1>>| -> Result<Vec<Vec<f64>>, MetaError> {
        let steps = curves.len();
        let flat = Tensor::stack::<2>(curves, 0)
            .try_into_vec_as::<f64>()
            .map_err(|e| MetaError::Shape(format!("fine-tuning: cannot read losses: {e:?}")))?;
        Ok(flat
            .chunks(groups)
            .take(steps)
            .map(<[f64]>::to_vec)
            .collect())
    };
    let paper_loss = read(paper)?;
    let population_loss = read(population)?;
    if let Some(last) = population_loss.last() {
        let total: f64 = last.iter().sum();
        if !total.is_finite() {
            // Find the first step at which the curve stopped being finite, to say where it diverged.
            let step = population_loss
                .iter()
                .position(|row| !row.iter().sum::<f64>().is_finite())
                .unwrap_or(config.steps);
            let value = population_loss[step].iter().sum();
            return Err(MetaError::NonFinite {
                method: "fine-tuning",
                step,
                value,
            });
        }
    }
    Ok(FineTuneOutcome {
        paper_loss,
        population_loss,
    })
}
