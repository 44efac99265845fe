//! Row by row against the reference table: each site-file field lands in its property, slot and
//! value, and a control file reads back into the site it came from.

use std::collections::BTreeMap;

use sup_core::model::{Site, TopSettings};
use sup_core::spec::{load_site_file, validate_sites};

use super::*;

const SITE: &str = r#"
[[site]]
code = "CEN"
mode = "native"
site_server = "cen-site.corp.example.com"
[site.software_updates]
reporting_events = "status_only"
schedule = "every 7 days"
classifications = ["Critical Updates", "Security Updates"]
products = ["Windows XP"]
update_file_languages = ["English", "German"]
summary_languages = ["English"]
[[site.site_system]]
server = "cen-sup01.corp.example.com"
[[site.site_system]]
server = "cen-sup02.corp.example.com"
internet_fqdn = "sup.example.com"
computer_account_access = false
install_account = 'CORP\svc-install'
install_password_env = "PW"
[[site.software_update_point]]
server = "cen-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
ssl = true
proxy = { server = "proxy.corp.example.com", port = 8080, account = 'CORP\svc-proxy', password_env = "PROXY_PW" }
[[site.software_update_point]]
server = "cen-sup02.corp.example.com"
ssl = true
"#;

fn site() -> Site {
    load_site_file(SITE, &BTreeMap::new())
        .expect("valid")
        .pop()
        .expect("one site")
}

fn top(site: &Site) -> TopSettings {
    site.software_updates.top.clone().expect("top site")
}

fn file(site: &Site) -> ControlFile {
    let top = top(site);
    control_file(
        site,
        &Wiring {
            site_server: "cen-site.corp.example.com",
            active: Some("cen-sup01.corp.example.com"),
            parent_wsus: None,
            top: &top,
        },
    )
}

fn p<'a>(props: &'a [EmbeddedProperty], name: &str) -> &'a EmbeddedProperty {
    prop(props, name).unwrap_or_else(|| panic!("no {name} in {props:?}"))
}

#[test]
fn site_systems_and_roles() {
    let cf = file(&site());
    assert_eq!(cf.rows.len(), 4);
    let sys = cf
        .row(Role::SiteSystem, "cen-sup02.corp.example.com")
        .expect("site system row");
    assert_eq!(sys.nal_type, "Windows NT Server");
    assert_eq!(
        sys.nal_path,
        r#"["Display=\\cen-sup02.corp.example.com\"]MSWNET:["SMS_SITE=CEN"]\\cen-sup02.corp.example.com\"#
    );
    assert_eq!(
        p(&sys.props, "Server Remote Name").value1,
        "cen-sup02.corp.example.com"
    );
    assert_eq!(
        p(&sys.props, "Server Remote Public Name").value1,
        "sup.example.com"
    );
    assert_eq!(p(&sys.props, "UseMachineAccount").value, 0);
    assert_eq!(p(&sys.props, "UserName").value2, r"CORP\svc-install");
    assert_eq!(p(&sys.props, "IsProtected").value, 1);
    // The password has no 2007 property: nothing carries it.
    assert!(
        sys.props
            .iter()
            .all(|x| !x.value1.contains("PW") && !x.value2.contains("PW"))
    );

    let sup = cf
        .row(Role::SoftwareUpdatePoint, "cen-sup01.corp.example.com")
        .expect("SUP row");
    assert_eq!(
        Role::from_role_name("SMS Software Update Point"),
        Some(sup.role)
    );
    assert_eq!(p(&sup.props, "WSUSIISPort").value, 8530);
    assert_eq!(p(&sup.props, "WSUSIISSSLPort").value, 8531);
    assert_eq!(p(&sup.props, "SSLWSUS").value, 1);
    assert_eq!(p(&sup.props, "UseProxy").value, 1);
    assert_eq!(p(&sup.props, "ProxyName").value2, "proxy.corp.example.com");
    assert_eq!(p(&sup.props, "ProxyServerPort").value, 8080);
    assert_eq!(
        p(&sup.props, "AnonymousProxyAccess").value,
        0,
        "0 means use credentials"
    );
    assert_eq!(p(&sup.props, "UserName").value2, r"CORP\svc-proxy");
    let other = cf
        .row(Role::SoftwareUpdatePoint, "cen-sup02.corp.example.com")
        .expect("SUP row");
    assert_eq!(
        p(&other.props, "WSUSIISPort").value,
        80,
        "the default web site"
    );
    assert_eq!(p(&other.props, "WSUSIISSSLPort").value, 443);
    assert_eq!(p(&other.props, "UseProxy").value, 0);
}

