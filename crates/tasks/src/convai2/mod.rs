//! ConvAI2 (PersonaChat) persona tasks: parsing, personas as tasks, the retraining / test split, ranking examples
//! and tokenised batches for a cross-encoder.
//!
//! Pipeline: [`Convai2Data::load`] reads ParlAI text files (plain or gzip) →
//! [`build_split`] clusters episodes into personas and picks the retraining and test tasks →
//! [`PersonaTask::train_examples`] / [`PersonaTask::heldout_examples`] give one [`Example`] per turn, with the
//! candidates shuffled from the seed → [`encode_examples`] and [`TokenizedBatch::from_encoded`] turn them into padded
//! id matrices through a [`PairTokenizer`] supplied by the model crate.
//!
//! The rules (persona clustering, ranking, held-out dialogues) and the resulting numbers on the shipped validation
//! file are documented in `docs/convai2-tasks.md`.
//!
//! ```
//! use adaptable_tasks::convai2::{
//!     CandidateSelection, Convai2Data, Convai2Stats, PairTokenizer, SplitConfig, TokenizedBatch, build_split,
//! };
//! use adaptable_tasks::TasksError;
//!
//! // A toy tokenizer: one id per word, most recent context kept.
//! struct Words;
//! impl PairTokenizer for Words {
//!     fn encode_pair(&self, context: &[String], candidate: &str, max_len: usize) -> Result<Vec<u32>, TasksError> {
//!         let cand: Vec<u32> = candidate.split_whitespace().map(|w| w.len() as u32 + 2).collect();
//!         let ctx: Vec<u32> = context.iter().flat_map(|u| u.split_whitespace()).map(|w| w.len() as u32 + 2).collect();
//!         let keep = max_len.saturating_sub(cand.len()).min(ctx.len());
//!         let mut ids = ctx[ctx.len() - keep..].to_vec();
//!         ids.extend(cand.iter().take(max_len));
//!         Ok(ids)
//!     }
//!     fn pad_id(&self) -> u32 { 1 }
//! }
//!
//! # fn main() -> Result<(), TasksError> {
//! let data = Convai2Data::load_default()?; // datasets/convai2/valid_self_original.txt.gz
//! let config = SplitConfig::default(); // 10 retraining + 10 test personas, seed 0
//! let split = build_split(&data, &config)?;
//! assert_eq!((split.retrain.len(), split.test.len()), (10, 10));
//!
//! let examples = split.retrain[0].train_examples(&config.example_options())?;
//! assert!(examples.iter().all(|e| e.candidates.len() == 20 && e.candidates[e.gold] != ""));
//! let batch = TokenizedBatch::build(&examples[..8], &Words, 256, CandidateSelection::All)?;
//! assert_eq!(batch.rows(), 8 * 20);
//!
//! println!("{}", Convai2Stats::of(&split).render());
//! # Ok(())
//! # }
//! ```

mod cluster;
mod data;
mod episode;
mod examples;
mod parser;
mod seed;
mod split;
mod stats;
mod tokenized;
mod writer;

pub use cluster::{PersonaCluster, cluster_personas};
pub use data::{Convai2Data, Corpus, default_data_dir, default_valid_path};
pub use episode::{Episode, Turn, persona_key};
pub use examples::{Example, ExampleOptions, episode_examples, examples_of};
pub use parser::{
    EpisodeReader, PARTNER_PERSONA, YOUR_PERSONA, open, parse_bytes, parse_str, read_file,
};
pub use split::{PersonaSplit, PersonaTask, SplitConfig, build_split, ranked_personas};
pub use stats::{Convai2Stats, TaskStats, stats_for_path};
pub use tokenized::{
    CandidateSelection, EncodedExample, EncodedPair, PairTokenizer, TokenizedBatch, encode_examples,
};
pub use writer::{episodes_to_string, write_episodes};
