//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::borrow::Cow;
use std::io::Write;

use anyhow::Context as _;
use chrono::{Datelike as _, NaiveDateTime, Timelike as _};
use sup_smslog::{Classifier, RecordRef};

use crate::records;

/// How many bytes of printed lines are gathered before they are written out.
const OUTPUT_BATCH: usize = 64 * 1024;

/// Prints every record of `files`. Returns the number of records printed.
pub fn run(
    files: &[std::path::PathBuf],
    json: bool,
    tz_bias: Option<i32>,
    out: &mut impl Write,
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
        // Decoded and assembled exactly as the live watcher does, the file read as finished, in
        // bounded steps: memory does not grow with the file.
        let mut classifier = Classifier::new();
        let mut output_failed = false;
        let mut lines = Vec::with_capacity(OUTPUT_BATCH + 4096);
        let printed = sup_smslog::reader::read_records(
            source,
            tz_bias,
            &log,
            &mut classifier,
            |line_no, _, record, milestone| {
                let written = if json {
                    writeln!(
                        out,
                        "{}",
                        records::json(&name, line_no, record, milestone.as_ref())
                    )
                } else {
                    let milestone = milestone.as_ref().map_or("-", |m| m.name);
                    write_columns(&mut lines, (&name, line_no), record, milestone);
                    // Lines go out in batches, written straight into the batch.
                    if lines.len() < OUTPUT_BATCH {
                        Ok(())
                    } else {
                        let written = out.write_all(&lines);
                        lines.clear();
                        written
                    }
                };
                output_failed = written.is_err();
                count += 1;
                written
            },
        );
        let printed = printed.and_then(|()| {
            let written = out.write_all(&lines);
            output_failed = written.is_err();
            written
        });
        match printed {
            Ok(()) => {}
            // The reader of the output went away (`| head`): stop quietly.
            Err(e) if output_failed && e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(count);
            }
            Err(e) if output_failed => return Err(e).context("writing the output"),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }
    Ok(count)
}

/// One record as a line of columns, `FILE:LINE TIME FORMAT COMPONENT MILESTONE MESSAGE`, each but
/// the last padded to its width as `format!`'s `{:<N}` pads (by characters), into `out`. Written
/// piece by piece: a format string is interpreted at every use, which cost more than parsing the
/// line.
fn write_columns(
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
    write_time(out, record);
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

/// The record's time, appended to `out`: UTC with a `Z` where its bias is known, else local, else
/// `-`.
fn write_time(out: &mut Vec<u8>, record: &RecordRef<'_>) {
    let (time, zone): (NaiveDateTime, &str) = match (record.time_utc(), record.time_local) {
        (Some(utc), _) => (utc.naive_utc(), "Z"),
        (None, Some(local)) => (local, ""),
        (None, None) => {
            out.push(b'-');
            return;
        }
    };
    // Years outside four digits keep chrono's own form (a sign, more digits).
    let Ok(year @ 0..=9999) = u32::try_from(time.year()) else {
        let text = format!("{}{zone}", time.format("%Y-%m-%d %H:%M:%S%.3f"));
        out.extend_from_slice(text.as_bytes());
        return;
    };
    let millis = time.nanosecond() % 1_000_000_000 / 1_000_000;
    digits(out, year, 4);
    out.push(b'-');
    digits(out, time.month(), 2);
    out.push(b'-');
    digits(out, time.day(), 2);
    out.push(b' ');
    digits(out, time.hour(), 2);
    out.push(b':');
    digits(out, time.minute(), 2);
    out.push(b':');
    digits(out, time.second(), 2);
    out.push(b'.');
    digits(out, millis, 3);
    out.extend_from_slice(zone.as_bytes());
}

/// `n`'s last `width` (up to 4) decimal digits, zero-padded.
fn digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut text = [b'0'; 4];
    let text = &mut text[..width.min(4)];
    for digit in text.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(text);
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
    use sup_smslog::{Format, parse_record};

    use super::*;

    /// A record's line as `format!` writes it: what [`write_columns`] must write.
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

    proptest! {
        /// Columns written piece by piece are the line `format!` writes, for any record: padding
        /// counts characters, a time is zero-padded, a message keeps to one line.
        #[test]
        fn columns_are_written_as_format_writes_them(
            file in "\\PC{0,20}",
            line_no in any::<u64>(),
            format in proptest::sample::select(vec![
                Format::Sms, Format::RoleSetup, Format::CmTrace, Format::Marker, Format::Unparsed,
            ]),
            component in proptest::option::of("\\PC{0,40}"),
            message in "(\\PC|~|\n){0,60}",
            time_local in any_time(),
            bias in proptest::option::of(-840i32..=720),
            milestone in proptest::sample::select(
                sup_smslog::milestone::ALL.iter().copied().chain(["-"]).collect::<Vec<_>>(),
            ),
        ) {
            let record = RecordRef {
                format,
                message: &message,
                component: component.as_deref(),
                thread: None,
                time_local,
                bias,
                severity: None,
            };
            let mut line = Vec::new();
            write_columns(&mut line, (&file, line_no), &record, milestone);
            prop_assert_eq!(
                String::from_utf8(line).expect("UTF-8"),
                formatted(&file, line_no, &record, milestone)
            );
        }
    }

    #[test]
    fn each_record_is_one_line_of_text() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("WCM.log");
        std::fs::write(
            &path,
            "Successfully connected to server: SUP01, port: 8530, useSSL: False  $$<SMS_WSUS_CONFIGURATION_MANAGER><11-26-2026 17:09:33.123+480><thread=3404 (0xD4C)>\r\n\
             <11/26/26 17:09:34> first~~second\r\n\
             no framing at all\r\n",
        )
        .expect("write");
        let mut out = Vec::new();
        let printed = run(std::slice::from_ref(&path), false, Some(-60), &mut out).expect("run");
        assert_eq!(printed, 3);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let name = format!("{}:1", path.display());
        assert_eq!(
            lines[0][..7],
            [
                name.as_str(),
                "2026-11-27",
                "01:09:33.123Z",
                "sms",
                "SMS_WSUS_CONFIGURATION_MANAGER",
                "wsus_connected",
                "Successfully"
            ]
        );
        // A rolesetup line carries no zone: the configured bias makes it UTC.
        assert_eq!(
            lines[1][1..],
            [
                "2026-11-26",
                "16:09:34.000Z",
                "rolesetup",
                "-",
                "-",
                "first",
                "⏎",
                "second"
            ]
        );
        assert_eq!(
            lines[2][1..],
            ["-", "unparsed", "-", "-", "no", "framing", "at", "all"]
        );
    }

    #[test]
    fn a_time_without_a_zone_is_printed_as_local() {
        let record = parse_record("<11/26/26 17:09:34> x", None);
        let mut time = Vec::new();
        write_time(&mut time, &record);
        assert_eq!(time, b"2026-11-26 17:09:34.000");
    }

    #[test]
    fn a_year_past_four_digits_is_printed_as_chrono_prints_it() {
        let mut record = parse_record("<12/31/99 23:30:00> x", Some(60));
        record.time_local =
            chrono::NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_opt(23, 30, 0));
        let mut time = Vec::new();
        write_time(&mut time, &record);
        assert_eq!(time, b"+10000-01-01 00:30:00.000Z");
    }
}
