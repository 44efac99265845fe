//! WS-Management SOAP 1.2 envelopes (MS-WSMV 2.2.1, 3.1.4): the headers every request carries,
//! the bodies of Get, Put, Create, Delete, Enumerate, Pull and method invocation, and reading
//! requests (for a server) and responses (for a client).

use crate::fault::Fault;
use crate::instance::Instance;
use crate::xml::{self, Element, XmlError, esc};

pub const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const WSMV: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
pub const WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
pub const WQL: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// `wsa:Action` values (MS-WSMV 2.2.4.x; WS-Transfer, WS-Enumeration).
pub mod action {
    pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
    pub const PUT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put";
    pub const CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
    pub const DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
    pub const ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
    pub const PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
    pub const RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
    pub const FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

    /// The response action of a request action.
    pub fn response(action: &str) -> String {
        format!("{action}Response")
    }
}

/// The addressing and WS-Management headers of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub to: String,
    pub resource_uri: String,
    pub action: String,
    pub message_id: String,
    pub relates_to: String,
    /// `wsman:SelectorSet`: the keys of one instance.
    pub selectors: Vec<(String, String)>,
    /// `wsman:OptionSet`: `wmi:X` options become the WMI context value `X` (MS-WSMV 3.1.4.1.10).
    pub options: Vec<(String, String)>,
    pub operation_timeout: String,
    pub max_envelope_size: u32,
}

impl Header {
    pub fn selector(&self, name: &str) -> Option<&str> {
        self.selectors
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request envelope.
pub fn request(h: &Header, body: &str) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{SOAP}\" xmlns:wsa=\"{WSA}\" \
         xmlns:wsman=\"{WSMAN}\" xmlns:wsmv=\"{WSMV}\" xmlns:wsen=\"{WSEN}\"><s:Header>\
         <wsa:To>{to}</wsa:To><wsman:ResourceURI s:mustUnderstand=\"true\">{ruri}</wsman:ResourceURI>\
         <wsa:ReplyTo><wsa:Address s:mustUnderstand=\"true\">{ANONYMOUS}</wsa:Address></wsa:ReplyTo>\
         <wsa:Action s:mustUnderstand=\"true\">{action}</wsa:Action>\
         <wsman:MaxEnvelopeSize s:mustUnderstand=\"true\">{max}</wsman:MaxEnvelopeSize>\
         <wsa:MessageID>{id}</wsa:MessageID>\
         <wsman:Locale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
         <wsmv:DataLocale xml:lang=\"en-US\" s:mustUnderstand=\"false\"/>\
         <wsman:OperationTimeout>{timeout}</wsman:OperationTimeout>",
        to = esc(&h.to),
        ruri = esc(&h.resource_uri),
        action = esc(&h.action),
        max = h.max_envelope_size,
        id = esc(&h.message_id),
        timeout = esc(&h.operation_timeout),
    );
    if !h.selectors.is_empty() {
        out.push_str("<wsman:SelectorSet>");
        for (k, v) in &h.selectors {
            out.push_str(&format!(
                "<wsman:Selector Name=\"{}\">{}</wsman:Selector>",
                esc(k),
                esc(v)
            ));
        }
        out.push_str("</wsman:SelectorSet>");
    }
    if !h.options.is_empty() {
        out.push_str("<wsman:OptionSet s:mustUnderstand=\"true\">");
        for (k, v) in &h.options {
            out.push_str(&format!(
                "<wsman:Option Name=\"{}\">{}</wsman:Option>",
                esc(k),
                esc(v)
            ));
        }
        out.push_str("</wsman:OptionSet>");
    }
    out.push_str("</s:Header><s:Body>");
    out.push_str(body);
    out.push_str("</s:Body></s:Envelope>");
    out
}

