//! Retraining on many tasks before adaptation: standard retraining (SR), LoRA-ML, last-layer-ML and
//! first-order Reptile, over any [`MetaModel`].
//!
//! All methods share the paper's protocol (§7.2 of our specification): AdamW with a linear warm-up
//! and decay, an evaluation of every retraining task on its held-out data after each epoch (LoRA-ML
//! and last-layer-ML through the task's own adapter and head), and the model of the best epoch kept.

mod evaluate;
mod loops;
mod reptile;

use adaptable_lora::{LoraConfig, LoraScaling};
use burn::{optim::ModuleOptimizer, tensor::Device};
use serde::{Deserialize, Serialize};

pub use evaluate::evaluate_tasks;
pub use loops::{adamw as adamw_optimizer, step as train_step};

pub use reptile::pseudo_gradient;

use crate::{MetaError, MetaModel, OptimizerSchedule, TaskData, TaskSlot};

/// A retraining method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetrainMethod {
    /// Standard retraining: the whole model and one shared head; tasks visited one after another.
    #[serde(rename = "sr", alias = "standard")]
    Standard,
    /// LoRA-ML: the base plus one adapter and one head per task, round-robin over tasks.
    LoraMl,
    /// Last-layer-ML: the base plus one head per task, round-robin over tasks.
    LastLayerMl,
    /// First-order Reptile over all parameters with one shared head.
    Reptile,
}

impl RetrainMethod {
    /// Every method.
    pub const ALL: [RetrainMethod; 4] = [
        RetrainMethod::Standard,
        RetrainMethod::LoraMl,
        RetrainMethod::LastLayerMl,
        RetrainMethod::Reptile,
    ];

    /// The identifier used in files (`sr`, `lora-ml`, `last-layer-ml`, `reptile`).
    pub fn id(self) -> &'static str {
        match self {
            RetrainMethod::Standard => "sr",
            RetrainMethod::LoraMl => "lora-ml",
            RetrainMethod::LastLayerMl => "last-layer-ml",
            RetrainMethod::Reptile => "reptile",
        }
    }

    /// The adapter and head task `t` trains and is evaluated through.
    pub fn slot(self, task: usize) -> TaskSlot {
        match self {
            RetrainMethod::Standard | RetrainMethod::Reptile => TaskSlot::SHARED,
            RetrainMethod::LoraMl => TaskSlot::adapter_and_head(task),
            RetrainMethod::LastLayerMl => TaskSlot::head_only(task),
        }
    }
}

/// Reptile's inner loop and outer step (paper code: 20 inner AdamW steps at 5e-5, outer AdamW at 1e-4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReptileConfig {
    /// Inner AdamW steps per task visit (batches wrap around).
    pub inner_steps: usize,
    /// Inner learning rate.
    pub inner_lr: f64,
    /// Outer learning rate (peak of the outer schedule).
    pub outer_lr: f64,
}

impl Default for ReptileConfig {
    fn default() -> Self {
        Self {
            inner_steps: 20,
            inner_lr: 5e-5,
            outer_lr: 1e-4,
        }
    }
}

/// Hyper-parameters of retraining; defaults are the paper code's ConvAI2 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// AdamW and its schedule (reference batches: the largest task's).
    pub optim: OptimizerSchedule,
    /// The task adapters of LoRA-ML.
    pub lora: LoraConfig,
    /// Reptile's loops.
    pub reptile: ReptileConfig,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            optim: OptimizerSchedule::default(),
            lora: LoraConfig {
                rank: 8,
                alpha: 16.0,
                scaling: LoraScaling::Standard,
                dropout: 0.1,
            },
            reptile: ReptileConfig::default(),
        }
    }
}

/// What one epoch of retraining measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Held-out accuracy of every retraining task.
    pub heldout_accuracy: Vec<f64>,
    /// Their mean, the model-selection criterion.
    pub mean_accuracy: f64,
}

