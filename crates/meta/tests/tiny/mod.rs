//! A tiny model and tasks for the retraining tests: a `LoraLinear` base (4 → 3) with per-task heads
//! (3 → 2), and one fixed batch per task.
#![allow(dead_code)] // each test file uses its own part

use adaptable_lora::{
    LoraConfig,
    linear::{LoraInit, LoraLinear},
};
use adaptable_meta::{
    MetaError, MetaModel, OptimizerSchedule, TaskData, TaskSlot, count_trainable,
    retrain::RetrainConfig,
};
use burn::{
    module::Module,
    nn::{Linear, LinearConfig, loss::CrossEntropyLossConfig},
    tensor::{Device, Int, Tensor, TensorData},
};

#[derive(Module, Debug)]
pub struct Tiny {
    pub base: LoraLinear,
    pub heads: Vec<Linear>,
}

#[derive(Clone)]
pub struct Batch {
    pub x: Tensor<2>,
    pub y: Tensor<1, Int>,
}

impl MetaModel for Tiny {
    type Batch = Batch;

    fn loss(&self, batch: &Batch, slot: TaskSlot) -> Tensor<1> {
        let hidden = self.base.forward_with(batch.x.clone(), slot.adapter).tanh();
        let logits = self.heads[slot.head].forward(hidden);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, batch.y.clone())
    }

    fn correct(&self, batch: &Batch, slot: TaskSlot) -> Result<(usize, usize), MetaError> {
        let hidden = self.base.forward_with(batch.x.clone(), slot.adapter).tanh();
        let pred = self.heads[slot.head]
            .forward(hidden)
            .argmax(1)
            .flatten::<1>(0, 1);
        let hits: i64 = pred.equal(batch.y.clone()).int().sum().into_scalar::<i64>();
        Ok((hits as usize, batch.y.dims()[0]))
    }

    fn reset_task_modules(
        self,
        lora: Option<&LoraConfig>,
        adapters: usize,
        heads: usize,
        device: &Device,
    ) -> Result<Self, MetaError> {
        let base = LoraLinear::from_linear(
            self.base.base,
            lora.cloned(),
            adapters,
            LoraInit::Gaussian,
            device,
        )
        .map_err(|e| MetaError::Model(e.to_string()))?;
        let heads = (0..heads)
            .map(|_| LinearConfig::new(3, 2).init(device))
            .collect();
        Ok(Tiny { base, heads })
    }

    fn freeze_base(self) -> Self {
        Tiny {
            base: self.base.freeze_base(),
            heads: self.heads,
        }
    }

    fn trainable_params(&self) -> usize {
        count_trainable(self)
    }
}

pub struct Task(pub Batch);

impl TaskData for Task {
    type Batch = Batch;

    fn train_batches(&self, _epoch: usize) -> Result<Vec<Batch>, MetaError> {
        Ok(vec![self.0.clone()])
    }

    fn eval_batches(&self) -> Result<Vec<Batch>, MetaError> {
        Ok(vec![self.0.clone()])
    }

    fn train_len(&self) -> usize {
        1
    }
}

/// The default backend (flex unless only another one is compiled in).
pub fn device() -> Device {
    Device::default().autodiff()
}

pub fn tiny(device: &Device) -> Tiny {
    device.seed(7);
    Tiny {
        base: LoraLinear::from_linear(
            LinearConfig::new(4, 3).init(device),
            None,
            0,
            LoraInit::Gaussian,
            device,
        )
        .unwrap(),
        heads: vec![],
    }
}

pub fn task(seed: u64, device: &Device) -> Task {
    let x: Vec<f32> = (0..32)
        .map(|i| (((i as u64 * 7919 + seed * 104_729) % 97) as f32 / 48.5) - 1.0)
        .collect();
    let y: Vec<i64> = (0..8).map(|i| ((i as u64 + seed) % 2) as i64).collect();
    Task(Batch {
        x: Tensor::from_data(TensorData::new(x, [8, 4]), device),
        y: Tensor::from_data(TensorData::new(y, [8]), device),
    })
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.inner().try_into_vec_as::<f32>().unwrap()
}

pub fn config() -> RetrainConfig {
    RetrainConfig {
        optim: OptimizerSchedule {
            epochs: 1,
            lr: 1e-2,
            warmup_fraction: 0.0,
            ..Default::default()
        },
        lora: LoraConfig::new(2).with_alpha(4.0),
        ..Default::default()
    }
}
