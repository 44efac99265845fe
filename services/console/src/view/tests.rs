use super::*;
use sup_proto::prost_types::Timestamp;

fn site(code: &str, parent: &str) -> v1::SiteStatus {
    v1::SiteStatus {
        site: Some(v1::Site {
            code: code.into(),
            name: format!("{code} site"),
            parent: parent.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn codes(rows: &[TreeRow]) -> Vec<(usize, &str)> {
    rows.iter().map(|r| (r.depth, r.code.as_str())).collect()
}

#[test]
fn the_hierarchy_is_a_tree_parents_before_children_siblings_by_code() {
    let status = v1::StatusResponse {
        sites: vec![
            site("CH2", "CEN"),
            site("PR1", "CH1"),
            site("CEN", ""),
            site("CH1", "CEN"),
            site("ALN", ""),
        ],
    };
    assert_eq!(
        codes(&hierarchy(&status)),
        [(0, "ALN"), (0, "CEN"), (1, "CH1"), (2, "PR1"), (1, "CH2")]
    );
}

#[test]
fn a_site_with_an_unknown_parent_or_in_a_loop_still_appears_once() {
    let status = v1::StatusResponse {
        sites: vec![
            site("ORP", "GONE"),
            site("LA", "LB"),
            site("LB", "LA"),
            site("SELF", "SELF"),
        ],
    };
    let rows = hierarchy(&status);
    let mut seen: Vec<&str> = rows.iter().map(|r| r.code.as_str()).collect();
    seen.sort();
    assert_eq!(seen, ["LA", "LB", "ORP", "SELF"]);
    assert!(rows.iter().any(|r| r.code == "ORP" && r.depth == 0));
}

#[test]
fn a_child_of_a_loop_stays_under_its_parent_and_codeless_sites_are_left_out() {
    let status = v1::StatusResponse {
        sites: vec![
            site("PR", "LA"),
            site("LA", "LB"),
            site("LB", "LA"),
            site("", ""),
            site("", "LA"),
        ],
    };
    assert_eq!(
        codes(&hierarchy(&status)),
        [(0, "LA"), (1, "LB"), (1, "PR")]
    );
}

#[test]
fn a_row_carries_active_slots_epoch_and_role_counts() {
    let mut s = site("CEN", "");
    s.intranet = Some(v1::ActiveSlot {
        target: "ch1-sup.corp.example.com".into(),
        nlb: true,
        members: vec!["n1".into(), "n2".into()],
        epoch: 7,
        ..Default::default()
    });
    s.internet = Some(v1::ActiveSlot {
        target: "inet".into(),
        epoch: 9,
        ..Default::default()
    });
    s.roles = vec![
        v1::RoleStatus {
            server: "n1".into(),
            state: v1::RoleState::Active as i32,
            ..Default::default()
        },
        v1::RoleStatus {
            server: "s".into(),
            state: v1::RoleState::Ready as i32,
            ..Default::default()
        },
        v1::RoleStatus {
            server: "f".into(),
            state: v1::RoleState::Failed as i32,
            health: v1::Health::Unhealthy as i32,
            ..Default::default()
        },
    ];
    s.drift = vec![v1::DriftField::default()];
    let row = &hierarchy(&v1::StatusResponse { sites: vec![s] })[0];
    assert_eq!(row.intranet, "ch1-sup.corp.example.com");
    assert_eq!(row.intranet_members, ["n1", "n2"]);
    assert_eq!(row.internet, "inet");
    assert_eq!(row.epoch, 9);
    assert_eq!(
        (
            row.roles,
            row.roles_settled,
            row.roles_failed,
            row.unhealthy
        ),
        (3, 2, 1, 1)
    );
    assert_eq!(row.drift, 1);
    assert_eq!(row.sync_state, "never_run");
}

#[test]
fn logs_map_to_the_components_that_write_them() {
    assert_eq!(component_of_log("WCM.log"), Some(CONFIGURATION_MANAGER));
    assert_eq!(component_of_log("wsyncmgr.log"), Some(SYNC_MANAGER));
    assert_eq!(
        component_of_log(r"C:\SMS\Logs\WSyncMgr.lo_"),
        Some(SYNC_MANAGER)
    );
    assert_eq!(
        component_of_log("/var/logs/WSUSCtrl.log"),
        Some(CONTROL_MANAGER)
    );
    assert_eq!(component_of_log("SUPSetup.log"), Some(SUP_SETUP));
    assert_eq!(component_of_log("SiteComp.log"), None);
}

fn milestone(seq: u64, name: &str, log: &str, fields: &[(&str, &str)]) -> Arc<Entry> {
    Arc::new(Entry {
        sequence: seq,
        event: v1::Event {
            site: "CEN".into(),
            server: "cen-site.corp.example.com".into(),
            time: Some(Timestamp {
                seconds: 1_700_000_000 + i64::try_from(seq).unwrap_or(0),
                nanos: 0,
            }),
            payload: Some(Payload::Milestone(v1::MilestoneObserved {
                name: name.into(),
                log: log.into(),
                line: format!("line {seq}"),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        },
    })
}

#[test]
fn status_messages_carry_their_message_id_and_severity_newest_first() {
    let events = vec![
        milestone(
            1,
            "sync_started",
            "wsyncmgr.log",
            &[("statmsg_id", "6701"), ("sev", "I")],
        ),
        milestone(2, "wsus_config_state", "WCM.log", &[]),
        milestone(
            3,
            "sync_failed",
            "wsyncmgr.log",
            &[("statmsg_id", "6703"), ("sev", "E")],
        ),
        milestone(4, "sync_failed", "wsyncmgr.log", &[("reason", "x")]),
        milestone(5, "role_install_succeeded", "SiteComp.log", &[]),
    ];
    let msgs = status_messages(&events);
    let view: Vec<(u64, &str, &str, &str)> = msgs
        .iter()
        .map(|m| (m.sequence, m.severity, m.component, m.message_id.as_str()))
        .collect();
    assert_eq!(
        view,
        [
            (4, "Error", SYNC_MANAGER, ""),
            (3, "Error", SYNC_MANAGER, "6703"),
            (2, "Informational", CONFIGURATION_MANAGER, ""),
            (1, "Informational", SYNC_MANAGER, "6701"),
        ]
    );
    let comps = components(&msgs);
    let by_name = |n: &str| {
        comps
            .iter()
            .find(|c| c.name == n)
            .cloned()
            .expect("component")
    };
    assert_eq!(by_name(SYNC_MANAGER).status, "Error");
    assert_eq!(by_name(SYNC_MANAGER).errors, 2);
    assert_eq!(by_name(CONFIGURATION_MANAGER).status, "OK");
    assert_eq!(by_name(CONTROL_MANAGER).status, "No messages");
    assert_eq!(comps.len(), 4);
}

#[test]
fn a_later_success_clears_the_component_error() {
    let events = vec![
        milestone(
            1,
            "sync_failed",
            "wsyncmgr.log",
            &[("statmsg_id", "6703"), ("sev", "E")],
        ),
        milestone(
            2,
            "sync_succeeded",
            "wsyncmgr.log",
            &[("statmsg_id", "6702"), ("sev", "I")],
        ),
    ];
    let comps = components(&status_messages(&events));
    let sync = comps.iter().find(|c| c.name == SYNC_MANAGER).expect("sync");
    assert_eq!((sync.status, sync.errors), ("OK", 1));
}

#[test]
fn events_are_described_with_names_not_numbers() {
    let e = v1::Event {
        payload: Some(Payload::RoleStateChanged(v1::RoleStateChanged {
            from: v1::RoleState::Ready as i32,
            to: v1::RoleState::Active as i32,
            reason: String::new(),
        })),
        ..Default::default()
    };
    assert_eq!(describe(&e), ("role_state", "ready -> active".to_string()));
    let h = v1::Event {
        payload: Some(Payload::HealthChanged(v1::HealthChanged {
            from: v1::Health::Healthy as i32,
            to: v1::Health::Unhealthy as i32,
            failing: vec![v1::ComponentProbe {
                component: "tcp".into(),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    assert_eq!(
        describe(&h),
        (
            "health_changed",
            "healthy -> unhealthy (failing: tcp)".to_string()
        )
    );
}

#[test]
fn members_are_listed_only_for_an_nlb_cluster() {
    let mut s = site("CH2", "");
    s.intranet = Some(v1::ActiveSlot {
        target: "ch2-sup01.corp.example.com".into(),
        nlb: false,
        members: vec!["ch2-sup01.corp.example.com".into()],
        epoch: 4,
        ..Default::default()
    });
    let row = &hierarchy(&v1::StatusResponse { sites: vec![s] })[0];
    assert_eq!(row.intranet, "ch2-sup01.corp.example.com");
    assert!(row.intranet_members.is_empty());
}
