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

/// A piece of every phrase a milestone line contains (the classifier's triggers and the rotation
/// marker). All are ASCII, so finding them in the raw bytes is the same as finding them in the decoded
/// text of a UTF-8 or Windows-1252 line.
///
/// Each needle is a piece of a trigger phrase chosen to start with bytes that ordinary lines
/// rarely have, because the SIMD search proposes a candidate wherever a needle's first bytes
/// occur: `Sync failed` would stop at every `Synchronizing update …` line. The property test
/// checks that every trigger phrase contains a needle.
pub(crate) const NEEDLES_TEXT: [&str; 16] = [
    "Setup Started",
    "Installation was successful",
    "~RoleSetup()",
    "Installation failed",
    "Setup failed",
    "Setting new configuration state to ",
    "Successfully connected to",
    "There are no unhealthy WSUS Server components on WSUS Server ",
    "Successfully checked database connection on WSUS server ",
    "STATMSG: ",
    "Starting Sync",
    "Done synchronizing",
    "ync failed",
    "s, processed",
    crate::parse::ROTATION_MARKER,
    // Not a milestone: a CMTrace record, which sends the buffer to the line-by-line path.
    CMTRACE_OPEN,
];

static NEEDLES: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        let needles = NEEDLES_TEXT;
        // Leftmost-first lets the packed (SIMD) prefilter run; any match will do here.
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(needles)
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
    // Restored if a CMTrace record turns up part-way, so the caller can start again line by line.
    let before = classifier.clone();
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (start, end) = if classifier.in_setup() {
            (pos, line_end(buf, pos))
        } else {
            let Some(hit) = needles.find(&buf[pos..]) else {
                break;
            };
            let at = pos + hit.start();
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

/// The index of the `\n` ending the line that holds `at`, or the buffer's end.
fn line_end(buf: &[u8], at: usize) -> usize {
    memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |i| at + i)
}

#[cfg(test)]
mod tests;
