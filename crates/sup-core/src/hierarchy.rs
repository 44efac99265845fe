//! The site hierarchy: which site comes before which. A child synchronizes from its parent and
//! its upstream is configured from its parent's active SUP, so parents go first.

use std::collections::{BTreeMap, HashMap};

use crate::model::Site;

/// How deep a hierarchy is followed; validation refuses cycles, this only bounds the walk.
const MAX_DEPTH: usize = 64;

/// Orders `sites` parents before children: by depth in the hierarchy, then by code. A parent
/// that is not in `sites` is looked up in `known` (code → parent, the sites already applied).
pub fn parents_first(sites: &mut [Site], known: &BTreeMap<String, Option<String>>) {
    let parent_of: HashMap<&str, Option<&str>> = known
        .iter()
        .map(|(code, parent)| (code.as_str(), parent.as_deref()))
        .chain(sites.iter().map(|s| (s.code.as_str(), s.parent.as_deref())))
        .collect();
    let depth = |code: &str| {
        let mut d = 0;
        let mut at = parent_of.get(code).copied().flatten();
        while let Some(p) = at {
            d += 1;
            if d > MAX_DEPTH {
                break;
            }
            at = parent_of.get(p).copied().flatten();
        }
        d
    };
    let keys: HashMap<String, usize> = sites
        .iter()
        .map(|s| (s.code.clone(), depth(&s.code)))
        .collect();
    sites.sort_by(|a, b| {
        keys[&a.code]
            .cmp(&keys[&b.code])
            .then_with(|| a.code.cmp(&b.code))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_site_file;

    fn codes(sites: &[Site]) -> Vec<&str> {
        sites.iter().map(|s| s.code.as_str()).collect()
    }

    fn file(sites: &[(&str, Option<&str>)]) -> String {
        sites
            .iter()
            .map(|(code, parent)| {
                let parent = parent
                    .map(|p| format!("parent = \"{p}\"\n"))
                    .unwrap_or_default();
                format!("[[site]]\ncode = \"{code}\"\n{parent}")
            })
            .collect()
    }

    #[test]
    fn parents_come_first_then_codes_in_order() {
        let known = BTreeMap::new();
        let mut sites = load_site_file(
            &file(&[
                ("GC1", Some("CH2")),
                ("CH2", Some("CEN")),
                ("CH1", Some("CEN")),
                ("CEN", None),
                ("ALT", None),
            ]),
            &known,
        )
        .expect("valid");
        parents_first(&mut sites, &known);
        assert_eq!(codes(&sites), ["ALT", "CEN", "CH1", "CH2", "GC1"]);
    }

    #[test]
    fn a_parent_applied_earlier_counts_for_the_depth() {
        // CEN is applied already; CH1 (its child) and GC1 (CH1's) come in this file, GC1 first.
        let known = BTreeMap::from([("CEN".to_string(), None)]);
        let mut sites = load_site_file(
            &file(&[("GC1", Some("CH1")), ("CH1", Some("CEN")), ("AAA", None)]),
            &known,
        )
        .expect("valid");
        parents_first(&mut sites, &known);
        assert_eq!(codes(&sites), ["AAA", "CH1", "GC1"]);
    }
}
