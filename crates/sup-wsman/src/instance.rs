//! WMI instances as the WinRM WMI plug-in writes them (MS-WSMV 2.2.5.16, 3.1.4.1.26): an element
//! named after the class in the class's resource URI namespace, one child per property, arrays as
//! repeated children, null as `xsi:nil="true"`, and embedded instances as children typed
//! `xsi:type="<prefix>:<Class>_Type"` whose own children are in the embedded class's namespace.

use crate::xml::{Element, XSI, esc};

/// WMI resource URIs start with this, then the namespace (`\` → `/`), then the class.
pub const WMI_PREFIX: &str = "http://schemas.microsoft.com/wbem/wsman/1/wmi/";
/// `cim:Location` and other DMTF common elements WinRM may add to an instance.
pub const CIM_COMMON: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";

/// The resource URI of `class` in a WMI namespace such as `root\sms\site_CEN`.
pub fn class_uri(namespace: &str, class: &str) -> String {
    format!("{}/{class}", namespace_uri(namespace))
}

/// The resource URI of a WMI namespace, without a trailing `/`.
pub fn namespace_uri(namespace: &str) -> String {
    format!(
        "{WMI_PREFIX}{}",
        namespace.trim_matches('\\').replace('\\', "/")
    )
}

/// A property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Nil,
    Object(Instance),
}

/// A WMI object: its class and its properties in document order. An array property appears once
/// per element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    pub class: String,
    pub props: Vec<(String, Value)>,
}

impl Instance {
    pub fn new(class: &str) -> Self {
        Self {
            class: class.into(),
            props: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.props.push((name.into(), Value::Text(value.into())));
        self
    }

    pub fn push(&mut self, name: &str, value: Value) {
        self.props.push((name.into(), value));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.props.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The text of `name`, if it has one.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Every embedded object of the array property `name`.
    pub fn objects<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.props.iter().filter_map(move |(k, v)| match v {
            Value::Object(o) if k == name => Some(o),
            _ => None,
        })
    }

    /// Replaces every value of `name` by `values` (an empty list writes one nil element, as an
    /// empty array is written).
    pub fn set_all(&mut self, name: &str, values: Vec<Value>) {
        let at = self.props.iter().position(|(k, _)| k == name);
        self.props.retain(|(k, _)| k != name);
        let values = if values.is_empty() {
            vec![Value::Nil]
        } else {
            values
        };
        let at = at.unwrap_or(self.props.len()).min(self.props.len());
        for (i, v) in values.into_iter().enumerate() {
            self.props.insert(at + i, (name.into(), v));
        }
    }

    /// Renders the instance as the body of a Put or Create of a class in the namespace whose
    /// resource URI is `namespace_uri`.
    pub fn to_xml(&self, namespace_uri: &str) -> String {
        let mut out = String::new();
        let uri = format!("{namespace_uri}/{}", self.class);
        out.push_str(&format!(
            "<p:{c} xmlns:p=\"{u}\" xmlns:xsi=\"{XSI}\">",
            c = self.class,
            u = esc(&uri)
        ));
        let mut next = 0;
        write_props(&mut out, "p", &self.props, namespace_uri, &mut next);
        out.push_str(&format!("</p:{}>", self.class));
        out
    }

    /// Reads an instance element (the class is the element's local name).
    pub fn from_element(el: &Element) -> Self {
        Self {
            class: el.name.clone(),
            props: read_props(el),
        }
    }
}

fn write_props(
    out: &mut String,
    prefix: &str,
    props: &[(String, Value)],
    namespace_uri: &str,
    next: &mut usize,
) {
    for (name, value) in props {
        match value {
            Value::Text(t) => {
                out.push_str(&format!("<{prefix}:{name}>{}</{prefix}:{name}>", esc(t)))
            }
            Value::Nil => out.push_str(&format!("<{prefix}:{name} xsi:nil=\"true\"/>")),
            Value::Object(o) => {
                *next += 1;
                let q = format!("q{next}");
                let uri = format!("{namespace_uri}/{}", o.class);
                out.push_str(&format!(
                    "<{prefix}:{name} xsi:type=\"{q}:{c}_Type\" xmlns:{q}=\"{u}\">",
                    c = o.class,
                    u = esc(&uri)
                ));
                write_props(out, &q, &o.props, namespace_uri, next);
                out.push_str(&format!("</{prefix}:{name}>"));
            }
        }
    }
}

fn read_props(el: &Element) -> Vec<(String, Value)> {
    el.children
        .iter()
        .filter(|c| c.ns != CIM_COMMON)
        .map(|c| (c.name.clone(), read_value(c)))
        .collect()
}

fn read_value(el: &Element) -> Value {
    if el.is_nil() {
        return Value::Nil;
    }
    let typed = el.attr_ns(XSI, "type").map(|t| {
        let local = t.rsplit_once(':').map_or(t, |(_, l)| l);
        local.strip_suffix("_Type").unwrap_or(local).to_string()
    });
    if el.children.is_empty() && typed.is_none() {
        return Value::Text(el.text.clone());
    }
    // Without an xsi:type, the embedded class is the last segment of its children's namespace.
    let class = typed
        .or_else(|| {
            el.children
                .first()
                .and_then(|c| c.ns.rsplit('/').next())
                .map(str::to_string)
        })
        .unwrap_or_default();
    Value::Object(Instance {
        class,
        props: read_props(el),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn sample() -> Instance {
        let mut i = Instance::new("SMS_SCI_Component")
            .with("ItemName", "SMS_WSUS_SYNC_MANAGER|CEN-SITE")
            .with("SiteCode", "CEN");
        i.push(
            "Props",
            Value::Object(
                Instance::new("SMS_EmbeddedProperty")
                    .with("PropertyName", "Sync Schedule")
                    .with("Value", "0")
                    .with("Value1", "0001200000100038")
                    .with("Value2", "<&>"),
            ),
        );
        i.push(
            "Props",
            Value::Object(Instance::new("SMS_EmbeddedProperty").with("PropertyName", "Sync Now")),
        );
        i.push("PropLists", Value::Nil);
        i
    }

    #[test]
    fn an_instance_survives_rendering_and_reading() {
        let ns = namespace_uri("root\\sms\\site_CEN");
        assert_eq!(
            ns,
            "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_CEN"
        );
        let xml = sample().to_xml(&ns);
        let el = parse(xml.as_bytes()).unwrap();
        assert_eq!(el.ns, format!("{ns}/SMS_SCI_Component"));
        let back = Instance::from_element(&el);
        assert_eq!(back, sample());
        assert_eq!(back.objects("Props").count(), 2);
        assert_eq!(back.text("SiteCode"), Some("CEN"));
    }

    #[test]
    fn embedded_objects_are_read_in_either_namespace_and_without_a_type() {
        let doc = r#"<p:X xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/sms/site_CEN/X">
            <p:Props><p:PropertyName>A</p:PropertyName><p:Value>1</p:Value></p:Props>
            <cim:Location xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common"/></p:X>"#;
        let i = Instance::from_element(&parse(doc.as_bytes()).unwrap());
        assert_eq!(i.props.len(), 1);
        let o = i.objects("Props").next().unwrap();
        assert_eq!(o.text("PropertyName"), Some("A"));
    }

    #[test]
    fn set_all_replaces_in_place_and_writes_nil_for_empty() {
        let mut i = sample();
        i.set_all("Props", Vec::new());
        assert_eq!(i.get("Props"), Some(&Value::Nil));
        assert_eq!(i.props[2].0, "Props");
        assert_eq!(i.objects("Props").count(), 0);
    }
}
