//! Persona tasks and the retraining / test split.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::cluster::{PersonaCluster, cluster_personas};
use super::data::{Convai2Data, Corpus};
use super::episode::Episode;
use super::examples::{Example, ExampleOptions, examples_of};
use super::seed::{purpose, rng_for};
use crate::TasksError;

/// How persona tasks are chosen and split. Deserialises from a config section; missing fields take the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Number of retraining tasks.
    pub retrain_tasks: usize,
    /// Rank (from 0, largest persona first) of the first retraining task.
    pub retrain_offset: usize,
    /// Number of test (unseen) tasks.
    pub test_tasks: usize,
    /// Rank of the first test task among the validation personas. `None` means 10 when there is no train split (the
    /// test tasks follow the retraining tasks) and 0 with a train split (the largest validation personas).
    pub test_offset: Option<usize>,
    /// Dialogues held out for evaluation at the end of each retraining task.
    pub retrain_heldout_dialogues: usize,
    /// Dialogues held out for evaluation at the end of each test task.
    pub test_heldout_dialogues: usize,
    /// Put the persona sentences in front of every context (off in the paper).
    pub persona_in_context: bool,
    /// Two episodes are the same persona when they share at least this many persona sentences (see
    /// [`cluster_personas`]).
    pub min_shared_sentences: usize,
    /// Seed of every random choice: ties between equally large personas and the candidate shuffle.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            retrain_tasks: 10,
            retrain_offset: 0,
            test_tasks: 10,
            test_offset: None,
            retrain_heldout_dialogues: 3,
            test_heldout_dialogues: 2,
            persona_in_context: false,
            min_shared_sentences: 2,
            seed: 0,
        }
    }
}

impl SplitConfig {
    /// The example options these settings imply.
    pub fn example_options(&self) -> ExampleOptions {
        ExampleOptions {
            persona_in_context: self.persona_in_context,
            seed: self.seed,
        }
    }

    /// The test offset in effect: [`SplitConfig::test_offset`] or its default for the data at hand.
    pub fn effective_test_offset(&self, has_train: bool) -> usize {
        self.test_offset.unwrap_or(if has_train { 0 } else { 10 })
    }
}

/// One persona task: its dialogues split into training and held-out dialogues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaTask {
    /// Rank of the persona among the personas of its file (largest first, from 0). With a train split, the test
    /// personas are ranked among the validation personas not seen in retraining.
    pub id: usize,
    /// The file the dialogues come from.
    pub source: PathBuf,
    /// The persona's normalised sentences (union over its dialogues).
    pub sentences: BTreeSet<String>,
    /// Training dialogues, in file order.
    pub train: Vec<Episode>,
    /// Held-out dialogues: the last ones of the persona in file order.
    pub heldout: Vec<Episode>,
}

impl PersonaTask {
    /// Number of dialogues (training and held-out).
    pub fn dialogues(&self) -> usize {
        self.train.len() + self.heldout.len()
    }

    /// Number of training examples (turns of the training dialogues).
    pub fn train_example_count(&self) -> usize {
        self.train.iter().map(|e| e.turns.len()).sum()
    }

    /// Number of held-out examples.
    pub fn heldout_example_count(&self) -> usize {
        self.heldout.iter().map(|e| e.turns.len()).sum()
    }

    /// The training examples.
    pub fn train_examples(&self, options: &ExampleOptions) -> Result<Vec<Example>, TasksError> {
        examples_of(&self.source, &self.train, options)
    }

    /// The held-out examples.
    pub fn heldout_examples(&self, options: &ExampleOptions) -> Result<Vec<Example>, TasksError> {
        examples_of(&self.source, &self.heldout, options)
    }
}

/// Retraining and test tasks, plus counts over all loaded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaSplit {
    /// The retraining (meta-training) tasks, largest first.
    pub retrain: Vec<PersonaTask>,
    /// The unseen test (fine-tuning) tasks, largest first.
    pub test: Vec<PersonaTask>,
    /// Episodes in all loaded files.
    pub episodes: usize,
    /// Examples (turns) in all loaded files.
    pub examples: usize,
    /// Persona clusters in all loaded files.
    pub clusters: usize,
}

/// Clusters the episodes of a corpus into personas and ranks them: most examples first, ties in a seeded random
/// order.
pub fn ranked_personas(episodes: &[Episode], min_shared: usize, seed: u64) -> Vec<PersonaCluster> {
    let mut rng = rng_for(seed, purpose::TIE_BREAK, 0, 0);
    // Clusters come in order of their first episode, so the tie-break keys are a function of the seed and the data.
    let mut keyed: Vec<(u64, PersonaCluster)> = cluster_personas(episodes, min_shared)
        .into_iter()
        .map(|c| (rng.next_u64(), c))
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| b.examples.cmp(&a.examples).then(ka.cmp(kb)));
    keyed.into_iter().map(|(_, c)| c).collect()
}

