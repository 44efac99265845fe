//! The site hierarchy: which site comes before which. A child synchronizes from its parent and
//! its upstream is configured from its parent's active SUP, so parents go first.

use std::collections::{BTreeMap, HashMap};

use crate::model::Site;

/// How deep a hierarchy is followed; validation refuses cycles, this only bounds the walk.
const MAX_DEPTH: usize = 64;

/// Orders `sites` parents before children: by depth in the hierarchy, then by code. A parent
/// that is not in `sites` is looked up in `known` (code → parent, the sites already applied).
pub fn parents_first(sites: &mut [Site], known: &BTreeMap<String, Option<String>>) {
    let keys: HashMap<String, usize> = {
        let parent_of = parents(sites, known);
        sites
            .iter()
            .map(|s| (s.code.clone(), depth(&parent_of, &s.code)))
            .collect()
    };
    sites.sort_by(|a, b| {
        keys[&a.code]
            .cmp(&keys[&b.code])
            .then_with(|| a.code.cmp(&b.code))
    });
}

/// Code → parent, over the sites already applied and those in hand.
fn parents<'a>(
    sites: &'a [Site],
    known: &'a BTreeMap<String, Option<String>>,
) -> HashMap<&'a str, Option<&'a str>> {
    known
        .iter()
        .map(|(code, parent)| (code.as_str(), parent.as_deref()))
        .chain(sites.iter().map(|s| (s.code.as_str(), s.parent.as_deref())))
        .collect()
}

/// How many ancestors `code` has.
fn depth(parent_of: &HashMap<&str, Option<&str>>, code: &str) -> usize {
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
}

/// `sites` parents first (as [`parents_first`]) in waves of one depth each: every site of a wave
/// can be handled at once, once the waves before it are done.
pub fn depth_waves(
    mut sites: Vec<Site>,
    known: &BTreeMap<String, Option<String>>,
) -> Vec<Vec<Site>> {
    parents_first(&mut sites, known);
    let depths: Vec<usize> = {
        let parent_of = parents(&sites, known);
        sites.iter().map(|s| depth(&parent_of, &s.code)).collect()
    };
    let mut waves: Vec<Vec<Site>> = Vec::new();
    let mut last = None;
    for (site, d) in sites.into_iter().zip(depths) {
        match waves.last_mut() {
            Some(wave) if last == Some(d) => wave.push(site),
            _ => waves.push(vec![site]),
        }
        last = Some(d);
    }
    waves
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

    #[test]
    fn waves_hold_one_depth_each_parents_first() {
        let known = BTreeMap::from([("CEN".to_string(), None)]);
        let sites = load_site_file(
            &file(&[
                ("GC1", Some("CH2")),
                ("CH2", Some("CEN")),
                ("CH1", Some("CEN")),
                ("ALT", None),
                ("GC2", Some("CH1")),
            ]),
            &known,
        )
        .expect("valid");
        let waves = depth_waves(sites, &known);
        let codes: Vec<Vec<&str>> = waves.iter().map(|w| codes(w)).collect();
        assert_eq!(codes, [vec!["ALT"], vec!["CH1", "CH2"], vec!["GC1", "GC2"]]);
        assert!(depth_waves(Vec::new(), &known).is_empty());
    }
}
