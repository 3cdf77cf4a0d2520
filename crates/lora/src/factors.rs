//! Low-rank factors on plain matrices, batched, with their exact chain rule.
//!
//! A matrix `M` (acting as `y = M x`) is adapted by `M + s · U Vᵀ` with `U ∈ R^{rows×r}`,
//! `V ∈ R^{cols×r}` and scale `s`; the *symmetric* form `U Uᵀ` is the paper's retraining adapter
//! and the asymmetric `U Vᵀ` its test-time adapter. Every tensor carries a leading batch axis so that
//! many independent problems (runs, tasks) advance in one tensor operation.
//!
//! ```
//! # fn device() -> burn::tensor::Device { burn::tensor::Device::default() }
//! use adaptable_lora::{LowRankFactors, MatrixAdapterBank};
//! use rand::SeedableRng;
//!
//! let device = device();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! // 2 runs × 3 tasks of symmetric rank-1 adapters on 4×4 matrices.
//! let factors = LowRankFactors::gaussian_symmetric(6, 4, 1, 0.1, &mut rng, &device);
//! let bank = MatrixAdapterBank::new(factors, 3)?;
//! assert_eq!(bank.deltas().dims(), [2, 3, 4, 4]);
//! # Ok::<(), adaptable_lora::LoraError>(())
//! ```

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::LoraError;

/// A batch of low-rank updates `s · U Vᵀ` (or `s · U Uᵀ`).
#[derive(Debug, Clone)]
pub struct LowRankFactors {
    /// `[batch, rows, rank]`.
    u: Tensor<3>,
    /// `[batch, cols, rank]`; `None` for the symmetric form.
    v: Option<Tensor<3>>,
    scale: f64,
}

/// The gradient of a scalar loss with respect to the factors.
#[derive(Debug, Clone)]
pub struct FactorGradients {
    /// `∂L/∂U`, shaped like `U`.
    pub u: Tensor<3>,
    /// `∂L/∂V`, shaped like `V` (absent for symmetric factors).
    pub v: Option<Tensor<3>>,
}

impl LowRankFactors {
    /// Symmetric factors `U Uᵀ` with scale 1.
    pub fn symmetric(u: Tensor<3>) -> Self {
        Self {
            u,
            v: None,
            scale: 1.0,
        }
    }

    /// Asymmetric factors `U Vᵀ` with scale 1; the batch size and rank of `U` and `V` must agree.
    pub fn asymmetric(u: Tensor<3>, v: Tensor<3>) -> Result<Self, LoraError> {
        let [bu, _, ru] = u.dims();
        let [bv, cols, rv] = v.dims();
        if (bu, ru) != (bv, rv) {
            return Err(LoraError::ShapeMismatch {
                what: "V (batch and rank must match U)".into(),
                expected: vec![bu, cols, ru],
                found: vec![bv, cols, rv],
            });
        }
        Ok(Self {
            u,
            v: Some(v),
            scale: 1.0,
        })
    }

    /// Symmetric factors with i.i.d. `N(0, std²)` entries drawn from `rng`.
    pub fn gaussian_symmetric(
        batch: usize,
        rows: usize,
        rank: usize,
        std: f64,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        Self::symmetric(gaussian([batch, rows, rank], std, rng, device))
    }

    /// Asymmetric factors with i.i.d. `N(0, std²)` entries (`U` drawn first, then `V`).
    pub fn gaussian_asymmetric(
        batch: usize,
        [rows, cols]: [usize; 2],
        rank: usize,
        std: f64,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        let u = gaussian([batch, rows, rank], std, rng, device);
        let v = gaussian([batch, cols, rank], std, rng, device);
        Self {
            u,
            v: Some(v),
            scale: 1.0,
        }
    }

    /// Sets the scale `s` (e.g. [`crate::LoraConfig::scale`]).
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// The scale `s`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Whether the update is `U Uᵀ`.
    pub fn is_symmetric(&self) -> bool {
        self.v.is_none()
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.u.dims()[0]
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.u.dims()[2]
    }

