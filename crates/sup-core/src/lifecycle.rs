//! The SUP role lifecycle as a pure transition function of (state, event).
//!
//! `Declared → Provisioning → Installing → Installed → Verifying → Ready → Active`, with
//! `Unhealthy`, `Failed` and `Removing → Removed`. Events arrive from several services over a bus
//! that may redeliver or reorder them, so the function is total: a repeated or stale event leaves
//! the state unchanged instead of failing, and only a contradiction is refused.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleState {
    Declared,
    Provisioning,
    Installing,
    Installed,
    Verifying,
    Ready,
    Active,
    Unhealthy,
    Failed,
    Removing,
    Removed,
}

pub const ALL_STATES: [RoleState; 11] = [
    RoleState::Declared,
    RoleState::Provisioning,
    RoleState::Installing,
    RoleState::Installed,
    RoleState::Verifying,
    RoleState::Ready,
    RoleState::Active,
    RoleState::Unhealthy,
    RoleState::Failed,
    RoleState::Removing,
    RoleState::Removed,
];

impl RoleState {
    /// The lower-case name used in status output and events.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleState::Declared => "declared",
            RoleState::Provisioning => "provisioning",
            RoleState::Installing => "installing",
            RoleState::Installed => "installed",
            RoleState::Verifying => "verifying",
            RoleState::Ready => "ready",
            RoleState::Active => "active",
            RoleState::Unhealthy => "unhealthy",
            RoleState::Failed => "failed",
            RoleState::Removing => "removing",
            RoleState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s)
    }

    /// Installed on the server (the role's components are there).
    pub fn is_installed(self) -> bool {
        matches!(
            self,
            RoleState::Installed
                | RoleState::Verifying
                | RoleState::Ready
                | RoleState::Active
                | RoleState::Unhealthy
        )
    }

    /// On the way from declared to ready: the role holds no slot, cannot take one, and needs no
    /// command until it is ready, fails or is declared again.
    fn on_the_way_to_ready(self) -> bool {
        matches!(
            self,
            RoleState::Declared
                | RoleState::Provisioning
                | RoleState::Installing
                | RoleState::Installed
                | RoleState::Verifying
        )
    }

    /// May take an active slot now.
    pub fn can_activate(self) -> bool {
        matches!(self, RoleState::Ready | RoleState::Active)
    }
}

impl fmt::Display for RoleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleEvent {
    /// The role was (re)declared in a spec.
    Declared,
    /// The provisioner accepted the install command.
    ProvisionStarted,
    /// Setup started on the site system (`SMSWSUS Setup Started`).
    InstallStarted,
    /// `Installation was successful` in SUPSetup.log.
    InstallSucceeded,
    /// Setup ended without success, a prerequisite failed, or the install timed out.
    InstallFailed,
    /// The WSUS connection lines are awaited.
    VerifyStarted,
    /// Both WSUS health lines seen (components healthy and database connection ok).
    Verified,
    /// The role took an active slot (from a successful compare-and-set).
    Activated,
    /// The role lost its slot.
    Deactivated,
    /// The health service found the server unhealthy.
    HealthLost,
    /// Healthy again; `holds_slot` says whether the slot is still this role's.
    HealthRestored { holds_slot: bool },
    /// The role was removed from the spec or by an operator.
    RemoveRequested,
    /// The agent removed the role.
    RemoveCompleted,
    /// An operator or a backoff timer retries a failed role.
    Retry,
}

/// The outcome of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state changes.
    Moved(RoleState),
    /// Nothing to do: a duplicate, a stale event, or one that does not apply here.
    Unchanged,
}

/// An event that contradicts the state (e.g. activating a role that is not ready).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not allowed while the role is {state}")]
pub struct InvalidTransition {
    pub state: RoleState,
    pub event: RoleEvent,
}

