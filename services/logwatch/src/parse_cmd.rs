//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::borrow::Cow;
use std::io::Write;

use anyhow::Context as _;
use chrono::{Datelike as _, NaiveDateTime, Timelike as _};
use sup_smslog::{Classifier, Milestone, RecordRef, parse_record};

use crate::records;

/// How many bytes of lines the reading thread gathers before handing them to the printing one.
const BATCH_TEXT: usize = 256 * 1024;
/// How many lines it gathers at most: short or empty lines fill a batch's list, not its text.
const BATCH_LINES: usize = 4096;
/// How many batches may wait for the printing thread: memory stays bounded whatever the file.
const BATCHES_WAITING: usize = 4;
/// How many bytes of printed lines are gathered before they are written out.
const OUTPUT_BATCH: usize = 64 * 1024;

/// Lines read, on their way to be printed: their text one after another, and each line's number,
/// end in the text and milestone.
#[derive(Default)]
struct Batch {
    text: String,
    lines: Vec<(u64, usize, Option<Milestone>)>,
}

/// How to print a file's records.
#[derive(Clone, Copy)]
struct Printing<'a> {
    /// The file as it is named in the output.
    name: &'a str,
    json: bool,
    tz_bias: Option<i32>,
}

/// Prints every record of `files`. Returns the number of records printed.
///
/// Each file is read on this thread, which splits it into lines and classifies the lines that
/// may hold a milestone (in order: a milestone can depend on the lines before it), and printed on
/// another, which parses every line and writes it out: the two halves of the work take about as
/// long as each other.
pub fn run(
    files: &[std::path::PathBuf],
    json: bool,
    tz_bias: Option<i32>,
    out: &mut (impl Write + Send),
) -> anyhow::Result<u64> {
    let mut count = 0;
    for file in files {
        let log = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.display().to_string();
        let source =
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
        let how = Printing {
            name: &name,
            json,
            tz_bias,
        };
        let (read, printed) = print_file(source, &log, how, out);
        match printed {
            Ok(n) => count += n,
            // The reader of the output went away (`| head`): stop quietly.
            Err(PrintError { printed, error })
                if error.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(count + printed);
            }
            Err(PrintError { error, .. }) => return Err(error).context("writing the output"),
        }
        read.with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(count)
}

/// Why the printing thread stopped, and how many records it had printed.
struct PrintError {
    printed: u64,
    error: std::io::Error,
}

/// Reads `source` and prints its records to `out`: what the reading ended with, and what the
/// printing did (how many records it printed).
fn print_file(
    source: impl std::io::Read,
    log: &str,
    how: Printing<'_>,
    out: &mut (impl Write + Send),
) -> (std::io::Result<()>, Result<u64, PrintError>) {
    let (to_printer, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_WAITING);
    // Printed batches come back emptied, to be filled again rather than allocated anew.
    let (to_reader, printed_batches) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let printer = scope.spawn(move || print_batches(batches, &to_reader, how, out));
        let mut classifier = Classifier::new();
        let mut batch = Batch::default();
        // A send fails only once the printer has stopped; its own error says why.
        let printer_gone = || std::io::Error::other("the printing thread stopped");
        let read = sup_smslog::reader::read_classified(
            source,
            how.tz_bias,
            log,
            &mut classifier,
            |line_no, line, milestone| {
                // Lines of columns name the milestone only: its fields are let go on this
                // thread, which allocated them.
                let milestone = match milestone {
                    Some(m) if !how.json => Some(Milestone {
                        name: m.name,
                        fields: Vec::new(),
                    }),
                    m => m,
                };
                batch.text.push_str(line.text);
                batch.lines.push((line_no, batch.text.len(), milestone));
                if batch.text.len() >= BATCH_TEXT || batch.lines.len() >= BATCH_LINES {
                    let next = printed_batches.try_recv().unwrap_or_default();
                    let full = std::mem::replace(&mut batch, next);
                    to_printer.send(full).map_err(|_| printer_gone())?;
                }
                Ok(())
            },
        );
        // The whole lines read before an error are printed too.
        let sent = to_printer.send(batch).map_err(|_| printer_gone());
        let read = read.and(sent);
        drop(to_printer);
        let printed = printer.join().unwrap_or_else(|_| {
            Err(PrintError {
                printed: 0,
                error: std::io::Error::other("the printing thread panicked"),
            })
        });
        (read, printed)
    })
}

