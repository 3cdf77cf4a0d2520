//! ConvAI2 persona tasks as [`TaskData`]: tokenised once, batched every epoch.

use std::cell::{Cell, OnceCell};

use adaptable_meta::{MetaError, TaskData};
use adaptable_models::{EncoderInput, PairFormat, TextTokenizer};
use adaptable_tasks::{
    TasksError,
    convai2::{
        CandidateSelection, EncodedExample, EncodedPair, Example, PairTokenizer, TokenizedBatch,
        encode_examples,
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
/// which glues words together). With [`PairFormat::Concatenated`] (the profile's `paper` format) the
/// pair is two single sequences back to back, `<s> ctx </s><s> cand </s>` or `[CLS] ctx [SEP][CLS]
/// cand [SEP]`, every token type 0, as the paper's code builds it; with [`PairFormat::Native`] it is
/// the tokenizer's own pair template (BERT: `[CLS] ctx [SEP] cand [SEP]`, types 0 then 1). A pair
/// longer than `max_len` keeps the candidate and the most recent context; [`PairEncoder::cut_pairs`]
/// counts how many were cut.
pub struct PairEncoder<'a> {
    tokenizer: &'a TextTokenizer,
    format: PairFormat,
    segments: bool,
    /// Special tokens of one sequence and of the pair template.
    specials: OnceCell<(usize, usize)>,
    cut: Cell<usize>,
}

impl<'a> PairEncoder<'a> {
    /// An encoder of pairs in `format` for a model with `type_vocab_size` token types. A model with
    /// one token type (RoBERTa) gets every type id 0 whatever its tokenizer's template says, as
    /// Hugging Face's RoBERTa inputs do.
    pub fn new(tokenizer: &'a TextTokenizer, format: PairFormat, type_vocab_size: usize) -> Self {
        Self {
            tokenizer,
            format,
            segments: type_vocab_size > 1,
            specials: OnceCell::new(),
            cut: Cell::new(0),
        }
    }

    /// Pairs encoded so far that were longer than their `max_len` and lost context (or candidate)
    /// tokens.
    pub fn cut_pairs(&self) -> usize {
        self.cut.get()
    }

    fn encode(
        &self,
        pairs: &[(&str, &str)],
        max_len: usize,
    ) -> Result<adaptable_models::EncodedBatch, TasksError> {
        self.tokenizer
            .encode_pairs(pairs, max_len, self.format)
            .map_err(|e| TasksError::Tokenizer(e.to_string()))
    }
}

impl PairTokenizer for PairEncoder<'_> {
    fn encode_pair(
        &self,
        context: &[String],
        candidate: &str,
        max_len: usize,
    ) -> Result<Vec<u32>, TasksError> {
        Ok(self
            .encode_candidates_typed(
                context,
                std::slice::from_ref(&candidate.to_string()),
                max_len,
            )?
            .remove(0)
            .ids)
    }

    fn encode_candidates(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>, TasksError> {
        Ok(self
            .encode_candidates_typed(context, candidates, max_len)?
            .into_iter()
            .map(|p| p.ids)
            .collect())
    }

    fn encode_candidates_typed(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<EncodedPair>, TasksError> {
        let context = context.join(" ");
        let pairs: Vec<(&str, &str)> = candidates
            .iter()
            .map(|c| (context.as_str(), c.as_str()))
            .collect();
        // Whole lengths from single encodings (the context once), to count the pairs that are cut.
        let single = |text: &str| {
            self.tokenizer
                .encode(text)
                .map(|ids| ids.len())
                .map_err(|e| TasksError::Tokenizer(e.to_string()))
        };
        let specials = self.specials.get_or_init(|| {
            let one = single("").unwrap_or(0);
            let pair = self
                .tokenizer
                .encode_pair("", "")
                .map_or(2 * one, |ids| ids.len());
            (one, pair)
        });
        let context_len = single(&context)? - specials.0;
        let encoded = self.encode(&pairs, max_len)?;
        let mut out = Vec::with_capacity(candidates.len());
        for ((ids, type_ids), candidate) in encoded
            .ids
            .into_iter()
            .zip(encoded.type_ids)
            .zip(candidates)
        {
            let content = context_len + single(candidate)? - specials.0;
            let whole = match self.format {
                PairFormat::Native => content + specials.1,
                PairFormat::Concatenated => content + 2 * specials.0,
            };
            if whole > ids.len() {
                self.cut.set(self.cut.get() + 1);
            }
            let type_ids = if self.segments {
                type_ids
            } else {
                vec![0; ids.len()]
            };
            out.push(EncodedPair { ids, type_ids });
        }
        Ok(out)
    }

    fn pad_id(&self) -> u32 {
        self.tokenizer.pad_id()
    }
}

/// Rows × padded length summed over batches; `rows` gives an example's rows in its batch, and the
/// padded length is taken over all candidates of the batch's examples (an upper bound for sampled
/// negatives).
fn padded_tokens<'a>(
    batches: impl Iterator<Item = &'a [&'a EncodedExample]>,
    rows: impl Fn(&EncodedExample) -> usize,
) -> usize {
    batches
        .map(|batch| {
            let longest = batch
                .iter()
                .flat_map(|e| e.rows.iter().map(Vec::len))
                .max()
                .unwrap_or(0);
            batch.iter().map(|e| rows(e)).sum::<usize>() * longest
        })
        .sum()
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
}

