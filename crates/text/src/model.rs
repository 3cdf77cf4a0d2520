//! The encoder classifier as a [`MetaModel`]: classification through head logits, ranking as a
//! cross-encoder whose class-1 logit scores each (context, candidate) row (the paper's ConvAI2
//! setting).

use std::path::Path;

use adaptable_lora::LoraConfig;
use adaptable_meta::{MetaError, MetaModel, TaskSlot, count_trainable};
use adaptable_models::{
    ClassificationHead, LoraTargets, SequenceClassifier, candidate_scores,
    load_pretrained_classifier,
};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};

use crate::TextError;
use crate::batch::TextBatch;

/// A [`SequenceClassifier`] (encoder, adapter banks, heads) with the layers LoRA adapts.
///
/// Heads have `classifier.num_labels()` classes; a task with fewer classes uses the first ones
/// (its batches say how many), a ranking task the first two.
#[derive(Module, Debug)]
pub struct TextModel {
    /// The encoder with its adapter and head banks.
    pub classifier: SequenceClassifier,
    /// Which encoder layers receive adapters.
    #[module(skip)]
    pub targets: LoraTargets,
}

impl TextModel {
    /// Loads a Hugging Face BERT/RoBERTa directory (`config.json`, `model.safetensors`) with one
    /// fresh head of `num_labels` classes and no adapters.
    pub fn from_pretrained(
        dir: &Path,
        num_labels: usize,
        targets: LoraTargets,
        device: &Device,
    ) -> Result<Self, TextError> {
        let (classifier, _) = load_pretrained_classifier(dir, num_labels.max(2), 1, None, device)?;
        Ok(Self {
            classifier,
            targets,
        })
    }

    /// Logits of `batch` through `slot`, cut to the classes the batch's task has.
    fn logits(&self, batch: &TextBatch, slot: TaskSlot) -> Tensor<2> {
        let (input, classes) = match batch {
            TextBatch::Classification(b) => (&b.input, b.classes),
            TextBatch::Ranking(b) => (&b.input, 2),
        };
        let logits = self.classifier.forward(input, slot.adapter, slot.head);
        let [_, labels] = logits.dims();
        if classes < labels {
            logits.narrow(1, 0, classes)
        } else {
            logits
        }
    }
}

impl MetaModel for TextModel {
    type Batch = TextBatch;

    fn loss(&self, batch: &TextBatch, slot: TaskSlot) -> Tensor<1> {
        let labels = match batch {
            TextBatch::Classification(b) => b.labels.clone(),
            // Mean over all (context, candidate) rows, no class weighting (paper §7.2).
            TextBatch::Ranking(b) => b.labels.clone(),
        };
        let logits = self.logits(batch, slot);
        CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels)
    }

    fn correct(&self, batch: &TextBatch, slot: TaskSlot) -> Result<(usize, usize), MetaError> {
        let classes = match batch {
            TextBatch::Classification(b) => b.classes,
            TextBatch::Ranking(_) => 2,
        };
        if classes > self.classifier.num_labels() {
            return Err(MetaError::Model(format!(
                "a task with {classes} classes cannot use heads of {} classes",
                self.classifier.num_labels()
            )));
        }
        let logits = self.logits(batch, slot);
        let (picked, gold) = match batch {
            TextBatch::Classification(b) => {
                let n = b.gold.len();
                (logits.argmax(1).reshape([n]), &b.gold)
            }
            TextBatch::Ranking(b) => {
                let n = b.gold.len();
                let scores = candidate_scores(logits).reshape([n, b.candidates]);
                (scores.argmax(1).reshape([n]), &b.gold)
            }
        };
        let picked: Vec<i64> = picked
            .try_into_vec_as::<i64>()
            .map_err(|e| MetaError::Model(format!("cannot read predictions: {e:?}")))?;
        let hits = picked
            .iter()
            .zip(gold)
            .filter(|(p, g)| usize::try_from(**p).ok() == Some(**g))
            .count();
        Ok((hits, gold.len()))
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
        let config = self.classifier.encoder.config().clone();
        let labels = self.classifier.num_labels();
        self.classifier.heads = (0..heads)
            .map(|_| {
                ClassificationHead::new(config.hidden_size, labels, config.head_dropout(), device)
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

/// Writes the base of `model` (the retrained encoder, without adapters or heads) as a Hugging
/// Face model directory `out` (`config.json`, `model.safetensors`, and the tokenizer files of
/// `tokenizer_dir`, usually the directory the model came from); `out` must not exist yet and is
/// complete or absent afterwards (see [`export_model_dir`](adaptable_models::peft::export_model_dir)).
pub fn export_retrained(
    model: &TextModel,
    tokenizer_dir: &Path,
    out: &Path,
) -> Result<(), TextError> {
    adaptable_models::peft::export_model_dir(&model.classifier, tokenizer_dir, out)?;
    Ok(())
}
