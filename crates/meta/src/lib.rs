#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod adamw;
pub mod checkpoint;
mod error;
pub mod finetune;
pub mod linear;
mod model;
pub mod retrain;
mod schedule;
pub mod shallow;

pub use adamw::{AdamW, AdamWConfig};
pub use error::MetaError;
pub use model::{MetaModel, TaskData, TaskSlot, count_trainable, require_autodiff};
pub use schedule::{LinearWarmupDecay, OptimizerSchedule};
