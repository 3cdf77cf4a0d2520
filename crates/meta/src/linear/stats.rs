//! Batched sufficient statistics and the exact squared loss they determine.

use adaptable_tasks::{Matrix, linear::SufficientStatistics};
use burn::tensor::{Device, Tensor, TensorData};

use crate::MetaError;

/// The sufficient statistics of a batch of regression problems, as tensors.
///
/// For problem `b`, the loss of a matrix `M_b` is
/// `L_b(M) = ½ syy_b − ⟨M, Σyx_b⟩ + ½ ⟨M Σxx_b, M⟩` (equal to `(1/2n) Σ_i ‖y_i − M x_i‖²`)
/// and its gradient is `M Σxx_b − Σyx_b`.
#[derive(Debug, Clone)]
pub struct BatchedStatistics {
    /// `Σxx`, `[batch, d, d]`.
    pub sxx: Tensor<3>,
    /// `Σyx`, `[batch, d, d]`.
    pub syx: Tensor<3>,
    /// `‖Y‖²/n`, `[batch]`.
    pub syy: Tensor<1>,
}

impl BatchedStatistics {
    /// Stacks per-problem statistics (all of the same dimension) into tensors on `device`.
    pub fn from_statistics(
        stats: &[SufficientStatistics],
        device: &Device,
    ) -> Result<Self, MetaError> {
        let first = stats
            .first()
            .ok_or_else(|| MetaError::Shape("no statistics to stack".into()))?;
        let d = first.sxx.rows();
        if stats.iter().any(|s| {
            s.sxx.rows() != d || s.sxx.cols() != d || s.syx.rows() != d || s.syx.cols() != d
        }) {
            return Err(MetaError::Shape(format!(
                "statistics of different dimensions in one batch (expected {d}×{d})"
            )));
        }
        let stack = |pick: fn(&SufficientStatistics) -> &Matrix| {
            let data: Vec<f32> = stats.iter().flat_map(|s| pick(s).to_f32_vec()).collect();
            Tensor::<3>::from_data(TensorData::new(data, [stats.len(), d, d]), device)
        };
        let syy: Vec<f32> = stats.iter().map(|s| s.syy as f32).collect();
        Ok(Self {
            sxx: stack(|s| &s.sxx),
            syx: stack(|s| &s.syx),
            syy: Tensor::from_data(TensorData::new(syy, [stats.len()]), device),
        })
    }

    /// Number of problems.
    pub fn batch(&self) -> usize {
        self.sxx.dims()[0]
    }

    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.sxx.dims()[1]
    }

    /// `∂L/∂M = M Σxx − Σyx`, `[batch, d, d]`.
    pub fn gradient(&self, m: Tensor<3>) -> Tensor<3> {
        m.matmul(self.sxx.clone()) - self.syx.clone()
    }

    /// The loss of every problem, `[batch]`.
    pub fn loss(&self, m: Tensor<3>) -> Tensor<1> {
        let b = self.batch();
        let quadratic = (m.clone().matmul(self.sxx.clone()) * m.clone()).sum_dims(&[1, 2]);
        let linear = (m * self.syx.clone()).sum_dims(&[1, 2]);
        let per_problem = quadratic.mul_scalar(0.5) - linear;
        per_problem.reshape([b]) + self.syy.clone().mul_scalar(0.5)
    }

    /// The per-group mean of the statistics, for a batch laid out as `groups × tasks`.
    ///
    /// The mean of the losses over tasks of a single matrix is the loss under the mean statistics, so
    /// standard retraining runs on these at the cost of a single task.
    pub fn mean_over_tasks(&self, tasks: usize) -> Self {
        let scale = 1.0 / tasks as f64;
        let groups = self.batch() / tasks;
        Self {
            sxx: sum_groups(self.sxx.clone(), tasks).mul_scalar(scale),
            syx: sum_groups(self.syx.clone(), tasks).mul_scalar(scale),
            syy: self
                .syy
                .clone()
                .reshape([groups, tasks])
                .sum_dim(1)
                .reshape([groups])
                .mul_scalar(scale),
        }
    }
}

/// Repeats each of `groups` matrices `tasks` times: `[groups, d, e]` → `[groups·tasks, d, e]`
/// (element `g·tasks + t` is group `g`).
pub fn expand_groups(m: Tensor<3>, tasks: usize) -> Tensor<3> {
    let [g, d, e] = m.dims();
    m.unsqueeze_dim::<4>(1)
        .expand([g, tasks, d, e])
        .reshape([g * tasks, d, e])
}

/// Sums consecutive blocks of `tasks` matrices: `[groups·tasks, d, e]` → `[groups, d, e]`.
pub fn sum_groups(m: Tensor<3>, tasks: usize) -> Tensor<3> {
    let [b, d, e] = m.dims();
    m.reshape([b / tasks, tasks, d, e])
        .sum_dim(1)
        .reshape([b / tasks, d, e])
}
