//! Model-based properties of the invariant: random sequences of role events and activation
//! requests, duplicated and reordered, across several sites.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::lifecycle::{RoleEvent, RoleState};
use crate::model::SlotKind;
use crate::slots::{Outcome, SiteCommand, SiteState, check_activation};
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

fn states() -> Vec<SiteState> {
    load_site_file(SITES, &BTreeMap::new())
        .expect("fixture")
        .into_iter()
        .map(SiteState::new)
        .collect()
}

const TARGETS: [&[&str]; 2] = [
    &[
        "a.corp.example.com",
        "b.corp.example.com",
        "c.corp.example.com",
    ],
    &[
        "n1.corp.example.com",
        "n2.corp.example.com",
        "s1.corp.example.com",
        "nlb.corp.example.com",
    ],
];

fn any_event() -> impl Strategy<Value = RoleEvent> {
    use RoleEvent::*;
    prop_oneof![
        3 => Just(ProvisionStarted),
        3 => Just(InstallStarted),
        4 => Just(InstallSucceeded),
        1 => Just(InstallFailed),
        3 => Just(Verified),
        2 => Just(HealthLost),
        2 => Just(HealthRestored { holds_slot: false }),
        1 => Just(RemoveRequested),
        1 => Just(RemoveCompleted),
        1 => Just(Declared),
        1 => Just(Retry),
    ]
}

#[derive(Debug, Clone)]
struct Step {
    site: usize,
    op: u16,
    cmd: SiteCommand,
}

fn any_step() -> impl Strategy<Value = Step> {
    (
        0usize..2,
        0u16..400,
        0usize..4,
        any_event(),
        any::<bool>(),
        0u8..10,
    )
        .prop_map(|(site, op, t, event, internet, kind)| {
            let targets = TARGETS[site];
            let target = targets[t % targets.len()].to_string();
            let slot = if internet {
                SlotKind::Internet
            } else {
                SlotKind::Intranet
            };
            let cmd = match kind {
                0..=5 => SiteCommand::Role {
                    server: targets[t % 3].to_string(),
                    event,
                },
                6..=8 => SiteCommand::Activate { slot, target },
                _ => SiteCommand::Clear { slot },
            };
            Step { site, op, cmd }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("SUP_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
    ))]

    /// After every step: the invariant holds and epochs never go back.
    #[test]
    fn invariant_holds_after_every_step(steps in proptest::collection::vec(any_step(), 1..120)) {
        let mut sites = states();
        for (i, step) in steps.iter().enumerate() {
            let s = &mut sites[step.site];
            let before = s.slots.clone();
            let last = s.last_epoch;
            s.apply(&format!("op-{i}"), &step.cmd);
            prop_assert!(s.check_invariant().is_ok(), "{:?} after {:?}", s.check_invariant(), step);
            prop_assert!(s.last_epoch >= last);
            for (slot, h) in &s.slots {
                match before.get(slot) {
                    // The same holder keeps its epoch; a new holder gets a newer one.
                    Some(b) if b.target == h.target => prop_assert_eq!(b.epoch, h.epoch),
                    _ => prop_assert!(h.epoch > last, "new holder of {:?} got an old epoch", slot),
                }
            }
        }
    }

    /// A command applied twice with the same op id equals applying it once, even with other
    /// commands in between (a retry after a timeout).
    #[test]
    fn same_op_id_acts_once(steps in proptest::collection::vec(any_step(), 1..80), dup_every in 1usize..5) {
        let mut once = states();
        let mut twice = states();
        for step in &steps {
            let id = format!("op-{}", step.op);
            let a = once[step.site].apply(&id, &step.cmd);
            let b = twice[step.site].apply(&id, &step.cmd);
            prop_assert_eq!(&a, &b);
        }
        // Replay a selection of the same ops again: nothing changes.
        for step in steps.iter().step_by(dup_every) {
            let id = format!("op-{}", step.op);
            let snapshot = (twice[step.site].roles.clone(), twice[step.site].slots.clone(), twice[step.site].last_epoch);
            twice[step.site].apply(&id, &step.cmd);
            prop_assert_eq!(&snapshot.0, &twice[step.site].roles);
            prop_assert_eq!(&snapshot.1, &twice[step.site].slots);
            prop_assert_eq!(snapshot.2, twice[step.site].last_epoch);
        }
        for (a, b) in once.iter().zip(&twice) {
            prop_assert_eq!(&a.roles, &b.roles);
            prop_assert_eq!(&a.slots, &b.slots);
        }
    }
}

