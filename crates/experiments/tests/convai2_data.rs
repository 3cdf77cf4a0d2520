//! ConvAI2 inputs: both pair formats against the tokenizers' own encodings (BERT and RoBERTa), and
//! seeds that vary the batch order and the sampled negatives while the examples stay fixed.

use std::path::{Path, PathBuf};

use adaptable_experiments::{
    convai2::{Batching, ConvaiTask, PairEncoder},
    device::Backend,
};
use adaptable_meta::TaskData;
use adaptable_models::{PairFormat, TextTokenizer};
use adaptable_tasks::convai2::{Convai2Data, PairTokenizer, SplitConfig, build_split};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn roberta() -> TextTokenizer {
    TextTokenizer::from_file(workspace().join("datasets/roberta-tokenizer/tokenizer.json")).unwrap()
}

fn bert() -> TextTokenizer {
    TextTokenizer::from_file(workspace().join("datasets/minilm-tokenizer/tokenizer.json")).unwrap()
}

fn context() -> Vec<String> {
    vec![
        "hi , how are you doing today ?".into(),
        "i am great . i just got back from the gym .".into(),
    ]
}

const CANDIDATE: &str = "that sounds fun ! what do you lift ?";

/// The tokenizer's own encoding of one sequence (special tokens included).
fn single(tok: &TextTokenizer, text: &str) -> Vec<u32> {
    tok.inner().encode(text, true).unwrap().get_ids().to_vec()
}

/// The tokenizer's own pair encoding: ids and token type ids.
fn pair(tok: &TextTokenizer, a: &str, b: &str) -> (Vec<u32>, Vec<u32>) {
    let enc = tok.inner().encode((a, b), true).unwrap();
    (enc.get_ids().to_vec(), enc.get_type_ids().to_vec())
}

fn encode(tok: &TextTokenizer, format: PairFormat, types: usize) -> (Vec<u32>, Vec<u32>) {
    let encoder = PairEncoder::new(tok, format, types);
    let mut pairs = encoder
        .encode_candidates_typed(&context(), &[CANDIDATE.to_string()], 512)
        .unwrap();
    let pair = pairs.remove(0);
    (pair.ids, pair.type_ids)
}

#[test]
fn bert_native_pairs_are_the_tokenizers_pair_template_with_segments() {
    let tok = bert();
    let joined = context().join(" ");
    let (ids, types) = encode(&tok, PairFormat::Native, 2);
    let (want_ids, want_types) = pair(&tok, &joined, CANDIDATE);
    assert_eq!(ids, want_ids);
    assert_eq!(types, want_types);
    // [CLS] ctx [SEP] cand [SEP]: types 0 up to the first [SEP], then 1.
    let (cls, sep) = (
        tok.inner().token_to_id("[CLS]").unwrap(),
        tok.inner().token_to_id("[SEP]").unwrap(),
    );
    assert_eq!(ids[0], cls);
    assert_eq!(ids.iter().filter(|&&t| t == cls).count(), 1);
    let first_sep = ids.iter().position(|&t| t == sep).unwrap();
    assert!(types[..=first_sep].iter().all(|&t| t == 0));
    assert!(types[first_sep + 1..].iter().all(|&t| t == 1));
}

#[test]
fn bert_paper_pairs_are_two_encodings_back_to_back_in_segment_0() {
    let tok = bert();
    let joined = context().join(" ");
    let (ids, types) = encode(&tok, PairFormat::Concatenated, 2);
    let (a, b) = (single(&tok, &joined), single(&tok, CANDIDATE));
    assert_eq!(ids, [a, b].concat());
    assert!(types.iter().all(|&t| t == 0));
}

#[test]
fn roberta_pairs_in_both_formats() {
    let tok = roberta();
    let joined = context().join(" ");
    let (ids, types) = encode(&tok, PairFormat::Native, 1);
    let (want, _) = pair(&tok, &joined, CANDIDATE);
    assert_eq!(ids, want);
    // `<s> ctx </s></s> cand </s>`, and RoBERTa's single token type.
    assert_eq!(ids.windows(2).filter(|w| w == &[2, 2]).count(), 1);
    assert!(types.iter().all(|&t| t == 0));
    let (ids, types) = encode(&tok, PairFormat::Concatenated, 1);
    let (a, b) = (single(&tok, &joined), single(&tok, CANDIDATE));
    assert_eq!(ids, [a, b].concat());
    assert!(types.iter().all(|&t| t == 0));
}

