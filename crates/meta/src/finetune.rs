//! Test-time adaptation of a retrained model to one unseen task: a fresh LoRA adapter and head (or a
//! head alone) on a frozen base.

use adaptable_lora::{LoraConfig, LoraScaling};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::{
    MetaError, MetaModel, OptimizerSchedule, TaskData, TaskSlot,
    retrain::{evaluate_tasks, train_step as step},
};

/// What is trained on the new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinetuneMethod {
    /// A fresh LoRA adapter on every adapted layer plus a fresh head.
    Lora,
    /// A fresh head only.
    LastLayer,
}

impl FinetuneMethod {
    /// The identifier used in files (`lora`, `last-layer`).
    pub fn id(self) -> &'static str {
        match self {
            FinetuneMethod::Lora => "lora",
            FinetuneMethod::LastLayer => "last-layer",
        }
    }
}

/// Hyper-parameters of fine-tuning; defaults are the paper code's ConvAI2 settings (10 epochs, AdamW
/// at 1e-4, warm-up 10 %, schedule multiplier 4, rank 8, α 16, dropout 0.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// AdamW and its schedule (reference batches: the task's own).
    pub optim: OptimizerSchedule,
    /// The fresh adapter (ignored for last-layer fine-tuning).
    pub lora: LoraConfig,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            optim: OptimizerSchedule {
                lr: 1e-4,
                schedule_multiplier: 4.0,
                ..OptimizerSchedule::default()
            },
            lora: LoraConfig {
                rank: 8,
                alpha: 16.0,
                scaling: LoraScaling::Standard,
                dropout: 0.1,
            },
        }
    }
}

/// Held-out accuracy of one fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneOutcome {
    /// Accuracy before training (index 0) and after every epoch.
    pub accuracy: Vec<f64>,
    /// Mean training loss of every epoch.
    pub train_loss: Vec<f64>,
    /// Trainable parameters (adapter + head, or head).
    pub trainable_params: usize,
}

impl FinetuneOutcome {
    /// Accuracy before training.
    pub fn initial(&self) -> f64 {
        self.accuracy.first().copied().unwrap_or(f64::NAN)
    }

    /// Accuracy after the last epoch.
    pub fn last(&self) -> f64 {
        self.accuracy.last().copied().unwrap_or(f64::NAN)
    }

    /// The best accuracy over the epochs after training started (the paper's "best").
    pub fn best(&self) -> f64 {
        self.accuracy[1..].iter().copied().fold(f64::NAN, f64::max)
    }
}

/// Fine-tunes a copy of `base` on `task`: drops every retraining adapter and head, attaches fresh
/// task modules, freezes the base, and trains with AdamW; `base` itself is untouched.
pub fn finetune<M, D>(
    base: &M,
    task: &D,
    method: FinetuneMethod,
    config: &FinetuneConfig,
    device: &Device,
    on_step: impl FnMut(),
) -> Result<FinetuneOutcome, MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    finetune_model(base, task, method, config, device, on_step).map(|(outcome, _)| outcome)
}

/// [`finetune`], also returning the fine-tuned model after the last epoch: adapter 0 and head 0
/// (head 0 alone for [`FinetuneMethod::LastLayer`]) are the task's, to export or to keep using.
pub fn finetune_model<M, D>(
    base: &M,
    task: &D,
    method: FinetuneMethod,
    config: &FinetuneConfig,
    device: &Device,
    mut on_step: impl FnMut(),
) -> Result<(FinetuneOutcome, M), MetaError>
where
    M: MetaModel,
    D: TaskData<Batch = M::Batch>,
{
    let (lora, adapters, slot) = match method {
        FinetuneMethod::Lora => (Some(&config.lora), 1, TaskSlot::adapter_and_head(0)),
        FinetuneMethod::LastLayer => (None, 0, TaskSlot::head_only(0)),
    };
    let mut model = base
        .clone()
        .reset_task_modules(lora, adapters, 1, device)?
        .freeze_base();
    crate::require_autodiff(&model, "fine-tuning")?;
    let trainable_params = model.trainable_params();
    let tasks = std::slice::from_ref(task);
    let mut accuracy = evaluate_tasks(&model, tasks, |_| slot)?;
    let lr = config.optim.schedule(config.optim.lr, task.train_len());
    let mut optimizer = config.optim.optimizer();
    let mut steps = 0;
    let mut train_loss = Vec::with_capacity(config.optim.epochs);
    for epoch in 1..=config.optim.epochs {
        let mut losses = Vec::new();
        for batch in task.train_batches(epoch - 1)? {
            let (next, loss) = step(
                model,
                &mut optimizer,
                lr.lr(steps),
                &batch,
                slot,
                ("fine-tuning", epoch, steps, 0),
            )?;
            model = next;
            steps += 1;
            losses.push(loss);
            on_step();
        }
        train_loss.push(losses.iter().sum::<f64>() / losses.len().max(1) as f64);
        accuracy.extend(evaluate_tasks(&model, tasks, |_| slot)?);
    }
    let outcome = FinetuneOutcome {
        accuracy,
        train_loss,
        trainable_params,
    };
    Ok((outcome, model))
}
