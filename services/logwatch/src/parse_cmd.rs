//! `sup-logwatch parse FILE...`: the parser and classifier offline, for operators and scripts.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::Context as _;
use chrono::{Datelike as _, NaiveDateTime, Timelike as _};
use sup_smslog::{Classifier, RecordRef, parse_record};

use crate::records;

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
        let mut time = String::new();
        let printed = sup_smslog::reader::read_lines(source, |line_no, l| {
            let record = parse_record(l.text, tz_bias);
            let milestone = classifier.classify_record(&record, &log);
            let written = if json {
                writeln!(
                    out,
                    "{}",
                    records::json(&name, line_no, &record, milestone.as_ref())
                )
            } else {
                write_time(&mut time, &record);
                let ms = milestone.as_ref().map(|m| m.name).unwrap_or("-");
                writeln!(
                    out,
                    "{name}:{line_no:<6} {time:<24} {:<9} {:<32} {ms:<24} {}",
                    record.format.as_str(),
                    record.component.unwrap_or("-"),
                    one_line(record.message)
                )
            };
            output_failed = written.is_err();
            count += 1;
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

/// The record's time into `out` (emptied first): UTC with a `Z` where its bias is known, else
/// local, else `-`. Written field by field, since a format string is parsed at every use.
fn write_time(out: &mut String, record: &RecordRef<'_>) {
    out.clear();
    let (time, zone): (NaiveDateTime, &str) = match (record.time_utc(), record.time_local) {
        (Some(utc), _) => (utc.naive_utc(), "Z"),
        (None, Some(local)) => (local, ""),
        (None, None) => {
            out.push('-');
            return;
        }
    };
    // Years outside four digits keep chrono's own form (a sign, more digits).
    if !(0..=9999).contains(&time.year()) {
        let _ = write!(out, "{}{zone}", time.format("%Y-%m-%d %H:%M:%S%.3f"));
        return;
    }
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}{zone}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.nanosecond() % 1_000_000_000 / 1_000_000
    );
}

/// A message on one line: its `~~` and line breaks shown as ` ⏎ `.
fn one_line(message: &str) -> Cow<'_, str> {
    if message.contains(['~', '\n']) {
        Cow::Owned(message.replace("~~", "\n").replace('\n', " ⏎ "))
    } else {
        Cow::Borrowed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut time = String::new();
        write_time(&mut time, &record);
        assert_eq!(time, "2026-11-26 17:09:34.000");
    }

    #[test]
    fn a_year_past_four_digits_is_printed_as_chrono_prints_it() {
        let mut record = parse_record("<12/31/99 23:30:00> x", Some(60));
        record.time_local =
            chrono::NaiveDate::from_ymd_opt(9999, 12, 31).and_then(|d| d.and_hms_opt(23, 30, 0));
        let mut time = String::new();
        write_time(&mut time, &record);
        assert_eq!(time, "+10000-01-01 00:30:00.000Z");
    }
}
