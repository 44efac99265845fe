//! One log record into its parts. Formats are detected per line:
//!
//! - SMS trace: `message  $$<COMPONENT><MM-DD-YYYY HH:MM:SS.mmm±BIAS><thread=N (0xHEX)>`, split at
//!   the last `$$<` whose framing parses (a message may itself contain `$$<`); older SMS date
//!   forms (`Fri Mar 26 10:43:41.547 1999 Eastern Standard Time`, `Wed May 21 17:09:27 1997~`)
//!   are tolerated, with no bias;
//! - rolesetup (SUPSetup.log): `<MM/DD/YY HH:MM:SS> message`, local time without a zone;
//! - CMTrace: `<![LOG[message]LOG]!><time="HH:MM:SS.mmm±BIAS" date="MM-DD-YYYY" component="…" …>`;
//! - the rotation marker `<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>`.
//!
//! Bias is the Windows time-zone bias in minutes: UTC = local + bias (`+480` is UTC−8).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

pub const ROTATION_MARKER: &str = "<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sms,
    RoleSetup,
    CmTrace,
    Marker,
    Unparsed,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sms => "sms",
            Format::RoleSetup => "rolesetup",
            Format::CmTrace => "cmtrace",
            Format::Marker => "marker",
            Format::Unparsed => "unparsed",
        }
    }
}

/// A parsed record. `message` keeps `~~` as written; [`Record::display_message`] shows it as
/// line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub format: Format,
    pub message: String,
    pub component: Option<String>,
    pub thread: Option<u32>,
    pub time_local: Option<NaiveDateTime>,
    /// Minutes, UTC = local + bias. `None` when the line carries no zone and none was configured.
    pub bias: Option<i32>,
    /// CMTrace severity: 1 info, 2 warning, 3 error.
    pub severity: Option<u8>,
}

impl Record {
    pub fn time_utc(&self) -> Option<DateTime<Utc>> {
        let local = self.time_local?;
        let bias = self.bias?;
        local
            .checked_add_signed(Duration::minutes(i64::from(bias)))
            .map(|t| t.and_utc())
    }

    pub fn display_message(&self) -> String {
        self.message.replace("~~", "\n")
    }

    fn unparsed(line: &str) -> Self {
        Record {
            format: Format::Unparsed,
            message: line.to_string(),
            component: None,
            thread: None,
            time_local: None,
            bias: None,
            severity: None,
        }
    }
}

/// Parses one line (or an assembled CMTrace record). `zone_bias` is the server's bias, used for
/// lines that carry none (rolesetup).
pub fn parse_line(line: &str, zone_bias: Option<i32>) -> Record {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim() == ROTATION_MARKER {
        return Record {
            format: Format::Marker,
            ..Record::unparsed(trimmed)
        };
    }
    if trimmed.starts_with("<![LOG[")
        && let Some(r) = parse_cmtrace(trimmed)
    {
        return r;
    }
    if let Some(r) = parse_sms(trimmed) {
        return r;
    }
    if trimmed.starts_with('<')
        && let Some(mut r) = parse_rolesetup(trimmed)
    {
        r.bias = zone_bias;
        return r;
    }
    Record::unparsed(trimmed)
}

fn parse_sms(line: &str) -> Option<Record> {
    // Try each `$$<` from the last one back: the framing is at the end of the line.
    let mut search_end = line.len();
    while let Some(at) = line[..search_end].rfind("$$<") {
        if let Some((component, time_local, bias, thread)) = parse_sms_framing(&line[at + 2..]) {
            let message = line[..at]
                .strip_suffix("  ")
                .or_else(|| line[..at].strip_suffix(' '))
                .unwrap_or(&line[..at]);
            return Some(Record {
                format: Format::Sms,
                message: message.to_string(),
                component: Some(component),
                thread,
                time_local,
                bias,
                severity: None,
            });
        }
        search_end = at;
    }
    None
}

/// What the SMS framing holds: component, local time, bias, thread.
type Framing = (String, Option<NaiveDateTime>, Option<i32>, Option<u32>);

/// `<COMPONENT><TIME><thread=…>` (trailing whitespace allowed).
fn parse_sms_framing(s: &str) -> Option<Framing> {
    let s = s.trim_end();
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    let component = &rest[..end];
    if component.is_empty() || component.contains(['<', '$']) {
        return None;
    }
    let rest = rest[end + 1..].strip_prefix('<')?;
    let end = rest.find('>')?;
    let stamp = &rest[..end];
    let rest = rest[end + 1..].strip_prefix("<thread=")?;
    let end = rest.find('>')?;
    if !rest[end + 1..].trim().is_empty() {
        return None;
    }
    let thread_text = rest[..end].trim();
    let thread = thread_text.split_whitespace().next().and_then(|t| {
        t.parse::<u32>()
            .ok()
            .or_else(|| u32::from_str_radix(t, 16).ok())
    });
    let (time_local, bias) = parse_sms_stamp(stamp);
    Some((component.to_string(), time_local, bias, thread))
}

