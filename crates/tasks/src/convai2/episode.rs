//! One ConvAI2 episode (a dialogue seen from one speaker) and its turns.

use std::collections::BTreeSet;

/// One dialogue turn: what the partner said, the gold reply, and the candidate replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The partner's utterance (first field of the line).
    pub partner: String,
    /// The gold reply of the persona's speaker (second field).
    pub reply: String,
    /// The unused reward field (third field), kept verbatim so that files can be written back unchanged.
    /// Empty in every ConvAI2 file.
    pub reward: String,
    /// The candidate replies in file order (fourth field, split on `|`); empty in `*_no_cands` files.
    /// When present, the gold reply occurs exactly once among them (the parser checks it).
    pub candidates: Vec<String>,
}

impl Turn {
    /// Position of the gold reply among [`Turn::candidates`], or `None` for a turn without candidates.
    pub fn gold_position(&self) -> Option<usize> {
        self.candidates.iter().position(|c| *c == self.reply)
    }
}

/// One episode of a ParlAI ConvAI2 file: persona sentences followed by dialogue turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    /// Position of the episode in its file, from 0; examples use it to derive their candidate shuffle.
    pub index: usize,
    /// Line (from 1) of the episode's first line in its file; `0` for episodes built in memory.
    pub line: usize,
    /// Sentences of `your persona:` lines, verbatim (text after the prefix); empty in `none` files.
    pub your_persona: Vec<String>,
    /// Sentences of `partner's persona:` lines, verbatim; present only in `both` files.
    pub partner_persona: Vec<String>,
    /// The dialogue turns in order; never empty for a parsed episode.
    pub turns: Vec<Turn>,
}

impl Episode {
    /// The episode's persona as a set of normalised sentences (see [`persona_key`]); clustering compares these.
    pub fn persona_set(&self) -> BTreeSet<String> {
        self.your_persona.iter().map(|s| persona_key(s)).collect()
    }
}

/// Normalises a persona sentence for comparison: surrounding whitespace and the final period are removed and runs of
/// whitespace become one space.
///
/// The paper's code compares "the text after `your persona: ` without its final period"; whitespace is normalised as
/// well so that a stray double space does not split a persona.
pub fn persona_key(sentence: &str) -> String {
    let trimmed = sentence.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_key_strips_final_period_and_whitespace() {
        assert_eq!(
            persona_key(" i read twenty books a year. "),
            "i read twenty books a year"
        );
        assert_eq!(persona_key("i like  dogs"), "i like dogs");
        assert_eq!(persona_key("i like u.s.a.."), "i like u.s.a.");
    }
}