/// The transition function.
pub fn transition(state: RoleState, event: RoleEvent) -> Result<Transition, InvalidTransition> {
    use RoleEvent as E;
    use RoleState as S;
    use Transition::{Moved, Unchanged};
    let invalid = Err(InvalidTransition { state, event });
    let next = match (state, event) {
        (S::Removing | S::Removed, E::Activated) => return invalid,
        // Removal wins from anywhere it makes sense; nothing was installed before provisioning.
        (S::Removed, E::RemoveRequested | E::RemoveCompleted) => return Ok(Unchanged),
        (S::Removing, E::RemoveRequested) => return Ok(Unchanged),
        (S::Removing, E::RemoveCompleted) => S::Removed,
        (S::Removing, _) => return Ok(Unchanged),
        (S::Declared, E::RemoveRequested) => S::Removed,
        (_, E::RemoveRequested) => S::Removing,
        (_, E::RemoveCompleted) => return Ok(Unchanged),
        (S::Removed, E::Declared) => S::Declared,
        (S::Removed, _) => return Ok(Unchanged),
        (_, E::Declared) => return Ok(Unchanged),

        (S::Declared | S::Failed, E::ProvisionStarted) => S::Provisioning,
        (S::Failed, E::Retry) => S::Provisioning,
        (_, E::Retry) => return Ok(Unchanged),
        (_, E::ProvisionStarted) => return Ok(Unchanged),

        (S::Declared | S::Provisioning | S::Failed, E::InstallStarted) => S::Installing,
        (_, E::InstallStarted) => return Ok(Unchanged),

        // The log is the truth: a success line counts even if it overtakes the progress events.
        (S::Declared | S::Provisioning | S::Installing | S::Failed, E::InstallSucceeded) => {
            S::Installed
        }
        (_, E::InstallSucceeded) => return Ok(Unchanged),

        (S::Declared | S::Provisioning | S::Installing, E::InstallFailed) => S::Failed,
        (_, E::InstallFailed) => return Ok(Unchanged),

        (S::Installed, E::VerifyStarted) => S::Verifying,
        (_, E::VerifyStarted) => return Ok(Unchanged),

        (S::Installed | S::Verifying, E::Verified) => S::Ready,
        (_, E::Verified) => return Ok(Unchanged),

        (S::Ready, E::Activated) => S::Active,
        (S::Active, E::Activated) => return Ok(Unchanged),
        (_, E::Activated) => return invalid,

        (S::Active, E::Deactivated) => S::Ready,
        (_, E::Deactivated) => return Ok(Unchanged),

        (S::Installed | S::Verifying | S::Ready | S::Active, E::HealthLost) => S::Unhealthy,
        (_, E::HealthLost) => return Ok(Unchanged),

        (S::Unhealthy, E::HealthRestored { holds_slot: true }) => S::Active,
        (S::Unhealthy, E::HealthRestored { holds_slot: false }) => S::Ready,
        (_, E::HealthRestored { .. }) => return Ok(Unchanged),
    };
    Ok(if next == state {
        Unchanged
    } else {
        Moved(next)
    })
}

/// Applies an event, keeping the state on `Unchanged`.
pub fn apply(state: RoleState, event: RoleEvent) -> Result<RoleState, InvalidTransition> {
    Ok(match transition(state, event)? {
        Transition::Moved(s) => s,
        Transition::Unchanged => state,
    })
}

/// What was seen of a role — in its logs, from its provisioner or from the health service — as
/// the lifecycle hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// SUPSetup.log: setup started.
    SetupStarted,
    /// SUPSetup.log: `Installation was successful`.
    SetupSucceeded,
    /// SUPSetup.log: setup ended without success.
    SetupFailed,
    /// One of the two WSUS checks passed (components healthy, database connection ok).
    CheckPassed,
    /// The provisioner's progress: `accepted`, `installing`, `failed`, `removed`.
    Provisioning(ProvisioningStep),
    /// The health service found the server unhealthy.
    HealthLost,
    /// Healthy again; `holds_slot` says whether the role still holds a slot.
    HealthRestored { holds_slot: bool },
}