/// Parses and prints the lines of each batch in turn, handing each batch back emptied.
fn print_batches(
    batches: std::sync::mpsc::Receiver<Batch>,
    to_reader: &std::sync::mpsc::Sender<Batch>,
    how: Printing<'_>,
    out: &mut impl Write,
) -> Result<u64, PrintError> {
    // Lines formatted, and of those written out.
    let (mut printed, mut written) = (0, 0);
    let mut output = Vec::with_capacity(OUTPUT_BATCH + 4096);
    let mut columns = Columns::default();
    let fail = |printed, error| PrintError { printed, error };
    for mut batch in batches {
        let mut start = 0;
        for (line_no, end, milestone) in batch.lines.drain(..) {
            let text = batch.text.get(start..end).unwrap_or_default();
            start = end;
            let record = parse_record(text, how.tz_bias);
            if how.json {
                let line = records::json(how.name, line_no, &record, milestone.as_ref());
                writeln!(output, "{line}").map_err(|e| fail(written, e))?;
            } else {
                let milestone = milestone.as_ref().map_or("-", |m| m.name);
                columns.write(&mut output, (how.name, line_no), &record, milestone);
            }
            printed += 1;
            if output.len() >= OUTPUT_BATCH {
                out.write_all(&output).map_err(|e| fail(written, e))?;
                output.clear();
                written = printed;
            }
        }
        batch.text.clear();
        // The reader may have finished already; the batch is then simply dropped.
        let _ = to_reader.send(batch);
    }
    out.write_all(&output)
        .and_then(|()| out.flush())
        .map_err(|e| fail(written, e))?;
    Ok(printed)
}

/// Writes records as lines of columns, `FILE:LINE TIME FORMAT COMPONENT MILESTONE MESSAGE`, each
/// but the last padded to its width as `format!`'s `{:<N}` pads (by characters). Written piece by
/// piece: a format string is interpreted at every use, which cost more than parsing the line.
#[derive(Default)]
struct Columns {
    /// The last time written, up to its minute. A log's successive lines mostly share their
    /// minute, and a bias is whole minutes, so only the seconds are written anew.
    minute: Option<Minute>,
}

/// A time's text up to its minute, and what it was made from.
struct Minute {
    /// The local date, the minute of the day and the bias.
    of: (chrono::NaiveDate, u32, Option<i32>),
    /// `YYYY-MM-DD HH:MM:`, UTC where the bias gives it.
    text: [u8; 17],
    /// What follows the seconds: `Z` for UTC.
    zone: &'static str,
}

impl Columns {
    fn write(
        &mut self,
        out: &mut Vec<u8>,
        (file, line_no): (&str, u64),
        record: &RecordRef<'_>,
        milestone: &str,
    ) {
        out.extend_from_slice(file.as_bytes());
        out.push(b':');
        padded(out, itoa::Buffer::new().format(line_no), 6);
        out.push(b' ');
        let time_starts = out.len();
        self.write_time(out, record);
        // The time is ASCII: its bytes are its characters.
        let time_len = out.len() - time_starts;
        out.resize(out.len() + 24usize.saturating_sub(time_len), b' ');
        out.push(b' ');
        padded(out, record.format.as_str(), 9);
        out.push(b' ');
        padded(out, record.component.unwrap_or("-"), 32);
        out.push(b' ');
        padded(out, milestone, 24);
        out.push(b' ');
        out.extend_from_slice(one_line(record.message).as_bytes());
        out.push(b'\n');
    }

