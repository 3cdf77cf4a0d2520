//! Runs one setting `(d, T)` of the shallow suite: draw every trial, retrain with SR and LoRA-ML,
//! fine-tune both, aggregate; and runs or reuses the settings of a sweep.

use std::{path::Path, time::Instant};

use adaptable_lora::{LowRankFactors, MatrixAdapterBank};
use adaptable_meta::shallow::{
    ShallowBatch, ShallowFineTuneOutcome, ShallowNetworks, ShallowRetrainOutcome, fine_tune,
    lora_adapters, retrain,
};
use adaptable_tasks::shallow::{ShallowSample, ShallowTaskConfig, ShallowTaskFamily};
use burn::tensor::{Device, Tensor};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::{
    CurveRow, ShallowExperimentConfig, ShallowSweepResult, SummaryRecord, median_and_range,
};
use crate::{
    ExperimentError,
    io::{read_json, write_json},
    linear::{Method, Sweep},
    seed::derive_seed,
};

/// Curves keep at most about this many points per (value, method, rank), evenly spaced, plus the
/// last.
const MAX_CURVE_POINTS: usize = 1000;

/// Options that are not part of the configuration.
#[derive(Debug, Clone)]
pub struct ShallowRunOptions {
    /// Compute device (the fused data pass always runs on the CPU).
    pub device: Device,
    /// The backend's name, recorded in manifests.
    pub device_name: String,
}

/// The results of one setting, independent of the sweep that asked for it: at the defaults
/// (`d = 10`, `T = 3`) both sweeps share one run. `sweep` and `value` in the rows are left empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingResult {
    /// One record per (trial, method, rank).
    pub records: Vec<SummaryRecord>,
    /// Aggregated curves per (method, rank).
    pub curves: Vec<CurveRow>,
}

/// What a finished setting records about how it was made, to decide whether a rerun may reuse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SettingManifest {
    setting: SettingKey,
    device: String,
    seconds: f64,
}

/// Everything that determines a setting's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SettingKey {
    seed: u64,
    trials: usize,
    ranks: Vec<usize>,
    task: ShallowTaskConfig,
    retrain: adaptable_meta::shallow::ShallowRetrainConfig,
    finetune: adaptable_meta::shallow::ShallowFineTuneConfig,
}

/// The name of a setting, used in seeds and directory names (`d10-T3-k1-N1000-n100`).
pub fn setting_id(task: &ShallowTaskConfig) -> String {
    format!(
        "d{}-T{}-k{}-N{}-n{}",
        task.dim, task.tasks, task.rank, task.retrain_samples, task.finetune_samples
    )
}

/// Runs the setting `sweep = value`, or reuses its finished results under
/// `<out>/settings/<id>/` when they were made with the same configuration and device (and
/// `fresh` is false). Returns the sweep's rows and the seconds it took (0 when reused).
pub fn run_or_reuse(
    config: &ShallowExperimentConfig,
    sweep: Sweep,
    value: usize,
    out: &Path,
    options: &ShallowRunOptions,
    fresh: bool,
) -> Result<(SettingResult, f64), ExperimentError> {
    let task = config.setting(sweep, value)?;
    let dir = out.join("settings").join(setting_id(&task));
    let key = SettingKey {
        seed: config.seed,
        trials: config.trials,
        ranks: config.finetune_ranks(&task),
        task: task.clone(),
        retrain: config.retrain.clone(),
        finetune: config.finetune.clone(),
    };
    let (result_path, manifest_path) = (dir.join("result.json"), dir.join("manifest.json"));
    let reusable = !fresh
        && result_path.is_file()
        && read_json::<SettingManifest>(&manifest_path)
            .is_ok_and(|m| m.setting == key && m.device == options.device_name);
    let (mut result, seconds) = if reusable {
        tracing::info!(setting = %setting_id(&task), "finished results with this configuration exist; reusing (use --fresh to recompute)");
        (read_json::<SettingResult>(&result_path)?, 0.0)
    } else {
        let started = Instant::now();
        let result = run_setting(config, &task, options)?;
        let seconds = started.elapsed().as_secs_f64();
        // The result first, then the manifest that vouches for it.
        write_json(&result_path, &result)?;
        write_json(
            &manifest_path,
            &SettingManifest {
                setting: key,
                device: options.device_name.clone(),
                seconds,
            },
        )?;
        (result, seconds)
    };
    for r in &mut result.records {
        r.sweep = sweep.symbol().to_string();
        r.value = value;
    }
    for c in &mut result.curves {
        c.value = value;
    }
    Ok((result, seconds))
}

