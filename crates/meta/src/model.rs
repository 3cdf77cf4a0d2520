//! The small interface the retraining algorithms need from a model and from task data.

use adaptable_lora::LoraConfig;
use burn::{module::Module, tensor::Device, tensor::Tensor};

use crate::MetaError;

/// Which adapter and head a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSlot {
    /// The adapter, or `None` for the base alone.
    pub adapter: Option<usize>,
    /// The head.
    pub head: usize,
}

impl TaskSlot {
    /// The shared base and head 0 (standard retraining, Reptile).
    pub const SHARED: TaskSlot = TaskSlot {
        adapter: None,
        head: 0,
    };

    /// Adapter `t` and head `t` (LoRA-ML).
    pub fn adapter_and_head(t: usize) -> Self {
        Self {
            adapter: Some(t),
            head: t,
        }
    }

    /// Head `t` on the bare base (last-layer-ML).
    pub fn head_only(t: usize) -> Self {
        Self {
            adapter: None,
            head: t,
        }
    }
}

/// A model with a base, a bank of task adapters and a bank of task heads.
///
/// Implement it for a new architecture to get SR, LoRA-ML, last-layer-ML, Reptile and fine-tuning.
/// Each adapter and head must own separate parameters so that a step on one task leaves the others
/// (and their optimizer state) untouched.
pub trait MetaModel: Module {
    /// One mini-batch of one task.
    type Batch;

    /// The mean training loss of `batch` through `slot`, a scalar tensor.
    fn loss(&self, batch: &Self::Batch, slot: TaskSlot) -> Tensor<1>;

    /// `(correct predictions, examples)` on `batch` through `slot`.
    fn correct(&self, batch: &Self::Batch, slot: TaskSlot) -> Result<(usize, usize), MetaError>;

    /// Drops every adapter and head, then creates `adapters` fresh adapters with `lora` (B = 0, so
    /// the output is unchanged) and `heads` fresh heads. The base is kept as it is.
    fn reset_task_modules(
        self,
        lora: Option<&LoraConfig>,
        adapters: usize,
        heads: usize,
        device: &Device,
    ) -> Result<Self, MetaError>;

    /// Freezes the base (embeddings, base weights, norms); adapters and heads stay trainable.
    fn freeze_base(self) -> Self;

    /// Number of trainable parameters.
    fn trainable_params(&self) -> usize;
}

/// The data of one task: training batches (drawn anew each epoch, e.g. with fresh negatives) and
/// fixed evaluation batches.
pub trait TaskData {
    /// A mini-batch.
    type Batch;

    /// The training batches of `epoch`, in the order to visit them.
    fn train_batches(&self, epoch: usize) -> Result<Vec<Self::Batch>, MetaError>;

    /// The held-out batches.
    fn eval_batches(&self) -> Result<Vec<Self::Batch>, MetaError>;

    /// Number of training batches per epoch (for learning-rate schedules).
    fn train_len(&self) -> usize;
}

/// Counts the elements of the parameters that currently require gradients (for
/// [`MetaModel::trainable_params`]).
pub fn count_trainable<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0 += value.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// Fails with [`MetaError::NoAutodiff`] unless every parameter of `model` lives on an autodiff
/// device: without one, a training step would find no gradients (Burn would panic).
pub fn require_autodiff<M: Module>(model: &M, method: &'static str) -> Result<(), MetaError> {
    struct FirstPlain(Option<String>);
    impl burn::module::ModuleVisitor for FirstPlain {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let value = param.val();
            if self.0.is_none() && !value.is_autodiff() {
                self.0 = Some(format!("{:?}", value.device()));
            }
        }
    }
    let mut found = FirstPlain(None);
    model.visit(&mut found);
    match found.0 {
        Some(device) => Err(MetaError::NoAutodiff { method, device }),
        None => Ok(()),
    }
}
