//! Gauges of the current state (roles by state, how long each role has been in its state, each
//! slot's holder and epoch), derived from the role and slot buckets by watching them from their
//! latest values: every replica shows the whole estate, whichever replica changed it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sup_bus::Change;
use sup_proto::convert;
use sup_proto::prost::Message as _;
use sup_proto::v1;
use tokio::sync::watch;

use crate::coordinator::Coordinator;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteState {
    site: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    site: String,
    server: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Ord, PartialOrd, EncodeLabelSet)]
struct SlotLabels {
    site: String,
    slot: String,
}

#[derive(Clone, Default)]
pub struct Gauges {
    roles: Family<SiteState, Gauge>,
    since: Family<RoleLabels, Gauge>,
    epoch: Family<SlotLabels, Gauge>,
    held: Family<SlotLabels, Gauge>,
}

impl Gauges {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "sup_roles",
            "SUP roles per site by lifecycle state",
            self.roles.clone(),
        );
        r.register(
            "sup_role_state_since_timestamp_seconds",
            "When each role entered its current state (Unix time), labelled with that state",
            self.since.clone(),
        );
        r.register(
            "sup_active_epoch",
            "The epoch of each slot's current holder (0 when the slot has none)",
            self.epoch.clone(),
        );
        r.register(
            "sup_slot_active",
            "1 when a slot that a role is declared for, or that was ever held, has an active SUP",
            self.held.clone(),
        );
    }
}

/// A role as the gauges need it.
struct RoleSeen {
    site: String,
    server: String,
    state: String,
    desired: String,
}

/// What the watch has seen, by KV key, to recompute the per-site counts and remove series that
/// ended (keys hold escaped names; the labels come from the records).
#[derive(Default)]
struct Seen {
    roles: BTreeMap<String, RoleSeen>,
    slots: BTreeMap<String, (SlotLabels, String, u64)>,
}

fn state_name(state: i32) -> String {
    convert::role_state_from_proto(state)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl Seen {
    fn role(&mut self, g: &Gauges, e: &Change) {
        if let Some(old) = self.roles.remove(&e.key) {
            g.since.remove(&RoleLabels {
                site: old.site,
                server: old.server,
                state: old.state,
            });
        }
        if !e.deleted
            && let Ok(r) = v1::RoleStatus::decode(e.value.clone())
        {
            let state = state_name(r.state);
            g.since
                .get_or_create(&RoleLabels {
                    site: r.site.clone(),
                    server: r.server.clone(),
                    state: state.clone(),
                })
                .set(r.updated.map(|t| t.seconds).unwrap_or(0));
            let desired = convert::slot_from_proto(r.desired_slot)
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            self.roles.insert(
                e.key.clone(),
                RoleSeen {
                    site: r.site,
                    server: r.server,
                    state,
                    desired,
                },
            );
        }
    }

    fn slot(&mut self, e: &Change) {
        match (e.deleted, v1::ActiveSlot::decode(e.value.clone())) {
            (false, Ok(a)) => {
                // The bucket holds only slot records; anything else does not name a slot.
                let Some(slot) = convert::slot_from_proto(a.slot) else {
                    return;
                };
                let labels = SlotLabels {
                    site: a.site.clone(),
                    slot: slot.as_str().to_string(),
                };
                self.slots
                    .insert(e.key.clone(), (labels, a.target, e.revision));
            }
            _ => {
                if let Some(held) = self.slots.get_mut(&e.key) {
                    held.1.clear();
                    held.2 = 0;
                }
            }
        }
    }

    /// Recomputes the per-site counts and the slot gauges from what has been seen.
    fn publish(&self, g: &Gauges) {
        g.roles.clear();
        let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut slots: BTreeMap<SlotLabels, (bool, u64)> = BTreeMap::new();
        for r in self.roles.values() {
            *counts.entry((r.site.clone(), r.state.clone())).or_default() += 1;
            if !r.desired.is_empty() && r.state != "removed" {
                slots.insert(
                    SlotLabels {
                        site: r.site.clone(),
                        slot: r.desired.clone(),
                    },
                    (false, 0),
                );
            }
        }
        for (labels, target, epoch) in self.slots.values() {
            slots.insert(labels.clone(), (!target.is_empty(), *epoch));
        }
        for ((site, state), n) in counts {
            g.roles.get_or_create(&SiteState { site, state }).set(n);
        }
        for (labels, (held, epoch)) in slots {
            g.held.get_or_create(&labels).set(i64::from(held));
            g.epoch.get_or_create(&labels).set(if held {
                i64::try_from(epoch).unwrap_or(0)
            } else {
                0
            });
        }
    }
}

/// How often the per-site counts and slot gauges are recomputed while changes arrive.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Keeps the gauges current (within [`PUBLISH_EVERY`]) until `stop`.
pub async fn run(c: Coordinator, g: Gauges, mut stop: watch::Receiver<bool>) {
    loop {
        let watches = async {
            let roles = c.store.bus.roles().watch_latest().await?;
            let slots = c.store.bus.active().watch_latest().await?;
            Ok::<_, sup_bus::BusError>((roles, slots))
        };
        let (mut roles, mut slots) = match watches.await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "watching state for the gauges");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let mut seen = Seen::default();
        // Recounting walks every role, so a burst of changes (an apply of thousands of roles) is
        // recounted once per tick rather than once per change.
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        loop {
            tokio::select! {
                e = roles.next() => match e {
                    Some(Ok(e)) => {
                        seen.role(&g, &e);
                        dirty = true;
                    }
                    _ => break,
                },
                e = slots.next() => match e {
                    Some(Ok(e)) => {
                        seen.slot(&e);
                        dirty = true;
                    }
                    _ => break,
                },
                _ = tick.tick(), if dirty => {
                    seen.publish(&g);
                    dirty = false;
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
