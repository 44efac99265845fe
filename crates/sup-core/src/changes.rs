//! What an apply changes in a site, said for the people who read its result: one line per
//! setting group, software update point, declared active target and NLB cluster set.

use std::collections::BTreeSet;

use crate::model::{Site, SlotKind};

/// What changed between two versions of a site, for people reading the apply result.
pub fn describe_changes(old: Option<&Site>, new: &Site) -> Vec<String> {
    let Some(old) = old else {
        return vec![format!("site {} created", new.code)];
    };
    let mut out = Vec::new();
    if old.name != new.name
        || old.mode != new.mode
        || old.parent != new.parent
        || old.failover != new.failover
    {
        out.push("site settings changed".to_string());
    }
    if old.software_updates != new.software_updates {
        out.push("software update component settings changed".to_string());
    }
    let servers = |s: &Site| -> BTreeSet<String> {
        s.software_update_points
            .iter()
            .map(|p| p.server.clone())
            .collect()
    };
    let (a, b) = (servers(old), servers(new));
    for s in b.difference(&a) {
        out.push(format!("software update point added on {s}"));
    }
    for s in a.difference(&b) {
        out.push(format!("software update point removed from {s}"));
    }
    for s in a.intersection(&b) {
        if old.sup(s) != new.sup(s) || old.site_system(s) != new.site_system(s) {
            out.push(format!("software update point on {s} changed"));
        }
    }
    for slot in [SlotKind::Intranet, SlotKind::Internet] {
        if old.declared_active(slot) != new.declared_active(slot) {
            let name = new
                .declared_active(slot)
                .map(|t| t.name)
                .unwrap_or_else(|| "none".into());
            out.push(format!("declared active {} SUP: {name}", slot.as_str()));
        }
    }
    if old.nlb_clusters != new.nlb_clusters {
        out.push("NLB clusters changed".to_string());
    }
    if old.site_systems != new.site_systems && out.is_empty() {
        out.push("site systems changed".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::one_site as site;

    const BASE: &str = r#"
[[site]]
code = "CEN"
[[site.site_system]]
server = "a.corp.example.com"
[[site.site_system]]
server = "b.corp.example.com"
[[site.software_update_point]]
server = "a.corp.example.com"
active = "intranet"
"#;

    #[test]
    fn a_new_site_is_created_and_the_same_site_changes_nothing() {
        let s = site(BASE);
        assert_eq!(describe_changes(None, &s), ["site CEN created"]);
        assert!(describe_changes(Some(&s), &s).is_empty());
    }

    #[test]
    fn each_change_is_said_once_in_a_stable_order() {
        let old = site(BASE);
        let new = site(
            &format!(
                "{}[[site.software_update_point]]\nserver = \"b.corp.example.com\"\n",
                BASE.replace("active = \"intranet\"\n", "")
            )
            .replace("code = \"CEN\"", "code = \"CEN\"\nname = \"Central\""),
        );
        assert_eq!(
            describe_changes(Some(&old), &new),
            [
                "site settings changed",
                "software update point added on b.corp.example.com",
                "software update point on a.corp.example.com changed",
                "declared active intranet SUP: none",
            ]
        );
        assert_eq!(
            describe_changes(Some(&new), &old),
            [
                "site settings changed",
                "software update point removed from b.corp.example.com",
                "software update point on a.corp.example.com changed",
                "declared active intranet SUP: a.corp.example.com",
            ]
        );
    }
}
