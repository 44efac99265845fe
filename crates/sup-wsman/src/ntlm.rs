//! NTLM authentication and WinRM message encryption for a WS-Management client and
//! server, built on `sspi` (Devolutions/sspi-rs) 0.21.
//!
//! * [`Initiator`] (client): raw NTLMSSP tokens, which is what pypsrp's `auth="ntlm"`
//!   sends under the `Negotiate` HTTP scheme and what Windows WinRM accepts.
//! * [`Acceptor`] (server): accepts raw NTLMSSP tokens *and* SPNEGO-wrapped NTLM
//!   (pypsrp's default `auth="negotiate"` on hosts without Kerberos), the latter
//!   through sspi's `Negotiate` acceptor, which also handles the SPNEGO mechListMIC.
//!   Before sspi sees an AUTHENTICATE message, the acceptor verifies it itself
//!   (user lookup, NTLMv2 proof, MIC presence and MIC value), because sspi alone
//!   accepts a MIC-less AUTHENTICATE for the first configured identity.
//! * `wrap`/`unwrap` on both: MS-WSMV 2.2.9.1.1 message encryption (16-byte NTLM
//!   signature + RC4-sealed payload), plus [`encode_multipart`]/[`decode_multipart`]
//!   for the `multipart/encrypted` HTTP body.
//!
//! Everything is synchronous: sspi's NTLM never performs network I/O.

use md4::Digest as _;
use md5::Digest as _;
use sspi::{
    AuthIdentity, AuthIdentityBuffers, BufferType, ClientRequestFlags, CredentialUse,
    CredentialsBuffers, DataRepresentation, EncryptionFlags, Negotiate, NegotiateConfig, Ntlm,
    NtlmHash, SecurityBuffer, SecurityBufferRef, SecurityStatus, ServerRequestFlags, Sspi,
    SspiImpl, Username, ntlm::NtlmConfig,
};

/// `protocol` value of the encrypted multipart body for NTLM / SPNEGO sessions.
pub const SPNEGO_ENCRYPTED_PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";

/// `Content-Type` header value that goes with an [`encode_multipart`] body.
pub const ENCRYPTED_CONTENT_TYPE: &str = "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"";

/// Size of an NTLM message signature (MS-NLMP 2.2.2.9.1): version, checksum, seq num.
pub const SIGNATURE_LEN: usize = 16;

const BOUNDARY_LINE: &[u8] = b"--Encrypted Boundary\r\n";
const BOUNDARY_END: &[u8] = b"--Encrypted Boundary--\r\n";
const OCTET_STREAM_LINE: &[u8] = b"\tContent-Type: application/octet-stream\r\n";

const NTLMSSP_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NTLM_NEGOTIATE: u32 = 1;
const NTLM_CHALLENGE: u32 = 2;
const NTLM_AUTHENTICATE: u32 = 3;

// MS-NLMP 2.2.2.5 negotiate flags the acceptor checks itself.
const FLAG_UNICODE: u32 = 0x0000_0001;
const FLAG_SEAL: u32 = 0x0000_0020;
const FLAG_EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
const FLAG_VERSION: u32 = 0x0200_0000;
const FLAG_KEY_EXCH: u32 = 0x4000_0000;

// MS-NLMP 2.2.2.1 AV pair ids.
const AV_EOL: u16 = 0;
const AV_FLAGS: u16 = 6;
/// MsvAvFlags bit: "the client is providing message integrity in the MIC field".
const AV_FLAG_MIC_PRESENT: u32 = 0x0000_0002;

#[derive(Debug, thiserror::Error)]
pub enum NtlmError {
    #[error("sspi: {0}")]
    Sspi(#[from] sspi::Error),
    #[error("invalid user name: {0}")]
    InvalidUser(String),
    #[error("malformed token: {0}")]
    InvalidToken(&'static str),
    /// The AUTHENTICATE message does not announce (MsvAvFlags) or carry a MIC.
    #[error("AUTHENTICATE message has no MIC")]
    MissingMic,
    /// Unknown user, wrong password or bad MIC. Deliberately one variant (and one
    /// message) so that an HTTP layer cannot leak which of them it was.
    #[error("logon denied")]
    LogonDenied,
    #[error("out of sequence: {0}")]
    OutOfSequence(&'static str),
    /// Signature check failed, or a previous one did and the context is unusable.
    #[error("message integrity check failed")]
    BadSignature,
    #[error("message confidentiality was not negotiated")]
    NoConfidentiality,
    #[error("malformed multipart body: {0}")]
    Multipart(&'static str),
}

type Result<T> = std::result::Result<T, NtlmError>;

// ---------------------------------------------------------------------------------------------
// Initiator (client)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitState {
    Start,
    SentNegotiate,
    Complete,
    Failed,
}

/// Client side of an NTLM exchange: NEGOTIATE -> (CHALLENGE) -> AUTHENTICATE.
pub struct Initiator {
    ntlm: Ntlm,
    creds: Option<AuthIdentityBuffers>,
    target_spn: Option<String>,
    state: InitState,
    /// Set after a failed unwrap: the RC4 stream and sequence numbers are out of step
    /// with the peer, so the context must not be used any more.
    poisoned: bool,
}

impl Initiator {
    /// `user` is `DOMAIN\user`, `user@realm` (sent whole as the user name, empty domain,
    /// like Windows and pyspnego do) or a bare `user` (empty domain).
    ///
    /// `target_spn` (e.g. `HTTP/host`) is handed to sspi, whose NTLM ignores it: no
    /// MsvAvTargetName is sent.
    pub fn new(user: &str, password: &str, target_spn: Option<&str>) -> Result<Self> {
        let username = Username::parse(user).map_err(|e| NtlmError::InvalidUser(e.to_string()))?;
        let identity = AuthIdentity {
            username,
            password: password.to_owned().into(),
        };
        // No workstation name: it only ends up in logs on the server.
        let mut ntlm = Ntlm::with_config(NtlmConfig::default());
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)?;
        Ok(Self {
            ntlm,
            creds: acquired.credentials_handle,
            target_spn: target_spn.map(str::to_owned),
            state: InitState::Start,
            poisoned: false,
        })
    }

    /// Channel binding for NTLM over HTTPS (Extended Protection):
    /// `b"tls-server-end-point:" + hash(server certificate)` (RFC 5929). Call before
    /// the second `step`. It is sent as MsvAvChannelBindings in AUTHENTICATE.
    pub fn set_channel_bindings(&mut self, application_data: &[u8]) {
        self.ntlm.set_channel_bindings(application_data);
    }

    /// First call with `None` returns NEGOTIATE; second call with the server's CHALLENGE
    /// returns AUTHENTICATE, after which the context is complete. Raw NTLM has no third
    /// leg: a server token after completion is an error.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let result = match (self.state, input) {
            (InitState::Start, None) => self.isc(None).map(|out| (InitState::SentNegotiate, out)),
            (InitState::Start, Some(_)) => {
                Err(NtlmError::OutOfSequence("first step takes no input"))
            }
            (InitState::SentNegotiate, Some(challenge)) => {
                if ntlm_message_type(challenge) != Some(NTLM_CHALLENGE) {
                    Err(NtlmError::InvalidToken(
                        "expected an NTLM CHALLENGE message",
                    ))
                } else {
                    self.isc(Some(challenge))
                        .map(|out| (InitState::Complete, out))
                }
            }
            (InitState::SentNegotiate, None) => Err(NtlmError::OutOfSequence("CHALLENGE expected")),
            (InitState::Complete, _) => Err(NtlmError::OutOfSequence("context already complete")),
            (InitState::Failed, _) => Err(NtlmError::OutOfSequence("context failed earlier")),
        };
        match result {
            Ok((next, token)) => {
                self.state = next;
                Ok(Some(token))
            }
            Err(e) => {
                self.state = InitState::Failed;
                Err(e)
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.state == InitState::Complete
    }

    /// Seals `plain` (client-to-server direction). Returns (16-byte signature, ciphertext).
    pub fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        ready(self.is_complete(), self.poisoned)?;
        seal(&mut self.ntlm, plain, SIGNATURE_LEN)
    }

    /// Verifies and unseals a server message. A failure poisons the context.
    pub fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        ready(self.is_complete(), self.poisoned)?;
        open_signed(&mut self.ntlm, header, sealed).inspect_err(|_| self.poisoned = true)
    }

