//! Ranking examples: one per dialogue turn, with the 20 candidates shuffled and the gold position recorded.

use std::path::Path;

use rand::seq::SliceRandom;

use super::episode::Episode;
use super::parser::YOUR_PERSONA;
use super::seed::{purpose, rng_for};
use crate::TasksError;

/// One ranking example: pick the gold reply among the candidates given the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Position of the source episode in its file, from 0.
    pub episode: usize,
    /// Turn within the episode, from 0.
    pub turn: usize,
    /// Earlier utterances in order: `u_1, r_1, ..., r_{j-1}, u_j` (partner utterances `u`, gold replies `r`),
    /// preceded by `your persona: <sentence>` items when the persona is included.
    pub context: Vec<String>,
    /// The candidate replies in a seeded random order.
    pub candidates: Vec<String>,
    /// Index of the gold reply in `candidates`.
    pub gold: usize,
}

/// How examples are built from episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExampleOptions {
    /// Put the persona sentences in front of the context. Off by default, as in the paper's code.
    pub persona_in_context: bool,
    /// Seed of the candidate shuffle.
    pub seed: u64,
}

/// The examples of one episode, one per turn. `source` is the episode's file, for error messages.
///
/// The candidate order of each example depends only on `seed`, the episode index and the turn, so an example is
/// the same whichever subset of episodes is built.
pub fn episode_examples(
    source: &Path,
    episode: &Episode,
    options: &ExampleOptions,
) -> Result<Vec<Example>, TasksError> {
    let mut context: Vec<String> = if options.persona_in_context {
        episode
            .your_persona
            .iter()
            .map(|s| format!("{YOUR_PERSONA}{s}"))
            .collect()
    } else {
        Vec::new()
    };
    let mut examples = Vec::with_capacity(episode.turns.len());
    for (t, turn) in episode.turns.iter().enumerate() {
        let no_candidates = || TasksError::NoCandidates {
            path: source.to_path_buf(),
            episode: episode.index,
            line: episode.line,
            turn: t,
        };
        let gold_in_file = turn.gold_position().ok_or_else(no_candidates)?;
        let mut order: Vec<usize> = (0..turn.candidates.len()).collect();
        order.shuffle(&mut rng_for(
            options.seed,
            purpose::CANDIDATE_SHUFFLE,
            episode.index as u64,
            t as u64,
        ));
        let gold = order
            .iter()
            .position(|&k| k == gold_in_file)
            .ok_or_else(no_candidates)?;
        context.push(turn.partner.clone());
        examples.push(Example {
            episode: episode.index,
            turn: t,
            context: context.clone(),
            candidates: order.iter().map(|&k| turn.candidates[k].clone()).collect(),
            gold,
        });
        context.push(turn.reply.clone());
    }
    Ok(examples)
}

/// The examples of several episodes, concatenated in order.
pub fn examples_of<'a>(
    source: &Path,
    episodes: impl IntoIterator<Item = &'a Episode>,
    options: &ExampleOptions,
) -> Result<Vec<Example>, TasksError> {
    let mut all = Vec::new();
    for episode in episodes {
        all.extend(episode_examples(source, episode, options)?);
    }
    Ok(all)
}
