//! Streaming parser for ParlAI ConvAI2 (fbdialog) text files, plain or gzip-compressed.
//!
//! Accepted line shapes, after the leading `<n> ` turn number:
//!
//! * `your persona: <sentence>` and `partner's persona: <sentence>` (the `self`, `both`, `none` variants differ only
//!   in which of these occur);
//! * `<partner>\t<reply>` (`*_no_cands` files), optionally followed by `\t<reward>` and `\t<cand1>|...|<candN>`.
//!
//! `<n>` is 1 on an episode's first line and increases by one on every following line of the episode; any other
//! number is reported as an error because it means lines were lost or reordered. Lines end in `\n` or `\r\n`; blank
//! lines are skipped. Every error names the file, the line and the reason, and the reader stops after the first
//! error.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::episode::{Episode, Turn};
use crate::TasksError;

/// Prefix of the speaker's own persona lines.
pub const YOUR_PERSONA: &str = "your persona: ";
/// Prefix of the partner's persona lines (`both` files).
pub const PARTNER_PERSONA: &str = "partner's persona: ";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a ConvAI2 file for streaming; gzip files are recognised by their magic bytes, whatever their name.
pub fn open(path: &Path) -> Result<EpisodeReader<Box<dyn BufRead>>, TasksError> {
    let io_err = |source| TasksError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let mut raw = BufReader::new(file);
    let is_gzip = raw.fill_buf().map_err(io_err)?.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn BufRead> = if is_gzip {
        // MultiGzDecoder: `cat a.gz b.gz` is a valid gzip file and must be read to its end.
        Box::new(BufReader::new(MultiGzDecoder::new(raw)))
    } else {
        Box::new(raw)
    };
    Ok(EpisodeReader::new(reader, path))
}

/// Reads every episode of a ConvAI2 file (plain or gzip).
pub fn read_file(path: &Path) -> Result<Vec<Episode>, TasksError> {
    open(path)?.collect()
}

/// Parses ConvAI2 text held in memory; `name` stands for the file name in error messages.
pub fn parse_str(text: &str, name: impl Into<PathBuf>) -> Result<Vec<Episode>, TasksError> {
    EpisodeReader::new(text.as_bytes(), name).collect()
}

/// Parses ConvAI2 bytes (plain or gzip) held in memory; `name` stands for the file name in error messages.
pub fn parse_bytes(bytes: &[u8], name: impl Into<PathBuf>) -> Result<Vec<Episode>, TasksError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        EpisodeReader::new(BufReader::new(MultiGzDecoder::new(bytes)), name).collect()
    } else {
        EpisodeReader::new(bytes, name).collect()
    }
}

/// One non-blank line, parsed but not yet attached to an episode.
#[derive(Debug)]
enum Line {
    YourPersona(String),
    PartnerPersona(String),
    Turn(Turn),
}

/// Iterator over the episodes of a ConvAI2 stream; yields at most one error, then ends.
pub struct EpisodeReader<R> {
    reader: R,
    path: PathBuf,
    /// Line number of the last line read, from 1.
    line_no: usize,
    /// The first line of the next episode, read while finishing the previous one.
    pending: Option<(usize, Line)>,
    next_index: usize,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> EpisodeReader<R> {
    /// Wraps a reader of plain (uncompressed) text; `path` is used in error messages.
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        Self {
            reader,
            path: path.into(),
            line_no: 0,
            pending: None,
            next_index: 0,
            done: false,
            buf: Vec::new(),
        }
    }

