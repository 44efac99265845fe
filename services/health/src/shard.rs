//! Sharing the probes between replicas: each replica beats in `sup_members` under
//! `health.<replica>`, follows the others' beats, and probes the servers that rendezvous hashing
//! gives it among the replicas alive. Every replica computes the same owner from the same
//! members, so each server is probed by one replica; when a replica stops beating (three beats
//! missed) or leaves (its key deleted) or joins, the owners move at the next beat, and only the
//! servers of the replica that left or joined move.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use siphasher::sip::SipHasher13;
use sup_bus::Bus;
use tokio::sync::watch;

/// The key prefix of this service's heartbeats in `sup_members`.
const PREFIX: &str = "health.";

/// Beats a replica may miss before the others take it as gone.
const MISSED_BEATS: u32 = 3;

/// The replica among `members` that owns `key`: the one with the highest score for it
/// (rendezvous hashing). SipHash-1-3 with zero keys is a fixed function of the bytes, so
/// replicas of any build agree; `None` only when there is no member.
pub fn owner<'a>(members: impl IntoIterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    members
        .into_iter()
        .max_by_key(|member| (score(member, key), *member))
}

fn score(member: &str, key: &str) -> u64 {
    let mut h = SipHasher13::new();
    h.write(member.as_bytes());
    // A separator, so ("ab", "c") and ("a", "bc") score differently.
    h.write(&[0xff]);
    h.write(key.as_bytes());
    h.finish()
}

/// A name for this replica that no other replica has: the host's name (a pod's name in
/// Kubernetes) and a random suffix, in the characters a KV key allows.
pub fn replica_name(configured: &str) -> String {
    let base = if configured.is_empty() {
        std::env::var("HOSTNAME").unwrap_or_else(|_| "sup-health".into())
    } else {
        configured.to_string()
    };
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if configured.is_empty() {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{clean}-{}", &suffix[..8])
    } else {
        clean
    }
}

/// The replicas this one knows to be alive, from the beats it has seen.
pub struct Membership {
    pub me: String,
    ttl: Duration,
    /// Replica → when its last beat was seen here. Local time only, so clocks need not agree.
    beats: Mutex<HashMap<String, Instant>>,
    live: watch::Sender<BTreeSet<String>>,
    /// Set once this replica's own beat came back through the watch: the watch delivers in
    /// order, so every beat stored before it has been seen, and the share is everyone's.
    caught_up: watch::Sender<bool>,
}

impl Membership {
    pub fn new(me: String, heartbeat: Duration) -> Self {
        let (live, _) = watch::channel(BTreeSet::from([me.clone()]));
        Self {
            me,
            ttl: heartbeat * MISSED_BEATS,
            beats: Mutex::new(HashMap::new()),
            live,
            caught_up: watch::Sender::new(false),
        }
    }

    /// Waits until this replica has seen the others' beats (see `caught_up`), or `limit`, so
    /// its first round does not probe every server while it believes itself alone.
    pub async fn caught_up(&self, limit: Duration) {
        let mut told = self.caught_up.subscribe();
        if tokio::time::timeout(limit, told.wait_for(|c| *c))
            .await
            .is_err()
        {
            tracing::warn!(
                "the other health replicas' beats were not seen in time; probing with what is known"
            );
        }
    }

    /// The replicas alive now, this one always among them.
    pub fn live(&self) -> BTreeSet<String> {
        self.live.borrow().clone()
    }

    /// Told each time the replicas alive change.
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<String>> {
        self.live.subscribe()
    }

    /// Whether this replica owns `key` among the replicas alive now.
    pub fn owns(live: &BTreeSet<String>, me: &str, key: &str) -> bool {
        owner(live.iter().map(String::as_str), key) == Some(me)
    }

    /// A beat (or a departure) of `replica` seen at `at`.
    pub fn observe(&self, replica: &str, alive: bool, at: Instant) {
        if alive && replica == self.me {
            self.caught_up.send_replace(true);
        }
        let mut beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
        if alive {
            beats.insert(replica.to_string(), at);
        } else {
            beats.remove(replica);
        }
        drop(beats);
        self.refresh(at);
    }

    /// Drops the replicas whose beats stopped, and tells the subscribers when the set changed.
    pub fn refresh(&self, now: Instant) {
        let live: BTreeSet<String> = {
            let beats = self.beats.lock().unwrap_or_else(|p| p.into_inner());
            beats
                .iter()
                .filter(|(_, seen)| now.saturating_duration_since(**seen) < self.ttl)
                .map(|(r, _)| r.clone())
                .chain([self.me.clone()])
                .collect()
        };
        self.live.send_if_modified(|current| {
            let changed = *current != live;
            if changed {
                tracing::info!(replicas = ?live, "health replicas changed; servers are shared anew");
                *current = live;
            }
            changed
        });
    }

