//! Kerberos for a WS-Management client, built on `sspi` (Devolutions/sspi-rs) 0.21.
//!
//! [`KerberosInitiator`] asks the KDC for a ticket to the WinRM service (`HTTP/<host>`, the SPN
//! WinRM registers), sends the AP-REQ in `Authorization: Kerberos`, reads the AP-REP the server
//! returns with its 200 (mutual authentication) and then seals messages with GSS_Wrap as Windows'
//! `EncryptMessage` does (RFC 4121 wrap tokens; MS-KILE 3.4.5.4.1 rotation), for WinRM's
//! `application/HTTP-Kerberos-session-encrypted` bodies (MS-WSMV 2.2.9.1.1).
//!
//! sspi does no I/O itself: it yields each KDC request, which [`KdcClient`] sends over TCP
//! (RFC 4120 7.2.2: a four-byte big-endian length, then the message).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use sspi::network_client::NetworkClient;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, CredentialsBuffers,
    DataRepresentation, Kerberos, KerberosConfig, NetworkProtocol, NetworkRequest, SecurityBuffer,
    SecurityStatus, Sspi, SspiImpl, Username,
};

use crate::ntlm::{NtlmError, open, ready, seal};

/// `protocol` value of the encrypted multipart body when the `Kerberos` HTTP scheme was used.
pub const KERBEROS_ENCRYPTED_PROTOCOL: &str = "application/HTTP-Kerberos-session-encrypted";

/// `Content-Type` header value that goes with a Kerberos-sealed body.
pub const KERBEROS_ENCRYPTED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-Kerberos-session-encrypted\";boundary=\"Encrypted Boundary\"";

/// The port KDCs listen on (RFC 4120 7.2.3.1).
pub const KDC_PORT: u16 = 88;

/// The largest KDC reply read: tickets with a large PAC are a few tens of KiB.
const MAX_KDC_REPLY: usize = 1 << 20;

type Result<T> = std::result::Result<T, NtlmError>;