    /// The factor `U`.
    pub fn u(&self) -> &Tensor<3> {
        &self.u
    }

    /// The factor `V` (`U` itself for symmetric factors).
    pub fn v(&self) -> &Tensor<3> {
        self.v.as_ref().unwrap_or(&self.u)
    }

    /// The update `s · U Vᵀ`, `[batch, rows, cols]`.
    pub fn delta(&self) -> Tensor<3> {
        let delta = self.u.clone().matmul(self.v().clone().swap_dims(1, 2));
        if self.scale == 1.0 {
            delta
        } else {
            delta.mul_scalar(self.scale)
        }
    }

    /// The chain rule: given `G = ∂L/∂Δ` for `Δ = s U Vᵀ`, returns `∂L/∂U = s G V` and
    /// `∂L/∂V = s Gᵀ U`; for `Δ = s U Uᵀ`, `∂L/∂U = s (G + Gᵀ) U`.
    pub fn backprop(&self, grad_delta: Tensor<3>) -> FactorGradients {
        let s = self.scale;
        match &self.v {
            None => {
                let sym = grad_delta.clone() + grad_delta.swap_dims(1, 2);
                FactorGradients {
                    u: sym.matmul(self.u.clone()).mul_scalar(s),
                    v: None,
                }
            }
            Some(v) => FactorGradients {
                u: grad_delta.clone().matmul(v.clone()).mul_scalar(s),
                v: Some(
                    grad_delta
                        .swap_dims(1, 2)
                        .matmul(self.u.clone())
                        .mul_scalar(s),
                ),
            },
        }
    }

    /// One gradient-descent step `θ ← θ − lr · ∂L/∂θ` on both factors.
    pub fn descend(self, grads: FactorGradients, lr: f64) -> Self {
        let u = self.u - grads.u.mul_scalar(lr);
        let v = match (self.v, grads.v) {
            (Some(v), Some(gv)) => Some(v - gv.mul_scalar(lr)),
            (v, _) => v,
        };
        Self {
            u,
            v,
            scale: self.scale,
        }
    }
}

/// One adapter per task for a batch of independent problems, stored stacked so that all tasks of
/// all problems advance in one tensor operation.
///
/// Batch element `g · T + t` of the factors is task `t` of problem (group) `g`.
#[derive(Debug, Clone)]
pub struct MatrixAdapterBank {
    factors: LowRankFactors,
    tasks: usize,
}

impl MatrixAdapterBank {
    /// Wraps stacked factors holding `tasks` adapters per group.
    pub fn new(factors: LowRankFactors, tasks: usize) -> Result<Self, LoraError> {
        if tasks == 0 || !factors.batch().is_multiple_of(tasks) {
            return Err(LoraError::ShapeMismatch {
                what: "adapter bank (batch must be a multiple of the task count)".into(),
                expected: vec![tasks.max(1) * (factors.batch() / tasks.max(1)).max(1)],
                found: vec![factors.batch()],
            });
        }
        Ok(Self { factors, tasks })
    }

    /// Adapters per group.
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// Number of independent groups (e.g. runs).
    pub fn groups(&self) -> usize {
        self.factors.batch() / self.tasks
    }

    /// The stacked factors.
    pub fn factors(&self) -> &LowRankFactors {
        &self.factors
    }

    /// Replaces the stacked factors (after an optimisation step), keeping the layout.
    pub fn with_factors(self, factors: LowRankFactors) -> Result<Self, LoraError> {
        Self::new(factors, self.tasks)
    }

    /// All updates, `[groups, tasks, rows, cols]`.
    pub fn deltas(&self) -> Tensor<4> {
        let [b, rows, cols] = self.factors.delta().dims();
        let delta = self.factors.delta();
        debug_assert_eq!(b, self.groups() * self.tasks);
        delta.reshape([self.groups(), self.tasks, rows, cols])
    }

