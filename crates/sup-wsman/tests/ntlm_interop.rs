//! Interop against pyspnego 0.12 / pypsrp 0.9 (independent NTLM, SPNEGO and WinRM
//! encryption implementations), driven through tests/pyhelper.py.
//!
//! Python is the one `make tools` installs them into (`SUP_TOOLS_PYTHON`, default
//! `.tools/bin/python3` of the workspace).

mod common;

use common::Py;
use sup_wsman::ntlm::{
    Acceptor, Initiator, NtlmError, SPNEGO_ENCRYPTED_PROTOCOL, decode_multipart, encode_multipart,
};

const USER_FILE: &str = "CORP:alice:Alice-Pass1\nCORP:bob:Bob-Pass2\n:local:Local-Pass3\n";

fn users() -> Vec<(String, String, String)> {
    vec![
        ("CORP".into(), "alice".into(), "Alice-Pass1".into()),
        ("CORP".into(), "bob".into(), "Bob-Pass2".into()),
        (String::new(), "local".into(), "Local-Pass3".into()),
        (
            String::new(),
            "carol@corp.example".into(),
            "Carol-Pass4".into(),
        ),
    ]
}

/// Either side of the message-encryption checks.
trait Wrapper {
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), NtlmError>;
    fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NtlmError>;
}
impl Wrapper for Initiator {
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), NtlmError> {
        Initiator::wrap(self, plain)
    }
    fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NtlmError> {
        Initiator::unwrap(self, header, sealed)
    }
}
impl Wrapper for Acceptor {
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), NtlmError> {
        Acceptor::wrap(self, plain)
    }
    fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, NtlmError> {
        Acceptor::unwrap(self, header, sealed)
    }
}

/// Several messages each way through pypsrp's multipart framing, checking that our
/// encoder reproduces pypsrp's body byte for byte; then tamper detection both ways.
/// `first_seq` is the sequence number of the first wrapped message in each direction:
/// 0 for raw NTLM, 1 after a SPNEGO mechListMIC (which consumed number 0).
fn exchange_messages(rust: &mut impl Wrapper, py: &mut Py, first_seq: u32) {
    let seq =
        |header: &[u8]| u32::from_le_bytes(header[12..16].try_into().expect("16-byte header"));
    for i in 0..4u32 {
        let i_usize = i as usize;
        let soap = format!(
            "<s:Envelope>python to rust #{i} {}</s:Envelope>",
            "é".repeat(i_usize * 300)
        );
        let body = py.wrap(soap.as_bytes());
        let (len, header, sealed) = decode_multipart(&body).expect("decode pypsrp body");
        assert_eq!(seq(&header), first_seq + i);
        assert_eq!(len, soap.len());
        assert_eq!(
            encode_multipart(SPNEGO_ENCRYPTED_PROTOCOL, len, &header, &sealed),
            body,
            "byte-exact framing"
        );
        assert_eq!(
            rust.unwrap(&header, &sealed).expect("rust unwraps python"),
            soap.as_bytes()
        );

        let soap = format!(
            "<s:Envelope>rust to python #{i} {}</s:Envelope>",
            "x".repeat(i_usize * 5000)
        );
        let (header, sealed) = rust.wrap(soap.as_bytes()).expect("rust wrap");
        assert_eq!(seq(&header), first_seq + i);
        let body = encode_multipart(SPNEGO_ENCRYPTED_PROTOCOL, soap.len(), &header, &sealed);
        assert_eq!(
            py.unwrap(&body).expect("python unwraps rust"),
            soap.as_bytes()
        );
    }
    // Rust -> python, one flipped ciphertext byte: pyspnego must refuse.
    let (header, mut sealed) = rust
        .wrap(b"<s:Envelope>tampered</s:Envelope>")
        .expect("wrap");
    sealed[7] ^= 0x20;
    let body = encode_multipart(SPNEGO_ENCRYPTED_PROTOCOL, sealed.len(), &header, &sealed);
    let err = py
        .unwrap(&body)
        .expect_err("python must reject tampered message");
    eprintln!("pyspnego refused tampered message: {err}");
    assert!(err.contains("BadMIC") || err.contains("signature"), "{err}");
    // Python -> Rust, one flipped ciphertext byte: we must refuse.
    let body = py.wrap(b"<s:Envelope>tampered too</s:Envelope>");
    let (_, header, mut sealed) = decode_multipart(&body).expect("decode");
    sealed[2] ^= 0x01;
    assert!(matches!(
        rust.unwrap(&header, &sealed),
        Err(NtlmError::BadSignature)
    ));
}

