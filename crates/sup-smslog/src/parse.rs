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

/// How a CMTrace record begins.
pub(crate) const CMTRACE_OPEN: &str = "<![LOG[";

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

/// A parsed record that owns its text. `message` keeps `~~` as written;
/// [`Record::display_message`] shows it as line breaks.
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

/// A parsed record that borrows its text from the line it was parsed from, so parsing a line
/// written the usual way allocates nothing; [`RecordRef::into_owned`] makes a [`Record`] of it when one must outlive
/// the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub format: Format,
    pub message: &'a str,
    pub component: Option<&'a str>,
    pub thread: Option<u32>,
    pub time_local: Option<NaiveDateTime>,
    /// Minutes, UTC = local + bias. `None` when the line carries no zone and none was configured.
    pub bias: Option<i32>,
    /// CMTrace severity: 1 info, 2 warning, 3 error.
    pub severity: Option<u8>,
}

fn utc(local: Option<NaiveDateTime>, bias: Option<i32>) -> Option<DateTime<Utc>> {
    local?
        .checked_add_signed(Duration::minutes(i64::from(bias?)))
        .map(|t| t.and_utc())
}

impl Record {
    pub fn time_utc(&self) -> Option<DateTime<Utc>> {
        utc(self.time_local, self.bias)
    }

    pub fn display_message(&self) -> String {
        self.message.replace("~~", "\n")
    }

    /// The same record, borrowing this one's text.
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            format: self.format,
            message: &self.message,
            component: self.component.as_deref(),
            thread: self.thread,
            time_local: self.time_local,
            bias: self.bias,
            severity: self.severity,
        }
    }
}

impl<'a> RecordRef<'a> {
    pub fn time_utc(&self) -> Option<DateTime<Utc>> {
        utc(self.time_local, self.bias)
    }

    pub fn into_owned(self) -> Record {
        Record {
            format: self.format,
            message: self.message.to_string(),
            component: self.component.map(str::to_string),
            thread: self.thread,
            time_local: self.time_local,
            bias: self.bias,
            severity: self.severity,
        }
    }

    fn unparsed(line: &'a str) -> Self {
        RecordRef {
            format: Format::Unparsed,
            message: line,
            component: None,
            thread: None,
            time_local: None,
            bias: None,
            severity: None,
        }
    }
}

/// Parses one line (or an assembled CMTrace record) into a record that owns its text; see
/// [`parse_record`].
pub fn parse_line(line: &str, zone_bias: Option<i32>) -> Record {
    parse_record(line, zone_bias).into_owned()
}

/// Parses one line (or an assembled CMTrace record), borrowing from it. `zone_bias` is the
/// server's bias, used for lines that carry none (rolesetup).
pub fn parse_record(line: &str, zone_bias: Option<i32>) -> RecordRef<'_> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    // Most lines do not start with `<`: they are done with after one byte.
    let head = trimmed.trim_start();
    if head.as_bytes().first() == Some(&b'<')
        && head.starts_with(ROTATION_MARKER)
        && head.trim_end() == ROTATION_MARKER
    {
        return RecordRef {
            format: Format::Marker,
            ..RecordRef::unparsed(trimmed)
        };
    }
    if trimmed.starts_with(CMTRACE_OPEN)
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
    RecordRef::unparsed(trimmed)
}

/// The last `$$<` of a text: the SMS framing is at the end of a line, so it is searched for from
/// the end.
static FRAMING_START: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new("$$<"));

