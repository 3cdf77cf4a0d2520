//! The v2 shallow-network experiment: a two-layer sigmoid network `x ↦ cᵀ σ(A x)`, retrained with
//! SR or LoRA-ML (one adapter `U_t V_tᵀ` on `A` per task), then fine-tuned with a fresh adapter on
//! the frozen `A` and `c` (paper §6.2).
//!
//! All networks of an experiment (trials, and within LoRA-ML every task's adapter) advance in one
//! step: the parameters are stacked tensors, the adapters are [`adaptable_lora::LowRankFactors`]
//! (their chain rule turns `∂L/∂W` into adapter gradients) and the optimizer is [`crate::AdamW`].
//! The data pass — forward, loss and `∂L/∂W`, `∂L/∂c` — is one fused, vectorised loop
//! ([`loss_and_gradients`]); tests check it against Burn's autodiff.
//!
//! - [`retrain`]: SR (no adapters) or LoRA-ML, full-batch AdamW on the summed task losses.
//! - [`fine_tune`]: a fresh LoRA adapter on the frozen layers, recording the test metric (MSE
//!   against the noiseless targets) every epoch.

mod finetune;
mod kernel;
mod network;
mod retrain;

pub use finetune::{ShallowFineTuneConfig, ShallowFineTuneOutcome, fine_tune};
pub use kernel::{LANES, PassOutput, ShallowBatch, loss_and_gradients, sigmoid};
pub use network::{ShallowNetworks, lora_adapters};
pub use retrain::{ShallowRetrainConfig, ShallowRetrainOutcome, retrain};
