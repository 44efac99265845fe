//! Events other services publish, turned into each role's lifecycle and the site's
//! synchronization state.

use super::*;
use sup_core::lifecycle::{Observation, ProvisioningStep};

/// A role's state before and after a change of its record.
struct StateMove {
    before: Option<RoleState>,
    after: RoleState,
}

impl StateMove {
    /// Whether the move may need the site reconciled (see
    /// [`lifecycle::move_needs_reconcile`]).
    fn needs_reconcile(&self) -> bool {
        lifecycle::move_needs_reconcile(self.before, self.after)
    }
}

impl Coordinator {
    /// Applies role events through the lifecycle, once per `cause` (an event id): a redelivered
    /// cause changes nothing. Returns the state after a change, `None` when nothing changed. The
    /// announcer publishes the change.
    pub async fn role_events(
        &self,
        site: &str,
        server: &str,
        events: &[RoleEvent],
        cause: &str,
        edit: impl Fn(&mut v1::RoleStatus),
    ) -> Result<Option<RoleState>, ApiError> {
        let create = events.first() == Some(&RoleEvent::Declared);
        Ok(self
            .role_change(site, server, cause, create, |r| {
                edit(r);
                events.to_vec()
            })
            .await?
            .map(|m| m.after))
    }

    /// Edits the role record with `edit`, then moves its lifecycle by what `observed` means for
    /// it (sup-core decides, from the record as edited), unless `edit` found the observation
    /// stale (false). Whether the site may need reconciling after it.
    async fn observe(
        &self,
        site: &str,
        server: &str,
        cause: &str,
        observed: Observation,
        edit: impl Fn(&mut v1::RoleStatus) -> bool,
    ) -> Result<bool, ApiError> {
        Ok(self
            .role_change(site, server, cause, false, |r| {
                if !edit(r) {
                    return Vec::new();
                }
                lifecycle::events_for(observed, state_of(r), verified_both(r))
            })
            .await?
            .is_some_and(|m| m.needs_reconcile()))
    }

    /// The general form: `decide` sees the current record inside the compare-and-set loop, may
    /// edit it, and returns the lifecycle events to apply. Deciding inside the loop is what keeps
    /// concurrent replicas from overwriting each other's edits. The state before and after, when
    /// the record changed.
    async fn role_change(
        &self,
        site: &str,
        server: &str,
        cause: &str,
        create: bool,
        decide: impl Fn(&mut v1::RoleStatus) -> Vec<RoleEvent>,
    ) -> Result<Option<StateMove>, ApiError> {
        let trace_context = sup_bus::trace::current_traceparent();
        let change = self
            .store
            .update_role(site, server, |cur| {
                if cur.is_some_and(|r| r.last_cause == cause) {
                    return None;
                }
                let mut r = match cur {
                    Some(r) => r.clone(),
                    None if create => v1::RoleStatus {
                        site: site.to_string(),
                        server: server.to_string(),
                        state: v1::RoleState::Unspecified as i32,
                        health: v1::Health::Unknown as i32,
                        ..Default::default()
                    },
                    None => return None,
                };
                let events = decide(&mut r);
                let before = role_state_from_proto(r.state);
                let mut state = before.unwrap_or(RoleState::Removed);
                for e in &events {
                    match lifecycle::apply(state, *e) {
                        Ok(s) => state = s,
                        Err(err) => {
                            tracing::debug!(site, server, %err, "event ignored by the lifecycle")
                        }
                    }
                }
                if before.is_none() {
                    state = RoleState::Declared;
                }
                // Nothing to record (a repeated health or verification milestone, say): no
                // write, no announcement, no reconciliation.
                if let Some(old) = cur
                    && before == Some(state)
                    && same_apart_from_bookkeeping(old, &r)
                {
                    return None;
                }
                r.previous = r.state;
                r.state = role_state_to_proto(state) as i32;
                r.last_cause = cause.to_string();
                r.updated = Some(now());
                if let Some(tc) = &trace_context {
                    r.trace_context = tc.clone();
                }
                if state != RoleState::Unhealthy {
                    r.unhealthy_since = None;
                } else if r.unhealthy_since.is_none() {
                    r.unhealthy_since = r.updated;
                }
                Some(r)
            })
            .await?;
        Ok(change.map(|c| StateMove {
            before: c.before.as_ref().map(state_of),
            after: state_of(&c.after),
        }))
    }