#[test]
fn the_components() {
    let cf = file(&site());
    let wcm = cf
        .component(ComponentName::WsusConfigurationManager)
        .expect("WCM");
    assert_eq!(
        wcm.item_name,
        "SMS_WSUS_CONFIGURATION_MANAGER|CEN-SITE.CORP.EXAMPLE.COM"
    );
    assert_eq!(
        p(&wcm.props, "DefaultWSUS").value2,
        "cen-sup01.corp.example.com"
    );
    assert_eq!(p(&wcm.props, "DefaultWSUSIISPort").value, 8530);
    assert_eq!(p(&wcm.props, "DefaultWSUSIISSSLPort").value, 8531);
    assert_eq!(p(&wcm.props, "SSLDefaultWSUS").value, 1);
    assert_eq!(
        p(&wcm.props, "DefaultUseParentWSUS").value,
        0,
        "Microsoft Update"
    );
    assert!(prop(&wcm.props, "ParentWSUS").is_none());
    assert_eq!(
        p(&wcm.props, "ClientReportingLevel").value,
        1,
        "status only"
    );
    assert_eq!(p(&wcm.props, "SupportedUpdateLanguages").value2, "en,de");
    assert_eq!(p(&wcm.props, "SupportedTitleLanguages").value2, "en");
    let sync = cf.component(ComponentName::WsusSyncManager).expect("sync");
    assert_eq!(
        sync.item_name,
        "SMS_WSUS_SYNC_MANAGER|CEN-SITE.CORP.EXAMPLE.COM"
    );
    assert_eq!(p(&sync.props, "Sync Schedule").value1, "0001200000100038");
    assert_eq!(
        cf.categories,
        vec![
            CategorySubscription {
                unique_id: "Product:558f4bc3-4827-49e1-accf-ea79fd72d4c9".into(),
                subscribed: true
            },
            CategorySubscription {
                unique_id: "UpdateClassification:0fa1201d-4330-4fa8-8ae9-b877473b6441".into(),
                subscribed: true
            },
            CategorySubscription {
                unique_id: "UpdateClassification:e6cf1350-c01b-414d-a61f-263d14d133b4".into(),
                subscribed: true
            },
        ]
    );
}

#[test]
fn a_child_synchronizes_from_its_parent() {
    let parent = site();
    let top = top(&parent);
    let child = load_site_file(
        "[[site]]\ncode = \"CH1\"\nparent = \"CEN\"\n[[site.site_system]]\nserver = \"ch1-sup.corp.example.com\"\n[[site.software_update_point]]\nserver = \"ch1-sup.corp.example.com\"\nactive = \"intranet\"\n",
        &BTreeMap::from([("CEN".to_string(), None)]),
    )
    .expect("child")
    .pop()
    .expect("one");
    let cf = control_file(
        &child,
        &Wiring {
            site_server: "ch1-site.corp.example.com",
            active: Some("ch1-sup.corp.example.com"),
            parent_wsus: Some(ParentWsus {
                server: "cen-sup01.corp.example.com".into(),
                port: 8531,
                ssl: true,
            }),
            top: &top,
        },
    );
    let wcm = cf
        .component(ComponentName::WsusConfigurationManager)
        .expect("WCM");
    assert_eq!(p(&wcm.props, "DefaultUseParentWSUS").value, 1, "upstream");
    assert_eq!(
        p(&wcm.props, "ParentWSUS").value2,
        "cen-sup01.corp.example.com"
    );
    assert_eq!(p(&wcm.props, "ParentWSUSPort").value, 8531);
    assert_eq!(p(&wcm.props, "SSLToParentWSUS").value, 1);
    // The top site's settings, inherited.
    assert_eq!(p(&wcm.props, "SupportedUpdateLanguages").value2, "en,de");
    assert_eq!(cf.categories.len(), 3);
}

#[test]
fn a_control_file_reads_back_into_its_site() {
    let original = site();
    let mut raw = site_from_control_file(&file(&original));
    assert_eq!(
        raw.site_server.as_deref(),
        Some("cen-site.corp.example.com")
    );
    // Not in these items: the mode, and the passwords (references the operator adds).
    raw.mode = Some("native".into());
    raw.site_system[1].install_password_env = Some("PW".into());
    if let Some(p) = raw.software_update_point[0].proxy.as_mut() {
        p.password_env = Some("PROXY_PW".into());
    }
    let back = validate_sites(&[raw], &BTreeMap::new())
        .unwrap_or_else(|v| panic!("{v}"))
        .pop()
        .expect("one");
    assert_eq!(back.site_systems, original.site_systems);
    assert_eq!(back.software_update_points, original.software_update_points);
    // Subscriptions are a set: compare them in one order.
    let sorted = |s: &Site| {
        let mut su = s.software_updates.clone();
        if let Some(t) = su.top.as_mut() {
            t.classifications.sort_by_key(|e| e.id);
            t.products.sort_by_key(|e| e.id);
        }
        su
    };
    assert_eq!(sorted(&back), sorted(&original));
    assert_eq!(back.site_server, original.site_server);
}

#[test]
fn nal_paths_name_their_server() {
    let path = nal_path("SUP01.corp.example.com", "CEN");
    assert_eq!(
        server_of_nal_path(&path).as_deref(),
        Some("sup01.corp.example.com")
    );
    assert_eq!(server_of_nal_path("garbage"), None);
}
