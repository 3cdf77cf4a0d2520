//! Fine-tuning a fresh LoRA adapter on the frozen first layer of retrained networks.

use adaptable_lora::LowRankFactors;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{
    ShallowBatch, ShallowNetworks, loss_and_gradients,
    retrain::{first_layers, to_vec},
};
use crate::{AdamW, AdamWConfig, MetaError};

/// Full-batch AdamW on the adapter only (the authors': 15 000 epochs, lr 1e-3, weight decay 0.01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShallowFineTuneConfig {
    /// Epochs (one optimizer step each).
    pub epochs: usize,
    /// The optimizer.
    pub optimizer: AdamWConfig,
}

impl Default for ShallowFineTuneConfig {
    fn default() -> Self {
        Self {
            epochs: 15_000,
            optimizer: AdamWConfig::default(),
        }
    }
}

/// Loss curves of a batch of fine-tunings, recorded before every epoch's step and after the last.
#[derive(Debug, Clone, PartialEq)]
pub struct ShallowFineTuneOutcome {
    /// The test metric, the MSE against the noiseless targets on the fine-tuning inputs;
    /// `test_loss[epoch][problem]`, `epochs + 1` rows.
    pub test_loss: Vec<Vec<f64>>,
    /// The training MSE (against the noisy targets) at the end, `[problems]`.
    pub final_train_loss: Vec<f64>,
}

/// Fine-tunes the adapters `init` (one per network) on top of the frozen `base`, on the samples of
/// `batch` (problem `g` belongs to network `g`).
pub fn fine_tune(
    batch: &ShallowBatch,
    base: &ShallowNetworks,
    init: LowRankFactors,
    config: &ShallowFineTuneConfig,
) -> Result<ShallowFineTuneOutcome, MetaError> {
    base.check()?;
    let (groups, d) = (base.groups(), base.dim());
    if batch.problems() != groups || batch.dim() != d || init.batch() != groups {
        return Err(MetaError::Shape(format!(
            "shallow fine-tuning: {} problems of dimension {}, {} adapters, {groups} networks of dimension {d}",
            batch.problems(),
            batch.dim(),
            init.batch()
        )));
    }
    let device = base.a.device();
    let opt = &config.optimizer;
    let c = to_vec(base.c.clone())?;
    let mut factors = init;
    let (mut opt_u, mut opt_v) = (AdamW::new(factors.u()), AdamW::new(factors.v()));
    let mut test_loss = Vec::with_capacity(config.epochs + 1);
    let mut final_train_loss = Vec::new();
    for epoch in 0..=config.epochs {
        let w = first_layers(&base.a, Some(&factors), 1);
        let pass = loss_and_gradients(batch, &to_vec(w)?, &c)?;
        let total: f64 = pass.loss.iter().sum();
        if !total.is_finite() {
            return Err(MetaError::NonFinite {
                method: "shallow fine-tuning",
                step: epoch,
                value: total,
            });
        }
        test_loss.push(pass.clean_loss);
        if epoch == config.epochs {
            final_train_loss = pass.loss;
            break;
        }
        let grad_w = Tensor::<3>::from_data(TensorData::new(pass.grad_w, [groups, d, d]), &device);
        let g = factors.backprop(grad_w);
        let gv =
            g.v.ok_or_else(|| MetaError::Shape("fine-tuning adapters must be U Vᵀ".into()))?;
        let u = opt_u.step(opt, factors.u().clone(), g.u);
        let v = opt_v.step(opt, factors.v().clone(), gv);
        factors = LowRankFactors::asymmetric(u, v)?.with_scale(factors.scale());
    }
    Ok(ShallowFineTuneOutcome {
        test_loss,
        final_train_loss,
    })
}