/// Runs every value of `sweep` (reusing finished settings), calling `progress` after each.
pub fn run_shallow_sweep(
    config: &ShallowExperimentConfig,
    sweep: Sweep,
    out: &Path,
    options: &ShallowRunOptions,
    fresh: bool,
    mut progress: impl FnMut(usize, f64),
) -> Result<ShallowSweepResult, ExperimentError> {
    let mut result = ShallowSweepResult {
        sweep,
        summary: Vec::new(),
        curves: Vec::new(),
    };
    for &value in config.values(sweep)? {
        let (setting, seconds) = run_or_reuse(config, sweep, value, out, options, fresh)?;
        result.summary.extend(setting.records);
        result.curves.extend(setting.curves);
        progress(value, seconds);
    }
    Ok(result)
}

/// One trial's draws.
struct Trial {
    retrain: Vec<ShallowSample>,
    finetune: ShallowSample,
    init: ShallowNetworks,
    adapters: LowRankFactors,
    finetune_init: Vec<LowRankFactors>,
}

/// Runs all trials of one setting, batched: both retrainings side by side, then every
/// fine-tuning (method × rank) side by side.
pub fn run_setting(
    config: &ShallowExperimentConfig,
    task: &ShallowTaskConfig,
    options: &ShallowRunOptions,
) -> Result<SettingResult, ExperimentError> {
    config.validate()?;
    task.validate()?;
    let id = setting_id(task);
    let device = &options.device;
    let ranks = config.finetune_ranks(task);
    let (d, tasks) = (task.dim, task.tasks);
    let trials = (0..config.trials)
        .map(|trial| -> Result<Trial, ExperimentError> {
            let trial_label = format!("trial{trial}");
            let seed =
                |purpose: &str| derive_seed(config.seed, &["shallow", &id, &trial_label, purpose]);
            let stream = |purpose: &str| StdRng::seed_from_u64(seed(purpose));
            let family = ShallowTaskFamily::generate(task, seed("family"))?;
            let mut data = stream("retrain-data");
            let retrain = (0..tasks)
                .map(|t| family.sample(t, task.retrain_samples, &mut data))
                .collect();
            let finetune = family.sample(
                family.new_task(),
                task.finetune_samples,
                &mut stream("finetune-data"),
            );
            let init = ShallowNetworks::torch_default(1, d, &mut stream("init"), device);
            let adapters = lora_adapters(tasks, d, task.rank, &mut stream("adapters"), device)?;
            let finetune_init = ranks
                .iter()
                .map(|&r| lora_adapters(1, d, r, &mut stream(&format!("finetune-r{r}")), device))
                .collect::<Result<_, _>>()?;
            Ok(Trial {
                retrain,
                finetune,
                init,
                adapters,
                finetune_init,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let retrain_refs: Vec<&ShallowSample> = trials.iter().flat_map(|t| &t.retrain).collect();
    let retrain_batch = ShallowBatch::from_samples(&retrain_refs)?;
    let finetune_refs: Vec<&ShallowSample> = trials.iter().map(|t| &t.finetune).collect();
    let finetune_batch = ShallowBatch::from_samples(&finetune_refs)?;
    let init = ShallowNetworks::cat(trials.iter().map(|t| t.init.clone()).collect());
    let bank = MatrixAdapterBank::new(concat(trials.iter().map(|t| &t.adapters))?, tasks)?;

    let span = tracing::info_span!("shallow setting", setting = %id);
    let _enter = span.enter();
    let retrain_config = &config.retrain;
    let (sr, ml) = std::thread::scope(|s| {
        let sr = s.spawn(|| retrain(&retrain_batch, tasks, init.clone(), None, retrain_config));
        let ml = retrain(
            &retrain_batch,
            tasks,
            init.clone(),
            Some(bank),
            retrain_config,
        );
        (join(sr), ml)
    });
    let retrained: [(Method, ShallowRetrainOutcome); 2] =
        [(Method::Standard, sr??), (Method::LoraMl, ml?)];
    tracing::debug!("retraining done");

    let jobs: Vec<(usize, Method, usize)> = retrained
        .iter()
        .enumerate()
        .flat_map(|(m, (method, _))| ranks.iter().enumerate().map(move |(r, _)| (m, *method, r)))
        .collect();
    let inits: Vec<LowRankFactors> = (0..ranks.len())
        .map(|r| concat(trials.iter().map(|t| &t.finetune_init[r])))
        .collect::<Result<_, _>>()?;
    let finetuned: Vec<Result<ShallowFineTuneOutcome, ExperimentError>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(m, _, r)| {
                let (base, init, batch) = (&retrained[m].1.networks, &inits[r], &finetune_batch);
                s.spawn(move || Ok(fine_tune(batch, base, init.clone(), &config.finetune)?))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| join(h).and_then(|r| r))
            .collect()
    });

    let mut result = SettingResult {
        records: Vec::new(),
        curves: Vec::new(),
    };
    for (&(m, method, r), outcome) in jobs.iter().zip(finetuned) {
        let outcome = outcome?;
        let rank = ranks[r];
        let retrain_loss = &retrained[m].1.final_loss;
        for trial in 0..config.trials {
            result.records.push(SummaryRecord {
                sweep: String::new(),
                value: 0,
                trial,
                method,
                finetune_rank: rank,
                final_test_loss: outcome.test_loss.last().map_or(f64::NAN, |row| row[trial]),
                initial_test_loss: outcome.test_loss.first().map_or(f64::NAN, |row| row[trial]),
                final_retrain_loss: retrain_loss[trial],
                final_finetune_train_loss: outcome.final_train_loss[trial],
            });
        }
        result
            .curves
            .extend(aggregate(&outcome.test_loss, method, rank));
    }
    Ok(result)
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> Result<T, ExperimentError> {
    handle
        .join()
        .map_err(|_| ExperimentError::InvalidOption("a training thread panicked".into()))
}

fn concat<'a>(
    parts: impl Iterator<Item = &'a LowRankFactors>,
) -> Result<LowRankFactors, ExperimentError> {
    let (u, v): (Vec<Tensor<3>>, Vec<Tensor<3>>) =
        parts.map(|f| (f.u().clone(), f.v().clone())).unzip();
    Ok(LowRankFactors::asymmetric(
        Tensor::cat(u, 0),
        Tensor::cat(v, 0),
    )?)
}

/// Median and central range over trials at evenly spaced epochs (always the first and last).
fn aggregate(test_loss: &[Vec<f64>], method: Method, rank: usize) -> Vec<CurveRow> {
    let epochs = test_loss.len();
    let stride = epochs.div_ceil(MAX_CURVE_POINTS).max(1);
    (0..epochs)
        .filter(|&e| e % stride == 0 || e + 1 == epochs)
        .map(|e| {
            let (median, low, high) = median_and_range(&test_loss[e]);
            CurveRow {
                epoch: e,
                method,
                value: 0,
                finetune_rank: rank,
                median,
                low,
                high,
            }
        })
        .collect()
}
