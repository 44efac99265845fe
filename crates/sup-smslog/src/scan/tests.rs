use proptest::prelude::*;

use super::*;
use crate::milestone::needle;
use crate::parse::parse_line;
use crate::reader::lines_of;

/// What splitting into lines and classifying each gives: the reference for the scanner.
fn line_by_line(buf: &[u8], classifier: &mut Classifier) -> Vec<Found> {
    lines_of(buf)
        .into_iter()
        .filter_map(|l| {
            let record = parse_line(&l.text, Some(480));
            classifier
                .classify(&record, "X.log")
                .map(|milestone| Found {
                    offset: l.offset as usize,
                    record,
                    milestone,
                })
        })
        .collect()
}

const LINES: &[&str] = &[
    "<02/09/14 22:53:28> SMSWSUS Setup Started....",
    "<02/09/14 22:53:30> Checking for supported version of WSUS",
    "<02/09/14 22:53:31> ERROR: WSUS 3.0 SP2 is not installed",
    "<02/09/14 22:53:40> Installation was successful.",
    "<02/09/14 22:53:44> ~RoleSetup().",
    "<02/09/14 22:53:41> Setup failed because of an earlier error",
    "Setting new configuration state to 2 (WSUS_CONFIG_SUCCESS)  $$<SMS_WSUS_CONFIGURATION_MANAGER><02-09-2014 22:55:01.123+480><thread=3404 (0xD4C)>",
    "Successfully connected to server: SUP01.CONTOSO.COM, port: 8530, useSSL: False  $$<SMS_WSUS_CONFIGURATION_MANAGER><02-09-2014 22:55:02.000+480><thread=3404 (0xD4C)>",
    "There are no unhealthy WSUS Server components on WSUS Server SUP01.CONTOSO.COM  $$<SMS_WSUS_CONTROL_MANAGER><02-09-2014 22:56:00.000+480><thread=1 (0x1)>",
    "Successfully checked database connection on WSUS server SUP01.CONTOSO.COM  $$<SMS_WSUS_CONTROL_MANAGER><02-09-2014 22:56:01.000+480><thread=1 (0x1)>",
    "STATMSG: ID=6701 SEV=I LEV=M SOURCE=\"SMS Server\" COMP=\"SMS_WSUS_SYNC_MANAGER\" SYS=SUP01 SITE=CS1 PID=432 TID=3404 GMTDATE=Thu Jan 16 18:53:52.608 2014 ISTR0=\"\" NUMATTRS=0  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:53:52.608+480><thread=3404 (0xD4C)>",
    "sync: WSUS synchronizing updates, processed 122 out of 130 items (93%)  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:55:00.000+480><thread=3404 (0xD4C)>",
    "Done synchronizing SMS with WSUS Server SUP01.CONTOSO.COM  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:57:46.000+480><thread=3404 (0xD4C)>",
    "Sync failed: WSUS update source not found. Source=Microsoft Update  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:57:46.000+480><thread=3404 (0xD4C)>",
    "Starting Sync  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:53:52.000+480><thread=3404 (0xD4C)>",
    "<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>",
    "Waiting for changes for 59 minutes  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:58:00.000+480><thread=3404 (0xD4C)>",
    "an error that is not a milestone, outside setup",
    "",
    "There are no unhealthy WSUS Server components on WSUS server sup02.contoso.com  $$<SMS_WSUS_CONTROL_MANAGER><02-09-2014 22:56:00.000+480><thread=1 (0x1)>",
    "SUCCESSFULLY CHECKED DATABASE CONNECTION ON WSUS SERVER SUP02  $$<SMS_WSUS_CONTROL_MANAGER><02-09-2014 22:56:01.000+480><thread=1 (0x1)>",
];

const CMTRACE_LINE: &[u8] = b"<![LOG[Starting Sync]LOG]!><time=\"10:00:00.000+480\" date=\"01-16-2014\" component=\"x\" context=\"\" type=\"1\" thread=\"1\" file=\"\">";

#[test]
fn the_wsus_health_lines_match_in_any_letter_case() {
    let buf = format!(
        "noise\r\n{}\r\nnoise\r\n{}\r\nsuccessfully checked database connection on wsus server sup03\r\n",
        LINES[LINES.len() - 2],
        LINES[LINES.len() - 1]
    );
    let mut c = Classifier::new();
    let found = scan_milestones(buf.as_bytes(), Encoding::Ansi, Some(480), &mut c, "X.log")
        .expect("scanned");
    let got: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|f| {
            (
                f.milestone.name,
                f.milestone
                    .fields
                    .iter()
                    .find(|(k, _)| *k == "server")
                    .map(|(_, v)| v.as_str()),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("wsus_components_healthy", Some("sup02.contoso.com")),
            ("wsus_database_ok", Some("SUP02")),
            ("wsus_database_ok", Some("sup03")),
        ]
    );
    assert_eq!(found, line_by_line(buf.as_bytes(), &mut Classifier::new()));
}

#[test]
fn finds_milestones_at_their_line_starts() {
    let buf = format!(
        "noise one\r\n{}\r\nnoise two\r\n{}\r\n",
        LINES[8], LINES[12]
    );
    let mut c = Classifier::new();
    let found = scan_milestones(buf.as_bytes(), Encoding::Ansi, None, &mut c, "W.log")
        .expect("an ANSI buffer without CMTrace records is scanned");
    let got: Vec<(usize, &str)> = found.iter().map(|f| (f.offset, f.milestone.name)).collect();
    assert_eq!(
        got,
        vec![
            (11, "wsus_components_healthy"),
            (11 + LINES[8].len() + 2 + 11, "sync_succeeded")
        ]
    );
    assert_eq!(found[0].milestone.field("log"), Some("W.log"));
}

