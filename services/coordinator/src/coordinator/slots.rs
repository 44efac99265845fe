//! The active slots: intents, activation and failover, each a compare-and-set whose revision is
//! the slot's epoch, and its projection onto the roles.

use super::*;
use sup_core::failover::{self, Decision, RoleView};

impl Coordinator {
    /// Records what the spec wants in a slot, stamped with the slot's current epoch: a later
    /// operator activation or failover (a newer epoch) supersedes it.
    pub(super) async fn record_intent(
        &self,
        site: &str,
        slot: SlotKind,
        target: Option<&SlotTarget>,
    ) -> Result<(), ApiError> {
        let epoch = self
            .store
            .slot(site, slot_name(slot))
            .await?
            .map(|(_, r)| r)
            .unwrap_or(0);
        let value = v1::ActiveSlot {
            site: site.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            target: target.map(|t| t.name.clone()).unwrap_or_default(),
            nlb: target.is_some_and(|t| t.nlb),
            members: target.map(|t| t.members.clone()).unwrap_or_default(),
            epoch,
            since: Some(now()),
            ..Default::default()
        };
        self.store.put_intent(site, slot_name(slot), &value).await?;
        Ok(())
    }

    pub(super) async fn intent(
        &self,
        site: &str,
        slot: SlotKind,
    ) -> Result<Option<v1::ActiveSlot>, ApiError> {
        Ok(self.store.intent(site, slot_name(slot)).await?)
    }

    // ---- Reconciliation ------------------------------------------------------------------

