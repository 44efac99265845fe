use std::collections::BTreeMap;
use std::sync::Arc;

use sup_smsprov::map::{self, SupView};
use sup_smsprov::wmi as sms;
use sup_wsman::envelope::{self, Header, action};
use sup_wsman::instance::{Instance, class_uri, namespace_uri};

use super::*;
use crate::logs::Logs;
use crate::state::{ServerDefaults, Timing};

const SITE_SERVER: &str = "cen-site.corp.example.com";
const SUP: &str = "cen-sup1.corp.example.com";

fn provider(dir: &std::path::Path) -> Arc<Provider> {
    let sites = BTreeMap::from([("CEN".to_string(), SITE_SERVER.to_string())]);
    let emu = Arc::new(Emulator::new(
        Logs::new(dir.to_path_buf(), 250_000),
        Timing {
            step_ms: 1,
            ..Timing::default()
        },
        ServerDefaults::default(),
        sites.clone(),
    ));
    emu.add_server(SUP, Some(8530), Some(8531), None);
    Arc::new(Provider::new(emu, &sites, &BTreeMap::new()))
}

fn call(
    p: &Arc<Provider>,
    class: &str,
    act: &str,
    selectors: Vec<(String, String)>,
    session: Option<&str>,
    body: &str,
) -> (u16, envelope::Message) {
    let ns = sms::namespace("CEN");
    let ruri = if class == "StdRegProv" {
        class_uri("root\\default", class)
    } else {
        class_uri(&ns, class)
    };
    let h = Header {
        to: "http://cen-site:5985/wsman".into(),
        resource_uri: ruri.clone(),
        action: act.replace("{ruri}", &ruri),
        message_id: "uuid:1".into(),
        selectors,
        options: session
            .map(|s| vec![("wmi:SessionHandle".to_string(), s.to_string())])
            .unwrap_or_default(),
        operation_timeout: "PT60S".into(),
        max_envelope_size: 153600,
        ..Default::default()
    };
    let req = envelope::parse(envelope::request(&h, body).as_bytes()).unwrap();
    let r = p.handle(SITE_SERVER, &req);
    (r.status, envelope::parse(r.body.as_bytes()).unwrap())
}

fn invoke(
    p: &Arc<Provider>,
    method: &str,
    params: &[(&str, &str)],
    session: Option<&str>,
) -> Instance {
    let ruri = class_uri(&sms::namespace("CEN"), sms::SITE_CONTROL_FILE);
    let (status, m) = call(
        p,
        sms::SITE_CONTROL_FILE,
        &format!("{{ruri}}/{method}"),
        vec![],
        session,
        &envelope::invoke_input(&ruri, method, params),
    );
    assert_eq!(status, 200, "{method}: {:?}", m.fault());
    assert_eq!(m.header.relates_to, "uuid:1");
    Instance::from_element(m.payload().unwrap())
}

#[tokio::test]
async fn a_committed_session_installs_the_role_and_configures_the_active_sup() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let handle = invoke(&p, "GetSessionHandle", &[], None)
        .text("SessionHandle")
        .unwrap()
        .to_string();
    invoke(&p, "RefreshSCF", &[("SiteCode", "CEN")], Some(&handle));
    let row = map::sup_row(
        "CEN",
        &SupView {
            server: SUP,
            http_port: 8530,
            https_port: 8531,
            ..Default::default()
        },
    );
    let ns = namespace_uri(&sms::namespace("CEN"));
    let (status, _) = call(
        &p,
        sms::SYS_RES_USE,
        action::CREATE,
        vec![],
        Some(&handle),
        &sms::row_to_instance(&row).to_xml(&ns),
    );
    assert_eq!(status, 200);
    // Not committed yet: the committed file has no SUP row, the session's has.
    assert_eq!(p.committed("CEN").unwrap().rows.len(), 1);
    let (_, m) = call(
        &p,
        sms::SYS_RES_USE,
        action::GET,
        sms::row_selectors(&row),
        Some(&handle),
        "",
    );
    assert_eq!(
        sms::row_from_instance(&Instance::from_element(m.payload().unwrap())),
        Some(row.clone())
    );
    invoke(&p, "CommitSCF", &[("SiteCode", "CEN")], Some(&handle));
    invoke(
        &p,
        "ReleaseSessionHandle",
        &[("SessionHandle", &handle)],
        None,
    );
    assert_eq!(p.committed("CEN").unwrap().rows.len(), 2);
    let journal = p.journal();
    assert_eq!(journal.len(), 1);
    assert!(journal[0].accepted);
    // The commit started setup on the SUP.
    for _ in 0..200 {
        if p.emu.get(SUP).is_some_and(|s| s.role_installed) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(p.emu.get(SUP).unwrap().role_installed);
}

