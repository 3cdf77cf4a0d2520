//! Task heads: RoBERTa's sequence-classification head (one per task) and the multiple-choice head.

use adaptable_lora::dropout::dropout;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::ModelsError;
use crate::config::EncoderConfig;
use crate::encoder::{Encoder, first_token};
use crate::input::EncoderInput;

fn head_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        })
        .init(device)
}

/// RoBERTa's classification head on `<s>`: dropout → dense → tanh → dropout → out_proj.
#[derive(Module, Debug)]
pub struct ClassificationHead {
    /// `h → h`.
    pub dense: Linear,
    /// `h → num_labels`.
    pub out_proj: Linear,
    /// Dropout before each projection.
    pub dropout: Dropout,
}

impl ClassificationHead {
    /// A fresh head (`N(0, 0.02)` weights, as HF initialises a new classifier).
    pub fn new(hidden: usize, num_labels: usize, dropout: f64, device: &Device) -> Self {
        Self {
            dense: head_linear(hidden, hidden, device),
            out_proj: head_linear(hidden, num_labels, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Logits `[batch, num_labels]` from the encoder output `[batch, seq, h]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let x = dropout(&self.dropout, first_token(hidden));
        let x = self.dense.forward(x).tanh();
        self.out_proj.forward(dropout(&self.dropout, x))
    }
}

/// Configuration of a [`SequenceClassifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceClassifierConfig {
    /// The encoder (with or without adapter banks).
    pub encoder: EncoderConfig,
    /// Classes per head (2 in the paper: class 1 = "this candidate is the true response").
    pub num_labels: usize,
    /// Number of heads: 1 for a shared head, T for one head per task.
    pub heads: usize,
}

impl SequenceClassifierConfig {
    /// A classifier with `heads` heads of `num_labels` classes.
    pub fn new(encoder: EncoderConfig, num_labels: usize, heads: usize) -> Self {
        Self {
            encoder,
            num_labels,
            heads,
        }
    }

    /// Builds the model with random weights.
    pub fn init(&self, device: &Device) -> Result<SequenceClassifier, ModelsError> {
        if self.num_labels == 0 || self.heads == 0 {
            return Err(ModelsError::InvalidArgument(
                "a classifier needs at least one head and one label".into(),
            ));
        }
        let encoder = self.encoder.init(device)?;
        let heads = (0..self.heads)
            .map(|_| {
                ClassificationHead::new(
                    self.encoder.hidden_size,
                    self.num_labels,
                    self.encoder.head_dropout(),
                    device,
                )
            })
            .collect();
        Ok(SequenceClassifier {
            encoder,
            heads,
            num_labels: self.num_labels,
        })
    }
}

/// `RobertaForSequenceClassification` with a bank of heads: task `t` uses adapter `t` (if the
/// encoder has adapters) and head `t`.
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    /// The encoder.
    pub encoder: Encoder,
    /// One head per task (or a single shared head).
    pub heads: Vec<ClassificationHead>,
    /// Classes per head.
    num_labels: usize,
}

impl SequenceClassifier {
    /// Logits `[batch, num_labels]` with adapter `adapter` and head `head`.
    ///
    /// # Panics
    ///
    /// Panics if `head` or `adapter` is outside its bank.
    pub fn forward(&self, input: &EncoderInput, adapter: Option<usize>, head: usize) -> Tensor<2> {
        self.heads[head].forward(self.encoder.forward(input, adapter))
    }

    /// Classes per head.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Appends a fresh head and returns its index.
    pub fn add_head(&mut self, device: &Device) -> usize {
        let config = self.encoder.config();
        self.heads.push(ClassificationHead::new(
            config.hidden_size,
            self.num_labels,
            config.head_dropout(),
            device,
        ));
        self.heads.len() - 1
    }
}

/// The paper's candidate score: the logit of class 1 for every (context, candidate) row.
pub fn candidate_scores(logits: Tensor<2>) -> Tensor<1> {
    logits.narrow(1, 1, 1).squeeze_dim(1)
}

/// For rows grouped `num_candidates` at a time, the index of the best-scoring candidate per group.
pub fn best_candidates(scores: &[f32], num_candidates: usize) -> Result<Vec<usize>, ModelsError> {
    if num_candidates == 0 || !scores.len().is_multiple_of(num_candidates) {
        return Err(ModelsError::InvalidArgument(format!(
            "{} scores cannot be split into groups of {num_candidates} candidates",
            scores.len()
        )));
    }
    Ok(scores
        .chunks(num_candidates)
        .map(|group| {
            group
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
                    if s > best.1 { (i, s) } else { best }
                })
                .0
        })
        .collect())
}

/// Mean cross-entropy of `logits` `[n, classes]` against integer `labels` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([n, 1]))
        .mean()
        .neg()
}

/// `RobertaForMultipleChoice`: `classifier(dropout(pooler(<s>)))` per choice, softmax over choices.
#[derive(Module, Debug)]
pub struct MultipleChoiceModel {
    /// The encoder; it must have a pooler.
    pub encoder: Encoder,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// `h → 1` scorer.
    pub classifier: Linear,
}

impl MultipleChoiceModel {
    /// Builds the model with random weights; the encoder gets a pooler.
    pub fn new(config: &EncoderConfig, device: &Device) -> Result<Self, ModelsError> {
        let config = config.clone().with_pooler(true);
        Ok(Self {
            encoder: config.init(device)?,
            dropout: DropoutConfig::new(config.head_dropout()).init(),
            classifier: head_linear(config.hidden_size, 1, device),
        })
    }

    /// Choice logits `[batch, num_choices]` for `input` holding `batch · num_choices` rows
    /// (choices of one example are consecutive).
    pub fn forward(
        &self,
        input: &EncoderInput,
        num_choices: usize,
        adapter: Option<usize>,
    ) -> Tensor<2> {
        let [rows, _] = input.dims();
        let hidden = self.encoder.forward(input, adapter);
        let pooled = match &self.encoder.pooler {
            Some(pooler) => pooler.forward(hidden),
            None => first_token(hidden),
        };
        self.classifier
            .forward(dropout(&self.dropout, pooled))
            .reshape([rows / num_choices.max(1), num_choices.max(1)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_candidate_is_the_argmax_of_each_group() {
        let scores = [0.1, 0.9, 0.3, -1.0, -2.0, -0.5];
        assert_eq!(best_candidates(&scores, 3).expect("2 groups"), [1, 2]);
        assert!(best_candidates(&scores, 4).is_err());
        assert!(best_candidates(&scores, 0).is_err());
    }
}