    /// The file name used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, line: usize, reason: impl Into<String>) -> TasksError {
        TasksError::Parse {
            path: self.path.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Reads the next non-blank line as (line number, turn number, parsed content).
    fn next_line(&mut self) -> Result<Option<(usize, usize, Line)>, TasksError> {
        loop {
            self.buf.clear();
            let line_no = self.line_no + 1;
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| TasksError::ReadLine {
                    path: self.path.clone(),
                    line: line_no,
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no = line_no;
            let mut bytes = self.buf.as_slice();
            bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            let text = std::str::from_utf8(bytes).map_err(|e| {
                self.error(
                    line_no,
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                )
            })?;
            if text.trim().is_empty() {
                continue;
            }
            // A lone CR can only come from a damaged or old-Mac file, and could not be written back unchanged.
            if text.contains('\r') {
                return Err(self.error(line_no, "carriage return inside the line"));
            }
            let (number, content) =
                parse_line(text).map_err(|reason| self.error(line_no, reason))?;
            return Ok(Some((line_no, number, content)));
        }
    }

    fn next_episode(&mut self) -> Result<Option<Episode>, TasksError> {
        let (start_line, first) = match self.pending.take() {
            Some(first) => first,
            None => match self.next_line()? {
                None => return Ok(None),
                Some((line_no, 1, content)) => (line_no, content),
                Some((line_no, number, _)) => {
                    return Err(self.error(
                        line_no,
                        format!("turn number {number} outside an episode (episodes start at 1)"),
                    ));
                }
            },
        };
        let mut episode = Episode {
            index: self.next_index,
            line: start_line,
            your_persona: Vec::new(),
            partner_persona: Vec::new(),
            turns: Vec::new(),
        };
        self.attach(&mut episode, start_line, first)?;
        let mut expected = 2;
        while let Some((line_no, number, content)) = self.next_line()? {
            if number == 1 {
                self.pending = Some((line_no, content));
                break;
            }
            if number != expected {
                return Err(self.error(
                    line_no,
                    format!("expected turn number {expected} or 1, found {number}"),
                ));
            }
            expected += 1;
            self.attach(&mut episode, line_no, content)?;
        }
        if episode.turns.is_empty() {
            return Err(self.error(start_line, "episode has persona lines but no dialogue turn"));
        }
        self.next_index += 1;
        Ok(Some(episode))
    }

    fn attach(
        &self,
        episode: &mut Episode,
        line_no: usize,
        content: Line,
    ) -> Result<(), TasksError> {
        match content {
            Line::YourPersona(_) | Line::PartnerPersona(_) if !episode.turns.is_empty() => {
                Err(self.error(line_no, "persona line after the dialogue has started"))
            }
            Line::YourPersona(s) => {
                episode.your_persona.push(s);
                Ok(())
            }
            Line::PartnerPersona(s) => {
                episode.partner_persona.push(s);
                Ok(())
            }
            Line::Turn(turn) => {
                episode.turns.push(turn);
                Ok(())
            }
        }
    }
}

impl<R: BufRead> Iterator for EpisodeReader<R> {
    type Item = Result<Episode, TasksError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.next_episode().transpose();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }
}

/// Splits `<n> <content>` and parses the content; the error is the reason only (the caller adds file and line).
fn parse_line(text: &str) -> Result<(usize, Line), String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "line does not start with a turn number: {:?}",
            preview(text)
        ));
    }
    let (number, rest) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("turn number {number} is too large"))?;
    if number == 0 {
        return Err("turn number 0 (turns are numbered from 1)".into());
    }
    let content = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("expected a space after turn number {number}"))?;
    if let Some(sentence) = content.strip_prefix(YOUR_PERSONA) {
        return persona_sentence(sentence).map(|s| (number, Line::YourPersona(s)));
    }
    if let Some(sentence) = content.strip_prefix(PARTNER_PERSONA) {
        return persona_sentence(sentence).map(|s| (number, Line::PartnerPersona(s)));
    }
    parse_turn(content).map(|t| (number, Line::Turn(t)))
}

fn persona_sentence(sentence: &str) -> Result<String, String> {
    if sentence.trim().is_empty() {
        return Err("empty persona sentence".into());
    }
    if sentence.contains('\t') {
        return Err("tab inside a persona sentence".into());
    }
    Ok(sentence.to_string())
}

