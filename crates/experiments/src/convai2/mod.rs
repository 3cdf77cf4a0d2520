//! The ConvAI2 language experiment (paper Table 1): retrain an encoder on persona tasks with SR,
//! LoRA-ML, last-layer-ML or Reptile, fine-tune fresh LoRA adapters on unseen personas, report hits@1.

mod data;
mod model;
mod outputs;
mod profile;
mod runner;

pub use data::{Batching, ConvaiBatch, ConvaiTask, PairEncoder};
pub use model::{ConvaiModel, binary_labels};
pub use outputs::{FinetuneRecord, RetrainRecord, write_outputs};
pub use profile::{Convai2Profile, DataSection, FinetuneSection, ModelSection, PROFILES};
pub use runner::{Convai2RunOptions, Convai2RunSummary, run_profile};
