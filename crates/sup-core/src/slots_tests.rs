//! Who may take a slot: every rule of `check_activation`, and a property over any mix of role
//! states.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::lifecycle::{ALL_STATES, RoleState};
use crate::model::{Site, SlotKind, SlotTarget};
use crate::slots::{ActivationError, check_activation};
use crate::spec::load_site_file;

const SITES: &str = r#"
[[site]]
code = "CEN"
mode = "native"
[[site.site_system]]
server = "a.corp.example.com"
internet_fqdn = "a.example.com"
[[site.site_system]]
server = "b.corp.example.com"
internet_fqdn = "b.example.com"
[[site.site_system]]
server = "c.corp.example.com"
[[site.software_update_point]]
server = "a.corp.example.com"
ssl = true
[[site.software_update_point]]
server = "b.corp.example.com"
ssl = true
[[site.software_update_point]]
server = "c.corp.example.com"
ssl = true

[[site]]
code = "CH1"
parent = "CEN"
[[site.site_system]]
server = "n1.corp.example.com"
[[site.site_system]]
server = "n2.corp.example.com"
[[site.site_system]]
server = "s1.corp.example.com"
[[site.software_update_point]]
server = "n1.corp.example.com"
[[site.software_update_point]]
server = "n2.corp.example.com"
[[site.software_update_point]]
server = "s1.corp.example.com"
[[site.nlb_cluster]]
name = "nlb.corp.example.com"
members = ["n1.corp.example.com", "n2.corp.example.com"]
"#;

fn sites() -> (Site, Site) {
    let mut s = load_site_file(SITES, &BTreeMap::new()).expect("fixture");
    let ch1 = s.pop().expect("CH1");
    let cen = s.pop().expect("CEN");
    (cen, ch1)
}

fn states(pairs: &[(&str, RoleState)]) -> impl Fn(&str) -> Option<RoleState> {
    let map: BTreeMap<String, RoleState> = pairs
        .iter()
        .map(|(s, st)| (format!("{s}.corp.example.com"), *st))
        .collect();
    move |server| map.get(server).copied()
}

#[test]
fn only_a_ready_or_active_role_takes_a_slot() {
    let (cen, _) = sites();
    let a = "a.corp.example.com";
    for state in ALL_STATES {
        let got = check_activation(&cen, SlotKind::Intranet, a, states(&[("a", state)]), None);
        match state {
            RoleState::Ready | RoleState::Active => {
                let t = got.expect("may take the slot");
                assert_eq!((t.name.as_str(), t.nlb, t.members.len()), (a, false, 1));
            }
            _ => assert_eq!(
                got,
                Err(ActivationError::NotReady {
                    server: a.into(),
                    state
                })
            ),
        }
    }
    // A role the store has no record of is only declared.
    assert!(matches!(
        check_activation(&cen, SlotKind::Intranet, a, |_| None, None),
        Err(ActivationError::NotReady {
            state: RoleState::Declared,
            ..
        })
    ));
}

#[test]
fn the_internet_slot_needs_native_mode_an_internet_fqdn_and_another_server() {
    let (cen, ch1) = sites();
    let ready = states(&[
        ("a", RoleState::Ready),
        ("b", RoleState::Ready),
        ("c", RoleState::Ready),
        ("s1", RoleState::Ready),
    ]);
    let intranet = SlotTarget {
        name: "a.corp.example.com".into(),
        nlb: false,
        members: vec!["a.corp.example.com".into()],
    };
    assert_eq!(
        check_activation(
            &cen,
            SlotKind::Internet,
            "a.corp.example.com",
            &ready,
            Some(&intranet)
        ),
        Err(ActivationError::HoldsOtherSlot {
            server: "a.corp.example.com".into(),
            other: "intranet"
        })
    );
    assert!(
        check_activation(
            &cen,
            SlotKind::Internet,
            "b.corp.example.com",
            &ready,
            Some(&intranet)
        )
        .is_ok()
    );
    assert_eq!(
        check_activation(&cen, SlotKind::Internet, "c.corp.example.com", &ready, None),
        Err(ActivationError::NoInternetFqdn {
            server: "c.corp.example.com".into()
        })
    );
    assert_eq!(
        check_activation(
            &ch1,
            SlotKind::Internet,
            "s1.corp.example.com",
            &ready,
            None
        ),
        Err(ActivationError::InternetNeedsNative { site: "CH1".into() })
    );
}

#[test]
fn an_nlb_cluster_needs_every_node_ready_and_unknown_targets_are_refused() {
    let (_, ch1) = sites();
    let nlb = "nlb.corp.example.com";
    let one = states(&[("n1", RoleState::Ready), ("n2", RoleState::Verifying)]);
    assert_eq!(
        check_activation(&ch1, SlotKind::Intranet, nlb, one, None),
        Err(ActivationError::NotReady {
            server: "n2.corp.example.com".into(),
            state: RoleState::Verifying
        })
    );
    let both = states(&[("n1", RoleState::Ready), ("n2", RoleState::Active)]);
    let t = check_activation(&ch1, SlotKind::Intranet, nlb, both, None).expect("cluster");
    assert!(t.nlb);
    assert_eq!(t.members, ["n1.corp.example.com", "n2.corp.example.com"]);
    assert!(matches!(
        check_activation(
            &ch1,
            SlotKind::Intranet,
            "nobody.corp.example.com",
            |_| Some(RoleState::Ready),
            None
        ),
        Err(ActivationError::UnknownTarget { .. })
    ));
}

const TARGETS: [&str; 4] = [
    "n1.corp.example.com",
    "n2.corp.example.com",
    "s1.corp.example.com",
    "nlb.corp.example.com",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SUP_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    /// Whatever the roles' states and whatever holds the other slot: a target may take the slot
    /// exactly when every member can be activated and none holds the other slot, and what it
    /// takes is the site's own target of that name.
    #[test]
    fn a_target_takes_the_slot_exactly_when_every_member_may(
        picks in proptest::collection::vec(0usize..ALL_STATES.len(), 3),
        target in 0usize..TARGETS.len(),
        other in proptest::option::of(0usize..TARGETS.len()),
    ) {
        let (_, ch1) = sites();
        let state_of = |server: &str| -> Option<RoleState> {
            TARGETS[..3].iter().position(|t| *t == server).map(|i| ALL_STATES[picks[i]])
        };
        let other = other.and_then(|o| ch1.target(TARGETS[o]));
        let name = TARGETS[target];
        let want = ch1.target(name).expect("a target of the site");
        let got = check_activation(&ch1, SlotKind::Intranet, name, state_of, other.as_ref());
        let shares = other.as_ref().is_some_and(|o| want.members.iter().any(|m| o.members.contains(m)));
        let all_may = want.members.iter().all(|m| state_of(m).is_some_and(RoleState::can_activate));
        prop_assert_eq!(got.is_ok(), !shares && all_may, "{:?}", got);
        if let Ok(t) = got {
            prop_assert_eq!(t, want);
        }
    }
}