fn parse_turn(content: &str) -> Result<Turn, String> {
    let fields: Vec<&str> = content.split('\t').collect();
    let (partner, reply, reward, cands) = match fields.as_slice() {
        [_] => {
            return Err(format!(
                "dialogue line has no tab-separated gold reply: {:?}",
                preview(content)
            ));
        }
        [p, r] => (*p, *r, "", ""),
        [p, r, w] => (*p, *r, *w, ""),
        [p, r, w, c] => (*p, *r, *w, *c),
        more => {
            return Err(format!(
                "dialogue line has {} tab-separated fields, at most 4 are allowed",
                more.len()
            ));
        }
    };
    if reply.is_empty() {
        return Err("empty gold reply".into());
    }
    // As in ParlAI, an empty candidate field means "no candidates".
    let candidates: Vec<String> = if cands.is_empty() {
        Vec::new()
    } else {
        cands.split('|').map(str::to_string).collect()
    };
    if let Some(k) = candidates.iter().position(String::is_empty) {
        return Err(format!(
            "candidate {} of {} is empty",
            k + 1,
            candidates.len()
        ));
    }
    if !candidates.is_empty() {
        match candidates.iter().filter(|c| **c == reply).count() {
            0 => {
                return Err(format!(
                    "the gold reply is not among the {} candidates",
                    candidates.len()
                ));
            }
            1 => {}
            k => {
                return Err(format!(
                    "the gold reply occurs {k} times among the {} candidates",
                    candidates.len()
                ));
            }
        }
    }
    Ok(Turn {
        partner: partner.to_string(),
        reply: reply.to_string(),
        reward: reward.to_string(),
        candidates,
    })
}

/// The start of a line, for error messages that should not quote megabytes of garbage.
fn preview(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_str(text, "t.txt").unwrap_err().to_string()
    }

    #[test]
    fn parses_self_both_none_and_no_cands() {
        let text = "1 your persona: i like cats.\n2 partner's persona: i like dogs.\n3 hi\thello\t\ta|hello\n\
                    1 hey\tyo\n2 ok\tfine\t\t\n";
        let eps = parse_str(text, "t.txt").unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].your_persona, ["i like cats."]);
        assert_eq!(eps[0].partner_persona, ["i like dogs."]);
        assert_eq!(eps[0].turns[0].candidates, ["a", "hello"]);
        assert_eq!(eps[0].turns[0].gold_position(), Some(1));
        assert!(eps[1].your_persona.is_empty());
        assert!(eps[1].turns[1].candidates.is_empty());
        assert_eq!((eps[1].index, eps[1].line), (1, 4));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        assert_eq!(
            err("1 your persona: a\n2 hi\tyo\t\tx|y\n"),
            "t.txt:2: the gold reply is not among the 2 candidates"
        );
        assert!(err("1 hi\tyo\n3 a\tb\n").starts_with("t.txt:2: expected turn number 2"));
        assert!(err("2 hi\tyo\n").starts_with("t.txt:1: turn number 2 outside"));
        assert!(err("1 hi\n").starts_with("t.txt:1: dialogue line has no tab"));
        assert!(err("x hi\tyo\n").starts_with("t.txt:1: line does not start"));
        assert!(err("1 your persona: a\n").starts_with("t.txt:1: episode has persona lines"));
        assert!(err("1 hi\tyo\n2 your persona: a\n").starts_with("t.txt:2: persona line after"));
        assert!(err("1 hi\tyo\t\ta|yo|yo\n").contains("occurs 2 times"));
        assert!(err("1 hi\tyo\t\ta||yo\n").contains("candidate 2 of 3 is empty"));
        assert!(err("1 a\tb\tc\td\te\n").contains("5 tab-separated fields"));
        assert!(err("99999999999999999999999 a\tb\n").contains("too large"));
        assert!(err("1 a\rb\tc\n").starts_with("t.txt:1: carriage return"));
    }

    #[test]
    fn invalid_utf8_is_an_error_with_line() {
        let e = parse_bytes(b"1 hi\tyo\n2 \xff\tyo\n", "b.txt").unwrap_err();
        assert!(e.to_string().starts_with("b.txt:2: invalid UTF-8"), "{e}");
    }

    #[test]
    fn blank_lines_and_crlf_are_accepted() {
        let eps = parse_str("\n1 hi\tyo\r\n\n2 a\tb\r\n", "t.txt").unwrap();
        assert_eq!(eps[0].turns.len(), 2);
        assert_eq!(eps[0].turns[1].reply, "b");
    }
}