    /// The update of task `task` in every group, `[groups, rows, cols]`.
    pub fn task_delta(&self, task: usize) -> Result<Tensor<3>, LoraError> {
        if task >= self.tasks {
            return Err(LoraError::TaskOutOfRange {
                task,
                tasks: self.tasks,
            });
        }
        let deltas = self.deltas();
        let [g, _, rows, cols] = deltas.dims();
        Ok(deltas.narrow(1, task, 1).reshape([g, rows, cols]))
    }
}

fn gaussian(shape: [usize; 3], std: f64, rng: &mut impl Rng, device: &Device) -> Tensor<3> {
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            (std * z) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn device() -> Device {
        Device::default()
    }

    fn to_vec(t: Tensor<3>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().expect("f32 tensor")
    }

    /// The chain rule in `backprop` must equal Burn's autodiff of `L = Σ G ⊙ Δ`.
    fn check_against_autodiff(symmetric: bool, scale: f64) {
        let device = device();
        let ad = device.clone().autodiff();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let f = if symmetric {
            LowRankFactors::gaussian_symmetric(3, 5, 2, 0.7, &mut rng, &device)
        } else {
            LowRankFactors::gaussian_asymmetric(3, [5, 4], 2, 0.7, &mut rng, &device)
        }
        .with_scale(scale);
        let cols = f.v().dims()[1];
        let g = gaussian([3, 5, cols], 1.0, &mut rng, &device);

        let u = Tensor::<3>::from_data(f.u().to_data(), &ad).require_grad();
        let v = (!symmetric).then(|| Tensor::<3>::from_data(f.v().to_data(), &ad).require_grad());
        let tracked = match &v {
            None => LowRankFactors::symmetric(u.clone()),
            Some(v) => LowRankFactors::asymmetric(u.clone(), v.clone()).unwrap(),
        }
        .with_scale(scale);
        let loss = (tracked.delta() * Tensor::from_data(g.to_data(), &ad)).sum();
        let grads = loss.backward();

        let ours = f.backprop(g);
        let close = |a: Vec<f32>, b: Vec<f32>| {
            a.iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
        };
        assert!(close(to_vec(ours.u), to_vec(u.grad(&grads).unwrap())));
        if let Some(v) = v {
            assert!(close(
                to_vec(ours.v.unwrap()),
                to_vec(v.grad(&grads).unwrap())
            ));
        }
    }

    #[test]
    fn symmetric_chain_rule_matches_autodiff() {
        check_against_autodiff(true, 1.0);
        check_against_autodiff(true, 2.5);
    }

    #[test]
    fn asymmetric_chain_rule_matches_autodiff() {
        check_against_autodiff(false, 1.0);
        check_against_autodiff(false, 0.5);
    }

    #[test]
    fn symmetric_delta_is_symmetric_and_bank_slices_tasks() {
        let device = device();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let f = LowRankFactors::gaussian_symmetric(4, 3, 1, 1.0, &mut rng, &device);
        let d = f.delta();
        assert_eq!(to_vec(d.clone()), to_vec(d.clone().swap_dims(1, 2)));
        let bank = MatrixAdapterBank::new(f, 2).unwrap();
        assert_eq!(bank.groups(), 2);
        // Task 1 of group 1 is batch element 3.
        let t1 = bank.task_delta(1).unwrap();
        assert_eq!(to_vec(t1.narrow(0, 1, 1)), to_vec(d.narrow(0, 3, 1)));
        assert!(matches!(
            bank.task_delta(2),
            Err(LoraError::TaskOutOfRange { task: 2, tasks: 2 })
        ));
    }

    #[test]
    fn mismatched_asymmetric_factors_are_rejected() {
        let device = device();
        let u = Tensor::<3>::zeros([2, 3, 1], &device);
        let v = Tensor::<3>::zeros([2, 3, 2], &device);
        assert!(LowRankFactors::asymmetric(u, v).is_err());
    }
}
