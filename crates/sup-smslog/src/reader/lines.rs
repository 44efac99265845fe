//! Splitting bytes into lines and CMTrace records, and reading a finished file line by line in
//! bounded memory.

use std::borrow::Cow;
use std::io::{self, Read};

use super::{LineRef, MAX_RECORD, RawLine};
use crate::decode::{Encoding, decode_line, find_newline};
use crate::milestone::{Classifier, Milestone};
use crate::parse::{CMTRACE_OPEN, cmtrace_complete, cmtrace_open};
use crate::scan::Candidates;

/// The step [`read_classified`] reads a file in: memory stays about this, whatever the file's size.
/// Cache-sized, as the live reader's: a step's bytes are still in cache when they are searched,
/// split and parsed.
const OFFLINE_STEP: usize = 256 * 1024;

/// Every line and record of a finished file, read from `source` in bounded steps and handed to
/// `each`, borrowed, with its line number (of its first line, for a CMTrace record spanning
/// several) and its milestone, classified in order with `classifier`: a file of any size is read
/// in about 256 KiB of memory (`OFFLINE_STEP`), plus the longest line. The first error `each`
/// returns stops the reading and is returned. The milestones are what classifying every line
/// gives, at less cost, as [`super::LogReader::poll_records`] finds them: each step is searched
/// once for the phrases a milestone line must hold, and only the lines holding one (and, inside
/// a role setup, every line) are parsed and classified, so a reader that parses every line
/// itself (on another thread, say) does not parse them twice. `zone_bias` is as for
/// [`crate::parse_record`]; `log` is the file name the milestones record.
pub fn read_classified(
    source: impl Read,
    zone_bias: Option<i32>,
    log: &str,
    classifier: &mut Classifier,
    mut each: impl FnMut(u64, LineRef<'_>, Option<Milestone>) -> io::Result<()>,
) -> io::Result<()> {
    read_in_steps(
        source,
        OFFLINE_STEP,
        Candidates::of,
        |candidates, n, span, line| {
            let milestone = candidates.classify_text(span, line.text, zone_bias, classifier, log);
            each(n, line, milestone)
        },
    )
}

#[cfg(test)]
pub(super) fn read_lines_in_steps(
    source: impl Read,
    step: usize,
    mut each: impl FnMut(u64, LineRef<'_>) -> io::Result<()>,
) -> io::Result<()> {
    read_in_steps(source, step, |_, _| (), |(), n, _, line| each(n, line))
}

/// Reads `source` in steps of `step` bytes (more for a longer line), makes `per_step` of each
/// step's bytes, and hands each line to `each` with it, the line's number, and its span in the
/// step's bytes (start, end of its last line).
fn read_in_steps<S>(
    mut source: impl Read,
    step: usize,
    mut per_step: impl FnMut(&[u8], Encoding) -> S,
    mut each: impl FnMut(&mut S, u64, (usize, usize), LineRef<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    // The file offset of `buf[0]`, once the encoding (and its byte-order mark) is known.
    let mut start: Option<(Encoding, u64)> = None;
    let mut want = step.max(4);
    let mut line_no = 1u64;
    loop {
        let mut eof = false;
        // A read that fails keeps what it read: the whole lines of that are handed on first.
        let mut failed_read = None;
        while buf.len() < want {
            match (&mut source)
                .take((want - buf.len()) as u64)
                .read_to_end(&mut buf)
            {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    failed_read = Some(e);
                    break;
                }
            }
        }
        let (encoding, base) = match start {
            Some(known) => known,
            None => {
                let (encoding, bom) = Encoding::sniff(&buf);
                buf.drain(..bom.min(buf.len()));
                *start.insert((encoding, bom as u64))
            }
        };
        let mut state = per_step(&buf, encoding);
        // Lines come back to back, each after the last one's terminator: the next one's number is
        // the last one's plus one, plus the line breaks inside it (a CMTrace record spans lines).
        let mut to_next = 0;
        let mut failed = None;
        let consumed = split_lines(&buf, encoding, eof, |start, end, text| {
            if failed.is_some() {
                return;
            }
            line_no += to_next;
            to_next = 1 + if text.starts_with(CMTRACE_OPEN) {
                memchr::memchr_iter(b'\n', text.as_bytes()).count() as u64
            } else {
                0
            };
            let line = LineRef {
                file_id: "",
                offset: base + start as u64,
                text,
                rotated: false,
            };
            failed = each(&mut state, line_no, (start, end), line).err();
        });
        if let Some(e) = failed.or(failed_read) {
            return Err(e);
        }
        if eof {
            return Ok(());
        }
        // What was consumed ends with the last line's terminator.
        line_no += to_next;
        // Nothing whole in the step (a line longer than it): read a bigger one.
        want = if consumed == 0 { want * 2 } else { step.max(4) };
        buf.drain(..consumed);
        start = Some((encoding, base + consumed as u64));
    }
}

#[cfg(test)]
pub(super) fn count_newlines(bytes: &[u8], unit: usize) -> u64 {
    if unit == 2 {
        bytes.chunks_exact(2).filter(|c| c == &[b'\n', 0]).count() as u64
    } else {
        memchr::memchr_iter(b'\n', bytes).count() as u64
    }
}

/// Every line and record of a whole, finished file (for reading a file offline).
pub fn lines_of(bytes: &[u8]) -> Vec<RawLine> {
    let (encoding, bom) = Encoding::sniff(bytes);
    let mut out = Vec::new();
    split_lines(&bytes[bom..], encoding, true, |start, _, text| {
        out.push(RawLine {
            file_id: String::new(),
            offset: (bom + start) as u64,
            text: text.to_string(),
            rotated: false,
        });
    });
    out
}

/// The longest prefix of `buf` that is UTF-8, checked once for the whole read rather than line
/// by line (empty for UTF-16, whose lines are decoded one by one).
fn valid_utf8_prefix(buf: &[u8], encoding: Encoding) -> &str {
    if encoding == Encoding::Utf16Le {
        return "";
    }
    match std::str::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// Splits `buf` into lines and CMTrace records, handing each to `emit` with the offsets in `buf`
/// of its start and of the end of its (last) line; returns how many bytes were consumed. In a
/// `finished` file the last bytes are a line even without a terminator, and an unterminated
/// CMTrace record is emitted as it is.
pub(super) fn split_lines(
    buf: &[u8],
    encoding: Encoding,
    finished: bool,
    mut emit: impl FnMut(usize, usize, &str),
) -> usize {
    let unit = encoding.unit();
    let valid = valid_utf8_prefix(buf, encoding);
    let mut start = 0;
    // A CMTrace record in progress: (its start, the text so far).
    let mut record: Option<(usize, String)> = None;
    while start < buf.len() {
        let (line_end, next) = match find_newline(buf, start, encoding) {
            Some(nl) => (nl, nl + unit),
            None if finished => (buf.len(), buf.len()),
            None => break,
        };
        // A line inside the prefix validated at once is that text, as `decode_line` would give it.
        let text = match valid.get(start..line_end) {
            Some(line) => Cow::Borrowed(line.strip_suffix('\r').unwrap_or(line)),
            None => decode_line(&buf[start..line_end], encoding),
        };
        match record.as_mut() {
            Some((_, acc)) => {
                acc.push('\n');
                acc.push_str(&text);
            }
            None if cmtrace_open(&text) => record = Some((start, text.into_owned())),
            None => {
                emit(start, line_end, &text);
                start = next;
                continue;
            }
        }
        if let Some((rec_start, acc)) = &record
            && (cmtrace_complete(acc) || acc.len() > MAX_RECORD || (finished && next >= buf.len()))
        {
            emit(*rec_start, line_end, acc);
            record = None;
        }
        start = next;
    }
    // An open record is re-read from its start next time.
    match record {
        Some((rec_start, _)) => rec_start,
        None => start,
    }
}