#[test]
fn pairs_are_cut_only_past_max_len_and_counted() {
    let tok = bert();
    let encoder = PairEncoder::new(&tok, PairFormat::Native, 2);
    let whole = encoder
        .encode_candidates_typed(&context(), &[CANDIDATE.to_string()], 512)
        .unwrap();
    assert_eq!(encoder.cut_pairs(), 0);
    let len = whole[0].ids.len();
    let cut = encoder
        .encode_candidates_typed(&context(), &[CANDIDATE.to_string()], len - 3)
        .unwrap();
    assert_eq!(encoder.cut_pairs(), 1);
    assert_eq!(cut[0].ids.len(), len - 3);
    assert_eq!(cut[0].type_ids.len(), len - 3);
    // The oldest context goes first: the tail (newest context, candidate) is unchanged.
    assert_eq!(cut[0].ids[4..], whole[0].ids[7..]);
}

fn task(seed: u64) -> ConvaiTask {
    let data = Convai2Data::load_default().unwrap();
    let config = SplitConfig::default();
    let split = build_split(&data, &config).unwrap();
    let options = config.example_options();
    let train = split.retrain[0].train_examples(&options).unwrap();
    let heldout = split.retrain[0].heldout_examples(&options).unwrap();
    let tok = bert();
    let encoder = PairEncoder::new(&tok, PairFormat::Native, 2);
    let batching = Batching {
        batch_size: 1,
        eval_batch_size: 4,
        negatives: 3,
    };
    let device = Backend::Flex.device().unwrap();
    ConvaiTask::new(
        &train[..24],
        &heldout[..4],
        &encoder,
        48,
        batching,
        seed,
        &device,
    )
    .unwrap()
}

/// Each example's (episode, turn) in batch order, and the token ids of every batch of epoch 0
/// (one example per batch: its gold and sampled negatives).
fn epoch(task: &ConvaiTask) -> (Vec<(usize, usize)>, Vec<Vec<i64>>) {
    let (order, _) = task.epoch_order(0);
    let order = order.iter().map(|e| (e.episode, e.turn)).collect();
    let batches = task
        .train_batches(0)
        .unwrap()
        .into_iter()
        .map(|b| {
            b.input()
                .input_ids
                .clone()
                .try_into_vec_as::<i64>()
                .unwrap()
        })
        .collect();
    (order, batches)
}

/// The rows each example was given, keyed by example.
fn rows_by_example(
    (order, batches): &(Vec<(usize, usize)>, Vec<Vec<i64>>),
) -> std::collections::BTreeMap<(usize, usize), Vec<i64>> {
    order.iter().copied().zip(batches.iter().cloned()).collect()
}

#[test]
fn seeds_vary_the_batch_order_and_negatives_and_nothing_else() {
    let (a, b, a_again) = (task(1), task(2), task(1));
    let (order_a, batches_a) = epoch(&a);
    let (order_b, batches_b) = epoch(&b);
    let (order_again, batches_again) = epoch(&a_again);
    assert_eq!(order_a, order_again);
    assert_eq!(batches_a, batches_again);
    assert_ne!(order_a, order_b, "two seeds gave the same batch order");
    // The same examples, only reordered.
    let (mut sorted_a, mut sorted_b) = (order_a.clone(), order_b.clone());
    sorted_a.sort_unstable();
    sorted_b.sort_unstable();
    assert_eq!(sorted_a, sorted_b);
    // The negatives differ too: the same example gets other distractors under the other seed.
    let (rows_a, rows_b) = (
        rows_by_example(&(order_a, batches_a)),
        rows_by_example(&(order_b.clone(), batches_b.clone())),
    );
    let differ = rows_a.iter().filter(|(k, v)| rows_b[*k] != **v).count();
    assert!(
        differ > 0,
        "every example got the same negatives under both seeds"
    );
    // Reseeding a task is the same as building it with that seed.
    let mut reseeded = task(1);
    reseeded.reseed(2);
    assert_eq!(epoch(&reseeded), (order_b, batches_b));
    // Evaluation does not depend on the seed.
    let eval = |t: &ConvaiTask| -> Vec<Vec<i64>> {
        t.eval_batches()
            .unwrap()
            .into_iter()
            .map(|b| {
                b.input()
                    .input_ids
                    .clone()
                    .try_into_vec_as::<i64>()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(eval(&a), eval(&b));
    // Native BERT pairs reach the model with their segment ids.
    let batch = &a.train_batches(0).unwrap()[0];
    let types = batch.input().token_type_ids.clone().expect("token types");
    assert!(types.try_into_vec_as::<i64>().unwrap().contains(&1));
}
