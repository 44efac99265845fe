//! The formats with the real lines of the reference.

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::milestone::{self, Classifier};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid")
        + Duration::milliseconds(i64::from(ms))
}

#[test]
fn sms_trace_real_lines() {
    let r = parse_line(
        "---->: An event has occurred, the event code is: 0x1  $$<SMS_SITE_SYSTEM_STATUS_SUMMARIZER><12-06-2016 03:11:46.039+300><thread=4840 (0x12E8)>",
        None,
    );
    assert_eq!(r.format, Format::Sms);
    assert_eq!(
        r.message,
        "---->: An event has occurred, the event code is: 0x1"
    );
    assert_eq!(
        r.component.as_deref(),
        Some("SMS_SITE_SYSTEM_STATUS_SUMMARIZER")
    );
    assert_eq!(r.thread, Some(4840));
    assert_eq!(r.bias, Some(300));
    // +300 is EST (UTC-5): 03:11 local is 08:11 UTC.
    assert_eq!(r.time_utc(), Some(utc(2016, 12, 6, 8, 11, 46, 39)));

    let r = parse_line(
        "Retrieving online resync flag from database...~~  $$<SMS_NOTIFICATION_SERVER><09-25-2026 04:24:37.092+240><thread=7892 (0x1ED4)>",
        None,
    );
    assert_eq!(
        r.message, "Retrieving online resync flag from database...~~",
        "~~ kept in the raw text"
    );
    assert_eq!(
        r.display_message(),
        "Retrieving online resync flag from database...\n"
    );
    assert_eq!(r.time_utc(), Some(utc(2026, 9, 25, 8, 24, 37, 92)));
}

#[test]
fn negative_bias_is_east_of_utc() {
    let r = parse_line(
        "x  $$<C><08-01-2013 08:51:08.954-570><thread=1 (0x1)>",
        None,
    );
    // -570 is ACST (UTC+9:30): 08:51 local is 23:21 the day before in UTC.
    assert_eq!(r.time_utc(), Some(utc(2013, 7, 31, 23, 21, 8, 954)));
}

#[test]
fn statmsg_gmtdate_agrees_with_the_bias() {
    // The STATMSG's GMTDATE is UTC; the framing is local time with the bias (UTC-8, +480).
    let line = "STATMSG: ID=6702 SEV=I LEV=M SOURCE=\"SMS Server\" COMP=\"SMS_WSUS_SYNC_MANAGER\" SYS=CS1SITE.CONTOSO.COM SITE=CS1 PID=432 TID=3404 GMTDATE=Thu Jan 16 18:57:46.304 2014 ISTR0=\"\" ISTR1=\"\" NUMATTRS=0  $$<SMS_WSUS_SYNC_MANAGER><01-16-2014 10:57:46.304+480><thread=3404 (0xD4C)>";
    let r = parse_line(line, None);
    let m = Classifier::new()
        .classify(&r, "wsyncmgr.log")
        .expect("milestone");
    assert_eq!(m.name, milestone::SYNC_SUCCEEDED);
    assert_eq!(m.field("statmsg_id"), Some("6702"));
    assert_eq!(m.field("site"), Some("CS1"));
    assert_eq!(m.field("server"), Some("CS1SITE.CONTOSO.COM"));
    let gmt = m.field("gmtdate").expect("gmtdate");
    assert_eq!(gmt, "2014-01-16T18:57:46.304Z");
    assert_eq!(
        r.time_utc()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .as_deref(),
        Some(gmt)
    );
}

#[test]
fn split_at_the_last_framing() {
    let r = parse_line(
        "price is $$<not a frame> here  $$<SMS_X><01-02-2009 03:04:05.006+0><thread=9>",
        None,
    );
    assert_eq!(r.message, "price is $$<not a frame> here");
    assert_eq!(r.component.as_deref(), Some("SMS_X"));
    assert_eq!(r.thread, Some(9), "the hex part is optional");
    assert_eq!(r.bias, Some(0));
}