    fn isc(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input_buffers =
            input.map(|t| vec![SecurityBuffer::new(t.to_vec(), BufferType::Token)]);
        // CONFIDENTIALITY makes sspi request SEAL + KEY_EXCH (+ SIGN); that, with the
        // 128-bit and extended-session-security flags sspi always sets, is what Windows
        // WinRM and pyspnego negotiate for message encryption.
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.creds)
            .with_context_requirements(
                ClientRequestFlags::CONFIDENTIALITY
                    | ClientRequestFlags::INTEGRITY
                    | ClientRequestFlags::ALLOCATE_MEMORY,
            )
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if let Some(spn) = self.target_spn.as_deref() {
            builder = builder.with_target_name(spn);
        }
        if let Some(buffers) = input_buffers.as_mut() {
            builder = builder.with_input(buffers);
        }
        let result = SspiImpl::initialize_security_context_impl(&mut self.ntlm, &mut builder)?
            .resolve_to_result()?;
        match result.status {
            SecurityStatus::ContinueNeeded | SecurityStatus::Ok => {}
            _ => return Err(NtlmError::OutOfSequence("unexpected sspi status")),
        }
        take_token(output)
    }
}

// ---------------------------------------------------------------------------------------------
// Acceptor (server)
// ---------------------------------------------------------------------------------------------

struct UserEntry {
    domain: String,
    user: String,
    password: String,
}

enum Mech {
    /// No token seen yet.
    Undecided,
    /// Raw NTLMSSP tokens (pypsrp `auth="ntlm"`, Windows clients talking NTLM directly).
    Raw(Box<Ntlm>),
    /// SPNEGO NegTokenInit/NegTokenResp around NTLM (pypsrp `auth="negotiate"`).
    Spnego(Box<Negotiate>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccState {
    InProgress,
    Complete,
    Failed,
}

/// Server side of an NTLM exchange over a fixed list of local accounts.
pub struct Acceptor {
    users: Vec<UserEntry>,
    mech: Mech,
    state: AccState,
    /// Wire bytes of NEGOTIATE and CHALLENGE, needed to verify the MIC.
    negotiate_msg: Option<Vec<u8>>,
    challenge_msg: Option<Vec<u8>>,
    /// Index into `users` of the identity that AUTHENTICATE proved.
    authenticated: Option<usize>,
    sealing: bool,
    poisoned: bool,
}

impl Acceptor {
    /// `users`: (domain, user, password). User and domain are matched ASCII
    /// case-insensitively against the AUTHENTICATE message; the domain must match too,
    /// so a client that sends no domain (pyspnego with a bare `user`) needs an entry
    /// with an empty domain. A password of the form `$NTLM$:<32 hex digits>` is taken
    /// as the account's NT hash (sspi's convention, mirrored here).
    pub fn new(users: Vec<(String, String, String)>) -> Self {
        Self {
            users: users
                .into_iter()
                .map(|(domain, user, password)| UserEntry {
                    domain,
                    user,
                    password,
                })
                .collect(),
            mech: Mech::Undecided,
            state: AccState::InProgress,
            negotiate_msg: None,
            challenge_msg: None,
            authenticated: None,
            sealing: false,
            poisoned: false,
        }
    }

    /// Feeds one client token (the base64-decoded `Authorization: Negotiate` value).
    ///
    /// Raw NTLM: NEGOTIATE -> `Some(CHALLENGE)`; AUTHENTICATE -> `None`, complete.
    /// SPNEGO: NegTokenInit -> `Some(NegTokenResp with CHALLENGE)`;
    /// NegTokenResp(AUTHENTICATE, mechListMIC) -> `Some(final NegTokenResp)`, complete;
    /// the final token must be sent back in the `WWW-Authenticate: Negotiate` header of
    /// the successful response.
    pub fn step(&mut self, input: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.state {
            AccState::Complete => return Err(NtlmError::OutOfSequence("context already complete")),
            AccState::Failed => return Err(NtlmError::OutOfSequence("context failed earlier")),
            AccState::InProgress => {}
        }
        let result = self.step_inner(input);
        if result.is_err() {
            self.state = AccState::Failed;
        }
        result
    }

    pub fn is_complete(&self) -> bool {
        self.state == AccState::Complete
    }

    /// The authenticated account as configured, `DOMAIN\user` or `user`.
    pub fn user(&self) -> Option<String> {
        if !self.is_complete() {
            return None;
        }
        let entry = self.users.get(self.authenticated?)?;
        Some(if entry.domain.is_empty() {
            entry.user.clone()
        } else {
            format!("{}\\{}", entry.domain, entry.user)
        })
    }

    /// Seals `plain` (server-to-client direction). Returns (16-byte signature, ciphertext).
    pub fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        self.ready()?;
        match &mut self.mech {
            Mech::Raw(ntlm) => seal(ntlm.as_mut(), plain, SIGNATURE_LEN),
            Mech::Spnego(negotiate) => seal(negotiate.as_mut(), plain, SIGNATURE_LEN),
            Mech::Undecided => Err(NtlmError::OutOfSequence("context not complete")),
        }
    }

    /// Verifies and unseals a client message. A failure poisons the context.
    pub fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.ready()?;
        let result = match &mut self.mech {
            Mech::Raw(ntlm) => open_signed(ntlm.as_mut(), header, sealed),
            Mech::Spnego(negotiate) => open_signed(negotiate.as_mut(), header, sealed),
            Mech::Undecided => Err(NtlmError::OutOfSequence("context not complete")),
        };
        result.inspect_err(|_| self.poisoned = true)
    }

