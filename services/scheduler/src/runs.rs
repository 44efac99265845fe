//! A run's life: started on the active SUP with its epoch, followed through the log watcher's
//! milestones, finished, timed out or sent again to a new active SUP, and the children's runs
//! after their parent's success.

use super::*;

impl<C: Clock> Scheduler<C> {
    pub(crate) async fn check_timeout(&self, site: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        if let Some((run, _)) = self.get_json::<RunRecord>(&run_key(site)).await?
            && !run.finished
            && now.timestamp() - run.started > self.settings.run_timeout_secs as i64
        {
            self.finish(
                site,
                &run.id,
                false,
                &format!(
                    "no result in wsyncmgr.log within {} s",
                    self.settings.run_timeout_secs
                ),
                0,
            )
            .await?;
        }
        Ok(())
    }

    /// Starts a run on the site's current active SUP, if none is running.
    pub async fn start_run(
        &self,
        site: &Site,
        trigger: &str,
        full: bool,
        op_id: &str,
    ) -> Result<v1::SyncRun, StartError> {
        let code = site.code.as_str();
        let now = self.clock.now().timestamp();
        let key = run_key(code);
        let current = self.get_json::<RunRecord>(&key).await?;
        if let Some((r, _)) = &current
            && !r.finished
        {
            return Err(StartError::Busy(format!(
                "run {} of {code} is still running",
                r.id
            )));
        }
        // A child synchronizes from its parent's active SUP and from nothing else: without one
        // the run waits (ConfigMgr never points a child at Microsoft Update instead).
        if let Some(parent) = &site.parent
            && self.holder(parent, "intranet").await?.0.is_empty()
        {
            return Err(StartError::Refused(format!(
                "site {code} waits: its parent {parent} has no active software update point to synchronize from"
            )));
        }
        let (server, epoch) = self.holder(code, "intranet").await?;
        let (internet_server, _) = self.holder(code, "internet").await?;
        // The run record's revision makes the id unique even for two runs within one second
        // (event and command ids derive from it, and the streams drop repeated ids).
        let previous = current.as_ref().map(|(_, rev)| *rev).unwrap_or(0);
        let id = format!("{code}-{now}-{trigger}-{previous}");
        let run = RunRecord {
            id: id.clone(),
            server: server.clone(),
            epoch,
            started: now,
            trigger: trigger.to_string(),
            full,
            command_id: format!("sync:{id}:{epoch}"),
            finished: false,
            internet_server,
            parent_site: if trigger == "parent" {
                site.parent.clone().unwrap_or_default()
            } else {
                String::new()
            },
        };
        match self.cas_json(&key, &run, current.map(|(_, r)| r)).await? {
            Cas::Won(_) => {}
            Cas::Lost => {
                return Err(StartError::Busy(format!(
                    "another run of {code} started first"
                )));
            }
        }
        let pb = self.run_proto(code, &run, v1::SyncState::Running, "");
        self.event(
            code,
            &server,
            epoch,
            op_id,
            format!("sync-start:{id}"),
            Payload::SyncStarted(v1::SyncStarted {
                run: Some(pb.clone()),
            }),
        )
        .await?;
        if server.is_empty() {
            self.close(
                code,
                &id,
                false,
                "the site has no active software update point",
                0,
            )
            .await?;
            self.schedule_retry(code).await?;
            return Err(StartError::Refused(format!(
                "site {code} has no active software update point"
            )));
        }
        self.send(code, &run).await?;
        tracing::info!(site = code, run = %id, server = %server, epoch, trigger, full, "synchronization started");
        Ok(pb)
    }

    /// The server that holds a slot of `code` (an NLB cluster's first node) and the slot's epoch;
    /// empty and 0 when nobody does.
    pub(crate) async fn holder(&self, code: &str, slot: &str) -> anyhow::Result<(String, u64)> {
        Ok(match self.bus.slot(code, slot, false).await? {
            Some((a, rev)) => {
                let server = if a.nlb {
                    a.members.first().cloned().unwrap_or_default()
                } else {
                    a.target.clone()
                };
                let epoch = if server.is_empty() { 0 } else { rev };
                (server, epoch)
            }
            None => (String::new(), 0),
        })
    }

    pub(crate) async fn send(&self, code: &str, run: &RunRecord) -> anyhow::Result<()> {
        let cmd = v1::Command {
            id: run.command_id.clone(),
            op_id: String::new(),
            issued: Some(SystemTime::now().into()),
            site: code.to_string(),
            server: run.server.clone(),
            epoch: run.epoch,
            kind: Some(v1::command::Kind::StartSync(v1::StartSync {
                run_id: run.id.clone(),
                trigger: run.trigger.clone(),
                full: run.full,
                internet_server: run.internet_server.clone(),
                parent_site: run.parent_site.clone(),
            })),
        };
        self.bus.publish_command("provisioner", &cmd).await?;
        Ok(())
    }

    pub(crate) fn run_proto(
        &self,
        code: &str,
        run: &RunRecord,
        state: v1::SyncState,
        error: &str,
    ) -> v1::SyncRun {
        v1::SyncRun {
            id: run.id.clone(),
            site: code.to_string(),
            server: run.server.clone(),
            state: state as i32,
            started: Some(ts(run.started)),
            finished: (state != v1::SyncState::Running).then(|| ts(self.clock.now().timestamp())),
            error: error.to_string(),
            trigger: run.trigger.clone(),
            epoch: run.epoch,
            full: run.full,
            updates: 0,
        }
    }

