//! Records as lines of columns, as `sup-logwatch parse` prints them without `--json`.

use std::borrow::Cow;

use chrono::{Datelike as _, NaiveDateTime, Timelike as _};
use sup_smslog::RecordRef;

/// Writes records as lines of columns, `FILE:LINE TIME FORMAT COMPONENT MILESTONE MESSAGE`, each
/// but the last padded to its width as `format!`'s `{:<N}` pads (by characters). Written piece by
/// piece: a format string is interpreted at every use, which cost more than parsing the line.
#[derive(Default)]
pub(crate) struct Columns {
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
    pub(crate) fn write(
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

/// A record's line as `format!` writes it: what [`Columns::write`] must write.
#[cfg(test)]
pub(crate) fn formatted(
    file: &str,
    line_no: u64,
    record: &RecordRef<'_>,
    milestone: &str,
) -> String {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sup_smslog::{Format, parse_record};

    use super::*;

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
