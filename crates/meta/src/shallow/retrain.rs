//! Retraining of the two-layer network: SR (no adapters) or LoRA-ML (one adapter per task).

use adaptable_lora::{LowRankFactors, MatrixAdapterBank};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{ShallowBatch, ShallowNetworks, loss_and_gradients};
use crate::{
    AdamW, AdamWConfig, MetaError,
    linear::{expand_groups, sum_groups},
};

/// Full-batch AdamW on the summed task losses (the authors' `shallow/run.py`: 40 000 epochs,
/// lr 1e-3, weight decay 0.01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShallowRetrainConfig {
    /// Epochs; each takes one optimizer step on the gradient summed over tasks.
    pub epochs: usize,
    /// The optimizer.
    pub optimizer: AdamWConfig,
}

impl Default for ShallowRetrainConfig {
    fn default() -> Self {
        Self {
            epochs: 40_000,
            optimizer: AdamWConfig::default(),
        }
    }
}

/// The result of retraining a batch of networks.
#[derive(Debug, Clone)]
pub struct ShallowRetrainOutcome {
    /// The retrained shared layers; the only part fine-tuning keeps.
    pub networks: ShallowNetworks,
    /// The task adapters at the end (LoRA-ML only; discarded by the method).
    pub adapters: Option<MatrixAdapterBank>,
    /// `Σ_t` of the task MSEs of each group at the end, `[groups]`.
    pub final_loss: Vec<f64>,
}

/// Retrains `groups` networks on `tasks` tasks each. `batch` holds the retraining samples as
/// problem `g · tasks + t`; `init` the initial shared layers of each group; `adapters`, when
/// given (LoRA-ML), one adapter per task laid out like `batch`, trained together with `A` and `c`.
/// Without adapters this is standard retraining (SR): the same network, the same loop.
pub fn retrain(
    batch: &ShallowBatch,
    tasks: usize,
    init: ShallowNetworks,
    adapters: Option<MatrixAdapterBank>,
    config: &ShallowRetrainConfig,
) -> Result<ShallowRetrainOutcome, MetaError> {
    init.check()?;
    let groups = init.groups();
    let d = init.dim();
    if tasks == 0 || batch.problems() != groups * tasks || batch.dim() != d {
        return Err(MetaError::Shape(format!(
            "shallow retraining: {} problems of dimension {} for {groups} groups × {tasks} tasks of dimension {d}",
            batch.problems(),
            batch.dim()
        )));
    }
    if let Some(bank) = &adapters
        && (bank.tasks() != tasks || bank.groups() != groups)
    {
        return Err(MetaError::Shape(format!(
            "shallow retraining: an adapter bank of {} groups × {} tasks for {groups} × {tasks}",
            bank.groups(),
            bank.tasks()
        )));
    }
    let device = init.a.device();
    let opt = &config.optimizer;
    let ShallowNetworks { mut a, mut c } = init;
    let (mut opt_a, mut opt_c) = (AdamW::new(&a), AdamW::new(&c));
    let mut factors = adapters.as_ref().map(|bank| bank.factors().clone());
    let mut opt_u = factors.as_ref().map(|f| AdamW::new(f.u()));
    let mut opt_v = factors.as_ref().map(|f| AdamW::new(f.v()));
    let problems = groups * tasks;
    let mut final_loss = Vec::new();
    for epoch in 0..=config.epochs {
        let w = first_layers(&a, factors.as_ref(), tasks);
        let c_tasks = expand_rows(c.clone(), tasks);
        let pass = loss_and_gradients(batch, &to_vec(w)?, &to_vec(c_tasks)?)?;
        let total: f64 = pass.loss.iter().sum();
        if !total.is_finite() {
            return Err(MetaError::NonFinite {
                method: if factors.is_some() {
                    "shallow LoRA-ML"
                } else {
                    "shallow SR"
                },
                step: epoch,
                value: total,
            });
        }
        if epoch == config.epochs {
            final_loss = pass.loss.chunks(tasks).map(|l| l.iter().sum()).collect();
            break;
        }
        let grad_w =
            Tensor::<3>::from_data(TensorData::new(pass.grad_w, [problems, d, d]), &device);
        let grad_c =
            Tensor::<3>::from_data(TensorData::new(pass.grad_c, [groups, tasks, d]), &device)
                .sum_dim(1)
                .reshape([groups, d]);
        if let (Some(f), Some(ou), Some(ov)) = (factors.take(), opt_u.as_mut(), opt_v.as_mut()) {
            let g = f.backprop(grad_w.clone());
            let gv =
                g.v.ok_or_else(|| MetaError::Shape("LoRA-ML adapters must be U Vᵀ".into()))?;
            let u = ou.step(opt, f.u().clone(), g.u);
            let v = ov.step(opt, f.v().clone(), gv);
            factors = Some(LowRankFactors::asymmetric(u, v)?.with_scale(f.scale()));
        }
        a = opt_a.step(opt, a, sum_groups(grad_w, tasks));
        c = opt_c.step(opt, c, grad_c);
    }
    let adapters = match (adapters, factors) {
        (Some(bank), Some(f)) => Some(bank.with_factors(f)?),
        _ => None,
    };
    Ok(ShallowRetrainOutcome {
        networks: ShallowNetworks { a, c },
        adapters,
        final_loss,
    })
}

/// `A_g + Δ_{g,t}` for every problem, `[groups · tasks, d, d]`.
pub(super) fn first_layers(
    a: &Tensor<3>,
    factors: Option<&LowRankFactors>,
    tasks: usize,
) -> Tensor<3> {
    let base = expand_groups(a.clone(), tasks);
    match factors {
        Some(f) => base + f.delta(),
        None => base,
    }
}

/// Repeats each row of `[groups, d]` `tasks` times: `[groups · tasks, d]`.
pub(super) fn expand_rows(c: Tensor<2>, tasks: usize) -> Tensor<2> {
    let [g, d] = c.dims();
    c.unsqueeze_dim::<3>(1)
        .expand([g, tasks, d])
        .reshape([g * tasks, d])
}

pub(super) fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, MetaError> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| MetaError::Shape(format!("shallow network: cannot read a tensor: {e:?}")))
}
