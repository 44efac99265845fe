//! Events other services publish, turned into each role's lifecycle and the site's
//! synchronization state.

use std::sync::Arc;

use tracing::Instrument as _;

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

/// What one event does to its role's record: edits it, and names the lifecycle events to
/// apply. Decided inside the compare-and-set loop, on the record as it is then.
type Decide<'a> = dyn Fn(&mut v1::RoleStatus) -> Vec<RoleEvent> + Send + Sync + 'a;

/// The lifecycle events `observed` makes of the record as `edit` left it, unless `edit` found
/// the observation stale (false).
fn observe<'a>(
    observed: Observation,
    edit: impl Fn(&mut v1::RoleStatus) -> bool + Send + Sync + 'a,
) -> Box<Decide<'a>> {
    Box::new(move |r| {
        if !edit(r) {
            return Vec::new();
        }
        lifecycle::events_for(observed, state_of(r), verified_both(r))
    })
}

/// How `e` changes its role's record; `None` for an event that changes no role.
fn role_decision(e: &v1::Event) -> Option<Box<Decide<'_>>> {
    match e.payload.as_ref()? {
        Payload::Milestone(m) => match MilestoneKind::from_name(&m.name)? {
            MilestoneKind::RoleInstallStarted => {
                let line_time = m.line_time;
                Some(observe(Observation::SetupStarted, move |r| {
                    checks::setup_started(r, line_time)
                }))
            }
            MilestoneKind::RoleInstallSucceeded => {
                Some(observe(Observation::SetupSucceeded, |_| true))
            }
            MilestoneKind::RoleInstallFailed => {
                let why = m.fields.get("reason").unwrap_or(&m.line);
                let reason = format!("setup failed ({}): {why}", m.log);
                Some(observe(Observation::SetupFailed, move |r| {
                    r.reason = reason.clone();
                    true
                }))
            }
            kind @ (MilestoneKind::WsusComponentsHealthy | MilestoneKind::WsusDatabaseOk) => {
                let (name, line_time) = (kind.as_str(), m.line_time);
                Some(observe(Observation::CheckPassed, move |r| {
                    checks::check_passed(r, name, line_time)
                }))
            }
            _ => None,
        },
        Payload::Provisioning(p) => {
            let step = ProvisioningStep::parse(&p.step)?;
            let reason = (step == ProvisioningStep::Failed)
                .then_some(p.detail.as_str())
                .filter(|d| !d.is_empty());
            Some(observe(Observation::Provisioning(step), move |r| {
                if let Some(reason) = reason {
                    r.reason = reason.to_string();
                }
                true
            }))
        }
        Payload::HealthChanged(h) => {
            let health = h.to;
            let reason = h
                .failing
                .iter()
                .map(|c| format!("{}: {}", c.component, c.detail))
                .collect::<Vec<_>>()
                .join("; ");
            Some(Box::new(move |r: &mut v1::RoleStatus| {
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
            }))
        }
        _ => None,
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
        edit: impl Fn(&mut v1::RoleStatus) + Send + Sync,
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
        decide: impl Fn(&mut v1::RoleStatus) -> Vec<RoleEvent> + Send + Sync,
    ) -> Result<Option<StateMove>, ApiError> {
        self.role_change_all(site, server, create, &[(cause, &decide)])
            .await
    }

    /// Several changes of one role, each decided by its cause in turn, stored in one write: a
    /// cause the record already names as its last is skipped (redelivered). The write records
    /// the state before the first and after the last, so a role carried through several steps
    /// at once announces one change from the first state to the last, as a setup-success line
    /// read after both checks already does.
    async fn role_change_all(
        &self,
        site: &str,
        server: &str,
        create: bool,
        steps: &[(&str, &Decide<'_>)],
    ) -> Result<Option<StateMove>, ApiError> {
        let trace_context = sup_bus::trace::current_traceparent();
        let change = self
            .store
            .update_role(site, server, |cur| {
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
                let first_state = r.state;
                let before = role_state_from_proto(first_state);
                let mut state = before.unwrap_or(RoleState::Removed);
                let mut last_cause = None;
                for (cause, decide) in steps {
                    if cur.is_some_and(|c| c.last_cause == *cause) {
                        continue;
                    }
                    let events = decide(&mut r);
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
                    // The next step decides on the state this one reached.
                    r.state = role_state_to_proto(state) as i32;
                    last_cause = Some(*cause);
                }
                let last_cause = last_cause?;
                // Nothing to record (a repeated health or verification milestone, say): no
                // write, no announcement, no reconciliation.
                if let Some(old) = cur
                    && before == Some(state)
                    && same_apart_from_bookkeeping(old, &r)
                {
                    return None;
                }
                r.previous = first_state;
                r.last_cause = last_cause.to_string();
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

    /// Advances state from events other services published, each with the span it is handled
    /// in: in order within each site, sites side by side. One result per event, in the same
    /// order. Successive events of one role are stored in one write, and each site is
    /// reconciled at most once, after all its events.
    pub async fn handle_events(
        &self,
        events: &[(v1::Event, tracing::Span)],
    ) -> Vec<Result<(), Arc<ApiError>>> {
        let mut by_site: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (e, _)) in events.iter().enumerate() {
            by_site.entry(e.site.as_str()).or_default().push(i);
        }
        let handled = futures::future::join_all(by_site.into_iter().map(|(site, at)| async move {
            let results = self.site_events(site, events, &at).await;
            (at, results)
        }))
        .await;
        let mut results: Vec<Result<(), Arc<ApiError>>> = events.iter().map(|_| Ok(())).collect();
        for (at, site_results) in handled {
            for (i, r) in at.into_iter().zip(site_results) {
                results[i] = r;
            }
        }
        results
    }

    /// One site's events (`at`, indices into `events`, in order); one result per index.
    async fn site_events(
        &self,
        site: &str,
        events: &[(v1::Event, tracing::Span)],
        at: &[usize],
    ) -> Vec<Result<(), Arc<ApiError>>> {
        let mut results = Vec::with_capacity(at.len());
        // The events whose role moved in a way that may need the site reconciled.
        let mut touched = Vec::new();
        let mut i = 0;
        while i < at.len() {
            let (e, span) = &events[at[i]];
            let Some(first) = role_decision(e) else {
                let result = self.site_event(site, e).instrument(span.clone()).await;
                results.push(result.map_err(Arc::new));
                i += 1;
                continue;
            };
            // The run of events that change this same role, one after another.
            let mut run = vec![(e.id.as_str(), first)];
            let mut last_span = span;
            while let Some((next, span)) = at.get(i + run.len()).map(|&j| &events[j])
                && next.server == e.server
                && let Some(decide) = role_decision(next)
            {
                run.push((next.id.as_str(), decide));
                last_span = span;
            }
            let steps: Vec<(&str, &Decide<'_>)> =
                run.iter().map(|(cause, d)| (*cause, d.as_ref())).collect();
            // In the process span of the run's last event, whose trace the role record keeps.
            let result = self
                .role_change_all(site, &e.server, false, &steps)
                .instrument(last_span.clone())
                .await;
            let moved = matches!(&result, Ok(Some(m)) if m.needs_reconcile());
            let result = result.map(|_| ()).map_err(Arc::new);
            for _ in 0..run.len() {
                if moved {
                    touched.push(results.len());
                }
                results.push(result.clone());
            }
            i += run.len();
        }
        // A role whose state moved may need a command, an activation or a failover; a step on
        // the way to ready, or a record that changed only in what it says (its health, a
        // verification, a reason), needs nothing, and the periodic reconcile covers the rest.
        if !touched.is_empty()
            && let Err(e) = self.reconcile_site(site).await
        {
            let e = Arc::new(e);
            for i in touched {
                results[i] = Err(e.clone());
            }
        }
        results
    }

    /// An event that changes no role: a site's synchronization state.
    async fn site_event(&self, site: &str, e: &v1::Event) -> Result<(), ApiError> {
        let Some(payload) = &e.payload else {
            return Ok(());
        };
        match payload {
            Payload::Milestone(m) => match MilestoneKind::from_name(&m.name) {
                Some(MilestoneKind::SyncStarted) => self.sync_started(site, e).await,
                Some(MilestoneKind::SyncSucceeded) => self.sync_finished(site, e, true).await,
                Some(MilestoneKind::SyncFailed) => self.sync_finished(site, e, false).await,
                _ => Ok(()),
            },
            Payload::SyncStarted(_) => self.sync_started(site, e).await,
            Payload::SyncFinished(f) => {
                let ok = f
                    .run
                    .as_ref()
                    .is_some_and(|r| r.state == v1::SyncState::Succeeded as i32);
                self.sync_finished(site, e, ok).await
            }
            _ => Ok(()),
        }
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
