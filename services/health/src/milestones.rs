//! What the log watcher says of each server's WSUS: its health milestones, followed from the
//! bus, and their age when a probe is assessed.

use super::*;

impl HealthService {
    pub(crate) fn log_view(&self, server: &str) -> LogView {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let age = |kind: MilestoneKind| {
            seen.get(server)
                .and_then(|m| m.get(&kind))
                .map(|t| t.elapsed())
        };
        LogView {
            components_healthy: age(MilestoneKind::WsusComponentsHealthy),
            database_ok: age(MilestoneKind::WsusDatabaseOk),
        }
    }

    /// Follows the log watcher's WSUS health milestones (from `max_age` ago).
    pub(crate) async fn follow_milestones(
        self: Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            // Only the milestones young enough to matter are replayed.
            let window = Duration::from_secs(self.settings.milestone_max_age_secs.max(60));
            let since = SystemTime::now()
                .checked_sub(window)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let mut msgs = match self
                .bus
                .watch_events_of_kind_since(subjects::kind::MILESTONE, since)
                .await
            {
                Ok(m) => Box::pin(m),
                Err(e) => {
                    tracing::warn!(error = %e, "following milestones; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    m = msgs.next() => m,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let e = match next {
                    Some(Ok(watched)) => watched.event,
                    // An undecodable event is no milestone; the watch goes on past it.
                    Some(Err(sup_bus::BusError::Decode { .. })) => continue,
                    _ => break,
                };
                let Some(Payload::Milestone(ms)) = &e.payload else {
                    continue;
                };
                let Some(
                    kind @ (MilestoneKind::WsusComponentsHealthy | MilestoneKind::WsusDatabaseOk),
                ) = MilestoneKind::from_name(&ms.name)
                else {
                    continue;
                };
                // When the line was logged, not when it was replayed.
                let age = e
                    .time
                    .and_then(|t| {
                        SystemTime::UNIX_EPOCH.checked_add(Duration::new(
                            t.seconds.max(0) as u64,
                            t.nanos.max(0) as u32,
                        ))
                    })
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(e.server.clone())
                    .or_default()
                    .insert(kind, at);
            }
        }
    }
}
