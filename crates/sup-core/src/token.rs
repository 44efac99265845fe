//! ConfigMgr schedule tokens: the 16-hex-digit strings of `SMS_ScheduleMethods`
//! (`ReadFromString` / `WriteToString`), such as the `Sync Schedule` value of
//! `SMS_WSUS_SYNC_MANAGER` (`0001200000100038`, every 7 days). Two DWORDs: the first holds the
//! start (minute, hour, day, month, year − 1970) and the minute duration; the second the hour and
//! day durations, the recurrence type tag (1–5), the type's fields and IsGMT. Several tokens may
//! follow each other with no separator. Values out of range are refused, never clamped.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::schedule::{IntervalUnit, Recurrence, Schedule, SyncSchedule, WeekOrder};

/// What a token schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    NonRecurring,
    Interval {
        day_span: u32,
        hour_span: u32,
        minute_span: u32,
    },
    /// `weekday` 1 = Sunday … 7 = Saturday.
    Weekly {
        weekday: u32,
        weeks: u32,
    },
    /// `week_order` 0 = last, 1–4 = first to fourth.
    MonthlyByWeekday {
        weekday: u32,
        week_order: u32,
        months: u32,
    },
    /// `month_day` 0 = last day of the month.
    MonthlyByDate {
        month_day: u32,
        months: u32,
    },
}

/// One decoded token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Local wall-clock time unless `is_gmt`; no seconds.
    pub start: NaiveDateTime,
    pub is_gmt: bool,
    pub day_duration: u32,
    pub hour_duration: u32,
    pub minute_duration: u32,
    pub kind: TokenKind,
    /// Bits of the second DWORD that the type does not use, kept so that a token read with them
    /// set is written back unchanged.
    pub unused_bits: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "a schedule token is 16 hexadecimal digits (or several of them concatenated); {0:?} has {1}"
    )]
    Length(String, usize),
    #[error("{0:?} is not hexadecimal")]
    NotHex(String),
    #[error(
        "{token}: unknown recurrence type tag {tag} (1 non-recurring, 2 interval, 3 weekly, 4 monthly by weekday, 5 monthly by date)"
    )]
    UnknownType { token: String, tag: u32 },
    #[error("{token}: {field} is {value}, outside {range}")]
    Range {
        token: String,
        field: &'static str,
        value: u32,
        range: &'static str,
    },
    #[error("{token}: {0} is not a date", token = .1)]
    Date(String, String),
    #[error("{0}")]
    Json(String),
}

fn bits(v: u32, shift: u32, mask: u32) -> u32 {
    (v >> shift) & mask
}

/// The bits each type uses in the second DWORD (besides durations, tag and IsGMT).
fn used_mask(tag: u32) -> u32 {
    let common = (0x1F << 27) | (0x1F << 22) | (0x7 << 19) | 1;
    common
        | match tag {
            2 => (0x3F << 13) | (0x1F << 8) | (0x1F << 3),
            3 => (0x7 << 16) | (0x7 << 13),
            4 => (0x7 << 16) | (0xF << 12) | (0x7 << 9),
            5 => (0x1F << 14) | (0xF << 10),
            _ => 0,
        }
}

fn check(
    token: &str,
    field: &'static str,
    value: u32,
    lo: u32,
    hi: u32,
    range: &'static str,
) -> Result<u32, TokenError> {
    if value < lo || value > hi {
        return Err(TokenError::Range {
            token: token.to_string(),
            field,
            value,
            range,
        });
    }
    Ok(value)
}

/// Decodes one or more concatenated tokens (case-insensitive).
pub fn decode(text: &str) -> Result<Vec<Token>, TokenError> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(16) {
        return Err(TokenError::Length(text.to_string(), text.len()));
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::NotHex(text.to_string()));
    }
    (0..text.len() / 16)
        .map(|i| decode_one(&text[i * 16..i * 16 + 16]))
        .collect()
}

