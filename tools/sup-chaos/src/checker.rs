//! The independent checker: it trusts none of the services' own bookkeeping, only the stored
//! event history, the site-system agent's journal and what the trial driver was told.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sup_proto::v1::{self, event::Payload};

use crate::{Acked, Stack};

/// One figure that must hold.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub goal: String,
    pub met: bool,
}

fn zero(name: &str, value: usize) -> Check {
    Check {
        name: name.into(),
        value: value as f64,
        goal: "0".into(),
        met: value == 0,
    }
}

/// One entry of the agent's journal (`GET /journal`).
#[derive(Debug, Deserialize)]
struct Fenced {
    site: String,
    /// Each slot is fenced by its own epochs.
    #[serde(default)]
    slot: String,
    epoch: u64,
    accepted: bool,
}

/// One commit of the emulated SMS Provider's journal (`GET /provider/journal`).
#[derive(Debug, Deserialize)]
struct Commit {
    site: String,
    /// The slot epoch the commit names, when it names the active SUP.
    epoch: Option<u64>,
    accepted: bool,
}

/// Commits the SMS Provider accepted naming an epoch below one an earlier accepted commit of the
/// site named: a site control file pointed back at a server a newer epoch replaced.
fn stale_commits(journal: &[Commit]) -> usize {
    let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
    let mut stale = 0;
    for c in journal.iter().filter(|c| c.accepted) {
        let Some(epoch) = c.epoch else { continue };
        let h = highest.entry(c.site.as_str()).or_insert(0);
        if epoch < *h {
            stale += 1;
        }
        *h = (*h).max(epoch);
    }
    stale
}