#[tokio::test]
async fn enumerations_filter_by_wql_and_page_through_pull() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let body = envelope::enumerate_wql(
        "SELECT * FROM SMS_UpdateCategoryInstance WHERE CategoryTypeName = 'UpdateClassification'",
        3,
    );
    let (status, m) = call(&p, "*", action::ENUMERATE, vec![], None, &body);
    assert_eq!(status, 200);
    let mut page = envelope::page(m.payload().unwrap());
    let mut all = page.items.clone();
    assert_eq!(all.len(), 3);
    while !page.end {
        let ctx = page.context.clone().unwrap();
        let (_, m) = call(
            &p,
            "*",
            action::PULL,
            vec![],
            None,
            &envelope::pull(&ctx, 4),
        );
        page = envelope::page(m.payload().unwrap());
        all.extend(page.items.clone());
    }
    assert_eq!(all.len(), sup_core::catalog::CLASSIFICATIONS.len());
    assert!(
        all.iter()
            .all(|i| i.text("CategoryTypeName") == Some("UpdateClassification"))
    );
    let (status, m) = call(
        &p,
        "*",
        action::ENUMERATE,
        vec![],
        None,
        &envelope::enumerate_wql("SELECT Name FROM X", 3),
    );
    assert_eq!(status, 500);
    assert_eq!(m.fault().unwrap().wmi_code, Some(0x8004_1017));
}

#[tokio::test]
async fn injected_faults_answer_as_the_provider_would() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    p.emu.set_fault(SITE_SERVER, Fault::CommitRefused);
    let ruri = class_uri(&sms::namespace("CEN"), sms::SITE_CONTROL_FILE);
    let (status, m) = call(
        &p,
        sms::SITE_CONTROL_FILE,
        "{ruri}/CommitSCF",
        vec![],
        None,
        &envelope::invoke_input(&ruri, "CommitSCF", &[("SiteCode", "CEN")]),
    );
    assert_eq!(status, 500);
    assert_eq!(m.fault().unwrap().wmi_code, Some(code::WBEM_E_FAILED));
    assert!(!p.journal()[0].accepted);
    p.emu.clear_faults(SITE_SERVER);
    p.emu.set_fault(SITE_SERVER, Fault::ProviderAccessDenied);
    let (status, m) = call(&p, sms::COMPONENT, action::GET, vec![], None, "");
    assert_eq!(status, 500);
    assert_eq!(m.fault().unwrap().subcode, "AccessDenied");
    p.emu.clear_faults(SITE_SERVER);
    p.emu.set_fault(SITE_SERVER, Fault::ProviderTimeout);
    let (_, m) = call(&p, sms::COMPONENT, action::GET, vec![], None, "");
    assert_eq!(m.fault().unwrap().wmi_code, Some(code::WBEM_E_TIMED_OUT));
}

#[tokio::test]
async fn the_registry_holds_each_servers_wsus_setup_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path());
    let ruri = class_uri("root\\default", "StdRegProv");
    let read = |method: &str, value: &str| {
        let (status, m) = call(
            &p,
            "StdRegProv",
            &format!("{{ruri}}/{method}"),
            vec![],
            None,
            &envelope::invoke_input(
                &ruri,
                method,
                &[
                    ("hDefKey", "2147483650"),
                    ("sSubKeyName", WSUS_SETUP_KEY),
                    ("sValueName", value),
                ],
            ),
        );
        assert_eq!(status, 200);
        Instance::from_element(m.payload().unwrap())
    };
    // The request went to the site server's WinRM, which has no WSUS here.
    assert_eq!(
        read("GetDWORDValue", "PortNumber").text("ReturnValue"),
        Some("2")
    );
    p.emu.add_server(SITE_SERVER, Some(80), Some(443), None);
    let port = read("GetDWORDValue", "PortNumber");
    assert_eq!(port.text("uValue"), Some("80"));
    assert_eq!(
        read("GetStringValue", "VersionString").text("sValue"),
        Some(crate::state::WSUS_VERSION)
    );
}
