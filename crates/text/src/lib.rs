#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod batch;
mod data;
mod error;
mod model;

pub use batch::{ClassificationBatch, RankingBatch, TextBatch, binary_labels};
pub use data::{TextBatching, TextTaskData};
pub use error::TextError;
pub use model::{TextModel, export_retrained};
