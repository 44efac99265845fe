//! WS-Management faults (MS-WSMV 2.2.4.x, 3.1.4.1.34): the SOAP code and subcode, the reason, the
//! WinRM fault detail (`wsmanfault:WSManFault` with its `Code`) and, for WMI provider failures,
//! the nested `ProviderFault` whose own `WSManFault Code` is WMI's (`0x8004xxxx`).

use crate::envelope::SOAP;
use crate::xml::{Element, esc};

pub const WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";

/// Well-known codes (Win32 and WMI's `WBEMSTATUS`, public constants).
pub mod code {
    /// `ERROR_ACCESS_DENIED`.
    pub const ACCESS_DENIED: u32 = 5;
    /// `WBEM_E_FAILED`.
    pub const WBEM_E_FAILED: u32 = 0x8004_1001;
    /// `WBEM_E_NOT_FOUND`.
    pub const WBEM_E_NOT_FOUND: u32 = 0x8004_1002;
    /// `WBEM_E_ACCESS_DENIED`.
    pub const WBEM_E_ACCESS_DENIED: u32 = 0x8004_1003;
    /// `WBEM_E_INVALID_PARAMETER`.
    pub const WBEM_E_INVALID_PARAMETER: u32 = 0x8004_1008;
    /// `WBEM_E_ALREADY_EXISTS`.
    pub const WBEM_E_ALREADY_EXISTS: u32 = 0x8004_1019;
    /// `WBEM_E_TIMED_OUT` (`wbemErrTimedOut`).
    pub const WBEM_E_TIMED_OUT: u32 = 0x8004_3001;
    /// `ERROR_WSMAN_OPERATION_TIMEDOUT`.
    pub const WSMAN_OPERATION_TIMEDOUT: u32 = 2_150_858_793;
}

/// Fault subcodes (MS-WSMV 2.2.4.x; WS-Addressing, WS-Management).
pub mod subcode {
    pub const ACCESS_DENIED: &str = "w:AccessDenied";
    pub const DESTINATION_UNREACHABLE: &str = "a:DestinationUnreachable";
    pub const INTERNAL_ERROR: &str = "w:InternalError";
    pub const TIMED_OUT: &str = "w:TimedOut";
    pub const INVALID_SELECTORS: &str = "w:InvalidSelectors";
    pub const ACTION_NOT_SUPPORTED: &str = "a:ActionNotSupported";
    pub const ALREADY_EXISTS: &str = "w:AlreadyExists";
}

/// A fault as read from a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fault {
    /// `s:Sender` or `s:Receiver` (local part).
    pub code: String,
    /// e.g. `AccessDenied`, `DestinationUnreachable` (local part).
    pub subcode: String,
    pub reason: String,
    /// WinRM's error code (`WSManFault Code`).
    pub wsman_code: Option<u32>,
    /// The WMI provider's code, when the fault came from WMI.
    pub wmi_code: Option<u32>,
    /// The most specific message in the detail.
    pub message: String,
}

fn local(qname: &str) -> String {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l).to_string()
}

fn code_of(el: &Element) -> Option<u32> {
    let c = el.attr("Code")?.trim();
    c.strip_prefix("0x")
        .map(|h| u32::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| c.parse().ok())
}

fn find<'a>(el: &'a Element, ns: &str, name: &str, out: &mut Vec<&'a Element>) {
    for c in &el.children {
        if c.is(ns, name) {
            out.push(c);
        }
        find(c, ns, name, out);
    }
}