    pub(crate) async fn event(
        &self,
        site: &str,
        server: &str,
        epoch: u64,
        op_id: &str,
        id: String,
        payload: Payload,
    ) -> anyhow::Result<()> {
        let e = v1::Event {
            id,
            time: Some(ts(self.clock.now().timestamp())),
            site: site.to_string(),
            server: server.to_string(),
            epoch,
            op_id: op_id.to_string(),
            payload: Some(payload),
        };
        self.bus.publish_event(&e).await?;
        Ok(())
    }

    /// Marks the site's current run (if it is `run_id`) finished and announces it; returns the run
    /// when this call closed it.
    pub(crate) async fn close(
        &self,
        code: &str,
        run_id: &str,
        ok: bool,
        error: &str,
        updates: u32,
    ) -> anyhow::Result<Option<RunRecord>> {
        let key = run_key(code);
        let Some((mut run, rev)) = self.get_json::<RunRecord>(&key).await? else {
            return Ok(None);
        };
        if run.id != run_id || run.finished {
            return Ok(None);
        }
        run.finished = true;
        if let Cas::Lost = self.cas_json(&key, &run, Some(rev)).await? {
            return Ok(None);
        }
        let result = ResultLabels {
            result: if ok { "succeeded" } else { "failed" }.to_string(),
        };
        let now = self.clock.now().timestamp();
        self.metrics.runs.get_or_create(&result).inc();
        self.metrics
            .duration
            .get_or_create(&result)
            .observe((now - run.started).max(0) as f64);
        if ok {
            self.metrics
                .last_success
                .get_or_create(&SiteLabels {
                    site: code.to_string(),
                })
                .set(now);
        }
        let retry_minutes = self.settings.retry_after_secs / 60;
        let error = if ok {
            String::new()
        } else {
            format!("{error}. Will retry in {retry_minutes} minutes")
        };
        let mut pb = self.run_proto(
            code,
            &run,
            if ok {
                v1::SyncState::Succeeded
            } else {
                v1::SyncState::Failed
            },
            &error,
        );
        pb.updates = updates;
        self.event(
            code,
            &run.server,
            run.epoch,
            "",
            format!("sync-end:{}", run.id),
            Payload::SyncFinished(v1::SyncFinished { run: Some(pb) }),
        )
        .await?;
        tracing::info!(site = code, run = %run.id, ok, error, "synchronization finished");
        Ok(Some(run))
    }

    /// Ends the site's current run; a success starts the children's runs, a failure schedules
    /// the retry.
    pub async fn finish(
        &self,
        code: &str,
        run_id: &str,
        ok: bool,
        error: &str,
        updates: u32,
    ) -> anyhow::Result<()> {
        let Some(run) = self.close(code, run_id, ok, error, updates).await? else {
            return Ok(());
        };
        if ok {
            for (_, child) in self
                .sites()
                .await?
                .into_iter()
                .filter(|(_, s)| s.parent.as_deref() == Some(code))
            {
                match self.start_run(&child, "parent", run.full, "").await {
                    Ok(_) | Err(StartError::Busy(_)) | Err(StartError::Refused(_)) => {}
                    Err(StartError::Bus(e)) => return Err(e),
                }
            }
        } else {
            self.schedule_retry(code).await?;
        }
        Ok(())
    }

    /// Follows milestones and command rejections for the runs in flight.
    pub async fn on_event(&self, e: &v1::Event) -> anyhow::Result<()> {
        let Some((run, _)) = self.get_json::<RunRecord>(&run_key(&e.site)).await? else {
            return Ok(());
        };
        if run.finished {
            return Ok(());
        }
        match &e.payload {
            Some(Payload::Milestone(m)) => match MilestoneKind::from_name(&m.name) {
                // With an Internet-based SUP to synchronize after the site database, only the
                // cycle's closing status message (6702) ends the run.
                Some(MilestoneKind::SyncSucceeded)
                    if !run.internet_server.is_empty() && !m.fields.contains_key("statmsg_id") => {}
                Some(MilestoneKind::SyncSucceeded) => {
                    let updates = m
                        .fields
                        .get("updates")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    self.finish(&e.site, &run.id, true, "", updates).await?
                }
                Some(MilestoneKind::SyncFailed) => {
                    let reason = m
                        .fields
                        .get("reason")
                        .cloned()
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| m.line.clone());
                    self.finish(
                        &e.site,
                        &run.id,
                        false,
                        &format!("Sync failed: {reason}"),
                        0,
                    )
                    .await?
                }
                _ => {}
            },
            Some(Payload::CommandRejected(r)) if r.command_id == run.command_id => {
                if r.reason.contains("stale epoch") {
                    // The active SUP changed while the run was queued: the new one runs it.
                    self.reissue(&e.site, run).await?;
                } else {
                    self.finish(&e.site, &run.id, false, &r.reason, 0).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) async fn reissue(&self, code: &str, mut run: RunRecord) -> anyhow::Result<()> {
        let key = run_key(code);
        let Some((_, rev)) = self.get_json::<RunRecord>(&key).await? else {
            return Ok(());
        };
        let (server, epoch) = self.holder(code, "intranet").await?;
        if server.is_empty() {
            return self
                .finish(
                    code,
                    &run.id,
                    false,
                    "the site has no active software update point",
                    0,
                )
                .await;
        }
        run.internet_server = self.holder(code, "internet").await?.0;
        run.server = server;
        run.epoch = epoch;
        run.command_id = format!("sync:{}:{epoch}", run.id);
        if let Cas::Won(_) = self.cas_json(&key, &run, Some(rev)).await? {
            tracing::info!(site = code, run = %run.id, server = %run.server, epoch, "re-sent to the new active SUP");
            self.send(code, &run).await?;
        }
        Ok(())
    }
}