/// Parses a KDC address as configured: `host`, `host:port` or `tcp://host:port`.
pub fn kdc_url(kdc: &str) -> std::result::Result<url::Url, String> {
    let kdc = kdc.trim();
    if kdc.is_empty() {
        return Err("the KDC address is empty".into());
    }
    let with_scheme = if kdc.contains("://") {
        kdc.to_owned()
    } else {
        format!("tcp://{kdc}")
    };
    let mut url = url::Url::parse(&with_scheme).map_err(|e| format!("KDC address {kdc:?}: {e}"))?;
    if url.scheme() != "tcp" {
        return Err(format!(
            "KDC address {kdc:?}: only tcp:// is supported (Active Directory's KDCs answer on TCP)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("KDC address {kdc:?} names no host"));
    }
    if url.port().is_none() {
        // Cannot fail: the scheme is tcp and the URL has a host.
        let _ = url.set_port(Some(KDC_PORT));
    }
    Ok(url)
}

/// Sends sspi's KDC requests over TCP, one connection per request, as Windows does.
#[derive(Debug, Clone)]
pub struct KdcClient {
    pub timeout: Duration,
}

impl KdcClient {
    fn exchange(&self, url: &url::Url, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port().unwrap_or(KDC_PORT);
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(mut stream) => {
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    // sspi hands the message with its length prefix and expects the reply with
                    // its own.
                    stream.write_all(data)?;
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len)?;
                    let n = u32::from_be_bytes(len) as usize;
                    if n > MAX_KDC_REPLY {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("KDC reply of {n} bytes"),
                        ));
                    }
                    let mut reply = len.to_vec();
                    reply.resize(4 + n, 0);
                    stream.read_exact(&mut reply[4..])?;
                    return Ok(with_etype_info2(&reply).unwrap_or(reply));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl NetworkClient for KdcClient {
    fn send(&self, request: &NetworkRequest) -> sspi::Result<Vec<u8>> {
        if request.protocol != NetworkProtocol::Tcp {
            return Err(sspi::Error::new(
                sspi::ErrorKind::NoAuthenticatingAuthority,
                format!("KDC over {:?} is not supported", request.protocol),
            ));
        }
        self.exchange(&request.url, &request.data).map_err(|e| {
            sspi::Error::new(
                sspi::ErrorKind::NoAuthenticatingAuthority,
                format!("KDC {}: {e}", request.url),
            )
        })
    }
}

/// RFC 4120 3.1.3: a KDC need not send PA-ETYPE-INFO2 in an AS-REP whose key has the default
/// salt (Heimdal sends PA-PW-SALT, or nothing), and the client then uses the default salt. sspi
/// 0.21 reads the salt only from PA-ETYPE-INFO2 and otherwise derives the key with an empty salt,
/// so a length-prefixed AS-REP without it gets one, with the salt the KDC named in PA-PW-SALT or
/// the default salt (realm and name). The padata of an AS-REP is not integrity-protected: adding
/// to it changes nothing the client checks. `None` leaves the reply as it is.
fn with_etype_info2(reply: &[u8]) -> Option<Vec<u8>> {
    use picky_asn1::restricted_string::IA5String;
    use picky_asn1::wrapper::{
        Asn1SequenceOf, ExplicitContextTag0, ExplicitContextTag1, ExplicitContextTag2, IntegerAsn1,
        OctetStringAsn1, Optional,
    };
    use picky_krb::data_types::{EtypeInfo2, EtypeInfo2Entry, KerberosStringAsn1, PaData};
    use picky_krb::messages::AsRep;

    const PA_PW_SALT: u8 = 3;
    const PA_ETYPE_INFO2: u8 = 19;

    let mut as_rep: AsRep = picky_asn1_der::from_bytes(reply.get(4..)?).ok()?;
    let rep = &mut as_rep.0;
    let padata = rep.padata.0.get_or_insert_with(Default::default);
    let kind = |p: &PaData| p.padata_type.0.0.last().copied();
    if padata.0.0.iter().any(|p| kind(p) == Some(PA_ETYPE_INFO2)) {
        return None;
    }
    let salt = match padata.0.0.iter().find(|p| kind(p) == Some(PA_PW_SALT)) {
        Some(p) => String::from_utf8(p.padata_data.0.0.clone()).ok()?,
        None => {
            let mut salt = rep.crealm.0.to_string();
            for part in &rep.cname.0.name_string.0.0 {
                salt.push_str(&part.to_string());
            }
            salt
        }
    };
    let entry = EtypeInfo2Entry {
        etype: ExplicitContextTag0::from(rep.enc_part.0.etype.0.clone()),
        salt: Optional::from(Some(ExplicitContextTag1::from(KerberosStringAsn1::from(
            IA5String::from_string(salt).ok()?,
        )))),
        s2kparams: Optional::from(None),
    };
    let info: EtypeInfo2 = Asn1SequenceOf::from(vec![entry]);
    padata.0.0.push(PaData {
        padata_type: ExplicitContextTag1::from(IntegerAsn1::from(vec![PA_ETYPE_INFO2])),
        padata_data: ExplicitContextTag2::from(OctetStringAsn1::from(
            picky_asn1_der::to_vec(&info).ok()?,
        )),
    });
    let body = picky_asn1_der::to_vec(&as_rep).ok()?;
    let mut out = u32::try_from(body.len()).ok()?.to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    SentApReq,
    Complete,
    Failed,
}

/// Client side of a Kerberos exchange with mutual authentication: AP-REQ -> AP-REP.
pub struct KerberosInitiator {
    kerberos: Kerberos,
    creds: Option<CredentialsBuffers>,
    spn: String,
    kdc: KdcClient,
    channel_bindings: Option<Vec<u8>>,
    state: State,
    poisoned: bool,
}

impl KerberosInitiator {
    /// `user` is `user@REALM` or `REALM\user`; `spn` the service's principal name,
    /// `HTTP/host.fqdn` for WinRM; `kdc` a URL from [`kdc_url`].
    pub fn new(
        user: &str,
        password: &str,
        spn: &str,
        kdc: url::Url,
        timeout: Duration,
    ) -> Result<Self> {
        let username = principal(user)?;
        let identity = AuthIdentity {
            username,
            password: password.to_owned().into(),
        };
        let mut kerberos = Kerberos::new_client_from_config(KerberosConfig {
            kdc_url: Some(kdc),
            // Only the KDC's logs see it: the workstation name of the control plane's host.
            client_computer_name: "sup-control-plane".into(),
        })?;
        let acquired = kerberos
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&sspi::Credentials::AuthIdentity(identity))
            .execute(&mut kerberos)?;
        Ok(Self {
            kerberos,
            creds: acquired.credentials_handle,
            spn: spn.to_owned(),
            kdc: KdcClient { timeout },
            channel_bindings: None,
            state: State::Start,
            poisoned: false,
        })
    }

    /// Channel binding over HTTPS: `b"tls-server-end-point:" + hash(server certificate)` (RFC
    /// 5929), carried in the authenticator's checksum. Call before the first `step`.
    pub fn set_channel_bindings(&mut self, application_data: &[u8]) {
        self.channel_bindings = Some(sec_channel_bindings(application_data));
    }

    /// First call with `None` gets the tickets from the KDC and returns the AP-REQ; the second
    /// with the server's AP-REP completes the context.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let result = match (self.state, input) {
            (State::Start, None) => self.isc(&[]).map(|t| (State::SentApReq, Some(t))),
            (State::Start, Some(_)) => Err(NtlmError::OutOfSequence("first step takes no input")),
            (State::SentApReq, Some(ap_rep)) => self.isc(ap_rep).map(|_| (State::Complete, None)),
            (State::SentApReq, None) => Err(NtlmError::OutOfSequence(
                "the server sent no AP-REP: mutual authentication failed",
            )),
            (State::Complete, _) => Err(NtlmError::OutOfSequence("context already complete")),
            (State::Failed, _) => Err(NtlmError::OutOfSequence("context failed earlier")),
        };
        match result {
            Ok((next, token)) => {
                self.state = next;
                Ok(token)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.state == State::Complete
    }

    /// GSS_Wrap with confidentiality, split as WinRM sends it: (header, encrypted data).
    pub fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        ready(self.is_complete(), self.poisoned)?;
        let trailer = self.kerberos.query_context_sizes()?.security_trailer as usize;
        seal(&mut self.kerberos, plain, trailer)
    }

    /// Verifies and opens a server message. A failure poisons the context.
    pub fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        ready(self.is_complete(), self.poisoned)?;
        open(&mut self.kerberos, header, sealed).inspect_err(|_| self.poisoned = true)
    }

    fn isc(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buffers = vec![SecurityBuffer::new(input.to_vec(), BufferType::Token)];
        if let Some(cb) = &self.channel_bindings {
            input_buffers.push(SecurityBuffer::new(cb.clone(), BufferType::ChannelBindings));
        }
        let mut builder = self
            .kerberos
            .initialize_security_context()
            .with_credentials_handle(&mut self.creds)
            // No sequence or replay detection: sspi 0.21 numbers the first wrap token one past
            // the authenticator's sequence number (it reserves one for a SPNEGO mechListMIC that
            // raw Kerberos does not send), which an acceptor checking sequence (MIT, Windows)
            // refuses as a gap. Every message is sealed and integrity-checked all the same.
            .with_context_requirements(
                ClientRequestFlags::MUTUAL_AUTH
                    | ClientRequestFlags::CONFIDENTIALITY
                    | ClientRequestFlags::INTEGRITY,
            )
            .with_target_data_representation(DataRepresentation::Native)
            .with_target_name(&self.spn)
            .with_input(&mut input_buffers)
            .with_output(&mut output);
        let result = SspiImpl::initialize_security_context_impl(&mut self.kerberos, &mut builder)?
            .resolve_with_client(&self.kdc)?;
        match result.status {
            SecurityStatus::ContinueNeeded | SecurityStatus::Ok => {}
            _ => return Err(NtlmError::OutOfSequence("unexpected sspi status")),
        }
        let token = SecurityBuffer::find_buffer_mut(&mut output, BufferType::Token)?;
        Ok(std::mem::take(&mut token.buffer))
    }
}

