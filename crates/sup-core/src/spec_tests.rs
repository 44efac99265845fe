//! One test per rule: a valid file, then one change that breaks exactly that rule, checked for
//! its field path and rule name.

use std::collections::BTreeMap;

use crate::model::*;
use crate::spec::{load_site_file, parse_site_file, to_raw, validate_sites};

const VALID: &str = r#"
[[site]]
code = "CEN"
name = "Central site"
mode = "native"
failover = "manual"

[site.software_updates]
sync_source = "microsoft_update"
reporting_events = "none"
schedule = "every 7 days"
classifications = ["Critical Updates", "Security Updates"]
products = ["Windows XP", "Office 2007"]
languages = ["English", "German"]

[[site.site_system]]
server = "cen-sup01.corp.example.com"

[[site.site_system]]
server = "cen-sup02.corp.example.com"
computer_account_access = false
install_account = "CORP\\svc-cm-install"
install_password_env = "SUP_INSTALL_PW"

[[site.site_system]]
server = "cen-inet01.corp.example.com"
internet_fqdn = "sup.example.com"

[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
ssl = true
proxy = { server = "proxy.corp.example.com", port = 8080 }

[[site.software_update_point]]
server = "cen-sup02.corp.example.com"
ssl = true

[[site.software_update_point]]
server = "cen-inet01.corp.example.com"
active = "internet"
ssl = true

[[site]]
code = "CH1"
name = "Child one"
parent = "CEN"

[[site.site_system]]
server = "n1.corp.example.com"
[[site.site_system]]
server = "n2.corp.example.com"
[[site.software_update_point]]
server = "n1.corp.example.com"
[[site.software_update_point]]
server = "n2.corp.example.com"
[[site.nlb_cluster]]
name = "supnlb.corp.example.com"
members = ["n1.corp.example.com", "n2.corp.example.com"]
active = "intranet"
"#;

fn load(text: &str) -> Result<Vec<Site>, crate::Violations> {
    load_site_file(text, &BTreeMap::new())
}

/// Replaces `from` with `to` in the valid file (which must change it) and expects `rule` at `path`.
fn check(from: &str, to: &str, path: &str, rule: &str) {
    assert!(VALID.contains(from), "fixture lacks {from:?}");
    let text = VALID.replacen(from, to, 1);
    match load(&text) {
        Ok(_) => panic!("accepted; expected {rule} at {path}"),
        Err(v) => assert!(v.has(path, rule), "expected {rule} at {path}, got:\n{v}"),
    }
}

#[test]
fn the_valid_file_loads() {
    let sites = load(VALID).expect("valid");
    assert_eq!(sites.len(), 2);
    let cen = &sites[0];
    assert_eq!(cen.mode, SiteMode::Native);
    assert_eq!(
        cen.declared_active(SlotKind::Intranet).map(|t| t.name),
        Some("cen-sup01.corp.example.com".into())
    );
    assert_eq!(web_site_of(8530, 8531), WsusWebSite::Custom);
    assert_eq!(web_site_of(80, 443), WsusWebSite::Default);
    let ch1 = &sites[1];
    assert_eq!(
        ch1.software_updates.sync_source,
        SyncSource::Upstream,
        "child default"
    );
    let nlb = ch1.declared_active(SlotKind::Intranet).expect("nlb active");
    assert!(nlb.nlb);
    assert_eq!(nlb.members.len(), 2);
    assert_eq!(
        ch1.declared_slot_of("n2.corp.example.com"),
        Some(SlotKind::Intranet)
    );
    assert_eq!(
        cen.software_updates
            .top
            .as_ref()
            .expect("top site")
            .classifications
            .len(),
        2
    );
}

#[test]
fn validated_sites_round_trip_through_the_spec_form() {
    let sites = load(VALID).expect("valid");
    let raw: Vec<_> = sites.iter().map(to_raw).collect();
    let again = validate_sites(&raw, &BTreeMap::new()).expect("round trip");
    assert_eq!(sites, again);
}

#[test]
fn site_code() {
    check(
        "code = \"CEN\"",
        "code = \"CENT\"",
        "site[0].code",
        "site_code",
    );
    check(
        "code = \"CEN\"",
        "code = \"ce1\"",
        "site[0].code",
        "site_code",
    );
}

#[test]
fn mode() {
    check(
        "mode = \"native\"",
        "mode = \"hybrid\"",
        "site[CEN].mode",
        "mode",
    );
}

#[test]
fn parent_exists() {
    check(
        "parent = \"CEN\"",
        "parent = \"XYZ\"",
        "site[CH1].parent",
        "parent_exists",
    );
}

#[test]
fn parent_known_from_the_store() {
    let child_only = &VALID[VALID.find("[[site]]\ncode = \"CH1\"").expect("child")..];
    assert!(load(child_only).is_err());
    let known = BTreeMap::from([("CEN".to_string(), None)]);
    assert!(load_site_file(child_only, &known).is_ok());
}

#[test]
fn parent_cycle() {
    check(
        "failover = \"manual\"",
        "failover = \"manual\"\nparent = \"CH1\"",
        "site[CEN].parent",
        "parent_cycle",
    );
    check(
        "parent = \"CEN\"",
        "parent = \"CH1\"",
        "site[CH1].parent",
        "parent_cycle",
    );
}

#[test]
fn duplicate_site() {
    let text = format!("{VALID}\n[[site]]\ncode = \"CEN\"\n");
    assert!(load(&text).is_err_and(|v| v.has("site[CEN].code", "duplicate_site")));
}

#[test]
fn fqdn() {
    check(
        "server = \"cen-sup02.corp.example.com\"\ncomputer",
        "server = \"cen-sup02\"\ncomputer",
        "site[CEN].site_system[1].server",
        "fqdn",
    );
}

#[test]
fn internet_fqdn_required() {
    check(
        "internet_fqdn = \"sup.example.com\"",
        "",
        "site[CEN].software_update_point[2].active",
        "internet_fqdn_required",
    );
}

#[test]
fn port_range() {
    check(
        "http_port = 8530",
        "http_port = 0",
        "site[CEN].software_update_point[0].http_port",
        "port_range",
    );
    check(
        "https_port = 8531",
        "https_port = 70000",
        "site[CEN].software_update_point[0].https_port",
        "port_range",
    );
}

#[test]
fn ports_distinct() {
    check(
        "https_port = 8531",
        "https_port = 8530",
        "site[CEN].software_update_point[0].https_port",
        "ports_distinct",
    );
}

#[test]
fn proxy_complete() {
    check(
        "proxy = { server = \"proxy.corp.example.com\", port = 8080 }",
        "proxy = { server = \"\", port = 8080 }",
        "site[CEN].software_update_point[0].proxy.server",
        "proxy_complete",
    );
    check(
        "proxy = { server = \"proxy.corp.example.com\", port = 8080 }",
        "proxy = { server = \"proxy.corp.example.com\" }",
        "site[CEN].software_update_point[0].proxy.port",
        "proxy_complete",
    );
    // A disabled proxy needs nothing.
    let text = VALID.replacen(
        "proxy = { server = \"proxy.corp.example.com\", port = 8080 }",
        "proxy = { enabled = false }",
        1,
    );
    assert!(load(&text).is_ok());
}

#[test]
fn install_account_required() {
    check(
        "install_account = \"CORP\\\\svc-cm-install\"\n",
        "",
        "site[CEN].site_system[1].install_account",
        "install_account_required",
    );
    check(
        "install_password_env = \"SUP_INSTALL_PW\"",
        "",
        "site[CEN].site_system[1].install_password_env",
        "install_account_required",
    );
}

#[test]
fn secrets_by_reference_only() {
    check(
        "install_password_env = \"SUP_INSTALL_PW\"",
        "install_password = \"hunter2\"",
        "site[CEN].site_system[1].install_password",
        "secret_by_reference",
    );
}

#[test]
fn account_name() {
    check(
        "install_account = \"CORP\\\\svc-cm-install\"",
        "install_account = \"svc-cm-install\"",
        "site[CEN].site_system[1].install_account",
        "account_name",
    );
}

#[test]
fn sup_on_site_system() {
    check(
        "[[site.software_update_point]]\nserver = \"cen-sup02.corp.example.com\"",
        "[[site.software_update_point]]\nserver = \"cen-sup09.corp.example.com\"",
        "site[CEN].software_update_point[1].server",
        "sup_on_site_system",
    );
}

#[test]
fn one_active_intranet() {
    check(
        "[[site.software_update_point]]\nserver = \"cen-sup02.corp.example.com\"",
        "[[site.software_update_point]]\nserver = \"cen-sup02.corp.example.com\"\nactive = \"intranet\"",
        "site[CEN].software_update_point[1].active",
        "one_active_intranet",
    );
}

#[test]
fn internet_needs_native() {
    check(
        "mode = \"native\"",
        "mode = \"mixed\"",
        "site[CEN].software_update_point[2].active",
        "internet_needs_native",
    );
}

#[test]
fn internet_not_the_intranet_active() {
    let text = VALID
        .replacen(
            "server = \"cen-sup01.corp.example.com\"\n",
            "server = \"cen-sup01.corp.example.com\"\ninternet_fqdn = \"a.example.com\"\n",
            1,
        )
        .replacen("active = \"internet\"\n", "", 1)
        .replacen(
            "[[site.software_update_point]]\nserver = \"cen-sup02.corp.example.com\"",
            "[[site.software_update_point]]\nserver = \"cen-sup02.corp.example.com\"\n",
            1,
        );
    // Make the intranet active SUP also the Internet one through an NLB cluster of itself.
    let text = text.replacen(
        "[[site]]\ncode = \"CH1\"",
        "[[site.nlb_cluster]]\nname = \"inet.corp.example.com\"\nmembers = [\"cen-sup01.corp.example.com\"]\nactive = \"internet\"\n\n[[site]]\ncode = \"CH1\"",
        1,
    );
    assert!(load(&text).is_err_and(|v| v.has(
        "site[CEN].nlb_cluster[0].active",
        "internet_not_intranet_active"
    )));
}

#[test]
fn nlb_size() {
    check(
        "members = [\"n1.corp.example.com\", \"n2.corp.example.com\"]",
        "members = []",
        "site[CH1].nlb_cluster[0].members",
        "nlb_size",
    );
    check(
        "members = [\"n1.corp.example.com\", \"n2.corp.example.com\"]",
        "members = [\"n1.corp.example.com\", \"n2.corp.example.com\", \"n3.corp.example.com\", \"n4.corp.example.com\", \"n5.corp.example.com\"]",
        "site[CH1].nlb_cluster[0].members",
        "nlb_size",
    );
}

#[test]
fn nlb_member_role() {
    check(
        "members = [\"n1.corp.example.com\", \"n2.corp.example.com\"]",
        "members = [\"n1.corp.example.com\", \"n3.corp.example.com\"]",
        "site[CH1].nlb_cluster[0].members[1]",
        "nlb_member_role",
    );
}

#[test]
fn central_sync_source() {
    check(
        "sync_source = \"microsoft_update\"",
        "sync_source = \"upstream\"",
        "site[CEN].software_updates.sync_source",
        "central_sync_source",
    );
    let text = VALID.replacen(
        "sync_source = \"microsoft_update\"",
        "sync_source = \"none\"",
        1,
    );
    assert!(
        load(&text).is_ok(),
        "a disconnected central site is allowed"
    );
}

#[test]
fn child_sync_source() {
    let text = VALID.replacen(
        "parent = \"CEN\"",
        "parent = \"CEN\"\n[site.software_updates]\nsync_source = \"microsoft_update\"",
        1,
    );
    assert!(load(&text).is_err_and(|v| v.has(
        "site[CH1].software_updates.sync_source",
        "child_sync_source"
    )));
}

#[test]
fn reporting_events() {
    check(
        "reporting_events = \"none\"",
        "reporting_events = \"some\"",
        "site[CEN].software_updates.reporting_events",
        "reporting_events",
    );
    for ok in ["status_only", "all"] {
        let text = VALID.replacen(
            "reporting_events = \"none\"",
            &format!("reporting_events = \"{ok}\""),
            1,
        );
        assert!(load(&text).is_ok(), "{ok}");
    }
}

#[test]
fn schedule_rules() {
    check(
        "schedule = \"every 7 days\"",
        "schedule = \"every 24 hours\"",
        "site[CEN].software_updates.schedule",
        "schedule_range",
    );
    check(
        "schedule = \"every 7 days\"",
        "schedule = \"every 5 weeks\"",
        "site[CEN].software_updates.schedule",
        "schedule_range",
    );
    check(
        "schedule = \"every 7 days\"",
        "schedule = \"sometimes\"",
        "site[CEN].software_updates.schedule",
        "schedule",
    );
    check(
        "schedule = \"every 7 days\"",
        "schedule = { type = \"weekly\", days = [\"Blursday\"], at = \"02:00\" }",
        "site[CEN].software_updates.schedule.days[0]",
        "schedule",
    );
    check(
        "schedule = \"every 7 days\"",
        "schedule = { type = \"monthly_by_date\", day = 32, at = \"02:00\" }",
        "site[CEN].software_updates.schedule.day",
        "schedule_range",
    );
    for ok in [
        "schedule = \"manual\"",
        "schedule = { type = \"weekly\", days = [\"Tuesday\", \"Fri\"], at = \"02:00\" }",
        "schedule = { type = \"monthly_by_weekday\", week = \"second\", weekday = \"Tuesday\", at = \"22:00\" }",
        "schedule = { every = \"12 hours\", start = \"2026-11-01T00:30:00\" }",
    ] {
        let text = VALID.replacen("schedule = \"every 7 days\"", ok, 1);
        assert!(load(&text).is_ok(), "{ok}: {:?}", load(&text).err());
    }
}

#[test]
fn catalog_names_with_suggestions() {
    let text = VALID.replacen("\"Security Updates\"", "\"Security Update\"", 1);
    let err = load(&text).expect_err("unknown classification");
    assert!(err.has("site[CEN].software_updates.classifications[1]", "catalog"));
    assert!(
        err.to_string()
            .contains("did you mean \"Security Updates\""),
        "{err}"
    );
    check(
        "\"Office 2007\"",
        "\"Office 2099\"",
        "site[CEN].software_updates.products[1]",
        "catalog",
    );
    check(
        "\"German\"",
        "\"Klingon\"",
        "site[CEN].software_updates.languages[1]",
        "catalog",
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_path() {
    let err =
        parse_site_file(&VALID.replacen("ssl = true", "ssl = \"yes\"", 1)).expect_err("wrong type");
    assert_eq!(
        err.0[0].path, "site[0].software_update_point[0].ssl",
        "{err}"
    );
    let err =
        parse_site_file(&VALID.replacen("ssl = true", "sll = true", 1)).expect_err("unknown key");
    assert!(
        err.0[0]
            .path
            .starts_with("site[0].software_update_point[0]"),
        "{err}"
    );
    assert!(err.to_string().contains("sll"), "{err}");
    let err = parse_site_file("[[site]\n").expect_err("syntax");
    assert_eq!(err.0[0].rule, "toml_syntax");
    // A key with an empty name still gets a place to point at (found by fuzzing).
    let err = parse_site_file("''=''").expect_err("unknown empty key");
    assert_eq!(err.0[0].path, "<file>", "{err}");
}

#[test]
fn every_violation_is_reported_at_once() {
    let text = VALID
        .replacen("code = \"CEN\"", "code = \"CENTRAL\"", 1)
        .replacen("https_port = 8531", "https_port = 8530", 1);
    let err = load(&text).expect_err("two violations");
    assert!(err.0.len() >= 2, "{err}");
}

#[test]
fn schedule_as_a_configmgr_token() {
    let text = VALID.replacen(
        "schedule = \"every 7 days\"",
        "schedule = \"0001200000100038\"",
        1,
    );
    let sites = load(&text).expect("a token is a schedule");
    assert!(matches!(
        &sites[0].software_updates.top.as_ref().expect("top site").schedule,
        crate::schedule::SyncSchedule::Recurring(s) if s.recurrence == crate::schedule::Recurrence::Interval { every: 7, unit: crate::schedule::IntervalUnit::Days }
    ));
    check(
        "schedule = \"every 7 days\"",
        "schedule = \"000120000010003G\"",
        "site[CEN].software_updates.schedule",
        "schedule",
    );
    check(
        "schedule = \"every 7 days\"",
        "schedule = \"0001200000300000\"",
        "site[CEN].software_updates.schedule",
        "schedule_token",
    );
}

#[test]
fn schedule_tables_take_the_token_json_names_too() {
    for (table, expected) in [
        (
            "{ type = \"interval\", day_span = 3, start = \"2026-11-01T02:00:00\" }",
            crate::schedule::Recurrence::Interval {
                every: 3,
                unit: crate::schedule::IntervalUnit::Days,
            },
        ),
        (
            "{ type = \"weekly\", weekday = 3, weeks = 2, start = \"2008-08-24T11:42:00\" }",
            crate::schedule::Recurrence::Weekly {
                days: vec![chrono::Weekday::Tue],
                every_weeks: 2,
            },
        ),
        (
            "{ type = \"monthly_by_weekday\", weekday = 2, week_order = 0, months = 1 }",
            crate::schedule::Recurrence::MonthlyByWeekday {
                week: crate::schedule::WeekOrder::Last,
                weekday: chrono::Weekday::Mon,
                every_months: 1,
            },
        ),
        (
            "{ type = \"monthly_by_date\", month_day = 0, months = 3 }",
            crate::schedule::Recurrence::MonthlyByDate {
                day: 0,
                every_months: 3,
            },
        ),
        (
            "\"daily\"",
            crate::schedule::Recurrence::Interval {
                every: 1,
                unit: crate::schedule::IntervalUnit::Days,
            },
        ),
    ] {
        let text = VALID.replacen(
            "schedule = \"every 7 days\"",
            &format!("schedule = {table}"),
            1,
        );
        let sites = load(&text).unwrap_or_else(|e| panic!("{table}: {e}"));
        match &sites[0]
            .software_updates
            .top
            .as_ref()
            .expect("top site")
            .schedule
        {
            crate::schedule::SyncSchedule::Recurring(s) => {
                assert_eq!(s.recurrence, expected, "{table}")
            }
            other => panic!("{table}: {other:?}"),
        }
    }
    check(
        "schedule = \"every 7 days\"",
        "schedule = { type = \"weekly\", weekday = 9 }",
        "site[CEN].software_updates.schedule.days[0]",
        "schedule",
    );
}

#[test]
fn proxy_account_by_reference_only() {
    const PROXY: &str = "proxy = { server = \"proxy.corp.example.com\", port = 8080 }";
    let with = |extra: &str| {
        format!("proxy = {{ server = \"proxy.corp.example.com\", port = 8080, {extra} }}")
    };
    check(
        PROXY,
        &with("account = 'CORP\\svc-proxy', password = \"hunter2\""),
        "site[CEN].software_update_point[0].proxy.password",
        "secret_by_reference",
    );
    check(
        PROXY,
        &with("account = 'CORP\\svc-proxy'"),
        "site[CEN].software_update_point[0].proxy.password_env",
        "proxy_account_complete",
    );
    check(
        PROXY,
        &with("password_env = \"PROXY_PW\""),
        "site[CEN].software_update_point[0].proxy.account",
        "proxy_account_complete",
    );
    check(
        PROXY,
        &with("account = 'svc-proxy', password_file = \"/run/secrets/proxy\""),
        "site[CEN].software_update_point[0].proxy.account",
        "account_name",
    );
    check(
        PROXY,
        &with("account = 'CORP\\svc-proxy', password_env = \"A\", password_file = \"/b\""),
        "site[CEN].software_update_point[0].proxy.password_env",
        "secret_by_reference",
    );
    let text = VALID.replacen(
        PROXY,
        &with("account = 'CORP\\svc-proxy', password_file = \"/run/secrets/proxy\""),
        1,
    );
    let sites = load(&text).expect("a proxy account by reference is valid");
    let proxy = sites[0].software_update_points[0]
        .proxy
        .clone()
        .expect("proxy");
    assert_eq!(proxy.account.as_deref(), Some("CORP\\svc-proxy"));
    assert_eq!(
        proxy.password,
        Some(crate::model::SecretRef::File("/run/secrets/proxy".into()))
    );
}

#[test]
fn native_mode_requires_ssl_on_every_sup() {
    check(
        "server = \"cen-sup02.corp.example.com\"\nssl = true\n",
        "server = \"cen-sup02.corp.example.com\"\n",
        "site[CEN].software_update_point[1].ssl",
        "native_requires_ssl",
    );
    // A mixed-mode site may leave SSL off.
    let mixed = VALID
        .replacen("mode = \"native\"", "mode = \"mixed\"", 1)
        .replacen("active = \"internet\"", "", 1)
        .replace("ssl = true\n", "");
    load(&mixed).expect("mixed mode without SSL");
}

#[test]
fn the_internet_sup_needs_the_intranet_one_and_is_remote() {
    // No active intranet SUP to synchronize from.
    let text = VALID.replacen(
        "active = \"intranet\"\nhttp_port = 8530",
        "http_port = 8530",
        1,
    );
    let v = load(&text).expect_err("no intranet SUP");
    assert!(
        v.has(
            "site[CEN].software_update_point[2].active",
            "internet_needs_intranet"
        ),
        "{v}"
    );
    // Not the site server.
    let text = VALID.replacen(
        "failover = \"manual\"",
        "failover = \"manual\"\nsite_server = \"cen-inet01.corp.example.com\"",
        1,
    );
    let v = load(&text).expect_err("internet SUP on the site server");
    assert!(
        v.has(
            "site[CEN].software_update_point[2].active",
            "internet_not_site_server"
        ),
        "{v}"
    );
    // An NLB cluster active on the intranet serves as the intranet SUP.
    let text = VALID
        .replacen("active = \"intranet\"\nhttp_port = 8530", "http_port = 8530", 1)
        .replacen(
            "[[site]]\ncode = \"CH1\"",
            "[[site.nlb_cluster]]\nname = \"cennlb.corp.example.com\"\nmembers = [\"cen-sup01.corp.example.com\", \"cen-sup02.corp.example.com\"]\nactive = \"intranet\"\n\n[[site]]\ncode = \"CH1\"",
            1,
        );
    load(&text).expect("an active intranet NLB cluster");
}

#[test]
fn intranet_sup_may_accept_internet_clients_instead() {
    let without_inet = VALID.replacen(
        "server = \"cen-inet01.corp.example.com\"\nactive = \"internet\"",
        "server = \"cen-inet01.corp.example.com\"",
        1,
    );
    let with_fqdn = without_inet.replacen(
        "[[site.site_system]]\nserver = \"cen-sup01.corp.example.com\"\n",
        "[[site.site_system]]\nserver = \"cen-sup01.corp.example.com\"\ninternet_fqdn = \"sup01.example.com\"\n",
        1,
    );
    let allowed = with_fqdn.replacen(
        "active = \"intranet\"\nhttp_port = 8530",
        "active = \"intranet\"\nallow_internet_clients = true\nhttp_port = 8530",
        1,
    );
    let sites = load(&allowed).expect("the intranet SUP accepts Internet clients");
    assert!(sites[0].software_update_points[0].allow_internet_clients);
    let back = validate_sites(&[to_raw(&sites[0])], &BTreeMap::new()).expect("round trip");
    assert_eq!(back[0], sites[0]);

    // Without an Internet FQDN on its site system.
    let v = load(&without_inet.replacen(
        "active = \"intranet\"\nhttp_port = 8530",
        "active = \"intranet\"\nallow_internet_clients = true\nhttp_port = 8530",
        1,
    ))
    .expect_err("no internet fqdn");
    assert!(
        v.has(
            "site[CEN].software_update_point[0].allow_internet_clients",
            "internet_clients_need_fqdn"
        ),
        "{v}"
    );
    // Together with an active Internet-based SUP.
    let both = VALID
        .replacen(
            "[[site.site_system]]\nserver = \"cen-sup01.corp.example.com\"\n",
            "[[site.site_system]]\nserver = \"cen-sup01.corp.example.com\"\ninternet_fqdn = \"sup01.example.com\"\n",
            1,
        )
        .replacen(
            "active = \"intranet\"\nhttp_port = 8530",
            "active = \"intranet\"\nallow_internet_clients = true\nhttp_port = 8530",
            1,
        );
    let v = load(&both).expect_err("both");
    assert!(
        v.has(
            "site[CEN].software_update_point[0].allow_internet_clients",
            "internet_clients_or_internet_sup"
        ),
        "{v}"
    );
    // On a standby.
    let v = load(&with_fqdn.replacen(
        "server = \"cen-sup02.corp.example.com\"\nssl = true\n",
        "server = \"cen-sup02.corp.example.com\"\nssl = true\nallow_internet_clients = true\n",
        1,
    ))
    .expect_err("standby");
    assert!(
        v.has(
            "site[CEN].software_update_point[1].allow_internet_clients",
            "internet_clients_active_only"
        ),
        "{v}"
    );
}

#[test]
fn a_child_site_inherits_the_top_settings() {
    for (key, value) in [
        ("schedule", "\"every 1 days\""),
        ("classifications", "[\"Security Updates\"]"),
        ("products", "[\"Windows XP\"]"),
        ("languages", "[\"English\"]"),
        ("update_file_languages", "[\"English\"]"),
        ("summary_languages", "[\"English\"]"),
    ] {
        let text = VALID.replacen(
            "parent = \"CEN\"\n",
            &format!("parent = \"CEN\"\n[site.software_updates]\n{key} = {value}\n"),
            1,
        );
        let v = load(&text).expect_err(key);
        let path = format!("site[CH1].software_updates.{key}");
        assert!(v.has(&path, "child_inherits_settings"), "{key}: {v}");
        let message =
            &v.0.iter()
                .find(|x| x.path == path)
                .expect("violation")
                .message;
        assert!(message.contains("top site"), "{message}");
    }
    let sites = load(VALID).expect("valid");
    assert!(sites[1].software_updates.top.is_none());
    assert!(sites[0].software_updates.top.is_some());
    // A child's own synchronization source and reporting level stay its own.
    let text = VALID.replacen(
        "parent = \"CEN\"\n",
        "parent = \"CEN\"\n[site.software_updates]\nreporting_events = \"all\"\n",
        1,
    );
    let sites = load(&text).expect("reporting events on a child");
    assert_eq!(
        sites[1].software_updates.reporting_events,
        ReportingEvents::All
    );
}

#[test]
fn two_language_lists() {
    let sites = load(VALID).expect("valid");
    let top = sites[0].software_updates.top.as_ref().expect("top");
    let ids = |l: &[crate::catalog::Entry]| l.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&top.update_file_languages), ["en", "de"]);
    assert_eq!(
        ids(&top.summary_languages),
        ["en", "de"],
        "languages sets both"
    );
    let text = VALID.replacen(
        "languages = [\"English\", \"German\"]",
        "update_file_languages = [\"English\", \"German\"]\nsummary_languages = [\"French\"]",
        1,
    );
    let sites = load(&text).expect("two lists");
    let top = sites[0].software_updates.top.as_ref().expect("top");
    assert_eq!(ids(&top.update_file_languages), ["en", "de"]);
    assert_eq!(ids(&top.summary_languages), ["fr"]);
    let back = validate_sites(&[to_raw(&sites[0])], &BTreeMap::new()).expect("round trip");
    assert_eq!(back[0], sites[0]);
    check(
        "languages = [\"English\", \"German\"]",
        "languages = [\"English\"]\nsummary_languages = [\"French\"]",
        "site[CEN].software_updates.languages",
        "languages_once",
    );
    check(
        "languages = [\"English\", \"German\"]",
        "summary_languages = [\"Frnch\"]",
        "site[CEN].software_updates.summary_languages[0]",
        "catalog",
    );
}

#[test]
fn site_time_zone() {
    let sites = load(VALID).expect("valid");
    assert_eq!(sites[0].time_zone, chrono_tz::UTC, "UTC by default");
    let text = VALID.replacen(
        "failover = \"manual\"",
        "failover = \"manual\"\ntime_zone = \"America/New_York\"",
        1,
    );
    let sites = load(&text).expect("a zone");
    assert_eq!(sites[0].time_zone, chrono_tz::America::New_York);
    let back = validate_sites(&[to_raw(&sites[0])], &BTreeMap::new()).expect("round trip");
    assert_eq!(back[0], sites[0]);
    check(
        "failover = \"manual\"",
        "failover = \"manual\"\ntime_zone = \"Mars/Olympus_Mons\"",
        "site[CEN].time_zone",
        "time_zone",
    );
}

#[test]
fn a_gmt_token_stays_gmt() {
    let text = VALID.replacen(
        "schedule = \"every 7 days\"",
        "schedule = \"0001200000100039\"",
        1,
    );
    let sites = load(&text).expect("gmt token");
    let top = sites[0].software_updates.top.as_ref().expect("top");
    assert!(matches!(&top.schedule, crate::schedule::SyncSchedule::Recurring(s) if s.gmt));
    let back = validate_sites(&[to_raw(&sites[0])], &BTreeMap::new()).expect("round trip");
    assert_eq!(back[0], sites[0]);
}