fn rust_client_vs_py_server(
    py_protocol: &str,
    user: &str,
    password: &str,
) -> Option<(Initiator, Py, Result<(), String>)> {
    let mut py = Py::spawn(&["server", py_protocol], Some(USER_FILE));
    let mut client =
        Initiator::new(user, password, Some("HTTP/server.example")).expect("initiator");
    let negotiate = client.step(None).expect("negotiate").expect("token");
    let (challenge, complete) = py.step(Some(&negotiate)).expect("python CHALLENGE");
    assert!(!complete);
    let authenticate = client
        .step(Some(&challenge.expect("challenge token")))
        .expect("authenticate")
        .expect("token");
    let result = py.step(Some(&authenticate)).map(|(token, complete)| {
        // pyspnego's SPNEGO server answers raw NTLM with raw NTLM: no final token.
        assert_eq!(token, None);
        assert!(complete);
    });
    Some((client, py, result))
}

#[test]
fn rust_initiator_vs_pyspnego_ntlm_server() {
    let Some((mut client, mut py, result)) =
        rust_client_vs_py_server("ntlm", "CORP\\alice", "Alice-Pass1")
    else {
        return;
    };
    result.expect("pyspnego accepts our AUTHENTICATE");
    assert_eq!(py.call("INFO").unwrap(), ["CORP\\alice", "ntlm"]);
    exchange_messages(&mut client, &mut py, 0);
}

#[test]
fn rust_initiator_raw_ntlm_into_pyspnego_negotiate_server() {
    // Windows' and pyspnego's Negotiate acceptors take raw NTLMSSP, which is what
    // the Initiator (like pypsrp auth="ntlm") sends under "Authorization: Negotiate".
    let Some((mut client, mut py, result)) =
        rust_client_vs_py_server("negotiate", "local", "Local-Pass3")
    else {
        return;
    };
    result.expect("pyspnego accepts our AUTHENTICATE");
    assert_eq!(py.call("INFO").unwrap(), ["local", "ntlm"]);
    exchange_messages(&mut client, &mut py, 0);
}

#[test]
fn rust_initiator_wrong_password_refused_by_pyspnego() {
    for (user, password) in [("CORP\\alice", "wrong"), ("CORP\\nobody", "Alice-Pass1")] {
        let Some((_, _, result)) = rust_client_vs_py_server("ntlm", user, password) else {
            return;
        };
        let err = result.expect_err("pyspnego must refuse");
        eprintln!("pyspnego refused {user}: {err}");
        assert!(
            err.contains("Invalid") || err.contains("Failed") || err.contains("Bad"),
            "{err}"
        );
    }
}

#[test]
fn rust_initiator_channel_bindings_checked_by_pyspnego() {
    let cbt = b"tls-server-end-point:0123456789abcdef0123456789abcdef";
    let hex: String = cbt.iter().map(|b| format!("{b:02x}")).collect();
    for (client_cbt, ok) in [
        (Some(&cbt[..]), true),
        (Some(&b"tls-server-end-point:other"[..]), false),
        (None, false),
    ] {
        let mut py = Py::spawn(&["server", "ntlm", &hex], Some(USER_FILE));
        let mut client = Initiator::new("CORP\\bob", "Bob-Pass2", None).expect("initiator");
        if let Some(data) = client_cbt {
            client.set_channel_bindings(data);
        }
        let negotiate = client.step(None).unwrap().unwrap();
        let (challenge, _) = py.step(Some(&negotiate)).unwrap();
        let authenticate = client.step(Some(&challenge.unwrap())).unwrap().unwrap();
        assert_eq!(
            py.step(Some(&authenticate)).is_ok(),
            ok,
            "client cbt {client_cbt:?}"
        );
    }
}