impl Fault {
    pub fn from_element(fault: &Element) -> Self {
        let code = fault.path(&[(SOAP, "Code"), (SOAP, "Value")]);
        let sub = fault.path(&[(SOAP, "Code"), (SOAP, "Subcode"), (SOAP, "Value")]);
        let reason = fault
            .path(&[(SOAP, "Reason"), (SOAP, "Text")])
            .map(|t| t.text.clone())
            .unwrap_or_default();
        let mut wsman = Vec::new();
        if let Some(detail) = fault.child(SOAP, "Detail") {
            find(detail, WSMANFAULT, "WSManFault", &mut wsman);
        }
        let outer = wsman.first();
        // A provider's own fault is nested inside the outer one's ProviderFault.
        let inner = wsman.get(1);
        let message = wsman
            .iter()
            .rev()
            .find_map(|w| {
                w.child(WSMANFAULT, "Message")
                    .map(|m| m.text.trim().to_string())
                    .filter(|m| !m.is_empty())
            })
            .unwrap_or_else(|| reason.clone());
        Self {
            code: code.map(|c| local(&c.text)).unwrap_or_default(),
            subcode: sub.map(|c| local(&c.text)).unwrap_or_default(),
            reason,
            wsman_code: outer.and_then(|w| code_of(w)),
            wmi_code: inner.and_then(|w| code_of(w)),
            message,
        }
    }
}

/// What a server puts in a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec<'a> {
    /// `s:Sender` or `s:Receiver`.
    pub sender: bool,
    /// A qualified subcode from [`subcode`].
    pub subcode: &'a str,
    pub reason: &'a str,
    pub wsman_code: u32,
    /// For a WMI provider failure: its code.
    pub wmi_code: Option<u32>,
    pub machine: &'a str,
}

/// Renders a fault body (the `s:Fault` element).
pub fn render(f: &FaultSpec) -> String {
    let provider = f
        .wmi_code
        .map(|c| {
            format!(
                "<f:ProviderFault provider=\"WMI Provider\" path=\"%systemroot%\\system32\\WsmWmiPl.dll\">\
                 <f:WSManFault Code=\"{c}\" Machine=\"{m}\"><f:Message>{r}</f:Message></f:WSManFault>\
                 </f:ProviderFault>",
                m = esc(f.machine),
                r = esc(f.reason)
            )
        })
        .unwrap_or_default();
    let message = if provider.is_empty() {
        esc(f.reason)
    } else {
        provider
    };
    format!(
        "<s:Fault><s:Code><s:Value>s:{code}</s:Value><s:Subcode><s:Value xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\">{sub}</s:Value></s:Subcode></s:Code>\
         <s:Reason><s:Text xml:lang=\"en-US\">{reason}</s:Text></s:Reason><s:Detail>\
         <f:WSManFault xmlns:f=\"{WSMANFAULT}\" Code=\"{wc}\" Machine=\"{m}\"><f:Message>{message}</f:Message></f:WSManFault>\
         </s:Detail></s:Fault>",
        code = if f.sender { "Sender" } else { "Receiver" },
        sub = esc(f.subcode),
        reason = esc(f.reason),
        wc = f.wsman_code,
        m = esc(f.machine),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, action};

    #[test]
    fn a_wmi_fault_names_both_codes() {
        let body = render(&FaultSpec {
            sender: false,
            subcode: subcode::INTERNAL_ERROR,
            reason: "The SMS Provider reported an error.",
            wsman_code: 2_150_859_002,
            wmi_code: Some(code::WBEM_E_FAILED),
            machine: "cen-site.corp.example.com",
        });
        let xml = envelope::response(action::FAULT, "uuid:1", &body);
        let f = envelope::parse(xml.as_bytes()).unwrap().fault().unwrap();
        assert_eq!(f.code, "Receiver");
        assert_eq!(f.subcode, "InternalError");
        assert_eq!(f.wsman_code, Some(2_150_859_002));
        assert_eq!(f.wmi_code, Some(code::WBEM_E_FAILED));
        assert_eq!(f.message, "The SMS Provider reported an error.");
    }

    #[test]
    fn a_plain_fault_reads_without_detail() {
        let xml = format!(
            "<s:Envelope xmlns:s=\"{SOAP}\"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value>\
             <s:Subcode><s:Value>w:AccessDenied</s:Value></s:Subcode></s:Code><s:Reason><s:Text>Access is denied.</s:Text>\
             </s:Reason></s:Fault></s:Body></s:Envelope>"
        );
        let f = envelope::parse(xml.as_bytes()).unwrap().fault().unwrap();
        assert_eq!(
            (f.code.as_str(), f.subcode.as_str()),
            ("Sender", "AccessDenied")
        );
        assert_eq!(f.wsman_code, None);
        assert_eq!(f.message, "Access is denied.");
    }
}
