//! An incremental reader that follows one ConfigMgr log across rotation.
//!
//! ConfigMgr rotates by copying (or renaming) `X.log` to `X.lo_` and starting `X.log` again; the
//! old file ends with the rotation marker. A file is identified by a fingerprint of its first
//! line, which survives both a rename and a copy, so the reader can tell "same file, grown" from
//! "a new file". When the file it was reading has been rotated, it reads the unread tail of
//! `.lo_` first, then the new `.log` from its start: no line is emitted twice or skipped, as long
//! as a file is not rotated twice between two polls (ConfigMgr keeps only one `.lo_`).
//!
//! The position to resume from is the start of the first line not yet emitted, so a partial last
//! line is read again once it is complete, and a restart with a saved [`Position`] carries on
//! exactly where the last emitted line ended.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::decode::{Encoding, find_newline};
use crate::milestone::{Classifier, Milestone};
use crate::parse::{Record, RecordRef, parse_record};
use crate::scan::Candidates;

/// How far the reader has got: the file's identity and the byte offset of the first line not yet
/// emitted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Fingerprint of the file's first line; empty before the file has one.
    pub file_id: String,
    pub offset: u64,
    /// Fingerprint of the rotated file whose lines have all been emitted, so a restart does not
    /// read that `.lo_` again.
    pub rotated_done: String,
}

/// One line (or one assembled CMTrace record), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub file_id: String,
    /// Byte offset of the line's start in its file.
    pub offset: u64,
    pub text: String,
    /// Read from the rotated `.lo_` file.
    pub rotated: bool,
}

/// One line (or one assembled CMTrace record) as [`LogReader::poll_each`] hands it on, borrowed
/// from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a> {
    pub file_id: &'a str,
    /// Byte offset of the line's start in its file.
    pub offset: u64,
    pub text: &'a str,
    /// Read from the rotated `.lo_` file.
    pub rotated: bool,
}

impl LineRef<'_> {
    pub fn to_raw_line(&self) -> RawLine {
        RawLine {
            file_id: self.file_id.to_string(),
            offset: self.offset,
            text: self.text.to_string(),
            rotated: self.rotated,
        }
    }
}

/// A milestone read by [`LogReader::poll_milestones`], with where its line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilestoneLine {
    pub file_id: String,
    /// Byte offset of the line's start in its file.
    pub offset: u64,
    pub rotated: bool,
    pub record: Record,
    pub milestone: Milestone,
}

/// What a poll does with the bytes it reads.
enum Sink<'a> {
    /// Every line, decoded, handed to the function.
    Lines(&'a mut dyn FnMut(LineRef<'_>)),
    /// Every line, parsed and classified, handed to the function with its milestone.
    Records {
        classifier: &'a mut Classifier,
        zone_bias: Option<i32>,
        log: &'a str,
        each: &'a mut dyn FnMut(LineRef<'_>, &RecordRef<'_>, Option<Milestone>),
    },
    /// Only milestones, found with [`crate::scan::scan_milestones`]; `lines` counts what was read.
    Milestones {
        classifier: &'a mut Classifier,
        zone_bias: Option<i32>,
        log: &'a str,
        found: &'a mut Vec<MilestoneLine>,
        lines: &'a mut u64,
    },
}

/// The largest step a poll reads in, for lines longer than [`SCAN_CHUNK`].
const MAX_CHUNK: u64 = 8 * 1024 * 1024;
/// The step a poll reads in.
const SCAN_CHUNK: u64 = 256 * 1024;
/// A CMTrace record longer than this is emitted as it is rather than held for its end.
const MAX_RECORD: usize = 1024 * 1024;
/// How many bytes of the first line identify a file.
const FINGERPRINT_BYTES: usize = 4096;

pub struct LogReader {
    path: PathBuf,
    rotated: PathBuf,
    pos: Position,
    /// Set when the last poll found a rotation whose `.lo_` no longer held the unread tail.
    pub gaps: u64,
}

/// FNV-1a, 64 bits: a stable fingerprint with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The fingerprint of a file: its first complete line (or its first 4 KiB), and its encoding.
fn fingerprint(path: &Path) -> io::Result<Option<(String, Encoding)>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::with_capacity(FINGERPRINT_BYTES);
    (&mut f)
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut buf)?;
    let (encoding, bom) = Encoding::sniff(&buf);
    let end = match find_newline(&buf, bom, encoding) {
        Some(nl) => nl,
        None if buf.len() >= FINGERPRINT_BYTES => buf.len(),
        None => return Ok(None),
    };
    Ok(Some((format!("{:016x}", fnv1a(&buf[..end])), encoding)))
}