#[test]
fn a_failed_setup_keeps_the_error_line_as_its_reason() {
    let buf = [LINES[0], LINES[1], LINES[2], LINES[16], LINES[4]].join("\n");
    let mut c = Classifier::new();
    let found = scan_milestones(buf.as_bytes(), Encoding::Ansi, None, &mut c, "SUPSetup.log")
        .expect("scanned");
    let names: Vec<&str> = found.iter().map(|f| f.milestone.name).collect();
    assert_eq!(names, ["role_install_started", "role_install_failed"]);
    assert_eq!(
        found[1].milestone.field("reason"),
        Some("ERROR: WSUS 3.0 SP2 is not installed")
    );
}

#[test]
fn leaves_utf16_and_cmtrace_to_the_line_path() {
    let mut c = Classifier::new();
    assert!(scan_milestones(b"a\nb\n", Encoding::Utf16Le, None, &mut c, "X.log").is_none());
    let buf = [
        LINES[0],
        LINES[8],
        std::str::from_utf8(CMTRACE_LINE).unwrap_or(""),
    ]
    .join("\n");
    assert!(scan_milestones(buf.as_bytes(), Encoding::Ansi, None, &mut c, "X.log").is_none());
    assert_eq!(
        c,
        Classifier::new(),
        "the classifier is as it was before the scan"
    );
}

#[test]
fn every_trigger_phrase_holds_its_needle() {
    for phrase in crate::milestone::TRIGGER_PHRASES {
        assert!(
            phrase.contains(needle(phrase)),
            "{phrase:?} does not hold {:?}",
            needle(phrase)
        );
    }
    for phrase in crate::milestone::CASE_FREE_PHRASES {
        assert!(
            phrase
                .to_ascii_lowercase()
                .contains(crate::milestone::CASE_FREE_PIECE),
            "{phrase:?}"
        );
    }
    let all: Vec<String> = crate::milestone::candidate_needles().collect();
    for wanted in [
        crate::parse::ROTATION_MARKER,
        CMTRACE_OPEN,
        "on ws",
        "ON WS",
        "oN wS",
    ] {
        assert!(all.iter().any(|n| n == wanted), "{wanted}");
    }
    // Past 32 needles the SIMD search takes its slower, wider form.
    assert!(all.len() <= 32, "{} needles", all.len());
}

/// `text` with each ASCII letter upper-cased where `upper` says so (cycled).
fn recased(text: &str, upper: &[bool]) -> String {
    text.chars()
        .zip(upper.iter().cycle())
        .map(|(c, &up)| {
            if up {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

proptest! {
    /// A WSUS health line in any letter case, amid any text, is found by the search over the
    /// bytes as written, and the scan gives its milestone.
    #[test]
    fn a_health_phrase_in_any_case_is_a_candidate(
        which in 0..crate::milestone::CASE_FREE_PHRASES.len(),
        upper in proptest::collection::vec(any::<bool>(), 1..80),
        before in "[ -~]{0,40}",
        server in "[A-Za-z0-9.]{1,20}",
    ) {
        let phrase = recased(crate::milestone::CASE_FREE_PHRASES[which], &upper);
        let line = format!("{before}{phrase}{server}");
        let needles = crate::milestone::CANDIDATES.as_ref().expect("the search is built");
        prop_assert!(needles.is_match(&line));
        let mut c = Classifier::new();
        let found = scan_milestones(line.as_bytes(), Encoding::Ansi, None, &mut c, "X.log")
            .expect("scanned");
        let names: Vec<&str> = found.iter().map(|f| f.milestone.name).collect();
        let wanted = [
            crate::milestone::WSUS_COMPONENTS_HEALTHY,
            crate::milestone::WSUS_DATABASE_OK,
        ][which];
        prop_assert!(names.contains(&wanted), "{:?} in {:?}", names, line);
    }
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    // A CMTrace record is rare, so most buffers take the scanner's own path.
    prop_oneof![
        40 => proptest::sample::select(LINES).prop_map(|l| l.as_bytes().to_vec()),
        10 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => Just(CMTRACE_LINE.to_vec()),
    ]
}

const TERMINATORS: &[&[u8]] = &[b"\r\n", b"\n", b"\r\n\r\n"];

fn terminator() -> impl Strategy<Value = &'static [u8]> {
    proptest::sample::select(TERMINATORS)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The scanner finds the same milestones, at the same offsets, leaving the classifier in the
    /// same state, as classifying the buffer line by line.
    #[test]
    fn same_as_line_by_line(
        pieces in proptest::collection::vec((piece(), terminator()), 0..40),
        unterminated_last in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        let n = pieces.len();
        for (i, (p, t)) in pieces.into_iter().enumerate() {
            buf.extend_from_slice(&p);
            if !(unterminated_last && i + 1 == n) {
                buf.extend_from_slice(t);
            }
        }
        // A BOM would change how `lines_of` reads the buffer; the scanner is handed BOM-less bytes.
        prop_assume!(!buf.starts_with(&[0xFF, 0xFE]) && !buf.starts_with(&[0xEF, 0xBB, 0xBF]));
        let mut by_line = Classifier::new();
        let expected = line_by_line(&buf, &mut by_line);
        let mut scanned = Classifier::new();
        match scan_milestones(&buf, Encoding::Ansi, Some(480), &mut scanned, "X.log") {
            Some(found) => {
                prop_assert_eq!(found, expected);
                prop_assert_eq!(scanned, by_line);
            }
            None => {
                prop_assert!(memchr::memmem::find(&buf, CMTRACE_OPEN.as_bytes()).is_some());
                prop_assert_eq!(scanned, Classifier::new());
            }
        }
    }
}