fn decode_one(t: &str) -> Result<Token, TokenError> {
    let value = u64::from_str_radix(t, 16).map_err(|_| TokenError::NotHex(t.to_string()))?;
    let dw1 = (value >> 32) as u32;
    let dw2 = value as u32;
    let minute = check(t, "start minute", bits(dw1, 26, 0x3F), 0, 59, "0-59")?;
    let hour = check(t, "start hour", bits(dw1, 21, 0x1F), 0, 23, "0-23")?;
    let day = check(t, "start day", bits(dw1, 16, 0x1F), 1, 31, "1-31")?;
    let month = check(t, "start month", bits(dw1, 12, 0xF), 1, 12, "1-12")?;
    let year = 1970 + bits(dw1, 6, 0x3F) as i32;
    let minute_duration = check(t, "minute_duration", bits(dw1, 0, 0x3F), 0, 59, "0-59")?;
    let hour_duration = check(t, "hour_duration", bits(dw2, 27, 0x1F), 0, 23, "0-23")?;
    let day_duration = bits(dw2, 22, 0x1F);
    let tag = bits(dw2, 19, 0x7);
    let start = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(hour, minute, 0))
        .ok_or_else(|| TokenError::Date(format!("{year:04}-{month:02}-{day:02}"), t.to_string()))?;
    let kind = match tag {
        1 => TokenKind::NonRecurring,
        2 => {
            let minute_span = check(t, "minute_span", bits(dw2, 13, 0x3F), 0, 59, "0-59")?;
            let hour_span = check(t, "hour_span", bits(dw2, 8, 0x1F), 0, 23, "0-23")?;
            let day_span = bits(dw2, 3, 0x1F);
            if minute_span + hour_span + day_span == 0 {
                return Err(TokenError::Range {
                    token: t.to_string(),
                    field: "interval",
                    value: 0,
                    range: "a non-zero day, hour or minute span",
                });
            }
            TokenKind::Interval {
                day_span,
                hour_span,
                minute_span,
            }
        }
        3 => TokenKind::Weekly {
            weekday: check(t, "weekday", bits(dw2, 16, 0x7), 1, 7, "1-7 (1 = Sunday)")?,
            weeks: check(t, "weeks", bits(dw2, 13, 0x7), 1, 4, "1-4")?,
        },
        4 => TokenKind::MonthlyByWeekday {
            weekday: check(t, "weekday", bits(dw2, 16, 0x7), 1, 7, "1-7 (1 = Sunday)")?,
            months: check(t, "months", bits(dw2, 12, 0xF), 1, 12, "1-12")?,
            week_order: check(t, "week_order", bits(dw2, 9, 0x7), 0, 4, "0-4 (0 = last)")?,
        },
        5 => TokenKind::MonthlyByDate {
            month_day: check(
                t,
                "month_day",
                bits(dw2, 14, 0x1F),
                0,
                31,
                "0-31 (0 = last day)",
            )?,
            months: check(t, "months", bits(dw2, 10, 0xF), 1, 12, "1-12")?,
        },
        tag => {
            return Err(TokenError::UnknownType {
                token: t.to_string(),
                tag,
            });
        }
    };
    Ok(Token {
        start,
        is_gmt: dw2 & 1 == 1,
        day_duration,
        hour_duration,
        minute_duration,
        kind,
        unused_bits: dw2 & !used_mask(tag),
    })
}

/// Encodes tokens, concatenated, upper case.
pub fn encode(tokens: &[Token]) -> Result<String, TokenError> {
    tokens.iter().map(encode_one).collect()
}

