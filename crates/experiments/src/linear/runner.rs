//! Runs a sweep: generate tasks, retrain with SR and LoRA-ML, fine-tune both, measure.

use adaptable_lora::{LowRankFactors, MatrixAdapterBank};
use adaptable_meta::linear::{
    BatchedStatistics, FineTuneConfig, FineTuneOutcome, fine_tune, lora_ml, standard_retraining,
};
use adaptable_tasks::{Matrix, linear::LinearTaskFamily};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};

use super::{CurveRow, LinearExperimentConfig, Method, SummaryRecord, Sweep, SweepResult};
use crate::{ExperimentError, seed::derive_seed};

/// Curves keep at most about this many points per (value, method), evenly spaced, plus the last.
const MAX_CURVE_POINTS: usize = 1000;

/// Options that are not part of the configuration file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compute device.
    pub device: Device,
}

/// Runs every value of `sweep`, calling `progress` after each value.
pub fn run_sweep(
    config: &LinearExperimentConfig,
    sweep: Sweep,
    options: &RunOptions,
    mut progress: impl FnMut(usize),
) -> Result<SweepResult, ExperimentError> {
    let spec = config.sweep(sweep)?;
    let mut summary = Vec::new();
    let mut curves = Vec::new();
    for &value in &spec.values {
        let (records, rows) = run_sweep_value(config, sweep, value, options)?;
        summary.extend(records);
        curves.extend(rows);
        progress(value);
    }
    Ok(SweepResult {
        sweep,
        summary,
        curves,
    })
}

/// Runs all runs of one sweep value (batched into single tensor operations).
pub fn run_sweep_value(
    config: &LinearExperimentConfig,
    sweep: Sweep,
    value: usize,
    options: &RunOptions,
) -> Result<(Vec<SummaryRecord>, Vec<CurveRow>), ExperimentError> {
    let spec = config.sweep(sweep)?;
    let task = sweep.apply(&config.task, value);
    task.validate()?;
    if !task.satisfies_independence() {
        tracing::warn!(
            sweep = %sweep, value,
            "k(T+1) = {} > d = {}: outside the paper's Remark 1 (task subspaces linearly independent, \
             k(T+1) <= d), so exact recovery (Theorem 3) is not guaranteed; running anyway",
            task.rank * (task.tasks + 1),
            task.dim
        );
    }
    let label = value.to_string();
    let family_seed = derive_seed(config.seed, &[sweep.symbol(), &label, "family"]);
    let family = LinearTaskFamily::generate(&task, family_seed)?;
    let runs = config.runs;
    let device = &options.device;
    let finetune_rank = if task.tasks == 2 {
        task.rank * config.two_task_rank_factor
    } else {
        task.rank
    };

    let mut retrain_stats = Vec::with_capacity(runs * task.tasks);
    let mut finetune_stats = Vec::with_capacity(runs);
    let mut retrain_init = Vec::with_capacity(runs);
    let mut finetune_init = Vec::with_capacity(runs);
    for run in 0..runs {
        let run_label = format!("run{run}");
        let stream = |purpose: &str| {
            StdRng::seed_from_u64(derive_seed(
                config.seed,
                &[sweep.symbol(), &label, &run_label, purpose],
            ))
        };
        let mut data_rng = stream("retrain-data");
        for t in 0..task.tasks {
            retrain_stats.push(if config.population {
                family.population_statistics(t)
            } else {
                family
                    .sample(t, task.retrain_samples, &mut data_rng)
                    .statistics()
            });
        }
        let mut ft_rng = stream("finetune-data");
        finetune_stats.push(
            family
                .sample(family.new_task(), task.finetune_samples, &mut ft_rng)
                .statistics(),
        );
        retrain_init.push(LowRankFactors::gaussian_symmetric(
            task.tasks,
            task.dim,
            task.rank,
            config.lora_ml.init_std,
            &mut stream("retrain-init"),
            device,
        ));
        finetune_init.push(LowRankFactors::gaussian_asymmetric(
            1,
            [task.dim, task.dim],
            finetune_rank,
            config.finetune.init_std,
            &mut stream("finetune-init"),
            device,
        ));
    }
    let retrain_stats = BatchedStatistics::from_statistics(&retrain_stats, device)?;
    let finetune_batch = BatchedStatistics::from_statistics(&finetune_stats, device)?;
    let bank = MatrixAdapterBank::new(concat_symmetric(retrain_init), task.tasks)?;
    let ft_init = concat_asymmetric(finetune_init)?;

    let a_star = broadcast(family.a_star(), runs, device);
    let sr_limit = broadcast(&family.standard_retraining_limit(), runs, device);
    let target = broadcast(&family.task_matrix(family.new_task()), runs, device);

    let span = tracing::info_span!("sweep value", sweep = %sweep, value);
    let _enter = span.enter();
    let sr = standard_retraining(&retrain_stats, task.tasks, &config.standard)?;
    tracing::debug!("standard retraining done");
    let ml = lora_ml(&retrain_stats, bank, &config.lora_ml)?;
    tracing::debug!("LoRA-ML retraining done");

    let ft_config = FineTuneConfig {
        steps: spec.finetune_steps,
        lr: config.finetune.lr,
        init_std: config.finetune.init_std,
    };
    let mut records = Vec::with_capacity(2 * runs);
    let mut rows = Vec::new();
    for (method, a_hat, retrain_loss) in [
        (Method::Standard, sr.a_hat, sr.final_loss),
        (Method::LoraMl, ml.a_hat, ml.final_loss),
    ] {
        let outcome = fine_tune(
            &a_hat,
            &finetune_batch,
            task.finetune_samples,
            &target,
            ft_init.clone(),
            &ft_config,
        )?;
        let to_a_star = squared_distances(&a_hat, &a_star)?;
        let to_sr_limit = squared_distances(&a_hat, &sr_limit)?;
        let retrain_loss = read(retrain_loss)?;
        for run in 0..runs {
            records.push(SummaryRecord {
                sweep: sweep.symbol().to_string(),
                value: value as f64,
                run,
                method,
                dist_to_a_star: to_a_star[run],
                dist_to_sr_closed_form: to_sr_limit[run],
                final_retrain_loss: retrain_loss[run],
                final_population_loss: last(&outcome.population_loss, run),
                final_paper_loss: last(&outcome.paper_loss, run),
                initial_paper_loss: outcome.paper_loss.first().map_or(f64::NAN, |r| r[run]),
                finetune_rank,
                finetune_steps: spec.finetune_steps,
                objective: if config.population {
                    "population"
                } else {
                    "finite"
                }
                .into(),
            });
        }
        rows.extend(aggregate_curve(&outcome, method, value as f64));
    }
    Ok((records, rows))
}

