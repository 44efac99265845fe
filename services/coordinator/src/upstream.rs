//! Where each active SUP synchronizes from, as ConfigMgr 2007 wires a hierarchy: the top site's
//! active SUP from Microsoft Update (or not at all), a child site's from its parent's active SUP,
//! and an active Internet-based SUP from its own site's active intranet SUP. There is no
//! fallback: while the SUP to synchronize from is missing, configuration and synchronization
//! wait, and the reason is shown and announced.

use sup_core::model::{Site, SlotKind, SyncSource};
use sup_proto::convert::site_to_proto;
use sup_proto::v1;

use crate::coordinator::{Coordinator, model_of};
use crate::error::ApiError;

/// What an active SUP synchronizes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    MicrosoftUpdate,
    /// "Do not synchronize from Microsoft Update or upstream data source".
    None,
    /// Another SUP: the parent site's active one, or this site's active intranet one.
    Server {
        name: String,
        port: u32,
        ssl: bool,
    },
    /// The SUP to synchronize from has no holder yet: the reason, for status and events.
    Waiting(String),
}

impl Upstream {
    /// The `upstream` of `status -o json`: `microsoft_update`, `none` or a server name.
    pub fn label(&self) -> Option<String> {
        match self {
            Upstream::MicrosoftUpdate => Some("microsoft_update".into()),
            Upstream::None => Some("none".into()),
            Upstream::Server { name, .. } => Some(name.clone()),
            Upstream::Waiting(_) => None,
        }
    }
}

/// The port and channel a downstream server uses to reach an active SUP: its SSL port when it
/// requires SSL (WSUS then serves its web services only over HTTPS).
fn reach(site: &v1::Site, slot: &v1::ActiveSlot) -> Upstream {
    let sup = site
        .software_update_points
        .iter()
        .find(|s| slot.members.contains(&s.server));
    let (port, ssl) = match sup {
        Some(s) if s.ssl => (s.https_port, true),
        Some(s) => (s.http_port, false),
        None => (80, false),
    };
    Upstream::Server {
        name: slot.target.clone(),
        port,
        ssl,
    }
}

impl Coordinator {
    /// What the active SUP of `site`'s `slot` synchronizes from.
    pub async fn upstream(&self, site: &Site, slot: SlotKind) -> Result<Upstream, ApiError> {
        let code = site.code.as_str();
        let (source_site, why) = match (slot, &site.parent) {
            (SlotKind::Internet, _) => (
                code.to_string(),
                format!(
                    "waiting: the active Internet-based SUP synchronizes from site {code}'s active intranet SUP, which is not assigned"
                ),
            ),
            (SlotKind::Intranet, Some(parent)) => (
                parent.clone(),
                format!(
                    "waiting: site {code} synchronizes from its parent {parent}'s active SUP, and {parent} has none"
                ),
            ),
            (SlotKind::Intranet, None) => {
                return Ok(match site.software_updates.sync_source {
                    SyncSource::None => Upstream::None,
                    _ => Upstream::MicrosoftUpdate,
                });
            }
        };
        let holder = self
            .store
            .slot(&source_site, "intranet")
            .await?
            .map(|(a, _)| a)
            .filter(|a| !a.target.is_empty());
        let spec = self.store.site(&source_site).await?.map(|(s, _)| s);
        Ok(match (holder, spec) {
            (Some(a), Some(s)) => reach(&s, &a),
            _ => Upstream::Waiting(why),
        })
    }

    /// The settings an active SUP of `site` is configured with: its own synchronization source
    /// and reporting level, with the schedule, classifications, products and languages of the
    /// top of its hierarchy (a child site declares none of them).
    pub async fn effective_settings(
        &self,
        site: &Site,
    ) -> Result<v1::SoftwareUpdateSettings, ApiError> {
        let own = site_to_proto(site).software_updates.unwrap_or_default();
        let mut top = site.parent.clone();
        // A hierarchy is acyclic (validated), but a stored one is walked with a bound anyway.
        for _ in 0..16 {
            let Some(code) = top else { break };
            let Some((pb, _)) = self.store.site(&code).await? else {
                break;
            };
            let Ok(m) = model_of(&pb) else { break };
            if m.parent.is_none() {
                let inherited = site_to_proto(&m).software_updates.unwrap_or_default();
                return Ok(v1::SoftwareUpdateSettings {
                    sync_source: own.sync_source,
                    reporting_events: own.reporting_events,
                    ..inherited
                });
            }
            top = m.parent;
        }
        Ok(own)
    }
}
