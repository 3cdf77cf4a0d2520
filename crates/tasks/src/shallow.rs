//! The two-layer sigmoid task family of the paper's v2 nonlinear experiment (paper §6.2).
//!
//! Task `t` maps `x ~ N(0, I_d)` to `y = cᵀ σ((A + U_t U_tᵀ) x) + ε`, `ε ~ N(0, σ²)`, with the
//! logistic `σ`: one shared first layer `A` (not symmetrised), one shared read-out `c`, and a
//! rank-`k` perturbation per task. Tasks `0..T` are the retraining tasks and task `T` the unseen
//! one. Unlike the linear family, everything is drawn anew in every trial.
//!
//! ```
//! use adaptable_tasks::shallow::{ShallowTaskConfig, ShallowTaskFamily};
//! use rand::SeedableRng;
//!
//! let config = ShallowTaskConfig::default();
//! let family = ShallowTaskFamily::generate(&config, 7)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(8);
//! let sample = family.sample(family.new_task(), 100, &mut rng);
//! assert_eq!((sample.x.rows(), sample.x.cols()), (10, 100));
//! assert_eq!(sample.y.len(), 100);
//! # Ok::<(), adaptable_tasks::TasksError>(())
//! ```

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::{
    Matrix, TasksError,
    linear::{gaussian_matrix, validate_sizes},
};

/// Parameters of the shallow task family. Defaults are the authors' (d=10, T=3, N=1000, n=100,
/// k=1, σ=0.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShallowTaskConfig {
    /// Input dimension and width of the hidden layer `d`.
    pub dim: usize,
    /// Number of retraining tasks `T`.
    pub tasks: usize,
    /// Retraining samples per task `N`.
    pub retrain_samples: usize,
    /// Fine-tuning samples `n` of the unseen task.
    pub finetune_samples: usize,
    /// Rank `k` of every task perturbation `U_t U_tᵀ`.
    pub rank: usize,
    /// Standard deviation `σ` of the label noise.
    pub noise_std: f64,
}

impl Default for ShallowTaskConfig {
    fn default() -> Self {
        Self {
            dim: 10,
            tasks: 3,
            retrain_samples: 1000,
            finetune_samples: 100,
            rank: 1,
            noise_std: 0.1,
        }
    }
}

impl ShallowTaskConfig {
    /// Checks that every size is positive and the noise level is a finite non-negative number.
    pub fn validate(&self) -> Result<(), TasksError> {
        validate_sizes(
            &[
                ("dim", self.dim),
                ("tasks", self.tasks),
                ("retrain_samples", self.retrain_samples),
                ("finetune_samples", self.finetune_samples),
                ("rank", self.rank),
            ],
            self.noise_std,
        )
    }
}

/// The ground truth of one trial: `A`, `c` and the `U_t` of every task.
#[derive(Debug, Clone, PartialEq)]
pub struct ShallowTaskFamily {
    config: ShallowTaskConfig,
    a: Matrix,
    c: Vec<f64>,
    /// `U_t` for `t = 0..=T`; the last one belongs to the unseen task.
    u: Vec<Matrix>,
}

/// `n` samples of one task, one sample per column.
#[derive(Debug, Clone, PartialEq)]
pub struct ShallowSample {
    /// Inputs, `d × n`.
    pub x: Matrix,
    /// Noisy targets, `n`.
    pub y: Vec<f64>,
    /// The noiseless targets `cᵀ σ((A + U_t U_tᵀ) x)`, `n` (the test metric's reference).
    pub y_clean: Vec<f64>,
}

impl ShallowSample {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

impl ShallowTaskFamily {
    /// Draws `A` (`d × d`), `U_t` (`d × k`, for the `T` retraining tasks and then the unseen task)
    /// and `c` (`d`), all with i.i.d. `N(0, 1)` entries, from `seed`.
    pub fn generate(config: &ShallowTaskConfig, seed: u64) -> Result<Self, TasksError> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let d = config.dim;
        let a = gaussian_matrix(d, d, 1.0, &mut rng);
        let u = (0..=config.tasks)
            .map(|_| gaussian_matrix(d, config.rank, 1.0, &mut rng))
            .collect();
        let c = gaussian_matrix(d, 1, 1.0, &mut rng).as_slice().to_vec();
        Ok(Self {
            config: config.clone(),
            a,
            c,
            u,
        })
    }