    /// Advances state from an event another service published.
    pub async fn handle_event(&self, e: &v1::Event) -> Result<(), ApiError> {
        let site = e.site.as_str();
        let server = e.server.as_str();
        let Some(payload) = &e.payload else {
            return Ok(());
        };
        let mut touched = false;
        match payload {
            Payload::Milestone(m) => match MilestoneKind::from_name(&m.name) {
                Some(MilestoneKind::RoleInstallStarted) => {
                    let line_time = m.line_time;
                    touched = self
                        .observe(site, server, &e.id, Observation::SetupStarted, |r| {
                            checks::setup_started(r, line_time)
                        })
                        .await?;
                }
                Some(MilestoneKind::RoleInstallSucceeded) => {
                    touched = self
                        .observe(site, server, &e.id, Observation::SetupSucceeded, |_| true)
                        .await?;
                }
                Some(MilestoneKind::RoleInstallFailed) => {
                    let why = m
                        .fields
                        .get("reason")
                        .cloned()
                        .unwrap_or_else(|| m.line.clone());
                    let reason = format!("setup failed ({}): {why}", m.log);
                    touched = self
                        .observe(site, server, &e.id, Observation::SetupFailed, |r| {
                            r.reason = reason.clone();
                            true
                        })
                        .await?;
                }
                Some(
                    kind @ (MilestoneKind::WsusComponentsHealthy | MilestoneKind::WsusDatabaseOk),
                ) => {
                    let name = kind.as_str();
                    let line_time = m.line_time;
                    touched = self
                        .observe(site, server, &e.id, Observation::CheckPassed, |r| {
                            checks::check_passed(r, name, line_time)
                        })
                        .await?;
                }
                Some(MilestoneKind::SyncStarted) => self.sync_started(site, e).await?,
                Some(MilestoneKind::SyncSucceeded) => self.sync_finished(site, e, true).await?,
                Some(MilestoneKind::SyncFailed) => self.sync_finished(site, e, false).await?,
                _ => {}
            },
            Payload::Provisioning(p) => {
                if let Some(step) = ProvisioningStep::parse(&p.step) {
                    let reason = (step == ProvisioningStep::Failed).then(|| p.detail.clone());
                    touched = self
                        .observe(site, server, &e.id, Observation::Provisioning(step), |r| {
                            if let Some(reason) = reason.as_ref().filter(|r| !r.is_empty()) {
                                r.reason = reason.clone();
                            }
                            true
                        })
                        .await?;
                }
            }
            Payload::HealthChanged(h) => {
                let health = h.to;
                let reason = h
                    .failing
                    .iter()
                    .map(|c| format!("{}: {}", c.component, c.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                touched = self
                    .role_change(site, server, &e.id, false, |r| {
                        r.health = health;
                        let observed = match v1::Health::try_from(health) {
                            Ok(v1::Health::Unhealthy) => {
                                r.reason = reason.clone();
                                Observation::HealthLost
                            }
                            Ok(v1::Health::Healthy) => Observation::HealthRestored {
                                holds_slot: r.slot != v1::Slot::Unspecified as i32,
                            },
                            _ => return Vec::new(),
                        };
                        lifecycle::events_for(observed, state_of(r), verified_both(r))
                    })
                    .await?
                    .is_some_and(|m| m.needs_reconcile());
            }
            Payload::SyncStarted(_) => self.sync_started(site, e).await?,
            Payload::SyncFinished(f) => {
                let ok = f
                    .run
                    .as_ref()
                    .is_some_and(|r| r.state == v1::SyncState::Succeeded as i32);
                self.sync_finished(site, e, ok).await?
            }
            _ => {}
        }
        // A role whose state moved may need a command, an activation or a failover; a step on
        // the way to ready, or a record that changed only in what it says (its health, a
        // verification, a reason), needs nothing, and the periodic reconcile covers the rest.
        if touched {
            self.reconcile_site(site).await?;
        }
        Ok(())
    }

    pub(super) async fn sync_started(&self, site: &str, e: &v1::Event) -> Result<(), ApiError> {
        let t = e.time;
        self.store
            .update_sync_status(site, |mut s| {
                s.state = v1::SyncState::Running as i32;
                s.last_started = t;
                s
            })
            .await?;
        Ok(())
    }

    pub(super) async fn sync_finished(
        &self,
        site: &str,
        e: &v1::Event,
        ok: bool,
    ) -> Result<(), ApiError> {
        let t = e.time;
        self.store
            .update_sync_status(site, |mut s| {
                s.state = if ok {
                    v1::SyncState::Succeeded
                } else {
                    v1::SyncState::Failed
                } as i32;
                s.last_finished = t;
                s
            })
            .await?;
        Ok(())
    }

    // ---- Operator requests -------------------------------------------------------------------
}