#[test]
fn older_sms_date_forms() {
    let r = parse_line(
        "Starting bootstrap operations...  $$<SMS_SITE_COMPONENT_MANAGER><Fri Mar 26 10:43:41.547 1999 Eastern Standard Time><thread=281 (0x119)>",
        None,
    );
    assert_eq!(r.format, Format::Sms);
    assert_eq!(
        r.time_local,
        NaiveDate::from_ymd_opt(1999, 3, 26).and_then(|d| d.and_hms_milli_opt(10, 43, 41, 547))
    );
    assert_eq!(r.bias, None);
    let r = parse_line(
        "~Found ready instruction sni00000.sni  $$<SMS_DESPOOLER><Wed May 21 17:09:27 1997~><thread=DB>",
        None,
    );
    assert_eq!(r.format, Format::Sms);
    assert_eq!(r.message, "~Found ready instruction sni00000.sni");
    assert_eq!(r.thread, Some(0xDB));
    assert_eq!(
        r.time_local,
        NaiveDate::from_ymd_opt(1997, 5, 21).and_then(|d| d.and_hms_opt(17, 9, 27))
    );
}

const SUPSETUP: &str = "<02/09/14 22:53:28> ====================================================================
<02/09/14 22:53:28> SMSWSUS Setup Started....
<02/09/14 22:53:28> Parameters: E:\\ConfigMgr\\bin\\x64\\rolesetup.exe /install /siteserver:PR1SITE SMSWSUS 0
<02/09/14 22:53:28> Installing Pre Reqs for SMSWSUS
<02/09/14 22:53:28>    ======== Installing Pre Reqs for Role SMSWSUS ========
<02/09/14 22:53:28> Found 1 Pre Reqs for Role SMSWSUS
<02/09/14 22:53:28> Pre Req SqlNativeClient found.
<02/09/14 22:53:28> Checking for supported version of WSUS (min WSUS 3.0 SP2 + KB2720211 + KB2734608)
<02/09/14 22:53:28> Supported WSUS version found
<02/09/14 22:53:44> Registered DLL E:\\ConfigMgr\\bin\\x64\\wsusmsp.dll
<02/09/14 22:53:44> Installation was successful.
<02/09/14 22:53:44> ~RoleSetup().";

fn milestones(text: &str, log: &str, bias: Option<i32>) -> Vec<crate::Milestone> {
    let mut c = Classifier::new();
    text.lines()
        .filter_map(|l| c.classify(&parse_line(l, bias), log))
        .collect()
}

#[test]
fn rolesetup_real_lines_and_install_success() {
    let r = parse_line(
        "<02/09/14 22:53:44> Installation was successful.",
        Some(480),
    );
    assert_eq!(r.format, Format::RoleSetup);
    assert_eq!(r.message, "Installation was successful.");
    assert_eq!(
        r.time_local,
        NaiveDate::from_ymd_opt(2014, 2, 9).and_then(|d| d.and_hms_opt(22, 53, 44))
    );
    // The zone comes from configuration: +480 (UTC-8) makes it 06:53 UTC the next day.
    assert_eq!(r.time_utc(), Some(utc(2014, 2, 10, 6, 53, 44, 0)));
    assert_eq!(
        parse_line("<02/09/14 22:53:44> x", None).time_utc(),
        None,
        "no zone, no UTC"
    );
    let names: Vec<_> = milestones(SUPSETUP, "SUPSetup.log", None)
        .iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        names,
        [
            milestone::ROLE_INSTALL_STARTED,
            milestone::ROLE_INSTALL_SUCCEEDED
        ]
    );
}

#[test]
fn setup_ending_without_success_is_a_failure() {
    let failed = SUPSETUP
        .replace("<02/09/14 22:53:28> Supported WSUS version found\n", "<02/09/14 22:53:28> Did not find supported version of assembly Microsoft.UpdateServices.Administration. Failed to install.\n")
        .replace("<02/09/14 22:53:44> Installation was successful.\n", "");
    let ms = milestones(&failed, "SUPSetup.log", None);
    let last = ms.last().expect("milestones");
    assert_eq!(last.name, milestone::ROLE_INSTALL_FAILED);
    assert!(
        last.field("reason")
            .is_some_and(|r| r.contains("Did not find supported version")),
        "{last:?}"
    );
    // An explicit failure line, then ~RoleSetup(): one failure, not two.
    let explicit = "<01/01/09 10:00:00> SMSWSUS Setup Started....\n<01/01/09 10:00:01> Installation failed. WSUS 3.0 is not installed\n<01/01/09 10:00:01> ~RoleSetup().";
    let ms = milestones(explicit, "SUPSetup.log", None);
    assert_eq!(
        ms.iter()
            .filter(|m| m.name == milestone::ROLE_INSTALL_FAILED)
            .count(),
        1
    );
}

