//! The low-rank linear task family of the paper's theory (paper §3).
//!
//! Task `t` maps `x ~ N(0, I_d)` to `y = (A* + U*_t U*_tᵀ) x + ε`: every task is a rank-`k`
//! perturbation of one shared matrix `A* = (G + Gᵀ)/2`. Tasks `0..T` are the retraining tasks and
//! task `T` (the `T+1`-th) is the unseen task used for fine-tuning.
//!
//! ```
//! use adaptable_tasks::linear::{LinearTaskConfig, LinearTaskFamily};
//! use rand::SeedableRng;
//!
//! let config = LinearTaskConfig::default();
//! let family = LinearTaskFamily::generate(&config, 7)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(8);
//! let sample = family.sample(0, 1000, &mut rng);
//! let stats = sample.statistics();
//! assert_eq!(stats.sxx.rows(), config.dim);
//! # Ok::<(), adaptable_tasks::TasksError>(())
//! ```

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::{Matrix, TasksError};

/// How the noise level `σ` is turned into the noise distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseConvention {
    /// `ε ~ N(0, σ² I)`: `σ` is the standard deviation, as the paper states.
    #[default]
    Std,
    /// `ε ~ N(0, σ⁴ I)`: the authors' code calls `rng.normal(0, sigma**2)`, so its standard deviation
    /// is `σ²` (0.01 at the default `σ = 0.1`). Available to reproduce their numbers exactly.
    AuthorsVariance,
}

/// Parameters of the linear task family. Defaults are the paper's (d=10, T=3, N=5000, n=100, k=1, σ=0.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearTaskConfig {
    /// Input and output dimension `d`.
    pub dim: usize,
    /// Number of retraining tasks `T`.
    pub tasks: usize,
    /// Retraining samples per task `N`.
    pub retrain_samples: usize,
    /// Fine-tuning samples `n` of the unseen task.
    pub finetune_samples: usize,
    /// Rank `k` of every task perturbation `U*_t U*_tᵀ`.
    pub rank: usize,
    /// Noise level `σ`.
    pub noise_std: f64,
    /// How `noise_std` is interpreted.
    pub noise: NoiseConvention,
}

impl Default for LinearTaskConfig {
    fn default() -> Self {
        Self {
            dim: 10,
            tasks: 3,
            retrain_samples: 5000,
            finetune_samples: 100,
            rank: 1,
            noise_std: 0.1,
            noise: NoiseConvention::Std,
        }
    }
}

impl LinearTaskConfig {
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

    /// Whether the task subspaces can be linearly independent (`k(T+1) ≤ d`), the assumption of the
    /// paper's Remark 1 behind exact recovery (Theorem 3). Outside it the experiments still run.
    pub fn satisfies_independence(&self) -> bool {
        self.rank * (self.tasks + 1) <= self.dim
    }

    /// The standard deviation of each noise entry under the chosen convention.
    pub fn noise_sd(&self) -> f64 {
        match self.noise {
            NoiseConvention::Std => self.noise_std,
            NoiseConvention::AuthorsVariance => self.noise_std * self.noise_std,
        }
    }
}

/// The ground truth of one draw of the task family.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearTaskFamily {
    config: LinearTaskConfig,
    a_star: Matrix,
    /// `U*_t` for `t = 0..=T`; the last one belongs to the unseen task.
    u_star: Vec<Matrix>,
}

impl LinearTaskFamily {
    /// Draws `A* = (G + Gᵀ)/2` and `U*_t` with i.i.d. `N(0, 1)` entries for the `T` retraining tasks and
    /// the unseen task, all from `seed`.
    pub fn generate(config: &LinearTaskConfig, seed: u64) -> Result<Self, TasksError> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let d = config.dim;
        let g = gaussian_matrix(d, d, 1.0, &mut rng);
        let a_star = g.add(&g.transpose()).scale(0.5);
        let u_star = (0..=config.tasks)
            .map(|_| gaussian_matrix(d, config.rank, 1.0, &mut rng))
            .collect();
        Ok(Self {
            config: config.clone(),
            a_star,
            u_star,
        })
    }

    /// The configuration this family was drawn with.
    pub fn config(&self) -> &LinearTaskConfig {
        &self.config
    }

    /// The shared matrix `A*`.
    pub fn a_star(&self) -> &Matrix {
        &self.a_star
    }

    /// The perturbation factor `U*_t` of task `t` (`t = T` is the unseen task).
    pub fn u_star(&self, task: usize) -> &Matrix {
        &self.u_star[task]
    }

    /// Index of the unseen fine-tuning task (`T`).
    pub fn new_task(&self) -> usize {
        self.config.tasks
    }

    /// The task matrix `A*_t = A* + U*_t U*_tᵀ`.
    pub fn task_matrix(&self, task: usize) -> Matrix {
        let u = &self.u_star[task];
        self.a_star.add(&u.matmul_transposed(u))
    }

    /// The population minimiser of standard retraining, `A* + (1/T) Σ_t U*_t U*_tᵀ` (Theorem 1).
    pub fn standard_retraining_limit(&self) -> Matrix {
        let t = self.config.tasks;
        let mut mean = Matrix::zeros(self.config.dim, self.config.dim);
        for u in &self.u_star[..t] {
            mean = mean.add(&u.matmul_transposed(u));
        }
        self.a_star.add(&mean.scale(1.0 / t as f64))
    }

    /// Draws `n` samples of task `t`: inputs `x ~ N(0, I)` and noisy targets, stored as columns.
    pub fn sample(&self, task: usize, n: usize, rng: &mut impl Rng) -> TaskSample {
        let d = self.config.dim;
        let x = gaussian_matrix(d, n, 1.0, rng);
        let noise = gaussian_matrix(d, n, self.config.noise_sd(), rng);
        let y = self.task_matrix(task).matmul(&x).add(&noise);
        TaskSample { x, y }
    }

    /// The statistics of the infinite-sample (population) loss of task `t`: `Σxx = I`,
    /// `Σyx = A*_t`, and `E‖y‖² = ‖A*_t‖²_F` without the noise term, so the minimum is 0 (paper §3.2).
    pub fn population_statistics(&self, task: usize) -> SufficientStatistics {
        let a = self.task_matrix(task);
        SufficientStatistics {
            sxx: Matrix::identity(self.config.dim),
            syy: a.frobenius_sq(),
            syx: a,
            samples: None,
        }
    }
}

