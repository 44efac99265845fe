//! A time zone for lines that carry none (SUPSetup.log's rolesetup stamps), read from the file.
//!
//! The server stamps each line with its local time, and its file system records in UTC when the
//! file was last written. For the last line of a file that did not change while it was looked
//! at, the two differ by the server's bias (UTC = local + bias) plus the moment between stamping
//! and writing. Windows biases are whole quarter hours from −840 (UTC+14) to +720 (UTC−12);
//! a difference that is not within [`SLACK_SECS`] of one of them gives no bias, and neither does
//! a file whose last line has no rolesetup stamp. Because the file says which bias held when it
//! was last written, the answer follows summer time, and it is the server's own clock that
//! wrote both.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::decode::{Encoding, decode_line};
use crate::parse::{Format, parse_record};

/// How far a difference may be from a whole quarter hour: a rolesetup stamp is cut to the
/// second, and a write, or a file system's record of it, can trail its stamp.
pub const SLACK_SECS: i64 = 120;

/// The easternmost Windows bias, UTC+14.
const MIN_BIAS: i64 = -840;
/// The westernmost Windows bias, UTC−12.
const MAX_BIAS: i64 = 720;
/// How much of a file's end is read for its last line.
const TAIL_BYTES: u64 = 4096;
/// Looks at a file that was written to while it was read before giving up.
const ATTEMPTS: usize = 3;

/// The bias (minutes, UTC = local + bias) for a line stamped `last_local` in local time and
/// written at `modified`, or `None` when the two are not a quarter-hour bias apart.
pub fn bias_from_modified(last_local: NaiveDateTime, modified: DateTime<Utc>) -> Option<i32> {
    let difference = modified
        .naive_utc()
        .signed_duration_since(last_local)
        .num_seconds();
    let bias = difference
        .saturating_add(450)
        .div_euclid(900)
        .checked_mul(15)?;
    let slack = difference.checked_sub(bias.checked_mul(60)?)?;
    ((MIN_BIAS..=MAX_BIAS).contains(&bias) && slack.abs() <= SLACK_SECS)
        .then(|| i32::try_from(bias).ok())
        .flatten()
}

/// The bias of the server that writes the file at `path`, from its last line's rolesetup stamp
/// and its last-write time. `Ok(None)` when the file does not tell (its last line has no such
/// stamp, the two disagree, or it kept changing while it was read).
pub fn file_zone_bias(path: &Path) -> io::Result<Option<i32>> {
    for _ in 0..ATTEMPTS {
        if let Some(answer) = look_once(path)? {
            return Ok(answer);
        }
    }
    Ok(None)
}

/// One look: `None` when the file changed while it was read.
fn look_once(path: &Path) -> io::Result<Option<Option<i32>>> {
    let before = std::fs::metadata(path)?;
    let mut file = File::open(path)?;
    let mut head = [0u8; 3];
    let head_len = file.read(&mut head)?;
    let (encoding, bom) = Encoding::sniff(&head[..head_len]);
    let len = before.len();
    let mut start = len.saturating_sub(TAIL_BYTES).max(bom as u64);
    if encoding == Encoding::Utf16Le && (start - bom as u64) % 2 == 1 {
        start += 1;
    }
    file.seek(SeekFrom::Start(start))?;
    let Some(wanted) = len.checked_sub(start) else {
        return Ok(None);
    };
    let mut tail = Vec::new();
    file.take(wanted).read_to_end(&mut tail)?;
    let after = std::fs::metadata(path)?;
    if after.len() != len
        || after.modified().ok() != before.modified().ok()
        || tail.len() as u64 != wanted
    {
        return Ok(None);
    }
    let Some(modified) = before.modified().ok().and_then(to_utc) else {
        return Ok(Some(None));
    };
    Ok(Some(last_line_bias(
        &tail,
        encoding,
        start == bom as u64,
        modified,
    )))
}

/// A file time as UTC, `None` where it is out of chrono's range (chrono's own conversion panics
/// there) or before 1970.
fn to_utc(t: SystemTime) -> Option<DateTime<Utc>> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    DateTime::from_timestamp(i64::try_from(since.as_secs()).ok()?, since.subsec_nanos())
}

/// The bias from the last non-empty line of `tail`: the end of a file whose start is in it when
/// `whole` is set, otherwise its first line may be cut and does not count.
fn last_line_bias(
    tail: &[u8],
    encoding: Encoding,
    whole: bool,
    modified: DateTime<Utc>,
) -> Option<i32> {
    // A UTF-16 file of odd length ends in half a unit, which is no part of a line yet.
    let whole_units = match encoding {
        Encoding::Utf16Le => tail.len() - tail.len() % 2,
        _ => tail.len(),
    };
    let text = decode_line(&tail[..whole_units], encoding);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if !whole {
        lines.remove(0);
    }
    let last = lines
        .into_iter()
        .rev()
        .map(|l| l.trim_end_matches(['\r', '\0']))
        .find(|l| !l.trim().is_empty())?;
    let record = parse_record(last, None);
    if record.format != Format::RoleSetup {
        return None;
    }
    bias_from_modified(record.time_local?, modified)
}

#[cfg(test)]
mod tests;
