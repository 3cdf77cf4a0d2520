//! Tokenization from a local `tokenizer.json` (RoBERTa byte-level BPE, BERT WordPiece, ...).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use tokenizers::{Encoding, Tokenizer, TruncationDirection};

use crate::ModelsError;
use crate::input::EncoderInput;

/// How a (context, candidate) pair becomes one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PairFormat {
    /// The tokenizer's own pair template: `<s> A </s></s> B </s>` (RoBERTa), `[CLS] A [SEP] B [SEP]`
    /// with segment ids 0/1 (BERT).
    #[default]
    Native,
    /// Two single encodings back to back, `<s> A </s><s> B </s>`, as the paper's released code
    /// builds its inputs (`tokenizer(context) ++ tokenizer(candidate)`).
    Concatenated,
}

/// Token ids of several sequences, not yet padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Ids per sequence, special tokens included.
    pub ids: Vec<Vec<u32>>,
    /// Segment ids per sequence.
    pub type_ids: Vec<Vec<u32>>,
    /// The id used to pad.
    pub pad_id: u32,
}

impl EncodedBatch {
    /// Length of the longest sequence.
    pub fn max_len(&self) -> usize {
        self.ids.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Right-pads every sequence to the longest one and moves the batch to `device`.
    pub fn to_input(&self, device: &Device) -> Result<EncoderInput, ModelsError> {
        let len = self.max_len();
        let pad = |rows: &[Vec<u32>], value: u32| -> Vec<Vec<u32>> {
            rows.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.resize(len, value);
                    r
                })
                .collect()
        };
        let mask: Vec<Vec<u32>> = self
            .ids
            .iter()
            .map(|r| {
                let mut m = vec![1; r.len()];
                m.resize(len, 0);
                m
            })
            .collect();
        let types = pad(&self.type_ids, 0);
        let any_segment = types.iter().flatten().any(|&t| t != 0);
        EncoderInput::from_rows(
            &pad(&self.ids, self.pad_id),
            &mask,
            any_segment.then_some(types.as_slice()),
            device,
        )
    }
}

/// A `tokenizers` tokenizer with the padding id and truncation policy this project uses.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    ///
    /// Padding and truncation settings stored in the file are dropped: batches are padded to their
    /// longest sequence and truncation follows the explicit `max_len` of each call.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelsError> {
        let path = path.as_ref();
        let error = |message: String| ModelsError::Tokenizer {
            path: Some(PathBuf::from(path)),
            message,
        };
        if !path.is_file() {
            return Err(error("file not found".into()));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| error(e.to_string()))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("<pad>"))
            .or_else(|| inner.token_to_id("[PAD]"))
            .ok_or_else(|| error("no padding token (<pad> or [PAD]) in the vocabulary".into()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| error(e.to_string()))?;
        Ok(Self { inner, pad_id })
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    fn raw(&self, text: &str) -> Result<Encoding, ModelsError> {
        self.inner
            .encode(text, false)
            .map_err(|e| ModelsError::Tokenizer {
                path: None,
                message: e.to_string(),
            })
    }

    fn finish(&self, a: Encoding, b: Option<Encoding>) -> Result<Encoding, ModelsError> {
        self.inner
            .post_process(a, b, true)
            .map_err(|e| ModelsError::Tokenizer {
                path: None,
                message: e.to_string(),
            })
    }

    fn specials(&self, pair: bool) -> usize {
        use tokenizers::tokenizer::PostProcessor;
        self.inner
            .get_post_processor()
            .map(|p| p.added_tokens(pair))
            .unwrap_or(0)
    }

    /// Ids of `text` with special tokens, without truncation (the empty string is allowed here).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelsError> {
        Ok(self.finish(self.raw(text)?, None)?.get_ids().to_vec())
    }

    /// Ids of the pair `(a, b)` with the tokenizer's pair template, without truncation.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<Vec<u32>, ModelsError> {
        Ok(self
            .finish(self.raw(a)?, Some(self.raw(b)?))?
            .get_ids()
            .to_vec())
    }

    /// Encodes non-empty texts, each cut to at most `max_len` tokens (specials included) by
    /// dropping tokens from its end.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        max_len: usize,
    ) -> Result<EncodedBatch, ModelsError> {
        if texts.is_empty() {
            return Err(ModelsError::EmptyInput("no texts to encode".into()));
        }
        let budget = self.budget(max_len, false, 1)?;
        let mut batch = self.empty_batch(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                return Err(ModelsError::EmptyInput(format!("text {i} is empty")));
            }
            let mut enc = self.raw(text)?;
            enc.truncate(budget, 0, TruncationDirection::Right);
            let enc = self.finish(enc, None)?;
            batch.ids.push(enc.get_ids().to_vec());
            batch.type_ids.push(enc.get_type_ids().to_vec());
        }
        Ok(batch)
    }

    /// Encodes (context, candidate) pairs into sequences of at most `max_len` tokens.
    ///
    /// Truncation keeps the most recent context: the candidate is kept whole (cut from its end only
    /// if it alone would leave no room for one context token) and the context loses its *oldest*
    /// tokens. An empty candidate is an error; an empty context is allowed.
    pub fn encode_pairs(
        &self,
        pairs: &[(&str, &str)],
        max_len: usize,
        format: PairFormat,
    ) -> Result<EncodedBatch, ModelsError> {
        if pairs.is_empty() {
            return Err(ModelsError::EmptyInput("no pairs to encode".into()));
        }
        let (budget, separate) = match format {
            PairFormat::Native => (self.budget(max_len, true, 2)?, false),
            PairFormat::Concatenated => {
                let specials = 2 * self.specials(false);
                if max_len < specials + 2 {
                    return Err(self.too_short(max_len, specials + 2));
                }
                (max_len - specials, true)
            }
        };
        let mut batch = self.empty_batch(pairs.len());
        for (i, (context, candidate)) in pairs.iter().enumerate() {
            if candidate.trim().is_empty() {
                return Err(ModelsError::EmptyInput(format!(
                    "candidate of pair {i} is empty"
                )));
            }
            let mut ctx = self.raw(context)?;
            let mut cand = self.raw(candidate)?;
            if cand.len() > budget - 1 {
                cand.truncate(budget - 1, 0, TruncationDirection::Right);
            }
            ctx.truncate(budget - cand.len(), 0, TruncationDirection::Left);
            let (ids, types) = if separate {
                let a = self.finish(ctx, None)?;
                let b = self.finish(cand, None)?;
                let ids = [a.get_ids(), b.get_ids()].concat();
                let types = vec![0; ids.len()];
                (ids, types)
            } else {
                let enc = self.finish(ctx, Some(cand))?;
                (enc.get_ids().to_vec(), enc.get_type_ids().to_vec())
            };
            batch.ids.push(ids);
            batch.type_ids.push(types);
        }
        Ok(batch)
    }

    fn empty_batch(&self, capacity: usize) -> EncodedBatch {
        EncodedBatch {
            ids: Vec::with_capacity(capacity),
            type_ids: Vec::with_capacity(capacity),
            pad_id: self.pad_id,
        }
    }

    /// Content tokens left once the template's special tokens are counted; at least `min`.
    fn budget(&self, max_len: usize, pair: bool, min: usize) -> Result<usize, ModelsError> {
        let specials = self.specials(pair);
        if max_len < specials + min {
            return Err(self.too_short(max_len, specials + min));
        }
        Ok(max_len - specials)
    }

    fn too_short(&self, max_len: usize, need: usize) -> ModelsError {
        ModelsError::InvalidArgument(format!(
            "max_len {max_len} is too small: at least {need} tokens are needed"
        ))
    }
}