    fn ready(&self) -> Result<()> {
        if self.is_complete() && !self.sealing {
            return Err(NtlmError::NoConfidentiality);
        }
        ready(self.is_complete(), self.poisoned)
    }

    fn step_inner(&mut self, input: &[u8]) -> Result<Option<Vec<u8>>> {
        if matches!(self.mech, Mech::Undecided) {
            self.mech = if input.starts_with(NTLMSSP_SIGNATURE) {
                Mech::Raw(Box::new(Ntlm::new()))
            } else if input.first() == Some(&0x60) {
                Mech::Spnego(Box::new(self.new_negotiate_server()?))
            } else {
                return Err(NtlmError::InvalidToken("neither NTLMSSP nor SPNEGO"));
            };
        }

        let spnego = matches!(self.mech, Mech::Spnego(_));
        let inner = if spnego {
            spnego::mech_token(input)?
        } else {
            Some(input)
        };
        let mut pending: Option<usize> = None;
        if let Some(token) = inner {
            match ntlm_message_type(token) {
                Some(NTLM_NEGOTIATE) if self.negotiate_msg.is_none() => {
                    self.negotiate_msg = Some(token.to_vec())
                }
                Some(NTLM_AUTHENTICATE) if self.challenge_msg.is_some() => {
                    let (index, flags) = self.verify_authenticate(token)?;
                    self.sealing = flags & FLAG_SEAL != 0;
                    pending = Some(index);
                }
                // The optimistic token of another mechanism (a Kerberos AP-REQ when the
                // client prefers Kerberos): sspi answers with supportedMech=NTLM and no
                // token, and the client starts NTLM in its next NegTokenResp. Passing it
                // through is safe: completion below requires a verified AUTHENTICATE.
                None if spnego => {}
                _ => return Err(NtlmError::InvalidToken("unexpected NTLM message")),
            }
        }

        // Only the identity verified above is offered to the raw NTLM acceptor, so its
        // candidate loop cannot settle on another account.
        let mut raw_creds = match pending {
            Some(index) => Some(self.identity_buffers(index)?),
            None => None,
        };
        let (status, output) = match &mut self.mech {
            Mech::Raw(ntlm) => {
                let creds = &mut raw_creds;
                let (mut status, output) = accept(ntlm.as_mut(), creds, input)?;
                if matches!(
                    status,
                    SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue
                ) {
                    // Derives the session keys (and re-checks the MIC) inside sspi.
                    status = ntlm.complete_auth_token(&mut [])?;
                }
                (status, output)
            }
            Mech::Spnego(negotiate) => {
                // sspi's Negotiate picks the candidate accounts by the wire user name from
                // its own list (same matching rule as ours) and verifies/produces the
                // SPNEGO mechListMIC, resetting the RC4 state as MS-SPNG 3.2.5.1 requires.
                let mut creds: Option<CredentialsBuffers> = None;
                accept(negotiate.as_mut(), &mut creds, input)?
            }
            Mech::Undecided => return Err(NtlmError::OutOfSequence("no mechanism")),
        };

        if !output.is_empty() {
            let inner_out = if spnego {
                spnego::mech_token(&output)?
            } else {
                Some(output.as_slice())
            };
            if let Some(token) = inner_out
                && ntlm_message_type(token) == Some(NTLM_CHALLENGE)
            {
                self.challenge_msg = Some(token.to_vec());
            }
        }

        match status {
            SecurityStatus::Ok => {
                let index = pending.ok_or(NtlmError::OutOfSequence(
                    "sspi completed without AUTHENTICATE",
                ))?;
                self.authenticated = Some(index);
                self.state = AccState::Complete;
            }
            SecurityStatus::ContinueNeeded => {
                // sspi leaves a SPNEGO exchange open after AUTHENTICATE only when the client
                // sent no mechListMIC. pyspnego and Windows always send one (the NTLM MIC is
                // present), so treat that as a broken client rather than add a fourth leg.
                if pending.is_some() {
                    return Err(NtlmError::InvalidToken("SPNEGO mechListMIC missing"));
                }
            }
            _ => return Err(NtlmError::OutOfSequence("unexpected sspi status")),
        }
        Ok((!output.is_empty()).then_some(output))
    }