#[test]
fn classifier_state_survives_a_restart() {
    let mut c = Classifier::new();
    c.classify(
        &parse_line("<01/01/09 10:00:00> SMSWSUS Setup Started....", None),
        "SUPSetup.log",
    );
    let mut resumed = Classifier::restore(&c.state());
    let m = resumed.classify(
        &parse_line("<01/01/09 10:00:05> ~RoleSetup().", None),
        "SUPSetup.log",
    );
    assert_eq!(m.map(|m| m.name), Some(milestone::ROLE_INSTALL_FAILED));
    assert_eq!(Classifier::restore("garbage"), Classifier::new());
}

fn sms(msg: &str, component: &str) -> String {
    format!("{msg}  $$<{component}><03-14-2009 10:22:33.123+480><thread=3404 (0xD4C)>")
}

#[test]
fn wcm_and_wsusctrl_milestones() {
    let wcm = [
        "Successfully connected to local WSUS server",
        "Setting new configuration state to 4 (WSUS_CONFIG_SUBSCRIPTION_PENDING)",
        "Attempting connection to WSUS server: CE1SITE.CONTOSO.COM, port: 8530, useSSL: False",
        "Successfully connected to server: CE1SITE.CONTOSO.COM, port: 8530, useSSL: False",
        "Subscribed Update Categories <?xml version=\"1.0\" ?>~~<Categories>~~ <Category Id=\"UpdateClassification:0fa1201d-4330-4fa8-8ae9-b877473b6441\"><![CDATA[Security Updates]]></Category>~~ </Categories>",
        "Configuration successful. Will wait for 1 minute for any subscription or proxy changes",
        "Setting new configuration state to 2 (WSUS_CONFIG_SUCCESS)",
        "There are no unhealthy WSUS Server components on WSUS Server SUP01.CONTOSO.COM",
        "Successfully checked database connection on WSUS server SUP01.CONTOSO.COM",
        "Waiting for changes for 59 minutes",
    ]
    .map(|m| sms(m, "SMS_WSUS_CONFIGURATION_MANAGER"))
    .join("\r\n");
    let ms = milestones(&wcm, "WCM.log", None);
    let names: Vec<_> = ms.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        [
            milestone::WSUS_CONNECTED,
            milestone::WSUS_CONFIG_STATE,
            milestone::WSUS_CONNECTED,
            milestone::WSUS_CONFIG_STATE,
            milestone::WSUS_COMPONENTS_HEALTHY,
            milestone::WSUS_DATABASE_OK,
        ]
    );
    assert_eq!(ms[0].field("local"), Some("true"));
    assert_eq!(ms[1].field("state"), Some("4"));
    assert_eq!(
        ms[1].field("state_name"),
        Some("WSUS_CONFIG_SUBSCRIPTION_PENDING")
    );
    assert_eq!(ms[2].field("server"), Some("CE1SITE.CONTOSO.COM"));
    assert_eq!(ms[2].field("port"), Some("8530"));
    assert_eq!(ms[2].field("use_ssl"), Some("false"));
    assert_eq!(ms[3].field("state_name"), Some("WSUS_CONFIG_SUCCESS"));
    assert_eq!(ms[4].field("server"), Some("SUP01.CONTOSO.COM"));
    assert_eq!(
        ms[4].field("log"),
        Some("WCM.log"),
        "which file matched is recorded"
    );
    assert_eq!(ms[5].field("server"), Some("SUP01.CONTOSO.COM"));
    // The same lines in WSUSCtrl.log, recorded as such.
    let ctl = sms(
        "There are no unhealthy WSUS Server components on WSUS Server SUP01",
        "SMS_WSUS_CONTROL_MANAGER",
    );
    let m = &milestones(&ctl, "WSUSCtrl.log", None)[0];
    assert_eq!(
        (m.name, m.field("log"), m.field("server")),
        (
            milestone::WSUS_COMPONENTS_HEALTHY,
            Some("WSUSCtrl.log"),
            Some("SUP01")
        )
    );
}