/// The state of a retraining run between epochs: enough to resume it exactly.
#[derive(Clone)]
pub struct RetrainState<M> {
    /// The model after the last finished epoch.
    pub model: M,
    /// The optimizer (for Reptile: the outer optimizer).
    pub optimizer: ModuleOptimizer,
    /// Optimizer steps taken so far (drives the schedule).
    pub step: usize,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
    /// The best model so far and its epoch (0 = none yet).
    pub best: (M, usize),
}

impl<M> RetrainState<M> {
    /// Epochs finished.
    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }
}

/// Callbacks from a retraining run: progress, and a chance to checkpoint after each epoch.
pub trait RetrainObserver<M> {
    /// Before epoch `epoch` (1-based) trains: the place to reseed random streams (dropout) so that a
    /// resumed run draws what an uninterrupted one does.
    fn on_epoch_start(&mut self, _epoch: usize) {}

    /// After every optimizer step (for progress bars).
    fn on_step(&mut self, _step: usize) {}

    /// After every epoch, with the complete state (persist it to resume later, e.g. with
    /// [`CheckpointDir::save`](crate::checkpoint::CheckpointDir::save)). An error stops the run and
    /// is returned by [`retrain`] as it is: a checkpoint error keeps its cause, and an observer's own
    /// failure travels as [`MetaError::Observer`].
    fn on_epoch(&mut self, _state: &RetrainState<M>) -> Result<(), MetaError> {
        Ok(())
    }
}

/// Checkpoints every epoch and nothing else (no progress, no reseeding: a model with dropout needs
/// an observer that also reseeds in [`RetrainObserver::on_epoch_start`] to resume exactly).
impl<M: burn::module::Module> RetrainObserver<M> for crate::checkpoint::CheckpointDir {
    fn on_epoch(&mut self, state: &RetrainState<M>) -> Result<(), MetaError> {
        self.save(state)
    }
}

/// An observer that does nothing.
pub struct NoObserver;

impl<M> RetrainObserver<M> for NoObserver {}

/// The result of a retraining run.
pub struct RetrainOutcome<M> {
    /// The model of the best epoch (its task modules included; fine-tuning keeps only the base).
    pub best: M,
    /// The best epoch (1-based).
    pub best_epoch: usize,
    /// One record per epoch.
    pub history: Vec<EpochRecord>,
    /// Trainable parameters during retraining.
    pub trainable_params: usize,
}

/// Prepares `model` for `method` on `tasks` tasks: the adapters and heads the method trains.
pub fn prepare<M: MetaModel>(
    model: M,
    method: RetrainMethod,
    tasks: usize,
    config: &RetrainConfig,
    device: &Device,
) -> Result<M, MetaError> {
    match method {
        RetrainMethod::Standard | RetrainMethod::Reptile => {
            model.reset_task_modules(None, 0, 1, device)
        }
        RetrainMethod::LoraMl => model.reset_task_modules(Some(&config.lora), tasks, tasks, device),
        RetrainMethod::LastLayerMl => model.reset_task_modules(None, 0, tasks, device),
    }
}

/// Retrains `model` (already [`prepare`]d) on `tasks`, resuming from `resume` when given.
pub fn retrain<M, D>(
    model: M,
    tasks: &[D],
    method: RetrainMethod,
    config: &RetrainConfig,
    observer: &mut impl RetrainObserver<M>,
    resume: Option<RetrainState<M>>,
) -> Result<RetrainOutcome<M>, MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    if tasks.is_empty() {
        return Err(MetaError::Data("no retraining tasks".into()));
    }
    crate::require_autodiff(&model, method.id())?;
    let trainable_params = model.trainable_params();
    let state = match resume {
        Some(state) => state,
        None => RetrainState {
            best: (model.clone(), 0),
            model,
            optimizer: config.optim.optimizer(),
            step: 0,
            history: Vec::new(),
        },
    };
    let state = match method {
        RetrainMethod::Reptile => reptile::run(state, tasks, config, observer)?,
        _ => loops::run(state, tasks, method, config, observer)?,
    };
    let (best, best_epoch) = state.best;
    Ok(RetrainOutcome {
        best,
        best_epoch,
        history: state.history,
        trainable_params,
    })
}
