//! The WQL the SMS Provider is asked here: `SELECT * FROM <class> [WHERE <prop> = <value>
//! [AND ...]]`, values quoted ('…' or "…") or bare numbers and booleans. Anything else is refused
//! as WMI refuses a query it cannot parse (`WBEM_E_INVALID_QUERY`).

use sup_wsman::instance::Instance;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub class: String,
    /// Property = value, all of which must hold (case-insensitive, as WQL string compares are).
    pub conditions: Vec<(String, String)>,
}

fn tokens(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut s = String::from("'");
            loop {
                match chars.next() {
                    Some(x) if x == c => break,
                    // WQL escapes with a backslash inside strings.
                    Some('\\') => s.extend(chars.next()),
                    Some(x) => s.push(x),
                    None => return Err("unterminated string".into()),
                }
            }
            out.push(s);
        } else if c == '=' || c == '*' || c == ',' {
            out.push(c.to_string());
            chars.next();
        } else {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || x == '=' || x == '\'' || x == '"' {
                    break;
                }
                s.push(x);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

pub fn parse(q: &str) -> Result<Query, String> {
    let t = tokens(q)?;
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.eq_ignore_ascii_case(k));
    if !(kw(0, "select") && kw(1, "*") && kw(2, "from")) {
        return Err("only SELECT * FROM <class> is supported".into());
    }
    let class = t
        .get(3)
        .filter(|c| !c.starts_with('\''))
        .ok_or("no class")?
        .clone();
    let mut conditions = Vec::new();
    let mut i = 4;
    if i < t.len() {
        if !kw(i, "where") {
            return Err(format!("unexpected {:?}", t[i]));
        }
        i += 1;
        loop {
            let (Some(prop), Some(eq), Some(value)) = (t.get(i), t.get(i + 1), t.get(i + 2)) else {
                return Err("incomplete condition".into());
            };
            if eq != "=" || prop.starts_with('\'') {
                return Err(format!("only <property> = <value> conditions: {prop} {eq}"));
            }
            let value = value.strip_prefix('\'').unwrap_or(value).to_string();
            conditions.push((prop.clone(), value));
            i += 3;
            if i == t.len() {
                break;
            }
            if !kw(i, "and") {
                return Err(format!("unexpected {:?}", t[i]));
            }
            i += 1;
        }
    }
    Ok(Query { class, conditions })
}

impl Query {
    pub fn matches(&self, i: &Instance) -> bool {
        i.class.eq_ignore_ascii_case(&self.class)
            && self.conditions.iter().all(|(p, v)| {
                i.props
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(p))
                    .and_then(|(_, val)| match val {
                        sup_wsman::instance::Value::Text(t) => Some(t),
                        _ => None,
                    })
                    .is_some_and(|t| t.eq_ignore_ascii_case(v))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_queries_a_client_sends() {
        let q = parse("SELECT * FROM SMS_SCI_Component WHERE ComponentName = 'SMS_WSUS_SYNC_MANAGER' and SiteCode=\"CEN\" AND FileType=2").unwrap();
        assert_eq!(q.class, "SMS_SCI_Component");
        assert_eq!(
            q.conditions,
            vec![
                ("ComponentName".into(), "SMS_WSUS_SYNC_MANAGER".into()),
                ("SiteCode".into(), "CEN".into()),
                ("FileType".into(), "2".into())
            ]
        );
        let i = Instance::new("SMS_SCI_Component")
            .with("ComponentName", "sms_wsus_sync_manager")
            .with("SiteCode", "CEN")
            .with("FileType", "2");
        assert!(q.matches(&i));
        let mut other = i.clone();
        other.props[1].1 = sup_wsman::instance::Value::Text("PRI".into());
        assert!(!q.matches(&other));
        assert_eq!(
            parse("select * from SMS_SCI_SysResUse").unwrap().conditions,
            vec![]
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for q in [
            "SELECT Name FROM X",
            "SELECT * FROM X WHERE A > 1",
            "SELECT * FROM X WHERE A = 'open",
            "SELECT * FROM X WHERE A = 1 OR B = 2",
            "DELETE FROM X",
            "SELECT * FROM X WHERE",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }
}
