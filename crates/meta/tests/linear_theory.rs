//! The paper's linear theorems, checked on the population objective.

use adaptable_lora::{LowRankFactors, MatrixAdapterBank};
use adaptable_meta::linear::{
    BatchedStatistics, LoraMlConfig, StandardRetrainingConfig, lora_ml, standard_retraining,
};
use adaptable_tasks::{
    Matrix,
    linear::{LinearTaskConfig, LinearTaskFamily},
};
use burn::tensor::{Device, Tensor};
use rand::{SeedableRng, rngs::StdRng};

/// The default backend (flex unless only another one is compiled in).
fn device() -> Device {
    Device::default()
}

fn distance(a: Tensor<3>, m: &Matrix) -> f64 {
    let v = a.try_into_vec_as::<f64>().unwrap();
    v.iter()
        .zip(m.as_slice())
        .map(|(x, y)| (x - y).powi(2))
        .sum()
}

fn population(config: &LinearTaskConfig, seed: u64) -> (LinearTaskFamily, BatchedStatistics) {
    let family = LinearTaskFamily::generate(config, seed).unwrap();
    let stats: Vec<_> = (0..config.tasks)
        .map(|t| family.population_statistics(t))
        .collect();
    let stats = BatchedStatistics::from_statistics(&stats, &device()).unwrap();
    (family, stats)
}

#[test]
fn standard_retraining_converges_to_the_mean_of_the_tasks() {
    let config = LinearTaskConfig::default();
    let (family, stats) = population(&config, 1);
    let sr =
        standard_retraining(&stats, config.tasks, &StandardRetrainingConfig::default()).unwrap();
    assert!(distance(sr.a_hat.clone(), &family.standard_retraining_limit()) < 1e-6);
    // ... which is a rank-kT perturbation away from A*.
    assert!(distance(sr.a_hat, family.a_star()) > 1.0);
}

#[test]
fn lora_ml_recovers_a_star_for_three_tasks() {
    let config = LinearTaskConfig::default();
    let (family, stats) = population(&config, 2);
    let mut rng = StdRng::seed_from_u64(3);
    let init = LowRankFactors::gaussian_symmetric(
        config.tasks,
        config.dim,
        config.rank,
        0.1,
        &mut rng,
        &device(),
    );
    let bank = MatrixAdapterBank::new(init, config.tasks).unwrap();
    let out = lora_ml(&stats, bank, &LoraMlConfig::default()).unwrap();
    let dist = distance(out.a_hat, family.a_star());
    assert!(dist < 1e-3, "‖Â − A*‖² = {dist}");
    let loss = out.final_loss.try_into_vec_as::<f64>().unwrap()[0];
    assert!(loss < 1e-4, "final LoRA-ML loss {loss}");
}

#[test]
fn divergence_is_reported_with_the_step() {
    let config = LinearTaskConfig::default();
    let (_, stats) = population(&config, 4);
    let err = standard_retraining(
        &stats,
        config.tasks,
        &StandardRetrainingConfig {
            steps: 1000,
            lr: 50.0,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("standard retraining") && err.contains("step 250"),
        "{err}"
    );
}
