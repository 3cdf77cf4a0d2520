#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod convai2;
mod error;
pub mod linear;
mod matrix;
pub mod shallow;
pub mod text;

pub use error::TasksError;
pub use matrix::Matrix;
