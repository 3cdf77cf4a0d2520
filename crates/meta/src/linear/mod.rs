//! Retraining and fine-tuning in the paper's linear model, with exact analytic gradients.
//!
//! All algorithms work on *batches* of independent problems (e.g. the runs of an experiment) so that
//! one tensor operation advances every run, and on the sufficient statistics of the data
//! ([`BatchedStatistics`]), which make each finite-sample loss and gradient exact at `O(d²)` cost per
//! step. The population (infinite-sample) objective is the special case `Σxx = I`, `Σyx = A*_t`.
//!
//! - [`standard_retraining`]: gradient descent on `Σ_t L_t(A)` (SR).
//! - [`lora_ml`]: alternating gradient descent on `Σ_t L_t(A + U_t U_tᵀ)` (LoRA-ML, Algorithm 1).
//! - [`fine_tune`]: a fresh asymmetric adapter `U Vᵀ` on a frozen base, by gradient descent.
//!
//! The gradients are written by hand (`M Σxx − Σyx` and the LoRA chain rule of
//! [`adaptable_lora::LowRankFactors::backprop`]) and tested against Burn's autodiff and against finite
//! differences.

mod finetune;
mod lora_ml;
mod standard;
mod stats;

pub use finetune::{FineTuneConfig, FineTuneOutcome, fine_tune};
pub use lora_ml::{LoraMlConfig, LoraMlOutcome, lora_ml};
pub use standard::{StandardRetrainingConfig, StandardRetrainingOutcome, standard_retraining};
pub use stats::{BatchedStatistics, expand_groups, sum_groups};

use burn::tensor::Tensor;

use crate::MetaError;

/// How often (in steps) the loops read a loss back to check it is finite.
const FINITE_CHECK_EVERY: usize = 250;

fn ensure_finite(method: &'static str, step: usize, losses: Tensor<1>) -> Result<f64, MetaError> {
    let values = losses
        .try_into_vec_as::<f64>()
        .map_err(|e| MetaError::Shape(format!("{method}: cannot read loss: {e:?}")))?;
    let total: f64 = values.iter().sum();
    if total.is_finite() {
        Ok(total)
    } else {
        Err(MetaError::NonFinite {
            method,
            step,
            value: total,
        })
    }
}
