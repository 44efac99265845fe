//! Synchronization schedules as the Sync Schedule tab offers them, and a pure next-fire function.
//!
//! Times are the site's local wall-clock time (`NaiveDateTime`); `next_fire_utc` maps them to
//! instants with the site's IANA time zone, across daylight-saving changes. A simple schedule fires at `start + k × interval`; a custom one on its
//! calendar rule at the time of day of `start`, counting every-N weeks or months from `start`.

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Utc, Weekday,
};
use chrono_tz::Tz;

/// When a site synchronizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSchedule {
    /// No schedule: only the manual "Run Synchronization" action.
    Manual,
    Recurring(Schedule),
}

/// A recurring schedule anchored at `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The site's local wall-clock time, or UTC when `gmt` is set.
    pub start: NaiveDateTime,
    pub recurrence: Recurrence,
    /// The token's IsGMT flag: the schedule runs on UTC rather than the site's local time.
    pub gmt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Hours,
    Days,
    Weeks,
}

/// Which week of the month: the first to the fourth, or the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeekOrder {
    Nth(u8),
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// The simple schedule: every 1–23 hours, 1–31 days or 1–4 weeks.
    Interval { every: u32, unit: IntervalUnit },
    /// Custom: on these days of every `every_weeks` weeks.
    Weekly {
        days: Vec<Weekday>,
        every_weeks: u32,
    },
    /// Custom: on this day of every `every_months` months; day 0 is the last day, and a day the
    /// month does not have falls on its last day.
    MonthlyByDate { day: u32, every_months: u32 },
    /// Custom: on the nth (or last) weekday of every `every_months` months.
    MonthlyByWeekday {
        week: WeekOrder,
        weekday: Weekday,
        every_months: u32,
    },
}

/// The default simple schedule: every 7 days (the console's token `0001200000100038`).
pub fn default_schedule() -> SyncSchedule {
    SyncSchedule::Recurring(Schedule {
        start: default_start(),
        recurrence: Recurrence::Interval {
            every: 7,
            unit: IntervalUnit::Days,
        },
        gmt: false,
    })
}

/// The anchor of a schedule that names no start: 1970-02-01 00:00 local time, the start the
/// console writes into a simple schedule's token (`0001200000100038` decodes to it).
pub fn default_start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1970, 2, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "\"{0}\" is not a schedule: use \"every N hours|days|weeks\", \"manual\" or a custom table"
    )]
    Syntax(String),
    #[error("every {every} {unit}: the simple schedule allows 1-23 hours, 1-31 days or 1-4 weeks")]
    IntervalRange { every: u32, unit: &'static str },
    #[error("{0}")]
    Field(String),
}

impl IntervalUnit {
    fn name(self) -> &'static str {
        match self {
            IntervalUnit::Hours => "hours",
            IntervalUnit::Days => "days",
            IntervalUnit::Weeks => "weeks",
        }
    }

    fn max(self) -> u32 {
        match self {
            IntervalUnit::Hours => 23,
            IntervalUnit::Days => 31,
            IntervalUnit::Weeks => 4,
        }
    }

    fn minutes(self) -> i64 {
        match self {
            IntervalUnit::Hours => 60,
            IntervalUnit::Days => 24 * 60,
            IntervalUnit::Weeks => 7 * 24 * 60,
        }
    }
}

/// Checks a simple interval against the Sync Schedule tab's ranges.
pub fn check_interval(every: u32, unit: IntervalUnit) -> Result<(), ScheduleError> {
    if every == 0 || every > unit.max() {
        return Err(ScheduleError::IntervalRange {
            every,
            unit: unit.name(),
        });
    }
    Ok(())
}

