//! A [`TextTask`] as [`TaskData`]: tokenised once, shuffled and batched every epoch.

use adaptable_meta::{MetaError, TaskData};
use adaptable_models::{EncodedBatch, PairFormat, TextTokenizer};
use adaptable_tasks::text::{TaskKind, TextExamples, TextTask};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::TextError;
use crate::batch::{ClassificationBatch, RankingBatch, TextBatch, binary_labels};

/// Tokenisation and batching of text tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextBatching {
    /// Tokens per sequence (specials included); longer texts are cut.
    pub max_len: usize,
    /// Examples per training batch.
    pub batch_size: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Seed of the example order.
    pub seed: u64,
}

impl Default for TextBatching {
    fn default() -> Self {
        Self {
            max_len: 128,
            batch_size: 8,
            eval_batch_size: 32,
            seed: 0,
        }
    }
}

/// One example after tokenisation: one row (classification) or one row per candidate (ranking).
#[derive(Debug, Clone)]
struct Encoded {
    ids: Vec<Vec<u32>>,
    type_ids: Vec<Vec<u32>>,
    /// Class (classification) or gold candidate (ranking).
    label: usize,
}

/// One text task, tokenised, ready for [`retrain`](adaptable_meta::retrain::retrain) and
/// [`finetune`](adaptable_meta::finetune::finetune).
///
/// A text pair and a (context, candidate) pair go through the tokenizer's own pair template
/// ([`PairFormat::Native`]: `[CLS] a [SEP] b [SEP]` with segment ids for BERT,
/// `<s> a </s></s> b </s>` for RoBERTa); when too long, the first text loses its *oldest* tokens
/// and the second is kept. Ranking trains on every candidate of an example.
#[derive(Debug, Clone)]
pub struct TextTaskData {
    name: String,
    kind: TaskKind,
    classes: usize,
    train: Vec<Encoded>,
    heldout: Vec<Encoded>,
    batching: TextBatching,
    pad_id: u32,
    device: Device,
}

impl TextTaskData {
    /// Tokenises `task` with `tokenizer`.
    pub fn new(
        task: &TextTask,
        tokenizer: &TextTokenizer,
        batching: TextBatching,
        device: &Device,
    ) -> Result<Self, TextError> {
        if batching.batch_size == 0 || batching.eval_batch_size == 0 {
            return Err(TextError::InvalidArgument(
                "batch sizes must be at least 1".into(),
            ));
        }
        let tokenise = |examples: &TextExamples| encode(&task.name, examples, tokenizer, batching);
        Ok(Self {
            name: task.name.clone(),
            kind: task.kind(),
            classes: task.num_classes(),
            train: tokenise(&task.train)?,
            heldout: tokenise(&task.heldout)?,
            batching,
            pad_id: tokenizer.pad_id(),
            device: device.clone(),
        })
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Classification or ranking.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// Classes a head needs for this task (2 for ranking).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Training and held-out examples.
    pub fn examples(&self) -> (usize, usize) {
        (self.train.len(), self.heldout.len())
    }

    fn batch<'a>(
        &self,
        examples: impl IntoIterator<Item = &'a Encoded>,
    ) -> Result<TextBatch, MetaError> {
        let mut rows = EncodedBatch {
            ids: Vec::new(),
            type_ids: Vec::new(),
            pad_id: self.pad_id,
        };
        let mut gold = Vec::new();
        let mut candidates = None;
        for example in examples {
            if *candidates.get_or_insert(example.ids.len()) != example.ids.len() {
                return Err(MetaError::Data(format!(
                    "task {}: examples with different candidate counts in one batch",
                    self.name
                )));
            }
            rows.ids.extend(example.ids.iter().cloned());
            rows.type_ids.extend(example.type_ids.iter().cloned());
            gold.push(example.label);
        }
        let input = rows
            .to_input(&self.device)
            .map_err(|e| MetaError::Data(format!("task {}: {e}", self.name)))?;
        Ok(match self.kind {
            TaskKind::Classification => {
                let labels: Vec<i64> = gold.iter().map(|&g| g as i64).collect();
                let n = labels.len();
                let labels: Tensor<1, Int> =
                    Tensor::from_data(TensorData::new(labels, [n]), &self.device);
                ClassificationBatch {
                    input,
                    labels,
                    gold,
                    classes: self.classes,
                }
                .into()
            }
            TaskKind::Ranking => {
                let candidates = candidates.unwrap_or(0);
                RankingBatch {
                    input,
                    labels: binary_labels(candidates, &gold, &self.device),
                    candidates,
                    gold,
                }
                .into()
            }
        })
    }

    /// Ranking batches must have one candidate count; classification batches any examples.
    fn chunks<'a>(&self, examples: &'a [&'a Encoded], size: usize) -> Vec<Vec<&'a Encoded>> {
        let mut out: Vec<Vec<&Encoded>> = Vec::new();
        for &example in examples {
            match out.last_mut() {
                Some(last)
                    if last.len() < size
                        && (self.kind == TaskKind::Classification
                            || last[0].ids.len() == example.ids.len()) =>
                {
                    last.push(example);
                }
                _ => out.push(vec![example]),
            }
        }
        out
    }
}

fn encode(
    task: &str,
    examples: &TextExamples,
    tokenizer: &TextTokenizer,
    batching: TextBatching,
) -> Result<Vec<Encoded>, TextError> {
    let error = |line: usize| {
        move |source| TextError::Encode {
            task: task.to_string(),
            line,
            source,
        }
    };
    match examples {
        TextExamples::Classification(examples) => examples
            .iter()
            .map(|e| {
                let batch = match &e.text_pair {
                    None => tokenizer.encode_batch(&[e.text.as_str()], batching.max_len),
                    Some(pair) => tokenizer.encode_pairs(
                        &[(e.text.as_str(), pair.as_str())],
                        batching.max_len,
                        PairFormat::Native,
                    ),
                }
                .map_err(error(e.line))?;
                Ok(Encoded {
                    ids: batch.ids,
                    type_ids: batch.type_ids,
                    label: e.label,
                })
            })
            .collect(),
        TextExamples::Ranking(examples) => examples
            .iter()
            .map(|e| {
                let pairs: Vec<(&str, &str)> = e
                    .candidates
                    .iter()
                    .map(|c| (e.context.as_str(), c.as_str()))
                    .collect();
                let batch = tokenizer
                    .encode_pairs(&pairs, batching.max_len, PairFormat::Native)
                    .map_err(error(e.line))?;
                Ok(Encoded {
                    ids: batch.ids,
                    type_ids: batch.type_ids,
                    label: e.label,
                })
            })
            .collect(),
    }
}

impl TaskData for TextTaskData {
    type Batch = TextBatch;

    fn train_batches(&self, epoch: usize) -> Result<Vec<TextBatch>, MetaError> {
        let seed = self
            .batching
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(epoch as u64);
        let mut order: Vec<&Encoded> = self.train.iter().collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        self.chunks(&order, self.batching.batch_size)
            .into_iter()
            .map(|chunk| self.batch(chunk))
            .collect()
    }

    fn eval_batches(&self) -> Result<Vec<TextBatch>, MetaError> {
        let examples: Vec<&Encoded> = self.heldout.iter().collect();
        self.chunks(&examples, self.batching.eval_batch_size)
            .into_iter()
            .map(|chunk| self.batch(chunk))
            .collect()
    }

    fn train_len(&self) -> usize {
        let order: Vec<&Encoded> = self.train.iter().collect();
        self.chunks(&order, self.batching.batch_size).len()
    }
}