fn encode_one(tok: &Token) -> Result<String, TokenError> {
    let t = "token";
    let s = tok.start;
    let year = s.year();
    if !(1970..=2033).contains(&year) {
        return Err(TokenError::Range {
            token: t.into(),
            field: "start year",
            value: year.max(0) as u32,
            range: "1970-2033",
        });
    }
    check(t, "minute_duration", tok.minute_duration, 0, 59, "0-59")?;
    check(t, "hour_duration", tok.hour_duration, 0, 23, "0-23")?;
    check(t, "day_duration", tok.day_duration, 0, 31, "0-31")?;
    let dw1 = (s.minute() << 26)
        | (s.hour() << 21)
        | (s.day() << 16)
        | (s.month() << 12)
        | (((year - 1970) as u32) << 6)
        | tok.minute_duration;
    let (tag, fields) = match tok.kind {
        TokenKind::NonRecurring => (1, 0),
        TokenKind::Interval {
            day_span,
            hour_span,
            minute_span,
        } => {
            check(t, "minute_span", minute_span, 0, 59, "0-59")?;
            check(t, "hour_span", hour_span, 0, 23, "0-23")?;
            check(t, "day_span", day_span, 0, 31, "0-31")?;
            if day_span + hour_span + minute_span == 0 {
                return Err(TokenError::Range {
                    token: t.into(),
                    field: "interval",
                    value: 0,
                    range: "a non-zero day, hour or minute span",
                });
            }
            (2, (minute_span << 13) | (hour_span << 8) | (day_span << 3))
        }
        TokenKind::Weekly { weekday, weeks } => {
            check(t, "weekday", weekday, 1, 7, "1-7 (1 = Sunday)")?;
            check(t, "weeks", weeks, 1, 4, "1-4")?;
            (3, (weekday << 16) | (weeks << 13))
        }
        TokenKind::MonthlyByWeekday {
            weekday,
            week_order,
            months,
        } => {
            check(t, "weekday", weekday, 1, 7, "1-7 (1 = Sunday)")?;
            check(t, "week_order", week_order, 0, 4, "0-4 (0 = last)")?;
            check(t, "months", months, 1, 12, "1-12")?;
            (4, (weekday << 16) | (months << 12) | (week_order << 9))
        }
        TokenKind::MonthlyByDate { month_day, months } => {
            check(t, "month_day", month_day, 0, 31, "0-31 (0 = last day)")?;
            check(t, "months", months, 1, 12, "1-12")?;
            (5, (month_day << 14) | (months << 10))
        }
    };
    let dw2 = (tok.hour_duration << 27)
        | (tok.day_duration << 22)
        | (tag << 19)
        | fields
        | u32::from(tok.is_gmt)
        | (tok.unused_bits & !used_mask(tag));
    Ok(format!("{dw1:08X}{dw2:08X}"))
}

/// The JSON form (the contract of `supctl schedule decode -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub start: String,
    #[serde(default)]
    pub is_gmt: bool,
    #[serde(default)]
    pub day_duration: u32,
    #[serde(default)]
    pub hour_duration: u32,
    #[serde(default)]
    pub minute_duration: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_span: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_span: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minute_span: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weeks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub week_order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month_day: Option<u32>,
    /// Set bits the type does not use (rare; hand-made tokens), kept for a faithful round trip.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unused_bits: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl From<&Token> for TokenJson {
    fn from(t: &Token) -> Self {
        let mut j = TokenJson {
            kind: String::new(),
            start: t.start.format("%Y-%m-%dT%H:%M:%S").to_string(),
            is_gmt: t.is_gmt,
            day_duration: t.day_duration,
            hour_duration: t.hour_duration,
            minute_duration: t.minute_duration,
            day_span: None,
            hour_span: None,
            minute_span: None,
            weekday: None,
            weeks: None,
            week_order: None,
            months: None,
            month_day: None,
            unused_bits: t.unused_bits,
        };
        match t.kind {
            TokenKind::NonRecurring => j.kind = "non_recurring".into(),
            TokenKind::Interval {
                day_span,
                hour_span,
                minute_span,
            } => {
                j.kind = "interval".into();
                (j.day_span, j.hour_span, j.minute_span) =
                    (Some(day_span), Some(hour_span), Some(minute_span));
            }
            TokenKind::Weekly { weekday, weeks } => {
                j.kind = "weekly".into();
                (j.weekday, j.weeks) = (Some(weekday), Some(weeks));
            }
            TokenKind::MonthlyByWeekday {
                weekday,
                week_order,
                months,
            } => {
                j.kind = "monthly_by_weekday".into();
                (j.weekday, j.week_order, j.months) =
                    (Some(weekday), Some(week_order), Some(months));
            }
            TokenKind::MonthlyByDate { month_day, months } => {
                j.kind = "monthly_by_date".into();
                (j.month_day, j.months) = (Some(month_day), Some(months));
            }
        }
        j
    }
}

impl TryFrom<&TokenJson> for Token {
    type Error = TokenError;