/// A step the provisioner reports for a command it carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningStep {
    Accepted,
    Installing,
    Failed,
    Removed,
}

impl ProvisioningStep {
    /// The step as the provisioner names it in its progress events; `None` for a step that moves
    /// no role (a newer provisioner's, say).
    pub fn parse(step: &str) -> Option<Self> {
        Some(match step {
            "accepted" => Self::Accepted,
            "installing" => Self::Installing,
            "failed" => Self::Failed,
            "removed" => Self::Removed,
            _ => return None,
        })
    }
}

/// The lifecycle events an observation makes of a role in `state`, `both_checks` telling whether
/// both WSUS checks have passed (counting this one). The events go through [`apply`] in order;
/// one the state machine refuses is skipped.
pub fn events_for(observation: Observation, state: RoleState, both_checks: bool) -> Vec<RoleEvent> {
    use RoleEvent as E;
    match observation {
        Observation::SetupStarted => vec![E::InstallStarted],
        // Setup done, the WSUS checks are awaited, unless both have already been seen.
        Observation::SetupSucceeded if both_checks => {
            vec![E::InstallSucceeded, E::VerifyStarted, E::Verified]
        }
        Observation::SetupSucceeded => vec![E::InstallSucceeded, E::VerifyStarted],
        Observation::SetupFailed => vec![E::InstallFailed],
        // A check counts towards readiness only once the role is installed.
        Observation::CheckPassed if both_checks && state.is_installed() => {
            vec![E::VerifyStarted, E::Verified]
        }
        Observation::CheckPassed => Vec::new(),
        Observation::Provisioning(step) => match step {
            ProvisioningStep::Accepted => vec![E::ProvisionStarted],
            ProvisioningStep::Installing => vec![E::ProvisionStarted, E::InstallStarted],
            ProvisioningStep::Failed => vec![E::InstallFailed],
            ProvisioningStep::Removed => vec![E::RemoveCompleted],
        },
        Observation::HealthLost => vec![E::HealthLost],
        Observation::HealthRestored { holds_slot } => vec![E::HealthRestored { holds_slot }],
    }
}

/// Whether a role's move from `before` to `after` may need its site reconciled (a command sent,
/// a slot activated or moved). A step on the way from declared to ready does not: such a role
/// holds no slot and can take none, its install command went out when it was declared, and it
/// needs nothing until it is ready, fails, or is declared, removed or made unhealthy, each of
/// which is a move that does. A site of five roles takes about six steps each to become
/// active; reconciling after each one only to find nothing to do was most of a coordinator's
/// work while a hierarchy converged.
pub fn move_needs_reconcile(before: Option<RoleState>, after: RoleState) -> bool {
    if before == Some(after) {
        return false;
    }
    !(after != RoleState::Declared
        && after.on_the_way_to_ready()
        && before.is_some_and(RoleState::on_the_way_to_ready))
}

