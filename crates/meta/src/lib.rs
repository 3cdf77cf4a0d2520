#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod error;
pub mod linear;

pub use error::MetaError;
