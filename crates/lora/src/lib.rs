#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
pub mod dropout;
mod error;
pub mod factors;
pub mod fused;
pub mod host;
pub mod linear;

pub use config::{LoraConfig, LoraScaling};
pub use error::LoraError;
pub use factors::{FactorGradients, LowRankFactors, MatrixAdapterBank};

/// Serialises the unit tests that seed the device: its random stream is shared by every test
/// thread of the process, so two seeding tests running at once would draw each other's numbers.
#[cfg(test)]
pub(crate) fn seeded_device_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