/// The `.lo_` beside a `.log`.
pub fn rotated_path(path: &Path) -> PathBuf {
    path.with_extension("lo_")
}

impl LogReader {
    /// Reads `path` from its beginning.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::resume(path, Position::default())
    }

    /// Carries on from a saved position.
    pub fn resume(path: impl Into<PathBuf>, pos: Position) -> Self {
        let path = path.into();
        Self {
            rotated: rotated_path(&path),
            path,
            pos,
            gaps: 0,
        }
    }

    pub fn position(&self) -> &Position {
        &self.pos
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the current file not yet read (watcher lag).
    pub fn lag(&self) -> u64 {
        std::fs::metadata(&self.path)
            .map(|m| m.len().saturating_sub(self.pos.offset))
            .unwrap_or(0)
    }

    /// Reads every complete line added since the last poll.
    pub fn poll(&mut self) -> io::Result<Vec<RawLine>> {
        let mut out = Vec::new();
        self.poll_each(|line| out.push(line.to_raw_line()))?;
        Ok(out)
    }

    /// Reads every complete line added since the last poll, like [`LogReader::poll`], handing
    /// each to `each` as it is read: a line is borrowed from the read buffer (only an undecodable
    /// or UTF-16 line, or a CMTrace record spanning lines, is copied), so a reader that keeps
    /// only what it needs allocates nothing per line.
    pub fn poll_each(&mut self, mut each: impl FnMut(LineRef<'_>)) -> io::Result<()> {
        self.poll_into(&mut Sink::Lines(&mut each))
    }

    /// Reads every complete line added since the last poll like [`LogReader::poll_each`], and
    /// hands each on parsed, with its milestone, classified in order with `classifier`. What
    /// classifying every line gives, at less cost: each read is searched once for the phrases a
    /// milestone line must hold (as [`LogReader::poll_milestones`] does), and a line holding none
    /// is not classified, outside a role setup (where every line may matter).
    pub fn poll_records(
        &mut self,
        classifier: &mut Classifier,
        zone_bias: Option<i32>,
        log: &str,
        mut each: impl FnMut(LineRef<'_>, &RecordRef<'_>, Option<Milestone>),
    ) -> io::Result<()> {
        self.poll_into(&mut Sink::Records {
            classifier,
            zone_bias,
            log,
            each: &mut each,
        })
    }

    /// Reads what was added since the last poll like [`LogReader::poll`], but hands on only the
    /// milestones, classified in order with `classifier`, and how many lines were read. Lines
    /// with no milestone phrase are not decoded or parsed, so a large backlog costs little more
    /// than reading it.
    pub fn poll_milestones(
        &mut self,
        classifier: &mut Classifier,
        zone_bias: Option<i32>,
        log: &str,
    ) -> io::Result<(Vec<MilestoneLine>, u64)> {
        let mut found = Vec::new();
        let mut lines = 0;
        self.poll_into(&mut Sink::Milestones {
            classifier,
            zone_bias,
            log,
            found: &mut found,
            lines: &mut lines,
        })?;
        Ok((found, lines))
    }

    fn poll_into(&mut self, out: &mut Sink<'_>) -> io::Result<()> {
        let current = fingerprint(&self.path)?;
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let same_file = match (&current, self.pos.file_id.is_empty()) {
            (Some((id, _)), false) => {
                *id == self.pos.file_id && len.unwrap_or(0) >= self.pos.offset
            }
            // Not yet identified: the file is ours once it has a first line.
            (_, true) => len.unwrap_or(0) >= self.pos.offset,
            (None, false) => false,
        };
        if !same_file {
            // The file we were reading was rotated: finish its tail from `.lo_`.
            if !self.pos.file_id.is_empty() {
                match fingerprint(&self.rotated)? {
                    Some((id, enc)) if id == self.pos.file_id => {
                        let rotated = self.rotated.clone();
                        self.read_from(&rotated, enc, true, out)?;
                        self.pos.rotated_done = id;
                    }
                    _ => self.gaps += 1,
                }
            }
            self.pos = Position {
                rotated_done: std::mem::take(&mut self.pos.rotated_done),
                ..Position::default()
            };
        }
        if self.pos.file_id.is_empty() {
            // Nothing of the current file read yet: its history in `.lo_` comes first, unless
            // that file was already read to its end.
            if let Some((id, enc)) = fingerprint(&self.rotated)?
                && id != self.pos.rotated_done
                && current.as_ref().map(|(c, _)| c) != Some(&id)
            {
                self.pos.file_id = id.clone();
                self.pos.offset = 0;
                let rotated = self.rotated.clone();
                self.read_from(&rotated, enc, true, out)?;
                self.pos = Position {
                    rotated_done: id,
                    ..Position::default()
                };
            }
        }
        match current {
            Some((id, enc)) => {
                if self.pos.file_id.is_empty() {
                    self.pos.file_id = id;
                }
                let path = self.path.clone();
                self.read_from(&path, enc, false, out)?;
            }
            None => {
                // No complete first line yet; nothing to emit.
            }
        }
        Ok(())
    }

    /// Reads complete lines of `path` from the current offset. A finished (rotated) file's last
    /// bytes count as a line even without a terminator.
    fn read_from(
        &mut self,
        path: &Path,
        encoding: Encoding,
        finished: bool,
        out: &mut Sink<'_>,
    ) -> io::Result<()> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let bom = encoding.bom_len() as u64;
        if self.pos.offset < bom {
            self.pos.offset = bom;
        }
        // Cache-sized steps: the bytes are still in cache when they are searched or parsed. A
        // step grows when a line is longer than it.
        let mut chunk = SCAN_CHUNK;
        let mut buf = Vec::new();
        loop {
            f.seek(SeekFrom::Start(self.pos.offset))?;
            buf.clear();
            let read = (&mut f).take(chunk).read_to_end(&mut buf)?;
            if read == 0 {
                return Ok(());
            }
            let at_end = (read as u64) < chunk;
            let consumed = self.split(&buf, encoding, (finished && at_end, finished), out);
            self.pos.offset += consumed as u64;
            if consumed == 0 && !at_end && chunk < MAX_CHUNK {
                chunk = (chunk * 4).min(MAX_CHUNK);
                continue;
            }
            if at_end || consumed == 0 {
                return Ok(());
            }
        }
    }

    fn split(
        &self,
        buf: &[u8],
        encoding: Encoding,
        (finished, rotated): (bool, bool),
        out: &mut Sink<'_>,
    ) -> usize {
        let (base, file_id) = (self.pos.offset, self.pos.file_id.as_str());
        let (classifier, zone_bias, log, found, lines) = match out {
            Sink::Lines(each) => {
                return split_lines(buf, encoding, finished, |start, _, text| {
                    each(LineRef {
                        file_id,
                        offset: base + start as u64,
                        text,
                        rotated,
                    });
                });
            }
            Sink::Records {
                classifier,
                zone_bias,
                log,
                each,
            } => {
                let mut candidates = Candidates::of(buf, encoding);
                return split_lines(buf, encoding, finished, |start, end, text| {
                    let record = parse_record(text, *zone_bias);
                    let milestone = candidates.classify((start, end), &record, classifier, log);
                    let line = LineRef {
                        file_id,
                        offset: base + start as u64,
                        text,
                        rotated,
                    };
                    each(line, &record, milestone);
                });
            }
            Sink::Milestones {
                classifier,
                zone_bias,
                log,
                found,
                lines,
            } => (classifier, zone_bias, log, found, lines),
        };
        let at = |offset: u64, record: Record, milestone: Milestone| MilestoneLine {
            file_id: file_id.to_string(),
            offset,
            rotated,
            record,
            milestone,
        };
        // Whole lines only, as for `poll`: the last bytes of a finished file count as a line.
        let whole = if finished {
            buf.len()
        } else {
            memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
        };
        if encoding != Encoding::Utf16Le {
            // `None` leaves the classifier as it was: the bytes go the line-by-line way below.
            if let Some(hits) =
                crate::scan::scan_milestones(&buf[..whole], encoding, *zone_bias, classifier, log)
            {
                **lines += memchr::memchr_iter(b'\n', &buf[..whole]).count() as u64
                    + u64::from(whole > 0 && buf[whole - 1] != b'\n');
                found.extend(
                    hits.into_iter()
                        .map(|h| at(base + h.offset as u64, h.record, h.milestone)),
                );
                return whole;
            }
        }
        // UTF-16, or CMTrace records (which span lines): line by line.
        split_lines(buf, encoding, finished, |start, _, text| {
            **lines += 1;
            let record = parse_record(text, *zone_bias);
            if let Some(m) = classifier.classify_record(&record, log) {
                found.push(at(base + start as u64, record.into_owned(), m));
            }
        })
    }
}

mod lines;
use lines::split_lines;
#[cfg(test)]
use lines::{count_newlines, read_lines_in_steps};
pub use lines::{lines_of, read_classified};

#[cfg(test)]
mod tests;