#[test]
fn wsyncmgr_milestones() {
    let lines = [
        "Wakeup for scheduled regular sync",
        "Starting Sync",
        "Performing sync on regular schedule",
        "STATMSG: ID=6701 SEV=I LEV=M SOURCE=\"SMS Server\" COMP=\"SMS_WSUS_SYNC_MANAGER\" SYS=CS1SITE.CONTOSO.COM SITE=CS1 PID=432 TID=3404 GMTDATE=Thu Jan 16 18:53:52.608 2014 ISTR0=\"\" NUMATTRS=0",
        "Synchronizing WSUS server cs1site.contoso.com ...",
        "sync: WSUS synchronizing updates, processed 122 out of 130 items (93%), ETA in 00:00:03",
        "Done synchronizing WSUS Server cs1site.contoso.com",
        "Synchronizing SMS database with WSUS server cs1site.contoso.com ...",
        "Done synchronizing SMS with WSUS Server cs1site.contoso.com",
        "Sync failed: WSUS server not configured. Please refer to WCM.log for configuration error details. Source: CWSyncMgr::DoSync",
        "Sync failed. Will retry in 60 minutes",
        "STATMSG: ID=6703 SEV=E LEV=M SOURCE=\"SMS Server\" COMP=\"SMS_WSUS_SYNC_MANAGER\" SYS=CS1SITE.CONTOSO.COM SITE=CS1 PID=432 TID=3404 GMTDATE=Thu Jan 16 19:53:52.608 2014 ISTR0=\"\" NUMATTRS=0",
    ]
    .map(|m| sms(m, "SMS_WSUS_SYNC_MANAGER"))
    .join("\n");
    let ms = milestones(&lines, "wsyncmgr.log", None);
    let names: Vec<_> = ms.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        [
            milestone::SYNC_STARTED,
            milestone::SYNC_STARTED,
            milestone::SYNC_WSUS_DONE,
            milestone::SYNC_SUCCEEDED,
            milestone::SYNC_FAILED,
            milestone::SYNC_FAILED,
            milestone::SYNC_FAILED,
        ]
    );
    assert_eq!(ms[2].field("server"), Some("cs1site.contoso.com"));
    assert_eq!(ms[3].field("server"), Some("cs1site.contoso.com"));
    assert_eq!(
        ms[3].field("updates"),
        Some("130"),
        "the item count of the run"
    );
    assert!(
        ms[4]
            .field("reason")
            .is_some_and(|r| r.starts_with("WSUS server not configured"))
    );
    assert_eq!(ms[6].field("statmsg_id"), Some("6703"));
}

#[test]
fn rotation_marker() {
    let r = parse_line("<MAXIMUM LOG FILE SIZE REACHED - FILE RENAMED>", None);
    assert_eq!(r.format, Format::Marker);
    assert_eq!(
        Classifier::new().classify(&r, "WCM.log").map(|m| m.name),
        Some(milestone::LOG_ROTATED)
    );
}

#[test]
fn cmtrace_real_line_and_multiline_record() {
    let r = parse_line(
        "<![LOG[Scan failed with error = 0x80244021.]LOG]!><time=\"08:51:08.954-570\" date=\"08-01-2013\" component=\"WUAHandler\" context=\"\" type=\"3\" thread=\"2308\" file=\"cwuahandler.cpp:3520\">",
        None,
    );
    assert_eq!(r.format, Format::CmTrace);
    assert_eq!(r.message, "Scan failed with error = 0x80244021.");
    assert_eq!(r.component.as_deref(), Some("WUAHandler"));
    assert_eq!(
        (r.severity, r.thread, r.bias),
        (Some(3), Some(2308), Some(-570))
    );
    assert_eq!(r.time_utc(), Some(utc(2013, 7, 31, 23, 21, 8, 954)));

    let first = "<![LOG[Line one";
    assert!(cmtrace_open(first));
    let whole = format!(
        "{first}\nline two]LOG]!><time=\"01:02:03.000+0\" date=\"01-02-2010\" component=\"X\" context=\"\" type=\"1\" thread=\"1\" file=\"\">"
    );
    assert!(cmtrace_complete(&whole));
    assert_eq!(parse_line(&whole, None).message, "Line one\nline two");
}