    /// The record's time, appended to `out`: UTC with a `Z` where its bias is known, else local,
    /// else `-`.
    fn write_time(&mut self, out: &mut Vec<u8>, record: &RecordRef<'_>) {
        let Some(local) = record.time_local else {
            out.push(b'-');
            return;
        };
        if local.nanosecond() >= 1_000_000_000 {
            // A leap second: its minute may not be the next second's.
            return write_in_full(out, record, local);
        }
        let key = (
            local.date(),
            local.hour() * 60 + local.minute(),
            record.bias,
        );
        let minute = match &mut self.minute {
            Some(known) if known.of == key => known,
            _ => {
                let (time, zone) = utc_or_local(record, local);
                // Years outside four digits keep chrono's own form (a sign, more digits).
                let Ok(year @ 0..=9999) = u32::try_from(time.year()) else {
                    return write_in_full(out, record, local);
                };
                let mut prefix = *b"0000-00-00 00:00:";
                digits_into(&mut prefix[0..4], year);
                digits_into(&mut prefix[5..7], time.month());
                digits_into(&mut prefix[8..10], time.day());
                digits_into(&mut prefix[11..13], time.hour());
                digits_into(&mut prefix[14..16], time.minute());
                self.minute.insert(Minute {
                    of: key,
                    text: prefix,
                    zone,
                })
            }
        };
        out.extend_from_slice(&minute.text);
        digits(out, local.second(), 2);
        out.push(b'.');
        digits(out, local.nanosecond() % 1_000_000_000 / 1_000_000, 3);
        out.extend_from_slice(minute.zone.as_bytes());
    }
}

/// The time to print for a record whose local time is `local`, and its zone: UTC (`Z`) where its
/// bias gives it, else local.
fn utc_or_local(record: &RecordRef<'_>, local: NaiveDateTime) -> (NaiveDateTime, &'static str) {
    match record.time_utc() {
        Some(utc) => (utc.naive_utc(), "Z"),
        None => (local, ""),
    }
}

/// The time of a record as chrono writes it, for what the minute's text does not cover.
fn write_in_full(out: &mut Vec<u8>, record: &RecordRef<'_>, local: NaiveDateTime) {
    let (time, zone) = utc_or_local(record, local);
    let text = format!("{}{zone}", time.format("%Y-%m-%d %H:%M:%S%.3f"));
    out.extend_from_slice(text.as_bytes());
}

/// `text`, then spaces up to `width` characters.
fn padded(out: &mut Vec<u8>, text: &str, width: usize) {
    out.extend_from_slice(text.as_bytes());
    let chars = if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    };
    out.resize(out.len() + width.saturating_sub(chars), b' ');
}

/// `n`'s last `width` (up to 4) decimal digits, zero-padded.
fn digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut text = [b'0'; 4];
    let text = &mut text[..width.min(4)];
    digits_into(text, n);
    out.extend_from_slice(text);
}