/// `MM-DD-YYYY HH:MM:SS.mmm±BIAS`, or the older SMS forms (no bias).
fn parse_sms_stamp(stamp: &str) -> (Option<NaiveDateTime>, Option<i32>) {
    let stamp = stamp.trim();
    if let Some((date, rest)) = stamp.split_once(' ')
        && let Some(d) = parse_mdy(date, '-')
    {
        // The bias starts at the last sign after the seconds.
        let sign_at = rest.rfind(['+', '-']);
        let (clock, bias) = match sign_at {
            Some(i) if i > 0 => (&rest[..i], rest[i..].parse::<i32>().ok()),
            _ => (rest, None),
        };
        if let Some(t) = parse_clock(clock) {
            return (Some(d.and_time(t)), bias);
        }
    }
    // "Fri Mar 26 10:43:41.547 1999 Eastern Standard Time" / "Wed May 21 17:09:27 1997~"
    let parts: Vec<&str> = stamp.trim_end_matches('~').split_whitespace().collect();
    if parts.len() >= 5 {
        let month = month_number(parts[1]);
        let day = parts[2].parse::<u32>().ok();
        let year = parts[4].trim_end_matches('~').parse::<i32>().ok();
        if let (Some(m), Some(d), Some(y), Some(t)) = (month, day, year, parse_clock(parts[3]))
            && let Some(date) = NaiveDate::from_ymd_opt(y, m, d)
        {
            return (Some(date.and_time(t)), None);
        }
    }
    (None, None)
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let n = name.get(..3)?.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == n).map(|i| i as u32 + 1)
}

/// `MM-DD-YYYY` (or with `/`), also with a two-digit year.
fn parse_mdy(s: &str, sep: char) -> Option<NaiveDate> {
    let mut it = s.split(sep);
    let m = it.next()?.parse::<u32>().ok()?;
    let d = it.next()?.parse::<u32>().ok()?;
    let y_text = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let y = y_text.parse::<i32>().ok()?;
    let y = match y_text.len() {
        2 if y < 70 => 2000 + y,
        2 => 1900 + y,
        4 => y,
        _ => return None,
    };
    NaiveDate::from_ymd_opt(y, m, d)
}

/// `HH:MM:SS` with optional `.fraction` (milliseconds, or more digits).
fn parse_clock(s: &str) -> Option<NaiveTime> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let h = it.next()?.trim().parse::<u32>().ok()?;
    let m = it.next()?.parse::<u32>().ok()?;
    let sec = it.next()?.parse::<u32>().ok()?;
    if it.next().is_some() {
        return None;
    }
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    NaiveTime::from_hms_nano_opt(h, m, sec, nanos)
}

/// `<MM/DD/YY HH:MM:SS> message`
fn parse_rolesetup(line: &str) -> Option<Record> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    let (date, clock) = rest[..end].split_once(' ')?;
    let d = parse_mdy(date, '/')?;
    let t = parse_clock(clock)?;
    let message = rest[end + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[end + 1..]);
    Some(Record {
        format: Format::RoleSetup,
        message: message.to_string(),
        component: None,
        thread: None,
        time_local: Some(d.and_time(t)),
        bias: None,
        severity: None,
    })
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = attrs.find(&key)? + key.len();
    let end = attrs[start..].find('"')? + start;
    Some(&attrs[start..end])
}

/// `<![LOG[message]LOG]!><time="…" date="…" component="…" context="" type="1" thread="…" file="…">`
fn parse_cmtrace(record: &str) -> Option<Record> {
    let body = record.strip_prefix("<![LOG[")?;
    let end = body.rfind("]LOG]!>")?;
    let message = &body[..end];
    let attrs = &body[end + "]LOG]!>".len()..];
    let time = attr(attrs, "time");
    let date = attr(attrs, "date").and_then(|d| parse_mdy(d, '-'));
    let (clock, bias) = match time {
        Some(t) => match t.rfind(['+', '-']) {
            Some(i) if i > 0 => (parse_clock(&t[..i]), t[i..].parse::<i32>().ok()),
            _ => (parse_clock(t), None),
        },
        None => (None, None),
    };
    Some(Record {
        format: Format::CmTrace,
        message: message.to_string(),
        component: attr(attrs, "component").map(str::to_string),
        thread: attr(attrs, "thread").and_then(|t| t.parse().ok()),
        time_local: match (date, clock) {
            (Some(d), Some(t)) => Some(d.and_time(t)),
            _ => None,
        },
        bias,
        severity: attr(attrs, "type").and_then(|t| t.parse().ok()),
    })
}

/// Whether a CMTrace record that starts on this line is still open (its `]LOG]!>` and closing
/// `>` are on a later physical line).
pub fn cmtrace_open(first_line: &str) -> bool {
    first_line.starts_with("<![LOG[") && !cmtrace_complete(first_line)
}

/// Whether accumulated CMTrace text holds the end of the record.
pub fn cmtrace_complete(text: &str) -> bool {
    match text.rfind("]LOG]!>") {
        Some(i) => text[i..].trim_end().ends_with('>') && text[i + 7..].contains("time="),
        None => false,
    }
}

#[cfg(test)]
mod tests;
