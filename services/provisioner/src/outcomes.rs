//! What the provisioner says and remembers about its work: progress and rejections as events,
//! each command's outcome (so a redelivered one does nothing twice), retries, timeouts and the
//! queue's depth.

use super::*;

impl<D: SiteDriver> Provisioner<D> {
    pub(crate) async fn progress(
        &self,
        cmd: &v1::Command,
        server: &str,
        step: &str,
        detail: &str,
        attempt: u32,
    ) -> anyhow::Result<()> {
        let e = v1::Event {
            id: format!("prov:{}:{step}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: server.to_string(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::Provisioning(v1::ProvisioningProgress {
                command_id: cmd.id.clone(),
                step: step.to_string(),
                detail: detail.to_string(),
                attempt,
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    pub(crate) async fn rejected(&self, cmd: &v1::Command, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(command = %cmd.id, site = %cmd.site, reason, "command dropped");
        let e = v1::Event {
            id: format!("rejected:{}", cmd.id),
            time: Some(now()),
            site: cmd.site.clone(),
            server: cmd.server.clone(),
            epoch: cmd.epoch,
            op_id: cmd.op_id.clone(),
            payload: Some(Payload::CommandRejected(v1::CommandRejected {
                command_id: cmd.id.clone(),
                reason: reason.to_string(),
            })),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    pub(crate) async fn is_done(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self.bus.ops().get(&subjects::done_key(id)).await?.is_some())
    }

    pub(crate) async fn record_done(&self, id: &str, outcome: &str) -> anyhow::Result<()> {
        self.bus
            .ops()
            .put(&subjects::done_key(id), outcome.to_string().into())
            .await
            .map_err(|e| anyhow::anyhow!("recording the outcome of {id}: {e}"))?;
        Ok(())
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        Duration::from_millis(
            self.settings
                .retry_base_ms
                .saturating_mul(1 << attempt.min(8)),
        )
    }

    /// Retry while attempts remain; then fail the role with the reason.
    pub(crate) async fn unreachable(
        &self,
        cmd: &v1::Command,
        server: &str,
        e: &DriverError,
        attempt: u32,
        fail_role: bool,
    ) -> anyhow::Result<Outcome> {
        if e.retryable() && attempt < self.settings.max_attempts {
            self.progress(
                cmd,
                server,
                &format!("retrying-{attempt}"),
                &e.to_string(),
                attempt,
            )
            .await?;
            return Ok(Outcome::Retry(self.backoff(attempt)));
        }
        let reason = format!("{e} (after {attempt} attempt(s))");
        if fail_role {
            self.progress(cmd, server, "failed", &reason, attempt)
                .await?;
        } else {
            self.rejected(cmd, &reason).await?;
        }
        Ok(Outcome::Done("failed"))
    }

    /// The current epoch of a slot (the KV revision of its key), 0 when never set.
    pub(crate) async fn slot_epoch(
        &self,
        site: &str,
        slot: &str,
    ) -> anyhow::Result<(u64, Vec<String>)> {
        read_slot(&self.bus, site, slot, false).await
    }

    /// Fails roles that started installing and never reached "Installation was successful".
    /// Reads the command consumer's backlog into the queue-depth gauge.
    pub(crate) async fn measure_queue(&self) {
        match self.bus.backlog(&crate::command_queue()).await {
            Ok((pending, unacked)) => {
                for (state, n) in [("pending", pending), ("unacked", unacked)] {
                    self.metrics
                        .queue
                        .get_or_create(&QueueLabels {
                            state: state.to_string(),
                        })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the command queue depth"),
        }
    }

    pub async fn check_timeouts(&self) -> anyhow::Result<()> {
        let mut records = Vec::new();
        for (code, _) in self.bus.all_sites().await? {
            records.extend(self.bus.role_records(&code).await?);
        }
        let limit = self.settings.install_timeout_secs;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for r in records {
            let installing = r.state == v1::RoleState::Installing as i32
                || r.state == v1::RoleState::Provisioning as i32;
            let since = r.updated.map(|t| t.seconds.max(0) as u64).unwrap_or(now);
            if installing && now.saturating_sub(since) > limit {
                let e = v1::Event {
                    id: format!("timeout:{}:{}:{since}", r.site, r.server),
                    time: Some(self::now()),
                    site: r.site.clone(),
                    server: r.server.clone(),
                    epoch: 0,
                    op_id: String::new(),
                    payload: Some(Payload::Provisioning(v1::ProvisioningProgress {
                        command_id: String::new(),
                        step: "failed".into(),
                        detail: format!(
                            "no \"Installation was successful\" in SUPSetup.log within {limit} s of setup starting"
                        ),
                        attempt: 0,
                    })),
                };
                self.bus.publish_event(&e).await?;
            }
        }
        Ok(())
    }
}