    /// Automatic failover: when the holder of a slot of an `auto` site has been unhealthy for
    /// `failover_after`, move the slot (compare-and-set, new epoch) to the best ready and healthy
    /// standby that may hold it. With none, keep the slot and raise an alert (once per epoch).
    /// `manual` sites only see the health events.
    pub(super) async fn check_failover(&self, site: &Site, slot: SlotKind) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let Some((a, epoch)) = self.store.slot(code, slot_name(slot)).await? else {
            return Ok(());
        };
        if a.target.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let roles: BTreeMap<String, RoleView> = self
            .store
            .roles(code)
            .await?
            .into_iter()
            .map(|r| {
                let unhealthy_for = r
                    .unhealthy_since
                    .or(r.updated)
                    .and_then(|t| {
                        SystemTime::UNIX_EPOCH
                            .checked_add(std::time::Duration::new(t.seconds.max(0) as u64, 0))
                    })
                    .and_then(|since| now.duration_since(since).ok());
                let view = RoleView {
                    state: state_of(&r),
                    healthy: r.health == v1::Health::Healthy as i32,
                    unhealthy_for,
                };
                (r.server, view)
            })
            .collect();
        let holder = SlotTarget {
            name: a.target.clone(),
            nlb: a.nlb,
            members: a.members.clone(),
        };
        let Decision::Move {
            candidates,
            down_for,
        } = failover::decide(site, &holder, &roles, self.failover_after)
        else {
            return Ok(());
        };
        let cause = format!(
            "failover: {} unhealthy for {}s",
            a.target,
            down_for.as_secs()
        );
        for t in candidates {
            match self.activate(site, slot, &t.name, &cause, "").await {
                Ok(new) => {
                    tracing::warn!(site = code, slot = slot_name(slot), from = %a.target, to = %new.target, epoch = new.epoch, "failed over");
                    return Ok(());
                }
                Err(ApiError::Precondition(_)) => continue,
                Err(ApiError::Aborted(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.publish(&event(
            code,
            &a.target,
            epoch,
            "",
            format!("alert:no-standby:{code}:{}:{epoch}", slot_name(slot)),
            Payload::Alert(v1::Alert {
                kind: "no_healthy_standby".into(),
                message: format!(
                    "the active {} SUP {} of site {code} is unhealthy and no ready, healthy standby can take the slot",
                    slot_name(slot),
                    a.target
                ),
            }),
        ))
        .await
    }

    /// Applies a slot's holder at `epoch` to the site's role records: every role is stamped with
    /// the epoch, non-members that held the slot are deactivated first, then members activated.
    /// A role already stamped with a newer epoch of this slot is left alone, so a late or repeated
    /// projection changes nothing (and cannot re-activate a former holder).
    pub async fn project_slot(
        &self,
        code: &str,
        slot: SlotKind,
        a: &v1::ActiveSlot,
        epoch: u64,
    ) -> Result<(), ApiError> {
        let roles = self.store.roles(code).await?;
        self.project_slot_onto(code, slot, a, epoch, &roles).await
    }

    /// [`Self::project_slot`] over role records already read: a record that has seen the epoch
    /// is not read again (epochs seen only grow, so a stale copy can only send a role to the
    /// compare-and-set, which reads it and decides).
    pub(super) async fn project_slot_onto(
        &self,
        code: &str,
        slot: SlotKind,
        a: &v1::ActiveSlot,
        epoch: u64,
        roles: &[v1::RoleStatus],
    ) -> Result<(), ApiError> {
        let cause = format!("active:{code}:{}:{epoch}", slot_name(slot));
        let seen = |r: &v1::RoleStatus| match slot {
            SlotKind::Intranet => r.intranet_epoch,
            SlotKind::Internet => r.internet_epoch,
        };
        for r in roles {
            if !a.members.contains(&r.server) && seen(r) < epoch {
                self.fenced_slot_update(code, &r.server, slot, epoch, false, &cause)
                    .await?;
            }
        }
        for m in &a.members {
            let current = roles.iter().find(|r| &r.server == m);
            if current.is_none_or(|r| seen(r) < epoch) {
                self.fenced_slot_update(code, m, slot, epoch, true, &cause)
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn fenced_slot_update(
        &self,
        code: &str,
        server: &str,
        slot: SlotKind,
        epoch: u64,
        member: bool,
        cause: &str,
    ) -> Result<(), ApiError> {
        let slot_pb = convert::slot_to_proto(Some(slot)) as i32;
        self.store
            .update_role(code, server, |cur| {
                let cur = cur?;
                let seen = match slot {
                    SlotKind::Intranet => cur.intranet_epoch,
                    SlotKind::Internet => cur.internet_epoch,
                };
                if seen >= epoch {
                    return None;
                }
                let mut r = cur.clone();
                r.previous = r.state;
                match slot {
                    SlotKind::Intranet => r.intranet_epoch = epoch,
                    SlotKind::Internet => r.internet_epoch = epoch,
                }
                let event = if member {
                    r.slot = slot_pb;
                    Some(RoleEvent::Activated)
                } else if r.slot == slot_pb {
                    r.slot = v1::Slot::Unspecified as i32;
                    Some(RoleEvent::Deactivated)
                } else {
                    None
                };
                if let Some(event) = event {
                    match lifecycle::apply(state_of(&r), event) {
                        Ok(next) => r.state = role_state_to_proto(next) as i32,
                        Err(e) => {
                            tracing::warn!(site = code, server, error = %e, "slot projection")
                        }
                    }
                    r.last_cause = cause.to_string();
                    r.updated = Some(now());
                }
                Some(r)
            })
            .await?;
        Ok(())
    }

    pub(super) async fn clear_slot(
        &self,
        code: &str,
        slot: SlotKind,
        rev: u64,
        a: &v1::ActiveSlot,
        why: &str,
    ) -> Result<(), ApiError> {
        let cleared = v1::ActiveSlot {
            site: code.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            since: Some(now()),
            previous: a.target.clone(),
            cause: why.to_string(),
            ..Default::default()
        };
        match self.write_slot(code, slot, &cleared, Some(rev)).await? {
            Cas::Won(epoch) => {
                self.metrics.slot_changes.inc();
                self.project_slot(code, slot, &cleared, epoch).await
            }
            Cas::Lost => Err(ApiError::Aborted(format!(
                "the {} slot of {code} changed concurrently; retry",
                slot_name(slot)
            ))),
        }
    }

    /// Makes `target` the holder of `slot`: validated against current role states, decided by
    /// compare-and-set on the slot key. The new revision is the epoch.
    pub async fn activate(
        &self,
        site: &Site,
        slot: SlotKind,
        target: &str,
        cause: &str,
        op_id: &str,
    ) -> Result<v1::ActiveSlot, ApiError> {
        let active = self.transition(site, slot, target, cause, op_id).await?;
        self.confirm(&site.code, slot, &active).await?;
        Ok(active)
    }

    /// Moves the slot to `target` (or finds it there) without waiting for the announcement.
    pub(super) async fn transition(
        &self,
        site: &Site,
        slot: SlotKind,
        target: &str,
        cause: &str,
        op_id: &str,
    ) -> Result<v1::ActiveSlot, ApiError> {
        let code = site.code.as_str();
        let roles: BTreeMap<String, RoleState> = self
            .store
            .roles(code)
            .await?
            .iter()
            .map(|r| (r.server.clone(), state_of(r)))
            .collect();
        let other_slot = match slot {
            SlotKind::Intranet => SlotKind::Internet,
            SlotKind::Internet => SlotKind::Intranet,
        };
        let other = self
            .store
            .slot(code, slot_name(other_slot))
            .await?
            .and_then(|(a, _)| slot_target(&a));
        let t = check_activation(
            site,
            slot,
            target,
            |s| roles.get(s).copied(),
            other.as_ref(),
        )
        .map_err(|e| ApiError::Precondition(e.to_string()))?;
        // "Already active" is an answer, so it comes from the leader, like the CAS base.
        let current = self.store.slot_from_leader(code, slot_name(slot)).await?;
        if let Some((a, rev)) = &current
            && a.target == t.name
        {
            return Ok(v1::ActiveSlot {
                epoch: *rev,
                ..a.clone()
            });
        }
        let value = v1::ActiveSlot {
            site: code.to_string(),
            slot: convert::slot_to_proto(Some(slot)) as i32,
            target: t.name.clone(),
            nlb: t.nlb,
            members: t.members.clone(),
            epoch: 0,
            since: Some(now()),
            previous: current
                .as_ref()
                .map(|(a, _)| a.target.clone())
                .unwrap_or_default(),
            cause: cause.to_string(),
            op_id: op_id.to_string(),
        };
        let epoch = match self
            .write_slot(code, slot, &value, current.as_ref().map(|(_, r)| *r))
            .await?
        {
            Cas::Won(epoch) => epoch,
            Cas::Lost => {
                self.metrics.activations_lost.inc();
                return Err(ApiError::Aborted(format!(
                    "the {} slot of {code} changed while activating {target}; retry",
                    slot_name(slot)
                )));
            }
        };
        self.metrics.activations_won.inc();
        self.metrics.slot_changes.inc();
        tracing::info!(site = code, slot = slot_name(slot), target = %t.name, epoch, cause, "active SUP changed");
        self.project_slot(code, slot, &value, epoch).await?;
        if let Some((_, spec_rev)) = self.store.site(code).await? {
            self.configure_component(site, spec_rev).await?;
        }
        // Children synchronize from this site's active SUP: re-point them.
        if slot == SlotKind::Intranet {
            for child in self
                .store
                .sites()
                .await?
                .into_iter()
                .filter(|s| s.parent == code)
            {
                if let (Ok(m), Some((_, rev))) =
                    (model_of(&child), self.store.site(&child.code).await?)
                {
                    self.configure_component(&m, rev).await?;
                }
            }
        }
        Ok(v1::ActiveSlot { epoch, ..value })
    }

    /// The operator's "use this server as the active software update point".
    pub async fn set_active(&self, req: v1::SetActiveRequest) -> Result<v1::ActiveSlot, ApiError> {
        if let Some(done) = self.replay(&req.op_id).await? {
            return Ok(done);
        }
        let slot = convert::slot_from_proto(req.slot)
            .ok_or_else(|| ApiError::BadRequest("slot must be intranet or internet".into()))?;
        let site = model_of(&self.get_site(&req.site).await?)?;
        let target = sup_core::names::normalize_host(&req.target);
        let active = self
            .transition(&site, slot, &target, "operator", &req.op_id)
            .await?;
        // The operator's choice is the new intent, stamped with the epoch it won.
        if let Err(e) = self
            .store
            .put_intent(&site.code, slot_name(slot), &active)
            .await
        {
            tracing::warn!(site = %site.code, error = %e, "recording the operator's activation as the intent");
        }
        self.confirm(&site.code, slot, &active).await?;
        self.remember(&req.op_id, &active).await?;
        Ok(active)
    }

    /// Waits (a bounded while) until the announcer has passed the slot's revision. An operator's
    /// answer promises the change is in the audit trail too, and every writer of a slot (operator,
    /// reconcile, failover) waiting like this keeps the writes from running further ahead of the
    /// announcements than the slot's KV history reaches.
    pub(super) async fn confirm(
        &self,
        code: &str,
        slot: SlotKind,
        active: &v1::ActiveSlot,
    ) -> Result<(), ApiError> {
        if self.announced(active.epoch).await {
            return Ok(());
        }
        Err(ApiError::Unconfirmed(format!(
            "the {} slot of {code} is {} at epoch {}, but the change is not yet in the event history; retry with the same op id",
            slot_name(slot),
            active.target,
            active.epoch
        )))
    }

    /// Whether the slot announcements reach `revision` within [`ANNOUNCE_WAIT`].
    pub(super) async fn announced(&self, revision: u64) -> bool {
        self.store
            .announced(Announced::Active, revision, ANNOUNCE_WAIT)
            .await
    }

    /// Compare-and-set of a slot over `base`, written only while the announcements are less
    /// than [`Announced::unannounced_max`] revisions behind `base`: a slot then never holds more
    /// changes the event history lacks than its KV history keeps, however many writers storm it
    /// while the announcers are down, and a write right after a NATS election does not wait for
    /// the announcers to recover first.
    pub(super) async fn write_slot(
        &self,
        code: &str,
        slot: SlotKind,
        value: &v1::ActiveSlot,
        base: Option<u64>,
    ) -> Result<Cas, ApiError> {
        let behind = Announced::Active.unannounced_max();
        if let Some(base) = base
            && !self.announced(base.saturating_sub(behind)).await
        {
            return Err(ApiError::Unconfirmed(format!(
                "the {} slot of {code} is at epoch {base} and the event history is more than {behind} changes behind; retry",
                slot_name(slot)
            )));
        }
        Ok(self
            .store
            .cas_slot(code, slot_name(slot), value, base)
            .await?)
    }
}
