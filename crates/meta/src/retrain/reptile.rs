//! First-order Reptile: per task, adapt a copy with a few inner steps, then move the model toward it.

use std::collections::HashMap;

use burn::{
    module::{Module, ModuleVisitor, Param, ParamId},
    optim::GradientsParams,
    tensor::Tensor,
};

use super::{
    RetrainConfig, RetrainMethod, RetrainObserver, RetrainState,
    loops::{finish_epoch, step},
};
use crate::{MetaError, MetaModel, TaskData, TaskSlot};

/// Runs the remaining epochs of Reptile. Each task visit: copy the model, take `inner_steps` AdamW
/// steps on that task (a fresh optimizer each time, batches wrapping around), then one outer step with
/// the pseudo-gradient `(θ − θ_task) / T`, which moves θ toward the adapted weights.
pub(crate) fn run<M, D>(
    mut state: RetrainState<M>,
    tasks: &[D],
    config: &RetrainConfig,
    observer: &mut impl RetrainObserver<M>,
) -> Result<RetrainState<M>, MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    let t_count = tasks.len();
    let outer_lr = config.optim.schedule(config.reptile.outer_lr, t_count);
    for epoch in state.epochs_done() + 1..=config.optim.epochs {
        observer.on_epoch_start(epoch);
        let mut losses = Vec::new();
        for (t, task) in tasks.iter().enumerate() {
            let batches = task.train_batches(epoch - 1)?;
            if batches.is_empty() {
                return Err(MetaError::Data(format!("task {t} has no training batches")));
            }
            let mut fast = state.model.clone();
            let mut inner = config.optim.optimizer();
            for i in 0..config.reptile.inner_steps {
                let (next, loss) = step(
                    fast,
                    &mut inner,
                    config.reptile.inner_lr,
                    &batches[i % batches.len()],
                    TaskSlot::SHARED,
                    ("reptile (inner)", epoch, state.step, t),
                )?;
                fast = next;
                losses.push(loss);
            }
            let grads = pseudo_gradient(&state.model, &fast, 1.0 / t_count as f64);
            state.model = state
                .optimizer
                .step(outer_lr.lr(state.step), state.model, grads);
            state.step += 1;
            observer.on_step(state.step);
        }
        finish_epoch(&mut state, tasks, RetrainMethod::Reptile, epoch, &losses)?;
        observer.on_epoch(&state)?;
    }
    Ok(state)
}

/// `scale · (θ − φ)` for every trainable parameter of `theta`, keyed by parameter id (a copy made
/// with `clone` keeps the ids, so `phi`'s parameters match `theta`'s).
pub fn pseudo_gradient<M: Module>(theta: &M, phi: &M, scale: f64) -> GradientsParams {
    let mut adapted = Collect::default();
    phi.visit(&mut adapted);
    let mut build = Build {
        adapted: adapted.values,
        scale,
        grads: GradientsParams::new(),
    };
    theta.visit(&mut build);
    build.grads
}

#[derive(Default)]
struct Collect {
    values: HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.values.insert(param.id, value.reshape([n]));
    }
}

struct Build {
    adapted: HashMap<ParamId, Tensor<1>>,
    scale: f64,
    grads: GradientsParams,
}

impl ModuleVisitor for Build {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let Some(adapted) = self.adapted.remove(&param.id) else {
            return;
        };
        let theta = value.inner();
        let phi: Tensor<D> = adapted.reshape(theta.shape());
        self.grads
            .register(param.id, (theta - phi).mul_scalar(self.scale));
    }
}
