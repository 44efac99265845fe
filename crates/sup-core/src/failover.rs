//! Automatic failover, decided: whether the holder of a slot of an `auto` site has been down
//! long enough for the slot to move, and to which targets, best first. The coordinator reads the
//! roles, asks here, and tries the candidates in order with compare-and-sets.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::lifecycle::RoleState;
use crate::model::{Failover, Site, SlotTarget};

/// What the decision needs to know of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    pub state: RoleState,
    /// The health service's last word on the server is "healthy".
    pub healthy: bool,
    /// How long the role has been `Unhealthy`, when it is.
    pub unhealthy_for: Option<Duration>,
}

/// What to do about a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The holder serves (one NLB node down leaves its cluster serving), has not been down for
    /// `after` yet, or the site fails over by hand.
    Stay,
    /// Move the slot: try `candidates` in order; `down_for` is how long the holder has been down.
    Move {
        candidates: Vec<SlotTarget>,
        down_for: Duration,
    },
}

/// Decides for the slot held by `holder` in `site`, `after` being the site's grace before a
/// failover, `roles` each server's view.
pub fn decide(
    site: &Site,
    holder: &SlotTarget,
    roles: &BTreeMap<String, RoleView>,
    after: Duration,
) -> Decision {
    let down: Vec<Duration> = holder
        .members
        .iter()
        .filter_map(|m| {
            let r = roles.get(m)?;
            (r.state == RoleState::Unhealthy).then_some(r.unhealthy_for?)
        })
        .collect();
    // One node of an NLB cluster down leaves the cluster serving; all down does not.
    if down.is_empty() || down.len() < holder.members.len() {
        return Decision::Stay;
    }
    // The cluster is down since its last node went down.
    let down_for = down.iter().min().copied().unwrap_or_default();
    if down_for < after || site.failover != Failover::Auto {
        return Decision::Stay;
    }
    Decision::Move {
        candidates: candidates(site, &holder.name, roles),
        down_for,
    }
}

