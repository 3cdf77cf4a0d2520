//! The theory must hold in what the linear suite writes, not only in the algorithms.

use adaptable_experiments::{
    device::Backend,
    linear::{LinearExperimentConfig, Method, RunOptions, SummaryRecord, Sweep, run_sweep_value},
};

fn options() -> RunOptions {
    RunOptions {
        device: Backend::default().device().unwrap(),
    }
}

fn run(population: bool, sweep: Sweep, value: usize) -> Vec<SummaryRecord> {
    let config = LinearExperimentConfig {
        population,
        runs: 3,
        ..Default::default()
    };
    run_sweep_value(&config, sweep, value, &options())
        .unwrap()
        .0
}

fn mean(records: &[SummaryRecord], method: Method, f: fn(&SummaryRecord) -> f64) -> f64 {
    let xs: Vec<f64> = records
        .iter()
        .filter(|r| r.method == method)
        .map(f)
        .collect();
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn max(records: &[SummaryRecord], method: Method, f: fn(&SummaryRecord) -> f64) -> f64 {
    records
        .iter()
        .filter(|r| r.method == method)
        .map(f)
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn population_defaults_recover_a_star_and_the_sr_closed_form() {
    let r = run(true, Sweep::Tasks, 3);
    assert_eq!(r.len(), 6);
    let ml_dist = max(&r, Method::LoraMl, |r| r.dist_to_a_star);
    assert!(ml_dist < 1e-3, "LoRA-ML ‖Â − A*‖² = {ml_dist}");
    let sr_closed = max(&r, Method::Standard, |r| r.dist_to_sr_closed_form);
    assert!(
        sr_closed < 1e-6,
        "SR distance to its closed form {sr_closed}"
    );
    let sr_dist = mean(&r, Method::Standard, |r| r.dist_to_a_star);
    assert!(sr_dist > 1.0, "SR should stay far from A*: {sr_dist}");
    // Rank-k fine-tuning adapts LoRA-ML's base but cannot adapt SR's (Corollary 1).
    let (ml, sr) = (
        mean(&r, Method::LoraMl, |r| r.final_population_loss),
        mean(&r, Method::Standard, |r| r.final_population_loss),
    );
    assert!(
        sr > 1e3 * ml,
        "SR {sr} vs LoRA-ML {ml}: expected orders of magnitude apart"
    );
    assert!(
        r.iter()
            .all(|r| r.finetune_rank == 1 && r.objective == "population")
    );
}

#[test]
fn finite_sample_defaults_keep_the_gap() {
    let r = run(false, Sweep::Tasks, 3);
    let ml_dist = max(&r, Method::LoraMl, |r| r.dist_to_a_star);
    let sr_dist = mean(&r, Method::Standard, |r| r.dist_to_a_star);
    assert!(ml_dist < 1e-2, "LoRA-ML ‖Â − A*‖² = {ml_dist}");
    assert!(sr_dist > 1e3 * ml_dist);
    // SR's estimate sits at its closed form up to sampling error, far closer than to A*.
    let sr_closed = mean(&r, Method::Standard, |r| r.dist_to_sr_closed_form);
    assert!(sr_closed < 1e-2 * sr_dist, "{sr_closed} vs {sr_dist}");
    let (ml, sr) = (
        mean(&r, Method::LoraMl, |r| r.final_paper_loss),
        mean(&r, Method::Standard, |r| r.final_paper_loss),
    );
    assert!(sr > 1e3 * ml, "paper metric: SR {sr} vs LoRA-ML {ml}");
}

#[test]
fn more_tasks_keep_lora_ml_ahead_by_orders_of_magnitude() {
    let r = run(true, Sweep::Tasks, 5);
    let (ml, sr) = (
        mean(&r, Method::LoraMl, |r| r.final_population_loss),
        mean(&r, Method::Standard, |r| r.final_population_loss),
    );
    assert!(sr > 1e3 * ml, "T=5: SR {sr} vs LoRA-ML {ml}");
}

#[test]
fn two_tasks_are_fine_tuned_at_rank_three_k() {
    let r = run(true, Sweep::Tasks, 2);
    assert!(
        r.iter().all(|r| r.finetune_rank == 3),
        "T=2 must use rank 3k = 3"
    );
    // Rank 3k = k(T+1) suffices for both bases, so both adapt (paper §12).
    assert!(max(&r, Method::LoraMl, |r| r.final_population_loss) < 1.0);
    let k2: Vec<_> = run_sweep_value(
        &LinearExperimentConfig {
            population: true,
            runs: 1,
            ..Default::default()
        },
        Sweep::Rank,
        2,
        &options(),
    )
    .unwrap()
    .0;
    assert!(k2.iter().all(|r| r.finetune_rank == 2));
}