/// The framing of a line written as ConfigMgr writes it, `$$<COMPONENT><STAMP><thread=…>` at
/// its end, and where its `$$<` starts: found by walking back over its three `<`, where the
/// general search tries each `$$<` from the last one back. No `$$<` can follow the one found
/// here (each later `<` is preceded by a `>`), and its parts are read as [`parse_sms_framing`]
/// reads them, so where this finds a framing it is the one the general search takes (a property
/// test holds it to that). `None` sends the line to the general search.
fn framing_as_written(line: &str) -> Option<(usize, Framing<'_>)> {
    let bytes = line.as_bytes();
    let end = bytes.trim_ascii_end();
    if end.last() != Some(&b'>') {
        return None;
    }
    let thread = memchr::memrchr(b'<', end)?;
    let stamp = memchr::memrchr(b'<', end[..thread].strip_suffix(b">")?)?;
    let component = memchr::memrchr(b'<', end[..stamp].strip_suffix(b">")?)?;
    let at = component
        .checked_sub(2)
        .filter(|&at| bytes[at] == b'$' && bytes[at + 1] == b'$')?;
    // Every index is of an ASCII byte, so every slice is on character boundaries.
    let name = &line[component + 1..stamp - 1];
    let stamp_text = &line[stamp + 1..thread - 1];
    let thread_text = line[thread..end.len() - 1].strip_prefix("<thread=")?;
    // No `<` can be in the parts (the walk back found the last ones), and the only `>` between
    // the component's `<` and the last `>` are the two that close the component and the stamp:
    // none in the name, the stamp or the thread's part. A stamp and a thread written the usual
    // way are read byte by byte and hold none; only others are searched.
    if name.is_empty() || memchr::memchr2(b'$', b'>', name.as_bytes()).is_some() {
        return None;
    }
    let stamp_as_written = parse_sms_stamp_as_written(stamp_text.as_bytes());
    let thread_id = thread_as_written(thread_text);
    if (stamp_as_written.is_none() || thread_id.is_none())
        && (memchr::memchr(b'>', stamp_text.as_bytes()).is_some()
            || memchr::memchr(b'>', thread_text.as_bytes()).is_some())
    {
        return None;
    }
    let (time_local, bias) = match stamp_as_written {
        Some((time, bias)) => (Some(time), bias),
        None => parse_sms_stamp_any(stamp_text),
    };
    let thread_id = thread_id.or_else(|| parse_thread(thread_text));
    Some((at, (name, time_local, bias, thread_id)))
}

/// The thread id of a thread part written as ConfigMgr writes it, `N (0xHEX)` with `N` a `u32`
/// (what [`parse_thread`] reads from it); `None` for anything else.
fn thread_as_written(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    let digits = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    let [hex @ .., b')'] = b[digits..].strip_prefix(b" (0x")? else {
        return None;
    };
    if digits == 0 || hex.is_empty() || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    b[..digits].iter().try_fold(0u32, |n, &c| {
        n.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

fn parse_sms(line: &str) -> Option<RecordRef<'_>> {
    if let Some((at, framing)) = framing_as_written(line) {
        return Some(sms_record(line, at, framing));
    }
    parse_sms_any(line)
}

/// An SMS line with its framing anywhere [`parse_sms`] finds one, the general way.
fn parse_sms_any(line: &str) -> Option<RecordRef<'_>> {
    // Try each `$$<` from the last one back: a message may itself contain `$$<`.
    let mut search_end = line.len();
    while let Some(at) = FRAMING_START.rfind(&line.as_bytes()[..search_end]) {
        if let Some(framing) = parse_sms_framing(&line[at + 2..]) {
            return Some(sms_record(line, at, framing));
        }
        search_end = at;
    }
    None
}

/// The record of an SMS line whose framing starts at `at` (its `$$<`).
fn sms_record<'a>(
    line: &'a str,
    at: usize,
    (component, time_local, bias, thread): Framing<'a>,
) -> RecordRef<'a> {
    let message = line[..at]
        .strip_suffix("  ")
        .or_else(|| line[..at].strip_suffix(' '))
        .unwrap_or(&line[..at]);
    RecordRef {
        format: Format::Sms,
        message,
        component: Some(component),
        thread,
        time_local,
        bias,
        severity: None,
    }
}

/// What the SMS framing holds: component, local time, bias, thread.
type Framing<'a> = (&'a str, Option<NaiveDateTime>, Option<i32>, Option<u32>);

/// `<COMPONENT><TIME><thread=…>` (trailing whitespace allowed).
fn parse_sms_framing(s: &str) -> Option<Framing<'_>> {
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
    let (time_local, bias) = parse_sms_stamp(stamp);
    Some((component, time_local, bias, parse_thread(&rest[..end])))
}

/// The thread id: the first word of `thread=`'s value, decimal or else hexadecimal.
fn parse_thread(text: &str) -> Option<u32> {
    // The value as ConfigMgr writes it, `N (0xHEX)`: its first word ends at the space.
    let first = text
        .as_bytes()
        .iter()
        .position(|&c| c == b' ')
        .map(|i| &text[..i]);
    let word = match first {
        Some(word) if !word.is_empty() && word.bytes().all(|c| c.is_ascii_digit()) => word,
        _ => text.split_whitespace().next()?,
    };
    word.parse::<u32>()
        .ok()
        .or_else(|| u32::from_str_radix(word, 16).ok())
}

