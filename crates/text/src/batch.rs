//! Batches of the encoder's two task kinds.

use adaptable_models::EncoderInput;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Texts (or text pairs) with one class label each.
#[derive(Debug, Clone)]
pub struct ClassificationBatch {
    /// Token ids, mask and token types, `[examples, seq]`.
    pub input: EncoderInput,
    /// Class of every row, `[examples]`.
    pub labels: Tensor<1, Int>,
    /// The same classes on the host (for accuracy).
    pub gold: Vec<usize>,
    /// Classes of the task: logits beyond them are ignored, so tasks with fewer classes than the
    /// heads can share one model.
    pub classes: usize,
}

/// A cross-encoder batch: every row is a (context, candidate) pair, scored by its class-1 logit.
#[derive(Debug, Clone)]
pub struct RankingBatch {
    /// Token ids and mask, `[examples × candidates, seq]`.
    pub input: EncoderInput,
    /// 1 on gold rows, 0 elsewhere, `[examples × candidates]` (see [`binary_labels`]).
    pub labels: Tensor<1, Int>,
    /// Rows per example.
    pub candidates: usize,
    /// The gold row of each example.
    pub gold: Vec<usize>,
}

/// A batch of either kind; [`TextModel`](crate::TextModel) trains and evaluates both.
#[derive(Debug, Clone)]
pub enum TextBatch {
    /// One label per row.
    Classification(ClassificationBatch),
    /// One right candidate per group of rows.
    Ranking(RankingBatch),
}

impl TextBatch {
    /// The encoder input of either kind (`[rows, seq]`).
    pub fn input(&self) -> &EncoderInput {
        match self {
            TextBatch::Classification(batch) => &batch.input,
            TextBatch::Ranking(batch) => &batch.input,
        }
    }
}

impl From<ClassificationBatch> for TextBatch {
    fn from(batch: ClassificationBatch) -> Self {
        TextBatch::Classification(batch)
    }
}

impl From<RankingBatch> for TextBatch {
    fn from(batch: RankingBatch) -> Self {
        TextBatch::Ranking(batch)
    }
}

/// Labels of a ranking batch: 1 on each example's gold row, 0 elsewhere.
pub fn binary_labels(candidates: usize, gold: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = gold
        .iter()
        .flat_map(|&g| (0..candidates).map(move |c| i64::from(c == g)))
        .collect();
    let n = labels.len();
    Tensor::from_data(TensorData::new(labels, [n]), device)
}