/// Parses the text forms: `manual` (or `none`), and `every N hour(s)|day(s)|week(s)`.
pub fn parse_text(text: &str) -> Result<SyncSchedule, ScheduleError> {
    let t = text.trim().to_ascii_lowercase();
    if t == "manual" || t == "none" {
        return Ok(SyncSchedule::Manual);
    }
    let alias = match t.as_str() {
        "hourly" => Some("every 1 hour"),
        "daily" => Some("every 1 day"),
        "weekly" => Some("every 1 week"),
        _ => None,
    };
    let t = alias.map(str::to_string).unwrap_or(t);
    let (every, unit) = parse_every(&t).ok_or_else(|| ScheduleError::Syntax(text.to_string()))?;
    check_interval(every, unit)?;
    Ok(SyncSchedule::Recurring(Schedule {
        start: default_start(),
        recurrence: Recurrence::Interval { every, unit },
        gmt: false,
    }))
}

/// `every 7 days`, `every day`, `7 days` → (7, Days).
pub fn parse_every(t: &str) -> Option<(u32, IntervalUnit)> {
    let t = t.trim().to_ascii_lowercase();
    let rest = t.strip_prefix("every").map(str::trim_start).unwrap_or(&t);
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    let (n, unit_word) = match first.parse::<u32>() {
        Ok(n) => (n, words.next()?),
        Err(_) => (1, first),
    };
    if words.next().is_some() {
        return None;
    }
    let unit = match unit_word {
        "hour" | "hours" => IntervalUnit::Hours,
        "day" | "days" => IntervalUnit::Days,
        "week" | "weeks" => IntervalUnit::Weeks,
        _ => return None,
    };
    Some((n, unit))
}

/// Parses a weekday name in English (full or three letters).
pub fn parse_weekday(name: &str) -> Option<Weekday> {
    let n = name.trim().to_ascii_lowercase();
    let all = [
        Weekday::Sun,
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
    ];
    all.into_iter().find(|d| {
        let full = weekday_name(*d).to_ascii_lowercase();
        n == full || (n.len() == 3 && full.starts_with(&n))
    })
}

/// ConfigMgr numbers weekdays from 1 = Sunday.
pub fn weekday_from_number(n: u32) -> Option<Weekday> {
    const BY_NUMBER: [Weekday; 7] = [
        Weekday::Sun,
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
    ];
    n.checked_sub(1)
        .and_then(|i| BY_NUMBER.get(i as usize).copied())
}

pub fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Sun => "Sunday",
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
    }
}

/// Parses `HH:MM` or `HH:MM:SS`.
pub fn parse_time_of_day(t: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(t.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(t.trim(), "%H:%M"))
        .ok()
}

/// Parses `YYYY-MM-DDTHH:MM[:SS]` (a space instead of `T` is accepted).
pub fn parse_local_datetime(t: &str) -> Option<NaiveDateTime> {
    let t = t.trim().replacen(' ', "T", 1);
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M"))
        .ok()
}

impl SyncSchedule {
    /// The first fire time strictly after `after`, or `None` for a manual-only site.
    pub fn next_fire(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        match self {
            SyncSchedule::Manual => None,
            SyncSchedule::Recurring(s) => s.next_fire(after),
        }
    }

    /// The first fire time strictly after the instant `after`, for a site in `zone`: the
    /// schedule's wall-clock times are the site's (or UTC for a GMT schedule).
    pub fn next_fire_utc(&self, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            SyncSchedule::Manual => None,
            SyncSchedule::Recurring(s) => s.next_fire_utc(zone, after),
        }
    }
}

/// The instant a site-local wall-clock time stands for. A time that occurs twice (the hour the
/// clocks go back) is its first occurrence; a time the clocks skip (the hour they go forward) is
/// read with the offset in force before the change, so it fires as many minutes after the jump
/// as it was meant to be after the hour.
pub fn local_to_utc(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            let before = local.checked_sub_signed(Duration::hours(3))?;
            let offset = zone.offset_from_local_datetime(&before).earliest()?;
            let utc = local
                .checked_sub_signed(Duration::seconds(i64::from(offset.fix().local_minus_utc())))?;
            Some(utc.and_utc())
        }
    }
}

