//! The schedule: each site's next fire and retry, moved by compare-and-set so a due time
//! starts exactly one run across replicas.

use super::*;

impl<C: Clock> Scheduler<C> {
    /// The next fire of the site's schedule after `now`, at the site's wall-clock time (or UTC
    /// for a GMT token); `None` for a child site, which has no schedule of its own.
    pub(crate) fn next_after(site: &Site, now: DateTime<Utc>) -> Option<i64> {
        site.software_updates
            .top
            .as_ref()?
            .schedule
            .next_fire_utc(site.time_zone, now)
            .map(|t| t.timestamp())
    }

    /// What a top site's next fire is computed from: its schedule's token and its time zone.
    pub(crate) fn basis(site: &Site) -> String {
        let token = site
            .software_updates
            .top
            .as_ref()
            .and_then(|t| sup_core::token::from_schedule(&t.schedule).ok())
            .unwrap_or_default();
        format!("{token}@{}", site.time_zone.name())
    }

    /// One pass: due schedules and retries start runs (exactly once across replicas); overdue
    /// runs time out.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        for (_, site) in self.sites().await? {
            self.check_timeout(&site.code, now).await?;
            // In ConfigMgr 2007 only the top site (synchronizing from Microsoft Update) has a
            // schedule; children follow their parent (and retry their own failures).
            let top = site.parent.is_none()
                && site.software_updates.sync_source == SyncSource::MicrosoftUpdate;
            let current = self.bus.schedule_record(&site.code).await?;
            if !top && current.as_ref().is_none_or(|(r, _)| r.retry_at.is_none()) {
                continue;
            }
            let (record, rev) = match &current {
                Some((r, rev)) => (r.clone(), Some(*rev)),
                None => (SchedRecord::default(), None),
            };
            let basis = top.then(|| Self::basis(&site));
            let due_schedule =
                top && record.basis == basis && record.next.is_some_and(|n| n <= now.timestamp());
            let due_retry = record.retry_at.is_some_and(|r| r <= now.timestamp());
            let next = if !top {
                None
            } else if record.next.is_none() || due_schedule || record.basis != basis {
                // Missed fires collapse into this one: the next is computed from now.
                Self::next_after(&site, now)
            } else {
                record.next
            };
            let updated = SchedRecord {
                next,
                retry_at: if due_retry { None } else { record.retry_at },
                basis,
            };
            if let Some(due) = updated.next {
                self.metrics
                    .next_due
                    .get_or_create(&SiteLabels {
                        site: site.code.clone(),
                    })
                    .set(due);
            }
            if updated == record && current.is_some() {
                continue;
            }
            match self.cas_schedule(&site.code, &updated, rev).await? {
                Cas::Won(_) => {
                    let trigger = if due_schedule {
                        Some("schedule")
                    } else if due_retry {
                        Some("retry")
                    } else {
                        None
                    };
                    if let Some(trigger) = trigger {
                        match self.start_run(&site, trigger, true, "").await {
                            Ok(_) | Err(StartError::Busy(_)) => {}
                            Err(StartError::Refused(m)) => {
                                tracing::warn!(site = %site.code, m, "scheduled run not started")
                            }
                            Err(StartError::Bus(e)) => return Err(e),
                        }
                    }
                }
                Cas::Lost => {}
            }
        }
        Ok(())
    }

    /// After a failure, the next attempt comes after the retry interval.
    pub(crate) async fn schedule_retry(&self, code: &str) -> anyhow::Result<()> {
        let retry_at = self.clock.now().timestamp() + self.settings.retry_after_secs as i64;
        for _ in 0..16 {
            let current = self.bus.schedule_record(code).await?;
            let mut r = current.as_ref().map(|(r, _)| r.clone()).unwrap_or_default();
            r.retry_at = Some(retry_at);
            if let Cas::Won(_) = self
                .cas_schedule(code, &r, current.map(|(_, rev)| rev))
                .await?
            {
                break;
            }
        }
        Ok(())
    }
}