/// Builds the retraining and test tasks.
///
/// Without a train split, the personas of the validation file are ranked once and the retraining and test tasks are
/// two disjoint rank ranges. With a train split, retraining personas are ranked within train and test personas within
/// valid, as in the paper; a validation persona that shares `min_shared_sentences` sentences with a chosen
/// retraining persona is skipped so that test personas stay unseen.
pub fn build_split(data: &Convai2Data, config: &SplitConfig) -> Result<PersonaSplit, TasksError> {
    if config.min_shared_sentences == 0 {
        return Err(TasksError::Convai2Config(
            "`min_shared_sentences` must be at least 1".into(),
        ));
    }
    let test_offset = config.effective_test_offset(data.train.is_some());
    let ranked_valid = ranked_personas(
        &data.valid.episodes,
        config.min_shared_sentences,
        config.seed,
    );
    let mut clusters = ranked_valid.len();
    let (retrain, test_candidates) = match &data.train {
        None => {
            // Saturating: offsets and counts come from user configs and must not overflow.
            let (r0, r1) = (
                config.retrain_offset,
                config.retrain_offset.saturating_add(config.retrain_tasks),
            );
            let (t0, t1) = (test_offset, test_offset.saturating_add(config.test_tasks));
            if config.retrain_tasks > 0 && config.test_tasks > 0 && r0 < t1 && t0 < r1 {
                return Err(TasksError::Convai2Config(format!(
                    "retraining personas {r0}..{r1} and test personas {t0}..{t1} overlap; \
                     with only the validation split they must be disjoint rank ranges"
                )));
            }
            let retrain = select(
                &data.valid,
                &ranked_valid,
                r0,
                config.retrain_tasks,
                config.retrain_heldout_dialogues,
                "retraining",
            )?;
            (retrain, ranked_valid)
        }
        Some(train) => {
            let ranked_train =
                ranked_personas(&train.episodes, config.min_shared_sentences, config.seed);
            clusters += ranked_train.len();
            let retrain = select(
                train,
                &ranked_train,
                config.retrain_offset,
                config.retrain_tasks,
                config.retrain_heldout_dialogues,
                "retraining",
            )?;
            let unseen: Vec<PersonaCluster> = ranked_valid
                .into_iter()
                .filter(|c| !seen_in(&retrain, c, config.min_shared_sentences))
                .collect();
            (retrain, unseen)
        }
    };
    let test = select(
        &data.valid,
        &test_candidates,
        test_offset,
        config.test_tasks,
        config.test_heldout_dialogues,
        "test",
    )?;
    Ok(PersonaSplit {
        retrain,
        test,
        episodes: data.corpora().map(|c| c.episodes.len()).sum(),
        examples: data.corpora().map(Corpus::examples).sum(),
        clusters,
    })
}

/// Whether a validation persona is one of the retraining personas under the clustering rule.
fn seen_in(retrain: &[PersonaTask], cluster: &PersonaCluster, min_shared: usize) -> bool {
    let seen = retrain
        .iter()
        .any(|t| t.sentences.intersection(&cluster.sentences).count() >= min_shared);
    if seen {
        tracing::warn!(
            sentences = ?cluster.sentences,
            "validation persona is also a retraining persona; not used as a test task"
        );
    }
    seen
}

/// Takes `count` ranked personas from rank `offset` and holds out the last `heldout` dialogues of each.
fn select(
    corpus: &Corpus,
    ranked: &[PersonaCluster],
    offset: usize,
    count: usize,
    heldout: usize,
    role: &str,
) -> Result<Vec<PersonaTask>, TasksError> {
    let chosen = ranked.get(offset..offset.saturating_add(count)).ok_or_else(|| {
        TasksError::Convai2Split(format!(
            "{count} {role} personas from rank {offset} requested, but {} has {} usable personas",
            corpus.path.display(),
            ranked.len()
        ))
    })?;
    chosen
        .iter()
        .enumerate()
        .map(|(k, cluster)| {
            // Cluster indices always point into `corpus`; `get` just avoids a panic path.
            let episodes: Vec<Episode> = cluster
                .episodes
                .iter()
                .filter_map(|&i| corpus.episodes.get(i).cloned())
                .collect();
            let n = episodes.len();
            if n <= heldout {
                return Err(TasksError::Convai2Split(format!(
                    "{role} persona of rank {} in {} has {n} dialogues; holding out {heldout} needs at least {}",
                    offset + k,
                    corpus.path.display(),
                    heldout.saturating_add(1)
                )));
            }
            let (train, held) = episodes.split_at(n - heldout);
            Ok(PersonaTask {
                id: offset + k,
                source: corpus.path.clone(),
                sentences: cluster.sentences.clone(),
                train: train.to_vec(),
                heldout: held.to_vec(),
            })
        })
        .collect()
}