impl Schedule {
    /// As [`SyncSchedule::next_fire_utc`].
    pub fn next_fire_utc(&self, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.gmt {
            return self.next_fire(after.naive_utc()).map(|t| t.and_utc());
        }
        let mut local = after.with_timezone(&zone).naive_local();
        // Local times can repeat (the hour the clocks go back): skip fires that map to an
        // instant not after `after`.
        for _ in 0..4 {
            let next = self.next_fire(local)?;
            let at = local_to_utc(zone, next)?;
            if at > after {
                return Some(at);
            }
            local = next;
        }
        None
    }

    /// The first fire time strictly after `after`. Never before `start`.
    pub fn next_fire(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let at = self.start.time();
        match &self.recurrence {
            Recurrence::Interval { every, unit } => {
                let step = i64::from(*every).checked_mul(unit.minutes())?;
                if step <= 0 {
                    return None;
                }
                if after < self.start {
                    return Some(self.start);
                }
                let elapsed = (after - self.start).num_minutes();
                let k = elapsed / step + 1;
                let mut t = self
                    .start
                    .checked_add_signed(Duration::minutes(k.checked_mul(step)?))?;
                // Minute arithmetic drops seconds of `after`; step back if we overshot by one.
                if let Some(prev) = t.checked_sub_signed(Duration::minutes(step))
                    && prev > after
                {
                    t = prev;
                }
                Some(t)
            }
            Recurrence::Weekly { days, every_weeks } => {
                if days.is_empty() || *every_weeks == 0 {
                    return None;
                }
                let anchor = week_start(self.start.date());
                let from = after.date().max(self.start.date());
                // Within every_weeks + 1 weeks, every chosen day of an eligible week has come round.
                let horizon = i64::from(*every_weeks + 1) * 7 + 1;
                (0..horizon).find_map(|offset| {
                    let d = from.checked_add_signed(Duration::days(offset))?;
                    let weeks = (week_start(d) - anchor).num_days() / 7;
                    let candidate = d.and_time(at);
                    (days.contains(&d.weekday())
                        && weeks % i64::from(*every_weeks) == 0
                        && candidate > after
                        && candidate >= self.start)
                        .then_some(candidate)
                })
            }
            Recurrence::MonthlyByDate { day, every_months } => {
                self.next_monthly(after, *every_months, |year, month| {
                    let last = last_day_of_month(year, month)?;
                    let d = if *day == 0 { last } else { (*day).min(last) };
                    NaiveDate::from_ymd_opt(year, month, d)
                })
            }
            Recurrence::MonthlyByWeekday {
                week,
                weekday,
                every_months,
            } => self.next_monthly(after, *every_months, |year, month| {
                nth_weekday(year, month, *week, *weekday)
            }),
        }
    }

    fn next_monthly(
        &self,
        after: NaiveDateTime,
        every_months: u32,
        day_in: impl Fn(i32, u32) -> Option<NaiveDate>,
    ) -> Option<NaiveDateTime> {
        if every_months == 0 {
            return None;
        }
        let at = self.start.time();
        let first = self.start.date().with_day(1)?;
        // Months from the anchor month to `after`'s month, rounded down to a multiple of N.
        let base = after.max(self.start);
        let months_since =
            (base.year() - first.year()) * 12 + base.month() as i32 - first.month() as i32;
        let mut k = (months_since.max(0) as u32 / every_months) * every_months;
        for _ in 0..3 {
            let month_start = first.checked_add_months(Months::new(k))?;
            if let Some(d) = day_in(month_start.year(), month_start.month()) {
                let candidate = d.and_time(at);
                if candidate > after && candidate >= self.start {
                    return Some(candidate);
                }
            }
            k = k.checked_add(every_months)?;
        }
        None
    }
}

/// The Sunday that starts `d`'s week (ConfigMgr counts weekdays from Sunday).
fn week_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_sunday()))
}

fn last_day_of_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = first.checked_add_months(Months::new(1))?;
    Some((next - first).num_days() as u32)
}