    fn try_from(j: &TokenJson) -> Result<Self, TokenError> {
        let start = crate::schedule::parse_local_datetime(&j.start).ok_or_else(|| {
            TokenError::Json(format!("start {:?} is not YYYY-MM-DDTHH:MM:SS", j.start))
        })?;
        let need = |v: Option<u32>, name: &str| {
            v.ok_or_else(|| TokenError::Json(format!("a {} token needs {name}", j.kind)))
        };
        let kind = match j.kind.as_str() {
            "non_recurring" => TokenKind::NonRecurring,
            "interval" => TokenKind::Interval {
                day_span: j.day_span.unwrap_or(0),
                hour_span: j.hour_span.unwrap_or(0),
                minute_span: j.minute_span.unwrap_or(0),
            },
            "weekly" => TokenKind::Weekly {
                weekday: need(j.weekday, "weekday")?,
                weeks: need(j.weeks, "weeks")?,
            },
            "monthly_by_weekday" => TokenKind::MonthlyByWeekday {
                weekday: need(j.weekday, "weekday")?,
                week_order: need(j.week_order, "week_order")?,
                months: need(j.months, "months")?,
            },
            "monthly_by_date" => TokenKind::MonthlyByDate {
                month_day: need(j.month_day, "month_day")?,
                months: need(j.months, "months")?,
            },
            other => {
                return Err(TokenError::Json(format!(
                    "type {other:?} is not non_recurring, interval, weekly, monthly_by_weekday or monthly_by_date"
                )));
            }
        };
        let t = Token {
            start: start.with_second(0).unwrap_or(start),
            is_gmt: j.is_gmt,
            day_duration: j.day_duration,
            hour_duration: j.hour_duration,
            minute_duration: j.minute_duration,
            kind,
            unused_bits: j.unused_bits,
        };
        encode_one(&t)?;
        Ok(t)
    }
}

/// A site's sync schedule from tokens (the import from a real site).
pub fn to_schedule(tokens: &[Token]) -> Result<SyncSchedule, TokenError> {
    let Some(first) = tokens.first() else {
        return Ok(SyncSchedule::Manual);
    };
    let unsupported = |why: &str| TokenError::Json(why.to_string());
    let weekday = |n: u32| {
        crate::schedule::weekday_from_number(n).ok_or_else(|| unsupported("weekday out of range"))
    };
    let recurrence = match first.kind {
        TokenKind::NonRecurring => {
            return Err(unsupported(
                "a non-recurring token runs once; a sync schedule is recurring (or manual)",
            ));
        }
        TokenKind::Interval {
            day_span,
            hour_span,
            minute_span,
        } => match (day_span, hour_span, minute_span) {
            (0, h, 0) if (1..=23).contains(&h) => Recurrence::Interval {
                every: h,
                unit: IntervalUnit::Hours,
            },
            (d, 0, 0) if (1..=31).contains(&d) => Recurrence::Interval {
                every: d,
                unit: IntervalUnit::Days,
            },
            _ => {
                return Err(unsupported(
                    "the synchronization schedule runs every 1-23 hours or 1-31 days; this interval mixes units or uses minutes",
                ));
            }
        },
        TokenKind::Weekly { .. } => {
            let mut days = Vec::new();
            let mut every = 1;
            for t in tokens {
                match t.kind {
                    TokenKind::Weekly { weekday: w, weeks } => {
                        days.push(weekday(w)?);
                        every = weeks;
                    }
                    _ => {
                        return Err(unsupported(
                            "weekly tokens cannot be mixed with other kinds",
                        ));
                    }
                }
            }
            Recurrence::Weekly {
                days,
                every_weeks: every,
            }
        }
        TokenKind::MonthlyByWeekday {
            weekday: w,
            week_order,
            months,
        } => Recurrence::MonthlyByWeekday {
            week: if week_order == 0 {
                WeekOrder::Last
            } else {
                WeekOrder::Nth(week_order as u8)
            },
            weekday: weekday(w)?,
            every_months: months,
        },
        TokenKind::MonthlyByDate { month_day, months } => Recurrence::MonthlyByDate {
            day: month_day,
            every_months: months,
        },
    };
    Ok(SyncSchedule::Recurring(Schedule {
        start: first.start,
        recurrence,
        gmt: first.is_gmt,
    }))
}

