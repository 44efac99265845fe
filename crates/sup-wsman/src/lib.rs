//! WS-Management (WinRM) for WMI resources, as Windows' WMI plug-in serves them (MS-WSMV).
//!
//! - [`xml`]: a namespace-resolved element tree over quick-xml.
//! - [`envelope`]: SOAP 1.2 envelopes, headers (selectors, `wmi:` options), Enumerate/Pull pages.
//! - [`instance`]: WMI instances with embedded objects and arrays, resource URIs.
//! - [`fault`]: WS-Management and WMI faults.
//! - [`ntlm`]: NTLM (raw and inside SPNEGO) on both sides, and WinRM's message encryption.
//! - [`kerberos`]: a Kerberos initiator (tickets from a KDC over TCP, mutual authentication)
//!   and WinRM's Kerberos message encryption.
//! - [`client`]: a WinRM client over HTTP(S): Get, Put, Create, Delete, WQL Enumerate + Pull,
//!   method invocation.
//!
//! **Architecture invariant:** nothing here knows ConfigMgr; the SMS Provider's classes live in
//! `sup-smsprov`.

pub mod client;
pub mod envelope;
pub mod fault;
pub mod instance;
pub mod kerberos;
pub mod ntlm;
pub mod xml;
