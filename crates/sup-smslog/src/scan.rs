//! Milestones straight from a buffer of log bytes, without splitting it into lines first.
//!
//! Most lines of a SUP log are not milestones. [`scan_milestones`] searches the whole buffer for
//! the phrases a milestone line must contain and parses only the lines they occur in, so a
//! backlog costs about one substring search over its bytes. The result is exactly what splitting
//! the same bytes into lines and classifying each gives (a property test holds it to that); the
//! buffer-wide search is skipped where it could differ:
//!
//! - while the classifier is inside a role setup, every line is classified, because an error line
//!   there becomes the reason of a later `role_install_failed`;
//! - UTF-16 files and files with CMTrace records (which span lines) are left to the line-by-line
//!   path: the function returns `None`.

use crate::decode::{Encoding, decode_line};
use crate::milestone::{Classifier, Milestone};
use crate::parse::{Record, parse_line};

/// A milestone and the record it was found in; `offset` is the start of its line in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub offset: usize,
    pub record: Record,
    pub milestone: Milestone,
}

/// The piece of a trigger phrase the buffer-wide search looks for: the phrase itself, unless its
/// first bytes are common in ordinary lines. The SIMD search proposes a candidate wherever a
/// needle's first bytes occur, so `Sync failed` would stop at every `Synchronizing update …` line.
/// All needles are ASCII, so finding them in the raw bytes is the same as finding them in the
/// decoded text of a UTF-8 or Windows-1252 line.
fn needle(phrase: &'static str) -> &'static str {
    match phrase {
        "Sync failed" => "ync failed",
        "updates, processed" => "s, processed",
        // The WSUS health lines, whose first words are everywhere.
        "There are no unhealthy WSUS Server components on WSUS Server " => {
            "unhealthy WSUS Server components on WSUS Server"
        }
        "Successfully checked database connection on WSUS server " => {
            "database connection on WSUS server"
        }
        other => other,
    }
}

/// What the search looks for: a needle for every trigger phrase (those matched in any case
/// too), the rotation marker, and the start of a CMTrace record (not a milestone: it sends the
/// buffer to the line-by-line path), all in ASCII lower case. The buffer is searched folded to
/// lower case, so one SIMD search finds the phrases matched as written and those matched in any
/// case alike (an ASCII-case-insensitive automaton gets no SIMD prefilter). A line that matches
/// only once folded is a candidate like any other: the classifier finds it is nothing.
fn needles() -> impl Iterator<Item = String> {
    crate::milestone::TRIGGER_PHRASES
        .into_iter()
        .chain(crate::milestone::CASE_FREE_PHRASES)
        .map(needle)
        .chain([crate::parse::ROTATION_MARKER, CMTRACE_OPEN])
        .map(str::to_ascii_lowercase)
}

static NEEDLES: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        // Leftmost-first lets the packed (SIMD) prefilter run; any match will do here.
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(needles())
            .ok()
    });

const CMTRACE_OPEN: &str = "<![LOG[";

/// The milestones in `buf`, which holds whole lines of one log (a last line without a terminator
/// counts as a line), classified in order with `classifier`. `zone_bias` is as for
/// [`parse_line`]. Returns `None` when the buffer needs the line-by-line path: UTF-16 text, or a
/// CMTrace record anywhere in it.
pub fn scan_milestones(
    buf: &[u8],
    encoding: Encoding,
    zone_bias: Option<i32>,
    classifier: &mut Classifier,
    log: &str,
) -> Option<Vec<Found>> {
    if encoding == Encoding::Utf16Le {
        return None;
    }
    let needles = NEEDLES.as_ref()?;
    let folded = buf.to_ascii_lowercase();
    // Restored if a CMTrace record turns up part-way, so the caller can start again line by line.
    let before = classifier.clone();
    let mut found = Vec::new();
    let mut pos = 0;
    // The search's next hit, kept until the scan passes it: walking a role setup's lines one by
    // one does not search the rest of the buffer again.
    let mut next_needle = NextHit::default();
    while pos < buf.len() {
        let (start, end) = if classifier.in_setup() {
            (pos, line_end(buf, pos))
        } else {
            let Some(at) = next_needle.at_or_after(pos, |from| {
                needles.find(&folded[from..]).map(|m| from + m.start())
            }) else {
                break;
            };
            let start = memchr::memrchr(b'\n', &buf[pos..at]).map_or(pos, |i| pos + i + 1);
            (start, line_end(buf, at))
        };
        let line = &buf[start..end];
        if memchr::memmem::find(line, CMTRACE_OPEN.as_bytes()).is_some() {
            *classifier = before;
            return None;
        }
        let text = decode_line(line, encoding);
        let record = parse_line(&text, zone_bias);
        if let Some(milestone) = classifier.classify(&record, log) {
            found.push(Found {
                offset: start,
                record,
                milestone,
            });
        }
        pos = end + 1;
    }
    Some(found)
}

/// A search's next hit from some position on: not searched yet, at an offset, or none to the end.
#[derive(Default)]
enum NextHit {
    #[default]
    Unknown,
    At(usize),
    None,
}

impl NextHit {
    /// The first hit at or after `pos`, searching again only when the known one is behind `pos`.
    fn at_or_after(
        &mut self,
        pos: usize,
        search: impl FnOnce(usize) -> Option<usize>,
    ) -> Option<usize> {
        match *self {
            NextHit::At(at) if at >= pos => Some(at),
            NextHit::None => None,
            _ => {
                let hit = search(pos);
                *self = hit.map_or(NextHit::None, NextHit::At);
                hit
            }
        }
    }
}

/// The index of the `\n` ending the line that holds `at`, or the buffer's end.
fn line_end(buf: &[u8], at: usize) -> usize {
    memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |i| at + i)
}

#[cfg(test)]
mod tests;