#[test]
fn unparsed_lines_are_kept() {
    for l in [
        "",
        "plain text",
        "<not a date> x",
        "x  $$<C><bad><thread=1>junk after",
    ] {
        let r = parse_line(l, None);
        assert!(matches!(r.format, Format::Unparsed | Format::Sms), "{l}");
    }
    assert_eq!(parse_line("plain text", None).message, "plain text");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    /// No input, however malformed, panics the parser or the classifier.
    #[test]
    fn never_panics(s in "\\PC*", framing in prop_oneof![
        Just(String::new()),
        Just("  $$<".to_string()),
        Just("<![LOG[".to_string()),
        Just("]LOG]!><time=\"".to_string()),
        Just("<01/02/03 ".to_string()),
        "[<>$=\"0-9:. +-]{0,40}",
    ]) {
        let line = format!("{framing}{s}{framing}");
        let r = parse_line(&line, Some(0));
        let _ = r.time_utc();
        let _ = Classifier::new().classify(&r, "x.log");
    }

    /// Generated SMS lines round-trip their parts.
    #[test]
    fn sms_lines_round_trip(msg in "[A-Za-z0-9 .,:$<>~]{0,60}", comp in "[A-Z_]{1,30}", bias in -720i32..=720, thread in 0u32..100_000, ms in 0u32..1000) {
        let line = format!("{msg}  $$<{comp}><11-26-2026 17:09:33.{ms:03}{bias:+}><thread={thread} (0x{thread:X})>");
        let r = parse_line(&line, None);
        prop_assert_eq!(r.format, Format::Sms);
        prop_assert_eq!(&r.message, &msg);
        prop_assert_eq!(r.component.as_deref(), Some(comp.as_str()));
        prop_assert_eq!(r.thread, Some(thread));
        prop_assert_eq!(r.bias, Some(bias));
        let local = NaiveDate::from_ymd_opt(2026, 11, 26).and_then(|d| d.and_hms_milli_opt(17, 9, 33, ms)).expect("time");
        prop_assert_eq!(r.time_utc(), Some((local + Duration::minutes(i64::from(bias))).and_utc()));
    }

    /// The stamp read by position and the general reading agree wherever the first reads one,
    /// and the first reads every stamp written the usual way.
    #[test]
    fn stamps_read_by_position_agree_with_the_general_reading(
        month in 0u32..14, day in 0u32..33, year in 0u32..10_000,
        hour in 0u32..26, minute in 0u32..62, second in 0u32..62,
        fraction in "[0-9]{0,11}", bias in "([+-][0-9]{0,11})?", noise in "[ 0-9+.:-]{0,3}",
        noise_at in 0usize..40,
    ) {
        let written = format!("{month:02}-{day:02}-{year:04} {hour:02}:{minute:02}:{second:02}.{fraction}{bias}");
        let mut stamp = written.clone();
        let at = noise_at.min(stamp.len());
        stamp.insert_str(at, &noise);
        for s in [written.as_str(), stamp.as_str()] {
            if let Some((time, bias)) = parse_sms_stamp_as_written(s.as_bytes()) {
                prop_assert_eq!(parse_sms_stamp_any(s), (Some(time), bias), "{}", s);
            }
        }
        let usual = format!("{:02}-{:02}-{:04} {:02}:{:02}:{:02}.{:03}{:+}", month % 12 + 1, day % 28 + 1, year, hour % 24, minute % 60, second % 60, second, i64::from(minute) - 30);
        prop_assert!(parse_sms_stamp_as_written(usual.as_bytes()).is_some(), "{}", usual);
    }

    /// Finding the framing by walking back over its `<` gives what the general search gives,
    /// wherever it finds one, whatever the message holds.
    #[test]
    fn framing_found_from_the_end_agrees_with_the_general_search(
        message in "[A-Za-z $<>]{0,30}",
        component in "[A-Z_$<>]{0,8}",
        stamp in prop_oneof![Just("11-26-2026 17:09:33.123+480".to_string()), "[0-9 :.<>$+-]{0,12}"],
        thread in prop_oneof![
            Just("3404 (0xD4C)".to_string()),
            "[0-9]{0,12} \\(0x[0-9A-Fa-f>g]{0,4}\\)",
            "[0-9a-fx ()<>]{0,10}",
        ],
        tail in prop_oneof![Just(String::new()), Just(" \r".to_string()), "[ <>$]{0,3}"],
    ) {
        let line = format!("{message}  $$<{component}><{stamp}><thread={thread}>{tail}");
        if let Some((at, framing)) = framing_as_written(&line) {
            prop_assert_eq!(Some(sms_record(&line, at, framing)), parse_sms_any(&line), "{}", line);
        }
    }
}
