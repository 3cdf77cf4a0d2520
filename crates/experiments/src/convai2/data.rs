//! ConvAI2 persona tasks as [`TaskData`]: tokenised once, batched every epoch.

use adaptable_meta::{MetaError, TaskData};
use adaptable_models::{EncoderInput, PairFormat, TextTokenizer};
use adaptable_tasks::{
    TasksError,
    convai2::{
        CandidateSelection, EncodedExample, Example, PairTokenizer, TokenizedBatch, encode_examples,
    },
};
use adaptable_text::TextBatch;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use super::model::binary_labels;
use crate::seed::derive_seed;

/// The model crate's tokenizer under the task crate's pair contract.
///
/// Context utterances are joined with a space (the paper's code concatenates them with no separator,
/// which glues words together); the pair is encoded as two single sequences back to back
/// (`<s> ctx </s><s> cand </s>`), as the paper's code does, so every token type id is 0. Truncation
/// keeps the candidate and the most recent context.
pub struct PairEncoder<'a>(pub &'a TextTokenizer);

impl PairTokenizer for PairEncoder<'_> {
    fn encode_pair(
        &self,
        context: &[String],
        candidate: &str,
        max_len: usize,
    ) -> Result<Vec<u32>, TasksError> {
        Ok(self
            .encode_candidates(
                context,
                std::slice::from_ref(&candidate.to_string()),
                max_len,
            )?
            .remove(0))
    }

    fn encode_candidates(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>, TasksError> {
        let context = context.join(" ");
        let pairs: Vec<(&str, &str)> = candidates
            .iter()
            .map(|c| (context.as_str(), c.as_str()))
            .collect();
        self.0
            .encode_pairs(&pairs, max_len, PairFormat::Concatenated)
            .map(|batch| batch.ids)
            .map_err(|e| TasksError::Tokenizer(e.to_string()))
    }

    fn pad_id(&self) -> u32 {
        self.0.pad_id()
    }
}

/// A batch for the cross-encoder: every row is a (context, candidate) pair (the library's ranking
/// batch; [`ConvaiTask`] hands it to the model as a [`TextBatch`]).
pub use adaptable_text::RankingBatch as ConvaiBatch;

/// Batching settings.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Examples per training batch.
    pub batch_size: usize,
    /// Examples per evaluation batch (each with all candidates).
    pub eval_batch_size: usize,
    /// Distractors per training example (the gold is always included); evaluation uses all.
    pub negatives: usize,
    /// Seed of the example order and the negatives.
    pub seed: u64,
}

/// One persona task, tokenised.
pub struct ConvaiTask {
    train: Vec<EncodedExample>,
    heldout: Vec<EncodedExample>,
    batching: Batching,
    pad_id: u32,
    device: Device,
}

impl ConvaiTask {
    /// Tokenises the task's examples (at most `max_len` tokens per pair).
    pub fn new(
        train: &[Example],
        heldout: &[Example],
        tokenizer: &TextTokenizer,
        max_len: usize,
        batching: Batching,
        device: &Device,
    ) -> Result<Self, TasksError> {
        let encoder = PairEncoder(tokenizer);
        Ok(Self {
            train: encode_examples(train, &encoder, max_len)?,
            heldout: encode_examples(heldout, &encoder, max_len)?,
            batching,
            pad_id: tokenizer.pad_id(),
            device: device.clone(),
        })
    }

    /// Training examples.
    pub fn train_examples(&self) -> usize {
        self.train.len()
    }

    /// Held-out examples.
    pub fn heldout_examples(&self) -> usize {
        self.heldout.len()
    }

    fn batch<'a>(
        &self,
        examples: impl IntoIterator<Item = &'a EncodedExample>,
        selection: CandidateSelection,
    ) -> Result<ConvaiBatch, MetaError> {
        let tb = TokenizedBatch::from_encoded(examples, selection, self.pad_id)
            .map_err(|e| MetaError::Data(e.to_string()))?;
        let candidates = tb.uniform_candidates().ok_or_else(|| {
            MetaError::Data("examples with different candidate counts in one batch".into())
        })?;
        let shape = [tb.rows(), tb.seq_len];
        let ints = |v: &[u32]| -> Tensor<2, Int> {
            let data: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
            Tensor::from_data(TensorData::new(data, shape), &self.device)
        };
        Ok(ConvaiBatch {
            input: EncoderInput {
                input_ids: ints(&tb.ids),
                attention_mask: ints(&tb.attention_mask),
                token_type_ids: None,
            },
            labels: binary_labels(candidates, &tb.gold, &self.device),
            candidates,
            gold: tb.gold,
        })
    }
}

impl TaskData for ConvaiTask {
    type Batch = TextBatch;

    fn train_batches(&self, epoch: usize) -> Result<Vec<TextBatch>, MetaError> {
        let seed = derive_seed(self.batching.seed, &["epoch", &epoch.to_string()]);
        let mut order: Vec<&EncodedExample> = self.train.iter().collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let selection = CandidateSelection::GoldPlusNegatives {
            negatives: self.batching.negatives,
            seed,
        };
        order
            .chunks(self.batching.batch_size.max(1))
            .map(|chunk| {
                self.batch(chunk.iter().copied(), selection)
                    .map(TextBatch::from)
            })
            .collect()
    }

    fn eval_batches(&self) -> Result<Vec<TextBatch>, MetaError> {
        self.heldout
            .chunks(self.batching.eval_batch_size.max(1))
            .map(|chunk| {
                self.batch(chunk, CandidateSelection::All)
                    .map(TextBatch::from)
            })
            .collect()
    }

    fn train_len(&self) -> usize {
        self.train.len().div_ceil(self.batching.batch_size.max(1))
    }
}