/// `slot` filled with `n`'s last decimal digits, zero-padded.
fn digits_into(slot: &mut [u8], mut n: u32) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A message on one line: its `~~` and line breaks shown as ` ⏎ `.
fn one_line(message: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'~', b'\n', message.as_bytes()).is_some() {
        Cow::Owned(message.replace("~~", "\n").replace('\n', " ⏎ "))
    } else {
        Cow::Borrowed(message)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sup_smslog::Format;

    use super::*;

    /// A record's line as `format!` writes it: what [`Columns::write`] must write.
    fn formatted(file: &str, line_no: u64, record: &RecordRef<'_>, milestone: &str) -> String {
        let time = match (record.time_utc(), record.time_local) {
            (Some(utc), _) => format!("{}Z", utc.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f")),
            (None, Some(local)) => local.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            (None, None) => "-".into(),
        };
        format!(
            "{file}:{line_no:<6} {time:<24} {:<9} {:<32} {milestone:<24} {}\n",
            record.format.as_str(),
            record.component.unwrap_or("-"),
            one_line(record.message)
        )
    }

    fn any_time() -> impl Strategy<Value = Option<NaiveDateTime>> {
        proptest::option::of(
            (0i32..=9999, 1u32..=12, 1u32..=28, 0u32..86_400, 0u32..1000).prop_map(
                |(y, m, d, secs, ms)| {
                    chrono::NaiveDate::from_ymd_opt(y, m, d).and_then(|date| {
                        date.and_hms_milli_opt(secs / 3600, secs / 60 % 60, secs % 60, ms)
                    })
                },
            ),
        )
        .prop_map(Option::flatten)
    }

    /// A file of `lines` lines in the mix of a busy SUP's logs, with a role setup in it.
    fn mixed_log(lines: usize) -> String {
        let mix = [
            "Synchronizing update af5eb87e-cdd6-40bf-984f-5d0630406de8 - Definition Update  $$<SMS_WSUS_SYNC_MANAGER><11-26-2026 17:09:33.123+480><thread=3404 (0xD4C)>",
            "There are no unhealthy WSUS Server components on WSUS Server SUP01  $$<SMS_WSUS_CONTROL_MANAGER><11-26-2026 17:09:34.000+480><thread=1 (0x1)>",
            "<11/26/26 17:09:35> SMSWSUS Setup Started....",
            "<11/26/26 17:09:36> ERROR: WSUS 3.0 SP2 is not installed",
            "<11/26/26 17:09:37> ~RoleSetup().",
            "<![LOG[Starting Sync]LOG]!><time=\"10:00:00.000+480\" date=\"01-16-2014\" component=\"x\" context=\"\" type=\"1\" thread=\"1\" file=\"\">",
            "a line with no framing at all, ~~ and a second part",
            "",
        ];
        (0..lines)
            .map(|i| format!("{}\r\n", mix[i * 7 % mix.len()]))
            .collect()
    }

    /// What printing `path` (read as `WCM.log`) gives, one line at a time on one thread, each
    /// written with `format!`.
    fn printed_in_turn(path: &std::path::Path, json: bool) -> String {
        let text = std::fs::read(path).expect("read");
        let name = path.display().to_string();
        let mut classifier = Classifier::new();
        let mut out = Vec::new();
        sup_smslog::reader::read_classified(
            &text[..],
            Some(-60),
            "WCM.log",
            &mut classifier,
            |n, line, m| {
                let record = parse_record(line.text, Some(-60));
                if json {
                    writeln!(out, "{}", records::json(&name, n, &record, m.as_ref()))
                } else {
                    let milestone = m.as_ref().map_or("-", |m| m.name);
                    out.extend_from_slice(formatted(&name, n, &record, milestone).as_bytes());
                    Ok(())
                }
            },
        )
        .expect("read");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_file_of_many_batches_prints_as_one_read_in_turn() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("WCM.log");
        // Several of the reading thread's batches, and more than the batches that may wait.
        std::fs::write(&path, mixed_log(40_000)).expect("write");
        for json in [false, true] {
            let mut out = Vec::new();
            let printed = run(std::slice::from_ref(&path), json, Some(-60), &mut out).expect("run");
            assert_eq!(printed, 40_000);
            let out = String::from_utf8(out).expect("UTF-8");
            assert!(out == printed_in_turn(&path, json), "json: {json}");
        }
    }

    #[test]
    fn a_file_of_empty_lines_prints_every_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("WCM.log");
        // Empty lines fill a batch's list of lines, not its text.
        std::fs::write(&path, "\r\n".repeat(30_000)).expect("write");
        let mut out = Vec::new();
        let printed = run(std::slice::from_ref(&path), false, None, &mut out).expect("run");
        assert_eq!(printed, 30_000);
        assert!(String::from_utf8(out).expect("UTF-8") == printed_in_turn(&path, false));
    }

    #[test]
    fn a_leap_second_is_written_as_chrono_writes_it() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500));
        let mut columns = Columns::default();
        for bias in [None, Some(-60), Some(0), Some(480)] {
            let record = RecordRef {
                format: Format::Sms,
                message: "m",
                component: None,
                thread: None,
                time_local: leap,
                bias,
                severity: None,
            };
            let mut line = Vec::new();
            columns.write(&mut line, ("f", 1), &record, "-");
            assert_eq!(
                String::from_utf8(line).expect("UTF-8"),
                formatted("f", 1, &record, "-")
            );
        }
    }

    /// Output that takes `room` bytes, then fails with `kind`.
    struct FailingAfter {
        room: usize,
        kind: std::io::ErrorKind,
    }

    impl Write for FailingAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_output_stops_quietly_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let (first, second) = (dir.path().join("WCM.log"), dir.path().join("WCM.lo_"));
        std::fs::write(&first, mixed_log(20_000)).expect("write");
        std::fs::write(&second, mixed_log(10)).expect("write");
        let files = [first, second];
        let mut closed = FailingAfter {
            room: 100_000,
            kind: std::io::ErrorKind::BrokenPipe,
        };
        let printed = run(&files, false, None, &mut closed).expect("a closed output is no error");
        assert!(printed < 20_000, "{printed} printed: the reading stopped");
        let mut broken = FailingAfter {
            room: 100_000,
            kind: std::io::ErrorKind::PermissionDenied,
        };
        let error = run(&files, false, None, &mut broken).expect_err("a broken output");
        assert!(
            format!("{error:#}").starts_with("writing the output"),
            "{error:#}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let error = run(&["/no/such/WCM.log".into()], false, None, &mut Vec::new())
            .expect_err("a missing file");
        assert!(
            format!("{error:#}").contains("/no/such/WCM.log"),
            "{error:#}"
        );
    }

    /// A record's parts, as the property below makes them.
    type Parts = (
        u64,
        Format,
        Option<String>,
        String,
        Option<NaiveDateTime>,
        Option<i32>,
        &'static str,
    );

    fn any_parts() -> impl Strategy<Value = Parts> {
        (
            any::<u64>(),
            proptest::sample::select(vec![
                Format::Sms,
                Format::RoleSetup,
                Format::CmTrace,
                Format::Marker,
                Format::Unparsed,
            ]),
            proptest::option::of("\\PC{0,40}"),
            "(\\PC|~|\n){0,60}",
            any_time(),
            proptest::option::of(prop_oneof![Just(-60), Just(480), -840i32..=720]),
            proptest::sample::select(
                sup_smslog::milestone::ALL
                    .iter()
                    .copied()
                    .chain(["-"])
                    .collect::<Vec<_>>(),
            ),
        )
    }

    /// Times a few seconds apart, some in one minute, some across a minute, an hour or a day.
    fn nearby_time() -> impl Strategy<Value = Option<NaiveDateTime>> {
        let base = chrono::NaiveDate::from_ymd_opt(2026, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 58, 50, 0));
        (0i64..200_000).prop_map(move |ms| {
            base.and_then(|b| b.checked_add_signed(chrono::TimeDelta::milliseconds(ms)))
        })
    }

    proptest! {
        /// Lines of columns written piece by piece, one after another, are the lines `format!`
        /// writes, for any records: padding counts characters, a time is zero-padded (and its
        /// minute written again whenever it, the date or the bias changes), a message keeps to
        /// one line.
        #[test]
        fn columns_are_written_as_format_writes_them(
            file in "\\PC{0,20}",
            lines in proptest::collection::vec(
                (any_parts(), proptest::option::of(nearby_time())),
                1..12,
            ),
        ) {
            let mut columns = Columns::default();
            for ((line_no, format, component, message, time, bias, milestone), nearby) in lines {
                let record = RecordRef {
                    format,
                    message: &message,
                    component: component.as_deref(),
                    thread: None,
                    time_local: nearby.unwrap_or(time),
                    bias,
                    severity: None,
                };
                let mut line = Vec::new();
                columns.write(&mut line, (&file, line_no), &record, milestone);
                prop_assert_eq!(
                    String::from_utf8(line).expect("UTF-8"),
                    formatted(&file, line_no, &record, milestone)
                );
            }
        }
    }

    #[test]
    fn a_time_without_a_zone_is_printed_as_local() {
        let record = parse_record("<11/26/26 17:09:34> x", None);
        let mut time = Vec::new();
        Columns::default().write_time(&mut time, &record);
        assert_eq!(time, b"2026-11-26 17:09:34.000");
    }

    #[test]
    fn a_year_past_four_digits_is_printed_as_chrono_prints_it() {
        let mut record = parse_record("<12/31/99 23:30:00> x", Some(60));
        record.time_local =
            chrono::NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_opt(23, 30, 0));
        let mut time = Vec::new();
        Columns::default().write_time(&mut time, &record);
        assert_eq!(time, b"+10000-01-01 00:30:00.000Z");
    }
}
