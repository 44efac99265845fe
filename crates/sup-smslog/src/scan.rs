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
use crate::parse::{CMTRACE_OPEN, Format, Record, RecordRef, parse_record};

// The search (`CANDIDATES`) runs over the bytes as written: the phrases matched in any case are
// found by a piece of theirs searched for in every case.
use crate::milestone::CANDIDATES as NEEDLES;

/// A milestone and the record it was found in; `offset` is the start of its line in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub offset: usize,
    pub record: Record,
    pub milestone: Milestone,
}

/// How a CMTrace record begins, searched for in each candidate line.
static CMTRACE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CMTRACE_OPEN.as_bytes()));

/// The milestones in `buf`, which holds whole lines of one log (a last line without a terminator
/// counts as a line), classified in order with `classifier`. `zone_bias` is as for
/// [`parse_record`]. Returns `None` when the buffer needs the line-by-line path: UTF-16 text, or a
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
    scan_with(buf, needles, encoding, zone_bias, classifier, log)
}

/// The lines of one buffer that may hold a milestone: where the search's needles start in it,
/// in order, consulted for lines in the order they come.
pub(crate) struct Candidates {
    /// `None` when every line may hold one: UTF-16 text, or a search that could not be built.
    hits: Option<std::iter::Peekable<std::vec::IntoIter<usize>>>,
}

impl Candidates {
    /// The candidates of `buf`, searched once.
    pub(crate) fn of(buf: &[u8], encoding: Encoding) -> Self {
        let hits = NEEDLES
            .as_ref()
            .filter(|_| encoding != Encoding::Utf16Le)
            .map(|needles| {
                let at: Vec<usize> = needles.find_iter(buf).map(|m| m.start()).collect();
                at.into_iter().peekable()
            });
        Self { hits }
    }

    /// Whether the text between `start` and `end` in the buffer holds a needle; asked for lines
    /// in order.
    pub(crate) fn any_in(&mut self, start: usize, end: usize) -> bool {
        match self.hits.as_mut() {
            Some(hits) => {
                while hits.next_if(|&at| at < start).is_some() {}
                hits.peek().is_some_and(|&at| at < end)
            }
            None => true,
        }
    }

    /// The milestone of a line (or CMTrace record) spanning `start..end`, classified only where
    /// that can find one: a candidate line, any line inside a role setup (an error there becomes
    /// the reason of a later failure), and a CMTrace record (which spans lines).
    pub(crate) fn classify(
        &mut self,
        (start, end): (usize, usize),
        record: &RecordRef<'_>,
        classifier: &mut Classifier,
        log: &str,
    ) -> Option<Milestone> {
        let may_hold_one = self.any_in(start, end);
        (may_hold_one || classifier.in_setup() || record.format == Format::CmTrace)
            .then(|| classifier.classify_record(record, log))
            .flatten()
    }

    /// [`Candidates::classify`] for a line not parsed yet: parsed only where it is classified.
    /// Every line that starts like a CMTrace record is, which finds what classifying its record
    /// would (outside a role setup, a line holding no needle is no milestone and changes nothing).
    pub(crate) fn classify_text(
        &mut self,
        (start, end): (usize, usize),
        text: &str,
        zone_bias: Option<i32>,
        classifier: &mut Classifier,
        log: &str,
    ) -> Option<Milestone> {
        let may_hold_one = self.any_in(start, end);
        (may_hold_one || classifier.in_setup() || text.starts_with(CMTRACE_OPEN))
            .then(|| classifier.classify_record(&parse_record(text, zone_bias), log))
            .flatten()
    }
}

/// [`scan_milestones`] with the search built.
fn scan_with(
    buf: &[u8],
    needles: &aho_corasick::AhoCorasick,
    encoding: Encoding,
    zone_bias: Option<i32>,
    classifier: &mut Classifier,
    log: &str,
) -> Option<Vec<Found>> {
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
                needles.find(&buf[from..]).map(|m| from + m.start())
            }) else {
                break;
            };
            let start = memchr::memrchr(b'\n', &buf[pos..at]).map_or(pos, |i| pos + i + 1);
            (start, line_end(buf, at))
        };
        let line = &buf[start..end];
        if CMTRACE.find(line).is_some() {
            *classifier = before;
            return None;
        }
        let text = decode_line(line, encoding);
        let record = parse_record(&text, zone_bias);
        if let Some(milestone) = classifier.classify_record(&record, log) {
            found.push(Found {
                offset: start,
                record: record.into_owned(),
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