fn nth_weekday(year: i32, month: u32, week: WeekOrder, weekday: Weekday) -> Option<NaiveDate> {
    match week {
        WeekOrder::Nth(n) => NaiveDate::from_weekday_of_month_opt(year, month, weekday, n),
        WeekOrder::Last => {
            let last = NaiveDate::from_ymd_opt(year, month, last_day_of_month(year, month)?)?;
            let back =
                (7 + last.weekday().num_days_from_sunday() - weekday.num_days_from_sunday()) % 7;
            Some(last - Duration::days(i64::from(back)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dt(s: &str) -> NaiveDateTime {
        parse_local_datetime(s).expect("test datetime")
    }

    fn sched(start: &str, recurrence: Recurrence) -> Schedule {
        Schedule {
            start: dt(start),
            recurrence,
            gmt: false,
        }
    }

    #[test]
    fn text_forms() {
        assert_eq!(parse_text("manual"), Ok(SyncSchedule::Manual));
        assert_eq!(parse_text("every 7 days"), Ok(default_schedule()));
        assert!(parse_text("every 1 hour").is_ok());
        assert!(parse_text("every week").is_ok());
        assert!(matches!(
            parse_text("every 24 hours"),
            Err(ScheduleError::IntervalRange { .. })
        ));
        assert!(matches!(
            parse_text("every 32 days"),
            Err(ScheduleError::IntervalRange { .. })
        ));
        assert!(matches!(
            parse_text("every 5 weeks"),
            Err(ScheduleError::IntervalRange { .. })
        ));
        assert!(matches!(
            parse_text("every 0 days"),
            Err(ScheduleError::IntervalRange { .. })
        ));
        assert!(matches!(
            parse_text("weekly-ish"),
            Err(ScheduleError::Syntax(_))
        ));
        assert!(matches!(
            parse_text("every 3 fortnights"),
            Err(ScheduleError::Syntax(_))
        ));
    }

    #[test]
    fn interval_fires_on_the_grid() {
        let s = sched(
            "2026-11-01T02:00:00",
            Recurrence::Interval {
                every: 7,
                unit: IntervalUnit::Days,
            },
        );
        assert_eq!(
            s.next_fire(dt("2026-10-01T00:00:00")),
            Some(dt("2026-11-01T02:00:00"))
        );
        assert_eq!(
            s.next_fire(dt("2026-11-01T02:00:00")),
            Some(dt("2026-11-08T02:00:00"))
        );
        assert_eq!(
            s.next_fire(dt("2026-11-26T17:00:00")),
            Some(dt("2026-11-29T02:00:00"))
        );
    }

    #[test]
    fn weekly_every_two_weeks() {
        // 2026-11-01 is a Sunday.
        let s = sched(
            "2026-11-01T03:30:00",
            Recurrence::Weekly {
                days: vec![Weekday::Tue, Weekday::Fri],
                every_weeks: 2,
            },
        );
        assert_eq!(
            s.next_fire(dt("2026-11-01T00:00:00")),
            Some(dt("2026-11-03T03:30:00"))
        );
        assert_eq!(
            s.next_fire(dt("2026-11-03T03:30:00")),
            Some(dt("2026-11-06T03:30:00"))
        );
        assert_eq!(
            s.next_fire(dt("2026-11-06T04:00:00")),
            Some(dt("2026-11-17T03:30:00"))
        );
    }

    #[test]
    fn monthly_by_date_clamps_and_last() {
        let s = sched(
            "2026-01-01T01:00:00",
            Recurrence::MonthlyByDate {
                day: 31,
                every_months: 1,
            },
        );
        assert_eq!(
            s.next_fire(dt("2026-02-01T00:00:00")),
            Some(dt("2026-02-28T01:00:00"))
        );
        let last = sched(
            "2026-01-01T01:00:00",
            Recurrence::MonthlyByDate {
                day: 0,
                every_months: 3,
            },
        );
        assert_eq!(
            last.next_fire(dt("2026-02-01T00:00:00")),
            Some(dt("2026-04-30T01:00:00"))
        );
    }

    #[test]
    fn monthly_by_weekday() {
        // Patch Tuesday: the second Tuesday.
        let s = sched(
            "2026-01-01T22:00:00",
            Recurrence::MonthlyByWeekday {
                week: WeekOrder::Nth(2),
                weekday: Weekday::Tue,
                every_months: 1,
            },
        );
        assert_eq!(
            s.next_fire(dt("2026-11-26T00:00:00")),
            Some(dt("2026-12-08T22:00:00"))
        );
        let last = sched(
            "2026-01-01T22:00:00",
            Recurrence::MonthlyByWeekday {
                week: WeekOrder::Last,
                weekday: Weekday::Fri,
                every_months: 1,
            },
        );
        assert_eq!(
            last.next_fire(dt("2026-11-01T00:00:00")),
            Some(dt("2026-11-27T22:00:00"))
        );
    }

    #[test]
    fn manual_never_fires() {
        assert_eq!(
            SyncSchedule::Manual.next_fire(dt("2026-01-01T00:00:00")),
            None
        );
    }

    fn any_recurrence() -> impl Strategy<Value = Recurrence> {
        prop_oneof![
            (1u32..=23).prop_map(|every| Recurrence::Interval {
                every,
                unit: IntervalUnit::Hours
            }),
            (1u32..=31).prop_map(|every| Recurrence::Interval {
                every,
                unit: IntervalUnit::Days
            }),
            (1u32..=4).prop_map(|every| Recurrence::Interval {
                every,
                unit: IntervalUnit::Weeks
            }),
            (
                proptest::sample::subsequence(vec![0u8, 1, 2, 3, 4, 5, 6], 1..=7),
                1u32..=4
            )
                .prop_map(|(days, every_weeks)| Recurrence::Weekly {
                    days: days
                        .into_iter()
                        .map(|d| Weekday::try_from(d).unwrap_or(Weekday::Sun))
                        .collect(),
                    every_weeks,
                }),
            (0u32..=31, 1u32..=12)
                .prop_map(|(day, every_months)| Recurrence::MonthlyByDate { day, every_months }),
            (0u8..=4, 0u8..7, 1u32..=12).prop_map(|(w, d, every_months)| {
                Recurrence::MonthlyByWeekday {
                    week: if w == 0 {
                        WeekOrder::Last
                    } else {
                        WeekOrder::Nth(w)
                    },
                    weekday: Weekday::try_from(d).unwrap_or(Weekday::Sun),
                    every_months,
                }
            }),
        ]
    }

    fn utc(s: &str) -> DateTime<Utc> {
        dt(s).and_utc()
    }

    #[test]
    fn schedules_fire_at_the_sites_wall_clock_across_daylight_saving() {
        let daily_at = |t: &str| {
            SyncSchedule::Recurring(sched(
                &format!("2026-01-01T{t}"),
                Recurrence::Interval {
                    every: 1,
                    unit: IntervalUnit::Days,
                },
            ))
        };
        let ny = chrono_tz::America::New_York;
        let two = daily_at("02:00:00");
        // Winter (EST, UTC-5) and summer (EDT, UTC-4): 02:00 local both times.
        assert_eq!(
            two.next_fire_utc(ny, utc("2026-01-10T12:00:00")),
            Some(utc("2026-01-11T07:00:00"))
        );
        assert_eq!(
            two.next_fire_utc(ny, utc("2026-07-10T12:00:00")),
            Some(utc("2026-07-11T06:00:00"))
        );
        // 2026-03-08 02:30 does not exist in New York (02:00 -> 03:00): it fires 30 minutes
        // after the jump, 03:30 EDT.
        let half_past = daily_at("02:30:00");
        assert_eq!(
            half_past.next_fire_utc(ny, utc("2026-03-08T05:00:00")),
            Some(utc("2026-03-08T07:30:00"))
        );
        // 2026-11-01 01:30 happens twice: the first one (EDT) fires, the second does not fire
        // again, and the next is the day after.
        let early = daily_at("01:30:00");
        assert_eq!(
            early.next_fire_utc(ny, utc("2026-11-01T04:00:00")),
            Some(utc("2026-11-01T05:30:00"))
        );
        assert_eq!(
            early.next_fire_utc(ny, utc("2026-11-01T05:30:00")),
            Some(utc("2026-11-02T06:30:00"))
        );
        // Southern hemisphere, half-hour zone: Adelaide 02:00 in January is UTC+10:30.
        assert_eq!(
            two.next_fire_utc(chrono_tz::Australia::Adelaide, utc("2026-01-10T00:00:00")),
            Some(utc("2026-01-10T15:30:00"))
        );
        // A GMT token fires on UTC whatever the site's zone.
        let SyncSchedule::Recurring(mut gmt) = two.clone() else {
            unreachable!()
        };
        gmt.gmt = true;
        assert_eq!(
            SyncSchedule::Recurring(gmt).next_fire_utc(ny, utc("2026-01-10T12:00:00")),
            Some(utc("2026-01-11T02:00:00"))
        );
        assert_eq!(
            SyncSchedule::Manual.next_fire_utc(ny, utc("2026-01-10T12:00:00")),
            None
        );
    }

    #[test]
    fn the_default_schedule_starts_as_the_console_writes_it() {
        let SyncSchedule::Recurring(s) = default_schedule() else {
            unreachable!()
        };
        assert_eq!(s.start, dt("1970-02-01T00:00:00"));
        assert!(!s.gmt);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The next fire is strictly later, never before the start, at the start's time of day for
        /// calendar rules, and nothing the rule allows is skipped between `after` and it.
        #[test]
        fn next_fire_is_the_next_one(rec in any_recurrence(), start_min in 0i64..(20 * 365 * 24 * 60), after_min in 0i64..(25 * 365 * 24 * 60)) {
            let base = dt("2000-01-01T00:00:00");
            let start = base + Duration::minutes(start_min);
            let after = base + Duration::minutes(after_min);
            let s = Schedule { start, recurrence: rec.clone(), gmt: false };
            let next = s.next_fire(after).expect("recurring schedules always fire again");
            prop_assert!(next > after);
            prop_assert!(next >= start);
            if !matches!(rec, Recurrence::Interval { .. }) {
                prop_assert_eq!(next.time(), start.time());
            }
            // No fire is skipped: asking from just before `next` yields `next` again.
            let just_before = next - Duration::seconds(1);
            if just_before > after {
                prop_assert_eq!(s.next_fire(just_before), Some(next));
            }
            // And the one after is later still.
            let then = s.next_fire(next).expect("fires again");
            prop_assert!(then > next);
        }

        /// In any zone, the next fire is a later instant, the same as the UTC computation on a
        /// UTC site, and at most one interval plus a daylight-saving hour away for a simple
        /// schedule.
        #[test]
        fn next_fire_utc_is_later_in_any_zone(hours in 1u32..=23, zone_index in 0usize..6, after_min in 0i64..(30 * 365 * 24 * 60)) {
            const ZONES: [Tz; 6] = [
                chrono_tz::UTC,
                chrono_tz::America::New_York,
                chrono_tz::Europe::Berlin,
                chrono_tz::Australia::Adelaide,
                chrono_tz::Asia::Kolkata,
                chrono_tz::America::Santiago,
            ];
            let zone = ZONES[zone_index];
            let s = SyncSchedule::Recurring(Schedule {
                start: default_start(),
                recurrence: Recurrence::Interval { every: hours, unit: IntervalUnit::Hours },
                gmt: false,
            });
            let after = utc("2000-01-01T00:00:00") + Duration::minutes(after_min);
            let next = s.next_fire_utc(zone, after).expect("fires");
            prop_assert!(next > after);
            prop_assert!(next - after <= Duration::hours(i64::from(hours) + 1));
            if zone == chrono_tz::UTC {
                prop_assert_eq!(Some(next.naive_utc()), s.next_fire(after.naive_utc()));
            }
        }
    }
}
