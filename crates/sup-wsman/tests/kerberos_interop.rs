//! The Rust Kerberos initiator against Kerberos no one here wrote: a real KDC (Heimdal's, started
//! by tests/pyhelper.py) issues the tickets, and pyspnego's GSSAPI acceptor (MIT's
//! libgssapi_krb5 underneath) checks the AP-REQ, answers with an AP-REP and seals WinRM bodies
//! as pypsrp does, both ways.

mod common;

use std::time::Duration;

use common::Py;
use sup_wsman::kerberos::{KERBEROS_ENCRYPTED_PROTOCOL, KerberosInitiator, kdc_url};
use sup_wsman::ntlm::{decode_multipart, encode_multipart};

/// What the helper's realm line says.
struct Realm {
    kdc_port: u16,
    user: String,
    password: String,
    spn: String,
}

fn start(args: &[&str]) -> (Py, Realm) {
    let mut py = Py::spawn(args, None);
    let line = py.read_line();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"REALM"), "helper said {line:?}");
    let realm = Realm {
        kdc_port: fields[2].parse().expect("KDC port"),
        user: fields[3].to_owned(),
        password: fields[4].to_owned(),
        spn: fields[5].to_owned(),
    };
    (py, realm)
}

fn initiator(realm: &Realm, password: &str) -> KerberosInitiator {
    KerberosInitiator::new(
        &realm.user,
        password,
        &realm.spn,
        kdc_url(&format!("127.0.0.1:{}", realm.kdc_port)).expect("KDC URL"),
        Duration::from_secs(10),
    )
    .expect("initiator")
}

/// AP-REQ to the acceptor, its AP-REP back: Ok when both sides complete.
fn authenticate(client: &mut KerberosInitiator, py: &mut Py) -> Result<(), String> {
    let ap_req = client
        .step(None)
        .map_err(|e| format!("AP-REQ: {e}"))?
        .ok_or("no AP-REQ")?;
    let (ap_rep, complete) = py.step(Some(&ap_req))?;
    assert!(complete, "the acceptor completes on the AP-REQ");
    let ap_rep = ap_rep.ok_or("mutual authentication: the acceptor sent no AP-REP")?;
    assert_eq!(
        client
            .step(Some(&ap_rep))
            .map_err(|e| format!("AP-REP: {e}"))?,
        None
    );
    assert!(client.is_complete());
    Ok(())
}

#[test]
fn rust_initiator_gets_tickets_from_heimdal_and_seals_with_pyspnego() {
    let (mut py, realm) = start(&["kerberos-server"]);
    let mut client = initiator(&realm, &realm.password);
    authenticate(&mut client, &mut py).expect("Kerberos with Heimdal's KDC and MIT's acceptor");
    let info = py.call("INFO").expect("info");
    assert_eq!(
        info[0], realm.user,
        "the acceptor saw the client's principal"
    );
    assert_eq!(info[1], "kerberos");

    for i in 0..4usize {
        // Python to Rust, through pypsrp's framing.
        let soap = format!(
            "<s:Envelope>python to rust #{i} {}</s:Envelope>",
            "é".repeat(i * 300)
        );
        let body = py.wrap(soap.as_bytes());
        let (len, header, sealed) = decode_multipart(&body).expect("decode pypsrp body");
        assert_eq!(len, soap.len());
        assert_eq!(
            client
                .unwrap(&header, &sealed)
                .expect("rust opens python's"),
            soap.as_bytes()
        );

        // Rust to Python.
        let soap = format!(
            "<s:Envelope>rust to python #{i} {}</s:Envelope>",
            "x".repeat(i * 5000)
        );
        let (header, sealed) = client.wrap(soap.as_bytes()).expect("rust wrap");
        assert!(
            !sealed.windows(6).any(|w| w == b"python" || w == b"xxxxxx"),
            "the body is encrypted"
        );
        let body = encode_multipart(KERBEROS_ENCRYPTED_PROTOCOL, soap.len(), &header, &sealed);
        assert_eq!(
            py.unwrap(&body).expect("python opens rust's"),
            soap.as_bytes()
        );
    }

    // A flipped byte is refused, and the context is not used any further.
    let body = py.wrap(b"<s:Envelope>last</s:Envelope>");
    let (_, header, mut sealed) = decode_multipart(&body).unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 1;
    assert!(client.unwrap(&header, &sealed).is_err());
    assert!(client.wrap(b"after a failure").is_err());
}

#[test]
fn a_wrong_password_is_refused_by_the_kdc() {
    let (_py, realm) = start(&["kerberos-server"]);
    let mut client = initiator(&realm, "not-the-password");
    let err = client
        .step(None)
        .expect_err("the KDC refuses the pre-authentication");
    assert!(!client.is_complete());
    let text = err.to_string();
    assert!(!text.contains("not-the-password"), "{text}");
}

#[test]
fn the_winrm_client_authenticates_with_kerberos_and_seals_every_message() {
    use sup_wsman::client::{Auth, Client, Endpoint, Password};
    let (mut py, realm) = start(&["kerberos-winrm"]);
    let line = py.read_line();
    let port: u16 = line
        .strip_prefix("WINRM ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("helper said {line:?}"));
    let endpoint = |password: &str| Endpoint {
        url: format!("http://127.0.0.1:{port}/wsman"),
        user: realm.user.clone(),
        password: Password::new(password),
        ca_file: None,
        connect_to: None,
        timeout: Duration::from_secs(10),
        auth: Auth::Kerberos {
            kdc: kdc_url(&format!("127.0.0.1:{}", realm.kdc_port)).expect("KDC URL"),
            spn: Some(realm.spn.clone()),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = Client::new(endpoint(&realm.password)).expect("client");
        let uri = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_CEN/SMS_Site";
        // Twice: the second message on the same context.
        for _ in 0..2 {
            let site = client
                .get(uri, &[("SiteCode".into(), "CEN".into())], &[])
                .await
                .expect("a Get through Kerberos");
            assert_eq!(site.text("SiteCode"), Some("CEN"));
            assert_eq!(site.text("ServerName"), Some(realm.user.as_str()));
        }
        let wrong = Client::new(endpoint("not-the-password")).expect("client");
        let err = wrong
            .get(uri, &[("SiteCode".into(), "CEN".into())], &[])
            .await
            .expect_err("the KDC refuses a wrong password");
        assert!(
            matches!(err, sup_wsman::client::WsmanError::AuthFailed { .. }),
            "{err}"
        );
    });
}