/// The state a role in `state` reaches through `events`, skipping any the machine refuses.
pub fn apply_all(state: RoleState, events: &[RoleEvent]) -> RoleState {
    events.iter().fold(state, |s, e| apply(s, *e).unwrap_or(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(events: &[RoleEvent]) -> RoleState {
        events
            .iter()
            .fold(RoleState::Declared, |s, e| apply(s, *e).unwrap_or(s))
    }

    #[test]
    fn only_the_moves_that_can_need_a_command_or_a_slot_reconcile() {
        use RoleState::*;
        let on_the_way = [Declared, Provisioning, Installing, Installed, Verifying];
        for before in ALL_STATES {
            for after in ALL_STATES {
                let quiet = before == after
                    || (on_the_way.contains(&before)
                        && on_the_way.contains(&after)
                        && after != Declared);
                assert_eq!(
                    move_needs_reconcile(Some(before), after),
                    !quiet,
                    "{before:?} -> {after:?}"
                );
            }
            assert!(move_needs_reconcile(None, before), "created as {before:?}");
        }
        // The moves of an install that goes well: only becoming ready asks for a reconcile.
        let path = [
            Declared,
            Provisioning,
            Installing,
            Installed,
            Verifying,
            Ready,
        ];
        let asking: Vec<_> = path
            .windows(2)
            .filter(|w| move_needs_reconcile(Some(w[0]), w[1]))
            .map(|w| w[1])
            .collect();
        assert_eq!(asking, [Ready]);
        for slot_state in [Ready, Active, Unhealthy] {
            assert!(move_needs_reconcile(Some(slot_state), Installing));
        }
        assert!(move_needs_reconcile(Some(Installing), Failed));
        assert!(move_needs_reconcile(Some(Removed), Declared));
    }

    #[test]
    fn the_procedure_path() {
        use RoleEvent::*;
        assert_eq!(
            run(&[
                ProvisionStarted,
                InstallStarted,
                InstallSucceeded,
                VerifyStarted,
                Verified,
                Activated
            ]),
            RoleState::Active
        );
    }

    #[test]
    fn activation_needs_ready() {
        for s in ALL_STATES {
            let r = transition(s, RoleEvent::Activated);
            match s {
                RoleState::Ready => assert_eq!(r, Ok(Transition::Moved(RoleState::Active))),
                RoleState::Active => assert_eq!(r, Ok(Transition::Unchanged)),
                _ => assert!(r.is_err(), "{s} must not activate"),
            }
        }
    }

    #[test]
    fn failure_retry_and_late_success() {
        use RoleEvent::*;
        assert_eq!(run(&[ProvisionStarted, InstallFailed]), RoleState::Failed);
        assert_eq!(
            run(&[ProvisionStarted, InstallFailed, Retry]),
            RoleState::Provisioning
        );
        assert_eq!(
            run(&[ProvisionStarted, InstallFailed, InstallSucceeded]),
            RoleState::Installed
        );
    }

    #[test]
    fn health_round_trip() {
        use RoleEvent::*;
        let active = run(&[InstallSucceeded, Verified, Activated]);
        assert_eq!(apply(active, HealthLost), Ok(RoleState::Unhealthy));
        assert_eq!(
            apply(RoleState::Unhealthy, HealthRestored { holds_slot: true }),
            Ok(RoleState::Active)
        );
        assert_eq!(
            apply(RoleState::Unhealthy, HealthRestored { holds_slot: false }),
            Ok(RoleState::Ready)
        );
        assert_eq!(
            apply(RoleState::Declared, HealthLost),
            Ok(RoleState::Declared)
        );
    }

    #[test]
    fn removal() {
        use RoleEvent::*;
        assert_eq!(
            apply(RoleState::Declared, RemoveRequested),
            Ok(RoleState::Removed)
        );
        assert_eq!(
            run(&[InstallSucceeded, RemoveRequested]),
            RoleState::Removing
        );
        assert_eq!(
            run(&[InstallSucceeded, RemoveRequested, Verified]),
            RoleState::Removing
        );
        assert_eq!(
            run(&[InstallSucceeded, RemoveRequested, RemoveCompleted]),
            RoleState::Removed
        );
        assert_eq!(
            run(&[InstallSucceeded, RemoveRequested, RemoveCompleted, Declared]),
            RoleState::Declared
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ALL_STATES {
            assert_eq!(RoleState::parse(s.as_str()), Some(s));
        }
    }

    fn any_event() -> impl Strategy<Value = RoleEvent> {
        use RoleEvent::*;
        prop_oneof![
            Just(Declared),
            Just(ProvisionStarted),
            Just(InstallStarted),
            Just(InstallSucceeded),
            Just(InstallFailed),
            Just(VerifyStarted),
            Just(Verified),
            Just(Activated),
            Just(Deactivated),
            Just(HealthLost),
            any::<bool>().prop_map(|holds_slot| HealthRestored { holds_slot }),
            Just(RemoveRequested),
            Just(RemoveCompleted),
            Just(Retry),
        ]
    }

    fn any_state() -> impl Strategy<Value = RoleState> {
        proptest::sample::select(ALL_STATES.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Delivering an event twice is the same as delivering it once.
        #[test]
        fn events_are_idempotent(s in any_state(), e in any_event()) {
            if let Ok(once) = apply(s, e) {
                prop_assert_eq!(apply(once, e), Ok(once));
            }
        }

        /// A role only becomes Active from Ready, and only through Activated or a health
        /// restoration that says it still holds its slot.
        #[test]
        fn active_only_from_ready_or_restore(s in any_state(), e in any_event()) {
            if let Ok(Transition::Moved(RoleState::Active)) = transition(s, e) {
                let ok = (s == RoleState::Ready && e == RoleEvent::Activated)
                    || (s == RoleState::Unhealthy && e == RoleEvent::HealthRestored { holds_slot: true });
                prop_assert!(ok, "{:?} --{:?}--> Active", s, e);
            }
        }

        /// Removed is only left by a new declaration, and Installed-or-later is never reached
        /// without an install success.
        #[test]
        fn sequences_respect_the_order(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut s = RoleState::Declared;
            let mut installed_seen = false;
            for e in events {
                let prev = s;
                s = apply(s, e).unwrap_or(s);
                if e == RoleEvent::InstallSucceeded { installed_seen = true; }
                if e == RoleEvent::Declared && prev == RoleState::Removed { installed_seen = false; }
                if prev == RoleState::Removed && s != RoleState::Removed {
                    prop_assert_eq!(e, RoleEvent::Declared);
                }
                if s.is_installed() {
                    prop_assert!(installed_seen, "reached {} without an install success", s);
                }
            }
        }
    }

    #[test]
    fn a_role_installs_verifies_and_is_ready_from_what_is_observed() {
        let mut s = apply_all(
            RoleState::Declared,
            &events_for(
                Observation::Provisioning(ProvisioningStep::Installing),
                RoleState::Declared,
                false,
            ),
        );
        assert_eq!(s, RoleState::Installing);
        s = apply_all(s, &events_for(Observation::SetupSucceeded, s, false));
        assert_eq!(s, RoleState::Verifying);
        // One check is not enough; the second makes the role ready.
        assert!(events_for(Observation::CheckPassed, s, false).is_empty());
        s = apply_all(s, &events_for(Observation::CheckPassed, s, true));
        assert_eq!(s, RoleState::Ready);
    }

    #[test]
    fn checks_seen_before_setup_ends_count_when_it_does() {
        // The WSUS lines can come before "Installation was successful" is read.
        let s = RoleState::Installing;
        assert!(events_for(Observation::CheckPassed, s, true).is_empty());
        let s = apply_all(s, &events_for(Observation::SetupSucceeded, s, true));
        assert_eq!(s, RoleState::Ready);
    }

    #[test]
    fn failures_removal_and_health_are_passed_on() {
        let s = apply_all(
            RoleState::Installing,
            &events_for(Observation::SetupFailed, RoleState::Installing, false),
        );
        assert_eq!(s, RoleState::Failed);
        assert_eq!(
            events_for(
                Observation::Provisioning(ProvisioningStep::Removed),
                s,
                false
            ),
            [RoleEvent::RemoveCompleted]
        );
        assert_eq!(
            events_for(Observation::HealthRestored { holds_slot: true }, s, false),
            [RoleEvent::HealthRestored { holds_slot: true }]
        );
        assert_eq!(
            ProvisioningStep::parse("installing"),
            Some(ProvisioningStep::Installing)
        );
        assert_eq!(ProvisioningStep::parse("paused"), None);
    }
}
