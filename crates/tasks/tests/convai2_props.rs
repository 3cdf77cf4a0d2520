//! Property tests: round trips, one gold after the shuffle, deterministic seeded splits.

use std::collections::BTreeSet;
use std::path::PathBuf;

use adaptable_tasks::convai2::{
    CandidateSelection, Convai2Data, Corpus, EncodedExample, Episode, ExampleOptions, SplitConfig,
    TokenizedBatch, Turn, build_split, episode_examples, episodes_to_string, parse_str,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text without the format's separators; may contain unicode, spaces and punctuation.
fn field(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9 ,.?!'é😀ß-]{{{min},{max}}}")).unwrap()
}

fn turn() -> impl Strategy<Value = Turn> {
    (
        field(0, 20).prop_filter("not a persona line", |p| {
            !p.starts_with("your persona: ") && !p.starts_with("partner's persona: ")
        }),
        field(1, 20),
        prop_oneof![4 => Just(String::new()), 1 => field(1, 3)],
        proptest::collection::btree_set(field(1, 15), 0..6),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(
            |(partner, reply, reward, distractors, at, with_candidates)| {
                let mut candidates: Vec<String> =
                    distractors.into_iter().filter(|c| *c != reply).collect();
                if with_candidates {
                    candidates.insert(at.index(candidates.len() + 1), reply.clone());
                } else {
                    candidates.clear();
                }
                Turn {
                    partner,
                    reply,
                    reward,
                    candidates,
                }
            },
        )
}

fn persona_sentence() -> impl Strategy<Value = String> {
    field(1, 20).prop_filter("non-blank", |s| !s.trim().is_empty())
}

fn episode() -> impl Strategy<Value = Episode> {
    (
        proptest::collection::vec(persona_sentence(), 0..5),
        proptest::collection::vec(persona_sentence(), 0..3),
        proptest::collection::vec(turn(), 1..5),
    )
        .prop_map(|(your_persona, partner_persona, turns)| Episode {
            index: 0,
            line: 0,
            your_persona,
            partner_persona,
            turns,
        })
}

fn without_positions(episodes: &[Episode]) -> Vec<Episode> {
    episodes
        .iter()
        .cloned()
        .map(|e| Episode {
            index: 0,
            line: 0,
            ..e
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_write_parse_round_trips(episodes in proptest::collection::vec(episode(), 1..6)) {
        let text = episodes_to_string(&episodes).unwrap();
        let parsed = parse_str(&text, "roundtrip.txt").unwrap();
        prop_assert_eq!(without_positions(&parsed), without_positions(&episodes));
        prop_assert_eq!(parsed.iter().map(|e| e.index).collect::<Vec<_>>(), (0..episodes.len()).collect::<Vec<_>>());
        prop_assert_eq!(episodes_to_string(&parsed).unwrap(), text);
    }

    #[test]
    fn shuffling_keeps_exactly_one_gold(episode in episode(), seed in any::<u64>(), index in 0usize..1000) {
        let mut episode = episode;
        episode.index = index;
        for turn in &mut episode.turns {
            if turn.candidates.is_empty() {
                turn.candidates = vec![turn.reply.clone()];
            }
        }
        let options = ExampleOptions { persona_in_context: false, seed };
        let examples = episode_examples(&PathBuf::from("e.txt"), &episode, &options).unwrap();
        prop_assert_eq!(examples.len(), episode.turns.len());
        for example in &examples {
            let turn = &episode.turns[example.turn];
            prop_assert_eq!(&example.candidates[example.gold], &turn.reply);
            prop_assert_eq!(example.candidates.iter().filter(|c| **c == turn.reply).count(), 1);
            let mut a = example.candidates.clone();
            let mut b = turn.candidates.clone();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }
        // Same seed, same order.
        prop_assert_eq!(examples, episode_examples(&PathBuf::from("e.txt"), &episode, &options).unwrap());
    }

    #[test]
    fn negative_sampling_keeps_the_gold_and_is_seeded(
        n in 1usize..30, gold in any::<prop::sample::Index>(), negatives in 0usize..40, seed in any::<u64>()
    ) {
        let gold = gold.index(n);
        let example = EncodedExample {
            episode: 3,
            turn: 1,
            rows: (0..n).map(|k| vec![10 + k as u32; 1 + k % 4]).collect(),
            type_ids: Vec::new(),
            gold,
        };
        let selection = CandidateSelection::GoldPlusNegatives { negatives, seed };
        let batch = TokenizedBatch::from_encoded([&example], selection, 1).unwrap();
        let rows = batch.rows();
        prop_assert_eq!(rows, (negatives + 1).min(n));
        prop_assert_eq!(batch.row(batch.gold[0]).unwrap()[0], 10 + gold as u32);
        let firsts: BTreeSet<u32> = (0..rows).map(|r| batch.row(r).unwrap()[0]).collect();
        prop_assert_eq!(firsts.len(), rows);
        prop_assert_eq!(&batch, &TokenizedBatch::from_encoded([&example], selection, 1).unwrap());
        let all = TokenizedBatch::from_encoded([&example], CandidateSelection::All, 1).unwrap();
        prop_assert_eq!(all.rows(), n);
        prop_assert_eq!(all.gold[0], gold);
        for r in 0..all.rows() {
            let real = all.attention_mask[r * all.seq_len..(r + 1) * all.seq_len].iter().sum::<u32>() as usize;
            prop_assert_eq!(real, example.rows[r].len());
        }
    }

    #[test]
    fn splits_are_deterministic_for_a_seed_and_change_with_it(a in any::<u64>(), b in any::<u64>()) {
        prop_assume!(a != b);
        let data = equal_personas(40);
        let config = |seed| SplitConfig { seed, ..SplitConfig::default() };
        let ids = |seed| {
            let split = build_split(&data, &config(seed)).unwrap();
            let key = |tasks: &[adaptable_tasks::convai2::PersonaTask]| -> Vec<Vec<usize>> {
                tasks.iter().map(|t| t.train.iter().chain(&t.heldout).map(|e| e.index).collect()).collect()
            };
            (key(&split.retrain), key(&split.test))
        };
        prop_assert_eq!(build_split(&data, &config(a)).unwrap(), build_split(&data, &config(a)).unwrap());
        prop_assert_ne!(ids(a), ids(b));
    }
}

/// `n` personas of 4 sentences, each with 5 dialogues of 2 turns: every persona ties with every other.
fn equal_personas(n: usize) -> Convai2Data {
    let mut episodes = Vec::new();
    for d in 0..5 {
        for p in 0..n {
            let turn = |k: usize| Turn {
                partner: format!("hi {p} {d} {k}"),
                reply: format!("reply {k}"),
                reward: String::new(),
                candidates: vec![format!("other {k}"), format!("reply {k}")],
            };
            episodes.push(Episode {
                index: episodes.len(),
                line: 0,
                // Dialogues of a persona use different sentence orders, as in the real data.
                your_persona: (0..4)
                    .map(|s| format!("persona {p} sentence {}", (s + d) % 4))
                    .collect(),
                partner_persona: Vec::new(),
                turns: vec![turn(0), turn(1)],
            });
        }
    }
    Convai2Data {
        valid: Corpus {
            path: "synthetic.txt".into(),
            episodes,
        },
        train: None,
    }
}

#[test]
fn equal_personas_cluster_by_persona() {
    let split = build_split(&equal_personas(40), &SplitConfig::default()).unwrap();
    assert_eq!(split.clusters, 40);
    for task in split.retrain.iter().chain(&split.test) {
        assert_eq!(task.dialogues(), 5);
        assert_eq!(task.sentences.len(), 4);
    }
}

#[test]
fn with_a_train_split_test_personas_come_from_valid_and_are_unseen() {
    // Exactly 10 train personas, so persona 0 is certainly a retraining persona.
    let train = equal_personas(10).valid;
    let mut valid = equal_personas(15).valid;
    // Rename the validation personas except persona 0, which stays shared with train.
    for episode in &mut valid.episodes {
        for s in &mut episode.your_persona {
            if !s.starts_with("persona 0 ") {
                *s = format!("valid {s}");
            }
        }
    }
    let data = Convai2Data {
        valid: Corpus {
            path: "valid.txt".into(),
            ..valid
        },
        train: Some(Corpus {
            path: "train.txt".into(),
            ..train
        }),
    };
    let split = build_split(&data, &SplitConfig::default()).unwrap();
    assert_eq!(split.clusters, 10 + 15);
    assert_eq!(split.episodes, 50 + 75);
    assert!(
        split
            .retrain
            .iter()
            .all(|t| t.source.as_path() == std::path::Path::new("train.txt"))
    );
    assert!(
        split
            .test
            .iter()
            .all(|t| t.source.as_path() == std::path::Path::new("valid.txt"))
    );
    let train_sentences: BTreeSet<&String> =
        split.retrain.iter().flat_map(|t| &t.sentences).collect();
    for task in &split.test {
        assert!(task.sentences.iter().all(|s| !train_sentences.contains(s)));
    }
    // 15 validation personas minus the shared one leave 14 candidates; asking for 15 fails cleanly.
    let too_many = SplitConfig {
        test_tasks: 15,
        ..SplitConfig::default()
    };
    let e = build_split(&data, &too_many).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("15 test personas from rank 0 requested")),
        "{e:?}"
    );
}

#[test]
fn bad_split_configs_are_errors() {
    let data = equal_personas(40);
    let overlap = SplitConfig {
        test_offset: Some(5),
        ..SplitConfig::default()
    };
    let message = |c: &SplitConfig| {
        build_split(&data, c)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(message(&overlap).contains("overlap"));
    let heldout = SplitConfig {
        retrain_heldout_dialogues: 5,
        ..SplitConfig::default()
    };
    assert!(message(&heldout).contains("has 5 dialogues"));
    let far = SplitConfig {
        test_offset: Some(35),
        ..SplitConfig::default()
    };
    assert!(build_split(&data, &far).is_err());
    let zero = SplitConfig {
        min_shared_sentences: 0,
        ..SplitConfig::default()
    };
    assert!(build_split(&data, &zero).is_err());
}

#[test]
fn split_config_deserialises_with_defaults_and_rejects_unknown_fields() {
    let c: SplitConfig = serde_json::from_str(r#"{"retrain_tasks": 5, "seed": 7}"#).unwrap();
    assert_eq!(
        c,
        SplitConfig {
            retrain_tasks: 5,
            seed: 7,
            ..SplitConfig::default()
        }
    );
    assert!(serde_json::from_str::<SplitConfig>(r#"{"retrain_task": 5}"#).is_err());
    let d = SplitConfig::default();
    assert_eq!(
        (
            d.retrain_tasks,
            d.retrain_offset,
            d.test_tasks,
            d.effective_test_offset(false),
            d.effective_test_offset(true)
        ),
        (10, 0, 10, 10, 0)
    );
    assert_eq!(
        (
            d.retrain_heldout_dialogues,
            d.test_heldout_dialogues,
            d.persona_in_context
        ),
        (3, 2, false)
    );
}