/// One persona task, tokenised.
///
/// The examples are fixed; the order of the training examples and the negatives drawn for them follow
/// the task's seed ([`ConvaiTask::reseed`]), which the runner derives from the run's seed, so that
/// different seeds see different batches of the same split.
pub struct ConvaiTask {
    train: Vec<EncodedExample>,
    heldout: Vec<EncodedExample>,
    batching: Batching,
    seed: u64,
    pad_id: u32,
    device: Device,
}

impl ConvaiTask {
    /// Tokenises the task's examples through `encoder` (at most `max_len` tokens per pair), with
    /// batch order and negatives seeded by `seed`.
    pub fn new(
        train: &[Example],
        heldout: &[Example],
        encoder: &PairEncoder<'_>,
        max_len: usize,
        batching: Batching,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TasksError> {
        Ok(Self {
            train: encode_examples(train, encoder, max_len)?,
            heldout: encode_examples(heldout, encoder, max_len)?,
            batching,
            seed,
            pad_id: encoder.pad_id(),
            device: device.clone(),
        })
    }

    /// Sets the seed of the batch order and of the sampled negatives.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// The training examples of `epoch` (counted from 0) in batch order, with the seed of their
    /// negatives.
    pub fn epoch_order(&self, epoch: usize) -> (Vec<&EncodedExample>, u64) {
        let seed = derive_seed(self.seed, &["epoch", &epoch.to_string()]);
        let mut order: Vec<&EncodedExample> = self.train.iter().collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        (order, seed)
    }

    /// Padded tokens one training epoch feeds the encoder (rows × padded length, summed over
    /// batches, in epoch 0's order; the padded length is taken over all candidates of a batch's
    /// examples, so it is an upper bound): the unit of the cost model.
    pub fn train_tokens(&self) -> usize {
        let (order, _) = self.epoch_order(0);
        let k = self.batching.negatives + 1;
        padded_tokens(order.chunks(self.batching.batch_size.max(1)), |e| {
            k.min(e.rows.len())
        })
    }

    /// Padded tokens of one evaluation of the held-out examples (all candidates).
    pub fn eval_tokens(&self) -> usize {
        let chunks: Vec<Vec<&EncodedExample>> = self
            .heldout
            .chunks(self.batching.eval_batch_size.max(1))
            .map(|c| c.iter().collect())
            .collect();
        padded_tokens(chunks.iter().map(Vec::as_slice), |e| e.rows.len())
    }

    /// Training examples.
    pub fn train_examples(&self) -> usize {
        self.train.len()
    }

    /// Held-out examples.
    pub fn heldout_examples(&self) -> usize {
        self.heldout.len()
    }

    /// Encoded (context, candidate) pairs, training and held-out.
    pub fn pairs(&self) -> usize {
        self.train
            .iter()
            .chain(&self.heldout)
            .map(|e| e.rows.len())
            .sum()
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
                token_type_ids: tb.type_ids.as_deref().map(ints),
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
        let (order, seed) = self.epoch_order(epoch);
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
