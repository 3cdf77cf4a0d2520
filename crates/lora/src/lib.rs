#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
pub mod dropout;
mod error;
pub mod factors;
pub mod linear;

pub use config::{LoraConfig, LoraScaling};
pub use error::LoraError;
pub use factors::{FactorGradients, LowRankFactors, MatrixAdapterBank};