/// `MM-DD-YYYY HH:MM:SS.mmm±BIAS`, or the older SMS forms (no bias).
fn parse_sms_stamp(stamp: &str) -> (Option<NaiveDateTime>, Option<i32>) {
    match parse_sms_stamp_as_written(stamp.as_bytes()) {
        Some((time, bias)) => (Some(time), bias),
        None => parse_sms_stamp_any(stamp),
    }
}

thread_local! {
    /// The last date read as written and its text: a log's lines share their date for hours,
    /// and making a date from its numbers is a good part of reading a stamp.
    static LAST_DATE: std::cell::Cell<Option<([u8; 10], NaiveDate)>> =
        const { std::cell::Cell::new(None) };
}

/// Nanoseconds in a unit of a fraction of 1 to 9 digits.
const NANOS_PER_FRACTION_UNIT: [u32; 9] = [
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// The stamp as ConfigMgr writes it, `MM-DD-YYYY HH:MM:SS.fff` and an optional `±BIAS` with
/// nothing around it, read by position: nearly every line has one, and reading it this way costs
/// a fraction of the general path. `None` for anything else (including a stamp whose numbers make
/// no date or time), which [`parse_sms_stamp_any`] then reads; where both read a stamp, they
/// agree (a property test holds them to it).
fn parse_sms_stamp_as_written(b: &[u8]) -> Option<(NaiveDateTime, Option<i32>)> {
    let (head, rest) = b.split_first_chunk::<20>()?;
    if head[2] != b'-'
        || head[5] != b'-'
        || head[10] != b' '
        || head[13] != b':'
        || head[16] != b':'
        || head[19] != b'.'
    {
        return None;
    }
    let digit = |c: u8| {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let two = |at: usize| Some(digit(head[at])? * 10 + digit(head[at + 1])?);
    let fraction_len = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let scale = *NANOS_PER_FRACTION_UNIT.get(fraction_len.checked_sub(1)?)?;
    let (fraction, sign_and_bias) = rest.split_at(fraction_len);
    let bias = match sign_and_bias {
        [] => None,
        [sign @ (b'+' | b'-'), digits @ ..]
            if !digits.is_empty() && digits.len() <= 9 && digits.iter().all(u8::is_ascii_digit) =>
        {
            let magnitude = digits
                .iter()
                .fold(0i32, |n, &c| n * 10 + i32::from(c - b'0'));
            Some(if *sign == b'-' { -magnitude } else { magnitude })
        }
        _ => return None,
    };
    let nanos = fraction
        .iter()
        .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'))
        * scale;
    let date_text: [u8; 10] = head[..10].try_into().ok()?;
    let date = match LAST_DATE.get() {
        Some((text, date)) if text == date_text => date,
        _ => {
            let year = i32::try_from(two(6)? * 100 + two(8)?).ok()?;
            let date = NaiveDate::from_ymd_opt(year, two(0)?, two(3)?)?;
            LAST_DATE.set(Some((date_text, date)));
            date
        }
    };
    let time = NaiveTime::from_hms_nano_opt(two(11)?, two(14)?, two(17)?, nanos)?;
    Some((date.and_time(time), bias))
}

/// Any SMS stamp [`parse_sms_stamp`] reads, the general way.
fn parse_sms_stamp_any(stamp: &str) -> (Option<NaiveDateTime>, Option<i32>) {
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
fn parse_rolesetup(line: &str) -> Option<RecordRef<'_>> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    let (date, clock) = rest[..end].split_once(' ')?;
    let d = parse_mdy(date, '/')?;
    let t = parse_clock(clock)?;
    let message = rest[end + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[end + 1..]);
    Some(RecordRef {
        format: Format::RoleSetup,
        message,
        component: None,
        thread: None,
        time_local: Some(d.and_time(t)),
        bias: None,
        severity: None,
    })
}

/// The value of the first `name="…"` in `attrs`.
fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = attrs[from..].find(name) {
        let after = from + i + name.len();
        if let Some(value) = attrs[after..].strip_prefix("=\"") {
            return value.find('"').map(|end| &value[..end]);
        }
        from = from + i + 1;
    }
    None
}

/// `<![LOG[message]LOG]!><time="…" date="…" component="…" context="" type="1" thread="…" file="…">`
fn parse_cmtrace(record: &str) -> Option<RecordRef<'_>> {
    let body = record.strip_prefix(CMTRACE_OPEN)?;
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
    Some(RecordRef {
        format: Format::CmTrace,
        message,
        component: attr(attrs, "component"),
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
    first_line.starts_with(CMTRACE_OPEN) && !cmtrace_complete(first_line)
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
