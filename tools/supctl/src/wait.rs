//! `apply --wait`: follows the coordinator's events (no polling) until every role of the applied
//! sites is where the system keeps the declaration: a standby ready; a role declared in a slot
//! active, or ready while the slot is held by another server, since after a failover (or an
//! operator's activation, which a re-apply leaves in place) the slot stays with its new holder.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use sup_proto::v1;

use crate::{CoordinatorClient, Failure, output};

/// Where one role stands against its declaration.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    Done,
    Failed(String),
    /// Not there yet, and what it is doing.
    Short(String),
}

/// A role against its declaration, given its site's status.
pub fn standing(site: &v1::SiteStatus, r: &v1::RoleStatus) -> Standing {
    let state = output::state_name(r.state);
    if state == "failed" {
        return Standing::Failed(r.reason.clone());
    }
    let held = |slot: i32| match v1::Slot::try_from(slot) {
        Ok(v1::Slot::Intranet) => site.intranet.is_some(),
        Ok(v1::Slot::Internet) => site.internet.is_some(),
        _ => false,
    };
    let declared_in_slot = r.desired_slot != v1::Slot::Unspecified as i32;
    match state {
        "active" => Standing::Done,
        "ready" if !declared_in_slot => Standing::Done,
        // Another server holds the slot the role was declared for (a failover, or an operator's
        // activation): the system keeps it there, and this one is its standby, healthy or not.
        "ready" | "unhealthy" if declared_in_slot && held(r.desired_slot) => Standing::Done,
        _ => {
            let why = [r.reason.as_str(), waiting(site, &r.server)]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Standing::Short(if why.is_empty() {
                state.to_string()
            } else {
                format!("{state} ({why})")
            })
        }
    }
}

fn waiting<'a>(site: &'a v1::SiteStatus, server: &str) -> &'a str {
    site.role_sync
        .iter()
        .find(|s| s.server == server)
        .map_or("", |s| s.waiting.as_str())
}

/// The summary line: "12/15 roles in their declared state, 1 failed".
pub fn summary(sites: &BTreeMap<String, v1::SiteStatus>) -> (usize, usize, usize) {
    let (mut done, mut failed, mut total) = (0, 0, 0);
    for s in sites.values() {
        for r in &s.roles {
            total += 1;
            match standing(s, r) {
                Standing::Done => done += 1,
                Standing::Failed(_) => failed += 1,
                Standing::Short(_) => {}
            }
        }
    }
    (done, failed, total)
}

/// The most events taken at once before the sites they name are read again.
const DRAIN_AT_ONCE: usize = 10_000;

