//! The parser never panics: random bytes, random near-valid lines, and truncated or corrupted prefixes of the real
//! file (plain and gzip). Every error must name the file and line.
//!
//! `CONVAI2_FUZZ_CASES` sets the number of cases per property (default 256, a few seconds). The long run documented
//! in docs/convai2-tasks.md uses `CONVAI2_FUZZ_CASES=200000`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use adaptable_tasks::TasksError;
use adaptable_tasks::convai2::{
    CandidateSelection, Convai2Data, Corpus, ExampleOptions, SplitConfig, TokenizedBatch,
    build_split, cluster_personas, encode_examples, episodes_to_string, examples_of, parse_bytes,
};
use proptest::prelude::*;

const NAME: &str = "fuzz.txt";

fn config() -> ProptestConfig {
    let cases = std::env::var("CONVAI2_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The first 300 kB of the real file, plain and gzip-compressed.
fn real_prefix() -> &'static (Vec<u8>, Vec<u8>) {
    static DATA: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    DATA.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/convai2/valid_self_original.txt.gz"
        );
        let gz = std::fs::read(path).expect("shipped file");
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .take(300_000)
            .read_to_end(&mut plain)
            .expect("gzip");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain).expect("gzip");
        (plain, encoder.finish().expect("gzip"))
    })
}

/// Parses, checks the error format, and runs the rest of the pipeline on whatever parsed.
fn exercise(bytes: &[u8]) -> Result<(), TestCaseError> {
    match parse_bytes(bytes, NAME) {
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                matches!(e, TasksError::Parse { .. } | TasksError::ReadLine { .. }),
                "unexpected error kind: {message}"
            );
            let rest = message.strip_prefix("fuzz.txt:").unwrap_or("");
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            prop_assert!(
                digits > 0 && rest[digits..].starts_with(": ") && rest.len() > digits + 2,
                "{message}"
            );
        }
        Ok(episodes) => {
            for (k, e) in episodes.iter().enumerate() {
                prop_assert_eq!(e.index, k);
                prop_assert!(!e.turns.is_empty());
            }
            let _ = cluster_personas(&episodes, 2);
            let _ = examples_of(&PathBuf::from(NAME), &episodes, &ExampleOptions::default());
            // Whatever parsed must be writable and read back the same.
            let text =
                episodes_to_string(&episodes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = parse_bytes(text.as_bytes(), NAME)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.len(), episodes.len());
            let data = Convai2Data {
                valid: Corpus {
                    path: NAME.into(),
                    episodes,
                },
                train: None,
            };
            let small = SplitConfig {
                retrain_tasks: 1,
                test_tasks: 1,
                test_offset: Some(1),
                retrain_heldout_dialogues: 0,
                test_heldout_dialogues: 0,
                ..SplitConfig::default()
            };
            if let Ok(split) = build_split(&data, &small) {
                for task in split.retrain.iter().chain(&split.test) {
                    if let Ok(examples) = task.train_examples(&small.example_options()) {
                        let encoded = encode_examples(&examples, &Chars, 16)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let selection = CandidateSelection::GoldPlusNegatives {
                            negatives: 2,
                            seed: 1,
                        };
                        let _ = TokenizedBatch::from_encoded(&encoded, selection, 0);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A trivial tokenizer: one id per character, most recent context first to go... last to go.
struct Chars;
impl adaptable_tasks::convai2::PairTokenizer for Chars {
    fn encode_pair(
        &self,
        context: &[String],
        candidate: &str,
        max_len: usize,
    ) -> Result<Vec<u32>, TasksError> {
        let cand: Vec<u32> = candidate.chars().map(|c| c as u32).take(max_len).collect();
        let ctx: Vec<u32> = context.concat().chars().map(|c| c as u32).collect();
        let keep = (max_len - cand.len()).min(ctx.len());
        let mut ids = vec![1];
        ids.extend(&ctx[ctx.len() - keep..]);
        ids.extend(cand);
        ids.truncate(max_len);
        Ok(ids)
    }
    fn pad_id(&self) -> u32 {
        0
    }
}

/// Lines built from the format's own pieces, so that many cases get past the first checks.
fn near_valid_line() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("1".to_string()),
        (0u32..12).prop_map(|n| n.to_string()),
        Just(String::new()),
        Just("99999999999999999999999".to_string())
    ];
    let piece = prop_oneof![
        Just("your persona: ".to_string()),
        Just("partner's persona: ".to_string()),
        Just("\t".to_string()),
        Just("|".to_string()),
        Just(" ".to_string()),
        Just("\r".to_string()),
        Just("hi".to_string()),
        Just("yo".to_string()),
        "[a-z .é]{0,6}",
    ];
    (
        number,
        prop_oneof![Just(" "), Just(""), Just("  ")],
        proptest::collection::vec(piece, 0..10),
    )
        .prop_map(|(n, sep, pieces)| format!("{n}{sep}{}", pieces.concat()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        exercise(&bytes)?;
    }

    #[test]
    fn random_gzip_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
        let mut with_magic = vec![0x1f, 0x8b, 0x08];
        with_magic.extend(bytes);
        exercise(&with_magic)?;
    }

    #[test]
    fn near_valid_lines_never_panic(lines in proptest::collection::vec(near_valid_line(), 0..30)) {
        exercise(lines.join("\n").as_bytes())?;
    }

    #[test]
    fn truncated_real_file_never_panics(cut in any::<prop::sample::Index>()) {
        let (plain, _) = real_prefix();
        exercise(&plain[..cut.index(plain.len() + 1)])?;
    }

    #[test]
    fn truncated_gzip_never_panics(cut in any::<prop::sample::Index>()) {
        let (_, gz) = real_prefix();
        exercise(&gz[..cut.index(gz.len() + 1)])?;
    }

    #[test]
    fn corrupted_real_file_never_panics(
        start in any::<prop::sample::Index>(),
        len in 0usize..20_000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let (plain, _) = real_prefix();
        let start = start.index(plain.len());
        let mut bytes = plain[start..(start + len).min(plain.len())].to_vec();
        if !bytes.is_empty() {
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
        }
        exercise(&bytes)?;
    }
}
