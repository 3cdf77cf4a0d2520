//! Writes episodes back in ParlAI ConvAI2 (fbdialog) format.
//!
//! The output of [`write_episodes`] parses back to the same episodes (indices and line numbers aside), and for files
//! in the official layout (persona lines first, then turns) it reproduces the original bytes.

use std::io::Write;

use super::episode::{Episode, Turn};
use super::parser::{PARTNER_PERSONA, YOUR_PERSONA};
use crate::TasksError;

/// Writes `episodes` to `out`; fails without writing an episode whose text could not be read back unchanged.
pub fn write_episodes<'a, W: Write>(
    out: &mut W,
    episodes: impl IntoIterator<Item = &'a Episode>,
) -> Result<(), TasksError> {
    for (k, episode) in episodes.into_iter().enumerate() {
        let text =
            episode_text(episode).map_err(|reason| TasksError::Write { episode: k, reason })?;
        out.write_all(text.as_bytes())
            .map_err(|e| TasksError::Write {
                episode: k,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Writes `episodes` into a string.
pub fn episodes_to_string<'a>(
    episodes: impl IntoIterator<Item = &'a Episode>,
) -> Result<String, TasksError> {
    let mut out = Vec::new();
    write_episodes(&mut out, episodes)?;
    // Every piece written is a &str, so the bytes are UTF-8.
    String::from_utf8(out).map_err(|e| TasksError::Write {
        episode: 0,
        reason: e.to_string(),
    })
}

fn episode_text(episode: &Episode) -> Result<String, String> {
    if episode.turns.is_empty() {
        return Err("an episode needs at least one turn".into());
    }
    let mut text = String::new();
    let mut number = 0;
    let mut line = |text: &mut String, body: &str| {
        number += 1;
        text.push_str(&number.to_string());
        text.push(' ');
        text.push_str(body);
        text.push('\n');
    };
    for (prefix, sentences) in [
        (YOUR_PERSONA, &episode.your_persona),
        (PARTNER_PERSONA, &episode.partner_persona),
    ] {
        for sentence in sentences {
            check_field(sentence, "persona sentence", false)?;
            if sentence.trim().is_empty() {
                return Err("empty persona sentence".into());
            }
            line(&mut text, &format!("{prefix}{sentence}"));
        }
    }
    for turn in &episode.turns {
        line(&mut text, &turn_body(turn)?);
    }
    Ok(text)
}

fn turn_body(turn: &Turn) -> Result<String, String> {
    check_field(&turn.partner, "partner utterance", false)?;
    check_field(&turn.reply, "gold reply", false)?;
    check_field(&turn.reward, "reward", false)?;
    if turn.reply.is_empty() {
        return Err("empty gold reply".into());
    }
    // These prefixes would turn the line into a persona line when read back.
    if turn.partner.starts_with(YOUR_PERSONA) || turn.partner.starts_with(PARTNER_PERSONA) {
        return Err("partner utterance starts with a persona prefix".into());
    }
    for candidate in &turn.candidates {
        check_field(candidate, "candidate", true)?;
        if candidate.is_empty() {
            return Err("empty candidate".into());
        }
    }
    if !turn.candidates.is_empty()
        && turn.candidates.iter().filter(|c| **c == turn.reply).count() != 1
    {
        return Err("the gold reply must occur exactly once among the candidates".into());
    }
    let mut body = format!("{}\t{}", turn.partner, turn.reply);
    if !turn.candidates.is_empty() {
        body.push('\t');
        body.push_str(&turn.reward);
        body.push('\t');
        body.push_str(&turn.candidates.join("|"));
    } else if !turn.reward.is_empty() {
        body.push('\t');
        body.push_str(&turn.reward);
    }
    Ok(body)
}

fn check_field(text: &str, what: &str, is_candidate: bool) -> Result<(), String> {
    if text.contains(['\t', '\n', '\r']) {
        return Err(format!("{what} contains a tab or line break: {text:?}"));
    }
    if is_candidate && text.contains('|') {
        return Err(format!("{what} contains `|`: {text:?}"));
    }
    Ok(())
}
