//! Tokenised batches with the real roberta-base tokenizer, and the timing of loading + tokenising every example.
//!
//! The [`PairTokenizer`] implementation here is a test stand-in for the model crate's wrapper.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use adaptable_tasks::TasksError;
use adaptable_tasks::convai2::{
    CandidateSelection, Convai2Data, PairTokenizer, SplitConfig, TokenizedBatch, encode_examples,
    examples_of,
};
use tokenizers::Tokenizer;

const BOS: u32 = 0;
const PAD: u32 = 1;
const EOS: u32 = 2;

/// `<s> context </s></s> candidate </s>`, context utterances joined by a space; the oldest context tokens go first
/// when the pair is too long. Optionally memoises candidate encodings: the 156,020 candidates of the validation file
/// are only 22,687 distinct strings.
struct Roberta {
    tokenizer: Tokenizer,
    cache: Option<RefCell<HashMap<String, Vec<u32>>>>,
}

impl Roberta {
    fn load() -> Self {
        let path = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/roberta-tokenizer/tokenizer.json"
        ));
        Self {
            tokenizer: Tokenizer::from_file(&path).expect("tokenizer.json"),
            cache: None,
        }
    }

    fn with_cache(self) -> Self {
        Self {
            cache: Some(RefCell::default()),
            ..self
        }
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>, TasksError> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TasksError::Tokenizer(e.to_string()))
    }

    fn candidate_ids(&self, text: &str) -> Result<Vec<u32>, TasksError> {
        let Some(cache) = &self.cache else {
            return self.ids(text);
        };
        if let Some(ids) = cache.borrow().get(text) {
            return Ok(ids.clone());
        }
        let ids = self.ids(text)?;
        cache.borrow_mut().insert(text.to_string(), ids.clone());
        Ok(ids)
    }

    fn pair(context: &[u32], candidate: &[u32], max_len: usize) -> Result<Vec<u32>, TasksError> {
        const SPECIALS: usize = 4;
        let budget = max_len.checked_sub(SPECIALS).ok_or_else(|| {
            TasksError::Tokenizer(format!("max_len {max_len} leaves no room for the specials"))
        })?;
        let candidate = &candidate[..candidate.len().min(budget)];
        let keep = (budget - candidate.len()).min(context.len());
        let mut ids = Vec::with_capacity(SPECIALS + keep + candidate.len());
        ids.push(BOS);
        ids.extend_from_slice(&context[context.len() - keep..]);
        ids.extend_from_slice(&[EOS, EOS]);
        ids.extend_from_slice(candidate);
        ids.push(EOS);
        Ok(ids)
    }
}

impl PairTokenizer for Roberta {
    fn encode_pair(
        &self,
        context: &[String],
        candidate: &str,
        max_len: usize,
    ) -> Result<Vec<u32>, TasksError> {
        Self::pair(
            &self.ids(&context.join(" "))?,
            &self.ids(candidate)?,
            max_len,
        )
    }

    fn encode_candidates(
        &self,
        context: &[String],
        candidates: &[String],
        max_len: usize,
    ) -> Result<Vec<Vec<u32>>, TasksError> {
        let context = self.ids(&context.join(" "))?;
        candidates
            .iter()
            .map(|c| Self::pair(&context, &self.candidate_ids(c)?, max_len))
            .collect()
    }

    fn pad_id(&self) -> u32 {
        PAD
    }
}

#[test]
fn roberta_pairs_keep_the_most_recent_context() {
    let tok = Roberta::load();
    assert_eq!(tok.ids("Hello world!").unwrap(), [31414, 232, 328]);
    let context: Vec<String> = vec!["a b c d e f g h".into(), "Hello world!".into()];
    let full = tok.encode_pair(&context, "yes", 512).unwrap();
    assert_eq!(full[0], BOS);
    assert_eq!(*full.last().unwrap(), EOS);
    // 4 ids of budget: "world!" would need 2 tokens, so with max_len 4 + 1 + 2 only the newest 2 context tokens stay.
    let short = tok.encode_pair(&context, "yes", 4 + 1 + 2).unwrap();
    assert_eq!(
        short,
        [BOS, 232, 328, EOS, EOS, tok.ids("yes").unwrap()[0], EOS]
    );
}

