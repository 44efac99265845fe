//! Reconciling a site: its roles towards their declared state, its slots towards their
//! holders, and the site's software-update component.

use super::*;

impl Coordinator {
    /// Brings one site's roles and slots in line with its spec. Idempotent: running it again
    /// changes nothing, and the commands it sends have deterministic ids.
    pub async fn reconcile_site(&self, code: &str) -> Result<(), ApiError> {
        let Some((site_pb, spec_rev)) = self.store.site(code).await? else {
            return Ok(());
        };
        let site = model_of(&site_pb)?;
        let roles: BTreeMap<String, v1::RoleStatus> = self
            .store
            .roles(code)
            .await?
            .into_iter()
            .map(|r| (r.server.clone(), r))
            .collect();

        let mut declared_any = false;
        // Roles the spec declares.
        for sup in &site.software_update_points {
            let desired_slot = convert::slot_to_proto(site.declared_slot_of(&sup.server)) as i32;
            let nlb = site
                .nlb_clusters
                .iter()
                .find(|c| c.members.contains(&sup.server))
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let existing = roles.get(&sup.server);
            let needs_declare = existing.is_none_or(|r| state_of(r) == RoleState::Removed);
            if needs_declare {
                let cause = format!("declare:{code}:{}:{spec_rev}", sup.server);
                let change = self
                    .role_events(code, &sup.server, &[RoleEvent::Declared], &cause, |r| {
                        r.desired_slot = desired_slot;
                        r.nlb_cluster = nlb.clone();
                    })
                    .await?;
                let _ = change;
            } else if let Some(r) = existing
                && (r.desired_slot != desired_slot || r.nlb_cluster != nlb)
            {
                self.store
                    .update_role(code, &sup.server, |cur| {
                        let mut r = cur?.clone();
                        r.desired_slot = desired_slot;
                        r.nlb_cluster = nlb.clone();
                        Some(r)
                    })
                    .await?;
            }
            // Read again only where the command needs the record's revision (a role waiting
            // for its install); any other state is as the snapshot above says, and a move since
            // that can need a command reconciles again through its own event.
            let known = existing
                .filter(|_| !needs_declare)
                .map(state_of)
                .filter(|s| *s != RoleState::Declared);
            if needs_declare {
                declared_any = true;
            }
            if known.is_none()
                && let Some((r, role_rev)) = self.store.role(code, &sup.server).await?
                && state_of(&r) == RoleState::Declared
            {
                let sys = site.site_system(&sup.server).cloned();
                self.command(v1::Command {
                    id: format!("install:{code}:{}:{role_rev}", sup.server),
                    op_id: String::new(),
                    issued: Some(now()),
                    site: code.to_string(),
                    server: sup.server.clone(),
                    epoch: 0,
                    kind: Some(v1::command::Kind::InstallRole(v1::InstallRole {
                        site_system: sys.map(|s| {
                            site_pb
                                .site_systems
                                .iter()
                                .find(|x| x.server == s.server)
                                .cloned()
                                .unwrap_or_default()
                        }),
                        role: Some(convert::sup_to_proto(sup)),
                        mode: site_pb.mode,
                    })),
                })
                .await?;
            }
        }

        // Roles no longer declared.
        for (server, r) in &roles {
            let state = state_of(r);
            if site.sup(server).is_some()
                || matches!(state, RoleState::Removing | RoleState::Removed)
            {
                continue;
            }
            self.remove_role_record(code, server, spec_rev).await?;
        }

        // Slots, projected onto the roles read above (again if this pass declared one).
        let roles: Vec<v1::RoleStatus> = if declared_any {
            self.store.roles(code).await?
        } else {
            roles.into_values().collect()
        };
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            self.reconcile_slot(&site, slot, &roles).await?;
        }
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            self.check_failover(&site, slot).await?;
        }
        self.configure_component(&site, spec_rev).await?;
        Ok(())
    }

    pub(super) async fn remove_role_record(
        &self,
        code: &str,
        server: &str,
        spec_rev: u64,
    ) -> Result<(), ApiError> {
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            if let Some((a, rev)) = self.store.slot(code, slot_name(slot)).await?
                && a.members.iter().any(|m| m == server)
            {
                self.clear_slot(code, slot, rev, &a, "role removed").await?;
            }
        }
        let cause = format!("remove:{code}:{server}:{spec_rev}");
        let after = self
            .role_events(code, server, &[RoleEvent::RemoveRequested], &cause, |_| {})
            .await?;
        if after == Some(RoleState::Removing) {
            self.command(v1::Command {
                id: format!("remove:{code}:{server}:{spec_rev}"),
                issued: Some(now()),
                site: code.to_string(),
                server: server.to_string(),
                kind: Some(v1::command::Kind::RemoveRole(v1::RemoveRole {})),
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// Brings a slot to its declared holder, then projects it onto `roles` (a recent read of the
    /// site's role records).
    pub(super) async fn reconcile_slot(
        &self,
        site: &Site,
        slot: SlotKind,
        roles: &[v1::RoleStatus],
    ) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let current = self.store.slot(code, slot_name(slot)).await?;
        let holder = current.as_ref().and_then(|(a, _)| slot_target(a));
        let epoch = current.as_ref().map(|(_, r)| *r).unwrap_or(0);
        let intent = self.intent(code, slot).await?;
        // The intent stands unless the slot moved on after it was recorded.
        let wanted: Option<Option<String>> = match &intent {
            Some(i) if i.epoch >= epoch || holder.is_none() => Some(
                (!i.target.is_empty())
                    .then(|| i.target.clone())
                    .filter(|t| site.target(t).is_some()),
            ),
            _ => None,
        };
        match wanted {
            Some(Some(target)) if holder.as_ref().map(|h| &h.name) != Some(&target) => {
                match self.activate(site, slot, &target, "declared", "").await {
                    Ok(_) | Err(ApiError::Precondition(_)) | Err(ApiError::Aborted(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(None) => {
                if let (Some((a, rev)), Some(_)) = (&current, &holder) {
                    self.clear_slot(code, slot, *rev, a, "declared none")
                        .await?;
                }
            }
            _ => {}
        }
        // Project the slot onto its roles (idempotent and fenced by epoch): repairs what a crash
        // between the slot write and the role writes left behind.
        if let Some((a, rev)) = self.store.slot(code, slot_name(slot)).await? {
            self.project_slot_onto(code, slot, &a, rev, roles).await?;
        }
        Ok(())
    }

    /// Sends the site's component settings to the active SUP(s), fenced by the slot's epoch. The
    /// command id names the epoch, the spec revision and the upstream, so re-sending is a no-op.
    /// A SUP whose upstream has no holder is not configured (never pointed at Microsoft Update
    /// instead): an alert says what it waits for.
    pub(super) async fn configure_component(
        &self,
        site: &Site,
        spec_rev: u64,
    ) -> Result<(), ApiError> {
        let code = site.code.as_str();
        let mut settings = None;
        for slot in [SlotKind::Intranet, SlotKind::Internet] {
            let Some((a, epoch)) = self.store.slot(code, slot_name(slot)).await? else {
                continue;
            };
            if a.target.is_empty() {
                continue;
            }
            let (upstream_server, upstream_port, upstream_ssl) =
                match self.upstream(site, slot).await? {
                    Upstream::Server { name, port, ssl } => (name, port, ssl),
                    Upstream::MicrosoftUpdate | Upstream::None => (String::new(), 0, false),
                    Upstream::Waiting(why) => {
                        self.publish(&event(
                            code,
                            &a.target,
                            epoch,
                            "",
                            format!(
                                "alert:waiting-upstream:{code}:{}:{epoch}:{spec_rev}",
                                slot_name(slot)
                            ),
                            Payload::Alert(v1::Alert {
                                kind: "waiting_for_upstream".into(),
                                message: format!("{}: {why}", a.target),
                            }),
                        ))
                        .await?;
                        continue;
                    }
                };
            if settings.is_none() {
                settings = Some(self.effective_settings(site).await?);
            }
            // A child's settings come from the top site: a change there is a new configuration
            // of the child's SUP though the child's own spec did not change.
            let digest = settings_digest(settings.as_ref());
            let role = a
                .members
                .first()
                .and_then(|m| site.sup(m))
                .map(convert::sup_to_proto);
            self.command(v1::Command {
                id: format!(
                    "configure:{code}:{}:{epoch}:{spec_rev}:{digest:016x}:{upstream_server}",
                    slot_name(slot)
                ),
                issued: Some(now()),
                site: code.to_string(),
                server: a.target.clone(),
                epoch,
                kind: Some(v1::command::Kind::ConfigureComponent(
                    v1::ConfigureComponent {
                        settings: settings.clone(),
                        upstream_server,
                        upstream_port,
                        upstream_ssl,
                        slot: convert::slot_to_proto(Some(slot)) as i32,
                        role,
                    },
                )),
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    // ---- Role lifecycle --------------------------------------------------------------------
}