    fn new_negotiate_server(&self) -> Result<Negotiate> {
        let identities = self
            .users
            .iter()
            .map(|u| {
                Ok(AuthIdentity {
                    username: Username::new(&u.user, Some(&u.domain))
                        .map_err(|e| NtlmError::InvalidUser(e.to_string()))?,
                    password: u.password.clone().into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // "ntlm" alone disables Kerberos and PKU2U: a Kerberos acceptor would need a keytab.
        let config = NegotiateConfig::new(
            Box::new(NtlmConfig::default()),
            Some("ntlm".to_owned()),
            String::new(),
        );
        Ok(Negotiate::new_server(config, identities)?)
    }

    fn identity_buffers(&self, index: usize) -> Result<AuthIdentityBuffers> {
        let entry = self.users.get(index).ok_or(NtlmError::LogonDenied)?;
        Ok(AuthIdentityBuffers::new(
            entry.user.as_str().into(),
            entry.domain.as_str().into(),
            entry.password.as_str().into(),
        ))
    }

    /// Checks an AUTHENTICATE message (MS-NLMP 2.2.1.3, 3.3.2) before sspi sees it:
    /// NTLMv2 only, MIC announced and present, account named by the message exists,
    /// NTProofStr proves its password, and the MIC verifies with the session key.
    /// Returns the account index and the message's negotiate flags.
    fn verify_authenticate(&self, msg: &[u8]) -> Result<(usize, u32)> {
        let negotiate = self
            .negotiate_msg
            .as_deref()
            .ok_or(NtlmError::OutOfSequence("no NEGOTIATE"))?;
        let challenge = self
            .challenge_msg
            .as_deref()
            .ok_or(NtlmError::OutOfSequence("no CHALLENGE"))?;
        let server_challenge = challenge
            .get(24..32)
            .ok_or(NtlmError::InvalidToken("short CHALLENGE"))?;

        let auth = AuthenticateView::parse(msg)?;
        if auth.flags & FLAG_UNICODE == 0 {
            return Err(NtlmError::InvalidToken("OEM strings are not supported"));
        }
        if auth.flags & FLAG_EXTENDED_SESSION_SECURITY == 0 {
            // sspi only implements extended session security for sign/seal.
            return Err(NtlmError::InvalidToken(
                "extended session security not negotiated",
            ));
        }

        // NTLMv2 response: NTProofStr(16) | 1 | 1 | 6 reserved | timestamp(8) | client
        // challenge(8) | 4 reserved | AV pairs. Anything shorter is NTLMv1 or anonymous.
        let nt = auth.nt_response;
        if nt.len() < 16 + 28 + 4 {
            return Err(NtlmError::LogonDenied);
        }
        let (nt_proof, blob) = nt.split_at(16);
        if blob[0] != 1 || blob[1] != 1 {
            return Err(NtlmError::InvalidToken("unknown NTLMv2 response version"));
        }
        let av_flags = av_pair_flags(&blob[28..])?;
        if av_flags & AV_FLAG_MIC_PRESENT == 0 || auth.mic.iter().all(|b| *b == 0) {
            return Err(NtlmError::MissingMic);
        }

        let user = utf16le_to_string(auth.user)?;
        let domain = utf16le_to_string(auth.domain)?;
        // Same rule as sspi's Negotiate acceptor (Username::eq_ignore_ascii_case).
        let index = self
            .users
            .iter()
            .position(|u| {
                u.user.eq_ignore_ascii_case(&user) && u.domain.eq_ignore_ascii_case(&domain)
            })
            .ok_or(NtlmError::LogonDenied)?;
        let nt_hash = nt_hash(&self.users[index].password)?;

        // NTOWFv2 uses the names exactly as the client sent them (MS-NLMP 3.3.2).
        let mut identity = utf16le(&user.to_uppercase());
        identity.extend_from_slice(&utf16le(&domain));
        let response_key = hmac_md5(&nt_hash, &[&identity]);
        let expected_proof = hmac_md5(&response_key, &[server_challenge, blob]);
        if !constant_time_eq(&expected_proof, nt_proof) {
            return Err(NtlmError::LogonDenied);
        }

        let key_exchange_key = hmac_md5(&response_key, &[nt_proof]);
        let session_key: [u8; 16] = if auth.flags & FLAG_KEY_EXCH != 0 {
            let encrypted: [u8; 16] = auth
                .encrypted_session_key
                .try_into()
                .map_err(|_| NtlmError::InvalidToken("session key length"))?;
            rc4(&key_exchange_key, &encrypted)
                .try_into()
                .map_err(|_| NtlmError::InvalidToken("session key length"))?
        } else {
            key_exchange_key
        };
        let mut zeroed = msg.to_vec();
        zeroed[auth.mic_offset..auth.mic_offset + 16].fill(0);
        let expected_mic = hmac_md5(&session_key, &[negotiate, challenge, &zeroed]);
        if !constant_time_eq(&expected_mic, auth.mic) {
            return Err(NtlmError::LogonDenied);
        }
        Ok((index, auth.flags))
    }
}

/// Borrowed fields of an AUTHENTICATE message.
struct AuthenticateView<'a> {
    nt_response: &'a [u8],
    domain: &'a [u8],
    user: &'a [u8],
    encrypted_session_key: &'a [u8],
    flags: u32,
    mic: &'a [u8],
    mic_offset: usize,
}

impl<'a> AuthenticateView<'a> {
    fn parse(msg: &'a [u8]) -> Result<Self> {
        if msg.len() < 64 || ntlm_message_type(msg) != Some(NTLM_AUTHENTICATE) {
            return Err(NtlmError::InvalidToken("not an AUTHENTICATE message"));
        }
        let flags = read_u32(msg, 60)?;
        // The MIC follows the 8-byte Version field, which is present when
        // NEGOTIATE_VERSION is set; sspi locates it the same way.
        let mic_offset = if flags & FLAG_VERSION != 0 { 72 } else { 64 };
        let mic = msg
            .get(mic_offset..mic_offset + 16)
            .ok_or(NtlmError::MissingMic)?;
        let mut lowest_payload = usize::MAX;
        let mut field = |index: usize| -> Result<&'a [u8]> {
            let at = 12 + 8 * index;
            let len = usize::from(read_u16(msg, at)?);
            let offset = read_u32(msg, at + 4)? as usize;
            if len == 0 {
                return Ok(&[]);
            }
            lowest_payload = lowest_payload.min(offset);
            msg.get(offset..offset.saturating_add(len))
                .ok_or(NtlmError::InvalidToken("field outside message"))
        };
        let _lm_response = field(0)?;
        let nt_response = field(1)?;
        let domain = field(2)?;
        let user = field(3)?;
        let _workstation = field(4)?;
        let encrypted_session_key = field(5)?;
        // A payload overlapping the MIC slot would mean there is no MIC there.
        if lowest_payload < mic_offset + 16 {
            return Err(NtlmError::MissingMic);
        }
        Ok(Self {
            nt_response,
            domain,
            user,
            encrypted_session_key,
            flags,
            mic,
            mic_offset,
        })
    }
}

/// Value of MsvAvFlags in an AV pair list (0 when absent).
fn av_pair_flags(mut pairs: &[u8]) -> Result<u32> {
    loop {
        let id = read_u16(pairs, 0)?;
        let len = usize::from(read_u16(pairs, 2)?);
        let value = pairs
            .get(4..4 + len)
            .ok_or(NtlmError::InvalidToken("truncated AV pair"))?;
        match id {
            AV_EOL => return Ok(0),
            AV_FLAGS => {
                return value
                    .try_into()
                    .map(u32::from_le_bytes)
                    .map_err(|_| NtlmError::InvalidToken("MsvAvFlags length"));
            }
            _ => pairs = &pairs[4 + len..],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sspi glue
// ---------------------------------------------------------------------------------------------

fn accept<S: Sspi>(
    ctx: &mut S,
    creds: &mut S::CredentialsHandle,
    input: &[u8],
) -> Result<(SecurityStatus, Vec<u8>)> {
    let mut input = vec![SecurityBuffer::new(input.to_vec(), BufferType::Token)];
    let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
    let builder = ctx
        .accept_security_context()
        .with_credentials_handle(creds)
        .with_context_requirements(
            ServerRequestFlags::ALLOCATE_MEMORY
                | ServerRequestFlags::CONFIDENTIALITY
                | ServerRequestFlags::INTEGRITY,
        )
        .with_target_data_representation(DataRepresentation::Native)
        .with_input(&mut input)
        .with_output(&mut output);
    let result = SspiImpl::accept_security_context_impl(ctx, builder)?.resolve_to_result()?;
    Ok((result.status, take_token(output)?))
}

fn take_token(mut buffers: Vec<SecurityBuffer>) -> Result<Vec<u8>> {
    let token = SecurityBuffer::find_buffer_mut(&mut buffers, BufferType::Token)?;
    Ok(std::mem::take(&mut token.buffer))
}

/// EncryptMessage with [Token(header_len), Data(plain)], as WinRM seals a message with either
/// mechanism; returns (Token, Data) as the package left them. NTLM: sspi RC4-seals Data in place
/// (advancing the send RC4 stream), then writes the 16-byte signature, whose checksum is RC4'd
/// with the *same* stream (KEY_EXCH), into Token: exactly pyspnego's `wrap_winrm`. Kerberos: the
/// wrap token's header and trailer go to Token, the encrypted payload to Data.
pub(crate) fn seal<S: Sspi>(
    ctx: &mut S,
    plain: &[u8],
    header_len: usize,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut header = vec![0u8; header_len];
    let mut data = plain.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(&mut header),
        SecurityBufferRef::data_buf(&mut data),
    ];
    ctx.encrypt_message(EncryptionFlags::empty(), &mut buffers)?;
    Ok((buffers[0].data().to_vec(), buffers[1].data().to_vec()))
}

/// DecryptMessage with [Token(header), Data(sealed)]: the plaintext, or `BadSignature`. NTLM's
/// sspi checks the sequence number in the header against its own counter, unseals, then
/// verifies the checksum; it writes plaintext into Data before the check, so on error the buffer
/// is dropped.
pub(crate) fn open<S: Sspi>(ctx: &mut S, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let mut header = header.to_vec();
    let mut data = sealed.to_vec();
    let mut buffers = [
        SecurityBufferRef::token_buf(&mut header),
        SecurityBufferRef::data_buf(&mut data),
    ];
    ctx.decrypt_message(&mut buffers)
        .map_err(|_| NtlmError::BadSignature)?;
    Ok(buffers[1].data().to_vec())
}

/// [`open`] for NTLM, whose header is exactly one signature.
fn open_signed<S: Sspi>(ctx: &mut S, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if header.len() != SIGNATURE_LEN {
        return Err(NtlmError::BadSignature);
    }
    open(ctx, header, sealed)
}

/// Whether a context may wrap and unwrap: complete, and never failed a check since.
pub(crate) fn ready(complete: bool, poisoned: bool) -> Result<()> {
    if !complete {
        return Err(NtlmError::OutOfSequence("context not complete"));
    }
    if poisoned {
        return Err(NtlmError::BadSignature);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WinRM multipart body (MS-WSMV 2.2.9.1.1; byte layout as pypsrp's encryption.py)
// ---------------------------------------------------------------------------------------------

/// Builds the `multipart/encrypted` body for one wrapped message. `plain_len` is the
/// length of the SOAP message before sealing (NTLM adds no padding).
pub fn encode_multipart(protocol: &str, plain_len: usize, header: &[u8], sealed: &[u8]) -> Vec<u8> {
    // The header is a 16-byte signature; a 4 GiB one would be a caller bug.
    let header_len = u32::try_from(header.len()).expect("signature header longer than u32::MAX");
    let mut body = Vec::with_capacity(200 + header.len() + sealed.len());
    body.extend_from_slice(BOUNDARY_LINE);
    body.extend_from_slice(b"\tContent-Type: ");
    body.extend_from_slice(protocol.as_bytes());
    body.extend_from_slice(
        b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
    );
    body.extend_from_slice(plain_len.to_string().as_bytes());
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(BOUNDARY_LINE);
    body.extend_from_slice(OCTET_STREAM_LINE);
    body.extend_from_slice(&header_len.to_le_bytes());
    body.extend_from_slice(header);
    body.extend_from_slice(sealed);
    body.extend_from_slice(BOUNDARY_END);
    body
}

/// Splits a single-part `multipart/encrypted` body into (declared plaintext length,
/// signature header, sealed bytes). The caller should compare the declared length
/// with the unwrapped length, as pypsrp does.
pub fn decode_multipart(body: &[u8]) -> Result<(usize, Vec<u8>, Vec<u8>)> {
    let rest = body
        .strip_prefix(BOUNDARY_LINE)
        .ok_or(NtlmError::Multipart("missing leading boundary"))?;
    let split = find(rest, BOUNDARY_LINE).ok_or(NtlmError::Multipart("missing second boundary"))?;
    let headers = std::str::from_utf8(&rest[..split])
        .map_err(|_| NtlmError::Multipart("non-UTF-8 part headers"))?;
    let rest = &rest[split + BOUNDARY_LINE.len()..];

    if !headers.contains("-session-encrypted") {
        return Err(NtlmError::Multipart("not a session-encrypted part"));
    }
    let length_text = headers
        .split_once("Length=")
        .map(|(_, after)| after.trim_start())
        .ok_or(NtlmError::Multipart("missing Length="))?;
    let digits = length_text.bytes().take_while(u8::is_ascii_digit).count();
    let plain_len = length_text[..digits]
        .parse::<usize>()
        .map_err(|_| NtlmError::Multipart("bad Length= value"))?;

    let rest = rest
        .strip_prefix(OCTET_STREAM_LINE)
        .ok_or(NtlmError::Multipart("missing octet-stream header"))?;
    let rest = rest
        .strip_suffix(BOUNDARY_END)
        .ok_or(NtlmError::Multipart("missing closing boundary"))?;
    let (len_bytes, rest) = rest
        .split_at_checked(4)
        .ok_or(NtlmError::Multipart("truncated header length"))?;
    let header_len = read_u32(len_bytes, 0)? as usize;
    let (header, sealed) = rest
        .split_at_checked(header_len)
        .ok_or(NtlmError::Multipart("truncated header"))?;
    Ok((plain_len, header.to_vec(), sealed.to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Minimal SPNEGO (RFC 4178) reading: only to get the NTLM token out of a NegTokenInit /
// NegTokenResp. sspi's Negotiate does the real SPNEGO processing.
// ---------------------------------------------------------------------------------------------

mod spnego {
    use super::{NtlmError, Result};

    /// DER OID 1.3.6.1.5.5.2 (SPNEGO), content bytes.
    const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];

    /// Returns the mechToken (NegTokenInit) or responseToken (NegTokenResp), if any.
    pub(super) fn mech_token(token: &[u8]) -> Result<Option<&[u8]>> {
        let (tag, content, _) = read_tlv(token)?;
        let (wanted_field, sequence) = match tag {
            // GSS-API InitialContextToken: [APPLICATION 0] { thisMech OID, NegotiationToken }
            0x60 => {
                let (oid_tag, oid, rest) = read_tlv(content)?;
                if oid_tag != 0x06 || oid != SPNEGO_OID {
                    return Err(NtlmError::InvalidToken("GSS token is not SPNEGO"));
                }
                let (choice, init, _) = read_tlv(rest)?;
                if choice != 0xa0 {
                    return Err(NtlmError::InvalidToken("expected NegTokenInit"));
                }
                (0xa2, init) // mechToken [2]
            }
            0xa1 => (0xa2, content), // NegTokenResp, responseToken [2]
            _ => return Err(NtlmError::InvalidToken("not a SPNEGO token")),
        };
        let (seq_tag, mut fields, _) = read_tlv(sequence)?;
        if seq_tag != 0x30 {
            return Err(NtlmError::InvalidToken("SPNEGO: expected SEQUENCE"));
        }
        while !fields.is_empty() {
            let (tag, value, rest) = read_tlv(fields)?;
            if tag == wanted_field {
                let (octet_tag, octets, _) = read_tlv(value)?;
                if octet_tag != 0x04 {
                    return Err(NtlmError::InvalidToken("SPNEGO: expected OCTET STRING"));
                }
                return Ok(Some(octets));
            }
            fields = rest;
        }
        Ok(None)
    }

    /// One DER TLV (single-byte tags, definite lengths): (tag, content, rest).
    fn read_tlv(data: &[u8]) -> Result<(u8, &[u8], &[u8])> {
        const SHORT: NtlmError = NtlmError::InvalidToken("SPNEGO: truncated DER");
        let (&tag, rest) = data.split_first().ok_or(SHORT)?;
        let (&first, mut rest) = rest.split_first().ok_or(SHORT)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(NtlmError::InvalidToken("SPNEGO: unsupported DER length"));
            }
            let (bytes, after) = rest.split_at_checked(count).ok_or(SHORT)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (content, rest) = rest.split_at_checked(len).ok_or(SHORT)?;
        Ok((tag, content, rest))
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers: byte reading and the NTLMv2 primitives (MD4, HMAC-MD5, RC4).
// ---------------------------------------------------------------------------------------------

fn ntlm_message_type(token: &[u8]) -> Option<u32> {
    if !token.starts_with(NTLMSSP_SIGNATURE) {
        return None;
    }
    read_u32(token, 8).ok()
}

fn read_u16(data: &[u8], at: usize) -> Result<u16> {
    data.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(NtlmError::InvalidToken("truncated message"))
}

fn read_u32(data: &[u8], at: usize) -> Result<u32> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(NtlmError::InvalidToken("truncated message"))
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn utf16le_to_string(bytes: &[u8]) -> Result<String> {
    if !bytes.len().is_multiple_of(2) {
        return Err(NtlmError::InvalidToken("odd-length UTF-16 string"));
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| NtlmError::InvalidToken("invalid UTF-16 string"))
}

/// NT hash (MD4 of the UTF-16LE password), or the hash itself for `$NTLM$:<hex>`.
fn nt_hash(password: &str) -> Result<[u8; 16]> {
    if let Some(hex) = password.strip_prefix(sspi::NTLM_HASH_PREFIX) {
        let hash: NtlmHash = hex
            .parse()
            .map_err(|_| NtlmError::InvalidUser("bad $NTLM$ hash".into()))?;
        return Ok(*hash.as_bytes());
    }
    Ok(md4::Md4::digest(utf16le(password)).into())
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // RFC 2104 with MD5's 64-byte block.
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..16].copy_from_slice(&md5::Md5::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = md5::Md5::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = md5::Md5::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    let mut out = [0u8; 16];
    out.copy_from_slice(&outer.finalize());
    out
}

fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|byte| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            byte ^ s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<(String, String, String)> {
        vec![
            ("CORP".into(), "alice".into(), "Alice-Pass1".into()),
            ("CORP".into(), "bob".into(), "Bob-Pass2".into()),
            (String::new(), "local".into(), "Local-Pass3".into()),
        ]
    }

    /// Runs a full raw-NTLM handshake; returns the AUTHENTICATE result of the acceptor.
    fn handshake(user: &str, password: &str) -> (Initiator, Acceptor, Result<Option<Vec<u8>>>) {
        let mut client =
            Initiator::new(user, password, Some("HTTP/server.example")).expect("initiator");
        let mut server = Acceptor::new(users());
        let negotiate = client.step(None).expect("negotiate").expect("token");
        let challenge = server.step(&negotiate).expect("challenge").expect("token");
        let authenticate = client
            .step(Some(&challenge))
            .expect("authenticate")
            .expect("token");
        assert!(client.is_complete());
        let result = server.step(&authenticate);
        (client, server, result)
    }

    #[test]
    fn handshake_and_wrap_both_directions() {
        let (mut client, mut server, result) = handshake("CORP\\alice", "Alice-Pass1");
        assert_eq!(result.expect("accepted"), None);
        assert!(server.is_complete());
        assert_eq!(server.user().as_deref(), Some("CORP\\alice"));

        for i in 0..5 {
            let request = format!("<s:Envelope>request {i}</s:Envelope>").into_bytes();
            let (header, sealed) = client.wrap(&request).expect("client wrap");
            assert_eq!(header.len(), SIGNATURE_LEN);
            assert_eq!(sealed.len(), request.len());
            assert_ne!(sealed, request);
            // Sequence number sits in the last 4 bytes of the signature.
            assert_eq!(u32::from_le_bytes(header[12..16].try_into().unwrap()), i);
            assert_eq!(
                server.unwrap(&header, &sealed).expect("server unwrap"),
                request
            );

            let response = vec![b'x'; 1000 + i as usize];
            let (header, sealed) = server.wrap(&response).expect("server wrap");
            assert_eq!(u32::from_le_bytes(header[12..16].try_into().unwrap()), i);
            assert_eq!(
                client.unwrap(&header, &sealed).expect("client unwrap"),
                response
            );
        }
        // Empty payloads are legal too.
        let (header, sealed) = client.wrap(b"").expect("wrap empty");
        assert_eq!(server.unwrap(&header, &sealed).expect("unwrap empty"), b"");
    }

    #[test]
    fn multipart_round_trip() {
        let (mut client, mut server, result) = handshake("local", "Local-Pass3");
        result.expect("accepted");
        assert_eq!(server.user().as_deref(), Some("local"));
        let soap = b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"/>";
        let (header, sealed) = client.wrap(soap).expect("wrap");
        let body = encode_multipart(SPNEGO_ENCRYPTED_PROTOCOL, soap.len(), &header, &sealed);
        let mut expected = b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=".to_vec();
        expected.extend_from_slice(
            format!(
                "{}\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n",
                soap.len()
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&16u32.to_le_bytes());
        expected.extend_from_slice(&header);
        expected.extend_from_slice(&sealed);
        expected.extend_from_slice(b"--Encrypted Boundary--\r\n");
        assert_eq!(body, expected);

        let (len, h, s) = decode_multipart(&body).expect("decode");
        assert_eq!(
            (len, h.as_slice(), s.as_slice()),
            (soap.len(), header.as_slice(), sealed.as_slice())
        );
        assert_eq!(server.unwrap(&h, &s).expect("unwrap"), soap);

        for bad in [&body[..body.len() - 3], &body[5..], &body[..40]] {
            assert!(matches!(
                decode_multipart(bad),
                Err(NtlmError::Multipart(_))
            ));
        }
    }

    #[test]
    fn tampering_is_detected_and_poisons() {
        let (mut client, mut server, result) = handshake("CORP\\bob", "Bob-Pass2");
        result.expect("accepted");
        assert_eq!(server.user().as_deref(), Some("CORP\\bob"));
        let (header, mut sealed) = client.wrap(b"hello world").expect("wrap");
        sealed[3] ^= 0x01;
        assert!(matches!(
            server.unwrap(&header, &sealed),
            Err(NtlmError::BadSignature)
        ));
        // The RC4 stream is now out of step; the context refuses further use.
        let (header, sealed) = client.wrap(b"next").expect("wrap");
        assert!(matches!(
            server.unwrap(&header, &sealed),
            Err(NtlmError::BadSignature)
        ));

        // Flipping a signature byte (checksum, then sequence number) on fresh contexts.
        for index in [5usize, 13] {
            let (mut client, mut server, result) = handshake("CORP\\bob", "Bob-Pass2");
            result.expect("accepted");
            let (mut header, sealed) = client.wrap(b"hello world").expect("wrap");
            header[index] ^= 0x80;
            assert!(matches!(
                server.unwrap(&header, &sealed),
                Err(NtlmError::BadSignature)
            ));
        }
        // Replay of message 0 after it was consumed.
        let (mut client, mut server, result) = handshake("CORP\\bob", "Bob-Pass2");
        result.expect("accepted");
        let (header, sealed) = client.wrap(b"once").expect("wrap");
        server.unwrap(&header, &sealed).expect("first");
        assert!(matches!(
            server.unwrap(&header, &sealed),
            Err(NtlmError::BadSignature)
        ));
    }

    #[test]
    fn wrong_password_unknown_user_and_wrong_domain_are_refused() {
        for (user, password) in [
            ("CORP\\alice", "wrong"),
            ("CORP\\alice", "Bob-Pass2"), // another account's password
            ("CORP\\mallory", "Alice-Pass1"), // unknown name with a valid password
            ("OTHER\\alice", "Alice-Pass1"), // domain must match
            ("alice", "Alice-Pass1"),     // no domain sent, no empty-domain entry
        ] {
            let (_, server, result) = handshake(user, password);
            assert!(
                matches!(result, Err(NtlmError::LogonDenied)),
                "{user}/{password}: {result:?}"
            );
            assert!(!server.is_complete());
            assert_eq!(server.user(), None);
        }
        // Case-insensitive names pick the configured identity.
        let (_, server, result) = handshake("corp\\BOB", "Bob-Pass2");
        result.expect("accepted");
        assert_eq!(server.user().as_deref(), Some("CORP\\bob"));
    }

    #[test]
    fn nt_hash_passwords() {
        let hash = md4::Md4::digest(utf16le("Alice-Pass1"));
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let mut client = Initiator::new("CORP\\alice", "Alice-Pass1", None).unwrap();
        let mut server = Acceptor::new(vec![(
            "CORP".into(),
            "alice".into(),
            format!("$NTLM$:{hex}"),
        )]);
        let n = client.step(None).unwrap().unwrap();
        let c = server.step(&n).unwrap().unwrap();
        let a = client.step(Some(&c)).unwrap().unwrap();
        server.step(&a).expect("hash accepted");
        assert!(server.is_complete());
    }

    #[test]
    fn out_of_sequence_and_garbage_do_not_panic() {
        let mut client = Initiator::new("CORP\\alice", "Alice-Pass1", None).unwrap();
        assert!(client.wrap(b"x").is_err());
        assert!(client.step(Some(b"junk")).is_err());
        let mut server = Acceptor::new(users());
        assert!(server.wrap(b"x").is_err());

        let mut client = Initiator::new("CORP\\alice", "Alice-Pass1", None).unwrap();
        let mut server = Acceptor::new(users());
        let negotiate = client.step(None).unwrap().unwrap();
        let challenge = server.step(&negotiate).unwrap().unwrap();
        let authenticate = client.step(Some(&challenge)).unwrap().unwrap();
        // Every truncation and every single-byte corruption of the client tokens
        // must produce an error or a (verified) success, never a panic.
        for cut in 0..authenticate.len() {
            let mut s = Acceptor::new(users());
            s.step(&negotiate).unwrap();
            let _ = s.step(&authenticate[..cut]);
        }
        for i in 0..authenticate.len() {
            let mut s = Acceptor::new(users());
            let mut c = Initiator::new("CORP\\alice", "Alice-Pass1", None).unwrap();
            let n = c.step(None).unwrap().unwrap();
            let ch = s.step(&n).unwrap().unwrap();
            let mut a = c.step(Some(&ch)).unwrap().unwrap();
            if i >= a.len() {
                break;
            }
            a[i] ^= 0xff;
            // Flipping any byte breaks the MIC (or the NTProofStr), so nothing may pass.
            assert!(s.step(&a).is_err(), "corrupted byte {i} accepted");
        }
        for cut in 0..challenge.len() {
            let mut c = Initiator::new("CORP\\alice", "Alice-Pass1", None).unwrap();
            c.step(None).unwrap();
            let _ = c.step(Some(&challenge[..cut]));
        }
        for garbage in [
            &b""[..],
            b"\x60",
            b"\x60\x84\xff\xff\xff\xff",
            b"\xa1\x03\x30\x01",
            b"NTLMSSP\0\x03\0\0\0",
        ] {
            let _ = Acceptor::new(users()).step(garbage);
        }
        server.step(&authenticate).expect("original still fine");
        assert!(server.step(&authenticate).is_err());
    }

    // --- hand-built AUTHENTICATE messages --------------------------------------------------

    struct Forge<'a> {
        user: &'a str,
        domain: &'a str,
        password: &'a str,
        /// Reserve the 16-byte MIC slot after the Version field.
        mic_slot: bool,
        /// MsvAvFlags to add to the NTLMv2 AV pairs.
        av_flags: Option<u32>,
        /// Fill the MIC slot with the correct MIC.
        real_mic: bool,
    }

    /// Builds an NTLMv2 AUTHENTICATE for `challenge` (MS-NLMP 3.1.5.1.2 / 3.3.2).
    fn forge(negotiate: &[u8], challenge: &[u8], f: &Forge) -> Vec<u8> {
        let server_challenge = &challenge[24..32];
        let ti_len = usize::from(read_u16(challenge, 40).unwrap());
        let ti_off = read_u32(challenge, 44).unwrap() as usize;
        let target_info = &challenge[ti_off..ti_off + ti_len];
        // Copy the AV pairs without EOL, remember MsvAvTimestamp (7).
        let (mut pairs, mut timestamp, mut rest) = (Vec::new(), [0u8; 8], target_info);
        loop {
            let id = read_u16(rest, 0).unwrap();
            let len = usize::from(read_u16(rest, 2).unwrap());
            if id == AV_EOL {
                break;
            }
            if id == 7 {
                timestamp.copy_from_slice(&rest[4..12]);
            }
            pairs.extend_from_slice(&rest[..4 + len]);
            rest = &rest[4 + len..];
        }
        if let Some(flags) = f.av_flags {
            pairs.extend_from_slice(&AV_FLAGS.to_le_bytes());
            pairs.extend_from_slice(&4u16.to_le_bytes());
            pairs.extend_from_slice(&flags.to_le_bytes());
        }
        pairs.extend_from_slice(&[0; 4]); // MsvAvEOL

        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&timestamp);
        blob.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&pairs);
        blob.extend_from_slice(&[0; 4]);

        let mut identity = utf16le(&f.user.to_uppercase());
        identity.extend_from_slice(&utf16le(f.domain));
        let response_key = hmac_md5(&nt_hash(f.password).unwrap(), &[&identity]);
        let proof = hmac_md5(&response_key, &[server_challenge, &blob]);
        let mut nt = proof.to_vec();
        nt.extend_from_slice(&blob);
        let kek = hmac_md5(&response_key, &[&proof]);
        let session_key = [0x5a; 16];
        let encrypted_key = rc4(&kek, &session_key);

        let flags: u32 = 0xe288_8235; // 56|KEY_EXCH|128|VERSION|TARGET_INFO|ESS|ALWAYS_SIGN|NTLM|SEAL|SIGN|REQUEST_TARGET|UNICODE
        let domain = utf16le(f.domain);
        let user = utf16le(f.user);
        let lm = [0u8; 24];
        let mut offset = if f.mic_slot { 88 } else { 72 };
        let mut header = Vec::new();
        header.extend_from_slice(NTLMSSP_SIGNATURE);
        header.extend_from_slice(&NTLM_AUTHENTICATE.to_le_bytes());
        let mut payload = Vec::new();
        let fields: [&[u8]; 6] = [&lm, &nt, &domain, &user, &[], &encrypted_key];
        let mut descriptors = vec![Vec::new(); 6];
        for index in [2usize, 3, 4, 0, 1, 5] {
            let data = fields[index];
            let mut d = Vec::new();
            d.extend_from_slice(&(data.len() as u16).to_le_bytes());
            d.extend_from_slice(&(data.len() as u16).to_le_bytes());
            d.extend_from_slice(&(offset as u32).to_le_bytes());
            descriptors[index] = d;
            payload.extend_from_slice(data);
            offset += data.len();
        }
        for d in descriptors {
            header.extend_from_slice(&d);
        }
        header.extend_from_slice(&flags.to_le_bytes());
        header.extend_from_slice(&[10, 0, 0x63, 0x45, 0, 0, 0, 15]);
        if f.mic_slot {
            header.extend_from_slice(&[0; 16]);
        }
        header.extend_from_slice(&payload);
        if f.real_mic {
            let mic = hmac_md5(&session_key, &[negotiate, challenge, &header]);
            header[72..88].copy_from_slice(&mic);
        }
        header
    }

    fn forged_exchange(f: &Forge) -> (Acceptor, Result<Option<Vec<u8>>>) {
        let mut client = Initiator::new("CORP\\alice", "irrelevant", None).unwrap();
        let mut server = Acceptor::new(users());
        let negotiate = client.step(None).unwrap().unwrap();
        let challenge = server.step(&negotiate).unwrap().unwrap();
        let authenticate = forge(&negotiate, &challenge, f);
        let result = server.step(&authenticate);
        (server, result)
    }

    const GOOD: Forge<'static> = Forge {
        user: "alice",
        domain: "CORP",
        password: "Alice-Pass1",
        mic_slot: true,
        av_flags: Some(AV_FLAG_MIC_PRESENT),
        real_mic: true,
    };

    #[test]
    fn forged_message_with_real_mic_is_accepted() {
        // Positive control: proves `forge` builds valid messages, so the refusals
        // below are about the MIC and nothing else.
        let (server, result) = forged_exchange(&GOOD);
        result.expect("valid hand-built AUTHENTICATE");
        assert_eq!(server.user().as_deref(), Some("CORP\\alice"));
    }

    #[test]
    fn authenticate_without_mic_is_refused() {
        for f in [
            Forge {
                mic_slot: false,
                av_flags: None,
                real_mic: false,
                ..GOOD
            },
            Forge {
                mic_slot: true,
                av_flags: None,
                real_mic: false,
                ..GOOD
            },
            Forge {
                mic_slot: true,
                av_flags: Some(0),
                real_mic: false,
                ..GOOD
            },
            Forge {
                mic_slot: true,
                av_flags: Some(AV_FLAG_MIC_PRESENT),
                real_mic: false,
                ..GOOD
            },
        ] {
            let (server, result) = forged_exchange(&f);
            assert!(matches!(result, Err(NtlmError::MissingMic)), "{result:?}");
            assert!(!server.is_complete());
        }
        // MIC announced and present but wrong (another session key).
        let mut client = Initiator::new("CORP\\alice", "x", None).unwrap();
        let mut server = Acceptor::new(users());
        let negotiate = client.step(None).unwrap().unwrap();
        let challenge = server.step(&negotiate).unwrap().unwrap();
        let mut authenticate = forge(&negotiate, &challenge, &GOOD);
        authenticate[80] ^= 1;
        assert!(matches!(
            server.step(&authenticate),
            Err(NtlmError::LogonDenied)
        ));
    }

    /// Documents the sspi 0.21 caveat the Acceptor guards against: its NTLM acceptor
    /// alone takes a MIC-less AUTHENTICATE with a *wrong password* for the first
    /// configured identity. If this starts failing, sspi fixed it (keep the guard).
    #[test]
    fn sspi_alone_accepts_micless_wrong_password() {
        let mut client = Initiator::new("CORP\\alice", "irrelevant", None).unwrap();
        let mut ntlm = Ntlm::new();
        let negotiate = client.step(None).unwrap().unwrap();
        let mut none: Option<AuthIdentityBuffers> = None;
        let (_, challenge) = accept(&mut ntlm, &mut none, &negotiate).unwrap();
        let forged = forge(
            &negotiate,
            &challenge,
            &Forge {
                password: "not-the-password",
                mic_slot: true,
                av_flags: None,
                real_mic: false,
                ..GOOD
            },
        );
        let mut creds = Some(AuthIdentityBuffers::new(
            "alice".into(),
            "CORP".into(),
            "Alice-Pass1".into(),
        ));
        let (status, _) = accept(&mut ntlm, &mut creds, &forged).unwrap();
        assert_eq!(status, SecurityStatus::CompleteNeeded);
        assert_eq!(
            ntlm.complete_auth_token(&mut []).unwrap(),
            SecurityStatus::Ok
        );
    }

    #[test]
    fn contexts_are_send() {
        // A server keeps one context per HTTP connection, possibly across tasks.
        fn assert_send<T: Send>() {}
        assert_send::<Initiator>();
        assert_send::<Acceptor>();
    }

    #[test]
    fn spnego_reader() {
        // NegTokenResp { negState accept-incomplete, supportedMech NTLM, responseToken "NTLMSSP.." }
        let token = b"NTLMSSP\0\x02\0\0\0";
        let mut resp = vec![0xa0, 0x03, 0x0a, 0x01, 0x01, 0xa1, 0x0c, 0x06, 0x0a];
        resp.extend_from_slice(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a]);
        resp.extend_from_slice(&[0xa2, 2 + token.len() as u8, 0x04, token.len() as u8]);
        resp.extend_from_slice(token);
        let mut seq = vec![0x30, resp.len() as u8];
        seq.extend_from_slice(&resp);
        let mut full = vec![0xa1, seq.len() as u8];
        full.extend_from_slice(&seq);
        assert_eq!(spnego::mech_token(&full).unwrap(), Some(&token[..]));
        for cut in 0..full.len() {
            let _ = spnego::mech_token(&full[..cut]);
        }
    }
}
