//! The reader against real files: appends, partial lines, both kinds of rotation, restarts,
//! encodings, and a property test of "every line once, in order".

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::Milestone;
use crate::parse::{parse_line, parse_record};

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(bytes).expect("write");
}

fn texts(lines: &[RawLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

const MARKER: &str = "<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>";

/// ConfigMgr's rotation: append the marker, copy to `.lo_`, truncate.
fn rotate_copy_truncate(path: &Path) {
    append(path, format!("{MARKER}\r\n").as_bytes());
    fs::copy(path, rotated_path(path)).expect("copy");
    fs::write(path, b"").expect("truncate");
}

/// The other way: append the marker, rename to `.lo_`, start a new file.
fn rotate_rename(path: &Path) {
    append(path, format!("{MARKER}\r\n").as_bytes());
    fs::rename(path, rotated_path(path)).expect("rename");
}

#[test]
fn appends_and_partial_lines() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("WCM.log");
    let mut r = LogReader::new(&p);
    assert!(
        r.poll().expect("poll").is_empty(),
        "a missing file is not an error"
    );
    append(&p, b"one\r\ntw");
    assert_eq!(texts(&r.poll().expect("poll")), ["one"]);
    append(&p, b"o\r\nthree\r\n");
    let lines = r.poll().expect("poll");
    assert_eq!(texts(&lines), ["two", "three"]);
    assert_eq!(lines[0].offset, 5, "offset of the line start");
    assert!(r.poll().expect("poll").is_empty());
}

#[test]
fn copy_truncate_rotation_reads_the_tail_of_lo_first() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("WCM.log");
    let mut r = LogReader::new(&p);
    append(&p, b"a1\r\na2\r\n");
    assert_eq!(texts(&r.poll().expect("poll")), ["a1", "a2"]);
    append(&p, b"a3\r\n");
    rotate_copy_truncate(&p);
    append(&p, b"b1\r\n");
    let lines = r.poll().expect("poll");
    assert_eq!(texts(&lines), ["a3", MARKER, "b1"]);
    assert!(lines[0].rotated && !lines[2].rotated);
    assert_ne!(lines[0].file_id, lines[2].file_id);
}

#[test]
fn rename_rotation_and_a_missing_new_file() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("wsyncmgr.log");
    let mut r = LogReader::new(&p);
    append(&p, b"a1\n");
    assert_eq!(texts(&r.poll().expect("poll")), ["a1"]);
    append(&p, b"a2\n");
    rotate_rename(&p);
    assert_eq!(texts(&r.poll().expect("poll")), ["a2", MARKER]);
    append(&p, b"b1\n");
    assert_eq!(texts(&r.poll().expect("poll")), ["b1"]);
    assert_eq!(r.gaps, 0);
}

#[test]
fn resumes_from_a_saved_position_even_across_a_rotation() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("WCM.log");
    append(&p, b"a1\na2\n");
    let mut r = LogReader::new(&p);
    assert_eq!(texts(&r.poll().expect("poll")), ["a1", "a2"]);
    let saved = r.position().clone();
    drop(r);
    // While the reader is down, the file grows and rotates.
    append(&p, b"a3\n");
    rotate_copy_truncate(&p);
    append(&p, b"b1\n");
    let mut r = LogReader::resume(&p, saved);
    assert_eq!(texts(&r.poll().expect("poll")), ["a3", MARKER, "b1"]);
}

#[test]
fn utf16_and_utf8_boms() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("u16.log");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(
        "héllo\r\nwörld\r\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes()),
    );
    fs::write(&p, &bytes).expect("write");
    assert_eq!(
        texts(&LogReader::new(&p).poll().expect("poll")),
        ["héllo", "wörld"]
    );
    let p8 = dir.path().join("u8.log");
    fs::write(&p8, b"\xEF\xBB\xBFfirst\r\nCaf\xe9\r\n").expect("write");
    assert_eq!(
        texts(&LogReader::new(&p8).poll().expect("poll")),
        ["first", "Café"]
    );
}

#[test]
fn cmtrace_records_spanning_lines_and_polls() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("ccm.log");
    let mut r = LogReader::new(&p);
    append(&p, b"<![LOG[first part\r\n");
    assert!(
        r.poll().expect("poll").is_empty(),
        "held until the record ends"
    );
    append(&p, b"second part]LOG]!><time=\"01:02:03.000+0\" date=\"01-02-2010\" component=\"X\" context=\"\" type=\"1\" thread=\"1\" file=\"\">\r\nplain\r\n");
    let lines = r.poll().expect("poll");
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]
            .text
            .starts_with("<![LOG[first part\nsecond part]LOG]!>")
    );
    assert_eq!(lines[0].offset, 0);
    assert_eq!(lines[1].text, "plain");
}