/// Tokens for a site's sync schedule (the export to a real site); empty for manual.
pub fn from_schedule(s: &SyncSchedule) -> Result<String, TokenError> {
    let SyncSchedule::Recurring(s) = s else {
        return Ok(String::new());
    };
    let base = Token {
        start: s.start,
        is_gmt: s.gmt,
        day_duration: 0,
        hour_duration: 0,
        minute_duration: 0,
        kind: TokenKind::NonRecurring,
        unused_bits: 0,
    };
    let number = |d: chrono::Weekday| d.num_days_from_sunday() + 1;
    let tokens: Vec<Token> = match &s.recurrence {
        Recurrence::Interval { every, unit } => vec![Token {
            kind: match unit {
                IntervalUnit::Hours => TokenKind::Interval {
                    day_span: 0,
                    hour_span: *every,
                    minute_span: 0,
                },
                IntervalUnit::Days => TokenKind::Interval {
                    day_span: *every,
                    hour_span: 0,
                    minute_span: 0,
                },
                // N weeks as a 7·N-day interval, which is certainly valid.
                IntervalUnit::Weeks => TokenKind::Interval {
                    day_span: every * 7,
                    hour_span: 0,
                    minute_span: 0,
                },
            },
            ..base
        }],
        Recurrence::Weekly { days, every_weeks } => days
            .iter()
            .map(|d| Token {
                kind: TokenKind::Weekly {
                    weekday: number(*d),
                    weeks: *every_weeks,
                },
                ..base
            })
            .collect(),
        Recurrence::MonthlyByWeekday {
            week,
            weekday,
            every_months,
        } => vec![Token {
            kind: TokenKind::MonthlyByWeekday {
                weekday: number(*weekday),
                week_order: match week {
                    WeekOrder::Last => 0,
                    WeekOrder::Nth(n) => u32::from(*n),
                },
                months: *every_months,
            },
            ..base
        }],
        Recurrence::MonthlyByDate { day, every_months } => vec![Token {
            kind: TokenKind::MonthlyByDate {
                month_day: *day,
                months: *every_months,
            },
            ..base
        }],
    };
    encode(&tokens)
}

