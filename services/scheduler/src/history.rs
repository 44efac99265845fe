//! What the scheduler answers about past runs: the history and the synchronization status.

use super::*;

impl<C: Clock> Scheduler<C> {
    /// The site's run history, from the event stream.
    pub async fn history(&self, site: &str, limit: usize) -> anyhow::Result<Vec<v1::SyncRun>> {
        let (stored, mut events) = self
            .bus
            .watch_events(subjects::events_of(site), Some(1))
            .await?;
        let mut runs: Vec<v1::SyncRun> = Vec::new();
        if stored > 0 {
            while let Some(item) = events.next().await {
                let w = item?;
                match w.event.payload {
                    Some(Payload::SyncStarted(s)) => runs.extend(s.run),
                    Some(Payload::SyncFinished(f)) => {
                        if let Some(run) = f.run {
                            match runs.iter_mut().find(|r| r.id == run.id) {
                                Some(r) => *r = run,
                                None => runs.push(run),
                            }
                        }
                    }
                    _ => {}
                }
                if w.pending == 0 {
                    break;
                }
            }
        }
        runs.reverse();
        runs.truncate(limit.max(1));
        Ok(runs)
    }

    pub async fn status(&self, site: &str) -> anyhow::Result<v1::SyncStatus> {
        let runs = self.history(site, 1).await?;
        let sched = self
            .bus
            .schedule_record(site)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default();
        let last = runs.first();
        Ok(v1::SyncStatus {
            state: last
                .map(|r| r.state)
                .unwrap_or(v1::SyncState::NeverRun as i32),
            last_started: last.and_then(|r| r.started),
            last_finished: last.and_then(|r| r.finished),
            next: sched.retry_at.into_iter().chain(sched.next).min().map(ts),
            ..Default::default()
        })
    }
}