/// A response envelope relating to `relates_to`.
pub fn response(action: &str, relates_to: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{SOAP}\" xmlns:wsa=\"{WSA}\" \
         xmlns:wsman=\"{WSMAN}\" xmlns:wsen=\"{WSEN}\"><s:Header><wsa:To>{ANONYMOUS}</wsa:To>\
         <wsa:Action s:mustUnderstand=\"true\">{}</wsa:Action><wsa:MessageID>uuid:{}</wsa:MessageID>\
         <wsa:RelatesTo>{}</wsa:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>",
        esc(action),
        uuid::Uuid::new_v4().to_string().to_uppercase(),
        esc(relates_to),
    )
}

/// The body of an optimized Enumerate with a WQL filter.
pub fn enumerate_wql(wql: &str, max_elements: u32) -> String {
    format!(
        "<wsen:Enumerate><wsman:OptimizeEnumeration/><wsman:MaxElements>{max_elements}</wsman:MaxElements>\
         <wsman:Filter Dialect=\"{WQL}\">{}</wsman:Filter></wsen:Enumerate>",
        esc(wql)
    )
}

/// The body of a Pull.
pub fn pull(context: &str, max_elements: u32) -> String {
    format!(
        "<wsen:Pull><wsen:EnumerationContext>{}</wsen:EnumerationContext>\
         <wsen:MaxElements>{max_elements}</wsen:MaxElements></wsen:Pull>",
        esc(context)
    )
}

/// The body of a method invocation: `<p:<Method>_INPUT>` with one child per parameter.
pub fn invoke_input(class_uri: &str, method: &str, params: &[(&str, &str)]) -> String {
    let mut out = format!("<p:{method}_INPUT xmlns:p=\"{}\">", esc(class_uri));
    for (k, v) in params {
        out.push_str(&format!("<p:{k}>{}</p:{k}>", esc(v)));
    }
    out.push_str(&format!("</p:{method}_INPUT>"));
    out
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    /// The `s:Body` element.
    pub body: Element,
}

impl Message {
    /// The first element in the body.
    pub fn payload(&self) -> Option<&Element> {
        self.body.children.first()
    }

    /// The fault the body carries, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.body.child(SOAP, "Fault").map(Fault::from_element)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("not a SOAP 1.2 envelope")]
    NotSoap,
}