/// Outcome of a pyspnego client talking to our Acceptor.
struct ClientRun {
    server: Acceptor,
    py: Py,
    result: Result<(), NtlmError>,
    /// The python client reached `complete` (it accepted our last token).
    py_complete: bool,
    /// Every token the acceptor sent back, in order.
    replies: Vec<Option<Vec<u8>>>,
}

fn py_client_vs_rust_server(py_protocol: &str, user: &str, password: &str) -> Option<ClientRun> {
    let mut py = Py::spawn(&["client", user, password, py_protocol], None);
    let mut server = Acceptor::new(users());
    let (mut token, mut py_complete) = py.step(None).expect("first client token");
    let mut result = Ok(());
    let mut replies = Vec::new();
    // Bounded: NTLM needs two client legs, SPNEGO at most one more.
    for _ in 0..4 {
        let Some(input) = token.take() else { break };
        match server.step(&input) {
            Ok(reply) => {
                replies.push(reply.clone());
                if server.is_complete() && reply.is_none() {
                    break;
                }
                let (next, complete) = py.step(reply.as_deref()).expect("python accepts our token");
                token = next;
                py_complete = complete;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    Some(ClientRun {
        server,
        py,
        result,
        py_complete,
        replies,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn pyspnego_ntlm_client_vs_rust_acceptor() {
    let Some(ClientRun {
        mut server,
        mut py,
        result,
        py_complete,
        replies,
    }) = py_client_vs_rust_server("ntlm", "CORP\\bob", "Bob-Pass2")
    else {
        return;
    };
    assert!(
        replies[0]
            .as_deref()
            .is_some_and(|t| t.starts_with(b"NTLMSSP\0\x02\0\0\0"))
    );
    assert_eq!(
        replies.last(),
        Some(&None),
        "raw NTLM: nothing after AUTHENTICATE"
    );
    result.expect("we accept pyspnego's AUTHENTICATE");
    assert!(py_complete);
    assert!(server.is_complete());
    assert_eq!(server.user().as_deref(), Some("CORP\\bob"));
    exchange_messages(&mut server, &mut py, 0);
}

#[test]
fn pyspnego_negotiate_client_vs_rust_acceptor() {
    // pypsrp's default auth="negotiate" without Kerberos: SPNEGO-wrapped NTLM with
    // mechListMIC, so the first wrapped message each way carries sequence number 1.
    let Some(ClientRun {
        mut server,
        mut py,
        result,
        py_complete,
        replies,
    }) = py_client_vs_rust_server("negotiate", "CORP\\alice", "Alice-Pass1")
    else {
        return;
    };
    // NegTokenResp(CHALLENGE), then the final NegTokenResp(accept-complete, mechListMIC).
    assert_eq!(replies.len(), 2);
    assert!(
        replies[0]
            .as_deref()
            .is_some_and(|t| t[0] == 0xa1 && contains(t, b"NTLMSSP\0\x02"))
    );
    assert!(
        replies[1]
            .as_deref()
            .is_some_and(|t| t[0] == 0xa1 && !contains(t, b"NTLMSSP"))
    );
    result.expect("we accept pyspnego's SPNEGO exchange");
    assert!(server.is_complete());
    assert_eq!(server.user().as_deref(), Some("CORP\\alice"));
    // Completion on the python side means it verified our mechListMIC.
    assert!(py_complete, "python finished with our final NegTokenResp");
    assert_eq!(py.call("INFO").unwrap()[1], "ntlm");
    exchange_messages(&mut server, &mut py, 1);
}

#[test]
fn pyspnego_client_wrong_password_refused_by_rust() {
    for protocol in ["ntlm", "negotiate"] {
        for (user, password) in [
            ("CORP\\alice", "wrong"),
            ("CORP\\alice", "Bob-Pass2"),
            ("CORP\\eve", "Alice-Pass1"),
        ] {
            let Some(ClientRun { server, result, .. }) =
                py_client_vs_rust_server(protocol, user, password)
            else {
                return;
            };
            assert!(
                matches!(result, Err(NtlmError::LogonDenied)),
                "{protocol} {user}: {result:?}"
            );
            assert!(!server.is_complete());
        }
    }
}

#[test]
fn pyspnego_client_name_forms_pick_the_right_account() {
    // Case-insensitive names and UPNs (sent whole as the user name, empty domain)
    // through both the raw NTLM and the SPNEGO (sspi Negotiate) acceptor paths.
    for protocol in ["ntlm", "negotiate"] {
        for (user, password, expected) in [
            ("corp\\ALICE", "Alice-Pass1", "CORP\\alice"),
            ("CARol@CORP.example", "Carol-Pass4", "carol@corp.example"),
            ("local", "Local-Pass3", "local"),
        ] {
            let Some(ClientRun {
                server,
                result,
                py_complete,
                ..
            }) = py_client_vs_rust_server(protocol, user, password)
            else {
                return;
            };
            result.unwrap_or_else(|e| panic!("{protocol} {user}: {e}"));
            assert!(py_complete, "{protocol} {user}");
            assert_eq!(
                server.user().as_deref(),
                Some(expected),
                "{protocol} {user}"
            );
        }
    }
}

#[test]
fn pyspnego_negotiate_client_preferring_kerberos_vs_rust_acceptor() {
    // NegTokenInit { mechTypes [krb5, NTLM], mechToken <Kerberos> }: the acceptor
    // answers supportedMech=NTLM without a token, NTLM runs in NegTokenResps, and the
    // mechListMIC is mandatory because NTLM was not the initiator's first choice.
    let Some(ClientRun {
        mut server,
        mut py,
        result,
        py_complete,
        replies,
    }) = py_client_vs_rust_server("negotiate-kerberos-first", "CORP\\bob", "Bob-Pass2")
    else {
        return;
    };
    // Reply 1 carries no token (only supportedMech), reply 2 the CHALLENGE, reply 3 the MIC.
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(
        replies[0]
            .as_deref()
            .is_some_and(|t| t[0] == 0xa1 && !contains(t, b"NTLMSSP"))
    );
    assert!(
        replies[1]
            .as_deref()
            .is_some_and(|t| contains(t, b"NTLMSSP\0\x02"))
    );
    result.expect("we accept the NTLM fallback");
    assert!(server.is_complete() && py_complete);
    assert_eq!(server.user().as_deref(), Some("CORP\\bob"));
    exchange_messages(&mut server, &mut py, 1);

    let Some(ClientRun { server, result, .. }) =
        py_client_vs_rust_server("negotiate-kerberos-first", "CORP\\bob", "nope")
    else {
        return;
    };
    assert!(matches!(result, Err(NtlmError::LogonDenied)), "{result:?}");
    assert!(!server.is_complete());
}

#[test]
fn spnego_final_token_must_reach_the_client() {
    // The acceptor's last NegTokenResp carries its mechListMIC, which used sequence
    // number 0; its first wrapped message therefore has number 1. A client that never
    // sees that token (server forgot it in the 200 response's WWW-Authenticate header)
    // still expects 0 and rejects everything the server sends.
    let mut py = Py::spawn(&["client", "CORP\\alice", "Alice-Pass1", "negotiate"], None);
    let mut server = Acceptor::new(users());
    let (init, _) = py.step(None).unwrap();
    let challenge = server.step(&init.unwrap()).unwrap();
    let (auth, _) = py.step(challenge.as_deref()).unwrap();
    let final_token = server.step(&auth.unwrap()).unwrap();
    assert!(server.is_complete() && final_token.is_some());
    // Withhold final_token from python.
    let (header, sealed) = server.wrap(b"<s:Envelope/>").unwrap();
    let body = encode_multipart(SPNEGO_ENCRYPTED_PROTOCOL, 13, &header, &sealed);
    assert!(py.unwrap(&body).is_err());
}
