//! Token ids for the (context, candidate) cross-encoder: the tokenizer contract and padded batches.

use super::examples::Example;
use super::seed::{purpose, rng_for};
use crate::TasksError;

/// Turns a (context, candidate) pair into token ids. Implemented by the model crate's tokenizer wrapper.
///
/// Contract, checked by [`encode_examples`]:
/// * the result has at least 1 and at most `max_len` ids, special tokens included;
/// * when the pair is too long, the implementor drops the **oldest** context first (the front of `context`), keeps the
///   candidate whole whenever it fits, and truncates the candidate only if it alone exceeds the budget;
/// * `context` holds the utterances in order, oldest first; how they are joined (space, separator token, nothing as
///   in the paper's code) is the implementor's choice and should be documented there.
pub trait PairTokenizer {
    /// Token ids of one (context, candidate) pair, at most `max_len` long.
    fn encode_pair(
        &self,
        context: &[String],
        candidate: &str,
        max_len: usize,
    ) -> Result<Vec<u32>, TasksError>;

    /// Token ids of every candidate paired with the same context. Override it to encode the context once instead of
    /// once per candidate.
    fn encode_candidates(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>, TasksError> {
        candidates
            .iter()
            .map(|c| self.encode_pair(context, c, max_len))
            .collect()
    }

    /// Token ids and segment (token type) ids of every candidate paired with the same context. The default gives
    /// every token segment 0; override it for pair templates with segments (BERT's `[CLS] a [SEP] b [SEP]` with
    /// types 0 then 1). Same contract as [`PairTokenizer::encode_pair`]; `type_ids` has the length of `ids`.
    fn encode_candidates_typed(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<EncodedPair>, TasksError> {
        Ok(self
            .encode_candidates(context, candidates, max_len)?
            .into_iter()
            .map(|ids| EncodedPair {
                type_ids: vec![0; ids.len()],
                ids,
            })
            .collect())
    }

    /// The padding id.
    fn pad_id(&self) -> u32;
}

/// One encoded (context, candidate) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment (token type) id of every token.
    pub type_ids: Vec<u32>,
}

/// An example after tokenisation: one id row per candidate. Encode once, then build batches from it every epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    /// Source episode index (see [`Example::episode`]).
    pub episode: usize,
    /// Turn within the episode.
    pub turn: usize,
    /// Token ids of each (context, candidate) pair, in candidate order.
    pub rows: Vec<Vec<u32>>,
    /// Segment ids of each row (same lengths as `rows`); empty when every segment id is 0.
    pub type_ids: Vec<Vec<u32>>,
    /// Index of the gold candidate.
    pub gold: usize,
}

/// Tokenises examples, checking the [`PairTokenizer`] contract.
pub fn encode_examples<T: PairTokenizer + ?Sized>(
    examples: &[Example],
    tokenizer: &T,
    max_len: usize,
) -> Result<Vec<EncodedExample>, TasksError> {
    if max_len == 0 {
        return Err(TasksError::Convai2Config(
            "`max_len` must be at least 1".into(),
        ));
    }
    examples
        .iter()
        .map(|example| {
            let pairs = tokenizer.encode_candidates_typed(
                &example.context,
                &example.candidates,
                max_len,
            )?;
            if let Some(p) = pairs.iter().find(|p| p.type_ids.len() != p.ids.len()) {
                return Err(TasksError::Tokenizer(format!(
                    "{} ids but {} type ids",
                    p.ids.len(),
                    p.type_ids.len()
                )));
            }
            let segmented = pairs.iter().flat_map(|p| &p.type_ids).any(|&t| t != 0);
            let (rows, type_ids): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
                pairs.into_iter().map(|p| (p.ids, p.type_ids)).unzip();
            let type_ids = if segmented { type_ids } else { Vec::new() };
            if rows.len() != example.candidates.len() {
                return Err(TasksError::Tokenizer(format!(
                    "{} rows for {} candidates",
                    rows.len(),
                    example.candidates.len()
                )));
            }
            if let Some(row) = rows.iter().find(|r| r.is_empty() || r.len() > max_len) {
                return Err(TasksError::Tokenizer(format!(
                    "a pair was encoded to {} ids; the contract is 1..={max_len}",
                    row.len()
                )));
            }
            Ok(EncodedExample {
                episode: example.episode,
                turn: example.turn,
                rows,
                type_ids,
                gold: example.gold,
            })
        })
        .collect()
}

/// Which candidates of each example go into a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateSelection {
    /// Every candidate (evaluation always uses this).
    All,
    /// The gold candidate and `negatives` distractors drawn without replacement (all of them if there are fewer).
    /// The draw for an example depends on `seed`, its episode and its turn; vary the seed per epoch to see other
    /// negatives.
    GoldPlusNegatives {
        /// Number of distractors per example.
        negatives: usize,
        /// Seed of the draw.
        seed: u64,
    },
}