fn concat_symmetric(parts: Vec<LowRankFactors>) -> LowRankFactors {
    LowRankFactors::symmetric(Tensor::cat(
        parts.iter().map(|f| f.u().clone()).collect(),
        0,
    ))
}

fn concat_asymmetric(parts: Vec<LowRankFactors>) -> Result<LowRankFactors, ExperimentError> {
    let u = Tensor::cat(parts.iter().map(|f| f.u().clone()).collect(), 0);
    let v = Tensor::cat(parts.iter().map(|f| f.v().clone()).collect(), 0);
    Ok(LowRankFactors::asymmetric(u, v)?)
}

fn broadcast(m: &Matrix, copies: usize, device: &Device) -> Tensor<3> {
    let (r, c) = (m.rows(), m.cols());
    let data: Vec<f32> = (0..copies).flat_map(|_| m.to_f32_vec()).collect();
    Tensor::from_data(TensorData::new(data, [copies, r, c]), device)
}

fn squared_distances(a: &Tensor<3>, b: &Tensor<3>) -> Result<Vec<f64>, ExperimentError> {
    let diff = a.clone() - b.clone();
    let n = diff.dims()[0];
    read((diff.clone() * diff).sum_dims(&[1, 2]).reshape([n]))
}

fn read(t: Tensor<1>) -> Result<Vec<f64>, ExperimentError> {
    t.try_into_vec_as::<f64>()
        .map_err(|e| ExperimentError::InvalidOption(format!("cannot read a result tensor: {e:?}")))
}

fn last(curve: &[Vec<f64>], run: usize) -> f64 {
    curve.last().map_or(f64::NAN, |row| row[run])
}

/// Mean, min and max over runs at evenly spaced iterations (always including the first and last).
fn aggregate_curve(outcome: &FineTuneOutcome, method: Method, value: f64) -> Vec<CurveRow> {
    let steps = outcome.paper_loss.len();
    let stride = steps.div_ceil(MAX_CURVE_POINTS).max(1);
    (0..steps)
        .filter(|&i| i % stride == 0 || i + 1 == steps)
        .map(|i| {
            let row = &outcome.paper_loss[i];
            let mean = row.iter().sum::<f64>() / row.len() as f64;
            let min = row.iter().copied().fold(f64::INFINITY, f64::min);
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            CurveRow {
                iteration: i,
                method,
                value,
                mean,
                min,
                max,
            }
        })
        .collect()
}