/// Parses any WS-Management envelope.
pub fn parse(bytes: &[u8]) -> Result<Message, EnvelopeError> {
    let root = xml::parse(bytes)?;
    if !root.is(SOAP, "Envelope") {
        return Err(EnvelopeError::NotSoap);
    }
    let body = root
        .child(SOAP, "Body")
        .cloned()
        .ok_or(EnvelopeError::NotSoap)?;
    let mut header = Header::default();
    if let Some(h) = root.child(SOAP, "Header") {
        let text = |ns: &str, name: &str| {
            h.child(ns, name)
                .map(|e| e.text.clone())
                .unwrap_or_default()
        };
        header.to = text(WSA, "To");
        header.resource_uri = text(WSMAN, "ResourceURI");
        header.action = text(WSA, "Action");
        header.message_id = text(WSA, "MessageID");
        header.relates_to = text(WSA, "RelatesTo");
        header.operation_timeout = text(WSMAN, "OperationTimeout");
        header.max_envelope_size = text(WSMAN, "MaxEnvelopeSize").parse().unwrap_or(0);
        let named = |set: Option<&Element>, item: &str| {
            set.map(|s| {
                s.children
                    .iter()
                    .filter(|c| c.name == item)
                    .map(|c| {
                        (
                            c.attr("Name").unwrap_or_default().to_string(),
                            c.text.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
        };
        header.selectors = named(h.child(WSMAN, "SelectorSet"), "Selector");
        header.options = named(h.child(WSMAN, "OptionSet"), "Option");
    }
    Ok(Message { header, body })
}

/// What an Enumerate or Pull response holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<Instance>,
    pub context: Option<String>,
    pub end: bool,
}

/// Reads an `EnumerateResponse` or a `PullResponse` (items in `wsman:Items` or `wsen:Items`).
pub fn page(payload: &Element) -> Page {
    let items = payload
        .child(WSMAN, "Items")
        .or_else(|| payload.child(WSEN, "Items"))
        .map(|i| i.children.iter().map(Instance::from_element).collect())
        .unwrap_or_default();
    let end = payload.child(WSMAN, "EndOfSequence").is_some()
        || payload.child(WSEN, "EndOfSequence").is_some();
    let context = payload
        .child(WSEN, "EnumerationContext")
        .map(|c| c.text.clone())
        .filter(|c| !c.is_empty());
    Page {
        items,
        context,
        end,
    }
}

/// The body of an `EnumerateResponse` (`pull == false`) or a `PullResponse` with `items`
/// rendered already.
pub fn page_body(pull: bool, items_xml: &str, context: Option<&str>, end: bool) -> String {
    let (tag, items_ns) = if pull {
        ("PullResponse", "wsen")
    } else {
        ("EnumerateResponse", "wsman")
    };
    let mut out = format!("<wsen:{tag}>");
    if let Some(c) = context {
        out.push_str(&format!(
            "<wsen:EnumerationContext>{}</wsen:EnumerationContext>",
            esc(c)
        ));
    }
    out.push_str(&format!("<{items_ns}:Items>{items_xml}</{items_ns}:Items>"));
    if end {
        out.push_str(&format!("<{items_ns}:EndOfSequence/>"));
    }
    out.push_str(&format!("</wsen:{tag}>"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            to: "http://cen-site:5985/wsman".into(),
            resource_uri:
                "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_CEN/SMS_SCI_SysResUse"
                    .into(),
            action: action::GET.into(),
            message_id: "uuid:5E3C8E3A-0000-0000-0000-000000000001".into(),
            selectors: vec![
                ("SiteCode".into(), "CEN".into()),
                ("ItemName".into(), "[\"Display=\\\\A\\\"]MSWNET:<x>".into()),
            ],
            options: vec![("wmi:SessionHandle".into(), "{A-B}".into())],
            operation_timeout: "PT60.000S".into(),
            max_envelope_size: 153600,
            ..Default::default()
        }
    }

    #[test]
    fn a_request_reads_back_as_written() {
        let xml = request(&header(), "");
        let m = parse(xml.as_bytes()).unwrap();
        assert_eq!(m.header, header());
        assert_eq!(
            m.header.selector("itemname"),
            Some("[\"Display=\\\\A\\\"]MSWNET:<x>")
        );
        assert_eq!(m.header.option("wmi:SessionHandle"), Some("{A-B}"));
        assert!(m.payload().is_none());
    }

    #[test]
    fn enumerate_pages_read_from_both_forms() {
        let item = Instance::new("SMS_SCI_Component").with("SiteCode", "CEN");
        let ns = crate::instance::namespace_uri("root\\sms\\site_CEN");
        let first = response(
            &action::response(action::ENUMERATE),
            "uuid:1",
            &page_body(false, &item.to_xml(&ns), Some("uuid:ctx"), false),
        );
        let m = parse(first.as_bytes()).unwrap();
        assert_eq!(m.header.relates_to, "uuid:1");
        let p = page(m.payload().unwrap());
        assert_eq!(p.items, vec![item.clone()]);
        assert_eq!(p.context.as_deref(), Some("uuid:ctx"));
        assert!(!p.end);
        let last = response(
            &action::response(action::PULL),
            "uuid:2",
            &page_body(true, &item.to_xml(&ns), None, true),
        );
        let p = page(parse(last.as_bytes()).unwrap().payload().unwrap());
        assert_eq!(p.items.len(), 1);
        assert!(p.end);
    }

    #[test]
    fn a_body_that_is_not_soap_is_refused() {
        assert_eq!(parse(b"<a/>"), Err(EnvelopeError::NotSoap));
        assert!(matches!(parse(b"<a"), Err(EnvelopeError::Xml(_))));
    }
}
