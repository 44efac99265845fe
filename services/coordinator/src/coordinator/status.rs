//! The status of every site, as `GetStatus` answers it.

use super::*;

impl Coordinator {
    pub async fn status(&self, only: &str) -> Result<v1::StatusResponse, ApiError> {
        let sites = if only.is_empty() {
            self.store.sites().await?
        } else {
            vec![self.get_site(only).await?]
        };
        let mut out = Vec::new();
        for s in sites {
            let slot = |a: Option<(v1::ActiveSlot, u64)>| {
                a.filter(|(a, _)| !a.target.is_empty())
                    .map(|(a, rev)| v1::ActiveSlot { epoch: rev, ..a })
            };
            let intranet = slot(self.store.slot(&s.code, "intranet").await?);
            let internet = slot(self.store.slot(&s.code, "internet").await?);
            let roles: Vec<v1::RoleStatus> = self
                .store
                .roles(&s.code)
                .await?
                .into_iter()
                .filter(|r| state_of(r) != RoleState::Removed)
                .collect();
            let mut sync = self
                .store
                .sync_status(&s.code)
                .await?
                .unwrap_or(v1::SyncStatus {
                    state: v1::SyncState::NeverRun as i32,
                    ..Default::default()
                });
            // The scheduler's record says when the next run (or retry) is; without one, the
            // schedule does.
            let planned = match self.store.bus.schedule_record(&s.code).await {
                Ok(r) => r.and_then(|(r, _)| [r.next, r.retry_at].into_iter().flatten().min()),
                Err(e @ sup_bus::BusError::Decode { .. }) => {
                    tracing::warn!(site = %s.code, error = %e, "unreadable schedule record; the schedule itself gives the next run");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let model = model_of(&s).ok();
            match planned {
                Some(secs) => {
                    sync.next = Some(sup_proto::prost_types::Timestamp {
                        seconds: secs,
                        nanos: 0,
                    });
                }
                None if s.parent.is_empty() => {
                    // A site that does not synchronize has no scheduled run.
                    if let Some(m) = &model
                        && let Some(top) = &m.software_updates.top
                        && m.software_updates.sync_source != SyncSource::None
                    {
                        sync.next = top
                            .schedule
                            .next_fire_utc(m.time_zone, chrono::Utc::now())
                            .map(|t| SystemTime::from(t).into());
                    }
                }
                None => {}
            }
            let mut role_sync = Vec::new();
            if let Some(m) = &model {
                sync.time_zone = m.time_zone.name().to_string();
                sync.schedule_token = m
                    .software_updates
                    .top
                    .as_ref()
                    .and_then(|t| sup_core::token::from_schedule(&t.schedule).ok())
                    .unwrap_or_default();
                for (slot, holder) in [
                    (SlotKind::Intranet, &intranet),
                    (SlotKind::Internet, &internet),
                ] {
                    let Some(holder) = holder else { continue };
                    let upstream = self.upstream(m, slot).await?;
                    for server in &holder.members {
                        role_sync.push(v1::RoleSync {
                            server: server.clone(),
                            upstream: upstream.label().unwrap_or_default(),
                            waiting: match &upstream {
                                Upstream::Waiting(why) => why.clone(),
                                _ => String::new(),
                            },
                        });
                    }
                }
            }
            // The provisioner's last reading of the site's control file.
            let drift = self
                .store
                .drift(&s.code)
                .await?
                .map(|d| d.fields)
                .unwrap_or_default();
            out.push(v1::SiteStatus {
                drift,
                site: Some(s),
                intranet,
                internet,
                roles,
                sync: Some(sync),
                role_sync,
            });
        }
        Ok(v1::StatusResponse { sites: out })
    }
}
