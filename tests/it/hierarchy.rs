//! A child site's upstream is its parent's active SUP, never a fallback: while the parent has
//! none, the child's active SUP is not configured, and status and events say why.

use sup_proto::v1::event::Payload;

use crate::procedure::stack;
use crate::support::*;

const WAITING: &str = r#"
[[site]]
code = "TOP"
[site.software_updates]
schedule = "manual"
[[site.site_system]]
server = "top-sup01.corp.example.com"
[[site.software_update_point]]
server = "top-sup01.corp.example.com"
http_port = 8530
https_port = 8531

[[site]]
code = "KID"
parent = "TOP"
[[site.site_system]]
server = "kid-sup01.corp.example.com"
[[site.software_update_point]]
server = "kid-sup01.corp.example.com"
active = "intranet"
http_port = 8530
https_port = 8531
"#;

fn role<'a>(status: &'a serde_json::Value, site: &str, server: &str) -> &'a serde_json::Value {
    status["sites"]
        .as_array()
        .and_then(|ss| ss.iter().find(|s| s["code"] == site))
        .and_then(|s| s["roles"].as_array())
        .and_then(|rs| rs.iter().find(|r| r["server"] == server))
        .unwrap_or(&serde_json::Value::Null)
}

fn configured(events: &[(u64, sup_proto::v1::Event)], site: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(_, e)| e.site == site)
        .filter_map(|(_, e)| match &e.payload {
            Some(Payload::ComponentConfigured(c)) => Some(c.upstream_server.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_child_waits_for_its_parents_active_sup() {
    let s = stack(&[]);
    let c = s.coordinator.endpoint.clone();
    apply_sites(&c, WAITING);

    // The child's SUP becomes active, but has nothing to synchronize from.
    let st = wait_status(&c, "the child's SUP active and waiting", |st| {
        let r = role(st, "KID", "kid-sup01.corp.example.com");
        r["state"] == "active" && r["reason"].as_str().is_some_and(|w| w.contains("TOP"))
    })
    .await;
    let kid = role(&st, "KID", "kid-sup01.corp.example.com");
    assert!(kid["upstream"].is_null(), "{kid}");
    assert!(
        kid["reason"]
            .as_str()
            .is_some_and(|w| w.starts_with("waiting")),
        "{kid}"
    );
    let bus = bus(&s.nats).await;
    let events = all_events(&bus).await;
    assert!(
        events.iter().any(|(_, e)| e.site == "KID"
            && matches!(&e.payload, Some(Payload::Alert(a)) if a.kind == "waiting_for_upstream" && a.message.contains("TOP"))),
        "an alert says what the child waits for"
    );
    assert!(
        configured(&events, "KID").is_empty(),
        "not configured (with Microsoft Update or anything else) while it waits"
    );

    // The parent gets its active SUP: the child is configured to synchronize from it.
    wait_status(&c, "the parent's SUP ready", |st| {
        role(st, "TOP", "top-sup01.corp.example.com")["state"] == "ready"
    })
    .await;
    let out = supctl(
        &c,
        &[
            "sup",
            "activate",
            "--site",
            "TOP",
            "--server",
            "top-sup01.corp.example.com",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st = wait_status(&c, "the child's upstream", |st| {
        role(st, "KID", "kid-sup01.corp.example.com")["upstream"] == "top-sup01.corp.example.com"
    })
    .await;
    assert!(role(&st, "KID", "kid-sup01.corp.example.com")["reason"].is_null());
    assert_eq!(
        role(&st, "TOP", "top-sup01.corp.example.com")["upstream"],
        "microsoft_update"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let upstreams = configured(&all_events(&bus).await, "KID");
        if upstreams.iter().any(|u| u == "top-sup01.corp.example.com") {
            assert!(upstreams.iter().all(|u| !u.is_empty()), "{upstreams:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never configured: {upstreams:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The child inherits the top site's classifications: a change there reconfigures it,
    // though the child's own spec is unchanged.
    let changed = site_file(&WAITING.replacen(
        "schedule = \"manual\"",
        "schedule = \"manual\"\nclassifications = [\"Definition Updates\"]",
        1,
    ));
    let out = supctl(&c, &["apply", "-f", changed.path().to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = all_events(&bus).await;
        let inherited = events.iter().any(|(_, e)| {
            e.site == "KID"
                && matches!(&e.payload, Some(Payload::ComponentConfigured(cc))
                    if cc.settings.as_ref().is_some_and(|s| s.classifications.iter().map(|c| c.title.as_str()).eq(["Definition Updates"])))
        });
        if inherited {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child kept the old classifications"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
