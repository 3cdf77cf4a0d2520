//! Checks on the shipped validation file, `datasets/convai2/valid_self_original.txt.gz`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use adaptable_tasks::convai2::{
    Convai2Data, Convai2Stats, SplitConfig, build_split, default_valid_path, episode_examples,
    episodes_to_string, parse_str, read_file, stats_for_path,
};

fn shipped() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/convai2/valid_self_original.txt.gz"
    ))
}

fn shipped_text() -> String {
    let bytes = std::fs::read(shipped()).expect("shipped file");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

#[test]
fn default_path_points_at_the_shipped_file() {
    assert_eq!(
        default_valid_path().canonicalize().unwrap(),
        shipped().canonicalize().unwrap()
    );
}

#[test]
fn shipped_file_has_1000_episodes_and_7801_examples_with_20_candidates_and_one_gold() {
    let data = Convai2Data::load_default().unwrap();
    let episodes = &data.valid.episodes;
    assert_eq!(episodes.len(), 1000);
    assert_eq!(data.valid.examples(), 7801);
    let options = SplitConfig::default().example_options();
    let mut gold_positions = [0usize; 20];
    let mut n = 0;
    for episode in episodes {
        assert!(!episode.your_persona.is_empty() && episode.partner_persona.is_empty());
        for example in episode_examples(&data.valid.path, episode, &options).unwrap() {
            let turn = &episode.turns[example.turn];
            assert_eq!(example.candidates.len(), 20);
            assert_eq!(example.candidates[example.gold], turn.reply);
            assert_eq!(
                example
                    .candidates
                    .iter()
                    .filter(|c| **c == turn.reply)
                    .count(),
                1
            );
            // In the file the gold is always last; after the shuffle it must not be.
            assert_eq!(turn.gold_position(), Some(19));
            gold_positions[example.gold] += 1;
            n += 1;
        }
    }
    assert_eq!(n, 7801);
    // Expected 390 per position; a leak would put everything in one place.
    for (position, &count) in gold_positions.iter().enumerate() {
        assert!(
            (280..=500).contains(&count),
            "gold at {position}: {count} times"
        );
    }
}

#[test]
fn writing_the_parsed_file_reproduces_its_bytes() {
    let text = shipped_text();
    let episodes = parse_str(&text, "valid_self_original.txt").unwrap();
    assert_eq!(episodes_to_string(&episodes).unwrap(), text);
}

#[test]
fn plain_and_gzip_files_read_the_same() {
    let dir = std::env::temp_dir().join(format!("convai2-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("valid_self_original.txt");
    std::fs::write(&plain, shipped_text()).unwrap();
    let from_plain = read_file(&plain).unwrap();
    let from_gzip = read_file(&shipped()).unwrap();
    // A directory is accepted too, and prefers the plain file.
    let from_dir = Convai2Data::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(from_plain, from_gzip);
    assert_eq!(from_dir.valid.path, plain);
    assert!(from_dir.train.is_none());
}

#[test]
fn default_split_has_100_personas_and_disjoint_tasks() {
    let data = Convai2Data::load_default().unwrap();
    let split = build_split(&data, &SplitConfig::default()).unwrap();
    assert_eq!(split.clusters, 100);
    assert_eq!((split.retrain.len(), split.test.len()), (10, 10));
    for task in &split.retrain {
        assert_eq!(task.heldout.len(), 3);
    }
    for task in &split.test {
        assert_eq!(task.heldout.len(), 2);
    }
    let all: Vec<_> = split.retrain.iter().chain(&split.test).collect();
    // Largest first within each role, and the retraining tasks are at least as large as the test tasks.
    let sizes: Vec<usize> = all
        .iter()
        .map(|t| t.train_example_count() + t.heldout_example_count())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");

    let dialogues = |tasks: &[adaptable_tasks::convai2::PersonaTask]| -> BTreeSet<usize> {
        tasks
            .iter()
            .flat_map(|t| t.train.iter().chain(&t.heldout))
            .map(|e| e.index)
            .collect()
    };
    let sentences = |tasks: &[adaptable_tasks::convai2::PersonaTask]| -> BTreeSet<String> {
        tasks
            .iter()
            .flat_map(|t| t.sentences.iter().cloned())
            .collect()
    };
    let (rd, td) = (dialogues(&split.retrain), dialogues(&split.test));
    assert_eq!(
        rd.len(),
        split.retrain.iter().map(|t| t.dialogues()).sum::<usize>()
    );
    assert!(rd.is_disjoint(&td));
    assert!(sentences(&split.retrain).is_disjoint(&sentences(&split.test)));
    // Same for every persona of the split: no sentence shared between two tasks.
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(
                a.sentences.is_disjoint(&b.sentences),
                "tasks {} and {} share a sentence",
                a.id,
                b.id
            );
        }
    }
    // Held-out dialogues are the last ones of the persona in file order.
    for task in &all {
        let last_train = task.train.last().unwrap().index;
        assert!(task.heldout.iter().all(|e| e.index > last_train));
    }
}

#[test]
fn stats_json_has_the_documented_keys_and_numbers() {
    let stats = stats_for_path(None, &SplitConfig::default()).unwrap();
    let json: serde_json::Value = serde_json::to_value(&stats).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "episodes",
            "examples",
            "clusters",
            "retrain_tasks",
            "test_tasks"
        ])
    );
    for task in json["retrain_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(json["test_tasks"].as_array().unwrap())
    {
        let keys: BTreeSet<&str> = task
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "dialogues", "train_examples", "heldout_examples"])
        );
    }
    assert_eq!(
        (stats.episodes, stats.examples, stats.clusters),
        (1000, 7801, 100)
    );
    let rendered = stats.render();
    assert!(rendered.contains("episodes: 1000") && rendered.contains("persona clusters: 100"));
    println!("{rendered}");
    println!("{}", serde_json::to_string(&stats).unwrap());
    assert_eq!(
        stats,
        Convai2Stats::of(
            &build_split(
                &Convai2Data::load_default().unwrap(),
                &SplitConfig::default()
            )
            .unwrap()
        )
    );
}

#[test]
fn persona_in_context_prefixes_the_persona() {
    let data = Convai2Data::load_default().unwrap();
    let episode = &data.valid.episodes[0];
    let on = SplitConfig {
        persona_in_context: true,
        ..SplitConfig::default()
    }
    .example_options();
    let off = SplitConfig::default().example_options();
    let with = episode_examples(&data.valid.path, episode, &on).unwrap();
    let without = episode_examples(&data.valid.path, episode, &off).unwrap();
    assert_eq!(without[0].context, ["hello what are doing today ?"]);
    assert_eq!(
        with[0].context[0],
        "your persona: i read twenty books a year."
    );
    assert_eq!(with[0].context.len(), episode.your_persona.len() + 1);
    // The turn's context ends with the partner's utterance and alternates with the gold replies.
    assert_eq!(without[1].context[1], episode.turns[0].reply);
    assert_eq!(with[1].candidates, without[1].candidates);
}
