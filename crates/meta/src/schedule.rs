//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// Linear warm-up to `peak` over `warmup` steps, then linear decay to 0 at step `total`
/// (Hugging Face's `get_linear_schedule_with_warmup`, which the paper's code uses).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearWarmupDecay {
    /// Peak learning rate.
    pub peak: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Step at which the rate reaches 0 (may exceed the steps actually taken).
    pub total: usize,
}

impl LinearWarmupDecay {
    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup as f64;
        }
        let remaining = self.total.saturating_sub(step) as f64;
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        self.peak * (remaining / span).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_like_hugging_face() {
        let s = LinearWarmupDecay {
            peak: 1.0,
            warmup: 10,
            total: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(5), 0.5);
        assert_eq!(s.lr(10), 1.0);
        assert_eq!(s.lr(60), 0.5);
        assert_eq!(s.lr(110), 0.0);
        assert_eq!(s.lr(500), 0.0);
    }
}

/// AdamW and its linear warm-up/decay schedule, as the paper's code sets them up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSchedule {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay (torch's default, 0.01).
    pub weight_decay: f64,
    /// Warm-up length as a fraction of `epochs × reference batches`.
    pub warmup_fraction: f64,
    /// The paper code's "schedule multiplier": the decay reaches 0 at
    /// `multiplier × epochs × reference batches` steps, usually later than the steps taken.
    pub schedule_multiplier: f64,
}

impl Default for OptimizerSchedule {
    /// The paper code's retraining settings: 10 epochs at 5e-5, warm-up 10 %, multiplier 6.67.
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 5e-5,
            weight_decay: 0.01,
            warmup_fraction: 0.1,
            schedule_multiplier: 6.67,
        }
    }
}

impl OptimizerSchedule {
    /// The learning-rate schedule for `reference_batches` batches per epoch (the paper code uses the
    /// largest task's count for retraining, the task's own for fine-tuning), peaking at `peak`.
    pub fn schedule(&self, peak: f64, reference_batches: usize) -> LinearWarmupDecay {
        let base = (self.epochs * reference_batches.max(1)) as f64;
        LinearWarmupDecay {
            peak,
            warmup: (self.warmup_fraction * base) as usize,
            total: ((self.schedule_multiplier * base) as usize).max(1),
        }
    }

    /// A fresh AdamW with torch's defaults (β = (0.9, 0.999), ε = 1e-8) and this weight decay.
    pub fn optimizer(&self) -> burn::optim::ModuleOptimizer {
        crate::retrain::adamw_optimizer(self.weight_decay)
    }
}
