//! The one-active-SUP invariant: who may take a slot. The slot itself is a NATS KV key whose
//! revision is the epoch, and the coordinator decides only from a successful compare-and-set;
//! what is checked here is whether a target may take the slot at all.

use crate::lifecycle::RoleState;
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