#[test]
fn batches_pad_to_the_longest_row_and_sample_negatives() {
    let data = Convai2Data::load_default().unwrap();
    let config = SplitConfig::default();
    let examples = examples_of(
        &data.valid.path,
        &data.valid.episodes[..3],
        &config.example_options(),
    )
    .unwrap();
    let tok = Roberta::load();
    let eval = TokenizedBatch::build(&examples, &tok, 512, CandidateSelection::All).unwrap();
    assert_eq!(eval.uniform_candidates(), Some(20));
    assert_eq!(eval.ids.len(), eval.rows() * eval.seq_len);
    assert_eq!(eval.attention_mask.len(), eval.ids.len());
    let encoded = encode_examples(&examples, &tok, 512).unwrap();
    let longest = encoded
        .iter()
        .flat_map(|e| &e.rows)
        .map(Vec::len)
        .max()
        .unwrap();
    assert_eq!(eval.seq_len, longest);
    for r in 0..eval.rows() {
        let row = eval.row(r).unwrap();
        let real = eval.attention_mask[r * eval.seq_len..(r + 1) * eval.seq_len]
            .iter()
            .sum::<u32>() as usize;
        assert!(row[real..].iter().all(|&id| id == PAD));
        assert_eq!(row[real - 1], EOS);
    }
    let train = TokenizedBatch::from_encoded(
        &encoded,
        CandidateSelection::GoldPlusNegatives {
            negatives: 3,
            seed: 9,
        },
        PAD,
    )
    .unwrap();
    assert_eq!(train.uniform_candidates(), Some(4));
    let mut offset = 0;
    for (e, example) in encoded.iter().enumerate() {
        let gold_row = train.row(offset + train.gold[e]).unwrap();
        assert_eq!(
            &gold_row[..example.rows[example.gold].len()],
            example.rows[example.gold].as_slice()
        );
        offset += train.candidates_per_example[e];
    }
    // Truncation: every row fits max_len and ends with the candidate.
    let capped = TokenizedBatch::build(&examples, &tok, 24, CandidateSelection::All).unwrap();
    assert!(capped.seq_len <= 24);
}

/// Loads the shipped file and tokenises all 7801 examples with all 20 candidates; prints the timings recorded in
/// docs/convai2-tasks.md (run in release mode for meaningful numbers).
#[test]
fn load_and_tokenise_everything_timing() {
    let cached = time_everything(Roberta::load().with_cache(), "memoised candidates");
    if cfg!(debug_assertions) {
        // Unoptimised tokenizers are slow; the plain pass only matters for the release measurement.
        return;
    }
    let plain = time_everything(Roberta::load(), "plain");
    assert_eq!(plain, cached);
}

fn time_everything(tok: Roberta, label: &str) -> Vec<adaptable_tasks::convai2::EncodedExample> {
    let t0 = Instant::now();
    let data = Convai2Data::load_default().unwrap();
    let t_load = t0.elapsed();
    let config = SplitConfig::default();
    let examples = examples_of(
        &data.valid.path,
        &data.valid.episodes,
        &config.example_options(),
    )
    .unwrap();
    let t_examples = t0.elapsed();
    let encoded = encode_examples(&examples, &tok, 512).unwrap();
    let t_encode = t0.elapsed();
    let mut rows = 0;
    let mut padded = 0;
    for chunk in encoded.chunks(8) {
        let batch = TokenizedBatch::from_encoded(chunk, CandidateSelection::All, PAD).unwrap();
        rows += batch.rows();
        padded += batch.ids.len();
    }
    let t_batch = t0.elapsed();
    let longest = encoded
        .iter()
        .flat_map(|e| &e.rows)
        .map(Vec::len)
        .max()
        .unwrap();
    let tokens: usize = encoded.iter().flat_map(|e| &e.rows).map(Vec::len).sum();
    assert_eq!(examples.len(), 7801);
    assert_eq!(rows, 7801 * 20);
    println!(
        "convai2 timing ({label}): load+parse {:.3}s, examples {:.3}s, tokenise {:.3}s, batches of 8 {:.3}s, \
         total {:.3}s; {rows} pairs, {tokens} tokens, longest pair {longest}, padded ids {padded}",
        t_load.as_secs_f64(),
        (t_examples - t_load).as_secs_f64(),
        (t_encode - t_examples).as_secs_f64(),
        (t_batch - t_encode).as_secs_f64(),
        t_batch.as_secs_f64()
    );
    assert!(longest <= 512);
    if !cfg!(debug_assertions) {
        assert!(
            t_batch.as_secs_f64() < 30.0,
            "far slower than measured: {t_batch:?}"
        );
    }
    encoded
}