/// Every target of `site` but `holder` whose members are all ready and healthy: NLB clusters
/// before single servers (more capacity), then by name, so every replica makes the same choice.
pub fn candidates(
    site: &Site,
    holder: &str,
    roles: &BTreeMap<String, RoleView>,
) -> Vec<SlotTarget> {
    let ready_and_healthy = |server: &String| {
        roles
            .get(server)
            .is_some_and(|r| r.state == RoleState::Ready && r.healthy)
    };
    let mut out: Vec<SlotTarget> = site
        .software_update_points
        .iter()
        .map(|s| s.server.as_str())
        .chain(site.nlb_clusters.iter().map(|c| c.name.as_str()))
        .filter_map(|name| site.target(name))
        .filter(|t| t.name != holder && t.members.iter().all(ready_and_healthy))
        .collect();
    out.sort_by(|x, y| y.nlb.cmp(&x.nlb).then(x.name.cmp(&y.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::one_site as site;

    const SITE: &str = r#"
[[site]]
code = "CEN"
failover = "auto"
[[site.site_system]]
server = "a.corp.example.com"
[[site.site_system]]
server = "b.corp.example.com"
[[site.site_system]]
server = "n1.corp.example.com"
[[site.site_system]]
server = "n2.corp.example.com"
[[site.software_update_point]]
server = "a.corp.example.com"
active = "intranet"
[[site.software_update_point]]
server = "b.corp.example.com"
[[site.software_update_point]]
server = "n1.corp.example.com"
[[site.software_update_point]]
server = "n2.corp.example.com"
[[site.nlb_cluster]]
name = "sup.corp.example.com"
members = ["n1.corp.example.com", "n2.corp.example.com"]
"#;

    fn view(state: RoleState, healthy: bool, down_secs: Option<u64>) -> RoleView {
        RoleView {
            state,
            healthy,
            unhealthy_for: down_secs.map(Duration::from_secs),
        }
    }

    fn roles(pairs: &[(&str, RoleView)]) -> BTreeMap<String, RoleView> {
        pairs
            .iter()
            .map(|(s, v)| (format!("{s}.corp.example.com"), *v))
            .collect()
    }

    fn ready() -> RoleView {
        view(RoleState::Ready, true, None)
    }

    fn down(secs: u64) -> RoleView {
        view(RoleState::Unhealthy, false, Some(secs))
    }

    fn names(d: &Decision) -> Vec<String> {
        match d {
            Decision::Move { candidates, .. } => {
                candidates.iter().map(|t| t.name.clone()).collect()
            }
            Decision::Stay => Vec::new(),
        }
    }

    #[test]
    fn a_holder_down_past_the_grace_moves_to_clusters_first_then_by_name() {
        let s = site(SITE);
        let holder = s.target("a.corp.example.com").expect("target");
        let r = roles(&[
            ("a", down(45)),
            ("b", ready()),
            ("n1", ready()),
            ("n2", ready()),
        ]);
        let d = decide(&s, &holder, &r, Duration::from_secs(30));
        // A cluster's node is a target of its own too, after every cluster.
        assert_eq!(
            names(&d),
            [
                "sup.corp.example.com",
                "b.corp.example.com",
                "n1.corp.example.com",
                "n2.corp.example.com"
            ]
        );
        assert!(
            matches!(d, Decision::Move { down_for, .. } if down_for == Duration::from_secs(45))
        );
    }

    #[test]
    fn within_the_grace_or_by_hand_the_slot_stays() {
        let s = site(SITE);
        let holder = s.target("a.corp.example.com").expect("target");
        let r = roles(&[("a", down(10)), ("b", ready())]);
        assert_eq!(
            decide(&s, &holder, &r, Duration::from_secs(30)),
            Decision::Stay
        );
        let manual = site(&SITE.replace("failover = \"auto\"", "failover = \"manual\""));
        let r = roles(&[("a", down(3600)), ("b", ready())]);
        assert_eq!(
            decide(&manual, &holder, &r, Duration::from_secs(30)),
            Decision::Stay
        );
    }

    #[test]
    fn one_cluster_node_down_keeps_the_cluster_all_down_moves_it() {
        let s = site(SITE);
        let holder = s.target("sup.corp.example.com").expect("cluster");
        let after = Duration::from_secs(30);
        let one = roles(&[("n1", down(600)), ("n2", ready()), ("b", ready())]);
        assert_eq!(decide(&s, &holder, &one, after), Decision::Stay);
        // Down since the last node went: 40 s, not the first node's 600 s.
        let both = roles(&[
            ("n1", down(600)),
            ("n2", down(40)),
            ("b", ready()),
            ("a", ready()),
        ]);
        let d = decide(&s, &holder, &both, after);
        assert_eq!(names(&d), ["a.corp.example.com", "b.corp.example.com"]);
        assert!(
            matches!(d, Decision::Move { down_for, .. } if down_for == Duration::from_secs(40))
        );
        let recent = roles(&[("n1", down(600)), ("n2", down(5))]);
        assert_eq!(decide(&s, &holder, &recent, after), Decision::Stay);
    }

    #[test]
    fn only_ready_and_healthy_targets_are_candidates() {
        let s = site(SITE);
        let holder = s.target("a.corp.example.com").expect("target");
        let r = roles(&[
            ("a", down(45)),
            ("b", view(RoleState::Ready, false, None)),
            ("n1", ready()),
            ("n2", view(RoleState::Installing, true, None)),
        ]);
        // b is unhealthy and the cluster has a node still installing: n1 alone is left.
        let d = decide(&s, &holder, &r, Duration::from_secs(30));
        assert_eq!(names(&d), ["n1.corp.example.com"]);
        let none = roles(&[("a", down(45)), ("b", view(RoleState::Failed, false, None))]);
        assert_eq!(
            decide(&s, &holder, &none, Duration::from_secs(30)),
            Decision::Move {
                candidates: Vec::new(),
                down_for: Duration::from_secs(45)
            }
        );
    }

    #[test]
    fn a_holder_that_is_not_unhealthy_stays_whatever_its_clock_says() {
        let s = site(SITE);
        let holder = s.target("a.corp.example.com").expect("target");
        let r = roles(&[
            ("a", view(RoleState::Active, true, Some(999))),
            ("b", ready()),
        ]);
        assert_eq!(decide(&s, &holder, &r, Duration::ZERO), Decision::Stay);
    }
}
