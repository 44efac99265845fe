//! SOAP 1.1 as WSUS's ASMX services speak it: reading the operation out of a request with a real
//! XML parser (order-tolerant, namespace-aware), and writing envelopes and faults.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// The operation a SOAP request carries: the first element inside `Body`, with its namespace,
/// and the text of its direct and nested children by local name (for the few values we read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub namespace: String,
    pub operation: String,
    /// (local name, text) of every element with text inside the operation, in document order.
    pub values: Vec<(String, String)>,
}

impl Request {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SoapError {
    #[error("There is an error in XML document: {0}")]
    Xml(String),
    #[error("the request is not a SOAP 1.1 envelope")]
    NotSoap,
}

use sup_wsman::xml::entity;

/// Parses a SOAP 1.1 request body.
pub fn parse(body: &str) -> Result<Request, SoapError> {
    let mut reader = NsReader::from_str(body);
    reader.config_mut().trim_text(true);
    // Path of (namespace, local name) from the root.
    let mut path: Vec<(String, String)> = Vec::new();
    let mut op: Option<(String, String, usize)> = None;
    let mut values = Vec::new();
    let mut in_body = false;
    let mut text = String::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| SoapError::Xml(e.to_string()))?;
        let ns = match ns {
            ResolveResult::Bound(n) => n.as_ref().to_string(),
            _ => String::new(),
        };
        match event {
            Event::Start(e) => {
                let local = e.local_name().as_ref().to_string();
                path.push((ns.clone(), local.clone()));
                text.clear();
                handle_open(&path, &ns, &local, &mut in_body, &mut op)?;
            }
            Event::Empty(e) => {
                let local = e.local_name().as_ref().to_string();
                path.push((ns.clone(), local.clone()));
                handle_open(&path, &ns, &local, &mut in_body, &mut op)?;
                path.pop();
            }
            Event::End(_) => {
                if !text.is_empty()
                    && op.as_ref().is_some_and(|(_, _, depth)| path.len() > *depth)
                    && let Some((_, local)) = path.last()
                {
                    values.push((local.clone(), std::mem::take(&mut text)));
                }
                text.clear();
                path.pop();
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                let name = r.into_inner();
                match entity(&name) {
                    Some(c) => text.push(c),
                    None => return Err(SoapError::Xml(format!("unknown entity &{name};"))),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(SoapError::Xml("unexpected end of document".into()));
    }
    match op {
        Some((namespace, operation, _)) => Ok(Request {
            namespace,
            operation,
            values,
        }),
        None => Err(SoapError::NotSoap),
    }
}

fn handle_open(
    path: &[(String, String)],
    ns: &str,
    local: &str,
    in_body: &mut bool,
    op: &mut Option<(String, String, usize)>,
) -> Result<(), SoapError> {
    match path.len() {
        1 if !(ns == SOAP_ENV && local == "Envelope") => return Err(SoapError::NotSoap),
        2 if ns == SOAP_ENV && local == "Body" => *in_body = true,
        3 if *in_body && op.is_none() && path[1].1 == "Body" => {
            *op = Some((ns.to_string(), local.to_string(), path.len()));
        }
        _ => {}
    }
    Ok(())
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Wraps a body in a SOAP 1.1 envelope, as ASMX writes it.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{SOAP_ENV}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// A SOAP 1.1 fault (sent with HTTP 500). `code` is `soap:Client` or `soap:Server`; an
/// application error code goes in `detail/ErrorCode`.
pub fn fault(code: &str, message: &str, error_code: Option<&str>, method: &str) -> String {
    let detail = match error_code {
        Some(ec) => format!(
            "<detail><ErrorCode>{}</ErrorCode><Message>{}</Message><ID>{}</ID><Method>{}</Method></detail>",
            esc(ec),
            esc(message),
            "00000000-0000-0000-0000-000000000000",
            esc(method)
        ),
        None => "<detail />".to_string(),
    };
    envelope(&format!(
        "<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring>{detail}</soap:Fault>",
        esc(message)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_sample_regardless_of_prefixes_and_order() {
        let spec = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
               xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <soap:Body>
    <GetAuthConfig xmlns="http://www.microsoft.com/SoftwareDistribution" />
  </soap:Body>
</soap:Envelope>"#;
        let r = parse(spec).expect("parses");
        assert_eq!(r.operation, "GetAuthConfig");
        assert_eq!(r.namespace, "http://www.microsoft.com/SoftwareDistribution");

        let other = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body><c:GetConfig xmlns:c="http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService"><c:protocolVersion>1.0</c:protocolVersion></c:GetConfig></s:Body></s:Envelope>"#;
        let r = parse(other).expect("parses");
        assert_eq!(r.operation, "GetConfig");
        assert_eq!(r.value("protocolVersion"), Some("1.0"));
    }

    #[test]
    fn malformed_and_non_soap_bodies_are_errors_not_panics() {
        assert!(matches!(
            parse("<soap:Envelope"),
            Err(SoapError::Xml(_)) | Err(SoapError::NotSoap)
        ));
        assert_eq!(parse("<html><body/></html>"), Err(SoapError::NotSoap));
        assert!(parse("").is_err());
        assert!(parse("\u{0}\u{1}<<<>>>").is_err());
        assert!(matches!(
            parse(
                r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body></Body></Envelope>"#
            ),
            Err(SoapError::NotSoap)
        ));
    }
}
