//! The encoder classifier as a [`MetaModel`]: a (context, candidate) cross-encoder whose class-1 logit
//! scores each candidate.

use adaptable_lora::LoraConfig;
use adaptable_meta::{MetaError, MetaModel, TaskSlot, count_trainable};
use adaptable_models::{ClassificationHead, LoraTargets, SequenceClassifier, candidate_scores};
use burn::{
    module::Module,
    nn::loss::CrossEntropyLossConfig,
    tensor::{Device, Int, Tensor},
};

use super::data::ConvaiBatch;

/// A sequence classifier scored as in the paper: 2 classes, class 1 = "true response".
#[derive(Module, Debug)]
pub struct ConvaiModel {
    /// The encoder with its adapter and head banks.
    pub classifier: SequenceClassifier,
    /// Which encoder layers receive adapters.
    #[module(skip)]
    pub targets: LoraTargets,
}

impl MetaModel for ConvaiModel {
    type Batch = ConvaiBatch;

    fn loss(&self, batch: &ConvaiBatch, slot: TaskSlot) -> Tensor<1> {
        let logits = self
            .classifier
            .forward(&batch.input, slot.adapter, slot.head);
        // Mean over all (context, candidate) rows, no class weighting (paper §7.2).
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, batch.labels.clone())
    }

    fn correct(&self, batch: &ConvaiBatch, slot: TaskSlot) -> Result<(usize, usize), MetaError> {
        let logits = self
            .classifier
            .forward(&batch.input, slot.adapter, slot.head);
        let scores = candidate_scores(logits);
        let examples = batch.gold.len();
        let picked: Vec<i64> = scores
            .reshape([examples, batch.candidates])
            .argmax(1)
            .reshape([examples])
            .try_into_vec_as::<i64>()
            .map_err(|e| MetaError::Model(format!("cannot read scores: {e:?}")))?;
        let hits = picked
            .iter()
            .zip(&batch.gold)
            .filter(|(p, g)| usize::try_from(**p).ok() == Some(**g))
            .count();
        Ok((hits, examples))
    }

    fn reset_task_modules(
        mut self,
        lora: Option<&LoraConfig>,
        adapters: usize,
        heads: usize,
        device: &Device,
    ) -> Result<Self, MetaError> {
        self.classifier
            .encoder
            .reset_adapters(lora, adapters, self.targets, device)
            .map_err(|e| MetaError::Model(e.to_string()))?;
        let encoder_config = self.classifier.encoder.config().clone();
        self.classifier.heads = (0..heads)
            .map(|_| {
                ClassificationHead::new(
                    encoder_config.hidden_size,
                    self.classifier.num_labels(),
                    encoder_config.head_dropout(),
                    device,
                )
            })
            .collect();
        Ok(self)
    }

    fn freeze_base(mut self) -> Self {
        self.classifier.encoder = self.classifier.encoder.freeze_base();
        self
    }

    fn trainable_params(&self) -> usize {
        count_trainable(self)
    }
}

/// Labels of a batch: 1 on each example's gold row, 0 elsewhere.
pub fn binary_labels(candidates: usize, gold: &[usize], device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = gold
        .iter()
        .flat_map(|&g| (0..candidates).map(move |c| i64::from(c == g)))
        .collect();
    let n = labels.len();
    Tensor::from_data(burn::tensor::TensorData::new(labels, [n]), device)
}