    /// Beats every `heartbeat` until `stop`, then deletes the beat so the others take over at
    /// once rather than after three missed beats.
    pub async fn beat(&self, bus: &Bus, heartbeat: Duration, mut stop: watch::Receiver<bool>) {
        let key = format!("{PREFIX}{}", self.me);
        let mut ticks = tokio::time::interval(heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Err(e) = bus.members().put(&key, bytes::Bytes::new()).await {
                tracing::warn!(error = %e, "heartbeat");
            }
            self.refresh(Instant::now());
        }
        if let Err(e) = bus.members().delete(&key).await {
            tracing::warn!(error = %e, "removing the heartbeat");
        }
    }

    /// Follows every replica's beats until `stop`, watching again after a lost watch.
    pub async fn follow(&self, bus: &Bus, mut stop: watch::Receiver<bool>) {
        loop {
            let mut changes = match bus.members().watch_latest().await {
                Ok(c) => Box::pin(c),
                Err(e) => {
                    tracing::warn!(error = %e, "following the health replicas; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    c = changes.next() => c,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match next {
                    Some(Ok(change)) => {
                        if let Some(replica) = change.key.strip_prefix(PREFIX) {
                            self.observe(replica, !change.deleted, Instant::now());
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "following the health replicas");
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_key_has_one_owner_and_the_servers_are_shared() {
        let live = set(&["a", "b", "c"]);
        let mut counts = HashMap::new();
        for i in 0..3000 {
            let key = format!("SITE{}.sup{i}.corp.example.com", i % 50);
            let owners: Vec<_> = ["a", "b", "c"]
                .iter()
                .filter(|m| Membership::owns(&live, m, &key))
                .collect();
            assert_eq!(owners.len(), 1, "{key}: {owners:?}");
            *counts.entry(*owners[0]).or_insert(0) += 1;
        }
        for m in ["a", "b", "c"] {
            let n = counts.get(m).copied().unwrap_or(0);
            assert!((800..1200).contains(&n), "{m} owns {n} of 3000: {counts:?}");
        }
    }

    #[test]
    fn a_replica_alone_owns_everything_and_none_owns_nothing() {
        assert_eq!(owner(["x"], "k"), Some("x"));
        assert_eq!(owner(std::iter::empty(), "k"), None);
    }

    #[test]
    fn the_score_is_a_fixed_function_of_the_bytes() {
        // Replicas of different builds must agree: SipHash-1-3 with zero keys.
        let mut h = SipHasher13::new_with_keys(0, 0);
        h.write(b"a\xffk");
        assert_eq!(score("a", "k"), h.finish());
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn beats_keep_a_replica_and_silence_drops_it() {
        let m = Membership::new("me".into(), Duration::from_secs(1));
        let mut told = m.subscribe();
        let t0 = Instant::now();
        m.observe("other", true, t0);
        assert_eq!(m.live(), set(&["me", "other"]));
        assert!(told.has_changed().unwrap_or(false));
        told.mark_unchanged();
        m.refresh(t0 + Duration::from_millis(2900));
        assert_eq!(m.live(), set(&["me", "other"]));
        assert!(!told.has_changed().unwrap_or(true), "no change, no word");
        m.refresh(t0 + Duration::from_secs(3));
        assert_eq!(m.live(), set(&["me"]), "three beats missed");
        m.observe("other", true, t0 + Duration::from_secs(4));
        m.observe("other", false, t0 + Duration::from_secs(4));
        assert_eq!(m.live(), set(&["me"]), "a deleted beat leaves at once");
    }

    #[test]
    fn a_replica_has_caught_up_once_its_own_beat_comes_back() {
        let m = Membership::new("me".into(), Duration::from_secs(1));
        m.observe("other", true, Instant::now());
        assert!(!*m.caught_up.borrow());
        m.observe("me", true, Instant::now());
        assert!(*m.caught_up.borrow());
    }

    #[test]
    fn replica_names_are_keys_and_unique_unless_configured() {
        let a = replica_name("");
        let b = replica_name("");
        assert_ne!(a, b);
        assert_eq!(replica_name("pod.7 x"), "pod-7-x");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    proptest! {
        /// Only the servers of a replica that leaves move, and only to the replicas left; the
        /// same holds the other way round for one that joins.
        #[test]
        fn a_departure_moves_only_the_departed_replicas_servers(
            members in proptest::collection::btree_set("[a-z]{1,6}", 2..6),
            keys in proptest::collection::vec("[A-Z0-9]{3}\\.[a-z0-9.]{1,20}", 1..60),
            gone in any::<prop::sample::Index>(),
        ) {
            let all: Vec<&str> = members.iter().map(String::as_str).collect();
            let departed = all[gone.index(all.len())];
            let left: Vec<&str> = all.iter().copied().filter(|m| *m != departed).collect();
            for key in &keys {
                let before = owner(all.iter().copied(), key);
                let after = owner(left.iter().copied(), key);
                if before != Some(departed) {
                    prop_assert_eq!(before, after, "{} moved though its owner stayed", key);
                }
                prop_assert!(after.is_some_and(|a| a != departed));
            }
        }
    }
}