#[derive(Debug, Clone)]
enum Op {
    Write(u8),
    Partial,
    Rotate { rename: bool },
    Poll,
    Restart,
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..5).prop_map(Op::Write),
        1 => Just(Op::Partial),
        2 => any::<bool>().prop_map(|rename| Op::Rotate { rename }),
        4 => Just(Op::Poll),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever the interleaving of writes, partial lines, rotations (at most one between two
    /// polls, as ConfigMgr keeps one `.lo_`), polls and restarts: every line appears once, in order.
    #[test]
    fn every_line_once_in_order(ops in proptest::collection::vec(any_op(), 1..60)) {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("WCM.log");
        let mut r = LogReader::new(&p);
        let mut written: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut n = 0u32;
        let mut partial: Option<String> = None;
        let mut rotated_since_poll = false;
        let poll = |r: &mut LogReader, seen: &mut Vec<String>| {
            for l in r.poll().expect("poll") {
                if l.text != MARKER {
                    seen.push(l.text);
                }
            }
        };
        for op in ops {
            match op {
                Op::Write(k) => {
                    for _ in 0..k {
                        let line = match partial.take() {
                            Some(start) => {
                                append(&p, b"-end\r\n");
                                format!("{start}-end")
                            }
                            None => {
                                n += 1;
                                let l = format!("line {n}  $$<SMS_X><01-02-2009 03:04:05.006+480><thread=1 (0x1)>");
                                append(&p, format!("{l}\r\n").as_bytes());
                                l
                            }
                        };
                        written.push(line);
                    }
                }
                Op::Partial => {
                    if partial.is_none() {
                        n += 1;
                        let start = format!("partial {n}");
                        append(&p, start.as_bytes());
                        partial = Some(start);
                    }
                }
                Op::Rotate { rename } => {
                    if rotated_since_poll {
                        poll(&mut r, &mut seen);
                    }
                    if let Some(start) = partial.take() {
                        append(&p, b"-end\r\n");
                        written.push(format!("{start}-end"));
                    }
                    if p.exists() {
                        if rename { rotate_rename(&p) } else { rotate_copy_truncate(&p) }
                        rotated_since_poll = true;
                    }
                }
                Op::Poll => {
                    poll(&mut r, &mut seen);
                    rotated_since_poll = false;
                }
                Op::Restart => {
                    let pos = r.position().clone();
                    r = LogReader::resume(&p, pos);
                }
            }
        }
        if let Some(start) = partial.take() {
            append(&p, b"-end\r\n");
            written.push(format!("{start}-end"));
        }
        poll(&mut r, &mut seen);
        prop_assert_eq!(seen, written);
        prop_assert_eq!(r.gaps, 0);
    }
}

/// Lines for the milestone property: milestones, a setup with an error, noise.
const MIXED: &[&str] = &[
    "There are no unhealthy WSUS Server components on WSUS Server SUP01  $$<SMS_WSUS_CONTROL_MANAGER><01-02-2009 03:04:05.006+480><thread=1 (0x1)>",
    "Waiting for changes for 59 minutes  $$<SMS_WSUS_SYNC_MANAGER><01-02-2009 03:04:05.006+480><thread=1 (0x1)>",
    "<02/09/14 22:53:28> SMSWSUS Setup Started....",
    "<02/09/14 22:53:31> ERROR: something failed",
    "<02/09/14 22:53:44> ~RoleSetup().",
    "Done synchronizing SMS with WSUS Server SUP01  $$<SMS_WSUS_SYNC_MANAGER><01-02-2009 03:04:05.006+480><thread=1 (0x1)>",
    "successfully checked DATABASE connection on wsus server SUP01  $$<SMS_WSUS_CONTROL_MANAGER><01-02-2009 03:04:05.006+480><thread=1 (0x1)>",
    "<![LOG[Setting new configuration state to 2 (WSUS_CONFIG_SUCCESS)]LOG]!><time=\"03:04:05.006+480\" date=\"01-02-2009\" component=\"SMS_WSUS_CONFIGURATION_MANAGER\" context=\"\" type=\"1\" thread=\"1\" file=\"x\">",
    "<02/09/14 22:53:40> Installation was successful.",
];

fn classified(r: &mut LogReader, c: &mut Classifier) -> Vec<(String, u64, Milestone)> {
    r.poll()
        .expect("poll")
        .into_iter()
        .filter_map(|l| {
            let record = parse_line(&l.text, None);
            c.classify(&record, "X.log")
                .map(|m| (l.file_id.clone(), l.offset, m))
        })
        .collect()
}

