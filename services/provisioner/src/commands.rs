//! Carrying out one command: install (after the prerequisites), configure and synchronize,
//! fenced by the slot's epoch.

use super::*;

impl<D: SiteDriver> Provisioner<D> {
    /// Handles one command; `attempt` counts deliveries from 1.
    pub async fn handle(&self, cmd: &v1::Command, attempt: u32) -> anyhow::Result<Outcome> {
        if self.is_done(&cmd.id).await? {
            tracing::info!(command = %cmd.id, "already done; redelivery ignored");
            return Ok(Outcome::Done("duplicate"));
        }
        let outcome = match &cmd.kind {
            Some(Kind::InstallRole(i)) => self.install(cmd, i, attempt).await?,
            Some(Kind::RemoveRole(_)) => match self
                .driver
                .remove_role(v1::AgentRemoveRoleRequest {
                    site: cmd.site.clone(),
                    server: cmd.server.clone(),
                    op_id: cmd.id.clone(),
                })
                .await
            {
                Ok(_) => {
                    self.progress(cmd, &cmd.server, "removed", "SUP role removed", attempt)
                        .await?;
                    Outcome::Done("removed")
                }
                Err(e) => {
                    self.unreachable(cmd, &cmd.server, &e, attempt, false)
                        .await?
                }
            },
            Some(Kind::ConfigureComponent(c)) => self.configure(cmd, c, attempt).await?,
            Some(Kind::StartSync(s)) => self.start_sync(cmd, s, attempt).await?,
            None => {
                self.rejected(cmd, "command without a kind").await?;
                Outcome::Done("rejected")
            }
        };
        if let Outcome::Done(what) = outcome {
            self.record_done(&cmd.id, what).await?;
        }
        Ok(outcome)
    }

    pub(crate) async fn install(
        &self,
        cmd: &v1::Command,
        i: &v1::InstallRole,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let server = cmd.server.as_str();
        self.progress(
            cmd,
            server,
            "accepted",
            "provisioning the software update point",
            attempt,
        )
        .await?;
        let info = match self.driver.wsus_info(&cmd.site, server).await {
            Ok(info) => info,
            Err(e) => return self.unreachable(cmd, server, &e, attempt, true).await,
        };
        let role = i.role.clone().unwrap_or_default();
        if let Err(reason) = prerequisites(&info, &role, i.site_system.as_ref()) {
            // Retrying cannot fix a missing prerequisite: fail now, with what to do.
            self.progress(cmd, server, "failed", &reason, attempt)
                .await?;
            return Ok(Outcome::Done("failed"));
        }
        self.progress(
            cmd,
            server,
            "prerequisites_ok",
            &format!(
                "WSUS {} on {}/{}",
                info.version, info.http_port, info.https_port
            ),
            attempt,
        )
        .await?;
        let reply = self
            .driver
            .install_role(v1::AgentInstallRoleRequest {
                site: cmd.site.clone(),
                server: server.to_string(),
                install: Some(i.clone()),
                // The command id: a redelivered command is the same operation to the agent.
                op_id: cmd.id.clone(),
            })
            .await;
        match reply {
            Ok(r) if r.accepted => {
                self.progress(cmd, server, "installing", &r.detail, attempt)
                    .await?;
                Ok(Outcome::Done("installing"))
            }
            Ok(r) => {
                self.progress(
                    cmd,
                    server,
                    "failed",
                    &format!("the agent refused the install: {}", r.detail),
                    attempt,
                )
                .await?;
                Ok(Outcome::Done("failed"))
            }
            Err(e) => self.unreachable(cmd, server, &e, attempt, true).await,
        }
    }

    pub(crate) async fn configure(
        &self,
        cmd: &v1::Command,
        c: &v1::ConfigureComponent,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let slot = if c.slot == v1::Slot::Internet as i32 {
            "internet"
        } else {
            "intranet"
        };
        let (current, members) = self.slot_epoch(&cmd.site, slot).await?;
        if cmd.epoch < current {
            self.rejected(
                cmd,
                &format!(
                    "stale epoch {} (the {slot} slot of {} is at epoch {current})",
                    cmd.epoch, cmd.site
                ),
            )
            .await?;
            return Ok(Outcome::Done("stale"));
        }
        let targets = if members.is_empty() {
            vec![cmd.server.clone()]
        } else {
            members
        };
        for server in &targets {
            let r = self
                .driver
                .configure(v1::AgentConfigureRequest {
                    site: cmd.site.clone(),
                    server: server.clone(),
                    epoch: cmd.epoch,
                    configure: Some(c.clone()),
                    op_id: format!("{}:{server}", cmd.id),
                })
                .await;
            match r {
                Ok(r) if r.accepted => {}
                Ok(r) => {
                    self.rejected(
                        cmd,
                        &format!("{server} refused the configuration: {}", r.detail),
                    )
                    .await?;
                    return Ok(Outcome::Done("refused"));
                }
                Err(e) => return self.unreachable(cmd, server, &e, attempt, false).await,
            }
        }
        let e = v1::Event {
            id: format!("configured:{}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: cmd.server.clone(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::ComponentConfigured(v1::ComponentConfigured {
                settings: c.settings.clone(),
                upstream_server: c.upstream_server.clone(),
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(Outcome::Done("configured"))
    }

    pub(crate) async fn start_sync(
        &self,
        cmd: &v1::Command,
        s: &v1::StartSync,
        attempt: u32,
    ) -> anyhow::Result<Outcome> {
        let (current, _) = self.slot_epoch(&cmd.site, "intranet").await?;
        if cmd.epoch < current {
            self.rejected(
                cmd,
                &format!(
                    "stale epoch {} (the active SUP of {} is at epoch {current})",
                    cmd.epoch, cmd.site
                ),
            )
            .await?;
            return Ok(Outcome::Done("stale"));
        }
        let r = self
            .driver
            .start_sync(v1::AgentStartSyncRequest {
                site: cmd.site.clone(),
                server: cmd.server.clone(),
                epoch: cmd.epoch,
                run_id: s.run_id.clone(),
                upstream_server: String::new(),
                full: s.full,
                trigger: s.trigger.clone(),
                parent_site: s.parent_site.clone(),
                internet_server: s.internet_server.clone(),
            })
            .await;
        match r {
            Ok(r) if r.accepted => {
                self.progress(cmd, &cmd.server, "sync_requested", &s.run_id, attempt)
                    .await?;
                Ok(Outcome::Done("sync_requested"))
            }
            Ok(r) => {
                self.rejected(
                    cmd,
                    &format!("{} refused the synchronization: {}", cmd.server, r.detail),
                )
                .await?;
                Ok(Outcome::Done("refused"))
            }
            Err(e) => self.unreachable(cmd, &cmd.server, &e, attempt, false).await,
        }
    }
}