/// Whether text looks like tokens (16·k hex digits) rather than a schedule phrase.
pub fn looks_like_token(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.len().is_multiple_of(16) && t.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(t: &str) -> Token {
        let v = decode(t).expect("valid");
        assert_eq!(v.len(), 1);
        v[0]
    }

    #[test]
    fn worked_examples() {
        let t = one("0001200000100038");
        assert_eq!(t.start.to_string(), "1970-02-01 00:00:00");
        assert_eq!(
            t.kind,
            TokenKind::Interval {
                day_span: 7,
                hour_span: 0,
                minute_span: 0
            }
        );
        let t = one("A9788980001B4000");
        assert_eq!(t.start.to_string(), "2008-08-24 11:42:00");
        assert_eq!(
            t.kind,
            TokenKind::Weekly {
                weekday: 3,
                weeks: 2
            }
        );
        let t = one("00811A9E08221600");
        assert_eq!(t.start.to_string(), "2012-01-01 04:00:00");
        assert_eq!((t.minute_duration, t.hour_duration), (30, 1));
        assert_eq!(
            t.kind,
            TokenKind::MonthlyByWeekday {
                weekday: 2,
                week_order: 3,
                months: 1
            }
        );
        let t = one("1033BC7B10100010");
        assert_eq!(t.start.to_string(), "2019-11-19 01:04:00");
        assert_eq!((t.minute_duration, t.hour_duration), (59, 2));
        assert_eq!(
            t.kind,
            TokenKind::Interval {
                day_span: 2,
                hour_span: 0,
                minute_span: 0
            }
        );
        // The SDK's three-token string.
        assert_eq!(
            decode("791378800008000055147880001B200055177880001E2000")
                .expect("three")
                .len(),
            3
        );
        // Lower case accepted, upper case written.
        assert_eq!(
            encode(&decode("a9788980001b4000").expect("lower")).expect("enc"),
            "A9788980001B4000"
        );
    }

    #[test]
    fn round_trips_and_the_hand_made_mock() {
        for t in [
            "0001200000100038",
            "A9788980001B4000",
            "00811A9E08221600",
            "1033BC7B10100010",
            "0034394008100008",
            "00343940081A2000",
            "0034394008284400",
            "00012CC008231400",
            "0001200000100037",
            "791378800008000055147880001B200055177880001E2000",
        ] {
            assert_eq!(encode(&decode(t).expect(t)).expect(t), t);
            let json: Vec<TokenJson> = decode(t).expect(t).iter().map(TokenJson::from).collect();
            let back: Vec<Token> = json
                .iter()
                .map(|j| Token::try_from(j).expect("json"))
                .collect();
            assert_eq!(encode(&back).expect("enc"), t, "through JSON");
        }
    }

    #[test]
    fn invalid_tokens_are_errors() {
        assert!(matches!(
            decode("00012000001000"),
            Err(TokenError::Length(..))
        ));
        assert!(matches!(
            decode("0001200000100038A"),
            Err(TokenError::Length(..))
        ));
        assert!(matches!(
            decode("000120000010003G"),
            Err(TokenError::NotHex(_))
        ));
        assert!(matches!(
            decode("0001200000000000"),
            Err(TokenError::UnknownType { tag: 0, .. })
        ));
        assert!(matches!(
            decode("0001200000300000"),
            Err(TokenError::UnknownType { tag: 6, .. })
        ));
        // Month 13.
        assert!(matches!(
            decode("0001D00000100038"),
            Err(TokenError::Range {
                field: "start month",
                ..
            })
        ));
        // Weekly with weekday 0.
        assert!(matches!(
            decode("0001200000182000"),
            Err(TokenError::Range {
                field: "weekday",
                ..
            })
        ));
        // An interval of nothing.
        assert!(matches!(
            decode("0001200000100000"),
            Err(TokenError::Range { .. })
        ));
        // February 30th.
        assert!(matches!(
            decode("001E200000100038"),
            Err(TokenError::Date(..))
        ));
    }

    #[test]
    fn schedules_import_and_export() {
        assert_eq!(
            to_schedule(&decode("0001200000100038").expect("t")).expect("s"),
            crate::schedule::SyncSchedule::Recurring(Schedule {
                start: crate::schedule::parse_local_datetime("1970-02-01T00:00:00").expect("d"),
                recurrence: Recurrence::Interval {
                    every: 7,
                    unit: IntervalUnit::Days
                },
                gmt: false,
            })
        );
        // The console's default: a simple schedule of 7 days with no start of its own.
        assert_eq!(
            from_schedule(&crate::schedule::default_schedule()).expect("export"),
            "0001200000100038"
        );
        assert_eq!(
            from_schedule(&crate::schedule::parse_text("every 7 days").expect("text"))
                .expect("export"),
            "0001200000100038"
        );
        // IsGMT survives the import and the export.
        let gmt = to_schedule(&decode("0001200000100039").expect("t")).expect("s");
        assert!(matches!(&gmt, SyncSchedule::Recurring(s) if s.gmt));
        assert_eq!(from_schedule(&gmt).expect("export"), "0001200000100039");
        let s = to_schedule(&decode("A9788980001B4000").expect("t")).expect("s");
        assert_eq!(from_schedule(&s).expect("export"), "A9788980001B4000");
        assert_eq!(from_schedule(&SyncSchedule::Manual).expect("manual"), "");
        assert!(
            to_schedule(&decode("00811A9E08080000").expect("t")).is_err(),
            "non-recurring"
        );
    }

    fn any_token() -> impl Strategy<Value = Token> {
        let kind = prop_oneof![
            Just(TokenKind::NonRecurring),
            (0u32..=31, 0u32..=23, 0u32..=59)
                .prop_filter("non-zero", |(d, h, m)| d + h + m > 0)
                .prop_map(|(day_span, hour_span, minute_span)| TokenKind::Interval {
                    day_span,
                    hour_span,
                    minute_span
                }),
            (1u32..=7, 1u32..=4).prop_map(|(weekday, weeks)| TokenKind::Weekly { weekday, weeks }),
            (1u32..=7, 0u32..=4, 1u32..=12).prop_map(|(weekday, week_order, months)| {
                TokenKind::MonthlyByWeekday {
                    weekday,
                    week_order,
                    months,
                }
            }),
            (0u32..=31, 1u32..=12)
                .prop_map(|(month_day, months)| TokenKind::MonthlyByDate { month_day, months }),
        ];
        (
            kind,
            0i64..(63 * 365 * 24 * 60),
            any::<bool>(),
            0u32..=31,
            0u32..=23,
            0u32..=59,
        )
            .prop_map(|(kind, mins, is_gmt, dd, hd, md)| {
                let base =
                    crate::schedule::parse_local_datetime("1970-01-01T00:00:00").expect("base");
                Token {
                    start: base + chrono::Duration::minutes(mins),
                    is_gmt,
                    day_duration: dd,
                    hour_duration: hd,
                    minute_duration: md,
                    kind,
                    unused_bits: 0,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn encode_then_decode_is_identity(tokens in proptest::collection::vec(any_token(), 1..4)) {
            let text = encode(&tokens).expect("in range");
            prop_assert_eq!(text.len(), 16 * tokens.len());
            prop_assert_eq!(decode(&text).expect("decodes"), tokens);
        }

        #[test]
        fn any_string_decodes_or_errors_without_panicking(s in "[0-9A-Fa-fxz]{0,40}") {
            if let Ok(tokens) = decode(&s) {
                prop_assert_eq!(encode(&tokens).expect("valid tokens encode"), s.to_ascii_uppercase());
            }
        }
    }
}