/// Every event in stream order (tried for a minute: after a node loss the stream may be
/// between leaders for a while).
async fn history(stack: &Stack) -> anyhow::Result<Vec<(u64, v1::Event)>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match read_history(stack).await {
            Ok(h) => return Ok(h),
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("[checker] reading the history: {e:#}; again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn read_history(stack: &Stack) -> anyhow::Result<Vec<(u64, v1::Event)>> {
    let (stored, mut watch) = stack
        .bus
        .watch_events(sup_bus::subjects::EVENTS_ALL.into(), Some(1))
        .await?;
    let mut out = Vec::new();
    if stored == 0 {
        return Ok(out);
    }
    while let Some(item) = tokio::time::timeout(Duration::from_secs(30), watch.next()).await? {
        let w = item?;
        out.push((w.sequence, w.event));
        if w.pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Counts, in stream order, the events after which a site has two active roles.
fn double_active(events: &[(u64, v1::Event)]) -> usize {
    let mut active: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut doubles = 0;
    for (seq, e) in events {
        if let Some(Payload::RoleStateChanged(r)) = &e.payload {
            let set = active.entry(e.site.as_str()).or_default();
            if r.to == v1::RoleState::Active as i32 {
                set.insert(e.server.as_str());
            } else {
                set.remove(e.server.as_str());
            }
            if set.len() > 1 {
                doubles += 1;
                if doubles <= 5 {
                    eprintln!(
                        "[checker] #{seq} {}: active {set:?} after {} {} -> {} (epoch {}, {:?})",
                        e.site, e.server, r.from, r.to, e.epoch, r.reason
                    );
                }
            }
        }
    }
    doubles
}

/// The role records' KV revision an event was derived from (the announcer names its ids so).
fn role_revision(e: &v1::Event) -> Option<u64> {
    e.id.rsplit(':').next()?.parse().ok()
}

/// Role events that do not continue their role's previous one: a `from` other than the last
/// `to` (a change of the record never announced), or a revision not above the last one announced
/// (announced out of the records' order). Printed for a post-mortem; returns the two counts.
fn role_chain_breaks(events: &[(u64, v1::Event)]) -> (usize, usize) {
    let mut last: BTreeMap<(&str, &str), (u64, i32, u64)> = BTreeMap::new();
    let mut last_revision: Option<(u64, u64)> = None;
    let (mut breaks, mut inversions) = (0, 0);
    for (seq, e) in events {
        let Some(Payload::RoleStateChanged(r)) = &e.payload else {
            continue;
        };
        let Some(revision) = role_revision(e) else {
            continue;
        };
        if let Some((s, rev)) = last_revision
            && revision <= rev
        {
            inversions += 1;
            if inversions <= 5 {
                eprintln!(
                    "[checker] #{seq} {} {} role revision {revision} after revision {rev} (#{s})",
                    e.site, e.server
                );
            }
        }
        last_revision = Some((*seq, revision.max(last_revision.map_or(0, |(_, r)| r))));
        let key = (e.site.as_str(), e.server.as_str());
        // A record created again after a removal starts from nothing.
        if let Some((s, to, rev)) = last.get(&key)
            && *to != r.from
            && r.from != v1::RoleState::Unspecified as i32
        {
            breaks += 1;
            if breaks <= 5 {
                eprintln!(
                    "[checker] #{seq} {} {}: {} -> {} at revision {revision}, but #{s} left it \
                     {} at revision {rev}",
                    e.site, e.server, r.from, r.to, to
                );
            }
        }
        last.insert(key, (*seq, r.to, revision));
    }
    (breaks, inversions)
}

/// `ActiveChanged` events whose epoch is not above the slot's previous one.
fn epoch_regressions(events: &[(u64, v1::Event)]) -> usize {
    let mut last: BTreeMap<(&str, i32), u64> = BTreeMap::new();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut regressions = 0;
    for (seq, e) in events {
        if let Some(Payload::ActiveChanged(a)) = &e.payload {
            let earlier = seen.insert(e.id.as_str(), *seq);
            let prev = last.entry((e.site.as_str(), a.slot)).or_insert(0);
            if e.epoch <= *prev {
                regressions += 1;
                if regressions <= 5 {
                    // A second copy of one event (the stream's de-duplication failed) and an
                    // event published late are different defects.
                    let copy =
                        earlier.map_or("first copy".to_string(), |s| format!("copy of #{s}"));
                    eprintln!(
                        "[checker] #{seq} {} ActiveChanged epoch {} after {} (id {}, target {}, \
                         cause {:?}, {copy})",
                        e.site, e.epoch, prev, e.id, a.target, a.cause
                    );
                }
            }
            *prev = (*prev).max(e.epoch);
        }
    }
    regressions
}

/// Acknowledged activations (site, epoch, target) with no `ActiveChanged` of their epoch and
/// target.
fn missing<'a>(
    events: &'a [(u64, v1::Event)],
    acked: &'a [Acked],
) -> BTreeSet<(&'a str, u64, &'a str)> {
    let announced: BTreeSet<(&str, u64, &str)> = events
        .iter()
        .filter_map(|(_, e)| match &e.payload {
            Some(Payload::ActiveChanged(a)) => Some((e.site.as_str(), e.epoch, a.target.as_str())),
            _ => None,
        })
        .collect();
    acked
        .iter()
        .map(|a| (a.site.as_str(), a.epoch, a.target.as_str()))
        .filter(|k| !announced.contains(k))
        .collect()
}

/// Milestones published more than once for the same line (file and offset).
fn duplicated_milestones(events: &[(u64, v1::Event)]) -> (usize, usize) {
    let mut seen: BTreeMap<(&str, &str, &str, u64), usize> = BTreeMap::new();
    for (_, e) in events {
        if let Some(Payload::Milestone(m)) = &e.payload {
            *seen
                .entry((
                    e.server.as_str(),
                    m.log.as_str(),
                    m.file_id.as_str(),
                    m.offset,
                ))
                .or_default() += 1;
        }
    }
    (seen.len(), seen.values().map(|n| n - 1).sum())
}

/// Commands the agent accepted under an epoch below one it had already accepted for the site's
/// slot.
fn stale_accepted(journal: &[Fenced]) -> usize {
    let mut highest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut stale = 0;
    for f in journal.iter().filter(|f| f.accepted) {
        let h = highest
            .entry((f.site.as_str(), f.slot.as_str()))
            .or_insert(0);
        if f.epoch < *h {
            stale += 1;
        }
        *h = (*h).max(f.epoch);
    }
    stale
}

pub async fn check(stack: &Stack, acked: &[Acked]) -> anyhow::Result<Vec<Check>> {
    let journal: Vec<Fenced> =
        serde_json::from_str(&stack.control(reqwest::Method::GET, "/journal").await?)?;
    let commits: Vec<Commit> = serde_json::from_str(
        &stack
            .control(reqwest::Method::GET, "/provider/journal")
            .await?,
    )?;
    // Events are derived from KV after the fact: the announcer may still be working through the
    // storms' last transitions. Read until every acknowledged one is there, or no new
    // transition is announced for 20 s (a minute at most).
    let changes = |events: &[(u64, v1::Event)]| {
        events
            .iter()
            .filter(|(_, e)| matches!(e.payload, Some(Payload::ActiveChanged(_))))
            .count()
    };
    let mut events = history(stack).await?;
    let (mut announced_so_far, begun) = (changes(&events), std::time::Instant::now());
    let mut quiet = begun;
    while !missing(&events, acked).is_empty()
        && quiet.elapsed() < Duration::from_secs(20)
        && begun.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        events = history(stack).await?;
        if changes(&events) != announced_so_far {
            announced_so_far = changes(&events);
            quiet = std::time::Instant::now();
        }
    }
    let missing = missing(&events, acked);
    for (site, epoch, target) in missing.iter().take(5) {
        eprintln!("[checker] acknowledged {site} -> {target} at epoch {epoch} never announced");
        let near: Vec<String> = events
            .iter()
            .filter_map(|(seq, e)| match &e.payload {
                Some(Payload::ActiveChanged(a))
                    if e.site == *site && e.epoch + 5 >= *epoch && e.epoch <= epoch + 5 =>
                {
                    Some(format!("#{seq} {}@{}", a.target, e.epoch))
                }
                _ => None,
            })
            .collect();
        eprintln!("[checker]   announced near it: {near:?}");
    }
    let (breaks, inversions) = role_chain_breaks(&events);
    let (milestones, duplicates) = duplicated_milestones(&events);
    let accepted = journal.iter().filter(|f| f.accepted).count();
    Ok(vec![
        zero(
            "double active observations (event history)",
            double_active(&events),
        ),
        zero(
            "role changes missing or out of order (event history)",
            breaks + inversions,
        ),
        zero(
            "ActiveChanged epochs not increasing",
            epoch_regressions(&events),
        ),
        zero(
            &format!("acknowledged transitions missing (of {})", acked.len()),
            missing.len(),
        ),
        zero(
            &format!("duplicated milestones (of {milestones})"),
            duplicates,
        ),
        zero(
            &format!("stale-epoch commands accepted by the agent (of {accepted})"),
            stale_accepted(&journal),
        ),
        zero(
            &format!(
                "stale-epoch commits by the SMS Provider (of {} naming an epoch)",
                commits
                    .iter()
                    .filter(|c| c.accepted && c.epoch.is_some())
                    .count()
            ),
            stale_commits(&commits),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(site: &str, server: &str, epoch: u64, payload: Payload) -> (u64, v1::Event) {
        (
            0,
            v1::Event {
                site: site.into(),
                server: server.into(),
                epoch,
                payload: Some(payload),
                ..Default::default()
            },
        )
    }

    fn role(to: v1::RoleState) -> Payload {
        Payload::RoleStateChanged(v1::RoleStateChanged {
            to: to as i32,
            ..Default::default()
        })
    }

    #[test]
    fn two_active_roles_of_one_site_are_counted() {
        let events = vec![
            event("A", "x1", 0, role(v1::RoleState::Active)),
            event("B", "y1", 0, role(v1::RoleState::Active)),
            event("A", "x2", 0, role(v1::RoleState::Active)),
            event("A", "x1", 0, role(v1::RoleState::Ready)),
        ];
        assert_eq!(double_active(&events), 1);
    }

    #[test]
    fn a_role_change_missing_from_the_history_or_out_of_order_is_counted() {
        use v1::RoleState::{Active, Ready, Unspecified};
        let change = |server: &str, revision: u64, from: v1::RoleState, to: v1::RoleState| {
            let mut e = event(
                "A",
                server,
                0,
                Payload::RoleStateChanged(v1::RoleStateChanged {
                    from: from as i32,
                    to: to as i32,
                    ..Default::default()
                }),
            );
            e.1.id = format!("role:A:{server}:{revision}");
            e
        };
        let whole = vec![
            change("x1", 1, Unspecified, Ready),
            change("x2", 2, Unspecified, Ready),
            change("x1", 3, Ready, Active),
            change("x1", 4, Active, Ready),
            change("x2", 6, Ready, Active),
        ];
        assert_eq!(role_chain_breaks(&whole), (0, 0));
        // x1's deactivation (revision 4) never announced: x1's next change does not follow on.
        let mut gap = whole.clone();
        gap.remove(3);
        gap.push(change("x1", 7, Ready, Active));
        assert_eq!(role_chain_breaks(&gap), (1, 0));
        // x2's activation announced before x1's deactivation.
        let mut swapped = whole.clone();
        swapped.swap(3, 4);
        assert_eq!(role_chain_breaks(&swapped), (0, 1));
        assert_eq!(double_active(&swapped), 1);
    }

    #[test]
    fn an_acknowledged_epoch_must_be_announced_with_its_target() {
        let changed = |epoch, target: &str| {
            event(
                "A",
                "",
                epoch,
                Payload::ActiveChanged(v1::ActiveChanged {
                    target: target.into(),
                    ..Default::default()
                }),
            )
        };
        let events = vec![changed(3, "x1"), changed(5, "x2"), changed(4, "x3")];
        let acked = |epoch, target: &str| Acked {
            site: "A".into(),
            target: target.into(),
            epoch,
        };
        assert_eq!(
            missing(&events, &[acked(3, "x1"), acked(5, "x1"), acked(6, "x2")]).len(),
            2
        );
        assert_eq!(epoch_regressions(&events), 1);
    }

    #[test]
    fn a_lower_epoch_accepted_after_a_higher_one_is_stale() {
        let f = |site: &str, epoch, accepted| Fenced {
            site: site.into(),
            slot: "intranet".into(),
            epoch,
            accepted,
        };
        let journal = vec![
            f("A", 5, true),
            f("A", 4, false),
            f("B", 1, true),
            f("A", 3, true),
            f("A", 5, true),
            // The other slot's epochs are its own.
            Fenced {
                slot: "internet".into(),
                ..f("A", 2, true)
            },
        ];
        assert_eq!(stale_accepted(&journal), 1);
        let commit = |site: &str, epoch: Option<u64>, accepted: bool| Commit {
            site: site.into(),
            epoch,
            accepted,
        };
        let commits = vec![
            commit("CHX", Some(3), true),
            commit("CHX", None, true),
            commit("CHX", Some(5), true),
            commit("CHX", Some(4), false),
            commit("FOV", Some(1), true),
            commit("CHX", Some(4), true),
        ];
        assert_eq!(
            stale_commits(&commits),
            1,
            "only the accepted epoch 4 after 5"
        );
    }
}
