//! Hyper-parameters shared by every kind of LoRA adapter in the crate.

use serde::{Deserialize, Serialize};

use crate::LoraError;

/// How the low-rank update `B A` is scaled before it is added to the base weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoraScaling {
    /// The original LoRA scale `alpha / r` (Hu et al. 2021; PEFT's default).
    #[default]
    Standard,
    /// Rank-stabilised LoRA, `alpha / sqrt(r)` (Kalajdzievski 2023; PEFT's `use_rslora`).
    RsLora,
    /// No scaling at all (scale 1), as in the paper's synthetic and vision code.
    Unit,
}

/// Configuration of a LoRA adapter: rank, scale and dropout.
///
/// The same configuration drives adapters on plain matrices (the linear theory suite) and adapters on
/// Burn `Linear` layers (the encoder), so both report the same `scale()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// The numerator `alpha` of the scale.
    pub alpha: f64,
    /// Which scale rule to apply.
    pub scaling: LoraScaling,
    /// Dropout probability applied to the adapter's input (0 disables it).
    pub dropout: f64,
}

impl Default for LoraConfig {
    /// The paper's language-model setting: rank 8, `alpha = 16` (scale 2), dropout 0.1.
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            scaling: LoraScaling::Standard,
            dropout: 0.1,
        }
    }
}

impl LoraConfig {
    /// A rank-`rank` adapter with `alpha = rank` (scale 1), standard scaling and no dropout.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: rank as f64,
            scaling: LoraScaling::Standard,
            dropout: 0.0,
        }
    }

    /// Sets `alpha`.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the scaling rule.
    pub fn with_scaling(mut self, scaling: LoraScaling) -> Self {
        self.scaling = scaling;
        self
    }

    /// Sets the adapter-input dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// The factor that multiplies `B A`.
    pub fn scale(&self) -> f64 {
        match self.scaling {
            LoraScaling::Standard => self.alpha / self.rank as f64,
            LoraScaling::RsLora => self.alpha / (self.rank as f64).sqrt(),
            LoraScaling::Unit => 1.0,
        }
    }

    /// Checks that the rank is positive and the dropout is a probability.
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.rank == 0 {
            return Err(LoraError::ZeroRank);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(LoraError::InvalidDropout(self.dropout));
        }
        if !self.alpha.is_finite() {
            return Err(LoraError::InvalidAlpha(self.alpha));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_follow_the_chosen_rule() {
        let c = LoraConfig::new(4).with_alpha(16.0);
        assert_eq!(c.scale(), 4.0);
        assert_eq!(c.clone().with_scaling(LoraScaling::RsLora).scale(), 8.0);
        assert_eq!(c.with_scaling(LoraScaling::Unit).scale(), 1.0);
    }

    #[test]
    fn rejects_zero_rank_and_bad_dropout() {
        assert!(matches!(
            LoraConfig::new(0).validate(),
            Err(LoraError::ZeroRank)
        ));
        assert!(matches!(
            LoraConfig::new(2).with_dropout(1.0).validate(),
            Err(LoraError::InvalidDropout(_))
        ));
    }
}