/// `n` samples of one task, one sample per column.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSample {
    /// Inputs, `d × n`.
    pub x: Matrix,
    /// Targets, `d × n`.
    pub y: Matrix,
}

impl TaskSample {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.cols()
    }

    /// Whether the sample is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The second moments that determine the squared loss of any linear predictor exactly.
    pub fn statistics(&self) -> SufficientStatistics {
        let n = self.len() as f64;
        SufficientStatistics {
            sxx: self.x.matmul_transposed(&self.x).scale(1.0 / n),
            syx: self.y.matmul_transposed(&self.x).scale(1.0 / n),
            syy: self.y.frobenius_sq() / n,
            samples: Some(self.len()),
        }
    }
}

/// Second moments of a sample: with them the mean squared loss `(1/2n) Σ‖y − M x‖²` of any matrix `M`
/// is `½ syy − ⟨M, Σyx⟩ + ½ ⟨M Σxx, M⟩`, and its gradient is `M Σxx − Σyx` — exactly, in `O(d²)`
/// per evaluation instead of `O(d² n)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SufficientStatistics {
    /// `Σxx = X Xᵀ / n` (`d × d`).
    pub sxx: Matrix,
    /// `Σyx = Y Xᵀ / n` (`d × d`).
    pub syx: Matrix,
    /// `‖Y‖²_F / n`.
    pub syy: f64,
    /// The sample size, or `None` for population statistics.
    pub samples: Option<usize>,
}

/// Checks that every named size is positive and `noise_std` is a finite non-negative number (the
/// validation shared by the synthetic task families).
pub fn validate_sizes(sizes: &[(&'static str, usize)], noise_std: f64) -> Result<(), TasksError> {
    if let Some(&(name, value)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(TasksError::NonPositive { name, value });
    }
    if !noise_std.is_finite() || noise_std < 0.0 {
        return Err(TasksError::InvalidNoise(noise_std));
    }
    Ok(())
}

/// A `rows × cols` matrix of i.i.d. `N(0, std²)` entries.
pub fn gaussian_matrix(rows: usize, cols: usize, std: f64, rng: &mut impl Rng) -> Matrix {
    Matrix::from_fn(rows, cols, |_, _| {
        let z: f64 = StandardNormal.sample(rng);
        std * z
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_is_symmetric_and_generation_is_seeded() {
        let c = LinearTaskConfig::default();
        let f = LinearTaskFamily::generate(&c, 1).unwrap();
        assert_eq!(f.a_star(), &f.a_star().transpose());
        assert_eq!(f, LinearTaskFamily::generate(&c, 1).unwrap());
        assert_ne!(f, LinearTaskFamily::generate(&c, 2).unwrap());
        assert_eq!(f.new_task(), 3);
    }

    #[test]
    fn sample_statistics_approach_the_population() {
        let c = LinearTaskConfig {
            noise_std: 0.0,
            ..Default::default()
        };
        let f = LinearTaskFamily::generate(&c, 3).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let s = f.sample(1, 20_000, &mut rng).statistics();
        let p = f.population_statistics(1);
        assert!(s.sxx.sub(&p.sxx).frobenius_sq() < 0.05);
        // Noise-free targets: Σyx = A*_t Σxx exactly.
        let implied = f.task_matrix(1).matmul(&s.sxx);
        assert!(s.syx.sub(&implied).frobenius_sq() < 1e-18);
    }

    #[test]
    fn noise_conventions_differ_by_a_square() {
        let mut c = LinearTaskConfig::default();
        assert_eq!(c.noise_sd(), 0.1);
        c.noise = NoiseConvention::AuthorsVariance;
        assert!((c.noise_sd() - 0.01).abs() < 1e-15);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let c = LinearTaskConfig {
            dim: 0,
            ..Default::default()
        };
        assert!(matches!(
            LinearTaskFamily::generate(&c, 0),
            Err(TasksError::NonPositive { name: "dim", .. })
        ));
    }

    #[test]
    fn independence_assumption_is_k_times_t_plus_one_at_most_d() {
        let c = LinearTaskConfig {
            rank: 3,
            ..Default::default()
        };
        assert!(!c.satisfies_independence());
        assert!(LinearTaskConfig::default().satisfies_independence());
    }
}