/// A padded batch of (context, candidate) rows, row-major, for a cross-encoder.
///
/// Example `e` owns rows `offset(e) .. offset(e) + candidates_per_example[e]`, consecutive and in example order;
/// its gold row is `offset(e) + gold[e]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedBatch {
    /// Token ids, `rows() × seq_len`, padded on the right with the tokenizer's pad id.
    pub ids: Vec<u32>,
    /// 1 for a real token, 0 for padding; same shape as `ids`.
    pub attention_mask: Vec<u32>,
    /// Segment ids (padding 0), same shape as `ids`; `None` when every selected row is all segment 0.
    pub type_ids: Option<Vec<u32>>,
    /// Length of every row: the longest encoded pair in the batch.
    pub seq_len: usize,
    /// Number of rows of each example.
    pub candidates_per_example: Vec<usize>,
    /// Gold row of each example, relative to the example's first row.
    pub gold: Vec<usize>,
}

impl TokenizedBatch {
    /// Tokenises `examples` and builds one batch.
    pub fn build<T: PairTokenizer + ?Sized>(
        examples: &[Example],
        tokenizer: &T,
        max_len: usize,
        selection: CandidateSelection,
    ) -> Result<Self, TasksError> {
        let encoded = encode_examples(examples, tokenizer, max_len)?;
        Self::from_encoded(&encoded, selection, tokenizer.pad_id())
    }

    /// Builds a batch from already tokenised examples, padding every row to the longest selected one.
    ///
    /// Fails only for an example whose gold index is not one of its rows.
    pub fn from_encoded<'a>(
        examples: impl IntoIterator<Item = &'a EncodedExample>,
        selection: CandidateSelection,
        pad_id: u32,
    ) -> Result<Self, TasksError> {
        let mut chosen: Vec<(&[u32], Option<&[u32]>)> = Vec::new();
        let mut candidates_per_example = Vec::new();
        let mut gold = Vec::new();
        for example in examples {
            if example.gold >= example.rows.len() {
                return Err(TasksError::Tokenizer(format!(
                    "episode {} turn {}: gold index {} but {} rows",
                    example.episode,
                    example.turn,
                    example.gold,
                    example.rows.len()
                )));
            }
            let (rows, g) = select_rows(example, selection);
            candidates_per_example.push(rows.len());
            gold.push(g);
            chosen.extend(rows.into_iter().map(|r| {
                (
                    example.rows[r].as_slice(),
                    example.type_ids.get(r).map(Vec::as_slice),
                )
            }));
        }
        let seq_len = chosen.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(chosen.len() * seq_len);
        let mut attention_mask = Vec::with_capacity(chosen.len() * seq_len);
        let segmented = chosen.iter().any(|(_, t)| t.is_some());
        let mut type_ids = Vec::with_capacity(if segmented { ids.capacity() } else { 0 });
        for (row, types) in chosen {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + seq_len - row.len(), pad_id);
            attention_mask.resize(attention_mask.len() + row.len(), 1);
            attention_mask.resize(attention_mask.len() + seq_len - row.len(), 0);
            if segmented {
                let len = type_ids.len();
                type_ids.extend_from_slice(types.unwrap_or_default());
                type_ids.resize(len + seq_len, 0);
            }
        }
        Ok(Self {
            ids,
            attention_mask,
            type_ids: segmented.then_some(type_ids),
            seq_len,
            candidates_per_example,
            gold,
        })
    }

    /// Total number of rows.
    pub fn rows(&self) -> usize {
        self.candidates_per_example.iter().sum()
    }

    /// Number of examples.
    pub fn examples(&self) -> usize {
        self.gold.len()
    }

    /// The common number of rows per example, if all examples have the same (then the ids reshape to
    /// `[examples, candidates, seq_len]`).
    pub fn uniform_candidates(&self) -> Option<usize> {
        let first = *self.candidates_per_example.first()?;
        self.candidates_per_example
            .iter()
            .all(|&c| c == first)
            .then_some(first)
    }

    /// The ids of row `r`, padding included.
    pub fn row(&self, r: usize) -> Option<&[u32]> {
        self.ids.get(r * self.seq_len..(r + 1) * self.seq_len)
    }
}

/// Indices of the rows to keep (increasing) and the gold's position among them.
fn select_rows(example: &EncodedExample, selection: CandidateSelection) -> (Vec<usize>, usize) {
    let n = example.rows.len();
    match selection {
        CandidateSelection::GoldPlusNegatives { negatives, seed }
            if negatives < n.saturating_sub(1) =>
        {
            let mut rng = rng_for(
                seed,
                purpose::NEGATIVES,
                example.episode as u64,
                example.turn as u64,
            );
            // Draw among the n - 1 distractor positions, then map past the gold.
            let mut keep: Vec<usize> = rand::seq::index::sample(&mut rng, n - 1, negatives)
                .into_iter()
                .map(|k| if k >= example.gold { k + 1 } else { k })
                .collect();
            keep.push(example.gold);
            // Keeping the shuffled file order leaves the gold's position uniform: no leak.
            keep.sort_unstable();
            let gold = keep.iter().position(|&k| k == example.gold).unwrap_or(0);
            (keep, gold)
        }
        _ => ((0..n).collect(), example.gold),
    }
}
