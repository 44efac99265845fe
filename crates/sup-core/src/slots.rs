//! The one-active-SUP invariant: who may take a slot, and a pure model of a site's roles and
//! slots that the coordinator's behaviour is checked against.
//!
//! In the running system the slot is a NATS KV key and its revision is the epoch; the coordinator
//! decides only from a successful compare-and-set. `SiteState` is the same rules without IO, so
//! property tests can drive it through any sequence of commands.

use std::collections::BTreeMap;

use crate::lifecycle::{self, RoleEvent, RoleState};
use crate::model::{Site, SiteMode, SlotKind, SlotTarget};

/// Why a target may not take a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error("{target} is neither a software update point nor an NLB cluster of site {site}")]
    UnknownTarget { site: String, target: String },
    #[error(
        "{server} is {state}, not ready: a role becomes active only once installed and verified"
    )]
    NotReady { server: String, state: RoleState },
    #[error("site {site} is in mixed mode: an active Internet-based SUP needs native mode")]
    InternetNeedsNative { site: String },
    #[error("{server} has no Internet FQDN, so it cannot serve Internet-based clients")]
    NoInternetFqdn { server: String },
    #[error("{server} already holds the {other} slot; one server cannot hold both")]
    HoldsOtherSlot { server: String, other: &'static str },
}

/// Checks that `target` may take `slot` in `site`, given each role's state and what holds the
/// other slot. Reading this is not deciding: the caller still wins or loses the compare-and-set.
pub fn check_activation(
    site: &Site,
    slot: SlotKind,
    target: &str,
    role_state: impl Fn(&str) -> Option<RoleState>,
    other_slot: Option<&SlotTarget>,
) -> Result<SlotTarget, ActivationError> {
    let t = site
        .target(target)
        .ok_or_else(|| ActivationError::UnknownTarget {
            site: site.code.clone(),
            target: target.to_string(),
        })?;
    if slot == SlotKind::Internet {
        if site.mode != SiteMode::Native {
            return Err(ActivationError::InternetNeedsNative {
                site: site.code.clone(),
            });
        }
        for m in &t.members {
            if site
                .site_system(m)
                .and_then(|s| s.internet_fqdn.as_ref())
                .is_none()
            {
                return Err(ActivationError::NoInternetFqdn { server: m.clone() });
            }
        }
    }
    if let Some(other) = other_slot {
        let other_name = match slot {
            SlotKind::Intranet => SlotKind::Internet.as_str(),
            SlotKind::Internet => SlotKind::Intranet.as_str(),
        };
        if let Some(m) = t.members.iter().find(|m| other.members.contains(m)) {
            return Err(ActivationError::HoldsOtherSlot {
                server: m.clone(),
                other: other_name,
            });
        }
    }
    for m in &t.members {
        let state = role_state(m).unwrap_or(RoleState::Declared);
        if !state.can_activate() {
            return Err(ActivationError::NotReady {
                server: m.clone(),
                state,
            });
        }
    }
    Ok(t)
}

/// A slot's holder and the epoch it was taken at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub target: SlotTarget,
    pub epoch: u64,
}

/// A command against one site's roles and slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteCommand {
    Role { server: String, event: RoleEvent },
    Activate { slot: SlotKind, target: String },
    Clear { slot: SlotKind },
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed,
    Unchanged,
    Rejected(String),
}

/// The pure model of one site: role states, slot holders with epochs, and the op ids already
/// applied (so a retried command acts once).
#[derive(Debug, Clone)]
pub struct SiteState {
    pub site: Site,
    pub roles: BTreeMap<String, RoleState>,
    pub slots: BTreeMap<SlotKind, Holder>,
    /// The last epoch handed out; epochs only grow, like a KV revision.
    pub last_epoch: u64,
    done: BTreeMap<String, Outcome>,
}

impl SiteState {
    pub fn new(site: Site) -> Self {
        let roles = site
            .software_update_points
            .iter()
            .map(|s| (s.server.clone(), RoleState::Declared))
            .collect();
        Self {
            site,
            roles,
            slots: BTreeMap::new(),
            last_epoch: 0,
            done: BTreeMap::new(),
        }
    }

    /// Applies `cmd` once per `op_id`: a repeated op id returns the first outcome and changes
    /// nothing.
    pub fn apply(&mut self, op_id: &str, cmd: &SiteCommand) -> Outcome {
        if let Some(o) = self.done.get(op_id) {
            return o.clone();
        }
        let outcome = self.apply_once(cmd);
        self.done.insert(op_id.to_string(), outcome.clone());
        outcome
    }