    /// The configuration this family was drawn with.
    pub fn config(&self) -> &ShallowTaskConfig {
        &self.config
    }

    /// The shared first layer `A`.
    pub fn a(&self) -> &Matrix {
        &self.a
    }

    /// The shared read-out `c`.
    pub fn c(&self) -> &[f64] {
        &self.c
    }

    /// The perturbation factor `U_t` of task `t` (`t = T` is the unseen task).
    pub fn u(&self, task: usize) -> &Matrix {
        &self.u[task]
    }

    /// Index of the unseen fine-tuning task (`T`).
    pub fn new_task(&self) -> usize {
        self.config.tasks
    }

    /// The first layer of task `t`, `A + U_t U_tᵀ`.
    pub fn task_matrix(&self, task: usize) -> Matrix {
        let u = &self.u[task];
        self.a.add(&u.matmul_transposed(u))
    }

    /// Draws `n` samples of task `t`: inputs `x ~ N(0, I)` (all inputs first, then the noise).
    pub fn sample(&self, task: usize, n: usize, rng: &mut impl Rng) -> ShallowSample {
        let x = gaussian_matrix(self.config.dim, n, 1.0, rng);
        let y_clean = self.predict(task, &x);
        let y = y_clean
            .iter()
            .map(|&clean| {
                let z: f64 = StandardNormal.sample(rng);
                clean + self.config.noise_std * z
            })
            .collect();
        ShallowSample { x, y, y_clean }
    }

    /// The noiseless targets `cᵀ σ((A + U_t U_tᵀ) x_i)` of the columns of `x`.
    pub fn predict(&self, task: usize, x: &Matrix) -> Vec<f64> {
        let z = self.task_matrix(task).matmul(x);
        (0..x.cols())
            .map(|i| {
                (0..z.rows())
                    .map(|j| self.c[j] * sigmoid(z.get(j, i)))
                    .sum()
            })
            .collect()
    }
}

/// The logistic function `1 / (1 + e^{−z})`.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_a_is_not_symmetrised() {
        let c = ShallowTaskConfig::default();
        let f = ShallowTaskFamily::generate(&c, 1).unwrap();
        assert_eq!(f, ShallowTaskFamily::generate(&c, 1).unwrap());
        assert_ne!(f, ShallowTaskFamily::generate(&c, 2).unwrap());
        assert_ne!(f.a(), &f.a().transpose());
        assert_eq!(f.new_task(), 3);
        assert_eq!(f.c().len(), 10);
        assert_eq!((f.u(3).rows(), f.u(3).cols()), (10, 1));
    }

    #[test]
    fn targets_follow_the_two_layer_network_plus_noise() {
        let c = ShallowTaskConfig::default();
        let f = ShallowTaskFamily::generate(&c, 3).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let s = f.sample(1, 20_000, &mut rng);
        // Column 0 by hand.
        let x0: Vec<f64> = (0..10).map(|i| s.x.get(i, 0)).collect();
        let m = f.task_matrix(1);
        let by_hand: f64 = (0..10)
            .map(|j| {
                let z: f64 = (0..10).map(|i| m.get(j, i) * x0[i]).sum();
                f.c()[j] * sigmoid(z)
            })
            .sum();
        assert!((s.y_clean[0] - by_hand).abs() < 1e-12);
        // The noise has standard deviation σ = 0.1.
        let var =
            s.y.iter()
                .zip(&s.y_clean)
                .map(|(y, c)| (y - c).powi(2))
                .sum::<f64>()
                / s.len() as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.005, "noise sd {}", var.sqrt());
    }

    #[test]
    fn zero_sizes_and_bad_noise_are_rejected() {
        let c = ShallowTaskConfig {
            retrain_samples: 0,
            ..Default::default()
        };
        assert!(matches!(
            ShallowTaskFamily::generate(&c, 0),
            Err(TasksError::NonPositive {
                name: "retrain_samples",
                ..
            })
        ));
        let c = ShallowTaskConfig {
            noise_std: f64::NAN,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
