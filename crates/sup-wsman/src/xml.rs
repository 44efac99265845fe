//! A small namespace-resolved element tree over quick-xml: WS-Management messages are small, and
//! reading them as a tree keeps every reader order-tolerant and prefix-agnostic.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// One element: its namespace URI, local name, attributes (local name, value; `xmlns`
/// declarations left out), child elements and concatenated text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child named `name` in namespace `ns`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// The first child with this local name, whatever its namespace.
    pub fn child_local(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Follows a path of (namespace, name) steps.
    pub fn path(&self, steps: &[(&str, &str)]) -> Option<&Element> {
        steps
            .iter()
            .try_fold(self, |e, (ns, name)| e.child(ns, name))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        self.attr_ns(XSI, "nil")
            .is_some_and(|v| v.trim() == "true" || v.trim() == "1")
    }
}

/// The character an entity reference (`amp`, `#233`, `#xE9`) stands for.
pub fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n => {
            let n = n.strip_prefix('#')?;
            let code = match n.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

fn resolved(r: ResolveResult) -> String {
    match r {
        ResolveResult::Bound(n) => n.as_ref().to_string(),
        _ => String::new(),
    }
}

fn open(reader: &NsReader<&[u8]>, ns: String, e: &BytesStart) -> Result<Element, XmlError> {
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| XmlError(e.to_string()))?;
        let key = a.key;
        if key.as_ref() == "xmlns" || key.as_ref().starts_with("xmlns:") {
            continue;
        }
        let (ans, local) = reader.resolver().resolve_attribute(key);
        let value = a
            .normalized_value(quick_xml::XmlVersion::default())
            .map_err(|e| XmlError(e.to_string()))?
            .into_owned();
        attrs.push(Attr {
            ns: resolved(ans),
            name: local.as_ref().to_string(),
            value,
        });
    }
    Ok(Element {
        ns,
        name: e.local_name().as_ref().to_string(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a document into its root element. Text is trimmed at both ends.
pub fn parse(doc: &[u8]) -> Result<Element, XmlError> {
    let doc = std::str::from_utf8(doc).map_err(|e| XmlError(format!("not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(doc);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError(e.to_string()))?;
        let ns = resolved(ns);
        match event {
            Event::Start(e) => {
                let el = open(&reader, ns, &e)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                let el = open(&reader, ns, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let mut el = stack
                    .pop()
                    .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                el.text = el.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                let name = r.into_inner().into_owned();
                let c =
                    entity(&name).ok_or_else(|| XmlError(format!("unknown entity &{name};")))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("unexpected end of document".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

/// Escapes text and attribute values.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_whatever_the_prefix() {
        let doc = br#"<a:Root xmlns:a="urn:a" xmlns:b="urn:b" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
            <b:Item b:Name="x" Plain="y">one &amp; two</b:Item><b:Empty xsi:nil="true"/><![CDATA[]]></a:Root>"#;
        let root = parse(doc).unwrap();
        assert!(root.is("urn:a", "Root"));
        let item = root.child("urn:b", "Item").unwrap();
        assert_eq!(item.text, "one & two");
        assert_eq!(item.attr_ns("urn:b", "Name"), Some("x"));
        assert_eq!(item.attr("Plain"), Some("y"));
        assert!(root.child("urn:b", "Empty").unwrap().is_nil());
        assert!(root.child("urn:a", "Item").is_none());
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for doc in [
            &b"<a>"[..],
            b"<a></b>",
            b"",
            b"<a>&bogus;</a>",
            b"\xff\xfe<",
        ] {
            assert!(parse(doc).is_err(), "{:?}", String::from_utf8_lossy(doc));
        }
    }
}