/// `user@REALM` is read as GSSAPI (and so pypsrp) and `kinit` read it: the principal `user` of
/// the realm, not an enterprise name, which MIT KDCs do not resolve. The realm is upper case.
fn principal(user: &str) -> Result<Username> {
    let invalid = |e: &dyn std::fmt::Display| NtlmError::InvalidUser(e.to_string());
    let (name, realm) = match (user.rsplit_once('@'), user.split_once('\\')) {
        (Some((name, realm)), None) => (name, realm),
        (None, Some((realm, name))) => (name, realm),
        _ => {
            return Err(NtlmError::InvalidUser(format!(
                "{user:?}: user@REALM or REALM\\user"
            )));
        }
    };
    if name.is_empty() || realm.is_empty() {
        return Err(NtlmError::InvalidUser(format!(
            "{user:?}: user@REALM or REALM\\user"
        )));
    }
    Username::new(name, Some(&realm.to_ascii_uppercase())).map_err(|e| invalid(&e))
}

/// A `SEC_CHANNEL_BINDINGS` structure carrying only application data (no addresses), as
/// Windows builds it for `tls-server-end-point`.
fn sec_channel_bindings(application_data: &[u8]) -> Vec<u8> {
    const HEADER: u32 = 32;
    let mut out = Vec::with_capacity(HEADER as usize + application_data.len());
    // Initiator and acceptor: address type, length, offset, all zero.
    out.extend_from_slice(&[0u8; 24]);
    // A channel binding is a prefix and a hash: far below u32::MAX.
    out.extend_from_slice(&(application_data.len() as u32).to_le_bytes());
    out.extend_from_slice(&HEADER.to_le_bytes());
    out.extend_from_slice(application_data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdc_addresses_take_the_kerberos_port_and_tcp() {
        assert_eq!(
            kdc_url("dc01.corp.example").unwrap().as_str(),
            "tcp://dc01.corp.example:88"
        );
        assert_eq!(
            kdc_url("tcp://10.0.0.5:1088").unwrap().as_str(),
            "tcp://10.0.0.5:1088"
        );
        assert_eq!(kdc_url("dc01:750").unwrap().port(), Some(750));
        assert!(kdc_url("udp://dc01").unwrap_err().contains("only tcp"));
        assert!(kdc_url("  ").is_err());
    }

    #[test]
    fn principals_name_their_realm() {
        for user in [
            "alice@corp.example",
            "CORP.EXAMPLE\\alice",
            "alice@CORP.EXAMPLE",
        ] {
            let u = principal(user).unwrap();
            assert_eq!(u.inner(), "CORP.EXAMPLE\\alice");
        }
        for bad in ["alice", "@CORP", "alice@", "CORP\\", "a@b\\c"] {
            assert!(principal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_bindings_parse_back_as_sspi_reads_them() {
        let data = b"tls-server-end-point:\x01\x02\x03";
        let cb = sspi::channel_bindings::ChannelBindings::from_bytes(sec_channel_bindings(data))
            .unwrap();
        assert_eq!(cb.application_data, data);
        assert!(cb.initiator.is_empty() && cb.acceptor.is_empty());
    }

    #[test]
    fn an_unreachable_kdc_is_an_error_not_a_hang() {
        // A port nothing listens on: the connection is refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut k = KerberosInitiator::new(
            "alice@CORP.EXAMPLE",
            "pw",
            "HTTP/host.corp.example",
            kdc_url(&format!("127.0.0.1:{port}")).unwrap(),
            Duration::from_secs(2),
        )
        .unwrap();
        let err = k.step(None).unwrap_err().to_string();
        assert!(err.contains("KDC"), "{err}");
        assert!(!k.is_complete());
    }
}
