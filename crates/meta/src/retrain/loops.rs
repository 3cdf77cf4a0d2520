//! The gradient loops of SR, LoRA-ML and last-layer-ML.

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};

use super::{
    EpochRecord, RetrainConfig, RetrainMethod, RetrainObserver, RetrainState, evaluate_tasks,
};
use crate::{MetaError, MetaModel, TaskData};

/// AdamW with torch's defaults (β = (0.9, 0.999), ε = 1e-8) and the given weight decay.
pub fn adamw(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// One optimizer step on `batch` through `slot`; returns the model and the loss value. `where_`
/// (method, epoch, step, task) locates a non-finite loss in the error.
pub fn step<M: MetaModel>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    batch: &M::Batch,
    slot: crate::TaskSlot,
    where_: (&str, usize, usize, usize),
) -> Result<(M, f64), MetaError> {
    let loss = model.loss(batch, slot);
    let value: f64 = loss.clone().into_scalar::<f32>().into();
    let (method, epoch, step, task) = where_;
    if !value.is_finite() {
        return Err(MetaError::NonFiniteLoss {
            method: method.to_string(),
            epoch,
            step,
            task,
            value,
        });
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    Ok((optimizer.step(lr, model, grads), value))
}

/// Runs the remaining epochs of SR, LoRA-ML or last-layer-ML.
pub(crate) fn run<M, D>(
    mut state: RetrainState<M>,
    tasks: &[D],
    method: RetrainMethod,
    config: &RetrainConfig,
    observer: &mut impl RetrainObserver<M>,
) -> Result<RetrainState<M>, MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    let reference = tasks
        .iter()
        .map(TaskData::train_len)
        .max()
        .unwrap_or(1)
        .max(1);
    let lr = config.optim.schedule(config.optim.lr, reference);
    for epoch in state.epochs_done() + 1..=config.optim.epochs {
        observer.on_epoch_start(epoch);
        let batches = tasks
            .iter()
            .map(|t| t.train_batches(epoch - 1))
            .collect::<Result<Vec<_>, _>>()?;
        // SR visits the tasks one after another (as the paper's standard.py); the task-specific
        // methods go round-robin, one batch of each task in turn, a task dropping out when done.
        let order: Vec<(usize, usize)> = match method {
            RetrainMethod::Standard => batches
                .iter()
                .enumerate()
                .flat_map(|(t, bs)| (0..bs.len()).map(move |b| (t, b)))
                .collect(),
            _ => {
                let longest = batches.iter().map(Vec::len).max().unwrap_or(0);
                (0..longest)
                    .flat_map(|b| (0..batches.len()).map(move |t| (t, b)))
                    .filter(|&(t, b)| b < batches[t].len())
                    .collect()
            }
        };
        let mut losses = Vec::with_capacity(order.len());
        for (t, b) in order {
            let (model, loss) = step(
                state.model,
                &mut state.optimizer,
                lr.lr(state.step),
                &batches[t][b],
                method.slot(t),
                (method.id(), epoch, state.step, t),
            )?;
            state.model = model;
            state.step += 1;
            losses.push(loss);
            observer.on_step(state.step);
        }
        finish_epoch(&mut state, tasks, method, epoch, &losses)?;
        observer.on_epoch(&state)?;
    }
    Ok(state)
}

/// Evaluates every task, records the epoch and keeps the best model (ties keep the earlier epoch).
pub(crate) fn finish_epoch<M, D>(
    state: &mut RetrainState<M>,
    tasks: &[D],
    method: RetrainMethod,
    epoch: usize,
    losses: &[f64],
) -> Result<(), MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    let heldout_accuracy = evaluate_tasks(&state.model, tasks, |t| method.slot(t))?;
    let mean_accuracy = heldout_accuracy.iter().sum::<f64>() / heldout_accuracy.len() as f64;
    let best_so_far = state
        .history
        .iter()
        .map(|r| r.mean_accuracy)
        .fold(f64::NEG_INFINITY, f64::max);
    if mean_accuracy > best_so_far {
        state.best = (state.model.clone(), epoch);
    }
    state.history.push(EpochRecord {
        epoch,
        train_loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
        heldout_accuracy,
        mean_accuracy,
    });
    tracing::info!(
        method = method.id(),
        epoch,
        mean_accuracy,
        "retraining epoch done"
    );
    Ok(())
}
