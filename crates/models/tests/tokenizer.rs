//! Tokenizer golden (roberta-base `tokenizer.json` vs HF tokenizers) and the truncation policy.

mod common;

use adaptable_models::{ModelsError, PairFormat, TextTokenizer};
use common::*;

fn roberta() -> TextTokenizer {
    TextTokenizer::from_file(dataset("roberta-tokenizer/tokenizer.json")).expect("tokenizer loads")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn every_golden_string_encodes_to_the_same_ids() {
    let tok = roberta();
    assert_eq!(tok.pad_id(), 1);
    let golden = read_json(&fixture("tokenizer_golden.json"));
    let singles = golden["single"].as_array().expect("single");
    assert_eq!(singles.len(), 13);
    for case in singles {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            tok.encode(text).expect("encodes"),
            ids(&case["ids"]),
            "text {text:?}"
        );
    }
    for case in golden["pairs"].as_array().expect("pairs") {
        let (a, b) = (
            case["a"].as_str().expect("a"),
            case["b"].as_str().expect("b"),
        );
        assert_eq!(tok.encode_pair(a, b).expect("encodes"), ids(&case["ids"]));
    }
}

#[test]
fn pair_truncation_keeps_the_most_recent_context() {
    let tok = roberta();
    let context = "one two three four five six seven eight nine ten";
    let candidate = "the answer";
    let full = tok
        .encode_pairs(&[(context, candidate)], 512, PairFormat::Native)
        .expect("fits");
    let cut = tok
        .encode_pairs(&[(context, candidate)], 10, PairFormat::Native)
        .expect("cut");
    assert_eq!(cut.ids[0].len(), 10);
    let (full, cut) = (&full.ids[0], &cut.ids[0]);
    // <s> ctx </s></s> cand </s>: candidate (2 tokens) and the specials survive, the context keeps
    // its last 4 tokens ("seven eight nine ten").
    assert_eq!(cut[0], 0);
    assert_eq!(&cut[cut.len() - 5..], &full[full.len() - 5..]);
    let ctx_end = full.len() - 5;
    assert_eq!(&cut[1..5], &full[ctx_end - 4..ctx_end]);

    let concat = tok
        .encode_pairs(&[(context, candidate)], 10, PairFormat::Concatenated)
        .expect("cut");
    let c = &concat.ids[0];
    assert_eq!(c.len(), 10);
    assert_eq!((c[0], c[c.len() - 1]), (0, 2));
    assert_eq!(
        &c[c.len() - 4..],
        &[
            0,
            tok.encode(candidate).expect("ok")[1],
            tok.encode(candidate).expect("ok")[2],
            2
        ]
    );
}

#[test]
fn batch_pads_with_the_pad_id() {
    let tok = roberta();
    let batch = tok
        .encode_batch(&["hello world", "a much longer sentence here"], 64)
        .expect("ok");
    let input = batch.to_input(&cpu()).expect("batch");
    let [b, l] = input.dims();
    assert_eq!(b, 2);
    assert_eq!(l, batch.max_len());
    let ids = to_vec(input.input_ids.float());
    assert_eq!(ids[l - 1], 1.0, "short row is padded with <pad>");
    let mask = to_vec(input.attention_mask.float());
    assert_eq!(mask[l - 1], 0.0);
}

#[test]
fn bad_tokenizer_inputs_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("adaptable-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let broken = dir.join("tokenizer.json");
    std::fs::write(&broken, "{\"version\": \"1.0\", \"model\": ").expect("write");
    let err = TextTokenizer::from_file(&broken).expect_err("does not parse");
    assert!(matches!(err, ModelsError::Tokenizer { .. }));
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    let err = TextTokenizer::from_file(dir.join("absent.json")).expect_err("missing");
    assert!(err.to_string().contains("not found"), "{err}");
    std::fs::remove_dir_all(&dir).ok();

    let tok = roberta();
    assert!(matches!(
        tok.encode_batch(&["fine", "  "], 16),
        Err(ModelsError::EmptyInput(_))
    ));
    assert!(matches!(
        tok.encode_batch(&[], 16),
        Err(ModelsError::EmptyInput(_))
    ));
    assert!(matches!(
        tok.encode_pairs(&[("ctx", "")], 16, PairFormat::Native),
        Err(ModelsError::EmptyInput(_))
    ));
    assert!(matches!(
        tok.encode_batch(&["x"], 1),
        Err(ModelsError::InvalidArgument(_))
    ));
}
