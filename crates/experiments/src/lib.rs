#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod checkpointed;
pub mod convai2;
pub mod device;
mod error;
pub mod io;
pub mod linear;
pub mod plot;
pub mod seed;
pub mod shallow;

pub use error::ExperimentError;