fn ready(s: &mut SiteState, server: &str, op: &mut u32) {
    for e in [RoleEvent::InstallSucceeded, RoleEvent::Verified] {
        *op += 1;
        s.apply(
            &format!("r{op}"),
            &SiteCommand::Role {
                server: server.into(),
                event: e,
            },
        );
    }
}

#[test]
fn activation_needs_ready_and_hands_over() {
    let mut sites = states();
    let cen = &mut sites[0];
    let act = |t: &str| SiteCommand::Activate {
        slot: SlotKind::Intranet,
        target: t.into(),
    };
    assert!(matches!(
        cen.apply("1", &act("a.corp.example.com")),
        Outcome::Rejected(_)
    ));
    let mut op = 0;
    ready(cen, "a.corp.example.com", &mut op);
    ready(cen, "b.corp.example.com", &mut op);
    assert_eq!(cen.apply("2", &act("a.corp.example.com")), Outcome::Changed);
    let e1 = cen.slots[&SlotKind::Intranet].epoch;
    assert_eq!(
        cen.apply("3", &act("a.corp.example.com")),
        Outcome::Unchanged
    );
    assert_eq!(cen.apply("4", &act("b.corp.example.com")), Outcome::Changed);
    assert!(cen.slots[&SlotKind::Intranet].epoch > e1);
    assert_eq!(cen.roles["a.corp.example.com"], RoleState::Ready);
    assert_eq!(cen.roles["b.corp.example.com"], RoleState::Active);
    // The intranet holder cannot also take the internet slot.
    let inet = SiteCommand::Activate {
        slot: SlotKind::Internet,
        target: "b.corp.example.com".into(),
    };
    assert!(matches!(cen.apply("5", &inet), Outcome::Rejected(r) if r.contains("already holds")));
    // c has no Internet FQDN.
    ready(cen, "c.corp.example.com", &mut op);
    let inet_c = SiteCommand::Activate {
        slot: SlotKind::Internet,
        target: "c.corp.example.com".into(),
    };
    assert!(matches!(cen.apply("6", &inet_c), Outcome::Rejected(r) if r.contains("Internet FQDN")));
    cen.check_invariant().expect("invariant");
}

#[test]
fn nlb_needs_every_node_ready_and_mixed_mode_has_no_internet_slot() {
    let mut sites = states();
    let ch1 = &mut sites[1];
    let mut op = 0;
    ready(ch1, "n1.corp.example.com", &mut op);
    let act = SiteCommand::Activate {
        slot: SlotKind::Intranet,
        target: "nlb.corp.example.com".into(),
    };
    assert!(
        matches!(ch1.apply("a", &act), Outcome::Rejected(r) if r.contains("n2.corp.example.com"))
    );
    ready(ch1, "n2.corp.example.com", &mut op);
    assert_eq!(ch1.apply("b", &act), Outcome::Changed);
    assert_eq!(ch1.roles["n1.corp.example.com"], RoleState::Active);
    assert_eq!(ch1.roles["n2.corp.example.com"], RoleState::Active);
    ready(ch1, "s1.corp.example.com", &mut op);
    let err = check_activation(
        &ch1.site,
        SlotKind::Internet,
        "s1.corp.example.com",
        |_| Some(RoleState::Ready),
        None,
    );
    assert!(err.is_err());
}

#[test]
fn removing_the_holder_clears_the_slot() {
    let mut sites = states();
    let cen = &mut sites[0];
    let mut op = 0;
    ready(cen, "a.corp.example.com", &mut op);
    cen.apply(
        "x",
        &SiteCommand::Activate {
            slot: SlotKind::Intranet,
            target: "a.corp.example.com".into(),
        },
    );
    cen.apply(
        "y",
        &SiteCommand::Role {
            server: "a.corp.example.com".into(),
            event: RoleEvent::RemoveRequested,
        },
    );
    assert!(cen.slots.is_empty());
    assert_eq!(cen.roles["a.corp.example.com"], RoleState::Removing);
    cen.check_invariant().expect("invariant");
}
