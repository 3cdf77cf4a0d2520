//! Sentence embeddings from token states: mean or first-token pooling, L2 normalisation.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::first_token;

/// How token states become one vector per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average over real (non-padding) tokens; sentence-transformers' choice for all-MiniLM-L6-v2.
    #[default]
    Mean,
    /// The first token (`<s>` / `[CLS]`).
    Cls,
}

impl Pooling {
    /// Pools `hidden` `[batch, seq, h]` with `attention_mask` `[batch, seq]` into `[batch, h]`.
    pub fn pool(self, hidden: Tensor<3>, attention_mask: &Tensor<2, Int>) -> Tensor<2> {
        match self {
            Pooling::Cls => first_token(hidden),
            Pooling::Mean => {
                let [batch, seq, _] = hidden.dims();
                let mask = attention_mask.clone().float().reshape([batch, seq, 1]);
                let summed = (hidden * mask.clone()).sum_dim(1).squeeze_dim(1);
                // sentence-transformers clamps the count at 1e-9 so an all-padding row gives 0, not NaN.
                let counts = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
                summed / counts
            }
        }
    }
}

/// Divides each row by its L2 norm (rows of norm 0 stay 0), as `torch.nn.functional.normalize`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Cosine similarity of matching rows of `a` and `b` `[batch, h]`, as `[batch]`.
pub fn cosine_similarity(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (l2_normalize(a) * l2_normalize(b))
        .sum_dim(1)
        .squeeze_dim(1)
}