pub async fn wait_for_roles(
    c: &mut CoordinatorClient<sup_runtime::TracedChannel>,
    codes: &[String],
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let terminal = std::io::stdout().is_terminal();
    // Follow first, then read: no change falls between the two.
    let mut events = c
        .watch_events(v1::WatchEventsRequest {
            site: if codes.len() == 1 {
                codes[0].clone()
            } else {
                String::new()
            },
            from_sequence: 0,
            follow: true,
            tail: 0,
        })
        .await?
        .into_inner();
    let mut sites: BTreeMap<String, v1::SiteStatus> = BTreeMap::new();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut stale: Vec<String> = codes.to_vec();
    loop {
        for code in std::mem::take(&mut stale) {
            let status = c
                .get_status(v1::GetStatusRequest { site: code.clone() })
                .await?
                .into_inner();
            for s in status.sites {
                for r in &s.roles {
                    let state = output::state_name(r.state).to_string();
                    let key = (code.clone(), r.server.clone());
                    if !terminal && seen.get(&key) != Some(&state) {
                        let from = seen.get(&key).map_or("-", String::as_str);
                        println!("{code}  {:<40} {from:>12} -> {state}", r.server);
                    }
                    seen.insert(key, state);
                }
                sites.insert(code.clone(), s);
            }
        }
        let (done, failed, total) = summary(&sites);
        if terminal {
            let failed_text = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            print!("\r\x1b[K{done}/{total} roles in their declared state{failed_text}");
            let _ = std::io::stdout().flush();
        }
        if failed > 0 {
            if terminal {
                println!();
            }
            return Err(Failure {
                code: 1,
                message: report(&sites, |st| matches!(st, Standing::Failed(_))),
            });
        }
        if done == total {
            if terminal {
                println!();
            }
            println!("every role reached its declared state");
            return Ok(());
        }
        // Checked here, not only by the timeout below: a stream with an event always ready
        // would otherwise never let the timeout fire.
        let left = deadline.saturating_duration_since(Instant::now());
        let next = if left.is_zero() {
            Err(())
        } else {
            tokio::time::timeout(left, events.message())
                .await
                .map_err(|_| ())
        };
        match next {
            Ok(Ok(Some(w))) => {
                // Every event already here is taken before reading again, each site read once
                // for all of its: an apply of many sites brings thousands of events, and a
                // status read for each, one after another, took minutes.
                let mut touched = std::collections::BTreeSet::new();
                touched.extend(w.event.map(|e| e.site));
                for _ in 0..DRAIN_AT_ONCE {
                    match futures::FutureExt::now_or_never(events.message()) {
                        Some(Ok(Some(w))) => touched.extend(w.event.map(|e| e.site)),
                        // Nothing more yet, or the stream ended or failed: the next read says so.
                        _ => break,
                    }
                }
                stale.extend(touched.into_iter().filter(|site| codes.contains(site)));
            }
            // The stream ended (a coordinator restarting): read again after a moment.
            Ok(Ok(None)) => {
                tokio::time::sleep(Duration::from_millis(300).min(left)).await;
                stale = codes.to_vec();
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                if terminal {
                    println!();
                }
                return Err(Failure {
                    code: 1,
                    message: format!(
                        "timed out with {} role(s) not yet in their declared state:\n{}",
                        total - done,
                        report(&sites, |st| !matches!(st, Standing::Done))
                    ),
                });
            }
        }
    }
}

/// One line per role whose standing matches, with why.
fn report(sites: &BTreeMap<String, v1::SiteStatus>, pick: impl Fn(&Standing) -> bool) -> String {
    let mut lines = Vec::new();
    for (code, s) in sites {
        for r in &s.roles {
            let st = standing(s, r);
            if pick(&st) {
                let why = match st {
                    Standing::Failed(reason) => format!("failed: {reason}"),
                    Standing::Short(what) => what,
                    Standing::Done => continue,
                };
                lines.push(format!("{code} {}: {why}", r.server));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(server: &str, state: v1::RoleState, desired: v1::Slot) -> v1::RoleStatus {
        v1::RoleStatus {
            server: server.into(),
            state: state as i32,
            desired_slot: desired as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_slot_kept_by_another_server_is_the_declared_state_as_the_system_keeps_it() {
        let mut site = v1::SiteStatus {
            intranet: Some(v1::ActiveSlot::default()),
            ..Default::default()
        };
        let declared = role("a", v1::RoleState::Ready, v1::Slot::Intranet);
        let standby = role("b", v1::RoleState::Active, v1::Slot::Unspecified);
        site.roles = vec![declared.clone(), standby.clone()];
        // After a failover to b, a (declared active) is a ready standby: done; unhealthy too.
        assert_eq!(standing(&site, &declared), Standing::Done);
        let down = role("a", v1::RoleState::Unhealthy, v1::Slot::Intranet);
        assert_eq!(standing(&site, &down), Standing::Done);
        assert_eq!(standing(&site, &standby), Standing::Done);
        // With nobody holding the slot, the declared role must become active.
        site.intranet = None;
        assert!(matches!(standing(&site, &declared), Standing::Short(_)));
        let installing = role("c", v1::RoleState::Installing, v1::Slot::Unspecified);
        assert_eq!(
            standing(&site, &installing),
            Standing::Short("installing".into())
        );
        let failed = v1::RoleStatus {
            reason: "WSUS 3.0 is not installed".into(),
            ..role("d", v1::RoleState::Failed, v1::Slot::Unspecified)
        };
        assert_eq!(
            standing(&site, &failed),
            Standing::Failed("WSUS 3.0 is not installed".into())
        );
        site.roles = vec![declared, installing, failed];
        assert_eq!(summary(&BTreeMap::from([("CEN".into(), site)])), (0, 1, 3));
    }
}
