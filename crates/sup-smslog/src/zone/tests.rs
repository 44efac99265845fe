use super::*;
use chrono::{Duration, NaiveDate};
use proptest::prelude::*;
use std::io::Write as _;
use std::time::SystemTime;

fn local(h: u32, m: u32, s: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 12, 4)
        .and_then(|d| d.and_hms_opt(h, m, s))
        .expect("a valid time")
}

fn utc_of(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

#[test]
fn a_line_written_when_stamped_gives_its_servers_bias() {
    // Pacific time (UTC−8, bias +480): stamped 10:00:00 local, written 18:00:01 UTC.
    assert_eq!(
        bias_from_modified(local(10, 0, 0), utc_of(local(18, 0, 1))),
        Some(480)
    );
    // Nepal (UTC+5:45, bias −345).
    assert_eq!(
        bias_from_modified(local(15, 45, 0), utc_of(local(10, 0, 0))),
        Some(-345)
    );
    assert_eq!(
        bias_from_modified(local(9, 0, 0), utc_of(local(9, 0, 0))),
        Some(0)
    );
}

#[test]
fn a_difference_far_from_a_quarter_hour_or_out_of_range_gives_none() {
    let stamped = local(10, 0, 0);
    let late = utc_of(stamped + Duration::minutes(480) + Duration::seconds(SLACK_SECS + 1));
    assert_eq!(bias_from_modified(stamped, late), None);
    assert_eq!(
        bias_from_modified(stamped, utc_of(stamped + Duration::hours(15))),
        None,
        "no zone is 15 hours west of UTC"
    );
    assert_eq!(
        bias_from_modified(stamped, utc_of(stamped - Duration::days(30))),
        None,
        "a file written a month before its last line was stamped"
    );
}

proptest! {
    #[test]
    fn every_windows_bias_is_read_back(
        quarters in -56i64..=48,
        delay in -5i64..=SLACK_SECS,
        seconds in 0i64..86_400 * 365,
    ) {
        let stamped = local(0, 0, 0) + Duration::seconds(seconds);
        let written = stamped + Duration::minutes(quarters * 15) + Duration::seconds(delay);
        prop_assert_eq!(
            bias_from_modified(stamped, utc_of(written)),
            Some(i32::try_from(quarters * 15).expect("small"))
        );
    }

    #[test]
    fn a_bias_given_is_always_within_the_slack_and_the_range(
        difference in -200_000i64..200_000,
    ) {
        let stamped = local(12, 0, 0);
        if let Some(bias) = bias_from_modified(stamped, utc_of(stamped + Duration::seconds(difference))) {
            prop_assert!((-840..=720).contains(&bias));
            prop_assert_eq!(bias % 15, 0);
            prop_assert!((difference - i64::from(bias) * 60).abs() <= SLACK_SECS);
        }
    }
}

/// A file holding `bytes`, last written at `modified`.
fn file_with(bytes: &[u8], modified: NaiveDateTime) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
    f.write_all(bytes).expect("written");
    f.as_file()
        .set_modified(SystemTime::from(utc_of(modified)))
        .expect("mtime set");
    f
}

fn rolesetup(lines: &[(NaiveDateTime, &str)]) -> String {
    lines
        .iter()
        .map(|(t, m)| format!("{} {m}\r\n", t.format("<%m/%d/%y %H:%M:%S>")))
        .collect()
}

#[test]
fn a_supsetup_log_tells_its_servers_bias() {
    let text = rolesetup(&[
        (local(9, 59, 58), "SMS_SERVER_BOOTSTRAP_SITE1 started."),
        (local(10, 0, 0), "Installation was successful."),
    ]);
    let f = file_with(text.as_bytes(), local(18, 0, 1));
    assert_eq!(file_zone_bias(f.path()).expect("read"), Some(480));
}

#[test]
fn a_long_utf16_log_with_a_blank_last_line_tells_it_too() {
    let mut lines = Vec::new();
    for i in 0..200 {
        lines.push((
            local(9, 0, 0) + Duration::seconds(i),
            "Checking runtime v2.0.50727...",
        ));
    }
    let mut text = rolesetup(&lines);
    text.push_str("\r\n");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    assert!(
        bytes.len() as u64 > TAIL_BYTES,
        "the start is not in the tail"
    );
    let last = local(9, 0, 0) + Duration::seconds(199);
    let f = file_with(&bytes, last - Duration::minutes(60));
    assert_eq!(file_zone_bias(f.path()).expect("read"), Some(-60));
}

#[test]
fn a_log_whose_last_line_is_not_a_rolesetup_stamp_tells_nothing() {
    let sms = "Checking for supported SQL version  $$<SMS_WSUS_CONTROL_MANAGER><12-04-2026 10:00:00.000+480><thread=1 (0x1)>\r\n";
    let f = file_with(sms.as_bytes(), local(18, 0, 0));
    assert_eq!(file_zone_bias(f.path()).expect("read"), None);
    let mut text = rolesetup(&[(local(10, 0, 0), "Installation was successful.")]);
    text.push_str("a line without a stamp\r\n");
    let f = file_with(text.as_bytes(), local(18, 0, 0));
    assert_eq!(file_zone_bias(f.path()).expect("read"), None);
    let f = file_with(b"", local(18, 0, 0));
    assert_eq!(file_zone_bias(f.path()).expect("read"), None);
}

#[test]
fn a_log_copied_long_after_it_was_written_tells_nothing() {
    let text = rolesetup(&[(local(10, 0, 0), "Installation was successful.")]);
    let f = file_with(text.as_bytes(), local(10, 0, 0) + Duration::days(3));
    assert_eq!(file_zone_bias(f.path()).expect("read"), None);
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    assert!(file_zone_bias(&dir.path().join("SUPSetup.log")).is_err());
}

proptest! {
    #[test]
    fn any_bytes_are_read_without_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..9000),
        seconds in 0i64..86_400,
    ) {
        let f = file_with(&bytes, local(0, 0, 0) + Duration::seconds(seconds));
        prop_assert!(file_zone_bias(f.path()).is_ok());
    }
}

#[test]
fn a_file_time_out_of_range_tells_nothing() {
    let text = rolesetup(&[(local(10, 0, 0), "Installation was successful.")]);
    let f = file_with(text.as_bytes(), local(10, 0, 0));
    let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 62);
    if f.as_file().set_modified(far).is_ok() {
        assert_eq!(file_zone_bias(f.path()).expect("read"), None);
    }
    assert_eq!(to_utc(far), None);
}

#[test]
fn an_odd_length_utf16_file_and_a_cut_first_line_are_read_from_the_right_byte() {
    // 4 KiB of a long first line, then the stamped last line, UTF-16LE with its BOM and one
    // stray byte at the end: the tail starts on an odd offset, which must move to a whole unit,
    // and the cut first line must not be taken for the last.
    let mut text = "x".repeat(3000);
    text.push_str("\r\n");
    text.push_str(&rolesetup(&[(
        local(10, 0, 0),
        "Installation was successful.",
    )]));
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let f = file_with(&bytes, local(18, 0, 0));
    assert_eq!(file_zone_bias(f.path()).expect("read"), Some(480));
    bytes.push(b'\n');
    let odd = file_with(&bytes, local(18, 0, 0));
    assert_eq!(file_zone_bias(odd.path()).expect("read"), Some(480));
}