/// Milestones, as [`classified`] gives them, and every line read with its record.
fn recorded(r: &mut LogReader, c: &mut Classifier) -> Vec<(String, u64, Milestone)> {
    let mut found = Vec::new();
    r.poll_records(c, None, "X.log", |l, record, m| {
        assert_eq!(*record, parse_record(l.text, None), "{}", l.text);
        if let Some(m) = m {
            found.push((l.file_id.to_string(), l.offset, m));
        }
    })
    .expect("poll");
    found
}

fn scanned(r: &mut LogReader, c: &mut Classifier) -> Vec<(String, u64, Milestone)> {
    let (found, _) = r.poll_milestones(c, None, "X.log").expect("poll");
    found
        .into_iter()
        .map(|m| (m.file_id, m.offset, m.milestone))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Reading only milestones, and reading every line with its milestone, give poll for poll
    /// what reading every line and classifying it gives, across partial lines and both kinds of
    /// rotation; the positions agree.
    #[test]
    fn milestones_poll_for_poll_as_every_line(
        ops in proptest::collection::vec((any_op(), 0..MIXED.len()), 1..50)
    ) {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("WCM.log");
        let (mut every, mut only, mut records) = (LogReader::new(&p), LogReader::new(&p), LogReader::new(&p));
        let (mut c_every, mut c_only, mut c_records) = (Classifier::new(), Classifier::new(), Classifier::new());
        let mut partial = false;
        let mut rotated_since_poll = false;
        for (op, pick) in ops {
            match op {
                Op::Write(k) => {
                    for _ in 0..k {
                        if std::mem::take(&mut partial) {
                            append(&p, b" (end)\r\n");
                        } else {
                            append(&p, format!("{}\r\n", MIXED[pick]).as_bytes());
                        }
                    }
                }
                Op::Partial => {
                    if !partial {
                        append(&p, MIXED[pick].as_bytes());
                        partial = true;
                    }
                }
                Op::Rotate { rename } => {
                    if rotated_since_poll {
                        let expected = classified(&mut every, &mut c_every);
                        prop_assert_eq!(&expected, &scanned(&mut only, &mut c_only));
                        prop_assert_eq!(&expected, &recorded(&mut records, &mut c_records));
                    }
                    if std::mem::take(&mut partial) {
                        append(&p, b"\r\n");
                    }
                    if p.exists() {
                        if rename { rotate_rename(&p) } else { rotate_copy_truncate(&p) }
                        rotated_since_poll = true;
                    }
                }
                Op::Poll | Op::Restart => {
                    let expected = classified(&mut every, &mut c_every);
                    prop_assert_eq!(&expected, &scanned(&mut only, &mut c_only));
                    prop_assert_eq!(&expected, &recorded(&mut records, &mut c_records));
                    prop_assert_eq!(every.position(), only.position());
                    prop_assert_eq!(every.position(), records.position());
                    rotated_since_poll = false;
                }
            }
        }
        let expected = classified(&mut every, &mut c_every);
        prop_assert_eq!(&expected, &scanned(&mut only, &mut c_only));
        prop_assert_eq!(&expected, &recorded(&mut records, &mut c_records));
        prop_assert_eq!(&c_every, &c_only);
        prop_assert_eq!(&c_every, &c_records);
    }
}

/// What reading a whole file at once gives: every line with its line number.
fn numbered_at_once(bytes: &[u8]) -> Vec<(u64, RawLine)> {
    let (encoding, _) = Encoding::sniff(bytes);
    let unit = encoding.unit();
    lines_of(bytes)
        .into_iter()
        .map(|l| {
            let before = &bytes[..l.offset as usize];
            (1 + count_newlines(&before[before.len() % unit..], unit), l)
        })
        .collect()
}

fn numbered_in_steps(bytes: &[u8], step: usize) -> Vec<(u64, RawLine)> {
    let mut out = Vec::new();
    read_lines_in_steps(bytes, step, |n, l| {
        out.push((n, l.to_raw_line()));
        Ok(())
    })
    .expect("read");
    out
}

fn utf16(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

#[test]
fn a_file_read_in_steps_reads_as_a_whole_one() {
    let cmtrace = "<![LOG[first part\r\nsecond part]LOG]!><time=\"01:02:03.000+0\" \
        date=\"01-02-2010\" component=\"X\" context=\"\" type=\"1\" thread=\"1\" file=\"\">\r\n";
    let mut files: Vec<Vec<u8>> = vec![
        b"one\r\ntwo\r\n\r\nfour without an end".to_vec(),
        format!("plain\r\n{cmtrace}after\r\n{cmtrace}").into_bytes(),
        [&[0xEF, 0xBB, 0xBF][..], "Café\nline two\n".as_bytes()].concat(),
        utf16("first\r\nsecond line\r\nthird\r\n"),
        Vec::new(),
    ];
    files.push(b"x".repeat(100).into_iter().chain(*b"\nshort\n").collect());
    for file in &files {
        let whole = numbered_at_once(file);
        for step in [1, 2, 3, 7, 16, 64, 1 << 20] {
            assert_eq!(numbered_in_steps(file, step), whole, "step {step}");
        }
    }
    let numbers: Vec<u64> = numbered_in_steps(&files[1], 5)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        numbers,
        [1, 2, 4, 5],
        "a record takes its first line's number"
    );
}