    fn holds_slot(&self, server: &str) -> Option<SlotKind> {
        self.slots
            .iter()
            .find(|(_, h)| h.target.members.iter().any(|m| m == server))
            .map(|(k, _)| *k)
    }

    fn role_event(&mut self, server: &str, event: RoleEvent) -> Result<bool, String> {
        let Some(state) = self.roles.get(server).copied() else {
            return Err(format!("{server} has no SUP role in this site"));
        };
        match lifecycle::transition(state, event).map_err(|e| e.to_string())? {
            lifecycle::Transition::Moved(next) => {
                self.roles.insert(server.to_string(), next);
                Ok(true)
            }
            lifecycle::Transition::Unchanged => Ok(false),
        }
    }

    fn apply_once(&mut self, cmd: &SiteCommand) -> Outcome {
        match cmd {
            SiteCommand::Role { server, event } => {
                let mut event = *event;
                // Activation is only ever a consequence of taking a slot.
                if matches!(event, RoleEvent::Activated | RoleEvent::Deactivated) {
                    return Outcome::Rejected("activation goes through the slot".into());
                }
                if let RoleEvent::HealthRestored { .. } = event {
                    event = RoleEvent::HealthRestored {
                        holds_slot: self.holds_slot(server).is_some(),
                    };
                }
                // Removing the holder of a slot clears the slot first, so no slot names a
                // removed role.
                let mut changed = false;
                if event == RoleEvent::RemoveRequested
                    && let Some(slot) = self.holds_slot(server)
                {
                    changed |= self.clear(slot);
                }
                match self.role_event(server, event) {
                    Ok(c) if c || changed => Outcome::Changed,
                    Ok(_) => Outcome::Unchanged,
                    Err(e) => Outcome::Rejected(e),
                }
            }
            SiteCommand::Activate { slot, target } => {
                let other = self
                    .slots
                    .iter()
                    .find(|(k, _)| *k != slot)
                    .map(|(_, h)| h.target.clone());
                let roles = self.roles.clone();
                let t = match check_activation(
                    &self.site,
                    *slot,
                    target,
                    |s| roles.get(s).copied(),
                    other.as_ref(),
                ) {
                    Ok(t) => t,
                    Err(e) => return Outcome::Rejected(e.to_string()),
                };
                if self.slots.get(slot).is_some_and(|h| h.target == t) {
                    return Outcome::Unchanged;
                }
                self.clear(*slot);
                self.last_epoch += 1;
                for m in &t.members {
                    // Checked above: every member is Ready or Active.
                    let _ = self.role_event(m, RoleEvent::Activated);
                }
                self.slots.insert(
                    *slot,
                    Holder {
                        target: t,
                        epoch: self.last_epoch,
                    },
                );
                Outcome::Changed
            }
            SiteCommand::Clear { slot } => {
                if self.clear(*slot) {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                }
            }
        }
    }

    fn clear(&mut self, slot: SlotKind) -> bool {
        let Some(h) = self.slots.remove(&slot) else {
            return false;
        };
        self.last_epoch += 1;
        for m in &h.target.members {
            let _ = self.role_event(m, RoleEvent::Deactivated);
        }
        true
    }

    /// The invariant: no server holds two slots; every slot member's role is active (or
    /// unhealthy, awaiting failover); every active role holds a slot; an internet slot exists only
    /// in native mode.
    pub fn check_invariant(&self) -> Result<(), String> {
        let mut holders: BTreeMap<&str, SlotKind> = BTreeMap::new();
        for (slot, h) in &self.slots {
            for m in &h.target.members {
                if let Some(prev) = holders.insert(m, *slot) {
                    return Err(format!("{m} holds both {prev:?} and {slot:?}"));
                }
                match self.roles.get(m) {
                    Some(RoleState::Active | RoleState::Unhealthy) => {}
                    other => return Err(format!("{m} holds {slot:?} but is {other:?}")),
                }
            }
            if *slot == SlotKind::Internet && self.site.mode != SiteMode::Native {
                return Err("internet slot held in mixed mode".into());
            }
        }
        for (server, state) in &self.roles {
            if *state == RoleState::Active && !holders.contains_key(server.as_str()) {
                return Err(format!("{server} is active without a slot"));
            }
        }
        Ok(())
    }
}