proptest! {
    #[test]
    fn any_bytes_read_in_any_steps_read_as_a_whole(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'<'), any::<u8>()],
            0..400,
        ),
        step in 1usize..64,
    ) {
        prop_assert_eq!(numbered_in_steps(&bytes, step), numbered_at_once(&bytes));
    }
}

proptest! {
    /// Lines split from a read that is UTF-8 up to some point (Windows-1252 bytes, or a character
    /// cut by the read's end, after it) are the text decoding each line alone gives.
    #[test]
    fn lines_of_a_read_are_decoded_as_each_line_alone(
        lines in proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 <>$.:-]{0,40}".prop_map(String::into_bytes),
                "[a-zé€ ]{0,20}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..30),
            ],
            0..8,
        ),
        crlf in any::<bool>(),
        finished in any::<bool>(),
        cut in 0usize..4,
    ) {
        let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut buf: Vec<u8> = lines
            .iter()
            .map(|l| l.iter().copied().filter(|&c| c != b'\n').collect::<Vec<u8>>())
            .flat_map(|l| [l, end.to_vec()])
            .flatten()
            .collect();
        buf.extend(&"é€".as_bytes()[..cut]);
        for encoding in [crate::decode::Encoding::Ansi, crate::decode::Encoding::Utf8Bom] {
            let mut split = Vec::new();
            let consumed = split_lines(&buf, encoding, finished, |start, end, text| {
                split.push((start, end, text.to_string()));
            });
            let mut expected = Vec::new();
            let mut start = 0;
            while start < consumed {
                let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
                let text = crate::decode::decode_line(&buf[start..end], encoding).into_owned();
                // A CMTrace opening in random bytes makes a record of several lines; those are
                // the record path's business, not this one's.
                if text.starts_with("<![LOG[") {
                    return Ok(());
                }
                expected.push((start, end, text));
                start = end + 1;
            }
            prop_assert_eq!(split, expected);
        }
    }
}

/// Every line of `bytes` with its number, record and milestone, classifying each line.
fn every_line_classified(bytes: &[u8]) -> Vec<(u64, u64, Record, Option<Milestone>)> {
    let mut c = Classifier::new();
    let mut out = Vec::new();
    read_lines_in_steps(bytes, 64, |n, l| {
        let record = parse_record(l.text, Some(60));
        let m = c.classify_record(&record, "X.log");
        out.push((n, l.offset, record.into_owned(), m));
        Ok(())
    })
    .expect("read");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Reading a finished file, classifying only the lines the search finds (and those inside a
    /// role setup), gives every line with the number and milestone that classifying each line
    /// gives.
    #[test]
    fn a_file_read_offline_is_every_line_classified(
        picks in proptest::collection::vec((0..MIXED.len() + 1, any::<bool>()), 0..60),
        noise in proptest::collection::vec(any::<u8>(), 0..30),
    ) {
        let mut bytes = Vec::new();
        for (pick, crlf) in picks {
            match MIXED.get(pick) {
                Some(line) => bytes.extend_from_slice(line.as_bytes()),
                None => bytes.extend_from_slice(&noise),
            }
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let mut c = Classifier::new();
        let mut classified = Vec::new();
        read_classified(&bytes[..], Some(60), "X.log", &mut c, |n, l, m| {
            classified.push((n, l.offset, m));
            Ok(())
        })
        .expect("read");
        let wanted: Vec<_> = every_line_classified(&bytes)
            .into_iter()
            .map(|(n, offset, _, m)| (n, offset, m))
            .collect();
        prop_assert_eq!(classified, wanted);
    }
}

/// Bytes, then an error.
struct FailingAfter(&'static [u8]);

impl std::io::Read for FailingAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("the share went away"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn the_whole_lines_read_before_an_error_are_handed_on_then_the_error() {
    let mut c = Classifier::new();
    let mut seen = Vec::new();
    let read = read_classified(
        FailingAfter(b"first\r\nsecond\r\nthird, cut"),
        None,
        "X.log",
        &mut c,
        |n, l, _| {
            seen.push((n, l.text.to_string()));
            Ok(())
        },
    );
    let error = read.expect_err("the error");
    assert_eq!(error.to_string(), "the share went away");
    assert_eq!(seen, [(1, "first".to_string()), (2, "second".to_string())]);
}
